"""Writing captures: classic pcap (as libpcap's pcap_dump writes it: little-endian,
version 2.4, magic a1b2c3d4 or a1b23c4d for nanoseconds) and pcapng (one section,
an Interface Description Block per link type, Enhanced Packet Blocks).

Packets are written as they are: caplen and wirelen unchanged, never cut to the
snaplen (pcap_dump does not cut either).  Timestamps are ns in the batch; a microsecond
file truncates them, as libpcap does when it scales nanoseconds down.
"""
from __future__ import annotations

import os
import sys
from typing import BinaryIO, Iterable, Optional, Union

import numpy as np

from ..errors import CaptureError, UsageError
from . import linktypes, pcapfile, pcapng
from .batch import DEFAULT_SNAPLEN, PacketBatch

FORMATS = ("pcap", "pcapng")
_NS = 1_000_000_000
_WRITE_BYTES = 4 << 20       # bytes assembled per write call


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
                    self._f = open(self.path, "wb")
                except OSError as e:
                    raise CaptureError(f"cannot create: {e.strerror}", path=self.path) \
                        from None
                self._owned = True
        else:
            self._f = path_or_fileobj
            self.path = getattr(path_or_fileobj, "name", "<stream>")
        self._ifaces: dict[int, int] = {}          # pcapng: link type -> interface id
        self._closed = False
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

    def _out(self, data) -> None:
        try:
            self._f.write(data)
        except OSError as e:
            raise CaptureError(f"cannot write: {e.strerror}", path=self.path) from None

    def _interface(self, linktype: int, snaplen: int) -> int:
        if linktype not in self._ifaces:
            self._out(pcapng.idb(linktype, snaplen, self.nanos))
            self._ifaces[linktype] = len(self._ifaces)
        return self._ifaces[linktype]

    def write(self, batch: PacketBatch) -> None:
        """Append the packets of `batch`."""
        if self._closed:
            raise UsageError("write to a closed CaptureWriter")
        n = len(batch)
        if self.format == "pcap":
            if batch.linktype != self.linktype and n:
                raise CaptureError(
                    f"a pcap file holds one link type: this one is "
                    f"{linktypes.name_of(self.linktype)} ({self.linktype}), the batch is "
                    f"{linktypes.name_of(batch.linktype)} ({batch.linktype}); write pcapng",
                    path=self.path, records=self.packets)
            if n:
                self._write_records(batch, self._pcap_headers(batch), pad=False)
        else:
            if not n:
                return
            lt = batch.linktype
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
        """Header + data (+ padding and trailer for EPBs) of every packet.  Records that
        sit in batch.buf exactly as they are to be written (a classic pcap read from a
        file of the same byte order and precision) are copied as whole runs, headers
        included, when the runs are long; otherwise the records are assembled a few MB
        at a time: headers and trailers placed by numpy, data copied packet by packet."""
        offs = batch.offset.astype(np.int64)
        caps = batch.caplen.astype(np.int64)
        if not pad:
            starts, ends = _runs(batch.buf, offs, caps, headers)
            if len(starts) and (ends - starts).sum() >= 8 * len(starts) and \
                    (ends - starts).sum() == len(offs):
                self._write_runs(batch, offs, caps, headers.shape[1], starts, ends)
                return
        self._write_assembled(batch, offs, caps, headers, pad)

    def _write_runs(self, batch, offs, caps, hl, starts, ends) -> None:
        buf = memoryview(batch.buf)
        for a, b in zip(starts.tolist(), ends.tolist()):
            lo = int(offs[a]) - hl
            hi = int(offs[b - 1] + caps[b - 1])
            for c in range(lo, hi, 64 << 20):
                self._out(buf[c:min(hi, c + (64 << 20))])

    def _write_assembled(self, batch, offs, caps, headers, pad) -> None:
        hl = headers.shape[1]
        body = (caps + 3) // 4 * 4 if pad else caps
        reclen = hl + body + (4 if pad else 0)
        cum = np.cumsum(reclen)
        src = memoryview(batch.buf)
        hv = np.ascontiguousarray(headers).view(f"V{hl}").reshape(-1)
        n = len(offs)
        i = 0
        while i < n:
            base = int(cum[i - 1]) if i else 0
            j = max(i + 1, int(np.searchsorted(cum, base + _WRITE_BYTES, side="right")))
            total = int(cum[j - 1]) - base
            out = np.zeros(total, np.uint8)
            dst = cum[i:j] - reclen[i:j] - base          # record starts in `out`
            np.ndarray((total - hl + 1,), f"V{hl}", out, 0, (1,))[dst] = hv[i:j]
            if pad:
                trailer = (dst + hl + body[i:j])
                np.ndarray((total - 3,), "<u4", out, 0, (1,))[trailer] = reclen[i:j]
            om = memoryview(out)
            for d, o, c in zip((dst + hl).tolist(), offs[i:j].tolist(), caps[i:j].tolist()):
                om[d:d + c] = src[o:o + c]
            self._out(om)
            i = j

    # --- closing --------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._f.flush()
            if self._owned:
                self._f.close()
        except OSError as e:
            raise CaptureError(f"cannot write: {e.strerror}", path=self.path) from None

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



def _runs(buf: np.ndarray, offs: np.ndarray, caps: np.ndarray, headers: np.ndarray):
    """[start, end) packet ranges whose records lie in `buf` back to back, each preceded
    by exactly the header we would write (so the bytes can be copied as they are)."""
    n = len(offs)
    hl = headers.shape[1]
    if n == 0 or len(buf) < hl:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    inside = offs >= hl
    win = np.ndarray((len(buf) - hl + 1,), dtype=f"V{hl}", buffer=buf, offset=0,
                     strides=(1,))
    have = win[np.where(inside, offs - hl, 0)]
    same = inside & (have == np.ascontiguousarray(headers).view(f"V{hl}").reshape(n))
    # packet i continues the run of i-1 when both are in place and i follows directly
    follows = np.zeros(n, bool)
    follows[1:] = same[1:] & same[:-1] & (offs[1:] == offs[:-1] + caps[:-1] + hl)
    starts = np.flatnonzero(same & ~follows)
    last = np.flatnonzero(same & ~np.append(follows[1:], False))
    return starts, last + 1
