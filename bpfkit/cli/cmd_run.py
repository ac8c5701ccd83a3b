"""bpfkit run: a classic BPF program's return value on every packet of a capture, or
(--ebpf) an eBPF XDP / socket-filter program's, with its verdicts and maps."""
from __future__ import annotations

import argparse
import sys

from ..cbpf.encodings import read_program
from ..errors import UsageError
from ..filtering import run_program
from .capture_args import Progress, add_read_options, positive_int, report_problems
from .cmd_asm import EBPF_SYNTAXES, add_map_option, map_specs, read_ebpf_program, read_input
from .elf_args import add_elf_options, is_elf, load_object, parse_sets, refuse_non_elf_options
from .common import print_json

EPILOG = """\
PROG is a program file in any encoding `bpfkit disasm` reads: a tcpdump -d listing,
bpf_asm source, -dd C array, -ddd decimal lines, the comma form of xt_bpf/tc, or raw
struct sock_filter bytes ('-' reads stdin).  The program runs with libpcap's bpf_filter
semantics: an out-of-bounds load makes it return 0, `len` is the wire length.

examples:
  tcpdump -y EN10MB -ddd 'tcp port 80' > http.ddd
  bpfkit run http.ddd -r pcaps/sample.pcap
  bpfkit run http.ddd -r pcaps/sample.pcap --json | jq '.retval[:10]'

eBPF (--ebpf --type xdp|socket):
  PROG is eBPF assembly (llvm syntax by default, --syntax kernel|conformance), raw
  instruction bytes or hex (detected; --format asm|raw|hex forces one).  Maps are
  defined with --map NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES[:FLAGS], in order; the
  program names them as `r1 = NAME ll` (raw bytes: lddw src=5 imm=N, the first
  --map being map 0).
  The program runs on the vector engine (--engine interp: the reference interpreter)
  with the results of running the packets one at a time in capture order, as
  consecutive BPF_PROG_TEST_RUN calls would: maps keep their contents from packet to
  packet, bpf_ktime_get_ns() is the packet's capture time and bpf_get_prandom_u32()
  draws a sequence fixed by --seed and the packet's number.  Packets must be Ethernet
  frames (both program types see the frame from the mac header on, as in the
  kernel's test run); a packet the kernel would refuse (< 14 bytes) or bpfkit cannot
  model (XDP over 3520 bytes) is skipped and listed.
  Output: a summary (packets, packets per verdict, faults, skipped); --json one
  object: "packets", "retval" (per packet), "verdict" (XDP: names per packet),
  "counts", "insns", "faults" [{"packet","pc","kind","detail"}], "skipped", "trace"
  (bpf_trace_printk lines with their packet), and with --dump-maps "maps":
  {name: [{"key": hex, "value": hex}]} (per-CPU maps: "value" is a list, one hex
  string per CPU).  -w FILE writes every packet as the program left it (XDP
  rewrites, adjust_head/tail) with its original timestamp.
  The capture is streamed: read and run --batch N packets at a time (default 65536),
  the maps carrying over from batch to batch, outputs written as they come and the
  per-packet lists kept in temporary files, so memory does not grow with the capture
  (-w - and --json are written out at the end).

  An ELF object (clang -O2 -g -target bpf -c prog.c -o prog.o) brings its own maps
  and global data: pick the program with --section/--name, the type comes from the
  section name (libbpf's conventions; --type overrides), and --set NAME=VALUE sets a
  global (e.g. `const volatile` configuration in .rodata) before the run.  Global data
  appears in --dump-maps under its section name (.data, .bss, .rodata).

  bpfkit run --ebpf prog.o --section xdp -r in.pcap --set max_len=1500 --dump-maps
  bpfkit run --ebpf --type xdp count.s --map proto:array:4:8:256 -r in.pcap --dump-maps
  bpfkit run --ebpf --type socket filter.bin -r in.pcap --json | jq .counts
  bpfkit run --ebpf --type xdp rewrite.s -r in.pcap -w rewritten.pcap
"""


def register(sub) -> None:
    p = sub.add_parser("run", help="run a cBPF or eBPF (--ebpf) program over every packet "
                                   "of a capture",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prog", metavar="PROG", help="program file (any encoding), '-' for stdin")
    add_read_options(p, count_help="run on the first COUNT packets only")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"packets": N, "accepted": A, "rejected": R, '
                        '"retval": [r0, r1, ...]} (retval in capture order); for --ebpf '
                        'see below')
    e = p.add_argument_group("eBPF")
    e.add_argument("--ebpf", action="store_true", help="PROG is an eBPF program")
    e.add_argument("--type", dest="prog_type", choices=("xdp", "socket"),
                   help="eBPF program type (required with --ebpf)")
    add_map_option(e, full=True)
    e.add_argument("--dump-maps", action="store_true",
                   help="print the maps' contents after the last packet")
    e.add_argument("--format", dest="informat", choices=("auto", "asm", "raw", "hex"),
                   help="eBPF program encoding (default: detected)")
    e.add_argument("--syntax", choices=EBPF_SYNTAXES,
                   help="eBPF assembly syntax (default llvm)")
    e.add_argument("--byteorder", choices=("little", "big"),
                   help="byte order of raw eBPF instructions (default little)")
    e.add_argument("--seed", type=int,
                   help="seed of bpf_get_prandom_u32's generator (default 0)")
    e.add_argument("-w", dest="outfile", metavar="FILE",
                   help="write the packets as the program left them (pcap)")
    add_elf_options(e, with_set=True)
    e.add_argument("--trace", action="store_true",
                   help="print bpf_trace_printk lines (they are always in --json)")
    p.add_argument("--engine", choices=("vector", "interp"), default="vector",
                   help="vector (default): the vector engine, all packets of a batch at "
                        "once; packets that reach a tail call, ring buffer or perf "
                        "output, an LRU/LPM/queue map, map-in-map, bpf_loop or a kfunc "
                        "are handed to the interpreter one by one, in capture order "
                        "(the engine: line counts them); interp: the reference "
                        "interpreter, one packet at a time")
    e.add_argument("--batch", type=positive_int, metavar="N",
                   help="read and run the capture N packets at a time (default 65536); "
                        "memory is bounded by the batch, not by the capture, and the "
                        "results do not depend on N")
    p.set_defaults(func=run)


_EBPF_ONLY = (("prog_type", "--type"), ("maps", "--map"), ("dump_maps", "--dump-maps"),
              ("outfile", "-w"), ("trace", "--trace"), ("informat", "--format"),
              ("syntax", "--syntax"), ("byteorder", "--byteorder"), ("seed", "--seed"),
              ("section", "--section"), ("elf_func", "--name"), ("sets", "--set"),
              ("batch", "--batch"))


def run(args) -> int:
    if args.ebpf:
        return run_ebpf(args)
    for attr, flag in _EBPF_ONLY:
        if getattr(args, attr) not in (None, False, []):
            raise UsageError(f"{flag} is for eBPF programs: add --ebpf")
    prog = read_program(args.prog)
    progress = Progress("run")
    summary = run_program(prog, args.capture, count=args.count, strict=args.strict,
                          progress=progress, engine=args.engine)
    progress.done()
    report_problems("run", summary.problems)
    if args.json:
        print_json({"packets": summary.packets, "accepted": summary.accepted,
                    "rejected": summary.rejected, "retval": summary.retval.tolist(),
                    "warnings": [str(p) for p in summary.problems]})
    else:
        print(f"packets: {summary.packets}\naccepted: {summary.accepted}\n"
              f"rejected: {summary.rejected}")
    return 0


def run_ebpf(args) -> int:
    from ..ebpf.runner import DEFAULT_BATCH_PACKETS, engine_summary, stream_capture
    from ..ebpf.runreport import OutputCapture, RunReport
    data = read_input(args.prog)
    maps = None
    if is_elf(data):
        if args.maps:
            raise UsageError("--map: an ELF object defines its own maps")
        obj = load_object(data, args.prog)
        # the section names the type (libbpf's conventions); --type overrides it
        prog = obj.program(args.elf_func, section=args.section, prog_type=args.prog_type)
        maps = obj.create_maps(config=parse_sets(args.sets))
    else:
        refuse_non_elf_options(args)
        if not args.prog_type:
            raise UsageError("--ebpf needs --type xdp or --type socket")
        prog = read_ebpf_program(args.prog, fmt=args.informat or "auto",
                                 syntax=args.syntax or "llvm",
                                 byteorder=args.byteorder or "little",
                                 prog_type=args.prog_type,
                                 maps=map_specs(args.maps, full=True), data=data)
    progress = Progress("run")
    with stream_capture(prog, args.capture, count=args.count, maps=maps, seed=args.seed or 0,
                        strict=args.strict, progress=progress, engine=args.engine,
                        batch_packets=args.batch or DEFAULT_BATCH_PACKETS) as run, \
            RunReport(prog, json=args.json, trace=args.trace) as report:
        out = OutputCapture(args.outfile, source=args.capture) if args.outfile else None
        done = False
        try:
            for part in run:
                report.add(part)
                if out is not None:
                    out.write(part, run.output_header())
            progress.done()
            report_problems("run", run.problems)
            if out is not None:
                out.finish(run.output_header())
            done = True
        finally:
            if out is not None and not done:
                out.abort()
        maps_dump = {name: m.dump() for name, m in run.maps.items()} \
            if args.dump_maps else None
        if args.json:
            report.write_json(sys.stdout, maps=maps_dump, problems=run.problems,
                              engine=run.engine, handed=run.handed)
        else:
            report.write_summary(sys.stdout, maps=maps_dump,
                                 engine=engine_summary(run.engine, run.handed, run.packets))
    return 0
