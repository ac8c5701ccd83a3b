"""Classic pcap files: the file header, the record chain, and the record columns, with
the rules of libpcap 1.10.3's sf-pcap.c (pcap_check_header, pcap_next_packet).

Record header: ts_sec, ts_usec (or ts_nsec), caplen, len: four 32-bit fields in the
file's byte order (24 bytes in Kuznetzov's patched format, magic 0xa1b2cd34).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import chain, linktypes
from .fixup import swapped

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
MAGIC_KUZNETZOV = 0xA1B2CD34
FILE_HEADER_LEN = 24

# caplen/len order by version (pcap_check_header): before 2.3 the two were stored the
# other way round; 2.3 files exist both ways; DG/UX tcpdump writes 543.0, swapped.
NOT_SWAPPED, SWAPPED, MAYBE_SWAPPED = 0, 1, 2
_YEAR = 366 * 86400


@dataclass(frozen=True)
class Header:
    big: bool              # byte order of the file
    nanos: bool
    hdrsize: int           # record header size (16, or 24 for Kuznetzov)
    version: tuple[int, int]
    linktype: int          # raw field, FCS/extension bits kept
    file_snaplen: int      # raw field
    snapshot: int          # libpcap's p->snapshot (pcap_adjust_snapshot, +14 for Kuznetzov EN10MB)
    max_caplen: int        # max_snaplen_for_dlt: larger caplen is an error
    lengths: int           # NOT_SWAPPED / SWAPPED / MAYBE_SWAPPED

    @property
    def dlt(self) -> int:
        return linktypes.dlt_of(self.linktype)


class HeaderError(Exception):
    """Not a pcap file, or one libpcap refuses; .message is libpcap's wording."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


def is_pcap_magic(first4: bytes) -> bool:
    if len(first4) < 4:
        return False
    for order in "<>":
        if struct.unpack(order + "I", first4)[0] in (MAGIC_USEC, MAGIC_NSEC, MAGIC_KUZNETZOV):
            return True
    return False


def parse_header(data) -> Header:
    """The file header at the start of `data` (pcap_check_header).  Raises HeaderError."""
    m = bytes(data[:4])
    order = None
    for o in "<>":
        if len(m) == 4 and struct.unpack(o + "I", m)[0] in (MAGIC_USEC, MAGIC_NSEC,
                                                            MAGIC_KUZNETZOV):
            order = o
            break
    if order is None:
        raise HeaderError("not a pcap or pcapng file (unknown magic number)")
    if len(data) < FILE_HEADER_LEN:
        raise HeaderError(f"truncated dump file; tried to read {FILE_HEADER_LEN} file header "
                          f"bytes, only got {len(data)}")
    magic, vmaj, vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(
        order + "IHHiIII", bytes(data[:FILE_HEADER_LEN]))
    if vmaj < 2:
        raise HeaderError("archaic pcap savefile format")
    if not ((vmaj == 2 and vmin <= 4) or (vmaj == 543 and vmin == 0)):
        raise HeaderError(f"unsupported pcap savefile version {vmaj}.{vmin}")
    dlt = linktypes.dlt_of(linktype)
    snapshot = linktypes.adjust_snapshot(dlt, snaplen)
    hdrsize = 16
    if magic == MAGIC_KUZNETZOV:
        hdrsize = 24
        if dlt == 1:
            # sf-pcap.c: a patched-libpcap capture may be "cooked" with a fake 14-byte
            # Ethernet header, so libpcap allows 14 more bytes than the snaplen
            snapshot = min(snapshot + 14, 0x7FFFFFFF)
    if vmaj == 2:
        lengths = SWAPPED if vmin < 3 else MAYBE_SWAPPED if vmin == 3 else NOT_SWAPPED
    else:
        lengths = SWAPPED
    return Header(big=order == ">", nanos=magic == MAGIC_NSEC, hdrsize=hdrsize,
                  version=(vmaj, vmin), linktype=linktype, file_snaplen=snaplen,
                  snapshot=snapshot, max_caplen=linktypes.max_snaplen_for_dlt(dlt),
                  lengths=lengths)


def u32_view(buf: np.ndarray, big: bool) -> np.ndarray:
    """A uint32 view of buf at every byte offset (element i = bytes i..i+3)."""
    n = max(len(buf) - 3, 0)
    return np.ndarray((n,), dtype=">u4" if big else "<u4", buffer=buf, offset=0, strides=(1,))


class RecordChain:
    """The chain.Format of pcap records in buf[start:end] (see chain.py)."""

    def __init__(self, buf: np.ndarray, hdr: Header, end: int):
        self.buf = buf
        self.hdr = hdr
        self.end = end
        self.u32 = u32_view(buf, hdr.big)
        self._cap = self.u32[8:]            # caplen (version >= 2.4 order) of a record at i
        self._order = ">" if hdr.big else "<"
        self._u4 = np.dtype(self._order + "u4")
        self.v16 = np.ndarray((max(len(buf) - 15, 0),), dtype="V16", buffer=buf, offset=0,
                              strides=(1,))
        self._frac_max = 1_000_000_000 if hdr.nanos else 1_000_000
        # seconds of the first record: plausible records are near it in time (this
        # rejects the shifted chains that records with caplen == len make look valid)
        first = FILE_HEADER_LEN
        self._sec0 = int(self.u32[first]) if end >= first + hdr.hdrsize else 0

    # caplen/len as pcap_next_packet reads them
    def _lengths(self, a, b):
        mode = self.hdr.lengths
        if mode == NOT_SWAPPED:
            return a, b
        if mode == SWAPPED:
            return b, a
        return np.minimum(a, b), np.maximum(a, b)

    def rows(self, pos):
        """The 16-byte record headers at `pos` (ts, frac, the two lengths) as native
        uint32[n, 4]."""
        return self.v16[pos].view(self._u4).reshape(len(pos), 4).astype(np.uint32, copy=False)

    def step(self, pos):
        hs = self.hdr.hdrsize
        full = (self.end - pos) >= hs
        allfull = bool(full.all())
        p = pos if allfull else np.where(full, pos, 0)     # keep the gathers in bounds
        rows = self.rows(p)
        if self.hdr.lengths == NOT_SWAPPED:
            cap = rows[:, 2]
        else:
            cap, _ = self._lengths(rows[:, 2], rows[:, 3])
        nxt = pos + hs + cap.astype(np.int64)
        bad = (cap > self.hdr.max_caplen) | (nxt > self.end)
        if not allfull:
            bad |= ~full
        return nxt, bad.astype(np.int8) * np.int8(chain.BAD), rows

    def step_offsets(self, pos):
        """step() without the header rows (chain._lockstep_offsets): (next offsets, None
        when every record is good, else a bool array of the bad ones).  Reads only
        caplen."""
        hs = self.hdr.hdrsize
        if self.hdr.lengths != NOT_SWAPPED or int(pos.max()) > self.end - hs:
            nxt, st, _ = self.step(pos)
            return nxt, (st != chain.OK) if st.any() else None
        cap = self._cap[pos]
        nxt = pos + hs + cap.astype(np.int64)
        if int(cap.max()) > self.hdr.max_caplen or int(nxt.max()) > self.end:
            return nxt, (cap > self.hdr.max_caplen) | (nxt > self.end)
        return nxt, None

    def scalar_step(self, pos):
        hs = self.hdr.hdrsize
        if self.end - pos < hs:
            return pos, chain.BAD
        a, b = struct.unpack_from(self._order + "II", self.buf, pos + 8)
        cap = a if self.hdr.lengths == NOT_SWAPPED else b if self.hdr.lengths == SWAPPED \
            else min(a, b)
        if cap > self.hdr.max_caplen or pos + hs + cap > self.end:
            return pos, chain.BAD
        return pos + hs + cap, chain.OK

    def plausible_grid(self, first, stride, lanes, width):
        """(lanes, width) bool: three consecutive record headers from first + lane*stride
        + column with 0 < caplen <= len, caplen <= snapshot, a sub-second fraction under
        one second and seconds within a year of the first record's.  A guess (chain.py)."""
        out = np.zeros((lanes, width), bool)
        hs = self.hdr.hdrsize
        last = first + (lanes - 1) * stride + width - 1      # last position searched
        if last + hs > self.end:
            width -= last + hs - self.end
            if width <= 0:
                return out
        grid = np.lib.stride_tricks.as_strided
        # one cheap test over the whole grid, the rest on the few positions that pass:
        # caplen <= snapshot < 2^24 needs the most significant byte of caplen to be 0
        field = 12 if self.hdr.lengths == SWAPPED else 8
        # seconds within a year (< 2^25 s) of the first record's have a most significant
        # byte within 2 of its: this drops zero runs and most payload bytes
        top = np.uint8(((self._sec0 >> 24) - 2) & 0xFF)
        smsb = grid(self.buf[first + (0 if self.hdr.big else 3):], (lanes, width), (stride, 1))
        if self.hdr.snapshot < (1 << 24):
            msb = field if self.hdr.big else field + 3
            g = grid(self.buf[first + msb:], (lanes, width), (stride, 1)) == 0
            # (the other length is most likely < 2^24 too: a guess, like all of this)
            other = (28 - field) if self.hdr.big else (31 - field)
            g &= grid(self.buf[first + other:], (lanes, width), (stride, 1)) == 0
        else:
            f = grid(self.u32[first + field:], (lanes, width), (stride, 1))
            g = (f - np.uint32(1)) < np.uint32(self.hdr.snapshot)
        g &= (smsb - top) <= np.uint8(4)
        flat = np.flatnonzero(g)
        li, ci = np.divmod(flat, width)
        pos = first + li * stride + ci
        ok = self._hops(pos, 3)
        out[li[ok], ci[ok]] = True
        return out

    def _hops(self, pos, hops):
        """Which of `pos` start `hops` consecutive plausible headers.  Each hop works on
        the survivors of the previous one only."""
        ok = np.zeros(len(pos), bool)
        idx = np.arange(len(pos))
        cur = pos
        hs = self.hdr.hdrsize
        for _ in range(hops):
            inside = (self.end - cur) >= hs
            idx, cur = idx[inside], cur[inside]
            r = self.rows(cur)
            cap, wire = self._lengths(r[:, 2], r[:, 3])
            good = (cap > 0) & (cap <= wire) & (cap <= self.hdr.snapshot) & \
                (r[:, 1] < self._frac_max) & \
                (np.abs(r[:, 0].astype(np.int64) - self._sec0) <= _YEAR)
            idx, cur = idx[good], cur[good] + hs + cap[good].astype(np.int64)
            fits = cur <= self.end
            idx, cur = idx[fits], cur[fits]
            done = cur == self.end          # a chain that ends the data is complete
            ok[idx[done]] = True
            idx, cur = idx[~done], cur[~done]
            if not len(idx):
                break
        ok[idx] = True
        return ok

    def describe(self, pos: int) -> str:
        """libpcap's message for the bad record at `pos` (pcap_next_packet)."""
        hs = self.hdr.hdrsize
        room = self.end - pos
        if room < hs:
            return f"truncated dump file; tried to read {hs} header bytes, only got {room}"
        a, b = struct.unpack_from(self._order + "II", self.buf, pos + 8)
        cap = a if self.hdr.lengths == NOT_SWAPPED else b if self.hdr.lengths == SWAPPED \
            else min(a, b)
        if cap > self.hdr.max_caplen:
            if cap > self.hdr.snapshot:
                return (f"invalid packet capture length {cap}, bigger than snaplen of "
                        f"{self.hdr.snapshot}")
            return f"invalid packet capture length {cap}, bigger than maximum of " \
                   f"{self.hdr.max_caplen}"
        got = room - hs
        if cap > self.hdr.snapshot:
            # libpcap reads the snapshot length first, then discards the rest
            if got < self.hdr.snapshot:
                return (f"truncated dump file; tried to read {self.hdr.snapshot} captured "
                        f"bytes, only got {got}")
        return f"truncated dump file; tried to read {cap} captured bytes, only got {got}"

    def records(self, offsets: np.ndarray, width: int):
        """columns() of the records at `offsets` (ascending), and each packet's first
        `width` bytes as a uint8[n, width] view (PacketBatch.head).  Each record header
        is read together with the start of its packet, in one pass in file order."""
        hs = self.hdr.hdrsize
        rec = gather_rows(self.buf, offsets, hs + width)
        n = len(offsets)
        rows = np.ndarray((n, 4), dtype=self._u4, buffer=rec, offset=0,
                          strides=(hs + width, 4)).astype(np.uint32)
        return self.columns(offsets, rows) + (rec[:, hs:],)

    def columns(self, offsets: np.ndarray, rows: np.ndarray):
        """(data offset, caplen, wirelen, ts_ns) of the records at `offsets` whose
        header rows are `rows`."""
        cap, wire = self._lengths(rows[:, 2], rows[:, 3])
        # pcap_next_packet: a record longer than the snapshot (but within the DLT's
        # maximum) is handed over cut to the snapshot length; the file still holds it all
        if len(cap) and int(cap.max()) > self.hdr.snapshot:
            cap = np.minimum(cap, self.hdr.snapshot)
        # pcap_next_packet: struct pcap_timeval holds two bpf_int32, copied as signed
        # values; a byte-swapped file goes through SWAPLONG, whose result is unsigned
        # (measured with libpcap 1.10.3: tests/test_pcap_badinput.py fuzzes both)
        if swapped(self.hdr.big):
            sec = rows[:, 0].astype(np.int64)
            frac = rows[:, 1].astype(np.int64)
        else:
            sec = rows[:, 0].view(np.int32).astype(np.int64)
            frac = rows[:, 1].view(np.int32).astype(np.int64)
        ts = sec * 1_000_000_000 + (frac if self.hdr.nanos else frac * 1000)
        return offsets + self.hdr.hdrsize, cap.astype(np.uint32), wire.astype(np.uint32), ts


def gather_rows(buf: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """uint8[n, width], C-contiguous: the `width` bytes of buf from each of `offsets`
    (ascending; zeros past the end of buf).  One gather of opaque `width`-byte items."""
    n = len(offsets)
    last = len(buf) - width          # the last offset with `width` bytes after it
    if n == 0:
        return np.zeros((0, width), np.uint8)
    if last < 0:
        out = np.zeros((n, width), np.uint8)
        k = 0
    else:
        v = np.ndarray((last + 1,), f"V{width}", buffer=buf, offset=0, strides=(1,))
        over = int(offsets[-1]) > last
        out = v[np.minimum(offsets, last) if over else offsets].view(np.uint8).reshape(n, width)
        if not over:
            return out
        k = int(np.searchsorted(offsets, last, side="right"))
    for i in range(k, n):               # the records within `width` bytes of the end
        o = int(offsets[i])
        out[i] = 0
        out[i, :len(buf) - o] = buf[o:]
    return out


def file_header(linktype: int, snaplen: int, nanos: bool, big: bool = False) -> bytes:
    """A classic pcap file header (version 2.4, thiszone 0, sigfigs 0), as sf_write_header."""
    return struct.pack((">" if big else "<") + "IHHiIII", MAGIC_NSEC if nanos else MAGIC_USEC,
                       2, 4, 0, 0, snaplen & 0xFFFFFFFF, linktype & 0xFFFFFFFF)
