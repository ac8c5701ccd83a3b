"""bpfkit.translate.compare and `bpfkit compare`: every pair agrees on real captures;
disagreements (provoked by swapping in a wrong reference) are counted, listed and give
exit status 1; a missing translation is reported as unavailable.  With the kernel
(`kernel` marker): the three kernel pairs agree on the sample capture, packets the
kernel refuses are skipped per reason exactly as tests/oracles.py's calls refuse them,
and an unavailable kernel is listed (auto) or an error (yes)."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import oracles
from bpfkit import kernel as bkernel
from bpfkit.cbpf.isa import SKF_AD_OFF, SKF_AD_RANDOM
from bpfkit.cbpf.program import Program
from bpfkit.cli.main import main
from bpfkit.errors import BpfError
from bpfkit.pcap import read_capture
from bpfkit.pcap.batch import PacketBatch
from bpfkit.translate import compare
from bpfkit.translate.compare import compare_batch
from bpfkit.translate.socket import translate_socket
from bpfkit.translate.xdp import translate_xdp

from cbpf_gen import tcpdump_program

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pcaps" / "sample.pcap"
EXPRS = ["tcp port 80", "udp or icmp", "ip6 and tcp", "len > 100 and ether broadcast",
         "tcp[tcpflags] & tcp-syn != 0", "vlan and ip"]


@pytest.mark.tcpdump
@pytest.mark.parametrize("engine", ["vector", "interp"])
@pytest.mark.parametrize("expr", EXPRS)
def test_all_pairs_agree_on_sample(expr, engine):
    batch = read_capture(str(SAMPLE))
    rep = compare_batch(tcpdump_program(expr), batch, engine=engine)
    assert rep.ok and rep.packets == len(batch) > 1000
    assert [p.name for p in rep.pairs] == ["socket", "xdp"] + (
        VECTOR_PAIRS if engine == "vector" else [])
    assert rep.pairs[1].right == ("vector xdp" if engine == "vector" else "ebpf xdp")
    for p in rep.pairs:
        assert p.unavailable is None
        assert p.compared + p.skipped == len(batch) and p.agreed == p.compared


@pytest.mark.tcpdump
def test_disagreements_listed(monkeypatch):
    batch = read_capture(str(SAMPLE))
    monkeypatch.setattr(compare, "run_socket", lambda *a: 12345)
    rep = compare_batch(tcpdump_program("tcp"), batch, max_listed=3)
    sock = rep.pairs[0]
    assert not rep.ok and sock.agreed == 0 and sock.compared == len(batch)
    assert [d.index for d in sock.disagreements] == [0, 1, 2]
    assert all(d.left == 12345 for d in sock.disagreements)
    assert rep.pairs[1].ok


@pytest.mark.tcpdump
def test_xdp_pair_on_the_vector_engine_reports_its_disagreements(monkeypatch):
    """With engine="vector" the xdp pair's right side is the vector engine's verdicts:
    a wrong verdict there is a listed disagreement (and a budget fault a skip)."""
    batch = read_capture(str(SAMPLE))
    real = compare._vector_xdp_retvals

    def wrong(interp, b):
        got, faults = real(interp, b)
        first = min(got)
        got[first] ^= 1                      # XDP_PASS <-> XDP_DROP on one frame
        faults[first + 1] = "instruction budget of 1 exhausted"
        return got, faults
    monkeypatch.setattr(compare, "_vector_xdp_retvals", wrong)
    rep = compare_batch(tcpdump_program("tcp"), batch, engine="vector")
    xdp = rep.pairs[1]
    assert not xdp.ok and xdp.compared - xdp.agreed == 1
    assert [d.index for d in xdp.disagreements] == [0]
    assert ("bpfkit: instruction budget of 1 exhausted", 1) in xdp.skip_reasons


def test_unavailable_translation():
    batch = read_capture(str(SAMPLE))
    # SKF_AD_HATYPE has no eBPF equivalent; libpcap semantics: an out-of-bounds load
    prog = Program([(0x20, 0, 0, (SKF_AD_OFF + 28) & 0xFFFFFFFF), (0x06, 0, 0, 1)])
    rep = compare_batch(prog, batch)
    assert "SKF_AD_HATYPE" in rep.pairs[0].unavailable and rep.pairs[0].compared == 0
    assert rep.pairs[1].ok and rep.pairs[1].compared > 0


def test_cli(capsys, tmp_path):
    assert main(["compare", "-r", str(SAMPLE), "--kernel", "no", "--json", "tcp", "port",
                 "80"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and [p["pair"] for p in out["pairs"]] == ["socket", "xdp"] + VECTOR_PAIRS
    assert main(["compare", "-r", str(SAMPLE), "--kernel", "no", "--engine", "interp",
                 "--json", "tcp"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and [p["pair"] for p in out["pairs"]] == ["socket", "xdp"]
    assert main(["compare", "-r", str(SAMPLE), "udp"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["pair", "left", "right"]


# --- the kernel pairs ---------------------------------------------------------------

VECTOR_PAIRS = ["vector-socket", "vector-xdp"]
KERNEL_PAIRS = ["kernel-cbpf", "kernel-socket", "kernel-xdp"]
KERNEL_EXPRS = ["tcp port 80", "udp or icmp", "ip6 and tcp", "vlan and ip",
                "tcp[tcpflags] & tcp-syn != 0"]
TESTRUN_ETH = bytes(12) + b"\x88\xb5"


def _oracle_delivered(prog, pkts):
    """Per packet, the length an AF_UNIX receiver gets with the program attached via
    oracles.attach_filter (None when dropped)."""
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        rx.setblocking(False)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        oracles.attach_filter(rx, prog.as_tuples())
        out = []
        for p in pkts:
            tx.send(p)
            try:
                out.append(len(rx.recv(1 << 17)))
            except BlockingIOError:
                out.append(None)
        return out
    finally:
        tx.close()
        rx.close()


@pytest.mark.kernel
@pytest.mark.tcpdump
@pytest.mark.parametrize("expr", KERNEL_EXPRS)
def test_kernel_pairs_agree_on_sample(expr):
    batch = read_capture(str(SAMPLE))
    prog = tcpdump_program(expr)
    rep = compare_batch(prog, batch, kernel=True)
    assert [p.name for p in rep.pairs] == ["socket", "xdp"] + VECTOR_PAIRS + KERNEL_PAIRS
    assert rep.ok
    # every sample frame is 42..1538 bytes: nothing is refused, every packet compared
    for p in rep.pairs:
        assert p.unavailable is None and p.error is None
        assert p.compared == p.agreed == len(batch) and p.skipped == 0
    # not a trivial agreement: the oracle's kernel both drops and delivers packets
    got = _oracle_delivered(prog, [bytes(batch[i]) for i in range(len(batch))])
    assert 0 < sum(g is None for g in got) < len(batch), expr


@pytest.mark.kernel
@pytest.mark.tcpdump
def test_cli_kernel_yes_on_sample(capsys):
    assert main(["compare", "-r", str(SAMPLE), "--kernel", "yes", "--json", "tcp"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and [p["pair"] for p in out["pairs"]] == ["socket", "xdp"] + VECTOR_PAIRS + KERNEL_PAIRS
    assert all(p["compared"] == out["packets"] and p["error"] is None for p in out["pairs"])
    assert main(["compare", "-r", str(SAMPLE), "udp"]) == 0      # auto: kernel pairs too
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["socket", "xdp"] + VECTOR_PAIRS + KERNEL_PAIRS


@pytest.mark.kernel
def test_kernel_refusals_skipped_per_reason():
    """Frames of 10..5000 bytes, one IPv4 frame cut inside its IP header: the counts of
    skipped packets are the refusals oracles.bpf_prog_test_run meets on the same
    frames (the skb run behind the 0x88b5 header; XDP on the frame itself)."""
    pkts = [bytes(10), bytes(12) + b"\x08\x00" + bytes(10), bytes(13), bytes(14),
            bytes(60), bytes(3520), bytes(3521), bytes(3698), bytes(3699), bytes(5000)]
    batch = PacketBatch.from_packets(pkts)
    prog = Program([(0x30, 0, 0, 20), (0x15, 0, 1, 0), (0x06, 0, 0, 0xFFFFFFFF),
                    (0x06, 0, 0, 0)])
    rep = compare_batch(prog, batch, kernel="yes")
    pairs = {p.name: p for p in rep.pairs}
    assert rep.ok
    refused = {}
    for name, ptype, frame_of in (
            ("kernel-socket", oracles.BPF_PROG_TYPE_SOCKET_FILTER, lambda p: TESTRUN_ETH + p),
            ("kernel-xdp", oracles.BPF_PROG_TYPE_XDP, lambda p: p)):
        tr = translate_socket(prog) if name == "kernel-socket" else translate_xdp(prog)
        fd = oracles.bpf_prog_load(tr.to_bytes(), ptype)
        n = 0
        try:
            for p in pkts:
                try:
                    oracles.bpf_prog_test_run(fd, frame_of(p), out_size=8192)
                except OSError as e:
                    assert e.errno == 22
                    n += 1
        finally:
            os.close(fd)
        refused[name] = n
    # the skb run: 3699 + 14 and 5000 + 14 bytes are over its limit (3712); nothing
    # else, since the 0x88b5 header keeps the IPv4 check away
    assert pairs["kernel-socket"].skipped == refused["kernel-socket"] == 2
    assert pairs["kernel-socket"].skip_reasons == (("BPF_PROG_TEST_RUN: EINVAL (Invalid "
                                                    "argument)", 2),)
    assert pairs["kernel-socket"].compared == len(pkts) - 2
    # XDP: the two frames under 14 bytes are refused by the kernel; bpfkit does not
    # send the four over 3520 bytes (multi-buffer) at all
    assert refused["kernel-xdp"] == 2
    assert dict(pairs["kernel-xdp"].skip_reasons) == {
        "frame under 14 bytes (XDP test run: EINVAL)": 2,
        "frame over 3520 bytes (multi-buffer XDP)": 4}
    # AF_UNIX takes every datagram: the classic pair compares all
    assert pairs["kernel-cbpf"].compared == len(pkts) and pairs["kernel-cbpf"].skipped == 0


@pytest.mark.kernel
@pytest.mark.tcpdump
@pytest.mark.parametrize("target,pair", [
    ("run_socket", "kernel-cbpf"),
    ("progtypes.run_socket_filter", "kernel-socket"),
    ("progtypes.run_xdp", "kernel-xdp"),
])
def test_kernel_disagreements_listed(monkeypatch, target, pair):
    """Swap bpfkit's side of one kernel pair for a wrong one: that pair, and only it
    among the kernel pairs, reports every packet."""
    from bpfkit.ebpf import progtypes

    class Wrong:
        retval = 12345
        fault = None

    if target == "run_socket":
        # 7: the datagram would be trimmed to 7 bytes; the kernel delivers all of each
        # (42..1538-byte) packet or drops it, so every packet disagrees
        monkeypatch.setattr(compare, "run_socket", lambda *a, **k: 7)
    else:
        monkeypatch.setattr(progtypes, target.split(".")[1], lambda *a, **k: Wrong)
    batch = read_capture(str(SAMPLE))[:50]
    rep = compare_batch(tcpdump_program("tcp"), batch, max_listed=4, kernel=True)
    res = {p.name: p for p in rep.pairs}
    assert not rep.ok and res[pair].agreed == 0 and res[pair].compared == 50
    assert [d.index for d in res[pair].disagreements] == [0, 1, 2, 3]
    assert all(res[n].ok for n in KERNEL_PAIRS if n != pair)


@pytest.mark.kernel
def test_random_makes_kernel_pairs_unavailable():
    prog = Program([(0x20, 0, 0, (SKF_AD_OFF + SKF_AD_RANDOM) & 0xFFFFFFFF),
                    (0x06, 0, 0, 1)])
    rep = compare_batch(prog, PacketBatch.from_packets([bytes(60)]), kernel=True)
    for p in rep.pairs[4:]:
        assert "SKF_AD_RANDOM" in p.unavailable and p.compared == 0


@pytest.mark.kernel
def test_program_refused_by_both():
    prog = Program([(0x04, 0, 0, 0)])             # no ret: both validators refuse
    rep = compare_batch(prog, PacketBatch.from_packets([bytes(60)]), kernel=True)
    cb = rep.pairs[4]
    assert cb.name == "kernel-cbpf" and "SO_ATTACH_FILTER: EINVAL" in cb.unavailable
    assert cb.error is None


def test_kernel_unavailable(monkeypatch, capsys):
    monkeypatch.setattr(bkernel, "available", lambda: "no bpf(2) here (test)")
    batch = read_capture(str(SAMPLE))
    prog = Program([(0x06, 0, 0, 1)])
    rep = compare_batch(prog, batch, kernel="auto")
    assert [p.name for p in rep.pairs] == ["socket", "xdp"] + VECTOR_PAIRS + KERNEL_PAIRS
    for p in rep.pairs[4:]:
        assert p.unavailable == "no bpf(2) here (test)" and p.compared == 0
    assert rep.ok
    with pytest.raises(bkernel.UnavailableError, match="no bpf"):
        compare_batch(prog, batch, kernel=True)
    with pytest.raises(BpfError):
        compare_batch(prog, batch, kernel="maybe")
    assert main(["compare", "-r", str(SAMPLE), "--kernel", "yes", "udp"]) == 2
    assert "no bpf(2) here (test)" in capsys.readouterr().err
    assert main(["compare", "-r", str(SAMPLE), "udp"]) == 0
    assert "unavailable: no bpf(2) here (test)" in capsys.readouterr().out


# --- protochain: the XDP pairs run its loop; frames libpcap never leaves are skipped -----

@pytest.mark.kernel
@pytest.mark.tcpdump
@pytest.mark.parametrize("expr", ["protochain 17", "ip6 protochain 17", "ip protochain 17"])
def test_protochain_xdp_pairs(tmp_path, capsys, expr):
    from pcap_craft import PROTOCHAIN_FRAMES, pcap
    path = tmp_path / "raw.pcap"
    path.write_bytes(pcap([(1, i, f) for i, (_, f, *_) in enumerate(PROTOCHAIN_FRAMES)],
                          linktype=101))                   # LINKTYPE_RAW
    batch = read_capture(str(path))
    version = {"ip": 4, "ip6": 6}.get(expr.split()[0])
    looping = sum(d17 is None and version in (None, v) for _, _, v, d17, _ in PROTOCHAIN_FRAMES)
    assert looping == {None: 3, 4: 1, 6: 2}[version]
    rep = compare_batch(tcpdump_program(expr, "RAW"), batch, kernel=True)
    pairs = {p.name: p for p in rep.pairs}
    assert rep.ok
    # the kernel's classic validator refuses backward jumps, so do the socket pairs
    for name in ("socket", "kernel-cbpf", "kernel-socket"):
        assert "jump" in pairs[name].unavailable and pairs[name].compared == 0
    n = len(PROTOCHAIN_FRAMES)
    for name, why in (("xdp", "backward jumps"), ("kernel-xdp", "instruction budget")):
        p = pairs[name]
        assert p.compared == p.agreed == n - looping and p.skipped == looping, name
        assert sum(c for r, c in p.skip_reasons if why in r) == looping, p.skip_reasons
    assert main(["compare", "-r", str(path), "--kernel", "yes", "--json", expr]) == 0
    out = json.loads(capsys.readouterr().out)
    # socket, xdp, vector-socket, vector-xdp, kernel-cbpf, kernel-socket, kernel-xdp
    assert out["ok"] and [p["compared"] for p in out["pairs"]] == \
        [0, n - looping, 0, n - looping, 0, 0, n - looping]
