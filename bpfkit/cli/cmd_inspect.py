"""bpfkit inspect: what a clang-compiled BPF object holds."""
from __future__ import annotations

import argparse
import sys

from ..ebpf.elf import open_elf
from ..ebpf.elfinfo import describe, format_text
from .common import EXIT_OK, print_json

EPILOG = """\
Shows the programs (section, function name, program type from the section name by
libbpf's conventions, instruction count, subprograms linked in, helpers called, and
the resolved relocations: map references, global-data references, calls and callback
addresses by slot), the maps (type, key/value sizes and their BTF types,
max_entries, flags; .data/.rodata/.bss as one-element arrays as libbpf makes them)
and the global variables with their initial bytes.  A program that uses something
bpfkit cannot load yet is listed with the reason.

examples:
  bpfkit inspect prog.o
  bpfkit inspect --json prog.o
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="show the programs, maps and globals of a "
                              "BPF ELF object", description=__doc__, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("object", help="a clang -target bpf object file (.o)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    d = describe(open_elf(args.object))
    if args.json:
        print_json(d)
    else:
        sys.stdout.write(format_text(d))
    return EXIT_OK
