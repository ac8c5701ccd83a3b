"""Writing captures: classic pcap (as libpcap's pcap_dump writes it: little-endian,
version 2.4, magic a1b2c3d4 or a1b23c4d for nanoseconds) and pcapng (one section,
an Interface Description Block per link type, more with add_interface(), Enhanced Packet
Blocks).

Packet bytes are not copied in user space: each write hands the kernel a gather list
(writev) of slices of the batch's buffer — for a capture read from a file, its memory
map — and of a small array of headers (and EPB padding and trailers).

Packets are written as they are: caplen and wirelen unchanged, never cut to the
snaplen (pcap_dump does not cut either).  Timestamps are ns in the batch; a microsecond
file truncates them, as libpcap does when it scales nanoseconds down.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from typing import BinaryIO, Iterable, Optional, Union

import numpy as np

from ..errors import CaptureError, UsageError
from . import linktypes, pcapfile, pcapng
from .batch import DEFAULT_SNAPLEN, PacketBatch

FORMATS = ("pcap", "pcapng")
_NS = 1_000_000_000
_IOV_MAX = 1024              # buffers per writev call (Linux UIO_MAXIOV)


def _load_writev():
    """libc's writev(int, const struct iovec *, int) when an iovec is two 64-bit words
    (64-bit POSIX) and ctypes finds it; else None, and os.writev is used instead."""
    if ctypes.sizeof(ctypes.c_void_p) != 8 or ctypes.sizeof(ctypes.c_size_t) != 8:
        return None
    try:
        f = ctypes.CDLL(None, use_errno=True).writev
    except (OSError, AttributeError, TypeError):
        return None
    f.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
    f.restype = ctypes.c_ssize_t
    return f


_writev = _load_writev()     # a foreign function: ctypes releases the GIL while it runs


def _load_sync_file_range():
    """Linux's sync_file_range(int, off64_t, off64_t, unsigned), or None."""
    try:
        f = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    f.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    f.restype = ctypes.c_int
    return f


_sync_file_range = _load_sync_file_range()


def write_error(err: Optional[int], path: str) -> Exception:
    """The exception for a write that failed with errno `err`: BrokenPipeError when the
    reader of a pipe went away (the command line then ends quietly, as tcpdump does),
    else CaptureError naming the file and the reason."""
    if err == errno.EPIPE:
        return BrokenPipeError(err, os.strerror(err))
    return CaptureError(f"cannot write: {os.strerror(err) if err else 'unknown error'}",
                        path=path)


class CaptureWriter:
    """Write PacketBatches to a capture file ('-' = standard output, or a binary file
    object).  Context manager; `close()` flushes (and closes a file it opened)."""

    def __init__(self, path_or_fileobj: Union[str, os.PathLike, BinaryIO], *,
                 format: str = "pcap", linktype: Union[int, str] = 1,
                 snaplen: int = DEFAULT_SNAPLEN, nanos: bool = False):
        if format not in FORMATS:
            raise UsageError(f"unknown capture format {format!r} (expected pcap or pcapng)")
        self.format = format
        self.linktype = linktypes.value_of(linktype)
        if not 0 <= int(snaplen) <= 0xFFFFFFFF:
            raise UsageError(f"snaplen {snaplen} does not fit 32 bits")
        self.snaplen = int(snaplen)
        self.nanos = bool(nanos)
        self.packets = 0
        self._owned = False
        if isinstance(path_or_fileobj, (str, os.PathLike)):
            if os.fspath(path_or_fileobj) == "-":
                self._f = sys.stdout.buffer
                self.path = "<stdout>"
            else:
                self.path = os.fspath(path_or_fileobj)
                try:
                    self._f = self._open(self.path)
                except OSError as e:
                    raise CaptureError(f"cannot create: {e.strerror}", path=self.path) \
                        from None
                self._owned = True
        else:
            self._f = path_or_fileobj
            self.path = getattr(path_or_fileobj, "name", "<stream>")
        self._ifaces: dict[int, int] = {}     # pcapng: link type -> its first interface id
        self._iface_lt: list[int] = []        # pcapng: link type of each interface
        self._closed = False
        self._fd = self._direct_fd()
        if self._resume is not None:
            return                  # see resume(): no file header
        if format == "pcap":
            if self.linktype > 0xFFFFFFFF:
                raise UsageError(f"link type {self.linktype} does not fit 32 bits")
            self._out(pcapfile.file_header(self.linktype, self.snaplen, self.nanos))
        else:
            if linktypes.lt_linktype(self.linktype) > 0xFFFF or linktypes.lt_ext(self.linktype):
                raise UsageError(f"link type {self.linktype} does not fit a pcapng interface "
                                 f"(16 bits, no FCS bits)")
            self._out(pcapng.shb())
            self._interface(self.linktype, self.snaplen)

    _resume: Optional[int] = None          # resume(): the offset the records go at
    _pending: Optional[bytearray] = None   # bytes held back until the file is truncated
    _writeback = False                     # start writeback as we go (see _start)
    _pos = 0                               # bytes written to the file so far

    @classmethod
    def resume(cls, path: Union[str, os.PathLike], offset: int, *,
               linktype: Union[int, str] = 1, snaplen: int = DEFAULT_SNAPLEN,
               nanos: bool = False) -> "CaptureWriter":
        """A classic pcap writer that writes its records into the existing file `path`
        from byte `offset` on, without a file header and without truncating the file:
        for a capture written in parts by several processes, each part at its place
        (bpfkit.filtering).  The caller makes sure the parts do not overlap."""
        w = cls.__new__(cls)
        w._resume = int(offset)
        w.__init__(path, format="pcap", linktype=linktype, snaplen=snaplen, nanos=nanos)
        return w

    def position(self) -> int:
        """The bytes written to the file so far (after making sure they are: a pending
        truncation done, the file object flushed)."""
        self._start()
        self._flush()
        if self._fd is not None:
            return os.lseek(self._fd, 0, os.SEEK_CUR)
        return self._pos

    def _open(self, path: str) -> BinaryIO:
        """Open `path` for writing, as open(path, "wb") does, except that an existing
        non-empty regular file is truncated by the first write (or close) instead of
        here: freeing a large old file's pages takes a while, and filter_capture makes
        its first write on its writer thread.  Meanwhile what _out is given is held."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            st = os.fstat(fd)
            if self._resume is not None:
                os.lseek(fd, self._resume, os.SEEK_SET)
                self._pos = self._resume
                self._writeback = _sync_file_range is not None
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        if stat.S_ISREG(st.st_mode) and st.st_size > 0 and self._resume is None:
            self._pending = bytearray()
        return f

    def _start(self) -> None:
        """Truncate an existing file (see _open) and write what was held back."""
        if self._pending is None:
            return
        held, self._pending = self._pending, None
        try:
            os.ftruncate(self._f.fileno(), 0)
        except OSError as e:
            raise write_error(e.errno, self.path) from None
        # ext4, xfs and btrfs write a file truncated to 0 back when it is closed (ext4
        # auto_da_alloc), which makes close() take a while; starting that writeback
        # batch by batch moves it to the writer thread.  Only for such files: others
        # are left to the kernel's usual delayed writeback.
        self._writeback = _sync_file_range is not None and self._fd is not None
        self._out(bytes(held))

    def _out(self, data) -> None:
        if self._pending is not None:
            self._pending += data
            return
        self._pos += len(data)
        try:
            self._f.write(data)
        except OSError as e:
            raise write_error(e.errno, self.path) from None

    def _direct_fd(self) -> Optional[int]:
        """The descriptor packets may be written to directly (after flushing self._f):
        only for a file this writer opened, or standard output.  A file object the
        caller passed may add a layer (compression, its own buffer) over its fileno()."""
        if not (self._owned or self._f is sys.stdout.buffer):
            return None
        try:
            return self._f.fileno()
        except (AttributeError, OSError, ValueError):
            return None             # e.g. a replaced sys.stdout without a descriptor

    def add_interface(self, linktype: Union[int, str], snaplen: int) -> int:
        """pcapng: write one more Interface Description Block and return its interface
        id (the first, made by the constructor, is 0).  Several interfaces may have the
        same link type; write(batch, interface=id) picks one."""
        if self.format != "pcapng":
            raise UsageError("a pcap file has one interface: add_interface needs "
                             "format='pcapng'")
        if self._closed:
            raise UsageError("add_interface on a closed CaptureWriter")
        lt = linktypes.value_of(linktype)
        if linktypes.lt_linktype(lt) > 0xFFFF or linktypes.lt_ext(lt):
            raise UsageError(f"link type {lt} does not fit a pcapng interface (16 bits, "
                             f"no FCS bits)")
        if not 0 <= int(snaplen) <= 0xFFFFFFFF:
            raise UsageError(f"snaplen {snaplen} does not fit 32 bits")
        self._out(pcapng.idb(lt, int(snaplen), self.nanos))
        self._iface_lt.append(lt)
        self._ifaces.setdefault(lt, len(self._iface_lt) - 1)
        return len(self._iface_lt) - 1

    def _interface(self, linktype: int, snaplen: int) -> int:
        """The first interface of this link type, added when there is none."""
        if linktype not in self._ifaces:
            return self.add_interface(linktype, snaplen)
        return self._ifaces[linktype]

    def write(self, batch: PacketBatch, interface: Optional[int] = None) -> None:
        """Append the packets of `batch`.  pcapng: on interface `interface` (an id from
        add_interface, of the batch's link type), by default on the first interface of
        the batch's link type, added if there is none.  pcap: interface is None or 0."""
        if self._closed:
            raise UsageError("write to a closed CaptureWriter")
        n = len(batch)
        if self.format == "pcap":
            if interface not in (None, 0):
                raise UsageError(f"a pcap file has one interface (0), not {interface}")
            if batch.linktype != self.linktype and n:
                raise CaptureError(
                    f"a pcap file holds one link type: this one is "
                    f"{linktypes.name_of(self.linktype)} ({self.linktype}), the batch is "
                    f"{linktypes.name_of(batch.linktype)} ({batch.linktype}); write pcapng",
                    path=self.path, records=self.packets)
            if n:
                self._write_records(batch, self._pcap_headers(batch), pad=False)
        else:
            if interface is not None and not 0 <= interface < len(self._iface_lt):
                raise UsageError(f"no interface {interface}: this writer has "
                                 f"{len(self._iface_lt)} (add_interface adds more)")
            if not n:
                return
            lt = batch.linktype
            if interface is not None:
                if self._iface_lt[interface] != lt:
                    have = self._iface_lt[interface]
                    raise CaptureError(
                        f"interface {interface} has link type {linktypes.name_of(have)} "
                        f"({have}), the batch is {linktypes.name_of(lt)} ({lt})",
                        path=self.path, records=self.packets)
                iface = interface
            else:
                if linktypes.lt_linktype(lt) > 0xFFFF or linktypes.lt_ext(lt):
                    raise CaptureError(f"link type {lt} does not fit a pcapng interface",
                                       path=self.path, records=self.packets)
                iface = self._interface(lt, batch.snaplen)
            self._write_records(batch, self._epb_headers(batch, iface), pad=True)
        self.packets += n

    # --- record headers -------------------------------------------------------------
    def _split_ts(self, batch: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
        ts = batch.ts_ns.astype(np.int64)
        sec = np.floor_divide(ts, _NS)
        frac = ts - sec * _NS
        if not self.nanos:
            frac //= 1000
        return sec, frac

    def _pcap_headers(self, batch: PacketBatch) -> np.ndarray:
        sec, frac = self._split_ts(batch)
        bad = (sec < -(1 << 31)) | (sec >= (1 << 31))
        if bad.any():
            i = int(np.argmax(bad))
            raise CaptureError(f"packet {self.packets + i}: timestamp {int(batch.ts_ns[i])} ns "
                               f"does not fit a classic pcap file (32-bit seconds); "
                               f"write pcapng", path=self.path, records=self.packets + i)
        h = np.empty((len(batch), 4), "<u4")
        h[:, 0] = sec.astype(np.int64) & 0xFFFFFFFF
        h[:, 1] = frac
        h[:, 2] = batch.caplen
        h[:, 3] = batch.wirelen
        return h.view(np.uint8).reshape(len(batch), 16)

    def _epb_headers(self, batch: PacketBatch, iface: int) -> np.ndarray:
        ts = batch.ts_ns.astype(np.int64)
        if (ts < 0).any():
            i = int(np.argmax(ts < 0))
            raise CaptureError(f"packet {self.packets + i}: negative timestamp "
                               f"{int(ts[i])} ns cannot be written to pcapng",
                               path=self.path, records=self.packets + i)
        t = ts if self.nanos else ts // 1000
        t = t.astype(np.uint64)
        cap = batch.caplen.astype(np.int64)
        total = 32 + (cap + 3) // 4 * 4
        h = np.empty((len(batch), 7), "<u4")
        h[:, 0] = pcapng.BT_EPB
        h[:, 1] = total
        h[:, 2] = iface
        h[:, 3] = t >> np.uint64(32)
        h[:, 4] = t & np.uint64(0xFFFFFFFF)
        h[:, 5] = batch.caplen
        h[:, 6] = batch.wirelen
        return h.view(np.uint8).reshape(len(batch), 28)

    def _write_records(self, batch: PacketBatch, headers: np.ndarray, pad: bool) -> None:
        """Header + data (+ padding and trailer for EPBs) of every packet, handed to the
        kernel as a gather list (os.writev) of slices of batch.buf and of one small array
        of the bytes between packets: packet data is never copied in user space.  Where a
        packet's record already sits in batch.buf exactly as it is to be written (a
        classic pcap read from a file of the same byte order and precision), the header
        comes from there too, so a run of consecutive kept records is one slice."""
        n = len(batch)
        if n == 0:
            return
        self._start()
        buf = batch.buf
        if buf.dtype != np.uint8 or buf.ndim != 1 or not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
        offs = batch.offset.astype(np.int64, copy=False)
        caps = batch.caplen.astype(np.int64)
        if pad:
            glue, src, lo, hi = _epb_pieces(offs, caps, headers)
        else:
            glue, src, lo, hi = _pcap_pieces(buf, offs, caps, headers)
        src, lo, hi = _coalesce(src, lo, hi)
        if self._fd is not None and _writev is not None:
            self._emit_iovecs((buf, glue), src, lo, hi)
            size = int((hi - lo).sum())
            if self._writeback:
                # SYNC_FILE_RANGE_WRITE: start writeback of these bytes, do not wait
                _sync_file_range(self._fd, self._pos, size, 2)
            self._pos += size
            return
        views = (memoryview(buf), memoryview(glue))
        parts = [views[s][a:b] for s, a, b in zip(src.tolist(), lo.tolist(), hi.tolist())]
        if self._fd is not None:
            self._flush()
            for i in range(0, len(parts), _IOV_MAX):
                self._writev_all(parts[i:i + _IOV_MAX])
        else:
            for i in range(0, len(parts), _IOV_MAX):
                self._out(b"".join(parts[i:i + _IOV_MAX]))

    def _flush(self) -> None:
        try:
            self._f.flush()         # what went through the file object (the file header)
        except OSError as e:
            raise write_error(e.errno, self.path) from None

    def _emit_iovecs(self, arrays, src, lo, hi) -> None:
        """Write the pieces with libc writev from an iovec array numpy builds: no Python
        object per piece (a memoryview slice costs about a microsecond, and a capture
        has hundreds of thousands of pieces)."""
        self._flush()
        addr = np.array([a.ctypes.data for a in arrays], np.uint64)
        iov = np.empty((len(src), 2), np.uint64)      # struct iovec {void *base; size_t len}
        iov[:, 0] = addr[src] + lo.astype(np.uint64)
        iov[:, 1] = hi - lo
        for i in range(0, len(iov), _IOV_MAX):
            group = iov[i:i + _IOV_MAX]
            want = int(group[:, 1].sum())
            while True:
                done = _writev(self._fd, group.ctypes.data, len(group))
                if done < 0:
                    err = ctypes.get_errno()
                    if err == errno.EINTR:
                        continue
                    raise write_error(err, self.path)
                if done >= want:
                    break
                if done == 0:
                    raise CaptureError("cannot write: no progress", path=self.path)
                # a short write (pipe, signal, full device): resume after the bytes taken
                want -= done
                k = int(np.searchsorted(np.cumsum(group[:, 1]), done, side="right"))
                taken = done - int(group[:k, 1].sum())
                group = group[k:].copy()
                group[0, 0] += np.uint64(taken)
                group[0, 1] -= np.uint64(taken)
        # `arrays`, which the iovecs point into, stay referenced until here

    def _writev_all(self, parts: list) -> None:
        """os.writev of `parts`, resuming after short writes."""
        want = sum(len(p) for p in parts)
        while True:
            try:
                done = os.writev(self._fd, parts)
            except OSError as e:
                raise write_error(e.errno, self.path) from None
            if done >= want:
                return
            if done <= 0:
                raise CaptureError("cannot write: no progress", path=self.path)
            want -= done
            k = 0
            while done >= len(parts[k]):
                done -= len(parts[k])
                k += 1
            parts = [parts[k][done:]] + parts[k + 1:]

    # --- closing --------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._start()
                self._f.flush()
            finally:
                if self._owned:
                    self._f.close()
        except OSError as e:
            raise write_error(e.errno, self.path) from None

    def __del__(self) -> None:
        # a writer dropped without close(): finish as a dropped file object would
        # (flushed), including the truncation _open deferred
        if self._pending is not None and not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_capture(path, batches: Union[PacketBatch, Iterable[PacketBatch]], *,
                  format: str = "pcap", linktype: Union[int, str, None] = None,
                  snaplen: Optional[int] = None, nanos: Optional[bool] = None) -> int:
    """Write one batch or an iterable of batches; None options come from the first batch
    (link type 1, snaplen 262144, microseconds when there is none).  Returns the number
    of packets written."""
    if isinstance(batches, PacketBatch):
        batches = [batches]
    it = iter(batches)
    first = next(it, None)
    w = CaptureWriter(path, format=format,
                      linktype=linktype if linktype is not None else
                      (first.linktype if first is not None else 1),
                      snaplen=snaplen if snaplen is not None else
                      (first.snaplen if first is not None else DEFAULT_SNAPLEN),
                      nanos=nanos if nanos is not None else
                      (first.ts_nanos if first is not None else False))
    try:
        if first is not None:
            w.write(first)
        for b in it:
            w.write(b)
    finally:
        w.close()
    return w.packets




def _pcap_pieces(buf: np.ndarray, offs: np.ndarray, caps: np.ndarray, headers: np.ndarray):
    """The pieces of classic pcap records, header then data for each packet, as
    (glue, source, lo, hi): source 0 is buf, 1 is glue (the headers we make).  A header
    is taken from buf when buf holds exactly those bytes right before the packet."""
    n, hl = headers.shape
    glue = np.ascontiguousarray(headers).reshape(-1)
    inside = offs >= hl
    win = np.ndarray((max(len(buf) - hl + 1, 0),), dtype=f"V{hl}", buffer=buf, offset=0,
                     strides=(1,))
    same = np.zeros(n, bool)
    if len(win):
        have = win[np.where(inside, offs - hl, 0)]
        same = inside & (have == glue.view(f"V{hl}"))
    src = np.zeros(2 * n, np.int8)
    lo = np.empty(2 * n, np.int64)
    src[0::2] = ~same
    lo[0::2] = np.where(same, offs - hl, np.arange(n, dtype=np.int64) * hl)
    lo[1::2] = offs
    hi = lo.copy()
    hi[0::2] += hl
    hi[1::2] += caps
    return glue, src, lo, hi


def _epb_pieces(offs: np.ndarray, caps: np.ndarray, headers: np.ndarray):
    """The pieces of Enhanced Packet Blocks: glue row i (8 + hl bytes) holds 4 zero bytes,
    the trailer of packet i-1 and the header of packet i, so that the padding of i-1,
    its trailer and the header of i are one piece; row n ends the last block."""
    n, hl = headers.shape
    w = 8 + hl
    pad = (-caps) % 4
    glue = np.zeros((n + 1, w), np.uint8)
    glue[:n, 8:] = headers
    total = hl + caps + pad + 4                  # the block's total length
    glue[1:, 4:8] = total.astype("<u4").view(np.uint8).reshape(n, 4)
    rows = np.arange(n + 1, dtype=np.int64) * w
    src = np.zeros(2 * n + 1, np.int8)
    lo = np.empty(2 * n + 1, np.int64)
    hi = np.empty(2 * n + 1, np.int64)
    src[0::2] = 1
    lo[0] = 8
    lo[2::2] = rows[1:] + 4 - pad
    hi[0:-1:2] = rows[:n] + w
    hi[-1] = rows[n] + 8
    lo[1::2] = offs
    hi[1::2] = offs + caps
    return glue.reshape(-1), src, lo, hi


def _coalesce(src: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Drop empty pieces and join each piece that continues the previous one (same
    source, starting where it ends)."""
    keep = hi > lo
    if not keep.all():
        src, lo, hi = src[keep], lo[keep], hi[keep]
    m = len(src)
    if m == 0:
        return src, lo, hi
    join = np.zeros(m, bool)
    join[1:] = (src[1:] == src[:-1]) & (lo[1:] == hi[:-1])
    starts = np.flatnonzero(~join)
    last = np.append(starts[1:], m) - 1
    return src[starts], lo[starts], hi[last]
