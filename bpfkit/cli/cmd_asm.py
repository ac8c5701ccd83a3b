"""bpfkit asm: assemble a tcpdump -d listing or bpf_asm source into any program encoding
(classic BPF), or eBPF assembly (--ebpf) into raw bytes, hex or a listing."""
from __future__ import annotations

import argparse
import copy
import sys

from ..cbpf.encodings import format_program, read_program
from ..errors import AsmError, BpfError, EncodingError, UsageError

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

eBPF (--ebpf):
  The input is eBPF assembly, --syntax llvm (default; what llvm-objdump -d and the
  verifier log print: `r0 = *(u16 *)(r6 + 12)`, `if r1 == 0x800 goto +3`, labels,
  `lock *(u64 *)(r0 + 0) += r1`), kernel (the verifier log, `N: (op)` prefixes
  allowed) or conformance (bpf_conformance: `ldxh %r0, [%r6+12]`).  A map is
  referenced by name, `r1 = counts ll`; name the maps, in order, with --map NAME
  (or the full NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES that `bpfkit run` takes):
  map N becomes lddw src=BPF_PSEUDO_MAP_IDX imm=N (libbpf's fd_array convention).
  Output: -d (default) the llvm-objdump -d --no-show-raw-insn listing; --text the
  same without slot numbers (assembles back to the same bytes); --hex one 8-byte
  slot per line; --raw the instruction bytes (--byteorder).

  printf 'r0 = 2\\nexit\\n' | bpfkit asm --ebpf -              # listing
  bpfkit asm --ebpf --map counts prog.s --raw -o prog.bin
  bpfkit asm --ebpf --syntax conformance test.s --hex
"""

OUTPUTS = {"-d": "tcpdump", "-dd": "dd", "-ddd": "ddd", "--comma": "comma",
           "--bpf-asm": "bpf_asm", "--raw": "raw", "--hex": "hex", "--text": "text"}
# outputs only eBPF has, and the cBPF outputs that mean something for eBPF
EBPF_ONLY_OUTPUTS = {"hex", "text"}
EBPF_OUTPUTS = {"tcpdump": "listing", "raw": "raw", "hex": "hex", "text": "text"}
_HELP = {"-d": "tcpdump -d listing (default)", "-dd": "C array, as tcpdump -dd",
         "-ddd": "count and decimal lines, as tcpdump -ddd",
         "--comma": "one line 'count,code jt jf k,...' (iptables xt_bpf, tc)",
         "--bpf-asm": "the kernel's bpf_asm syntax, with labels",
         "--raw": "raw struct sock_filter bytes (to a file or a pipe); eBPF: raw "
                  "instruction bytes",
         "--hex": "eBPF: hex, one 8-byte instruction slot per line",
         "--text": "eBPF: assembly without slot numbers (reads back with asm --ebpf)"}


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
    if args.output in EBPF_ONLY_OUTPUTS:
        raise UsageError(f"--{args.output} is an eBPF output: add --ebpf")
    emit(args, format_program(prog, args.output, byteorder=args.byteorder))


def emit(args, data: str | bytes) -> None:
    """Write text or bytes to -o FILE or stdout (bytes never to a terminal)."""
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


# --- eBPF (shared with disasm and run) ---------------------------------------------------

EBPF_SYNTAXES = ("llvm", "kernel", "conformance")


def add_map_option(p: argparse.ArgumentParser, *, full: bool) -> None:
    if full:
        text = ("an eBPF map NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES[:FLAGS] (TYPE: array, "
                "hash, percpu_array, lru_hash, ...; FLAGS a number or BPF_F_* names joined "
                "by '|'); repeat for more maps (the first --map is map 0)")
    else:
        text = ("the name of an eBPF map (or its full NAME:TYPE:KEY:VALUE:ENTRIES spec); "
                "repeat in order (the first --map is map 0)")
    p.add_argument("--map", dest="maps", metavar="NAME" if not full else "SPEC",
                   action="append", default=[], help=text)


def map_specs(texts: list[str], *, full: bool) -> list:
    """--map arguments -> MapSpecs (name-only ones carry just the name)."""
    from ..ebpf.maps import MapSpec, MapType
    from ..ebpf.program import parse_map_spec
    out = []
    for t in texts:
        if ":" in t or full:
            out.append(parse_map_spec(t))
        else:
            out.append(MapSpec(MapType.UNSPEC, 0, 0, 0, name=t))
    return out


def read_input(path: str, what: str = "program") -> bytes:
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BpfError(f"{name}: cannot read {what}: {e.strerror or e}") from None


def read_ebpf_program(path: str, *, fmt: str = "auto", syntax: str = "llvm",
                      byteorder: str = "little", prog_type="xdp", maps=(),
                      data: bytes | None = None):
    """An eBPF Program from a file or stdin (or `data` already read from `path`);
    errors are prefixed with the file name."""
    from ..ebpf.program import Program
    if data is None:
        data = read_input(path)
    try:
        return Program.load(data, fmt, syntax=syntax, byteorder=byteorder,
                            prog_type=prog_type, maps=maps)
    except (EncodingError, AsmError) as e:
        new = copy.copy(e)
        new.args = (f"{'<stdin>' if path == '-' else path}: {e}",)
        raise new from None


def write_ebpf_output(args, prog, listing_syntax: str = "llvm") -> None:
    if args.output not in EBPF_OUTPUTS:
        flag = next(f for f, v in OUTPUTS.items() if v == args.output)
        raise UsageError(f"{flag} is a classic BPF output; with --ebpf use -d (listing), "
                         "--text, --hex or --raw")
    out = EBPF_OUTPUTS[args.output]
    if out == "raw":
        emit(args, prog.to_bytes(args.byteorder))
    elif out == "hex":
        emit(args, prog.to_hex(args.byteorder))
    elif out == "text":
        emit(args, prog.text(listing_syntax))
    else:
        emit(args, prog.listing(listing_syntax))


def register(sub) -> None:
    p = sub.add_parser("asm", help="assemble tcpdump -d / bpf_asm text, or eBPF (--ebpf)",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="FILE", help="assembly source, '-' for stdin")
    p.add_argument("--syntax", choices=("auto", "tcpdump", "bpf_asm") + EBPF_SYNTAXES,
                   default="auto",
                   help="input syntax (default: auto-detected; with --ebpf: llvm, kernel or "
                        "conformance, default llvm)")
    p.add_argument("--ebpf", action="store_true", help="the source is eBPF assembly")
    add_map_option(p, full=False)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.ebpf:
        if args.syntax in ("tcpdump", "bpf_asm"):
            raise UsageError(f"--syntax {args.syntax} is classic BPF; eBPF syntaxes: "
                             f"{', '.join(EBPF_SYNTAXES)}")
        syntax = "llvm" if args.syntax == "auto" else args.syntax
        prog = read_ebpf_program(args.source, fmt="asm", syntax=syntax,
                                 maps=map_specs(args.maps, full=False))
        write_ebpf_output(args, prog)
        return 0
    if args.syntax in EBPF_SYNTAXES:
        raise UsageError(f"--syntax {args.syntax} is an eBPF syntax: add --ebpf")
    if args.maps:
        raise UsageError("--map is for eBPF programs: add --ebpf")
    prog = read_program(args.source, fmt="asm" if args.syntax == "auto" else args.syntax)
    write_output(args, prog)
    return 0
