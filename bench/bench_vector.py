#!/usr/bin/env python3
"""Vector engine throughput against the reference eBPF interpreter (issue 7).

    python3 bench/gen_capture.py /tmp/vec1m.pcap --packets 1000000 --bytes-target 300M
    python3 bench/bench_vector.py /tmp/vec1m.pcap [--runs 3] [--interp-packets 20000]

Three programs, each over the capture held in memory:
  * socket  `tcp port 80` compiled (bpfkit.cbpf.compiler) and translated in the kernel's
            socket-filter layout (LD_ABS); each frame is given a 14-byte dummy Ethernet
            header (type 0x88b5) in front, as `bpfkit compare` does, so LD_ABS offset 0 is
            the frame's first byte (the test run's skb->data is after the mac header);
  * xdp     the same expression translated to XDP (direct packet access, bounds guards);
  * flows   bench/xdp_flowcount.c built with clang: a HASH map keyed by the IPv4
            5-tuple, one insert per new flow (BPF_NOEXIST), atomic adds after; the
            capture's elephant flow plus Zipf-distributed mouse flows.
The vector engine runs every packet (median of --runs runs, fresh maps each run); the
interpreter runs the first --interp-packets packets (once; its rate is what matters), and
the vector engine's results on those packets must equal the interpreter's (return values,
and for `flows` the map contents in iteration order) or the script exits non-zero.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bpfkit.cbpf.compiler import compile_filter                    # noqa: E402
from bpfkit.ebpf import progtypes                                   # noqa: E402
from bpfkit.ebpf.elf import open_elf                                # noqa: E402
from bpfkit.ebpf.runner import run_batch                            # noqa: E402
from bpfkit.ebpf.vector import VectorProgram, batch_input           # noqa: E402
from bpfkit.pcap import read_capture                                # noqa: E402
from bpfkit.pcap.batch import PacketBatch                           # noqa: E402
from bpfkit.translate.socket import translate_socket                # noqa: E402
from bpfkit.translate.xdp import translate_xdp                      # noqa: E402

HEAD = 64       # bytes of PacketBatch.head, as bpfkit filter reads them
SHIM = np.frombuffer(bytes(12) + b"\x88\xb5", np.uint8)


def shimmed(batch: PacketBatch) -> dict:
    """The frames with the 14-byte dummy header in front, as engine input columns."""
    n = len(batch)
    cap = np.asarray(batch.caplen, np.int64)
    new_len = cap + 14
    starts = np.cumsum(new_len) - new_len
    buf = np.zeros(int(new_len.sum()), np.uint8)
    buf[(starts[:, None] + np.arange(14)).ravel()] = np.tile(SHIM, n)
    total = int(cap.sum())
    firsts = np.cumsum(cap) - cap
    within = np.arange(total, dtype=np.int64) - np.repeat(firsts, cap)
    buf[np.repeat(starts + 14, cap) + within] = batch.buf[np.repeat(
        np.asarray(batch.offset, np.int64), cap) + within]
    inp = {"buf": buf, "offset": starts, "caplen": new_len,
           "ts_ns": np.asarray(batch.ts_ns, np.int64), "index": np.arange(n)}
    if batch.head is not None:
        # the reader's head cache, shifted behind the shim like the frames
        head = np.empty_like(batch.head)
        head[:, :14] = SHIM
        head[:, 14:] = batch.head[:, :-14]
        inp["head"] = head
    return inp


def plain(batch: PacketBatch, lanes: np.ndarray) -> dict:
    return batch_input(batch, lanes)


def timed(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_stateless(name, insns, ptype, inp, n_interp, runs):
    interp = progtypes.load(insns, ptype)
    vp = VectorProgram(interp, ptype)
    assert vp.unsupported_reason is None, vp.unsupported_reason
    n = len(inp["offset"])
    ws = 1 << 18 if ptype == 1 else 1 << 14
    tv, out = timed(lambda: vp.run(inp, wave_size=ws), runs)
    bare = {k: v for k, v in inp.items() if k != "head"}
    tb, out_b = timed(lambda: vp.run(bare, wave_size=ws), runs)
    if out_b.retval.tolist() != out.retval.tolist():
        sys.exit(f"{name}: the head cache changed the results")
    run_one = progtypes.run_socket_filter if ptype == 1 else progtypes.run_xdp
    buf = inp["buf"]
    t = time.perf_counter()
    ref = [run_one(interp, buf[o:o + c].tobytes()).retval
           for o, c in zip(inp["offset"][:n_interp].tolist(), inp["caplen"][:n_interp].tolist())]
    ti = time.perf_counter() - t
    got = (out.retval[:n_interp] & np.uint64(0xFFFFFFFF)).tolist()
    if got != ref:
        sys.exit(f"{name}: MISMATCH between the vector engine and the interpreter")
    return n, tv, n_interp, ti, tb


def bench_flows(batch, n_interp, runs):
    obj = ROOT / "bench" / "xdp_flowcount.c"
    out = Path(tempfile.gettempdir()) / "bpfkit-bench-flowcount.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(obj), "-o", str(out)], check=True)
    o = open_elf(out)
    prog = o.program("count_flows")
    tv, res = timed(lambda: run_batch(prog, batch, maps=o.create_maps(), engine="vector"),
                    runs)
    assert res.engine == "vector", res.engine
    sub = batch[:n_interp]
    t = time.perf_counter()
    ref = run_batch(prog, sub, maps=o.create_maps(), engine="interp")
    ti = time.perf_counter() - t
    vec = run_batch(prog, sub, maps=o.create_maps(), engine="vector")
    if vec.retval.tolist() != ref.retval.tolist() or vec.dump_maps() != ref.dump_maps():
        sys.exit("flows: MISMATCH between the vector engine and the interpreter")
    flows = len(res.dump_maps()["flows"])
    return len(batch), tv, n_interp, ti, flows, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interp-packets", type=int, default=20000)
    ap.add_argument("--only", choices=("socket", "xdp", "flows"), action="append")
    a = ap.parse_args(argv)
    # the batch as the reader gives it to `bpfkit run`: with the head cache (each
    # packet's first 64 bytes, gathered during the record walk); what that costs the
    # reader is printed, and the stateless programs are also timed without it
    t_plain, _ = timed(lambda: read_capture(a.capture), a.runs)
    t_head, batch = timed(lambda: read_capture(a.capture, head=HEAD), a.runs)
    print(f"# {a.capture}: {len(batch):,} packets; load {os.getloadavg()[0]:.1f}; "
          f"median of {a.runs}; read_capture {t_plain:.2f} s, with the {HEAD}-byte head "
          f"cache {t_head:.2f} s", flush=True)
    print("| program | packets | vector (s) | vector pkts/s | interp pkts/s | ratio "
          "| without head cache: vector (s), ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    prog = compile_filter("tcp port 80", 1, 262144, True)
    rows = []
    only = set(a.only or ("socket", "xdp", "flows"))
    if "socket" in only:
        rows.append(("socket `tcp port 80`",) + bench_stateless(
            "socket", translate_socket(prog).insns, 1, shimmed(batch), a.interp_packets,
            a.runs))
    if "xdp" in only:
        lanes = np.flatnonzero((np.asarray(batch.caplen) >= 14)
                               & (np.asarray(batch.caplen) <= 3520))
        rows.append(("xdp `tcp port 80`",) + bench_stateless(
            "xdp", translate_xdp(prog).insns, 6, plain(batch, lanes), a.interp_packets,
            a.runs))
    if "flows" in only:
        n, tv, ni, ti, flows, tb = bench_flows(batch, a.interp_packets, a.runs)
        rows.append((f"flows (xdp_flowcount.c, {flows:,} flows)", n, tv, ni, ti, tb))
    for name, n, tv, ni, ti, tb in rows:
        pv, pi = n / tv, ni / ti
        bare = "" if tb is None else f"{tb:.2f}, {n / tb / pi:.0f}x"
        print(f"| {name} | {n:,} | {tv:.2f} | {pv/1e6:.2f}M | {pi/1e3:.1f}k | "
              f"**{pv/pi:.0f}x** | {bare} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
