#!/usr/bin/env python3
"""Engine throughput of the classic BPF interpreters on an in-memory batch.

    python3 bench/bench_cbpf_vinterp.py [--packets 1000000] [--expr 'tcp port 80' ...]
        [--repeat 5] [--scalar-subset 20000]

Builds a synthetic Ethernet batch (tests/cbpf_gen.synthetic_packet: IPv4/IPv6, VLAN,
fragments, ARP, junk, 20% truncated), compiles each expression with `tcpdump -y EN10MB
-ddd`, and times bpfkit.cbpf.vinterp.run_batch (median of --repeat runs) and the
scalar reference interpreter run_filter on a subset, in the same process.  Checks that
both agree on the subset.  Prints a markdown table of packets/s and the ratio.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from bpfkit.cbpf.interp import run_filter  # noqa: E402
from bpfkit.cbpf.program import Program  # noqa: E402
from bpfkit.cbpf.vinterp import run_batch  # noqa: E402
from bpfkit.pcap.batch import PacketBatch  # noqa: E402


def synthetic_batch(n: int, seed: int = 1) -> PacketBatch:
    from cbpf_gen import synthetic_packet
    rng = random.Random(seed)
    distinct = [synthetic_packet(rng) for _ in range(min(n, 50000))]
    pkts = [distinct[i % len(distinct)] for i in range(n)]
    return PacketBatch.from_packets([p for p, _ in pkts], wirelen=[w for _, w in pkts])


def compile_expr(expr: str) -> Program:
    out = subprocess.run(["tcpdump", "-y", "EN10MB", "-ddd", expr], check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return Program([tuple(int(v) for v in ln.split()) for ln in out[1:] if ln.strip()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--expr", action="append")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scalar-subset", type=int, default=20000)
    args = ap.parse_args()
    exprs = args.expr or ["tcp port 80", "ip6 protochain 6", "host 10.0.0.1 or port 53"]
    t0 = time.perf_counter()
    batch = synthetic_batch(args.packets)
    print(f"batch: {len(batch)} packets, {len(batch.buf)} bytes "
          f"(built in {time.perf_counter() - t0:.1f} s)\n")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| expression | insns | run_batch pkts/s (best / median) | run_filter pkts/s "
          "| ratio (median) | accepted |")
    print("|---|---:|---:|---:|---:|---:|")
    sub = batch[: args.scalar_subset]
    for expr in exprs:
        prog = compile_expr(expr)
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = run_batch(prog, batch)
            times.append(time.perf_counter() - t)
        vec = len(batch) / statistics.median(times)
        best = len(batch) / min(times)
        t = time.perf_counter()
        scalar = np.array([run_filter(prog, bytes(sub[i]), int(sub.wirelen[i]))
                           for i in range(len(sub))], np.uint32)
        sca = len(sub) / (time.perf_counter() - t)
        assert (scalar == res[: len(sub)]).all(), f"{expr}: run_batch != run_filter"
        print(f"| `{expr}` | {len(prog)} | {best:,.0f} / {vec:,.0f} | {sca:,.0f} | {vec / sca:,.0f}x "
              f"| {int(np.count_nonzero(res))} |")


if __name__ == "__main__":
    main()
