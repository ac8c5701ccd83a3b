#!/usr/bin/env python3
"""Instruction counts of the cBPF -> eBPF translations over the filter corpus.

    python3 bench/bench_translate_counts.py [--corpus ../shared/corpus/libpcap-filter-exprs.jsonl]

Compiles every corpus expression bpfkit accepts (optimized, as `tcpdump -y DLT -d`; bpfkit
accepts exactly what libpcap 1.10.3 accepts, see tests/test_compiler_corpus.py), then counts
the instructions of the classic program, of the socket-mode translation (the kernel's
bpf_convert_filter), and of the XDP translation with one bounds guard per load (the plain
baseline) and with cbpfc-style widened guards.  The first table compares like with
like: only programs every mode translates (socket mode refuses protochain's backward
jumps, as the kernel's validator does).  The second covers everything XDP mode
translates, protochain's loops included (a may_goto per back-edge, per-load guards in
both modes).  Prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bpfkit.cbpf.compiler import compile_filter  # noqa: E402
from bpfkit.cbpf.validate import ebpf_length  # noqa: E402
from bpfkit.errors import BpfError  # noqa: E402
from bpfkit.translate import translate_socket, translate_xdp  # noqa: E402


def _guards(insns) -> int:
    # A bounds guard is `if rX > rY goto` (packet pointer vs data_end).  This counts every
    # register-register JGT, so a classic `jgt x` would count too; the corpus programs
    # translated here have none (libpcap's code generator does not emit jgt x for them).
    from bpfkit.ebpf import isa
    return sum(1 for i in insns if (i.opcode & 0x07) == isa.BPF_JMP
               and (i.opcode & 0xF0) == 0x20 and (i.opcode & 0x08))


def _may_gotos(insns) -> int:
    from bpfkit.ebpf import isa
    return sum(1 for i in insns if i.opcode == isa.BPF_JMP | isa.BPF_JCOND)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpus" /
                                            "libpcap-filter-exprs.jsonl"))
    args = ap.parse_args(argv)
    total = Counter()
    refused = Counter()
    xdp = Counter()          # every program XDP mode translates
    for line in Path(args.corpus).read_text().splitlines():
        d = json.loads(line)
        try:
            prog = compile_filter(d["expr"], d["dlt"], d.get("snaplen", 262144), True,
                                  savefile=False)
        except BpfError:
            continue
        total["programs"] += 1
        modes = {"socket": lambda: translate_socket(prog),
                 "xdp per-load": lambda: translate_xdp(prog, guards="per-load"),
                 "xdp widened": lambda: translate_xdp(prog, guards="widened")}
        results = {}
        for name, fn in modes.items():
            try:
                results[name] = fn()
            except BpfError:
                refused[name] += 1
        if "xdp per-load" in results and "xdp widened" in results:
            loops = results["xdp widened"].loops
            xdp["programs"] += 1
            xdp["classic"] += len(prog)
            xdp["loops"] += loops
            xdp["loops classic"] += len(prog) if loops else 0
            for name in ("xdp per-load", "xdp widened"):
                tr = results[name]
                xdp[name] += len(tr.insns)
                xdp[name + " guards"] += _guards(tr.insns)
                xdp[name + " may_goto"] += _may_gotos(tr.insns)
                if loops:
                    xdp[name + " loops"] += len(tr.insns)
        if len(results) != len(modes):
            continue        # compare like with like: only programs every mode translates
        total["both"] += 1
        total["classic"] += len(prog)
        total["kernel image"] += ebpf_length(prog)
        for name, tr in results.items():
            total[name] += len(tr.insns)
            if name.startswith("xdp"):
                total[name + " guards"] += _guards(tr.insns)
    c = total["classic"]
    print(f"corpus programs compiled: {total['programs']}; translated by every mode: "
          f"{total['both']}; refused: {dict(refused)}\n")
    print("| code | eBPF instructions | x classic | bounds guards |")
    print("|---|---:|---:|---:|")
    print(f"| classic source | {c} | 1.00 | - |")
    print(f"| kernel's in-kernel image (ebpf_length) | {total['kernel image']} | "
          f"{total['kernel image'] / c:.2f} | - |")
    for name in ("socket", "xdp per-load", "xdp widened"):
        g = total.get(name + " guards")
        print(f"| {name} | {total[name]} | {total[name] / c:.2f} | "
              f"{g if g is not None else '-'} |")
    c = xdp["classic"]
    print(f"\nXDP mode, every program it translates: {xdp['programs']} "
          f"({xdp['loops']} with loops: {xdp['loops classic']} classic instructions, "
          f"{xdp['xdp widened loops']} eBPF)\n")
    print("| code | eBPF instructions | x classic | bounds guards | may_goto |")
    print("|---|---:|---:|---:|---:|")
    print(f"| classic source | {c} | 1.00 | - | - |")
    for name in ("xdp per-load", "xdp widened"):
        print(f"| {name} | {xdp[name]} | {xdp[name] / c:.2f} | {xdp[name + ' guards']} | "
              f"{xdp[name + ' may_goto']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
