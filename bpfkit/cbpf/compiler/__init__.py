"""pcap-filter expression compiler (libpcap 1.10.3 semantics): text -> classic BPF.

Passes: lexer (scanner.l) -> parser (grammar.y, driving) -> codegen (gencode.c blocks,
backpatching, register allocation) -> linearize (optimize.c icode_to_fcode).
"""
from __future__ import annotations

from ...errors import UnsupportedError
from ..program import DEFAULT_SNAPLEN, Program
from .codegen import CodeGen
from .linktypes import layout
from .parser import parse

__all__ = ["compile_filter"]


def compile_filter(expr: str, linktype: str | int = "EN10MB", snaplen: int = DEFAULT_SNAPLEN,
                   optimize: bool = True, *, savefile: bool = True, swapped: bool = False,
                   netmask: int = 0) -> Program:
    """Compile a pcap-filter(7) expression as libpcap 1.10.3's pcap_compile() does.

    `linktype` is a DLT name (EN10MB, RAW, IPV4, IPV6, LINUX_SLL, LINUX_SLL2, NULL, LOOP)
    or a DLT/LINKTYPE number.  `savefile=True` (default) compiles for a pcap_t reading a
    capture file — what `tcpdump -r FILE EXPR` filters with; `savefile=False` gives the
    code of a "dead" pcap_t (`tcpdump -y DLT -d EXPR`).  They differ in three places:
    `ip6` on NULL/LOOP (the three BSD AF_INET6 values vs Linux's 10), and `inbound`,
    `outbound`, `ifindex` on link types without a direction/ifindex field (an error for a
    savefile, a Linux ancillary load for a dead handle).  `swapped` says a NULL capture is
    in the other byte order than this host.  `netmask` is what tcpdump passes (0).

    optimize: bpfkit has no optimizer yet.  With optimize=True the *unoptimized* program
    is returned — it accepts exactly the same packets as libpcap's optimized one, but
    its listing differs from `tcpdump -d` (it equals `tcpdump -O -d`), and libpcap's
    "expression rejects all packets" error (raised only after optimization) is not
    raised.

    Raises CompileError (with the position) for expressions libpcap rejects, and
    UnsupportedError for constructs libpcap accepts that bpfkit cannot compile yet
    (protochain, geneve, 802.11/ATM/MTP/pf primitives, `ether host NAME`).
    """
    lay = layout(linktype)
    if snaplen == 0:
        from ...errors import CompileError
        raise CompileError("snaplen of 0 rejects all packets")
    gen = CodeGen(lay, snaplen, netmask=netmask, savefile=savefile, swapped=swapped,
                  expr=expr)
    try:
        root = parse(expr, gen)
    except RecursionError:
        # bison's parser stack holds 10000 entries; Python's recursion limit is lower.
        raise UnsupportedError("expression nesting depth",
                               "more deeply nested than bpfkit's recursive parser allows")
    insns = gen.finish(root, optimize)
    return Program(insns, linktype=lay.dlt, snaplen=snaplen)
