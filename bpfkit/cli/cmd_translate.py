"""bpfkit translate: classic BPF -> eBPF, as the kernel converts a socket filter
(--socket) or as a verifier-clean XDP program (--xdp)."""
from __future__ import annotations

import argparse
import sys

from ..cbpf.compiler import compile_filter
from ..cbpf.encodings import read_program
from ..cbpf.program import DEFAULT_SNAPLEN
from ..errors import CompileError, UsageError
from ..translate import translate_socket, translate_xdp
from ..translate.xdpobj import xdp_object
from .expr_args import add_expression_options, describe, expression_text

EPILOG = """\
--socket (default) is the Linux kernel's own conversion (net/core/filter.c,
bpf_convert_filter): A in r0, X in r7, the context in r6, M[k] on the stack, packet
loads as LD_ABS/LD_IND.  It loads as a BPF_PROG_TYPE_SOCKET_FILTER program.
-o writes the raw instructions (what BPF_PROG_LOAD takes).

--xdp makes an XDP program with direct packet access and explicit bounds guards
(widened per block, in the manner of cloudflare's cbpfc) that returns --match for
packets the filter accepts and --nomatch for the others; an out-of-bounds load means
"no match", as libpcap's bpf_filter.  -o writes an ELF object with BTF and a license
section, which `bpftool prog load` and `ip link set dev DEV xdp obj OUT sec xdp` accept.
Loops (protochain's backward jumps) get a may_goto at each back-edge and per-load
guards: a frame on which the classic program would loop forever gets --nomatch once
the kernel's may_goto counter is spent.

Without -o, or with --asm, the eBPF listing is printed (llvm-objdump syntax).

examples:
  bpfkit translate 'tcp port 80'
  bpfkit translate --xdp 'udp port 53' -o dns.o
  bpfkit translate --xdp --match drop --nomatch pass 'host 10.0.0.1' -o block.o
  bpfkit translate --socket --prog http.ddd -o http.bin
  bpfkit translate --xdp -y RAW 'ip6 protochain 17' -o chain.o
"""


def register(sub) -> None:
    p = sub.add_parser("translate", help="translate cBPF to eBPF (socket filter or XDP)",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--socket", dest="mode", action="store_const", const="socket",
                      help="the kernel's socket-filter conversion (default)")
    mode.add_argument("--xdp", dest="mode", action="store_const", const="xdp",
                      help="a verifier-clean XDP program")
    add_expression_options(p)
    p.add_argument("--prog", metavar="PROG",
                   help="translate a compiled cBPF program file (any encoding) instead")
    p.add_argument("-y", dest="linktype", metavar="LINKTYPE", default="EN10MB",
                   help="link type to compile the expression for (default EN10MB; XDP "
                        "sees Ethernet frames)")
    p.add_argument("-s", dest="snaplen", metavar="SNAPLEN", type=int, default=DEFAULT_SNAPLEN,
                   help=f"snapshot length returned on accept (default {DEFAULT_SNAPLEN})")
    p.add_argument("--match", default="pass", metavar="VERDICT",
                   help="XDP verdict for accepted packets (default pass)")
    p.add_argument("--nomatch", default="drop", metavar="VERDICT",
                   help="XDP verdict for the others (default drop)")
    p.add_argument("--guards", choices=("widened", "per-load"), default="widened",
                   help="XDP bounds guards: one per block, widened (default), or one per load")
    p.add_argument("--asm", action="store_true", help="print the eBPF listing (also with -o)")
    p.add_argument("-o", dest="output", metavar="OUT", help="write the translation here")
    p.set_defaults(func=run, mode="socket")


def _source_program(args):
    expr = expression_text(args)
    if args.prog is not None:
        if expr is not None:
            raise UsageError("both --prog and an expression; give one")
        return read_program(args.prog)
    if expr is None:
        raise UsageError("nothing to translate: give an expression, -F FILE or --prog PROG")
    linktype = int(args.linktype) if args.linktype.isdigit() else args.linktype
    try:
        return compile_filter(expr, linktype, args.snaplen or DEFAULT_SNAPLEN,
                              not args.no_optimize, savefile=False)
    except CompileError as e:
        raise CompileError(describe(e, expr)) from None


def run(args) -> int:
    prog = _source_program(args)
    if args.mode == "xdp":
        tr = translate_xdp(prog, match=args.match, nomatch=args.nomatch, guards=args.guards)
        data = xdp_object(tr) if args.output else None
    else:
        for opt, default in (("match", "pass"), ("nomatch", "drop"), ("guards", "widened")):
            if getattr(args, opt) != default:
                raise UsageError(f"--{opt} applies to --xdp only")
        tr = translate_socket(prog)
        data = tr.to_bytes() if args.output else None
    if data is not None:
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as e:
            raise UsageError(f"{args.output}: cannot write: {e.strerror}") from None
    if args.asm or args.output is None:
        sys.stdout.write(tr.listing().rstrip("\n") + "\n")
    return 0
