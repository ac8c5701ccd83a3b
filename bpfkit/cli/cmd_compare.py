"""bpfkit compare: run a classic program and its eBPF translations (socket-filter mode
and XDP mode, on bpfkit's eBPF interpreter) over a capture and report every packet on
which a pair disagrees."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import read_program
from ..errors import CompileError, UsageError
from ..filtering import capture_expression_program
from ..pcap import read_capture
from ..translate.compare import compare_batch
from .common import EXIT_FOUND, EXIT_OK, print_json
from .expr_args import add_expression_options, describe, expression_text

EPILOG = """\
The program is a pcap-filter(7) expression (compiled as for `tcpdump -r` with the
capture's link type and snapshot length), an expression file (-F), or a compiled cBPF
program (--prog, any encoding `bpfkit disasm` reads).

pairs:
  socket  classic socket-filter interpreter (Linux semantics) vs the kernel-style
          translation (bpf_convert_filter) on the eBPF interpreter: equal return values
  xdp     classic filter interpreter (libpcap semantics on the captured bytes) vs the
          XDP translation on the eBPF interpreter: equal match decisions (frames under
          14 or over 3520 bytes are skipped)
A pair whose translation does not exist says why (e.g. an ancillary load).
Exit status 1 when any pair disagrees on any packet.

examples:
  bpfkit compare -r pcaps/sample.pcap 'tcp port 80'
  bpfkit compare -r in.pcap --prog filter.ddd --json
"""


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare a cBPF program with its eBPF translations "
                                       "over a capture",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expression_options(p)
    p.add_argument("--prog", metavar="PROG",
                   help="use a compiled cBPF program file instead of an expression")
    p.add_argument("-r", dest="capture", metavar="FILE", required=True,
                   help="capture to read (pcap or pcapng)")
    p.add_argument("--list", type=int, default=10, metavar="N",
                   help="list the first N disagreeing packets of each pair (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    expr = expression_text(args)
    batch = read_capture(args.capture)
    if args.prog is not None:
        if expr is not None:
            raise UsageError("both --prog and an expression; give one")
        prog = read_program(args.prog)
    else:
        try:
            prog = capture_expression_program(expr or "", args.capture,
                                              optimize=not args.no_optimize)(
                batch.linktype, batch.snaplen)
        except CompileError as e:
            raise CompileError(describe(e, expr or "")) from None
    report = compare_batch(prog, batch, max_listed=max(args.list, 0))
    if args.json:
        print_json({"packets": report.packets, "ok": report.ok, "pairs": [
            {"pair": p.name, "left": p.left, "right": p.right, "compared": p.compared,
             "agreed": p.agreed, "skipped": p.skipped, "unavailable": p.unavailable,
             "disagreements": [{"packet": d.index, "left": d.left, "right": d.right,
                                "summary": d.summary} for d in p.disagreements]}
            for p in report.pairs]})
    else:
        print(f"{'pair':8} {'left':12} {'right':12} {'compared':>9} {'agreed':>9} "
              f"{'skipped':>8}")
        for p in report.pairs:
            print(f"{p.name:8} {p.left:12} {p.right:12} {p.compared:9} {p.agreed:9} "
                  f"{p.skipped:8}" + (f"  unavailable: {p.unavailable}" if p.unavailable
                                       else ""))
        for p in report.pairs:
            for d in p.disagreements:
                print(f"{p.name}: packet {d.index}: {p.left} {d.left} != {p.right} "
                      f"{d.right}: {d.summary}")
    return EXIT_OK if report.ok else EXIT_FOUND
