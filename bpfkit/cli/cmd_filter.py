"""bpfkit filter: keep the packets of a capture on which a cBPF program returns non-zero."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import read_program
from ..filtering import filter_capture
from .capture_args import Progress, add_read_options, report_problems
from .common import EXIT_USAGE, eprint, print_json

EPILOG = """\
The output keeps the input's link type, snapshot length and timestamp precision, like
`tcpdump -r IN -w OUT`.  Without -w only the counts are printed.

PROG is a program file in any encoding `bpfkit disasm` reads (tcpdump -d/-dd/-ddd output,
bpf_asm source, the xt_bpf comma form, raw bytes).  Filter *expressions* such as
'tcp port 80' need the expression compiler, which is not part of bpfkit yet; compile
them with tcpdump meanwhile:

examples:
  tcpdump -y EN10MB -ddd 'tcp port 80' > http.ddd
  bpfkit filter --prog http.ddd -r pcaps/sample.pcap -w http.pcap
  bpfkit filter --prog http.ddd -r big.pcap -c 100 -w first100.pcap
"""


def register(sub) -> None:
    p = sub.add_parser("filter", help="write the packets a cBPF program accepts",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prog", metavar="PROG", required=True,
                   help="program file (any encoding), '-' for stdin")
    add_read_options(p, count_help="stop after COUNT kept packets (as tcpdump -c)")
    p.add_argument("-w", dest="output", metavar="FILE",
                   help="write the kept packets here ('-' for stdout)")
    p.add_argument("--pcapng", action="store_true", help="write pcapng instead of pcap")
    p.add_argument("--json", action="store_true",
                   help='print {"packets": N, "kept": K} as JSON')
    p.set_defaults(func=run)


def run(args) -> int:
    prog = read_program(args.prog)
    if args.output == "-" and args.json:
        eprint("bpfkit filter: error: -w - and --json both want stdout")
        return EXIT_USAGE
    progress = Progress("filter")
    summary = filter_capture(prog, args.capture, args.output, count=args.count,
                             format="pcapng" if args.pcapng else "pcap", strict=args.strict,
                             progress=progress)
    progress.done()
    report_problems("filter", summary.problems)
    if args.json:
        print_json({"packets": summary.packets, "kept": summary.kept,
                    "warnings": [str(p) for p in summary.problems]})
    elif args.output is None:
        print(f"packets: {summary.packets}\nkept: {summary.kept}")
    elif args.output != "-":
        eprint(f"{summary.kept} of {summary.packets} packets kept")
    return 0
