"""filter_capture with several processes (bpfkit.filtering calls this for large classic
pcap files written to a regular file or counted).

The file is cut into K parts at guessed record boundaries (CaptureReader's
boundaries(): the first offset past a target where three consecutive record headers look
right).  The calling process (the parent) forks W-1 workers, then compiles the program
and hands it to them (they index meanwhile).  Every process, the parent included,
claims parts in file order, one at a time, from a pipe holding the part numbers (a read
of one byte is atomic: each part goes to one process, and whoever is free takes the
next one, so a slow compile or a busy CPU evens out), filters it with its own reader and
memory map, and reports (packets, kept, bytes kept, where its walk stopped, problem).

Exactness.  Part 0 starts at the first record.  Part j's guess is right iff part j-1
started right and its walk stopped exactly on part j's start (CaptureReader.stopped_at):
the chain libpcap follows one record at a time goes through it.  The parent verifies the
parts in order.  When part j stops elsewhere (a wrong guess), the parts after it are
dropped and the parent reads on by itself from where part j really stopped; when part j
ends in bad data, the parts after it are dropped (libpcap stops there too) and the
problem is reported with the count of every record before it.  So guesses only decide
speed.

Output.  Part j's kept records go right after part j-1's.  Once parts 0..j-1 are
verified, part j's offset in the output is known (the file header plus the bytes they
kept) and the parent sends it to everyone; the owner of part j writes its records there
(CaptureWriter.resume, on a writer thread), while the others go on.  Until then a
process keeps what it kept (indices into its memory map, not packet bytes).

Messages (length-prefixed pickles).  Parent to worker: the program; ("at", j, offset);
("drop", j): parts after j are void.  Worker to parent: ("part", j, ...) when part j is
filtered; ("idle",) when there are no parts left to claim; ("written",) when everything
it owns is written, just before it exits; ("error", text, is_bpf_error).
"""
from __future__ import annotations

import mmap
import os
import pickle
import select
import signal
import sys
import warnings
from typing import Optional

import numpy as np

from .errors import BpfError, CaptureError, CaptureWarning
from .pcap import CaptureWriter
from .pcap.batch import PacketBatch
from .pcap.reader import CaptureReader, _madvise

PART_TARGET = 6                 # parts per process, about
PART_BYTES = (16 << 20, 64 << 20)    # the size of a part is kept within these
MAX_PARTS = 255                 # (part numbers are bytes in the claim pipe)
PREFETCH = 4                    # parts a worker reads while the parent compiles
BATCH_PACKETS = 1 << 18         # (filtering.BATCH_PACKETS)


def filter_parallel(prog, run, capture, output, workers: int, strict: bool, progress,
                    head: int):
    """filter_capture's work with `workers` processes; None when the file does not lend
    itself to it (not a mapped classic pcap file, no record boundary found).  Returns
    (packets, kept, problems)."""
    reader = CaptureReader(capture, strict=strict, _head=head)
    try:
        if reader.format != "pcap" or reader._src.mm is None or reader.problems:
            return None
        recs = reader._recs
        size = len(reader._src.buf)
        body = size - recs.start
        part = min(max(body // (PART_TARGET * workers), PART_BYTES[0]), PART_BYTES[1])
        k = min(MAX_PARTS, max(workers, body // max(part, 1)))
        hdr = (reader.linktype, reader.snaplen, reader.ts_nanos)
        return _Run(prog, run, capture, output, _Cuts(recs, k), hdr, reader.path, strict,
                    progress, head, min(workers, k)).go()
    finally:
        reader.close()


class _Cuts:
    """Where the parts start: part 0 at the first record, part j at the first plausible
    record start at or after j/k of the way (found when first asked for, by whichever
    process needs it: the search is the same in all, and in none before the fork)."""

    def __init__(self, recs, k: int):
        self.recs, self.k = recs, k
        self.body = len(recs.buf) - recs.start
        self.found = {0: recs.start}

    def __len__(self) -> int:
        return self.k

    def __getitem__(self, j: int) -> int:
        if j not in self.found:
            target = self.recs.start + self.body * j // self.k
            # a window short of the next target, so that the cuts increase
            window = max(1, min(1 << 16, self.body // self.k // 2))
            c = self.recs.boundaries([target], window)[0]
            self.found[j] = c if c >= 0 else target     # (no boundary: a wrong guess)
        return self.found[j]


# --- pipes -------------------------------------------------------------------------------

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


def _readable(fds, timeout=0.0) -> list:
    return select.select(fds, [], [], timeout)[0] if fds else []


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


# --- one part's output ---------------------------------------------------------------------

def _drop_pages(batch: PacketBatch) -> None:
    """Once `batch` is written: hand back the pages of the input's memory map that its
    packets span (writing faulted them in again after the reader had let them go; they
    would otherwise stay until the part's mapping goes)."""
    if not len(batch) or _madvise is None:
        return
    lo = int(batch.offset[0]) - 24
    hi = int(batch.offset[-1]) + int(batch.caplen[-1])
    base = batch.buf.ctypes.data
    page = mmap.PAGESIZE
    start = (base + max(lo, 0)) // page * page
    stop = -(-(base + hi) // page) * page
    if start >= base and stop > start:
        _madvise(start, stop - start, mmap.MADV_DONTNEED)


WRITE_BYTES = 16 << 20          # packet bytes per write: the pages it maps, at most


class _Writes:
    """A process's writes, one at a time, on one thread, in the order given: each a
    slice of a batch of at most WRITE_BYTES of packet data, whose pages of the input
    map are handed back once written (_drop_pages).  So the pages that writing maps
    again stay few, however many parts get their offsets at once."""

    def __init__(self):
        import queue
        import threading
        self.todo: queue.Queue = queue.Queue()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, writer: CaptureWriter, batch: PacketBatch) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        cum = np.cumsum(batch.caplen, dtype=np.int64)
        start = 0
        while start < len(batch):
            base = int(cum[start - 1]) if start else 0
            stop = max(start + 1, int(np.searchsorted(cum, base + WRITE_BYTES, side="right")))
            self.todo.put((writer, batch[start:stop]))
            start = stop

    def _run(self) -> None:
        while True:
            item = self.todo.get()
            try:
                if item is None:
                    return
                writer, batch = item
                if self.error is None:
                    writer.write(batch)
                    _drop_pages(batch)
            except BaseException as e:          # raised by the next put() or wait()
                self.error = e
            finally:
                self.todo.task_done()

    def wait(self, raise_error: bool = True) -> None:
        """Until everything given so far is written."""
        self.todo.join()
        if self.error is not None and raise_error:
            err, self.error = self.error, None
            raise err

    def stop(self) -> None:
        self.todo.put(None)
        self.thread.join()


class _Part:
    """What a process kept of one part: held until the part's offset is known, then
    written there (by the process's _Writes; later batches go straight to it)."""

    def __init__(self, output, hdr, writes: _Writes):
        self.output, self.hdr, self.writes = output, hdr, writes
        self.held: list[PacketBatch] = []
        self.writer = None

    def add(self, sel: PacketBatch) -> None:
        if self.output is None:
            return
        if self.writer is not None:
            self.writes.put(self.writer, sel)
        else:
            self.held.append(sel)

    def place(self, at: int) -> None:
        if self.output is None or self.writer is not None:
            return
        lt, snap, nanos = self.hdr
        self.writer = CaptureWriter.resume(self.output, at, linktype=lt, snaplen=snap,
                                           nanos=nanos)
        for b in self.held:
            self.writes.put(self.writer, b)
        self.held = []

    def close(self) -> None:
        """After the process's writes are done."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def abandon(self) -> None:
        """A dropped part: nothing of it was written (it had no offset)."""
        self.held = []


class _Header:
    """Creates (or truncates) the output and writes the file header, on a thread."""

    def __init__(self, output, hdr):
        import threading
        self.output, self.hdr = output, hdr
        self.at = self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            lt, snap, nanos = self.hdr
            w = CaptureWriter(self.output, format="pcap", linktype=lt, snaplen=snap,
                              nanos=nanos)
            try:
                self.at = w.position()
            finally:
                w.close()
        except BaseException as e:          # raised by wait()
            self.error = e

    def wait(self, raise_error: bool = True) -> Optional[int]:
        self.thread.join()
        if self.error is not None and raise_error:
            err, self.error = self.error, None
            raise err
        return self.at


class _Dropped(Exception):
    """The part being filtered comes after a part the chain does not get past."""


# --- what every process does ----------------------------------------------------------------

class _Process:
    """Claiming and filtering parts, in the parent or in a worker."""

    def __init__(self, run, capture, output, cuts, hdr, head, tokens: int):
        self.run, self.capture, self.output = run, capture, output
        self.cuts, self.hdr, self.head, self.tokens = cuts, hdr, head, tokens
        self.prog = None
        self.writes: Optional[_Writes] = None     # made at the first part (after the fork)
        self.parts: dict[int, _Part] = {}
        self.at: dict[int, int] = {}          # part -> offset in the output
        self.drop_after: Optional[int] = None

    def claim(self) -> Optional[int]:
        if self.drop_after is not None:
            return None
        b = os.read(self.tokens, 1)
        if not b or (self.drop_after is not None and b[0] > self.drop_after):
            return None
        return b[0]

    def offset(self, j: int, at: int) -> None:
        self.at[j] = at
        if j in self.parts:
            self.parts[j].place(at)

    def drop(self, j: int) -> None:
        self.drop_after = j if self.drop_after is None else min(self.drop_after, j)
        for m in [m for m in self.parts if m > self.drop_after]:
            self.parts.pop(m).abandon()

    def reader(self, j: int) -> CaptureReader:
        span = (self.cuts[j], self.cuts[j + 1] if j + 1 < len(self.cuts) else None)
        return CaptureReader(self.capture, strict=False, _span=span, _head=self.head,
                             batch_packets=BATCH_PACKETS, _ahead=False, _whole=True,
                             _populate=False)

    def filter(self, j: int, poll, progress=None, base: int = 0, indexed=None):
        """Filter part j; poll() between batches.  Returns its report.  indexed: (its
        reader, the batches it gave) when it was read before the program came."""
        if self.drop_after is not None and j > self.drop_after:
            raise _Dropped
        if self.writes is None and self.output is not None:
            self.writes = _Writes()
        part = self.parts[j] = _Part(self.output, self.hdr, self.writes)
        if j in self.at:
            part.place(self.at[j])
        read = kept = nbytes = 0
        reader, batches = indexed if indexed is not None else (self.reader(j), None)
        with reader:
            for batch in (reader if batches is None else batches):
                if self.prog is None:
                    self.prog = self.wait_program()
                read += len(batch)
                ix = np.flatnonzero(self.run(self.prog, batch))
                if len(ix):
                    sel = PacketBatch(batch.buf, batch.offset.take(ix), batch.caplen.take(ix),
                                      batch.wirelen.take(ix), batch.ts_ns.take(ix),
                                      batch.linktype, batch.snaplen, batch.ts_nanos)
                    kept += len(sel)
                    nbytes += _record_bytes(sel)
                    part.add(sel)
                if progress:
                    progress(base + read)
                poll()
                if self.drop_after is not None and j > self.drop_after:
                    self.parts.pop(j, None)
                    raise _Dropped
            return ("part", j, self.cuts[j], read, kept, nbytes, reader.stopped_at,
                    reader._raw_problems)

    def wait_program(self):
        """The program to filter with (the parent compiles it; a worker receives it);
        each subclass says how."""
        raise NotImplementedError

    def finish_parts(self, raise_error: bool = True) -> None:
        """Wait for every write; close the parts' files."""
        try:
            if self.writes is not None:
                self.writes.wait(raise_error)
        finally:
            errors = []
            for j in sorted(self.parts):
                try:
                    self.parts[j].close()
                except BpfError as e:
                    errors.append(e)
            if self.writes is not None:
                self.writes.stop()
                self.writes = None
            if errors and raise_error:
                raise errors[0]


class _Child(_Process):
    def __init__(self, *a, res: int, ctrl: int):
        super().__init__(*a)
        self.res, self.ctrl = res, ctrl

    def claim(self) -> Optional[int]:
        """The next part, and tell the parent where its walk starts."""
        j = super().claim()
        if j is not None:
            _send(self.res, ("begin", j, self.cuts[j]))
        return j

    def wait_program(self):
        while self.prog is None:
            self.handle(_recv(self.ctrl))
        return self.prog

    def handle(self, msg) -> None:
        if not isinstance(msg, tuple):
            self.prog = msg                     # the program (the first message)
        elif msg[0] == "at":
            self.offset(msg[1], msg[2])
        elif msg[0] == "drop":
            self.drop(msg[1])

    def poll(self) -> None:
        while _readable([self.ctrl]):
            self.handle(_recv(self.ctrl))

    def prefetch(self) -> list:
        """Until the program comes (the parent compiles it meanwhile): read the next
        parts (at most PREFETCH), so that the wait is not idle.  Returns [(part,
        (reader, batches))]."""
        done = []
        while self.prog is None and len(done) < PREFETCH:
            j = self.claim()
            if j is None:
                break
            reader = self.reader(j)
            batches = []
            for batch in reader:
                batches.append(batch)
                self.poll()
            # (the batches' heads hold what most programs read: the pages can go)
            reader._src.release(len(reader._src.buf))
            done.append((j, (reader, batches)))
            self.poll()
        return done

    def main(self) -> None:
        ready = self.prefetch()
        while True:
            if ready:
                j, indexed = ready.pop(0)
            else:
                j, indexed = self.claim(), None
            if j is None:
                break
            if self.drop_after is not None and j > self.drop_after:
                break
            try:
                report = self.filter(j, self.poll, indexed=indexed)
            except _Dropped:
                break
            _send(self.res, report)
        _send(self.res, ("idle",))
        # write what we own once its offset comes (or it is dropped)
        while any(m not in self.at for m in self.parts):
            self.handle(_recv(self.ctrl))
        self.finish_parts()
        _send(self.res, ("written",))


def _child_main(proc: _Child) -> None:
    """The forked worker: never returns."""
    status = 1
    try:
        _die_with_parent()
        warnings.simplefilter("ignore")
        proc.main()
        status = 0
    except BaseException as e:          # reported to the parent, which raises
        try:
            _send(proc.res, ("error", str(e) or type(e).__name__, isinstance(e, BpfError)))
        except BaseException:
            pass
    finally:
        os._exit(status)


class _Worker:
    """A forked worker, parent side."""

    def __init__(self, pid, res, ctrl):
        self.pid, self.res, self.ctrl = pid, res, ctrl
        self.idle = self.written = False

    def send(self, msg) -> None:
        if self.written:
            return
        try:
            _send(self.ctrl, msg)
        except OSError:
            pass                    # it has gone: its error (if any) comes on res

    def close(self, kill: bool) -> None:
        if self.pid is None:
            return
        if kill:
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


class _Run(_Process):
    """The parent: a process like the others, and the one that verifies the parts,
    places them in the output and reports."""

    def __init__(self, prog, run, capture, output, cuts, hdr, path, strict, progress, head,
                 workers):
        self.tokens_r, tokens_w = os.pipe()
        os.write(tokens_w, bytes(range(len(cuts))))
        os.close(tokens_w)
        super().__init__(run, capture, output, cuts, hdr, head, self.tokens_r)
        self.source, self.path, self.strict, self.progress = prog, path, strict, progress
        self.nworkers = workers
        self.workers: list[_Worker] = []
        self.starts: dict[int, int] = {}      # part -> where its owner started its walk
        self.reports: dict[int, tuple] = {}
        self.next = 0                         # parts before this one are verified
        self.chain_at = cuts[0]               # where the verified chain goes on
        self.at_next = None                   # the offset of the next part's records
        self.at0: Optional[int] = None        # part 0's: after the file header
        self.read_before = 0                  # packets in the verified parts
        self.kept_before = 0
        self.failure = None                   # ("resume", offset, at) or ("problem", err)
        self.read_own = 0

    # --- the parent's side of the protocol ---
    def wait_program(self):
        return self.prog

    def poll(self, timeout: float = 0.0) -> None:
        live = {w.res: w for w in self.workers if not w.written}
        for fd in _readable(list(live), timeout):
            w = live[fd]
            try:
                msg = _recv(fd)
            except (EOFError, OSError, pickle.UnpicklingError):
                msg = ("error", "a filter worker process died", False)
            if msg[0] == "error":
                _, text, bpf = msg
                raise (BpfError(text) if bpf else BpfError(f"filter worker failed: {text}"))
            if msg[0] == "begin":
                self.starts[msg[1]] = msg[2]
                self.advance()
            elif msg[0] == "part":
                self.report(msg)
            elif msg[0] == "idle":
                w.idle = True
            elif msg[0] == "written":
                w.written = True

    def broadcast(self, msg) -> None:
        for w in self.workers:
            w.send(msg)

    def report(self, msg) -> None:
        self.reports[msg[1]] = msg
        self.advance()

    def advance(self) -> None:
        """Verify the parts in order: part j is on the chain iff its walk started where
        the verified chain is (where part j-1's walk stopped; part 0 at the first
        record).  Only then does it get its offset in the output, the one after part
        j-1's records: nothing off the chain is ever written."""
        while self.failure is None and self.next < len(self.cuts):
            j = self.next
            if j not in self.starts:
                return                      # not begun yet
            if self.starts[j] != self.chain_at:
                # a wrong guess for part j's start: it and the parts after it are void
                self.fail(("resume", self.chain_at, self.at_next), j - 1)
                return
            if j not in self.at:
                if j == 0:
                    if self.at0 is None:
                        return              # the header is not written yet
                    self.at_next = self.at0
                self.broadcast(("at", j, self.at_next))
                self.offset(j, self.at_next)
            if j not in self.reports:
                return
            _, _, _, read, kept, nbytes, stopped, problems = self.reports[j]
            self.read_before += read
            self.kept_before += kept
            self.at_next = self.at[j] + nbytes
            self.next += 1
            if problems:
                # bad data: the chain ends in part j (libpcap stops there too)
                message, offset, records = problems[0]
                err = CaptureError(message, path=self.path, offset=offset,
                                   records=self.read_before - read + records)
                self.fail(("problem", err), j)
                return
            self.chain_at = stopped

    def fail(self, failure, last: int) -> None:
        """Part `last` is the last one on the chain: the parts after it are void."""
        self.failure = failure
        self.broadcast(("drop", last))
        self.drop(last)

    # --- the run ---
    def go(self):
        from .filtering import _program
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError, AttributeError):
                pass
        header = None
        try:
            self.fork()
            if self.output is not None:
                # the file header, after the old file's truncation (which can take a
                # while: on a thread, while this process compiles); nothing is written
                # before part 0 is placed, below
                header = _Header(self.output, self.hdr)
            self.prog = _program(self.source, PacketBatch.empty(*self.hdr))
            self.broadcast(self.prog)
            self.at0 = header.wait() if header is not None else 0
            self.advance()
            while True:
                j = self.claim()
                if j is None:
                    break
                self.starts[j] = self.cuts[j]
                self.advance()
                try:
                    report = self.filter(j, self.poll, self.progress, self.read_own)
                except _Dropped:
                    break
                self.read_own += report[3]
                self.report(report)
                self.poll()
            # wait for the workers' reports and writes
            while not all(w.written for w in self.workers):
                self.poll(timeout=None)
            if any(j not in self.at for j in self.parts):
                raise BpfError("internal error: a part of the output was never placed")
            self.finish_parts()
        finally:
            if header is not None:
                header.wait(raise_error=False)
            if self.writes is not None:
                self.finish_parts(raise_error=False)
            for w in self.workers:
                w.close(kill=not w.written)
            os.close(self.tokens_r)
        return self.conclude()

    def fork(self) -> None:
        for _ in range(self.nworkers - 1):
            res_r, res_w = os.pipe()
            ctrl_r, ctrl_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(res_r)
                os.close(ctrl_w)
                for w in self.workers:
                    for fd in (w.res, w.ctrl):
                        os.close(fd)
                child = _Child(self.run, self.capture, self.output, self.cuts, self.hdr,
                               self.head, self.tokens_r, res=res_w, ctrl=ctrl_r)
                child.at = dict(self.at)
                _child_main(child)
            os.close(res_w)
            os.close(ctrl_r)
            self.workers.append(_Worker(pid, res_r, ctrl_w))

    def conclude(self):
        """(packets, kept, problems), after reading on where a guess was wrong."""
        read, kept = self.read_before, self.kept_before
        problems: list[CaptureError] = []
        f = self.failure
        if f is not None and f[0] == "resume":
            _, stopped, at = f
            from .filtering import _Background
            writer = out = None
            if self.output is not None:
                lt, snap, nanos = self.hdr
                writer = CaptureWriter.resume(self.output, at, linktype=lt, snaplen=snap,
                                              nanos=nanos)
                out = _Background(writer)
            try:
                # (the reader reports its problems itself, counting the records before)
                with CaptureReader(self.capture, strict=self.strict, _span=(stopped, None),
                                   _records_before=read, _head=self.head,
                                   batch_packets=BATCH_PACKETS, _whole=True,
                                   _populate=False) as rest:
                    for batch in rest:
                        read += len(batch)
                        ix = np.flatnonzero(self.run(self.prog, batch))
                        if out is not None and len(ix):
                            out.write(PacketBatch(batch.buf, batch.offset.take(ix),
                                                  batch.caplen.take(ix), batch.wirelen.take(ix),
                                                  batch.ts_ns.take(ix), batch.linktype,
                                                  batch.snaplen, batch.ts_nanos))
                        kept += len(ix)
                        if self.progress:
                            self.progress(read)
                    if out is not None:
                        out.wait()
                    problems.extend(rest.problems)
            finally:
                if out is not None:
                    out.wait(raise_error=False)
                if writer is not None:
                    writer.close()
        elif f is not None:
            err = f[1]
            if self.strict:
                raise err
            warnings.warn(CaptureWarning(str(err)), stacklevel=4)
            problems.append(err)
        return read, kept, problems
