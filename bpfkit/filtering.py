"""Run a classic BPF program over a whole capture, streaming: the API behind
`bpfkit run` and `bpfkit filter`.  Sits above bpfkit.pcap and bpfkit.cbpf, below the CLI.

Memory stays bounded: the capture is read in batches (bpfkit.pcap.open_capture), each
batch runs on the vectorised interpreter (libpcap bpf_filter semantics), and kept
packets are written out (on a second thread) while the next batch is read and filtered.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import stat
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np

from .cbpf.program import Program
from .cbpf.vinterp import run_batch
from .errors import BpfError, CaptureError, CaptureWarning, UsageError
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
    is cut into that many parts, filtered side by side (see _parallel); the output is
    the same, byte for byte."""
    run = _engine(engine)
    if _same_file(capture, output):
        # the input is memory-mapped: truncating it under the reader would kill the
        # process (SIGBUS); tcpdump -r X -w X silently leaves an empty capture
        raise UsageError(f"the output {output} is the input capture; write elsewhere")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    nparts = _parts_for(capture, output, count, format, workers)
    if nparts > 1:
        summary = _parallel(prog, run, capture, output, nparts, strict, progress)
        if summary is not None:
            return summary
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


def _reader(capture, strict: bool) -> CaptureReader:
    return CaptureReader(capture, strict=strict, _head=HEAD_BYTES)


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


# --- several processes ------------------------------------------------------------------
# A large classic pcap file is cut into parts at guessed record boundaries
# (CaptureReader's boundaries(): the first offset past a target where three consecutive
# record headers look right).  The calling process filters the first part; a forked
# process filters each of the others, from its own memory map.  A part's guess is
# right iff the walk of the part before it, which starts at a right offset, stops
# exactly there (CaptureReader.stopped_at): the same chain libpcap follows one record
# at a time.  When a guess is wrong (or the part before it ends in bad data), the parts
# from there on are dropped and the calling process reads on from where the walk
# really stopped, so the guesses only decide speed.
#
# Output: part i's kept records go right after part i-1's.  Each worker adds up the
# bytes it keeps; once every part before it is verified and counted, the parent sends it
# its file offset, and it writes there (CaptureWriter.resume), its writes overlapping
# the others'.  A worker holds on to what it keeps (indices into its memory map, not
# packet bytes) until it has its offset; the first part is a little smaller than the
# others so that the offsets usually arrive while the other workers still filter.

PARALLEL_MIN_BYTES = 96 << 20      # smaller captures: one process
PART_MIN_BYTES = 48 << 20          # no part smaller than this
MAX_WORKERS = 4
FIRST_PART_SHARE = 1.0             # the first part's size, relative to the others'


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


def _parts_for(capture, output, count, format, workers) -> int:
    """How many parts to filter side by side (1: do it in this process)."""
    if workers == 1 or count is not None or format != "pcap" or not hasattr(os, "fork"):
        return 1
    if not isinstance(capture, (str, os.PathLike)) or os.fspath(capture) == "-":
        return 1
    if output is not None:
        if not isinstance(output, (str, os.PathLike)) or os.fspath(output) == "-":
            return 1
        try:
            if not stat.S_ISREG(os.stat(output).st_mode):
                return 1            # a FIFO or device: written in order by one process
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
    n = workers if workers is not None else default_workers()
    return max(1, min(n, st.st_size // PART_MIN_BYTES))


def _send(fd: int, obj) -> None:
    data = pickle.dumps(obj)
    data = len(data).to_bytes(8, "little") + data
    while data:
        data = data[os.write(fd, data):]


def _recv(fd: int):
    def exactly(n):
        chunks = []
        while n:
            b = os.read(fd, n)
            if not b:
                raise EOFError
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)
    return pickle.loads(exactly(int.from_bytes(exactly(8), "little")))


def _die_with_parent() -> None:
    """Linux: SIGKILL this (forked) process when its parent dies."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        pass


def _record_bytes(sel: PacketBatch) -> int:
    """The bytes CaptureWriter writes for `sel` in a classic pcap file."""
    return 16 * len(sel) + int(sel.caplen.sum(dtype=np.int64))


class _Worker:
    """A forked process filtering one part (parent side)."""

    def __init__(self, pid: int, res: int, ctrl: int, span: tuple):
        self.pid, self.res, self.ctrl, self.span = pid, res, ctrl, span
        self.done = None            # its "done" message
        self.told = False           # sent an offset or abort

    def program(self, prog: Program) -> None:
        _send(self.ctrl, prog)

    def tell(self, offset: int) -> None:
        if self.told:
            return
        self.told = True
        try:
            _send(self.ctrl, offset)
        except OSError:
            pass                    # it has exited (nothing to write)

    def receive(self):
        try:
            msg = _recv(self.res)
        except (EOFError, OSError, pickle.UnpicklingError):
            msg = ("error", "the worker process died", False)
        if msg[0] == "error":
            _, text, bpf = msg
            raise (BpfError(text) if bpf else BpfError(f"filter worker failed: {text}"))
        return msg

    def finish(self, kill: bool = False) -> None:
        if self.pid is None:
            return
        if kill and not self.told:
            # it has written nothing (a worker writes only at an offset it was sent)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        for fd in (self.res, self.ctrl):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.pid = None


def _work(run, capture, output, span, res: int, ctrl: int, hdr) -> None:
    """The forked process: filter the records of `span` with the program the parent
    sends first (it compiles it meanwhile), report, and write what it kept at the offset
    the parent sends next.  Never returns."""
    status = 1
    try:
        _die_with_parent()
        warnings.simplefilter("ignore")
        at = None
        prog = None

        def poll(block: bool):
            nonlocal at
            if at is None and (block or select.select([ctrl], [], [], 0)[0]):
                at = _recv(ctrl)
            return at

        pending: list[PacketBatch] = []
        out = writer = None
        read = kept = nbytes = 0

        def flush() -> None:
            nonlocal writer, out
            if writer is None:
                writer = CaptureWriter.resume(output, at, linktype=hdr[0], snaplen=hdr[1],
                                              nanos=hdr[2])
                out = _Background(writer)
            if len(pending) > 1:
                pending[:] = [_join(pending)]
            for b in pending:
                out.write(b)
            pending.clear()

        reader = CaptureReader(capture, strict=False, _span=span, _head=HEAD_BYTES)
        with reader:
            for batch in reader:
                if prog is None:
                    prog = _recv(ctrl)
                read += len(batch)
                sel = _kept(batch, run(prog, batch))
                if len(sel):
                    kept += len(sel)
                    nbytes += _record_bytes(sel)
                    if output is not None:
                        pending.append(sel)
                if output is not None and poll(False) is not None and pending:
                    flush()
            if prog is None:
                _recv(ctrl)                 # (no records: the program is not needed)
            _send(res, ("done", read, kept, nbytes, reader.stopped_at, reader._raw_problems))
            if output is not None and kept:
                poll(True)
                flush()
                out.wait()
                writer.close()
        _send(res, ("written",))
        status = 0
    except BaseException as e:          # reported to the parent, which raises
        try:
            _send(res, ("error", str(e) or type(e).__name__, isinstance(e, BpfError)))
        except BaseException:
            pass
    finally:
        os._exit(status)


def _join(parts: list[PacketBatch]) -> PacketBatch:
    """Batches over one buffer as one batch (no packet bytes copied)."""
    p0 = parts[0]
    return PacketBatch(p0.buf, np.concatenate([p.offset for p in parts]),
                       np.concatenate([p.caplen for p in parts]),
                       np.concatenate([p.wirelen for p in parts]),
                       np.concatenate([p.ts_ns for p in parts]),
                       p0.linktype, p0.snaplen, p0.ts_nanos)


def _parallel(prog, run, capture, output, nparts: int, strict: bool,
              progress: Optional[Progress]) -> Optional[FilterSummary]:
    """filter_capture with `nparts` processes; None when the file does not lend itself
    (not a mapped classic pcap file, no record boundary found)."""
    reader = CaptureReader(capture, strict=strict, _head=HEAD_BYTES)
    try:
        recs = reader._recs
        if reader.format != "pcap" or reader._src.mm is None or reader.problems:
            return None
        size = len(reader._src.buf)
        # part sizes: FIRST_PART_SHARE for the first, 1 for the others
        unit = (size - recs.start) / (FIRST_PART_SHARE + nparts - 1)
        targets = [recs.start + int(unit * (FIRST_PART_SHARE + i)) for i in range(nparts - 1)]
        cuts = []
        for c in recs.boundaries(targets):
            if c > (cuts[-1] if cuts else recs.start):
                cuts.append(c)
        if not cuts:
            return None
        return _run_parts(prog, run, capture, output, reader, cuts, strict, progress)
    finally:
        reader.close()


def _run_parts(prog, run, capture, output, reader, cuts, strict, progress) -> FilterSummary:
    """Fork a worker per part after the first, then compile (the workers index their
    parts meanwhile) and hand them the program; then _lead."""
    hdr = (reader.linktype, reader.snaplen, reader.ts_nanos)
    spans = list(zip(cuts, cuts[1:] + [None]))
    workers: list[_Worker] = []
    for fd in (sys.stdout, sys.stderr):
        try:
            fd.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        for span in spans:
            res_r, res_w = os.pipe()
            ctrl_r, ctrl_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(res_r)
                os.close(ctrl_w)
                for w in workers:
                    w.pid = None        # not ours to wait for
                    for fd in (w.res, w.ctrl):
                        os.close(fd)
                _work(run, capture, output, span, res_w, ctrl_r, hdr)
            os.close(res_w)
            os.close(ctrl_r)
            workers.append(_Worker(pid, res_r, ctrl_w, span))
        prog = _program(prog, PacketBatch.empty(reader.linktype, reader.snaplen,
                                                reader.ts_nanos))
        for w in workers:
            w.program(prog)
        return _lead(prog, run, capture, output, reader, cuts, workers, strict, progress)
    finally:
        for w in workers:
            w.finish(kill=True)


def _lead(prog, run, capture, output, reader, cuts, workers, strict, progress
          ) -> FilterSummary:
    """The parent's side: filter the first part, then verify and place the others."""
    reader._recs.stop = cuts[0]
    writer = out = None
    read = kept = 0
    problems: list[CaptureError] = []
    try:
        if output is not None:
            writer = CaptureWriter(output, format="pcap", linktype=reader.linktype,
                                   snaplen=reader.snaplen, nanos=reader.ts_nanos)
            out = _Background(writer)
        for batch in reader:
            read += len(batch)
            sel = _kept(batch, run(prog, batch))
            if out is not None and len(sel):
                out.write(sel)
            kept += len(sel)
            if progress:
                progress(read)
        problems.extend(reader.problems)
        if out is not None:
            out.wait()
        at = writer.position() if writer is not None else 0
        stopped = reader.stopped_at
        resume_from = None              # where this process reads on by itself
        problem = None
        for w in workers:
            if stopped != w.span[0]:
                # a wrong guess, or the chain ended (bad data) before this part
                if stopped is not None:
                    resume_from = stopped
                break
            w.tell(at)
            msg = w.receive()
            _, wread, wkept, wbytes, wstopped, wproblems = msg
            w.done = msg
            if wproblems:
                message, offset, records = wproblems[0]
                problem = CaptureError(message, path=reader.path, offset=offset,
                                       records=read + records)
            read += wread
            kept += wkept
            at += wbytes
            stopped = wstopped
            if progress:
                progress(read)
            if problem is not None:
                break
        # the workers not told an offset drop their part; the others write theirs
        for w in workers:
            if w.done is None:
                w.finish(kill=True)
        for w in workers:
            if w.done is not None:
                w.receive()                 # ("written",) or raises its error
                w.finish()
        if resume_from is not None:
            if writer is not None:
                writer.close()
                writer = CaptureWriter.resume(output, at, linktype=reader.linktype,
                                              snaplen=reader.snaplen, nanos=reader.ts_nanos)
                out = _Background(writer)
            # (the reader reports its problems itself, counting the records before it)
            rest = CaptureReader(capture, strict=strict, _span=(resume_from, None),
                                 _records_before=read, _head=HEAD_BYTES)
            with rest:
                for batch in rest:
                    read += len(batch)
                    sel = _kept(batch, run(prog, batch))
                    if out is not None and len(sel):
                        out.write(sel)
                    kept += len(sel)
                    if progress:
                        progress(read)
                if out is not None:
                    out.wait()
                problems.extend(rest.problems)
        if problem is not None:
            if strict:
                raise problem
            warnings.warn(CaptureWarning(str(problem)), stacklevel=3)
            problems.append(problem)
    finally:
        if out is not None:
            out.wait(raise_error=False)
        if writer is not None:
            writer.close()
    return FilterSummary(read, kept, problems)
