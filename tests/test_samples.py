"""The sample captures in pcaps/: present, exactly what pcaps/make_samples.py makes, readable
by tcpdump, of the link type their name says, and holding the features they promise.

Expected feature counts come from the generator, which derives them from how each packet was
built (reasoning in make_samples.expected_counts); tcpdump is the oracle that counts them.
"""
from __future__ import annotations

import importlib.util
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"

# file -> (LINKTYPE value, tcpdump's name for it)
LINKTYPES = {
    "sample.pcap": (1, "EN10MB"),
    "en10mb.pcap": (1, "EN10MB"),
    "raw.pcap": (101, "RAW"),
    "linux_sll.pcap": (113, "LINUX_SLL"),
    "linux_sll2.pcap": (276, "LINUX_SLL2"),
    "null.pcap": (0, "NULL"),
    "sample.pcapng": (1, "EN10MB"),
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_samples", PCAPS / "make_samples.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod      # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


GEN = _load_generator()


@pytest.fixture(scope="module")
def built():
    """Every sample, built once in memory (scapy; a few seconds)."""
    return {s.name: s for s in GEN.build_samples()}


@pytest.fixture(scope="module")
def regenerated(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    for s in built.values():
        GEN.write_sample(s, out)
    return out


def _tcpdump(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tcpdump", *args], capture_output=True, text=True)


def _count(path: Path, expr: str) -> int:
    r = _tcpdump("-r", str(path), "--count", expr)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"(\d+) packets?\n", r.stdout)
    assert m, r.stdout
    return int(m.group(1))


def test_generator_lists_exactly_the_expected_files(built):
    assert sorted(built) == sorted(LINKTYPES)


def test_samples_committed_and_small():
    sizes = {n: (PCAPS / n).stat().st_size for n in LINKTYPES}
    assert sum(sizes.values()) < 2 * 1024 * 1024, sizes


@pytest.mark.parametrize("name", sorted(LINKTYPES))
def test_committed_file_is_what_the_generator_makes(name, regenerated):
    assert (PCAPS / name).read_bytes() == (regenerated / name).read_bytes(), \
        f"pcaps/{name} is stale: run python3 pcaps/make_samples.py"


@pytest.mark.parametrize("name", sorted(LINKTYPES))
def test_reader_sees_the_records_built(name, built):
    from bpfkit.pcap import read_capture
    s = built[name]
    b = read_capture(PCAPS / name)
    assert b.linktype == LINKTYPES[name][0] == s.linktype
    assert len(b) == len(s.records)
    assert [bytes(b[i]) for i in range(len(b))] == [r[1] for r in s.records]
    assert b.wirelen.tolist() == [r[2] for r in s.records]
    assert b.ts_ns.tolist() == [r[0] for r in s.records]
    assert b.ts_nanos == s.nanos


@pytest.mark.parametrize("name", sorted(LINKTYPES))
def test_truncated_records_present(name, built):
    from bpfkit.pcap import read_capture
    b = read_capture(PCAPS / name)
    n = int((b.caplen < b.wirelen).sum())
    assert n == built[name].expected["truncated"] > 0


@pytest.mark.tcpdump
@pytest.mark.parametrize("name", sorted(LINKTYPES))
def test_tcpdump_reads_whole_file_with_its_link_type(name, built):
    path = PCAPS / name
    r = _tcpdump("-r", str(path), "-n", "--nano", "-tt")
    assert r.returncode == 0, r.stderr
    dlt = LINKTYPES[name][1]
    assert re.search(rf"link-type {dlt} \(", r.stderr), r.stderr
    assert "truncated dump file" not in r.stderr
    lines = r.stdout.splitlines()
    # one line per packet at default verbosity; each starts with the timestamp we built
    stamps = [ln.split(" ", 1)[0] for ln in lines if re.match(r"\d{10}\.\d{9} ", ln)]
    want = [f"{r[0] // 10**9}.{r[0] % 10**9:09d}" for r in built[name].records]
    assert stamps == want


@pytest.mark.tcpdump
def test_snaplen_limited_sll2_file():
    """linux_sll2.pcap was captured 'with -s 128': the header says 128 and tcpdump compiles
    `ret #128` for it (savefile semantics)."""
    r = _tcpdump("-r", str(PCAPS / "linux_sll2.pcap"), "-d", "ip")
    assert "snapshot length 128" in r.stderr
    assert "ret      #128" in r.stdout


FEATURE_CASES = sorted((name, expr) for name in LINKTYPES
                       for expr in ("vlan", "ip6", "ip[6:2] & 0x1fff != 0", "arp")
                       if not (expr == "vlan" and LINKTYPES[name][0] != 1)
                       and not (expr == "arp" and LINKTYPES[name][0] in (0, 101)))


@pytest.mark.tcpdump
@pytest.mark.parametrize("name,expr", FEATURE_CASES)
def test_feature_counts_match_tcpdump(name, expr, built):
    want = built[name].expected[expr]
    assert want > 0, f"{name} has no packet for {expr!r}"
    assert _count(PCAPS / name, expr) == want


@pytest.mark.tcpdump
def test_readme_demo_expression_is_interesting():
    """`tcp port 80 and not host 10.0.0.1` keeps some port-80 packets and drops others."""
    p = PCAPS / "sample.pcap"
    all80 = _count(p, "tcp port 80")
    kept = _count(p, "tcp port 80 and not host 10.0.0.1")
    assert 0 < kept < all80
    assert _count(p, "tcp port 80 and host 10.0.0.1") == all80 - kept


def _pcapng_blocks(data: bytes):
    """(type, body) of each block of a little-endian pcapng file."""
    off = 0
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        yield btype, data[off + 8:off + blen - 4]
        off += blen


def test_pcapng_has_two_nanosecond_ethernet_interfaces(built):
    data = (PCAPS / "sample.pcapng").read_bytes()
    assert data[8:12] == b"\x4d\x3c\x2b\x1a"      # little-endian byte-order magic
    idbs = [body for t, body in _pcapng_blocks(data) if t == 1]
    assert len(idbs) == 2
    for body in idbs:
        assert struct.unpack_from("<H", body, 0)[0] == 1          # LINKTYPE_ETHERNET
        assert b"\x09\x00\x01\x00\x09" in body                    # if_tsresol = 10^-9
    used = [struct.unpack_from("<I", body, 0)[0] for t, body in _pcapng_blocks(data) if t == 6]
    assert used == [r[3] for r in built["sample.pcapng"].records]
    assert set(used) == {0, 1}


# --- bench/gen_capture.py: the synthetic big-capture generator -----------------------

GEN_PACKETS = 20_000


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 20k-packet capture from bench/gen_capture.py, made twice with the same seed."""
    out = tmp_path_factory.mktemp("gen")
    paths = [out / "a.pcap", out / "b.pcap"]
    for p in paths:
        r = subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), str(p),
                            "--packets", str(GEN_PACKETS), "--seed", "5"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return paths


def test_gen_capture_is_deterministic(synthetic):
    assert synthetic[0].read_bytes() == synthetic[1].read_bytes()


def test_gen_capture_reader_sees_all_and_some_truncated(synthetic):
    from bpfkit.pcap import read_capture
    b = read_capture(synthetic[0])
    assert len(b) == GEN_PACKETS and b.linktype == 1
    assert (b.caplen < b.wirelen).sum() > 0
    assert b.wirelen.max() <= 1518 and b.caplen.min() >= 42
    assert (b.ts_ns[1:] > b.ts_ns[:-1]).all()


@pytest.mark.tcpdump
def test_gen_capture_checksums_correct_per_tcpdump(synthetic):
    """tcpdump -vv verifies IPv4 header and TCP/UDP/ICMP checksums where the whole packet
    was captured: the vectorised checksums must all say (correct)."""
    r = _tcpdump("-r", str(synthetic[0]), "-n", "-vv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(correct)") > GEN_PACKETS // 2
    assert "incorrect" not in r.stdout
    assert "bad cksum" not in r.stdout


@pytest.mark.tcpdump
@pytest.mark.parametrize("expr,lo,hi", [
    # (share of packets) bounds from the model in gen_capture.py's docstring, with slack
    ("host 192.168.1.100 and tcp port 45000", 0.27, 0.33),   # the elephant: 30%
    ("vlan", 0.01, 0.10),
    ("ip6", 0.05, 0.25),
    ("ip[6:2] & 0x1fff != 0", 0.001, 0.03),                  # later IPv4 fragments
    ("arp", 0.001, 0.03),
    ("udp port 53", 0.03, 0.25),
    ("tcp[tcpflags] & tcp-syn != 0", 0.005, 0.06),
])
def test_gen_capture_mix(synthetic, expr, lo, hi):
    n = _count(synthetic[0], expr)
    assert lo * GEN_PACKETS <= n <= hi * GEN_PACKETS, n
