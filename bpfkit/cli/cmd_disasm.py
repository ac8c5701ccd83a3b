"""bpfkit disasm: read a classic BPF program in any encoding, print it in another;
with --ebpf, an eBPF program (raw bytes, hex, or a section of an ELF object) as a listing."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import LOAD_FORMATS, read_program
from ..errors import UsageError
from .cmd_asm import (EBPF_OUTPUTS, EBPF_SYNTAXES, add_map_option, add_output_options, emit,
                      map_specs, read_ebpf_program, read_input, write_ebpf_output,
                      write_output)
from .elf_args import add_elf_options, is_elf, load_object, refuse_non_elf_options

EBPF_FORMATS = ("auto", "raw", "hex", "asm")

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

eBPF (--ebpf):
  The input is raw instruction bytes (8-byte slots, lddw two; --byteorder little or
  big), hex text (`b7 00 00 00 01 00 00 00`, with or without spaces, or one
  0x-prefixed 64-bit word per slot as in bpf_conformance's `-- raw` sections), or
  eBPF assembly (llvm syntax).  Detected, or forced with --format raw|hex|asm.
  An ELF object (clang -O2 -g -target bpf -c prog.c) is read with its relocations:
  pick the program with --section and/or --name (needed when there are several); the
  listing then shows map references by name and, with BTF line info (-g), the source
  line before its instructions, as `bpftool prog dump xlated linum` does.
  Output: -d (default) a listing in --syntax llvm (as llvm-objdump -d
  --no-show-raw-insn), kernel (as the verifier log, `0: (b7) r0 = 1`) or conformance;
  --text the instructions without slot numbers; --hex; --raw.  --byteorder applies
  to input and output alike; to convert, go through text:
  bpfkit disasm --ebpf --byteorder big be.bin --text | bpfkit asm --ebpf - --raw -o le.bin
  Name the maps that lddw src=BPF_PSEUDO_MAP_IDX refers to with --map NAME (in order)
  to see `r1 = NAME ll` instead of `ld_pseudo r1, 5, N`.

  bpfkit disasm --ebpf prog.bin
  bpfkit disasm --ebpf prog.o --section xdp
  bpfkit disasm --ebpf --byteorder big --syntax kernel prog-be.bin
  echo 'b7 00 00 00 02 00 00 00 95 00 00 00 00 00 00 00' | bpfkit disasm --ebpf -
"""


def register(sub) -> None:
    p = sub.add_parser("disasm", help="print a program (any encoding) as a listing or "
                                      "another encoding",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="FILE", help="program file, '-' for stdin")
    p.add_argument("--format", dest="informat",
                   choices=tuple(dict.fromkeys(LOAD_FORMATS + EBPF_FORMATS)), default="auto",
                   help="input encoding (default: auto-detected; eBPF: raw, hex or asm)")
    p.add_argument("--ebpf", action="store_true", help="the program is eBPF")
    p.add_argument("--syntax", choices=EBPF_SYNTAXES, default=None,
                   help="eBPF listing syntax (default llvm)")
    add_map_option(p, full=False)
    add_elf_options(p, with_set=False)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.ebpf:
        data = read_input(args.source)
        if is_elf(data):
            return _disasm_elf(args, data)
        refuse_non_elf_options(args)
        if args.informat not in EBPF_FORMATS:
            raise UsageError(f"--format {args.informat} is classic BPF; eBPF input is "
                             f"{', '.join(EBPF_FORMATS)}")
        prog = read_ebpf_program(args.source, fmt=args.informat, byteorder=args.byteorder,
                                 maps=map_specs(args.maps, full=False), data=data)
        write_ebpf_output(args, prog, args.syntax or "llvm")
        return 0
    if args.syntax or args.maps:
        raise UsageError("--syntax and --map are for eBPF programs: add --ebpf")
    refuse_non_elf_options(args)
    if args.informat == "hex":
        raise UsageError("--format hex is for eBPF programs: add --ebpf")
    prog = read_program(args.source, fmt=args.informat, byteorder=args.byteorder)
    write_output(args, prog)
    return 0


def _disasm_elf(args, data: bytes) -> int:
    from ..ebpf.elfinfo import source_listing
    if args.maps:
        raise UsageError("--map: an ELF object defines its own maps")
    obj = load_object(data, args.source)
    syntax = args.syntax or "llvm"
    if EBPF_OUTPUTS.get(args.output) == "listing":
        text = source_listing(obj, args.elf_func, section=args.section, syntax=syntax)
        emit(args, text)
        return 0
    p = obj.find_program(args.elf_func, section=args.section)
    prog = obj.program(p.name, section=p.section,
                       prog_type=p.prog_type if p.prog_type is not None else "xdp")
    write_ebpf_output(args, prog, syntax)
    return 0
