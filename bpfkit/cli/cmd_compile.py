"""bpfkit compile: a pcap-filter expression to classic BPF, printed as tcpdump prints it."""
from __future__ import annotations

import argparse

from ..cbpf.compiler import compile_filter
from ..cbpf.disasm import format_bpf_asm, format_tcpdump
from ..cbpf.encodings import format_dd, format_ddd
from ..cbpf.program import DEFAULT_SNAPLEN
from ..errors import CompileError, UsageError
from ..pcap import open_capture
from ..pcap.byteorder import capture_is_swapped
from .common import print_json
from .expr_args import add_expression_options, describe, expression_text

EPILOG = """\
The output is what `tcpdump -y LINKTYPE -d EXPR` prints (libpcap 1.10.3), for -d, -dd,
-ddd and -O.  With -r FILE the link type and snapshot length come from the capture and
the code is the one `tcpdump -r FILE EXPR` filters with (a savefile's code differs from
-y's in a few places, e.g. `ip6` on NULL).

link types: EN10MB (default), RAW, IPV4, IPV6, LINUX_SLL, LINUX_SLL2, NULL, LOOP

examples:
  bpfkit compile 'tcp port 80'
  bpfkit compile -ddd -y LINUX_SLL2 udp port 53 > dns.ddd
  bpfkit compile -O -d 'vlan and host 10.0.0.1'
  bpfkit compile -r pcaps/null.pcap ip6
  bpfkit compile -F filter.txt --json
"""


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a filter expression (as tcpdump -d)",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expression_options(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("-d", dest="fmt", action="store_const", const="d",
                     help="tcpdump -d listing (default)")
    out.add_argument("-dd", dest="fmt", action="store_const", const="dd",
                     help="C array, as tcpdump -dd")
    out.add_argument("-ddd", dest="fmt", action="store_const", const="ddd",
                     help="decimal numbers, as tcpdump -ddd")
    out.add_argument("--bpf-asm", dest="fmt", action="store_const", const="bpf_asm",
                     help="the kernel's bpf_asm syntax")
    out.add_argument("--json", dest="fmt", action="store_const", const="json",
                     help='{"linktype", "snaplen", "insns": [[code, jt, jf, k], ...]}')
    p.add_argument("-y", dest="linktype", metavar="LINKTYPE",
                   help="link type name or number (default EN10MB)")
    p.add_argument("-s", dest="snaplen", metavar="SNAPLEN", type=int,
                   help=f"snapshot length, returned on accept (default {DEFAULT_SNAPLEN})")
    p.add_argument("-r", dest="capture", metavar="FILE",
                   help="take link type and snapshot length from this capture")
    p.set_defaults(func=run, fmt=None)


def run(args) -> int:
    expr = expression_text(args) or ""
    savefile, swapped = False, False
    linktype = args.linktype or "EN10MB"
    snaplen = DEFAULT_SNAPLEN
    if args.capture is not None:
        if args.linktype is not None:
            raise UsageError("-r takes the link type from the capture; drop -y")
        with open_capture(args.capture) as reader:
            linktype, snaplen = reader.linktype, reader.snaplen
        savefile, swapped = True, capture_is_swapped(args.capture)
    elif linktype.isdigit():
        linktype = int(linktype)
    if args.snaplen is not None:
        if args.snaplen < 0:
            raise UsageError(f"-s {args.snaplen}: the snapshot length cannot be negative")
        # tcpdump: -s 0 means the default (262144)
        snaplen = args.snaplen or DEFAULT_SNAPLEN
    try:
        prog = compile_filter(expr, linktype, snaplen, not args.no_optimize,
                              savefile=savefile, swapped=swapped)
    except CompileError as e:
        raise CompileError(describe(e, expr)) from None
    fmt = args.fmt or "d"
    if fmt == "json":
        print_json({"linktype": prog.linktype, "snaplen": prog.snaplen,
                    "insns": [list(t) for t in prog.as_tuples()]})
        return 0
    text = {"d": format_tcpdump, "dd": format_dd, "ddd": format_ddd,
            "bpf_asm": format_bpf_asm}[fmt](prog)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
