"""pcapng: block chain, Section Header and Interface Description Blocks, packet blocks
(EPB, SPB, obsolete PB), with the rules of libpcap 1.10.3's sf-pcapng.c
(pcap_ng_check_header, read_block, add_interface, pcap_ng_next_packet) — and the
block builders the writer uses.

Where bpfkit goes further than libpcap (which stops with an error):
* sections may change byte order (libpcap: "the file has sections with different byte
  orders");
* interfaces may differ in link type and snapshot length (libpcap: "an interface has a
  type ... different from the type of the first interface"); the reader then ends the
  batch at each change of link type.
Each interface keeps its own snapshot length; an SPB uses interface 0 of its section.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import chain, linktypes
from .pcapfile import u32_view

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002
BT_SPB = 0x00000003
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
SHB_INSANE_MAX = 1024 * 1024           # BT_SHB_INSANE_MAX
INITIAL_MAX_BLOCKSIZE = 16 * 1024 * 1024

OPT_ENDOFOPT = 0
IF_TSRESOL = 9
IF_TSOFFSET = 14


def max_blocksize_for_snaplen(max_snaplen: int) -> int:
    """MAX_BLOCKSIZE_FOR_SNAPLEN: an EPB with a max-size packet and 128 KiB of options."""
    return 8 + 20 + max_snaplen + 131072 + 4


class BlockError(Exception):
    """A block libpcap rejects; .message is libpcap's wording, .offset the block's offset."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Interface:
    linktype: int          # raw IDB link type (16 bits)
    snaplen: int           # raw IDB snaplen
    snapshot: int          # pcap_adjust_snapshot of it
    tsresol: int           # ticks per second
    binary: bool           # tsresol is a power of 2
    tsoffset: int          # seconds added to every timestamp

    @property
    def nanos(self) -> bool:
        """Finer than a microsecond: keep nanoseconds when writing."""
        return self.tsresol > 1_000_000


def _order(big: bool) -> str:
    return ">" if big else "<"


def is_pcapng_magic(first4: bytes) -> bool:
    return len(first4) >= 4 and struct.unpack("<I", bytes(first4[:4]))[0] == BT_SHB


@dataclass(frozen=True)
class Section:
    big: bool
    version: tuple[int, int]
    length: int            # offset just past the SHB


def parse_first_shb(buf) -> Section:
    """The SHB that starts the file (pcap_ng_check_header).  Raises BlockError."""
    n = len(buf)
    if n < 12:
        raise BlockError("not a pcap or pcapng file (too short for a Section Header Block)", 0)
    bom = struct.unpack_from("<I", buf, 8)[0]
    if bom == BYTE_ORDER_MAGIC:
        big = False
    elif bom == 0x4D3C2B1A:
        big = True
    else:
        raise BlockError("not a pcap or pcapng file (bad pcapng byte-order magic)", 8)
    o = _order(big)
    total = struct.unpack_from(o + "I", buf, 4)[0]
    if total < 28 or total > SHB_INSANE_MAX:
        raise BlockError(f"Section Header Block in pcapng dump file has invalid length "
                         f"{total} (must be 28 .. {SHB_INSANE_MAX})", 0)
    if n < total:
        raise BlockError(f"truncated pcapng dump file; tried to read {total - 12} bytes, "
                         f"only got {n - 12}", 12)
    vmaj, vmin = struct.unpack_from(o + "HH", buf, 12)
    if not (vmaj == 1 and vmin in (0, 2)):
        raise BlockError(f"unsupported pcapng savefile version {vmaj}.{vmin}", 12)
    return Section(big, (vmaj, vmin), total)


def parse_later_shb(buf, pos: int, end: int, max_block: int) -> Section:
    """An SHB after the first (pcap_ng_next_packet), in its own byte order."""
    if end - pos < 12:
        raise BlockError(f"truncated pcapng dump file; tried to read 8 bytes, only got "
                         f"{min(end - pos, 8)}" if end - pos < 8 else
                         "the file has a section with a bad byte order magic field", pos)
    bom = struct.unpack_from("<I", buf, pos + 8)[0]
    if bom == BYTE_ORDER_MAGIC:
        big = False
    elif bom == 0x4D3C2B1A:
        big = True
    else:
        raise BlockError("the file has a section with a bad byte order magic field", pos)
    total = check_block(buf, pos, end, big, max_block)
    if total < 28:
        raise BlockError(f"block of type {BT_SHB} in pcapng dump file is too short", pos)
    vmaj, vmin = struct.unpack_from(_order(big) + "HH", buf, pos + 12)
    if vmaj != 1:
        raise BlockError(f"unknown pcapng savefile major version number {vmaj}", pos)
    return Section(big, (vmaj, vmin), pos + total)


def check_block(buf, pos: int, end: int, big: bool, max_block: int) -> int:
    """read_block's checks for the block at `pos`; returns its total length."""
    o = _order(big)
    if end - pos < 8:
        raise BlockError(f"truncated pcapng dump file; tried to read 8 bytes, only got "
                         f"{end - pos}", pos)
    total = struct.unpack_from(o + "I", buf, pos + 4)[0]
    if total < 12:
        raise BlockError(f"block in pcapng dump file has a length of {total} < 12", pos)
    if total % 4:
        raise BlockError(f"block in pcapng dump file has a length of {total} that is not a "
                         f"multiple of 4", pos)
    if total > max_block:
        raise BlockError(f"pcapng block size {total} > maximum {max_block}", pos)
    if end - pos < total:
        raise BlockError(f"truncated pcapng dump file; tried to read {total - 8} bytes, "
                         f"only got {end - pos - 8}", pos)
    trailer = struct.unpack_from(o + "I", buf, pos + total - 4)[0]
    if trailer != total:
        raise BlockError(f"block total length in header {total} and trailer {trailer} "
                         f"don't match", pos)
    return total


def parse_idb(buf, pos: int, total: int, big: bool) -> Interface:
    """An Interface Description Block (add_interface, process_idb_options)."""
    o = _order(big)
    if total - 12 < 8:
        raise BlockError(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
    linktype, _reserved, snaplen = struct.unpack_from(o + "HHI", buf, pos + 8)
    tsresol, binary, tsoffset = 1_000_000, False, 0
    saw_tsresol = saw_tsoffset = False
    p, stop = pos + 16, pos + total - 4
    while p < stop:
        if stop - p < 4:
            raise BlockError(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
        code, length = struct.unpack_from(o + "HH", buf, p)
        padded = (length + 3) // 4 * 4
        if stop - p - 4 < padded:
            raise BlockError(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
        val = p + 4
        p = val + padded
        if code == OPT_ENDOFOPT:
            if length != 0:
                raise BlockError(f"Interface Description Block has opt_endofopt option with "
                                 f"length {length} != 0", pos)
            break
        if code == IF_TSRESOL:
            if length != 1:
                raise BlockError(f"Interface Description Block has if_tsresol option with "
                                 f"length {length} != 1", pos)
            if saw_tsresol:
                raise BlockError("Interface Description Block has more than one if_tsresol "
                                 "option", pos)
            saw_tsresol = True
            r = int(buf[val])
            if r & 0x80:
                shift = r & 0x7F
                if shift > 63:
                    raise BlockError(f"Interface Description Block if_tsresol option "
                                     f"resolution 2^-{shift} is too high", pos)
                tsresol, binary = 1 << shift, True
            else:
                if r > 19:
                    raise BlockError(f"Interface Description Block if_tsresol option "
                                     f"resolution 10^-{r} is too high", pos)
                tsresol, binary = 10 ** int(r), False
        elif code == IF_TSOFFSET:
            if length != 8:
                raise BlockError(f"Interface Description Block has if_tsoffset option with "
                                 f"length {length} != 8", pos)
            if saw_tsoffset:
                raise BlockError("Interface Description Block has more than one if_tsoffset "
                                 "option", pos)
            saw_tsoffset = True
            tsoffset = struct.unpack_from(o + "q", buf, val)[0]
    dlt = linktypes.dlt_of(linktype)
    return Interface(linktype, snaplen, linktypes.adjust_snapshot(dlt, snaplen),
                     tsresol, binary, tsoffset)


class BlockChain:
    """The chain.Format of the blocks of one section (see chain.py).  An SHB ends the
    walk (STOP): its byte order may differ, so the reader handles it."""

    def __init__(self, buf: np.ndarray, big: bool, end: int, max_block: int, align: int = 0):
        self.align = align % 4      # block offsets of this section, modulo 4
        self.buf = buf
        self.big = big
        self.end = end
        self.max_block = max_block
        self.u32 = u32_view(buf, big)
        self._o = _order(big)
        self._u4 = np.dtype(self._o + "u4")
        self.v28 = np.ndarray((max(len(buf) - self.ROW + 1, 0),), dtype="V28", buffer=buf,
                              offset=0, strides=(1,))

    ROW = 28       # block type, length, and the 20 fixed bytes of an EPB or PB

    def rows(self, pos):
        """The first 28 bytes of the blocks at `pos` as native uint32[n, 7] (bytes past
        the data are zero)."""
        n = len(pos)
        limit = len(self.buf) - self.ROW
        if n == 0 or int(pos.max()) <= limit:
            return self.v28[pos].view(self._u4).reshape(n, 7).astype(np.uint32, copy=False)
        out = np.zeros((n, self.ROW), np.uint8)
        inside = pos <= limit
        out[inside] = self.v28[pos[inside]].view(np.uint8).reshape(-1, self.ROW)
        for i in np.flatnonzero(~inside):
            tail = self.buf[int(pos[i]):]
            out[i, :len(tail)] = tail
        return out.view(self._u4).reshape(n, 7).astype(np.uint32)

    def step(self, pos):
        full = (self.end - pos) >= 8
        allfull = bool(full.all())
        p = pos if allfull else np.where(full, pos, 0)      # keep the gathers in bounds
        rows = self.rows(p)
        total = rows[:, 1].astype(np.int64)
        nxt = pos + total
        bad = (total < 12) | ((total & 3) != 0) | (total > self.max_block) | (nxt > self.end)
        if not allfull:
            bad |= ~full
        # the trailer repeats the length (read_block); it shares a cache line with the
        # next block's header, which the next step reads anyway
        bad |= (self.u32[np.where(bad, p, nxt - 4)] != total) & ~bad
        st = bad.astype(np.int8) * np.int8(chain.BAD)
        shb = rows[:, 0] == BT_SHB
        if shb.any():
            st[shb & full] = chain.STOP
        return nxt, st, rows

    def scalar_step(self, pos):
        if self.end - pos >= 8 and struct.unpack_from(self._o + "I", self.buf, pos)[0] == BT_SHB:
            return pos, chain.STOP
        try:
            total = check_block(self.buf, pos, self.end, self.big, self.max_block)
        except BlockError:
            return pos, chain.BAD
        return pos + total, chain.OK

    def plausible_grid(self, first, stride, lanes, width):
        """(lanes, width) bool: two consecutive blocks whose trailers repeat their
        lengths.  Blocks of a section start at offsets congruent to the section's start
        modulo 4 (lengths are multiples of 4), so only those columns are tried."""
        out = np.zeros((lanes, width), bool)
        last = first + (lanes - 1) * stride + width - 1
        if last + 12 > self.end:
            width -= last + 12 - self.end
            if width <= 0:
                return out
        grid = np.lib.stride_tricks.as_strided
        if stride % 4 == 0:
            skip = (self.align - first) % 4
            cols = (width - skip + 3) // 4
            if cols <= 0:
                return out
            total = grid(self.u32[first + skip + 4:], (lanes, cols), (stride, 4))
            li, ci = np.nonzero((total - np.uint32(12)) <= np.uint32(self.max_block - 12))
            ci = ci * 4 + skip
        else:
            total = grid(self.u32[first + 4:], (lanes, width), (stride, 1))
            li, ci = np.nonzero((total - np.uint32(12)) <= np.uint32(self.max_block - 12))
        pos = first + li.astype(np.int64) * stride + ci
        ok = np.ones(len(pos), bool)
        cur = pos
        for _ in range(2):
            ok &= (self.end - cur) >= 12
            c = np.where(ok, cur, 0)
            btype = self.u32[c].astype(np.int64)
            tot = self.u32[c + 4].astype(np.int64)
            ok &= (tot >= 12) & (tot % 4 == 0) & (tot <= self.max_block) & \
                (c + tot <= self.end) & (btype != BT_SHB) & (btype < 0x10000)
            t = np.where(ok, c + tot - 4, 0)
            ok &= self.u32[t].astype(np.int64) == tot
            cur = c + tot
            if (ok & (cur == self.end)).any():
                break
        out[li[ok], ci[ok]] = True
        return out

    def describe(self, pos: int) -> str:
        try:
            check_block(self.buf, pos, self.end, self.big, self.max_block)
        except BlockError as e:
            return e.message
        return "bad block"       # not reached: describe() is called for BAD blocks only


def _frac_to_ns(frac: np.ndarray, tsresol: int, binary: bool) -> np.ndarray:
    """Sub-second ticks -> nanoseconds, truncating, as pcap_ng_next_packet scales to the
    nanosecond precision tcpdump asks for with --time-stamp-precision=nano.  Exact where
    libpcap's 64-bit `frac * 10^9` would overflow (resolutions finer than 2^-34)."""
    frac = frac.astype(np.uint64)
    if not binary:
        if tsresol <= 1_000_000_000:
            return (frac * np.uint64(1_000_000_000 // tsresol)).astype(np.int64)
        return (frac // np.uint64(tsresol // 1_000_000_000)).astype(np.int64)
    shift = tsresol.bit_length() - 1
    if shift <= 32:
        return ((frac * np.uint64(1_000_000_000)) >> np.uint64(shift)).astype(np.int64)
    # frac < 2^shift; split frac = hi * 2^32 + lo so no product exceeds 2^62
    hi = frac >> np.uint64(32)
    lo = frac & np.uint64(0xFFFFFFFF)
    acc = hi * np.uint64(1_000_000_000) + ((lo * np.uint64(1_000_000_000)) >> np.uint64(32))
    return (acc >> np.uint64(shift - 32)).astype(np.int64)


def timestamps(t: np.ndarray, iface: Interface) -> np.ndarray:
    """64-bit tick counts -> ns since the epoch (int64, wrapping past year 2262):
    sec = t / tsresol + tsoffset, frac = t % tsresol (pcap_ng_next_packet)."""
    t = t.astype(np.uint64)
    res = np.uint64(iface.tsresol)
    sec = (t // res).astype(np.int64) + np.int64(iface.tsoffset)
    frac_ns = _frac_to_ns(t % res, iface.tsresol, iface.binary)
    with np.errstate(over="ignore"):
        return sec * np.int64(1_000_000_000) + frac_ns


# --- writing -------------------------------------------------------------------

def _options(opts: list[tuple[int, bytes]], o: str) -> bytes:
    if not opts:
        return b""
    out = b""
    for code, val in opts:
        out += struct.pack(o + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)
    return out + struct.pack(o + "HH", OPT_ENDOFOPT, 0)


def shb(big: bool = False) -> bytes:
    """A Section Header Block, version 1.0, section length unknown (-1), no options."""
    o = _order(big)
    body = struct.pack(o + "IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    total = 12 + len(body)
    return struct.pack(o + "II", BT_SHB, total) + body + struct.pack(o + "I", total)


def idb(linktype: int, snaplen: int, nanos: bool, big: bool = False) -> bytes:
    """An Interface Description Block; if_tsresol 9 (ns) when `nanos`, else the default µs."""
    o = _order(big)
    opts = [(IF_TSRESOL, bytes([9]))] if nanos else []
    body = struct.pack(o + "HHI", linktype & 0xFFFF, 0, snaplen & 0xFFFFFFFF) + _options(opts, o)
    total = 12 + len(body)
    return struct.pack(o + "II", BT_IDB, total) + body + struct.pack(o + "I", total)
