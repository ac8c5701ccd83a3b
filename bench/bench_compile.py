"""Compile time of long filters: bpfkit's compile_filter (optimized) against
`tcpdump -y EN10MB -d` (libpcap 1.10.3's optimizer, quadratic: libpcap #1255,
tcpdump #1121), on the issue's shape, N clauses of `(host A and port P)` joined by
`or`.

    python3 bench/bench_compile.py --runs 3        # N = 50 100 200 400 1000, both
    python3 bench/bench_compile.py --tcpdump-max 400 --runs 5
    python3 bench/bench_compile.py --sizes 50,100 --json

bpfkit's time is the median of --runs runs after a first one (a single run for the
slow sizes, as for tcpdump above 100 clauses; tcpdump's time includes process
start-up: ~10 ms).  Where both ran, the programs are compared instruction by
instruction (`tcpdump -ddd` against bpfkit's program) and the table says whether they
are identical.  Prints a markdown table and the load averages before and after (the
machine may be shared: note them with the figures).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bpfkit.cbpf.compiler import compile_filter  # noqa: E402


def clauses(n: int) -> str:
    return " or ".join(f"(host 10.{i // 250}.{i % 250}.1 and port {1000 + i})"
                       for i in range(n))


def time_bpfkit(expr: str, runs: int):
    times = []
    prog = None
    for _ in range(runs):
        t = time.perf_counter()
        prog = compile_filter(expr, "EN10MB", savefile=False)   # tcpdump -d: dead handle
        times.append(time.perf_counter() - t)
    return statistics.median(times), prog


def time_tcpdump(expr: str, runs: int, timeout: float):
    """(median seconds of `tcpdump -d`, the -ddd program) or (None, None) on timeout."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        try:
            r = subprocess.run(["tcpdump", "-y", "EN10MB", "-d", expr], capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, None
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"tcpdump failed: {r.stderr.strip()}")
    r = subprocess.run(["tcpdump", "-y", "EN10MB", "-ddd", expr], capture_output=True,
                       text=True, timeout=timeout)
    lines = r.stdout.strip().split("\n")
    insns = [tuple(int(v) for v in line.split()) for line in lines[1:]]
    return statistics.median(times), insns


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50,100,200,400,1000",
                    help="comma-separated clause counts (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=5,
                    help="runs per size for sizes whose first run took < 2 s (median)")
    ap.add_argument("--tcpdump-max", type=int, default=1000,
                    help="largest N to give tcpdump (default %(default)s: ~4 s on the "
                         "reference machine)")
    ap.add_argument("--tcpdump-timeout", type=float, default=900.0)
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = ap.parse_args(argv)
    have_tcpdump = shutil.which("tcpdump") is not None
    load_before = os.getloadavg()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        expr = clauses(n)
        first, prog = time_bpfkit(expr, 1)
        ours = first
        if first < 2.0 and args.runs > 1:
            ours, prog = time_bpfkit(expr, args.runs)
        theirs = insns = None
        if have_tcpdump and n <= args.tcpdump_max:
            truns = args.runs if n <= 100 else 1
            theirs, insns = time_tcpdump(expr, truns, args.tcpdump_timeout)
        same = None if insns is None else prog.as_tuples() == insns
        rows.append({"clauses": n, "insns": len(prog.insns), "bpfkit_s": ours,
                     "tcpdump_s": theirs, "identical": same})
        print(f"N={n}: bpfkit {ours:.3f} s" +
              (f", tcpdump {theirs:.3f} s, identical={same}" if theirs is not None else ""),
              file=sys.stderr, flush=True)
    print("| clauses | insns | bpfkit (s) | tcpdump -d (s) | tcpdump / bpfkit | identical |")
    print("|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        t = r["tcpdump_s"]
        tcol = "-" if t is None else f"{t:.3f}"
        ratio = "-" if t is None else f"{t / r['bpfkit_s']:.1f}x"
        same = "-" if r["identical"] is None else ("yes" if r["identical"] else "NO")
        print(f"| {r['clauses']} | {r['insns']} | {r['bpfkit_s']:.3f} | {tcol} | {ratio} | "
              f"{same} |")
    load_after = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): before {' '.join(f'{v:.2f}' for v in load_before)}, "
          f"after {' '.join(f'{v:.2f}' for v in load_after)}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if all(r["identical"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
