"""bpfkit compare: run a classic program and its eBPF translations (socket-filter mode
and XDP mode, on bpfkit's eBPF interpreter, and in the running kernel when bpf(2) is
allowed) over a capture and report every packet on which a pair disagrees."""
from __future__ import annotations

import argparse

from ..cbpf.encodings import read_program
from ..errors import CompileError, UsageError
from ..filtering import capture_expression_program
from ..pcap import read_capture
from ..translate.compare import compare_batch
from .common import EXIT_FOUND, EXIT_OK, print_json
from .expr_args import add_expression_options, describe, expression_text

EPILOG = """\
The program is a pcap-filter(7) expression (compiled as for `tcpdump -r` with the
capture's link type and snapshot length), an expression file (-F), or a compiled cBPF
program (--prog, any encoding `bpfkit disasm` reads).

pairs:
  socket         classic socket-filter interpreter (Linux semantics) vs the
                 kernel-style translation (bpf_convert_filter) on the eBPF
                 interpreter: equal return values
  xdp            classic filter interpreter (libpcap semantics on the captured bytes)
                 vs the XDP translation on the vector engine (--engine interp: on the
                 eBPF interpreter): equal match decisions (frames under 14 or over
                 3520 bytes are skipped)
  vector-socket  the socket translation on the eBPF interpreter (one packet at a time)
                 vs the same program on the vector engine (the whole capture at once):
                 equal return values (not with --engine interp)
  vector-xdp     the XDP translation on the eBPF interpreter vs on the vector engine:
                 equal verdicts (frames skipped as in xdp; not with --engine interp)
  kernel-cbpf    the kernel's classic filter (SO_ATTACH_FILTER on an AF_UNIX datagram
                 socket) vs the classic socket-filter interpreter: equal delivered
                 lengths (-1 = dropped)
  kernel-socket  the socket translation in the kernel (BPF_PROG_TEST_RUN) vs on the
                 eBPF interpreter: equal return values
  kernel-xdp     the XDP translation in the kernel (BPF_PROG_TEST_RUN) vs on the
                 eBPF interpreter: equal verdicts
The kernel pairs run with --kernel yes, or with the default --kernel auto when the
kernel allows bpf(2) (root); otherwise auto lists them as unavailable with the reason
and yes is an error.  Packets the kernel refuses are skipped with its reason.
A pair whose translation does not exist says why (e.g. an ancillary load).
Exit status 1 when any pair disagrees on any packet or the kernel refuses a
translation.

examples:
  bpfkit compare -r pcaps/sample.pcap 'tcp port 80'
  bpfkit compare -r in.pcap --prog filter.ddd --json
  bpfkit compare -r in.pcap --kernel yes 'udp port 53'
"""


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare a cBPF program with its eBPF translations "
                                       "over a capture",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expression_options(p)
    p.add_argument("--prog", metavar="PROG",
                   help="use a compiled cBPF program file instead of an expression")
    p.add_argument("-r", dest="capture", metavar="FILE", required=True,
                   help="capture to read (pcap or pcapng)")
    p.add_argument("--list", type=int, default=10, metavar="N",
                   help="list the first N disagreeing packets of each pair (default 10)")
    p.add_argument("--kernel", choices=("auto", "yes", "no"), default="auto",
                   help="also compare with the running kernel: auto (when bpf(2) is "
                        "allowed, the default), yes (error if it is not), no")
    p.add_argument("--engine", choices=("vector", "interp"), default="vector",
                   help="vector (default): the xdp pair's translation runs on the vector "
                        "engine, and the vector-socket/vector-xdp pairs check that engine "
                        "against the eBPF interpreter; interp: the eBPF interpreter only")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    expr = expression_text(args)
    batch = read_capture(args.capture)
    if args.prog is not None:
        if expr is not None:
            raise UsageError("both --prog and an expression; give one")
        prog = read_program(args.prog)
    else:
        try:
            prog = capture_expression_program(expr or "", args.capture,
                                              optimize=not args.no_optimize)(
                batch.linktype, batch.snaplen)
        except CompileError as e:
            raise CompileError(describe(e, expr or "")) from None
    report = compare_batch(prog, batch, max_listed=max(args.list, 0), kernel=args.kernel,
                           engine=args.engine)
    if args.json:
        print_json({"packets": report.packets, "ok": report.ok, "pairs": [
            {"pair": p.name, "left": p.left, "right": p.right, "compared": p.compared,
             "agreed": p.agreed, "skipped": p.skipped,
             "skip_reasons": [{"reason": r, "packets": c} for r, c in p.skip_reasons],
             "unavailable": p.unavailable, "error": p.error,
             "disagreements": [{"packet": d.index, "left": d.left, "right": d.right,
                                "summary": d.summary} for d in p.disagreements]}
            for p in report.pairs]})
    else:
        print(f"{'pair':13} {'left':13} {'right':12} {'compared':>9} {'agreed':>9} "
              f"{'skipped':>8}")
        for p in report.pairs:
            print(f"{p.name:13} {p.left:13} {p.right:12} {p.compared:9} {p.agreed:9} "
                  f"{p.skipped:8}"
                  + (f"  unavailable: {p.unavailable}" if p.unavailable else "")
                  + (f"  ERROR: {p.error}" if p.error else ""))
        for p in report.pairs:
            for reason, count in p.skip_reasons:
                print(f"{p.name}: skipped {count}: {reason}")
        for p in report.pairs:
            for d in p.disagreements:
                print(f"{p.name}: packet {d.index}: {p.left} {d.left} != {p.right} "
                      f"{d.right}: {d.summary}")
    return EXIT_OK if report.ok else EXIT_FOUND
