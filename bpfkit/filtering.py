"""Run a classic BPF program over a whole capture, streaming: the API behind
`bpfkit run` and `bpfkit filter`.  Sits above bpfkit.pcap and bpfkit.cbpf, below the CLI.

Memory stays bounded: the capture is read in batches (bpfkit.pcap.open_capture), each
batch runs on the vectorised interpreter (libpcap bpf_filter semantics), and kept
packets are written out (on a second thread) while the next batch is read and filtered.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np

from .cbpf.program import Program
from .cbpf.vinterp import run_batch
from .errors import BpfError, CaptureError, UsageError
from .pcap import CaptureWriter, open_capture
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
    (matters for DLT_NULL's address family; see bpfkit.pcap.byteorder)."""
    from .cbpf.compiler import compile_filter

    cache: dict[tuple[int, int], Program] = {}

    def make(linktype: int, snaplen: int) -> Program:
        key = (linktype, snaplen)
        if key not in cache:
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
    with open_capture(capture, strict=strict) as reader:
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
                   progress: Optional[Progress] = None, engine: str = "vector"
                   ) -> FilterSummary:
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
    captures."""
    run = _engine(engine)
    if _same_file(capture, output):
        # the input is memory-mapped: truncating it under the reader would kill the
        # process (SIGBUS); tcpdump -r X -w X silently leaves an empty capture
        raise UsageError(f"the output {output} is the input capture; write elsewhere")
    read = kept = 0
    writer = None
    out = None
    try:
        with open_capture(capture, strict=strict) as reader:
            for batch in reader:
                read += len(batch)
                sel = batch[run(_program(prog, batch), batch) != 0]
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

    def __init__(self, writer: CaptureWriter):
        self.writer = writer
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    def write(self, batch) -> None:
        self.wait()
        self.thread = threading.Thread(target=self._run, args=(batch,), daemon=True)
        self.thread.start()

    def _run(self, batch) -> None:
        try:
            self.writer.write(batch)
        except BaseException as e:          # handed to the caller's thread by wait()
            self.error = e

    def wait(self, raise_error: bool = True) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        err, self.error = self.error, None
        if err is not None and raise_error:
            raise err
