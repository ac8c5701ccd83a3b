"""bpfkit run: a classic BPF program's return value on every packet of a capture."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import read_program
from ..filtering import run_program
from .capture_args import Progress, add_read_options, report_problems
from .common import print_json

EPILOG = """\
PROG is a program file in any encoding `bpfkit disasm` reads: a tcpdump -d listing,
bpf_asm source, -dd C array, -ddd decimal lines, the comma form of xt_bpf/tc, or raw
struct sock_filter bytes ('-' reads stdin).  The program runs with libpcap's bpf_filter
semantics: an out-of-bounds load makes it return 0, `len` is the wire length.

examples:
  tcpdump -y EN10MB -ddd 'tcp port 80' > http.ddd
  bpfkit run http.ddd -r pcaps/sample.pcap
  bpfkit run http.ddd -r pcaps/sample.pcap --json | jq '.retval[:10]'
"""


def register(sub) -> None:
    p = sub.add_parser("run", help="run a cBPF program over every packet of a capture",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prog", metavar="PROG", help="program file (any encoding), '-' for stdin")
    add_read_options(p, count_help="run on the first COUNT packets only")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"packets": N, "accepted": A, "rejected": R, '
                        '"retval": [r0, r1, ...]} (retval in capture order)')
    p.set_defaults(func=run)


def run(args) -> int:
    prog = read_program(args.prog)
    progress = Progress("run")
    summary = run_program(prog, args.capture, count=args.count, strict=args.strict,
                          progress=progress)
    progress.done()
    report_problems("run", summary.problems)
    if args.json:
        print_json({"packets": summary.packets, "accepted": summary.accepted,
                    "rejected": summary.rejected, "retval": summary.retval.tolist(),
                    "warnings": [str(p) for p in summary.problems]})
    else:
        print(f"packets: {summary.packets}\naccepted: {summary.accepted}\n"
              f"rejected: {summary.rejected}")
    return 0
