"""Differential tests of the capture reader against the oracles, on every capture of
../shared/pcaps/tcpdump-tests (pcap and pcapng):

* libpcap 1.10.3 itself (ctypes, tests/oracles.py): every packet's timestamp in ns,
  caplen, wire length and bytes, and whether reading ends with an error, must be equal;
* tcpdump 4.99.3: `tcpdump --time-stamp-precision=nano -r FILE -w OUT` must write the
  same packets, link type and snapshot length that bpfkit reads (tcpdump writes classic
  pcap with 32-bit time fields, so seconds are compared modulo 2^32);
* the lockstep walker (chain.py) forced onto tiny lanes gives what the one-record-at-a-
  time walker gives.
"""
from __future__ import annotations

import os
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import oracles
import pcap_craft
from bpfkit.pcap import chain, linktypes
from bpfkit.pcap.reader import CaptureReader

NS = 1_000_000_000


def corpus(shared_dir) -> list[str]:
    d = shared_dir / "pcaps" / "tcpdump-tests"
    files = sorted(str(p) for p in d.iterdir()
                   if p.suffix in (".pcap", ".pcapng") and p.is_file())
    assert len(files) >= 800, f"expected the 830 tcpdump test captures in {d}"
    return files


def read_ours(path: str, **kw):
    """(reader, [(ts_ns, caplen, wirelen, bytes)], [linktype per packet])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CaptureReader(path, **kw)
        pk, lts = [], []
        for b in r:
            ts, cap, wl = b.ts_ns.tolist(), b.caplen.tolist(), b.wirelen.tolist()
            for i in range(len(b)):
                pk.append((ts[i], cap[i], wl[i], bytes(b.packet(i))))
                lts.append(b.linktype)
    return r, pk, lts


# Files libpcap stops on where bpfkit reads on by design (pcapng.py): none of the corpus
# files is one of them; crafted ones are tested in test_pcap_pcapng.py.
BEYOND_LIBPCAP = ("an interface has a type", "an interface has a snapshot length",
                  "the file has sections with different byte orders")


@pytest.mark.tcpdump
def test_every_capture_equals_libpcap(shared_dir):
    files = corpus(shared_dir)
    counts = {"identical": 0, "refused by both at open": 0, "error after same records": 0}
    mismatches = []
    for path in files:
        lp = oracles.libpcap_read(path)
        r, ours, _ = read_ours(path)
        theirs = [(pcap_craft.int64(ts), cap, wl, data) for ts, cap, wl, data in lp.packets]
        if lp.open_error is not None:
            if ours or not r.problems:
                mismatches.append((path, "libpcap refuses it at open", lp.open_error,
                                   len(ours), [str(p) for p in r.problems]))
            else:
                counts["refused by both at open"] += 1
            continue
        if ours != theirs:
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                         min(len(ours), len(theirs)))
            mismatches.append((path, "packets differ", f"first at {first}",
                               len(ours), len(theirs)))
            continue
        if bool(lp.error) != bool(r.problems):
            mismatches.append((path, "error differs", lp.error, [str(p) for p in r.problems]))
            continue
        if lp.error:
            assert r.problems[0].records == len(ours)
            counts["error after same records"] += 1
        else:
            counts["identical"] += 1
        # the reader's link type and snapshot length are libpcap's (DLT, pcap_snapshot)
        assert linktypes.dlt_of(r.linktype) == lp.dlt, path
        assert r.snaplen == lp.snapshot, path
    print(f"\n{len(files)} captures vs libpcap {oracles.libpcap_version()}: {counts}")
    assert not mismatches, mismatches[:10]


def _tcpdump_write(path: str, out: str):
    return subprocess.run(["tcpdump", "--time-stamp-precision=nano", "-r", path, "-w", out],
                          capture_output=True, text=True)


@pytest.mark.tcpdump
def test_every_capture_equals_tcpdump_w(shared_dir, tmp_path):
    files = corpus(shared_dir)
    outs = {p: str(tmp_path / (os.path.basename(p) + ".out")) for p in files}
    with ThreadPoolExecutor(max_workers=8) as ex:
        runs = dict(zip(files, ex.map(lambda p: _tcpdump_write(p, outs[p]), files)))
    counts = {"same packets": 0, "tcpdump refuses, bpfkit too": 0,
              "tcpdump cannot write the link type": 0, "stopped by both at the same record": 0,
              "with fractions tcpdump truncates to 32 bits": 0}
    mismatches = []
    for path in files:
        run = runs[path]
        r, ours, _ = read_ours(path)
        out = outs[path]
        if not os.path.exists(out) or os.path.getsize(out) < 24:
            if "isn't supported in savefiles" in run.stderr or "unknown data link" in run.stderr:
                # tcpdump -w cannot map this DLT back to a LINKTYPE (dlt_to_linktype)
                assert linktypes.linktype_of_dlt(linktypes.dlt_of(r.linktype)) is None, path
                counts["tcpdump cannot write the link type"] += 1
            elif ours or not r.problems:
                mismatches.append((path, "tcpdump refused", run.stderr.strip()[-200:],
                                   len(ours)))
            else:
                counts["tcpdump refuses, bpfkit too"] += 1
            continue
        f = pcap_craft.parse_pcap(open(out, "rb").read())
        ext = linktypes.lt_ext(r.linktype) if r.format == "pcap" else 0
        want_lt = linktypes.linktype_of_dlt(linktypes.dlt_of(r.linktype)) | ext
        if (f.linktype, f.snaplen, f.nanos) != (want_lt, r.snaplen, True):
            mismatches.append((path, "header", (f.linktype, f.snaplen), (want_lt, r.snaplen)))
            continue
        if len(f.records) != len(ours):
            mismatches.append((path, "count", len(f.records), len(ours), run.stderr[-200:]))
            continue
        odd_ts = 0
        for (sec, frac, cap, wl, data), (ts, ocap, owl, odata) in zip(f.records, ours):
            if (cap, wl, data) != (ocap, owl, odata):
                mismatches.append((path, "packet", (cap, wl), (ocap, owl)))
                break
            if ((ts // NS - sec) % (1 << 32), ts % NS) == (0, frac):
                continue        # seconds modulo 2^32: pcap_dump writes a bpf_int32
            # A fraction outside [0, 1s) in the file (fuzzed captures) is kept by libpcap
            # as is (tv_usec), and pcap_dump truncates it to 32 bits: then the file's
            # seconds are tcpdump's and the fraction agrees modulo 2^32.
            tv_frac = ts - sec * NS
            if not 0 <= tv_frac < NS and (tv_frac - frac) % (1 << 32) == 0:
                odd_ts += 1
                continue
            mismatches.append((path, "timestamp", (sec, frac), ts))
            break
        counts["with fractions tcpdump truncates to 32 bits"] += bool(odd_ts)
        stopped = "pcap_loop:" in run.stderr
        if stopped != bool(r.problems):
            mismatches.append((path, "error", run.stderr.strip()[-200:],
                               [str(p) for p in r.problems]))
            continue
        counts["stopped by both at the same record" if stopped else "same packets"] += 1
    print(f"\n{len(files)} captures vs tcpdump -w: {counts}")
    assert not mismatches, mismatches[:10]


@pytest.mark.parametrize("lane_bytes", [64, 1024])
def test_lockstep_walker_equals_scalar_on_corpus(shared_dir, monkeypatch, lane_bytes):
    """Every corpus file read with many tiny lanes (guessing, verifying, re-walking)
    gives exactly what the record-by-record reference walk gives."""
    files = corpus(shared_dir)
    differ = []
    for path in files:
        ref_r, ref, _ = read_ours(path, _vector=False)
        with monkeypatch.context() as m:
            m.setattr(chain, "MIN_LANE_BYTES", lane_bytes)
            m.setattr(chain, "PROBE", 2)
            r, got, _ = read_ours(path)
        if got != ref or [str(p) for p in r.problems] != [str(p) for p in ref_r.problems]:
            differ.append(path)
    assert not differ, differ[:10]
