"""Verdicts of compiled filters on real packets, against `tcpdump -r FILE -w OUT EXPR`.

For each link type, every capture of that type (the 830 tcpdump test captures in
../shared/pcaps/tcpdump-tests and the project's pcaps/ samples) is concatenated into one
pcap under /tmp/bpfkit-oracle-cache/verdicts/, with packet i stamped at second i so the
packets tcpdump keeps identify themselves.  LOOP has no capture, so one is derived from
the NULL packets (the 4-byte address family rewritten in network byte order, which is
what DLT_LOOP stores); IPV4/IPV6 also get the RAW packets of their IP version.

Expressions: every corpus expression tcpdump accepts for that link type, plus the
generated expressions of test_compiler_fuzz for it.  Each is compiled with savefile
semantics (what tcpdump -r uses), optimized (against plain `tcpdump -r`) and unoptimized
(against `tcpdump -O -r`), and run with bpfkit.cbpf.vinterp; the packets kept must be
exactly those tcpdump keeps, and bpfkit must reject what tcpdump -r rejects.  (The two
modes really differ: the optimizer drops unneeded loads, so a truncated packet can pass
the optimized program and fail the unoptimized one.)  tcpdump's answers are cached
(keyed by tcpdump version and capture hash).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bpfkit.cbpf.compiler import compile_filter
from bpfkit.errors import BpfError, CompileError, UnsupportedError
from test_compiler_corpus import CACHE_DIR, load_corpus, oracle_answers, tcpdump_version
from test_compiler_fuzz import generated

PROJECT_PCAPS = Path(__file__).resolve().parent.parent / "pcaps"
# file LINKTYPE -> DLT name (pcap-common.c linktype_to_dlt for the ones we support)
LINKTYPE_NAME = {1: "EN10MB", 101: "RAW", 12: "RAW", 0: "NULL", 108: "LOOP",
                 113: "LINUX_SLL", 276: "LINUX_SLL2", 228: "IPV4", 229: "IPV6"}
FILE_LINKTYPE = {"EN10MB": 1, "RAW": 101, "NULL": 0, "LOOP": 108, "LINUX_SLL": 113,
                 "LINUX_SLL2": 276, "IPV4": 228, "IPV6": 229}
GENERATED_PER_DLT = 120


def _packets_by_dlt(shared: Path) -> dict[str, list[tuple[bytes, int]]]:
    import warnings

    from bpfkit.pcap.reader import read_capture
    out: dict[str, list[tuple[bytes, int]]] = {n: [] for n in FILE_LINKTYPE}
    files = sorted((shared / "pcaps" / "tcpdump-tests").iterdir()) + sorted(
        p for p in PROJECT_PCAPS.glob("*") if p.suffix in (".pcap", ".pcapng"))
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = read_capture(f)
        except BpfError:
            continue                 # not a capture, or several link types in one file
        name = LINKTYPE_NAME.get(b.linktype & 0x03FFFFFF)
        if name is None:
            continue
        for i in range(len(b)):
            out[name].append((bytes(b[i]), int(b.wirelen[i])))
    for data, wl in out["NULL"]:
        if len(data) >= 4:
            af = int.from_bytes(data[:4], "little")
            out["LOOP"].append((af.to_bytes(4, "big") + data[4:], wl))
    for data, wl in out["RAW"]:
        if data and data[0] >> 4 == 4:
            out["IPV4"].append((data, wl))
        elif data and data[0] >> 4 == 6:
            out["IPV6"].append((data, wl))
    return out


def _write_pcap(path: Path, linktype: int, packets) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for i, (data, wl) in enumerate(packets):
            f.write(struct.pack("<IIII", i, 0, len(data), wl))
            f.write(data)


def merged_captures(shared: Path) -> dict[str, Path]:
    d = CACHE_DIR / "verdicts"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, pkts in _packets_by_dlt(shared).items():
        h = hashlib.sha256(b"".join(struct.pack("<I", wl) + p for p, wl in pkts)).hexdigest()
        path = d / f"{name}-{h[:16]}.pcap"
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            _write_pcap(tmp, FILE_LINKTYPE[name], pkts)
            os.replace(tmp, path)
        out[name] = path
    return out


def _tcpdump_keeps(args):
    capture, expr, optimize = args
    from bpfkit.pcap.reader import read_capture
    with tempfile.TemporaryDirectory() as td:
        o = Path(td) / "out.pcap"
        r = subprocess.run(["tcpdump"] + ([] if optimize else ["-O"]) +
                           ["-r", str(capture), "-w", str(o), "--", expr],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return [r.returncode, r.stderr.strip().split("\n")[-1], None]
        b = read_capture(o)
        return [0, "", [int(t // 1_000_000_000) for t in b.ts_ns]]


def tcpdump_verdicts(jobs) -> dict:
    """{(capture, expr, optimize): [rc, message, kept packet indices]} from
    `tcpdump [-O] -r capture -w out expr`, cached."""
    path = CACHE_DIR / f"verdicts-{tcpdump_version()}.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = lambda j: f"{Path(j[0]).name}\x00{int(j[2])}\x00{j[1]}"  # noqa: E731
    todo = [j for j in dict.fromkeys(jobs) if key(j) not in cache]
    if todo:
        with concurrent.futures.ThreadPoolExecutor(max(4, 2 * (os.cpu_count() or 2))) as ex:
            for j, ans in zip(todo, ex.map(_tcpdump_keeps, todo)):
                cache[key(j)] = ans
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    return {j: cache[key(j)] for j in jobs}


def expressions_by_dlt(shared: Path) -> dict[str, list[str]]:
    corpus = load_corpus(shared)
    dead = oracle_answers([(d, s, False, e) for d, s, e in corpus])
    out: dict[str, list[str]] = {n: [] for n in FILE_LINKTYPE}
    for d, s, e in corpus:
        if dead[(d, s, False, e)][0] == 0:
            out[d].append(e)
    counts = {n: 0 for n in FILE_LINKTYPE}
    for d, e in generated(40 * GENERATED_PER_DLT):
        if counts[d] < GENERATED_PER_DLT:
            out[d].append(e)
            counts[d] += 1
    return {d: list(dict.fromkeys(v)) for d, v in out.items()}


def run(shared: Path, optimize: bool):
    """Compile every expression (savefile semantics, optimized or not) and compare the
    packets kept with `tcpdump -r` (optimize) or `tcpdump -O -r` (not)."""
    from bpfkit.cbpf import vinterp
    from bpfkit.pcap.reader import read_capture
    caps = merged_captures(shared)
    exprs = expressions_by_dlt(shared)
    answers = tcpdump_verdicts([(caps[d], e, optimize) for d in exprs for e in exprs[d]])
    rows, problems = {}, []
    for d, elist in exprs.items():
        batch = read_capture(caps[d])
        stat = dict(exprs=len(elist), packets=len(batch), verdict_identical=0, both_reject=0,
                    unsupported=0)
        for e in elist:
            rc, msg, kept = answers[(caps[d], e, optimize)]
            try:
                prog = compile_filter(e, d, savefile=True, optimize=optimize)
            except UnsupportedError:
                stat["unsupported"] += 1
                continue
            except CompileError as err:
                if rc != 0:
                    stat["both_reject"] += 1
                else:
                    problems.append((d, e, "bpfkit rejects, tcpdump -r accepts", str(err)))
                continue
            if rc != 0:
                problems.append((d, e, "tcpdump -r rejects, bpfkit accepts", msg))
                continue
            mine = np.flatnonzero(vinterp.run_batch(prog, batch)).tolist()
            if mine == kept:
                stat["verdict_identical"] += 1
            else:
                problems.append((d, e, "verdicts differ",
                                 f"tcpdump keeps {len(kept)}, bpfkit {len(mine)}"))
        rows[d] = stat
    return rows, problems


@pytest.mark.tcpdump
@pytest.mark.parametrize("optimize", [False, True], ids=["-O", "optimized"])
def test_verdicts_match_tcpdump_r(shared_dir, optimize):
    rows, problems = run(shared_dir, optimize)
    print("\n" + ("tcpdump -r (optimized)" if optimize else "tcpdump -O -r"))
    print(f"{'DLT':<11} {'packets':>7} {'exprs':>6} {'verdict=':>8} {'both rej':>8} "
          f"{'unsupp.':>7}")
    for d, s in rows.items():
        print(f"{d:<11} {s['packets']:>7} {s['exprs']:>6} {s['verdict_identical']:>8} "
              f"{s['both_reject']:>8} {s['unsupported']:>7}")
    assert not problems, problems[:10]
    for d, s in rows.items():
        assert s["packets"] > 0, d
        assert s["verdict_identical"] + s["both_reject"] + s["unsupported"] == s["exprs"]
        # unsupported constructs are rare and never counted as passes
        assert s["unsupported"] <= s["exprs"] // 10, (d, s)


if __name__ == "__main__":
    import time
    t = time.time()
    for opt in (False, True):
        r, p = run(Path(__file__).resolve().parent.parent.parent / "shared", opt)
        print(json.dumps(r, indent=1))
        for x in p[:30]:
            print(x)
        print(len(p), "problems", f"{time.time() - t:.1f} s")


@pytest.mark.tcpdump
@pytest.mark.parametrize("optimize", [False, True], ids=["-O", "optimized"])
def test_savefile_code_identical(shared_dir, optimize):
    """With savefile semantics (`tcpdump [-O] -r CAPTURE -ddd EXPR`: the program tcpdump
    -r runs), bpfkit's program is instruction-for-instruction libpcap's, for every
    expression of the verdict test that both accept — NULL/LOOP `ip6` with the three
    BSD AF_INET6 values included."""
    caps = merged_captures(shared_dir)
    exprs = expressions_by_dlt(shared_dir)
    keys = [(str(caps[d]), 262144, optimize, e) for d in exprs for e in exprs[d]]
    answers = oracle_answers(keys)
    from test_compiler_fuzz import classify, ours
    counts: dict[str, int] = {}
    bad = []
    for d in exprs:
        for e in exprs[d]:
            k = classify(ours(e, d, savefile=True, optimize=optimize),
                         answers[(str(caps[d]), 262144, optimize, e)])
            counts[k] = counts.get(k, 0) + 1
            if k not in ("identical", "rejected-same-message", "accepted-but-unsup"):
                bad.append((d, e, k))
    print("\nsavefile semantics:", counts)
    assert not bad, bad[:10]
    assert counts.get("accepted-but-unsup", 0) <= 5


@pytest.mark.tcpdump
def test_libpcap_optimizer_miscompile_is_reproduced(tmp_path):
    """libpcap 1.10.3's optimizer does not recompute dominators after an or/and
    pull-up (master does), and miscompiles `port 80 and 443 or 8080 or port 80`: a TCP
    packet from port 80 to port 1 matches the last `port 80`, yet the optimized program
    rejects it.  The contract is 1.10.3's verdicts, so bpfkit's optimizer reproduces the
    bug; the unoptimized program (and `tcpdump -O`) keeps the packet."""
    from bpfkit.cbpf import vinterp
    from bpfkit.pcap.batch import PacketBatch
    import struct as st
    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = st.pack(">HHIIBBHHH", 80, 1, 0, 0, 0x50, 0x02, 1024, 0, 0)
    pkt = ip + tcp
    cap = tmp_path / "one.pcap"
    _write_pcap(cap, FILE_LINKTYPE["IPV4"], [(pkt, len(pkt))])
    expr = "port 80 and 443 or 8080 or port 80"
    optimized = _tcpdump_keeps((cap, expr, True))
    unoptimized = _tcpdump_keeps((cap, expr, False))
    assert optimized[2] == [] and unoptimized[2] == [0]      # libpcap's own disagreement
    batch = PacketBatch.from_packets([pkt], linktype=228)
    assert vinterp.run_batch(compile_filter(expr, "IPV4"), batch).tolist() == [0]
    assert vinterp.run_batch(compile_filter(expr, "IPV4", optimize=False), batch)[0] != 0
