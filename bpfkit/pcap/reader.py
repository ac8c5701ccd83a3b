"""Reading captures: open_capture() streams PacketBatches of bounded size,
read_capture() returns a whole file as one batch.

The file is memory-mapped, and every batch's ``buf`` is that map (zero-copy): packet i
of a batch is ``buf[offset[i]:offset[i] + caplen[i]]`` with ``offset`` the byte offset
of its data in the file.  Memory does not grow with the file: only the index of one
segment is held at a time, and the pages before the last two batches handed out are
released (madvise MADV_DONTNEED; they are read again from the file if touched).
Standard input ('-') is mapped too when it is a regular file; a pipe or other
unmappable source is read into memory, and so are bytes-like sources (used as they are).

Bad data (libpcap's rules, sf-pcap.c / sf-pcapng.c): every complete record before the
problem is delivered, then the problem is a CaptureError with the byte offset and the
number of records read: raised when ``strict=True``, else issued as a CaptureWarning and
kept in ``reader.problems``.  The one exception is a file that cannot be opened at all
(missing, unreadable), which raises CaptureError either way.

Batches hold exactly one link type.  A pcapng file whose interfaces have different link
types gives a new batch at every change of link type; read_capture() of such a file raises
CaptureError naming the link types unless ``linktype=`` picks one.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import queue
import stat
import struct
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from ..errors import CaptureError, CaptureWarning, UsageError
from . import chain, fixup, linktypes, pcapfile, pcapng
from .batch import DEFAULT_SNAPLEN, PacketBatch

# Bytes of file indexed per walk: bounds the memory of the index (and the pages mapped
# ahead of the batches handed out), not the batch size.
SEGMENT_BYTES = 64 << 20
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
# Files larger than this are indexed one segment ahead on a second thread (_ahead).
AHEAD_BYTES = 2 * SEGMENT_BYTES


def _load_madvise():
    """libc's madvise(void *, size_t, int), or None."""
    try:
        f = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError, TypeError):
        return None
    f.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    f.restype = ctypes.c_int
    return f


_madvise = _load_madvise()     # a foreign function: ctypes releases the GIL while it runs


@dataclass(frozen=True)
class _Chunk:
    """Index of consecutive records of one link type."""
    linktype: int
    snaplen: int
    nanos: bool
    swapped: bool          # from a big-endian section (fixup.py)
    offset: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    head: Optional[np.ndarray] = None     # PacketBatch.head


class _Problem(Exception):
    """Internal: bad data at a byte offset (becomes a CaptureError)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


# --- sources -----------------------------------------------------------------------

class _Source:
    """The bytes of a capture as a uint8 array (a memory map where possible)."""

    def __init__(self, src, label: str):
        self.label = label
        self.mm: Optional[mmap.mmap] = None
        self.released = 0           # pages before this offset were handed back
        if isinstance(src, (bytes, bytearray, memoryview, np.ndarray)):
            self.buf = np.frombuffer(src, np.uint8) if not isinstance(src, np.ndarray) \
                else src.view(np.uint8).reshape(-1)
            return
        if isinstance(src, str) and src == "-":
            # stdin redirected from a file can be mapped; a pipe is read into memory
            try:
                st = os.fstat(sys.stdin.fileno())
                if _is_regular(st.st_mode) and st.st_size > 0 and sys.stdin.buffer.tell() == 0:
                    self.mm = mmap.mmap(sys.stdin.fileno(), st.st_size, access=mmap.ACCESS_READ)
                    self.buf = np.frombuffer(self.mm, np.uint8)
                    return
            except (OSError, ValueError, AttributeError):
                self.mm = None
            self.buf = np.frombuffer(sys.stdin.buffer.read(), np.uint8)
            return
        try:
            fd = os.open(os.fspath(src), os.O_RDONLY)
        except OSError as e:
            raise CaptureError(f"cannot open: {e.strerror}", path=label) from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size > 0 and _is_regular(st.st_mode):
                try:
                    self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
                except (OSError, ValueError):
                    self.mm = None
            if self.mm is not None:
                self.buf = np.frombuffer(self.mm, np.uint8)
            else:
                chunks = []
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    chunks.append(b)
                self.buf = np.frombuffer(b"".join(chunks), np.uint8)
        except OSError as e:
            raise CaptureError(f"cannot read: {e.strerror}", path=label) from None
        finally:
            os.close(fd)

    def populate(self, start: int, stop: int) -> None:
        """Map the pages of [start, stop) in one go (MADV_POPULATE_READ, Linux 5.14+):
        much cheaper than taking a page fault at each first touch.  Through libc when
        ctypes finds it, so that the GIL is released meanwhile (mmap.madvise keeps it)."""
        if self.mm is None:
            return
        start -= start % mmap.PAGESIZE
        stop = min(stop, len(self.buf))
        if stop <= start:
            return
        if _madvise is not None:
            if _madvise(self.buf.ctypes.data + start, stop - start, _MADV_POPULATE_READ) == 0:
                return
        try:
            self.mm.madvise(_MADV_POPULATE_READ, start, stop - start)
        except (OSError, ValueError):
            pass            # older kernel: the pages fault in as they are touched

    def release(self, upto: int) -> None:
        """Drop the pages before byte `upto` from this process (they stay in the page
        cache and come back if touched)."""
        if self.mm is None:
            return
        upto -= upto % mmap.PAGESIZE
        if upto > self.released:
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, self.released, upto - self.released)
                self.released = upto
            except (OSError, ValueError, AttributeError):
                pass

    def close(self) -> None:
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                # batches still use it; it goes when they do.  Meanwhile its pages leave
                # this process (they come back if touched, e.g. to write kept packets)
                self.release(len(self.buf))


def _no_prefetch(start: int, stop: int) -> None:
    """The prefetch of _populate=False: pages are mapped as the walk touches them."""


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


# --- classic pcap ----------------------------------------------------------------

class _PcapRecords:
    format = "pcap"

    def __init__(self, buf: np.ndarray, vector: bool, prefetch, span=None, head: int = 0):
        self.prefetch = prefetch
        self.head = head
        try:
            self.hdr = pcapfile.parse_header(buf)
        except pcapfile.HeaderError as e:
            raise _Problem(e.message, e.offset) from None
        self.buf = buf
        self.vector = vector
        self.chain = pcapfile.RecordChain(buf, self.hdr, len(buf))
        self.linktype = self.hdr.linktype
        self.snaplen = self.hdr.snapshot
        self.file_snaplen = self.hdr.file_snaplen
        self.ts_nanos = self.hdr.nanos
        self.swapped = fixup.swapped(self.hdr.big)
        self.records = 0
        # the records walked: from `start` (the first record, or an offset the caller
        # takes for a record boundary), those that begin before `stop`
        self.start, self.stop = pcapfile.FILE_HEADER_LEN, len(buf)
        if span is not None:
            if span[0] is not None:
                self.start = max(self.start, int(span[0]))
            if span[1] is not None:
                self.stop = min(self.stop, int(span[1]))
        self.stopped_at: Optional[int] = None    # the walk's end (see CaptureReader)

    def chunks(self) -> Iterator[_Chunk]:
        pos, end = self.start, self.stop
        while pos < end:
            seg_end = min(pos + SEGMENT_BYTES, end)
            self.prefetch(pos, seg_end)
            head = None
            if self.head:
                # offsets only, then headers and packet heads in one pass in file order,
                # while this segment is still in the CPU's caches
                w = chain.walk(self.chain, pos, seg_end, vector=self.vector, rows=False)
                if len(w.offsets):
                    data, cap, wire, ts, head = self.chain.records(w.offsets, self.head)
            else:
                w = chain.walk(self.chain, pos, seg_end, vector=self.vector)
                if len(w.offsets):
                    data, cap, wire, ts = self.chain.columns(w.offsets, w.rows)
            if len(w.offsets):
                self.records += len(w.offsets)
                yield _Chunk(self.linktype, self.snaplen, self.ts_nanos, self.swapped, data,
                             cap, wire, ts, head)
            if w.status != chain.OK:
                raise _Problem(self.chain.describe(w.next), w.next)
            pos = w.next
        self.stopped_at = pos

    def boundaries(self, targets: list[int], window: int = 1 << 16) -> list[int]:
        """For each offset in `targets`, the first offset at or after it where a record
        plausibly starts (RecordChain.plausible_grid), or -1.  A guess: a caller that
        starts a walk there must check that the walk from the file's first record
        reaches that offset (CaptureReader.stopped_at)."""
        out = []
        for t in targets:
            t = max(int(t), pcapfile.FILE_HEADER_LEN)
            width = min(window, len(self.buf) - t)
            if width <= 0:
                out.append(-1)
                continue
            self.prefetch(t, t + width)
            g = self.chain.plausible_grid(t, width, 1, width)[0]
            out.append(t + int(np.argmax(g)) if g.any() else -1)
        return out


# --- pcapng ------------------------------------------------------------------------

class _PcapngRecords:
    format = "pcapng"

    def __init__(self, buf: np.ndarray, vector: bool, prefetch):
        self.prefetch = prefetch
        self.buf = buf
        self.vector = vector
        self.end = len(buf)
        self.records = 0
        try:
            sec = pcapng.parse_first_shb(buf)
        except pcapng.BlockError as e:
            raise _Problem(e.message, e.offset) from None
        self.big = sec.big
        self.swapped = fixup.swapped(sec.big)
        self.max_block = pcapng.INITIAL_MAX_BLOCKSIZE
        self.ifaces: list[pcapng.Interface] = []
        self.pos = sec.length
        # pcap_ng_check_header: read blocks until the first IDB; it sets the file's
        # link type, snapshot length and the maximum block size
        while True:
            if self.pos >= self.end:
                raise _Problem("the capture file has no Interface Description Blocks", self.pos)
            btype = self._u32(self.pos) if self.end - self.pos >= 4 else None
            if btype == pcapng.BT_SHB:
                self._new_section()
                continue
            try:
                total = pcapng.check_block(buf, self.pos, self.end, self.big, self.max_block)
            except pcapng.BlockError as e:
                raise _Problem(e.message, e.offset) from None
            if btype == pcapng.BT_IDB:
                self._add_idb(self.pos, total)
                self.pos += total
                break
            if btype in (pcapng.BT_EPB, pcapng.BT_SPB, pcapng.BT_PB):
                raise _Problem("the capture file has a packet block before any Interface "
                               "Description Blocks", self.pos)
            self.pos += total
        first = self.ifaces[0]
        self.linktype = first.linktype
        self.snaplen = first.snapshot
        self.file_snaplen = first.snaplen
        self.ts_nanos = first.nanos
        self.max_block = max(self.max_block, pcapng.max_blocksize_for_snaplen(
            linktypes.max_snaplen_for_dlt(linktypes.dlt_of(first.linktype))))

    def _u32(self, pos: int) -> int:
        return struct.unpack_from(">I" if self.big else "<I", self.buf, pos)[0]

    def _new_section(self) -> None:
        try:
            sec = pcapng.parse_later_shb(self.buf, self.pos, self.end, self.max_block)
        except pcapng.BlockError as e:
            raise _Problem(e.message, e.offset) from None
        self.big = sec.big
        self.swapped = fixup.swapped(sec.big)
        self.ifaces = []            # each section has its own interfaces
        self.pos = sec.length

    def _add_idb(self, pos: int, total: int) -> None:
        try:
            self.ifaces.append(pcapng.parse_idb(self.buf, pos, total, self.big))
        except pcapng.BlockError as e:
            raise _Problem(e.message, e.offset) from None

    def chunks(self) -> Iterator[_Chunk]:
        while self.pos < self.end:
            fmt = pcapng.BlockChain(self.buf, self.big, self.end, self.max_block, self.pos)
            self.prefetch(self.pos, self.pos + SEGMENT_BYTES)
            w = chain.walk(fmt, self.pos, self.pos + SEGMENT_BYTES, vector=self.vector)
            yield from self._blocks(fmt, w.offsets, w.rows)
            self.pos = w.next
            if w.status == chain.STOP:
                self._new_section()
            elif w.status == chain.BAD:
                raise _Problem(fmt.describe(w.next), w.next)

    def _blocks(self, fmt: pcapng.BlockChain, offs: np.ndarray, rows: np.ndarray
                ) -> Iterator[_Chunk]:
        if not len(offs):
            return
        types = rows[:, 0].astype(np.int64)
        idbs = np.flatnonzero(types == pcapng.BT_IDB)
        start = 0
        for k in idbs.tolist() + [len(offs)]:
            if k > start:
                yield from self._packets(offs[start:k], types[start:k], rows[start:k])
            if k < len(offs):
                self._add_idb(int(offs[k]), int(rows[k, 1]))
            start = k + 1

    def _packets(self, offs, types, rows) -> Iterator[_Chunk]:
        """Decode the EPB/SPB/PB blocks among `offs` (no IDB in between)."""
        sel = (types == pcapng.BT_EPB) | (types == pcapng.BT_SPB) | (types == pcapng.BT_PB)
        if not sel.all():
            offs, types, rows = offs[sel], types[sel], rows[sel]
        n = len(offs)
        if n == 0:
            return
        bo, bt = offs, types
        total = rows[:, 1].astype(np.int64)
        spb = bt == pcapng.BT_SPB
        pb = bt == pcapng.BT_PB
        short_fixed = total - 12 < np.where(spb, 4, 20)
        r = rows.astype(np.int64)
        iface = np.where(spb, 0, r[:, 2])
        if pb.any():
            # the PB's interface id is a 16-bit field followed by a 16-bit drop count
            iface = np.where(pb, (r[:, 2] >> 16) if self.big else (r[:, 2] & 0xFFFF), iface)
        hi, lo, cap = r[:, 3], r[:, 4], r[:, 5]
        wire = np.where(spb, r[:, 2], r[:, 6])
        iface = np.where(short_fixed, 0, iface)
        data = bo + np.where(spb, 12, 28)
        room = total - np.where(spb, 16, 32)

        nif = len(self.ifaces)
        snap = np.array([i.snapshot for i in self.ifaces] or [0], np.int64)
        lts = np.array([i.linktype for i in self.ifaces] or [0], np.int64)
        known = ~short_fixed & (iface < nif)
        # SPB: "the minimum of the snapshot length and the packet length", where the
        # snapshot is that of interface 0 (libpcap: the file's, which is the same)
        cap = np.where(spb, np.minimum(wire, snap[0]), cap)
        isnap = snap[np.where(known, iface, 0)]
        bad_cap = known & (cap > isnap)
        bad_room = known & ~bad_cap & (cap > room)
        bad = short_fixed | ~known | bad_cap | bad_room
        k = int(np.argmax(bad)) if bad.any() else n
        problem = None
        if k < n:
            problem = self._packet_problem(int(bo[k]), int(bt[k]), bool(short_fixed[k]),
                                           int(iface[k]), nif, bool(bad_cap[k]), int(cap[k]),
                                           int(isnap[k]))
        if k:
            yield from self._emit(data[:k], cap[:k], wire[:k], hi[:k], lo[:k], iface[:k],
                                  lts, spb[:k])
        if problem is not None:
            raise problem

    @staticmethod
    def _packet_problem(off, btype, short_fixed, iface, nif, bad_cap, cap, snap) -> _Problem:
        # the checks in the order pcap_ng_next_packet makes them
        if short_fixed:
            return _Problem(f"block of type {btype} in pcapng dump file is too short", off)
        if iface >= nif:
            return _Problem(f"a packet arrived on interface {iface}, but there's no Interface "
                            f"Description Block for that interface", off)
        if bad_cap:
            return _Problem(f"invalid packet capture length {cap}, bigger than snaplen of "
                            f"{snap}", off)
        return _Problem(f"block of type {btype} in pcapng dump file is too short", off)

    def _emit(self, data, cap, wire, hi, lo, iface, lts, spb) -> Iterator[_Chunk]:
        t = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
        if len(iface) and (iface == iface[0]).all():
            ts = pcapng.timestamps(t, self.ifaces[int(iface[0])])
        else:
            ts = np.zeros(len(t), np.int64)
            for i in np.unique(iface):
                m = iface == i
                ts[m] = pcapng.timestamps(t[m], self.ifaces[int(i)])
        # SPBs have no time stamp: libpcap reports 0 seconds, whatever the interface
        ts[spb] = 0
        lt = lts[iface]
        cuts = np.flatnonzero(lt[1:] != lt[:-1]) + 1
        bounds = [0] + cuts.tolist() + [len(lt)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            ids = [int(iface[a])] if (iface[a:b] == iface[a]).all() else np.unique(iface[a:b])
            ifs = [self.ifaces[int(i)] for i in ids]
            self.records += b - a
            yield _Chunk(int(lt[a]), max(f.snapshot for f in ifs), any(f.nanos for f in ifs),
                         self.swapped, data[a:b], cap[a:b].astype(np.uint32),
                         wire[a:b].astype(np.uint32), ts[a:b])


# --- the reader ------------------------------------------------------------------------

class CaptureReader:
    """An open capture: iterate it for PacketBatches (one link type each, at most
    `batch_packets` packets and `batch_bytes` captured bytes, at least one packet).

    Attributes: ``format`` ('pcap' | 'pcapng', None when unrecognised), ``linktype``,
    ``snaplen`` (libpcap's snapshot length: 0 or oversized in the file means the
    maximum), ``file_snaplen`` (as stored), ``ts_nanos`` — all of the first interface —
    ``records`` (packets handed out so far) and ``problems`` (CaptureErrors met so far;
    a problem's ``records`` is the number of complete records before it).
    """

    def __init__(self, source, *, batch_packets: int = 65536, batch_bytes: int = 64 << 20,
                 strict: bool = False, _vector: bool = True, _span=None,
                 _records_before: int = 0, _head: int = 0, _ahead: Optional[bool] = None,
                 _whole: bool = False, _populate: bool = True):
        if batch_packets < 1 or batch_bytes < 1:
            raise UsageError("batch_packets and batch_bytes must be at least 1")
        self.batch_packets = int(batch_packets)
        self.batch_bytes = int(batch_bytes)
        self.strict = strict
        self.path = _label(source)
        self.problems: list[CaptureError] = []
        self._raw_problems: list[tuple[str, int, int]] = []    # (message, offset, records)
        self._records_before = _records_before    # added to a problem's count of records
        self._whole = _whole                      # see _batches
        self.format: Optional[str] = None
        self.linktype = 1
        self.snaplen = DEFAULT_SNAPLEN
        self.file_snaplen = DEFAULT_SNAPLEN
        self.ts_nanos = False
        self._src = _Source(source, self.path)
        self._recs = None
        self._iter = None
        self._done = False
        self._problem: Optional[_Problem] = None
        self._delivered = 0
        self._prev_start = 0            # offset of the last batch handed out
        self._ahead = False
        buf = self._src.buf
        try:
            if len(buf) < 4:
                raise _Problem(f"truncated dump file; tried to read 4 file header bytes, only "
                               f"got {len(buf)}", 0)
            head = bytes(buf[:4])
            # _populate=False: the pages are mapped as they are touched (the kernel maps
            # 16 around each fault), which measured a little cheaper for filtering than
            # mapping every page of a segment up front
            prefetch = self._src.populate if _populate else _no_prefetch
            if pcapfile.is_pcap_magic(head):
                self._recs = _PcapRecords(buf, _vector, prefetch, _span, _head)
                self._src.released = self._recs.start - self._recs.start % mmap.PAGESIZE
                self._prev_start = self._recs.start
            elif _span is not None:
                raise UsageError("reading a span of records needs a classic pcap file")
            elif pcapng.is_pcapng_magic(head):
                self._recs = _PcapngRecords(buf, _vector, prefetch)
            else:
                raise _Problem("unknown file format (not pcap or pcapng)", 0)
        except _Problem as p:
            self._done = True
            self._report(p)
            return
        r = self._recs
        self._ahead = self._src.mm is not None and len(buf) > AHEAD_BYTES if _ahead is None \
            else _ahead
        self.format = r.format
        self.linktype, self.snaplen, self.file_snaplen, self.ts_nanos = \
            r.linktype, r.snaplen, r.file_snaplen, r.ts_nanos

    @property
    def records(self) -> int:
        """Packets handed out so far (in batches)."""
        return self._delivered

    @property
    def stopped_at(self) -> Optional[int]:
        """Classic pcap, once every record was handed out without a problem: the byte
        offset where the walk stopped, i.e. of the record after the last one read (the
        file size at the end of the file; with `_span`, the first record at or past the
        span's end).  None before that, after a problem, and for pcapng."""
        if self._problem is not None or self.problems:
            return None
        return getattr(self._recs, "stopped_at", None)

    def _report(self, p: _Problem) -> None:
        # every complete record of the file before the problem (read or not)
        done = self._recs.records if self._recs is not None else 0
        self._raw_problems.append((p.message, p.offset, done))
        done += self._records_before
        err = CaptureError(p.message, path=self.path, offset=p.offset, records=done)
        self.problems.append(err)
        if self.strict:
            raise err
        warnings.warn(CaptureWarning(str(err)), stacklevel=4)

    # iteration
    def __iter__(self) -> Iterator[PacketBatch]:
        if self._iter is None:
            self._iter = self._batches()
        return self._iter

    def _chunks(self) -> Iterator[_Chunk]:
        """The index chunks; a problem is kept in self._problem for the caller to report
        after it has handed out every good record."""
        if self._done or self._recs is None:
            return
        chunks = self._recs.chunks()
        if self._ahead:
            chunks = _ahead(chunks)
        try:
            yield from chunks
        except _Problem as p:
            self._problem = p
        self._done = True

    def _report_pending(self) -> None:
        p, self._problem = self._problem, None
        if p is not None:
            self._report(p)

    def _batches(self) -> Iterator[PacketBatch]:
        if self._whole:
            # each walk's records as they come (split where over the limits), never
            # joined with the next walk's: no copying for a consumer that does not mind
            # batches of uneven size
            for ch in self._chunks():
                yield from self._flush(ch, final=True)
            self._report_pending()
            return
        pend: Optional[_Chunk] = None
        for ch in self._chunks():
            if pend is not None and _key(ch) != _key(pend):
                yield from self._flush(pend, final=True)     # a batch has one link type
                pend = None
            pend = ch if pend is None else _merge([pend, ch])
            pend = yield from self._flush(pend, final=False)
        if pend is not None:
            yield from self._flush(pend, final=True)
        self._report_pending()

    def _flush(self, ch: _Chunk, final: bool):
        """Yield the full batches in `ch` (every packet when `final`); return the rest."""
        n = len(ch.offset)
        cum = np.cumsum(ch.caplen, dtype=np.int64)
        start = 0
        while start < n:
            base = int(cum[start - 1]) if start else 0
            fit = int(np.searchsorted(cum, base + self.batch_bytes, side="right"))
            stop = max(start + 1, min(start + self.batch_packets, fit))
            if not final and stop == n and n - start < self.batch_packets and \
                    int(cum[-1]) - base < self.batch_bytes:
                break                   # not full yet: wait for more records
            yield self._batch(ch, start, stop)
            start = stop
        return _slice(ch, start, n) if start < n else None

    def _batch(self, ch: _Chunk, a: int, b: int) -> PacketBatch:
        off = ch.offset[a:b]
        if len(off):
            # hand back the pages before the *previous* batch: a consumer may still be
            # using that one (e.g. writing it out from another thread) while it asks
            # for this one
            self._src.release(self._prev_start)
            self._prev_start = int(off[0])
        batch = PacketBatch(self._src.buf, off, ch.caplen[a:b], ch.wirelen[a:b],
                            ch.ts_ns[a:b], ch.linktype, ch.snaplen, ch.nanos,
                            None if ch.head is None else ch.head[a:b])
        self._delivered += b - a
        dlt = linktypes.dlt_of(ch.linktype)
        if fixup.needed(dlt, ch.swapped):
            batch = fixup.apply(batch, dlt, ch.swapped)
        return batch

    def close(self) -> None:
        if self._iter is not None:
            self._iter.close()
        self._src.close()

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ahead(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """`chunks`, computed one ahead on a second thread: indexing a segment (page
    mapping, header gathers) largely runs without the GIL, so it overlaps the caller's
    work on the previous one.  Items and the final exception arrive in order; closing
    this generator stops the thread."""
    box: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for c in chunks:
                if not put((True, c)):
                    return
            put((False, None))
        except BaseException as e:          # re-raised in the consumer's thread
            put((False, e))

    worker = threading.Thread(target=produce, name="bpfkit-index", daemon=True)
    worker.start()
    try:
        while True:
            more, item = box.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()
        chunks.close()


def _key(c: _Chunk):
    """Batches split where this changes: the link type, and for link types whose
    pseudo-header libpcap byte-swaps, the byte order of the section."""
    dlt = linktypes.dlt_of(c.linktype)
    return (c.linktype, c.swapped if dlt in fixup.SWAPPED_DLTS else None)


def _merge(chunks: list[_Chunk]) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    c0 = chunks[0]
    heads = [c.head for c in chunks]
    head = None
    if all(h is not None for h in heads) and len({h.shape[1] for h in heads}) == 1:
        head = np.concatenate(heads)
    return _Chunk(c0.linktype, max(c.snaplen for c in chunks), any(c.nanos for c in chunks),
                  c0.swapped,
                  np.concatenate([c.offset for c in chunks]),
                  np.concatenate([c.caplen for c in chunks]),
                  np.concatenate([c.wirelen for c in chunks]),
                  np.concatenate([c.ts_ns for c in chunks]), head)


def _slice(c: _Chunk, a: int, b: int) -> _Chunk:
    return _Chunk(c.linktype, c.snaplen, c.nanos, c.swapped, c.offset[a:b], c.caplen[a:b],
                  c.wirelen[a:b], c.ts_ns[a:b], None if c.head is None else c.head[a:b])


def _label(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
        return "<memory>"
    if isinstance(source, str) and source == "-":
        return "<stdin>"
    return os.fspath(source)


def open_capture(path, *, batch_packets: int = 65536, batch_bytes: int = 64 << 20,
                 strict: bool = False) -> CaptureReader:
    """Open a pcap or pcapng capture ('-' = standard input; bytes-like = in memory)."""
    return CaptureReader(path, batch_packets=batch_packets, batch_bytes=batch_bytes,
                         strict=strict)


def read_capture(path, *, strict: bool = False, linktype: Optional[int | str] = None,
                 head: int = 0) -> PacketBatch:
    """The whole capture as one batch (zero-copy: buf is the file's memory map).

    `head` > 0 also fills PacketBatch.head with each packet's first `head` bytes, gathered
    while the reader walks the records (the engines' loads then read one compact block).

    A pcapng file with interfaces of more than one link type raises CaptureError naming
    them, unless `linktype` (a value or libpcap name) selects the packets of one."""
    want = None if linktype is None else linktypes.value_of(linktype)
    r = CaptureReader(path, batch_packets=1 << 62, batch_bytes=1 << 62, strict=strict,
                      _head=head)
    chunks = list(r._chunks())
    r._report_pending()
    seen = []
    for c in chunks:
        if c.linktype not in seen:
            seen.append(c.linktype)
    if want is None and len(seen) > 1:
        names = ", ".join(f"{linktypes.name_of(v)} ({v})" for v in seen)
        raise CaptureError(f"the capture holds packets of {len(seen)} link types: {names}; "
                           f"pass linktype= to read one of them, or stream it with "
                           f"open_capture() (one batch per link type)", path=r.path)
    if want is not None:
        chunks = [c for c in chunks if c.linktype == want]
    if not chunks:
        return PacketBatch.empty(want if want is not None else r.linktype, r.snaplen,
                                 r.ts_nanos)
    runs: list[list[_Chunk]] = []
    for c in chunks:
        if runs and _key(runs[-1][0]) == _key(c):
            runs[-1].append(c)
        else:
            runs.append([c])
    parts = [r._batch(m, 0, len(m.offset)) for m in map(_merge, runs)]
    return parts[0] if len(parts) == 1 else PacketBatch.concat(parts)
