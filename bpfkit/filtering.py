"""Run a classic BPF program over a whole capture, streaming: the API behind
`bpfkit run` and `bpfkit filter`.  Sits above bpfkit.pcap and bpfkit.cbpf, below the CLI.

Memory stays bounded: the capture is read in batches (bpfkit.pcap.open_capture), each
batch runs on the vectorised interpreter (libpcap bpf_filter semantics), and kept
packets are written out (on a second thread) while the next batch is read and filtered.
"""
from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np

from .cbpf.program import Program
from .cbpf.vinterp import run_batch
from .errors import BpfError, CaptureError, UsageError
from .pcap import CaptureWriter, open_capture
from .pcap.reader import CaptureReader
from .pcap.batch import PacketBatch
from .pcap.byteorder import capture_is_swapped

Progress = Callable[[int], None]   # called with the number of packets read so far

# A program, or a maker of one for a batch's (link type, snaplen): filter expressions
# compile differently per link type, and a pcapng file may hold several.
ProgramFor = Callable[[int, int], Program]
ProgramSource = Union[Program, ProgramFor]


def expression_program(expr: str, *, optimize: bool = True, swapped: bool = False
                       ) -> ProgramFor:
    """A ProgramFor compiling `expr` as `tcpdump -r FILE EXPR` does: libpcap's savefile
    semantics, the file's link type and snapshot length (which `ret` returns), once per
    distinct (link type, snaplen).  `swapped`: the capture is in the other byte order
    (matters for DLT_NULL's address family; see bpfkit.pcap.byteorder).  The compiler is
    imported at the first call (filter_capture makes it once its workers have started)."""
    cache: dict[tuple[int, int], Program] = {}

    def make(linktype: int, snaplen: int) -> Program:
        key = (linktype, snaplen)
        if key not in cache:
            from .cbpf.compiler import compile_filter
            cache[key] = compile_filter(expr, linktype, snaplen, optimize,
                                        savefile=True, swapped=swapped)
        return cache[key]

    return make


def capture_expression_program(expr: str, capture: str, *, optimize: bool = True
                               ) -> ProgramFor:
    """expression_program for a capture file, with its byte order looked up."""
    return expression_program(expr, optimize=optimize, swapped=capture_is_swapped(capture))


ENGINES = ("vector", "interp")


def _scalar_batch(prog: Program, batch: PacketBatch) -> np.ndarray:
    """The reference classic interpreter (libpcap bpf_filter semantics), packet by
    packet: what --engine interp runs, to cross-check the vector engine."""
    from .cbpf.interp import run_filter
    return np.array([run_filter(prog, bytes(batch[i]), int(batch.wirelen[i]))
                     for i in range(len(batch))], dtype=np.uint32)


def _engine(name: str):
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r} (use one of {', '.join(ENGINES)})")
    return run_batch if name == "vector" else _scalar_batch


def _program(source: ProgramSource, batch: PacketBatch) -> Program:
    return source if isinstance(source, Program) else source(batch.linktype, batch.snaplen)


@dataclass
class RunSummary:
    """Per-packet return values of a program over a capture, in capture order."""
    packets: int
    retval: np.ndarray                      # uint32[packets]
    problems: list[CaptureError] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return int(np.count_nonzero(self.retval))

    @property
    def rejected(self) -> int:
        return self.packets - self.accepted


@dataclass
class FilterSummary:
    packets: int            # packets read
    kept: int               # packets written
    problems: list[CaptureError] = field(default_factory=list)


def run_program(prog: ProgramSource, capture: str, *, count: Optional[int] = None,
                strict: bool = False, progress: Optional[Progress] = None,
                engine: str = "vector") -> RunSummary:
    """Run `prog` over the first `count` packets (all when None) of `capture`.
    engine: "vector" (the lane-parallel classic interpreter, bpfkit.cbpf.vinterp) or
    "interp" (the reference interpreter, one packet at a time)."""
    run = _engine(engine)
    parts: list[np.ndarray] = []
    n = 0
    with _reader(capture, strict) as reader:
        for batch in reader:
            if count is not None and n + len(batch) > count:
                batch = batch[: count - n]
            parts.append(run(_program(prog, batch), batch))
            n += len(batch)
            if progress:
                progress(n)
            if count is not None and n >= count:
                break
        problems = list(reader.problems)
    retval = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    return RunSummary(n, retval.astype(np.uint32, copy=False), problems)


def filter_capture(prog: ProgramSource, capture: str, output: Optional[str], *,
                   count: Optional[int] = None, format: str = "pcap", strict: bool = False,
                   progress: Optional[Progress] = None, engine: str = "vector",
                   workers: Optional[int] = None) -> FilterSummary:
    """Write the packets of `capture` on which `prog` returns non-zero to `output`
    (None: count only), keeping the input's link type, snaplen and timestamp precision.
    `count` stops after that many kept packets, like `tcpdump -c`.

    As with libpcap's pcap_offline_filter, a non-zero return keeps the packet whole:
    a savefile reader does not truncate to the return value.

    engine: "vector" (default: the lane-parallel classic interpreter) or "interp" (the
    reference interpreter, packet by packet; slow, for cross-checking).  Classic
    programs are not translated to eBPF here: libpcap's `len` is the wire length, which
    neither translation sees (a socket filter's skb->len and XDP's data_end are the
    captured bytes), so only the classic engines keep what tcpdump keeps on truncated
    captures.

    workers: processes to use (None: one per CPU, at most MAX_WORKERS).  A classic
    pcap file of at least PARALLEL_MIN_BYTES, written to a regular file (or counted),
    is cut into parts that many processes filter side by side (bpfkit.parallel); the
    output is the same, byte for byte."""
    run = _engine(engine)
    if _same_file(capture, output):
        # the input is memory-mapped: truncating it under the reader would kill the
        # process (SIGBUS); tcpdump -r X -w X silently leaves an empty capture
        raise UsageError(f"the output {output} is the input capture; write elsewhere")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    nworkers = _workers_for(capture, output, count, format, workers)
    if nworkers > 1:
        from .parallel import filter_parallel
        done = filter_parallel(prog, run, capture, output, nworkers, strict, progress,
                               HEAD_BYTES)
        if done is not None:
            return FilterSummary(*done)
    read = kept = 0
    writer = None
    out = None
    try:
        with _reader(capture, strict) as reader:
            for batch in reader:
                read += len(batch)
                sel = _kept(batch, run(_program(prog, batch), batch))
                if count is not None and kept + len(sel) > count:
                    sel = sel[: count - kept]
                if output is not None:
                    if writer is None:
                        writer = CaptureWriter(output, format=format, linktype=batch.linktype,
                                               snaplen=batch.snaplen, nanos=batch.ts_nanos)
                        out = _Background(writer)
                    elif batch.linktype != writer.linktype and format == "pcap" and len(sel):
                        raise BpfError(
                            f"the input changes link type ({writer.linktype} -> {batch.linktype}) "
                            f"after {read - len(batch)} packets; a pcap file holds one link type "
                            f"(write pcapng with --pcapng)")
                    out.write(sel)
                kept += len(sel)
                if progress:
                    progress(read)
                if count is not None and kept >= count:
                    break
            if out is not None:
                out.wait()
            problems = list(reader.problems)
            if output is not None and writer is None:
                # no packets at all: still write a valid, empty capture, as tcpdump -w does
                writer = CaptureWriter(output, format=format, linktype=reader.linktype,
                                       snaplen=reader.snaplen, nanos=reader.ts_nanos)
    finally:
        if out is not None:
            out.wait(raise_error=False)
        if writer is not None:
            writer.close()
    return FilterSummary(read, kept, problems)


# Bytes of each packet the reader copies next to each other (PacketBatch.head), where
# the engine's loads find them: enough for the link, IP and transport headers that
# filter expressions test.
HEAD_BYTES = 64


# Packets per batch for filtering: a whole walk (64 MB of the file) at a time; fewer,
# larger batches cost the engine fewer numpy calls per packet.
BATCH_PACKETS = 1 << 18


def _reader(capture, strict: bool) -> CaptureReader:
    return CaptureReader(capture, strict=strict, batch_packets=BATCH_PACKETS,
                         _head=HEAD_BYTES, _whole=True, _populate=False)


def _kept(batch: PacketBatch, retval: np.ndarray) -> PacketBatch:
    """The packets of `batch` where retval is non-zero (without the head: a writer
    does not need it)."""
    ix = np.flatnonzero(retval)
    return PacketBatch(batch.buf, batch.offset.take(ix), batch.caplen.take(ix),
                       batch.wirelen.take(ix), batch.ts_ns.take(ix), batch.linktype,
                       batch.snaplen, batch.ts_nanos)


def _same_file(capture, output) -> bool:
    if not isinstance(capture, (str, os.PathLike)) or not isinstance(output, (str, os.PathLike)):
        return False
    if os.fspath(capture) == "-" or os.fspath(output) == "-":
        return False
    try:
        return os.path.samefile(capture, output)
    except OSError:
        return False            # one of them does not exist (yet)


class _Background:
    """Writes each batch on a second thread while the caller reads and filters the next:
    the write is mostly the kernel copying kept packets out of the input's memory map
    (writev, which runs without the GIL), so it overlaps the reading and filtering.
    One write at a time, in order; a write's error is raised by the next call."""

    def __init__(self, writer: CaptureWriter, after: Optional[Callable] = None):
        self.writer = writer
        self.after = after              # called with each batch once it is written
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    def write(self, batch) -> None:
        self.wait()
        self.thread = threading.Thread(target=self._run, args=(batch,), daemon=True)
        self.thread.start()

    def _run(self, batch) -> None:
        try:
            self.writer.write(batch)
            if self.after is not None:
                self.after(batch)
        except BaseException as e:          # handed to the caller's thread by wait()
            self.error = e

    def wait(self, raise_error: bool = True) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        err, self.error = self.error, None
        if err is not None and raise_error:
            raise err


# --- several processes (bpfkit.parallel) ---------------------------------------------------

PARALLEL_MIN_BYTES = 96 << 20      # smaller captures: one process
MAX_WORKERS = 4


def default_workers() -> int:
    """Processes filter_capture uses by default: the CPUs this process may run on, at
    most MAX_WORKERS; BPFKIT_WORKERS overrides."""
    env = os.environ.get("BPFKIT_WORKERS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise UsageError(f"BPFKIT_WORKERS={env!r} is not a number") from None
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_WORKERS))


def _workers_for(capture, output, count, format, workers) -> int:
    """How many processes filter_capture uses (1: this one alone)."""
    if workers == 1 or count is not None or format != "pcap" or not hasattr(os, "fork"):
        return 1
    if threading.active_count() > 1:
        return 1                    # forking a process with threads: not worth the risk
    if not isinstance(capture, (str, os.PathLike)) or os.fspath(capture) == "-":
        return 1
    if output is not None:
        if not isinstance(output, (str, os.PathLike)) or os.fspath(output) == "-":
            return 1
        try:
            st = os.stat(output)
            # a FIFO or device is written in order by one process; /dev/null takes anything
            if not stat.S_ISREG(st.st_mode) and not (
                    stat.S_ISCHR(st.st_mode) and os.path.samefile(output, os.devnull)):
                return 1
        except FileNotFoundError:
            pass
        except OSError:
            return 1
    try:
        st = os.stat(capture)
    except OSError:
        return 1
    if not stat.S_ISREG(st.st_mode) or st.st_size < PARALLEL_MIN_BYTES:
        return 1
    return workers if workers is not None else default_workers()
