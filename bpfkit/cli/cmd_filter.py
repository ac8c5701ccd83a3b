"""bpfkit filter: keep the packets of a capture that a filter expression (or a cBPF
program) accepts, as `tcpdump -r IN -w OUT EXPR` does."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import read_program
from ..errors import CompileError, UsageError
from ..filtering import capture_expression_program, filter_capture
from .capture_args import Progress, add_read_options, report_problems
from .common import EXIT_USAGE, eprint, print_json
from .expr_args import add_expression_options, describe, expression_text

EPILOG = """\
The filter is a pcap-filter(7) expression (compiled as libpcap 1.10.3 compiles it for
`tcpdump -r`, with the capture's link type and snapshot length), an expression file
(-F, as tcpdump), or a compiled cBPF program (--prog: any encoding `bpfkit disasm` reads,
e.g. `tcpdump -ddd` output).  With none of them every packet is kept.

The output keeps the input's link type, snapshot length and timestamp precision, like
`tcpdump -r IN -w OUT`.  Without -w, the number of matching packets is printed.

A classic pcap file of 96 MB or more, written to a file (or counted), is filtered by one
process per CPU, each on its own parts of the file; the output is the same, byte for byte.
BPFKIT_WORKERS=N sets the number of processes (1: this one alone).

examples:
  bpfkit filter -r pcaps/sample.pcap -w http.pcap 'tcp port 80 and not host 10.0.0.1'
  bpfkit filter -r big.pcap -c 100 -w first100.pcap udp port 53
  bpfkit filter -r in.pcapng -F filter.txt --json
  bpfkit filter -r in.pcap --prog http.ddd -w http.pcap
"""


def register(sub) -> None:
    p = sub.add_parser("filter", help="write the packets a filter expression or cBPF "
                                      "program accepts (as tcpdump -r IN -w OUT EXPR)",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expression_options(p)
    p.add_argument("--prog", metavar="PROG",
                   help="use a compiled cBPF program file instead of an expression")
    add_read_options(p, count_help="stop after COUNT kept packets (as tcpdump -c)")
    p.add_argument("-w", dest="output", metavar="FILE",
                   help="write the kept packets here ('-' for stdout)")
    p.add_argument("--pcapng", action="store_true", help="write pcapng instead of pcap")
    p.add_argument("--json", action="store_true",
                   help='print {"packets": N, "kept": K, "warnings": [...]} as JSON')
    p.add_argument("--engine", choices=("vector", "interp"), default="vector",
                   help="vector (default): all packets of a batch at once; interp: the "
                        "reference interpreter, one packet at a time (slow; to cross-check)")
    p.set_defaults(func=run, quick_exit=True)     # see bpfkit.cli.main.main


def _keep_freed_memory() -> None:
    """glibc: serve large allocations from the heap and keep freed memory there.  By
    default every array above a few hundred kB (each batch's columns, its packet heads)
    is a fresh mmap, whose pages the kernel zeroes on first touch and which munmap gives
    back when freed: page faults and page clearing were ~10% of a filter run."""
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(-3, 32 << 20)       # M_MMAP_THRESHOLD: heap below 32 MB
    mallopt(-1, 64 << 20)       # M_TRIM_THRESHOLD: keep up to 64 MB freed at the top
    mallopt(-2, 16 << 20)       # M_TOP_PAD: grow the heap 16 MB at a time


def run(args) -> int:
    _keep_freed_memory()
    expr = expression_text(args)
    if args.prog is not None:
        if expr is not None:
            raise UsageError("both --prog and an expression; give one")
        if args.no_optimize:
            raise UsageError("-O applies to expressions, not to a compiled --prog")
        prog = read_program(args.prog)
    else:
        prog = capture_expression_program(expr or "", args.capture,
                                          optimize=not args.no_optimize)
    if args.output == "-" and args.json:
        eprint("bpfkit filter: error: -w - and --json both want stdout")
        return EXIT_USAGE
    progress = Progress("filter")
    try:
        summary = filter_capture(prog, args.capture, args.output, count=args.count,
                                 format="pcapng" if args.pcapng else "pcap",
                                 strict=args.strict, progress=progress,
                                 engine=args.engine)
    except CompileError as e:
        raise CompileError(describe(e, expr or "")) from None
    finally:
        progress.done()
    report_problems("filter", summary.problems)
    if args.json:
        print_json({"packets": summary.packets, "kept": summary.kept,
                    "warnings": [str(p) for p in summary.problems]})
    elif args.output is None:
        print(f"{summary.kept} packets match (of {summary.packets})")
    elif args.output != "-":
        eprint(f"{summary.kept} of {summary.packets} packets kept")
    return 0
