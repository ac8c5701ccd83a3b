"""pcap-filter expression compiler (libpcap 1.10.3 semantics): text -> classic BPF.

Passes: lexer (scanner.l) -> parser (grammar.y, driving) -> codegen (gencode.c blocks,
backpatching, register allocation) -> optimizer (optimize.c bpf_optimize) -> linearize
(optimize.c icode_to_fcode).
"""
from __future__ import annotations

import gc

from ...errors import CompileError, UnsupportedError
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

    optimize=True runs a port of libpcap's optimizer (optimize.c), so the program is
    the one `tcpdump -d` prints, and keeps the same packets as `tcpdump -r` — which can
    differ from the unoptimized program on truncated packets, because the optimizer
    drops loads whose values are not needed.  As in pcap_compile, an optimized program
    that reduces to `ret #0` is refused ("expression rejects all packets"), and
    protochain/geneve code is never optimized.  libpcap 1.10.3's optimizer bugs are
    reproduced (e.g. it does not recompute dominators after a pull-up and miscompiles
    `port 80 and 443 or 8080 or port 80`), because its verdicts are the contract.  The
    optimizer avoids libpcap's quadratic steps on long filters with the same result
    (bench/bench_compile.py: 1000 `host A and port P` clauses in ~0.9 s, tcpdump -d
    ~3.7 s; growth is linear; below ~200 clauses libpcap is faster, a constant factor
    of Python).

    Raises CompileError (libpcap's message, and the position) for expressions libpcap
    rejects — including the 802.11, ATM, SS7 and pf primitives, which none of the
    supported link types has — and UnsupportedError only for parentheses nested more
    deeply than Python's recursion limit allows (bison's stack would take them).
    """
    lay = layout(linktype)
    if snaplen == 0:
        raise CompileError("snaplen of 0 rejects all packets")
    # The compiler allocates tens of thousands of small linked objects for a long filter
    # (blocks, edges, statements) and frees them all at the end; the cyclic collector's
    # generation scans over them cost a quarter of the run (bench/bench_compile.py), so it
    # is paused for the compilation (nothing here needs it: the garbage is collected at
    # its next run).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        gen = CodeGen(lay, snaplen, netmask=netmask, savefile=savefile, swapped=swapped,
                      expr=expr)
        try:
            root = parse(expr, gen)
        except RecursionError:
            # bison's parser stack holds 10000 entries; Python's recursion limit is lower.
            raise UnsupportedError("expression nesting depth",
                                   "more deeply nested than bpfkit's recursive parser allows")
        insns = gen.finish(root, optimize)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Program(insns, linktype=lay.dlt, snaplen=snaplen)
