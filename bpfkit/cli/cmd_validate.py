"""bpfkit validate: check a classic BPF program against the kernel's or libpcap's rules."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import LOAD_FORMATS, read_program
from ..cbpf.validate import RULE_SETS, check
from .common import EXIT_FOUND, EXIT_OK, print_json

EPILOG = """\
rule sets:
  kernel    what SO_ATTACH_FILTER accepts (net/core/filter.c bpf_check_basics_ok,
            bpf_check_classic, check_load_and_stores, bpf_convert_filter's jump range);
            every failure is -EINVAL
  libpcap   libpcap 1.10.3's bpf_validate, what pcap_setfilter runs

Prints "ok: N instructions", or one line per problem:
  INDEX: (INSTRUCTION) MESSAGE [RULE]
and exits 1 when the program is invalid.

examples:
  tcpdump -y EN10MB -ddd 'tcp port 80' | bpfkit validate -
  bpfkit validate --rules libpcap --json prog.bpf
"""


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a program against the kernel's or "
                                        "libpcap's validator",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="PROG", help="program file (any encoding), '-' for stdin")
    p.add_argument("--rules", choices=RULE_SETS, default="kernel",
                   help="which validator (default: kernel)")
    p.add_argument("--format", dest="informat", choices=LOAD_FORMATS, default="auto",
                   help="input encoding (default: auto-detected)")
    p.add_argument("--byteorder", choices=("little", "big"), default="little",
                   help="byte order of raw struct sock_filter input (default: little)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    prog = read_program(args.source, fmt=args.informat, byteorder=args.byteorder)
    errors = check(prog, args.rules)
    if args.json:
        print_json({
            "rules": args.rules, "valid": not errors, "instructions": len(prog),
            "errors": [{"index": e.index, "insn": e.insn_text, "rule": e.rule,
                        "errno": e.errno, "message": str(e)} for e in errors],
        })
    elif errors:
        for e in errors:
            print(e)
    else:
        print(f"ok: {len(prog)} instructions")
    return EXIT_FOUND if errors else EXIT_OK
