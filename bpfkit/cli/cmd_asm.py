"""bpfkit asm: assemble a tcpdump -d listing or bpf_asm source into any program encoding."""
from __future__ import annotations

import argparse
import sys

from ..cbpf.encodings import format_program, read_program
from ..errors import BpfError, UsageError

EPILOG = """\
The input syntax is detected: a `tcpdump -d` listing (with or without the (NNN)
numbers; jt/jf/ja name absolute instruction numbers) or the kernel's bpf_asm syntax
(tools/bpf/bpf_asm: labels, `jeq #0x800, ip, drop`, `ld #proto`, `ldxb 4*([14]&0xf)`).
The first construct only one of them has decides; --syntax forces one.

output (one of; default -d):
  -d          tcpdump -d listing        -dd     C array (tcpdump -dd)
  -ddd        count + decimal lines     --comma iptables -m bpf / tc bytecode form
  --bpf-asm   bpf_asm source            --raw   struct sock_filter bytes (--byteorder)

examples:
  tcpdump -y EN10MB -d 'tcp port 80' | bpfkit asm - -ddd
  bpfkit asm filter.s --comma        # iptables -m bpf --bytecode "$(bpfkit asm filter.s --comma)"
  bpfkit asm filter.s --raw -o filter.bin
  printf 'ldh [12]\\njeq #0x800, ok\\nret #0\\nok: ret #-1\\n' | bpfkit asm - -dd
"""

OUTPUTS = {"-d": "tcpdump", "-dd": "dd", "-ddd": "ddd", "--comma": "comma",
           "--bpf-asm": "bpf_asm", "--raw": "raw"}
_HELP = {"-d": "tcpdump -d listing (default)", "-dd": "C array, as tcpdump -dd",
         "-ddd": "count and decimal lines, as tcpdump -ddd",
         "--comma": "one line 'count,code jt jf k,...' (iptables xt_bpf, tc)",
         "--bpf-asm": "the kernel's bpf_asm syntax, with labels",
         "--raw": "raw struct sock_filter bytes (to a file or a pipe)"}


def add_output_options(p: argparse.ArgumentParser) -> None:
    """The output-format flags asm and disasm share."""
    g = p.add_mutually_exclusive_group()
    for flag, fmt in OUTPUTS.items():
        g.add_argument(flag, dest="output", action="store_const", const=fmt, help=_HELP[flag])
    p.set_defaults(output="tcpdump")
    p.add_argument("-o", dest="outfile", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--byteorder", choices=("little", "big"), default="little",
                   help="byte order of raw struct sock_filter (default: little)")


def write_output(args, prog) -> None:
    data = format_program(prog, args.output, byteorder=args.byteorder)
    if args.outfile and args.outfile != "-":
        mode = "wb" if isinstance(data, bytes) else "w"
        try:
            with open(args.outfile, mode) as f:
                f.write(data)
        except OSError as e:
            raise BpfError(f"{args.outfile}: cannot write: {e.strerror or e}") from None
        return
    if isinstance(data, bytes):
        if sys.stdout.isatty():
            raise UsageError("--raw writes binary: give -o FILE or redirect stdout")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(data)


def register(sub) -> None:
    p = sub.add_parser("asm", help="assemble tcpdump -d / bpf_asm text",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="FILE", help="assembly source, '-' for stdin")
    p.add_argument("--syntax", choices=("auto", "tcpdump", "bpf_asm"), default="auto",
                   help="input syntax (default: auto-detected)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    prog = read_program(args.source, fmt="asm" if args.syntax == "auto" else args.syntax)
    write_output(args, prog)
    return 0
