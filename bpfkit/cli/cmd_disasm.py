"""bpfkit disasm: read a classic BPF program in any encoding, print it in another."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import LOAD_FORMATS, read_program
from .cmd_asm import add_output_options, write_output

EPILOG = """\
Input encodings (detected, or forced with --format): raw struct sock_filter bytes
(--byteorder), tcpdump -dd C array, tcpdump -ddd lines, the comma form of iptables
xt_bpf / tc ('4,40 0 0 12,...'), or assembly (tcpdump -d listing, bpf_asm source).
Detection: non-text bytes -> raw; '{' -> -dd; 'N,' -> comma; a lone number on the
first line -> -ddd; anything else -> assembly.

output (one of; default -d):
  -d          tcpdump -d listing, byte for byte as tcpdump 4.99.3 / libpcap 1.10.3
  -dd -ddd    as tcpdump -dd / -ddd     --comma  iptables/tc bytecode form
  --bpf-asm   bpf_asm source            --raw    struct sock_filter bytes

examples:
  tcpdump -y EN10MB -ddd 'udp port 53' | bpfkit disasm -
  bpfkit disasm filter.bin --bpf-asm
  bpfkit disasm --format comma rule.txt -dd
"""


def register(sub) -> None:
    p = sub.add_parser("disasm", help="print a program (any encoding) as a listing or "
                                      "another encoding",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="FILE", help="program file, '-' for stdin")
    p.add_argument("--format", dest="informat", choices=LOAD_FORMATS, default="auto",
                   help="input encoding (default: auto-detected)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    prog = read_program(args.source, fmt=args.informat, byteorder=args.byteorder)
    write_output(args, prog)
    return 0
