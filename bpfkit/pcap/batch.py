"""PacketBatch: a columnar, zero-copy batch of captured packets.

One uint8 buffer (a memory map of the capture file where possible) plus per-packet
columns.  Packet i is ``buf[offset[i] : offset[i] + caplen[i]]``.  No per-packet
Python objects are made unless you ask for them (indexing, iteration).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from ..errors import BpfError

DEFAULT_SNAPLEN = 262144


@dataclass(frozen=True, eq=False)
class PacketBatch:
    buf: np.ndarray          # uint8[M], shared, never written through a batch
    offset: np.ndarray       # int64[N]   start of each packet's bytes in buf
    caplen: np.ndarray       # uint32[N]  bytes captured
    wirelen: np.ndarray      # uint32[N]  original length on the wire
    ts_ns: np.ndarray        # int64[N]   timestamp, ns since the epoch (UTC)
    linktype: int = 1        # raw LINKTYPE_* value from the file, FCS bits kept
    snaplen: int = DEFAULT_SNAPLEN
    ts_nanos: bool = False   # True when the source carried sub-microsecond precision
    # None, or uint8[N, H]: each packet's first H bytes, copied next to each other (past
    # caplen: whatever follows the packet in buf, or zeros).  A cache the reader fills
    # while the bytes are in the CPU's caches: engines read packet headers from it (one
    # contiguous block) instead of from all over buf.  Loads still check caplen.
    head: Optional[np.ndarray] = None

    def __post_init__(self):
        n = len(self.offset)
        if not (len(self.caplen) == len(self.wirelen) == len(self.ts_ns) == n):
            raise BpfError("PacketBatch columns have different lengths")
        if self.head is not None and (self.head.ndim != 2 or len(self.head) != n):
            raise BpfError("PacketBatch head has the wrong shape")

    # --- construction ----------------------------------------------------
    @classmethod
    def from_packets(cls, packets: Iterable[bytes], *, ts_ns: Sequence[int] | None = None,
                     wirelen: Sequence[int] | None = None, linktype: int = 1,
                     snaplen: int = DEFAULT_SNAPLEN, ts_nanos: bool = False) -> "PacketBatch":
        """Build a batch from a list of byte strings (tests, synthetic traffic)."""
        pkts = [bytes(p) for p in packets]
        caplen = np.fromiter((len(p) for p in pkts), dtype=np.uint32, count=len(pkts))
        offset = np.zeros(len(pkts), dtype=np.int64)
        if len(pkts):
            offset[1:] = np.cumsum(caplen[:-1], dtype=np.int64)
        buf = np.frombuffer(b"".join(pkts), dtype=np.uint8) if pkts else np.zeros(0, np.uint8)
        wl = caplen.copy() if wirelen is None else np.asarray(wirelen, dtype=np.uint32)
        ts = np.zeros(len(pkts), np.int64) if ts_ns is None else np.asarray(ts_ns, dtype=np.int64)
        return cls(buf, offset, caplen, wl, ts, linktype, snaplen, ts_nanos)

    @classmethod
    def empty(cls, linktype: int = 1, snaplen: int = DEFAULT_SNAPLEN,
              ts_nanos: bool = False) -> "PacketBatch":
        return cls.from_packets([], linktype=linktype, snaplen=snaplen, ts_nanos=ts_nanos)

    @classmethod
    def concat(cls, batches: Sequence["PacketBatch"]) -> "PacketBatch":
        """Concatenate batches of one link type into one (copies the bytes)."""
        batches = list(batches)
        if not batches:
            return cls.empty()
        lt = {b.linktype for b in batches}
        if len(lt) > 1:
            raise BpfError(f"cannot concatenate batches of different link types {sorted(lt)}")
        parts, offs, base = [], [], 0
        for b in batches:
            c = b.compact()
            parts.append(c.buf)
            offs.append(c.offset + base)
            base += len(c.buf)
        return cls(np.concatenate(parts) if parts else np.zeros(0, np.uint8),
                   np.concatenate(offs), np.concatenate([b.caplen for b in batches]),
                   np.concatenate([b.wirelen for b in batches]),
                   np.concatenate([b.ts_ns for b in batches]),
                   batches[0].linktype, max(b.snaplen for b in batches),
                   any(b.ts_nanos for b in batches))

    # --- access ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offset)

    def packet(self, i: int) -> memoryview:
        """The captured bytes of packet i (a zero-copy view)."""
        o = int(self.offset[i])
        return memoryview(self.buf[o:o + int(self.caplen[i])])

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if key < 0:
                key += n
            if not 0 <= key < n:
                raise IndexError(f"packet index {key} out of range for a batch of {n}")
            return self.packet(int(key))
        # slice, boolean mask or index array -> a new batch sharing buf
        return PacketBatch(self.buf, self.offset[key], self.caplen[key], self.wirelen[key],
                           self.ts_ns[key], self.linktype, self.snaplen, self.ts_nanos,
                           None if self.head is None else self.head[key])

    def __iter__(self) -> Iterator[tuple[int, memoryview]]:
        for i in range(len(self)):
            yield int(self.ts_ns[i]), self.packet(i)

    def packets(self) -> list[bytes]:
        return [bytes(self.packet(i)) for i in range(len(self))]

    def compact(self) -> "PacketBatch":
        """A copy whose buffer holds exactly this batch's packets, contiguous."""
        n = len(self)
        total = int(self.caplen.sum(dtype=np.int64))
        new_off = np.zeros(n, np.int64)
        if n:
            new_off[1:] = np.cumsum(self.caplen[:-1], dtype=np.int64)
        if n and np.array_equal(self.offset, new_off + int(self.offset[0])) and \
                int(self.offset[0]) == 0 and len(self.buf) == total:
            return self
        idx = gather_index(self.offset, self.caplen)
        return PacketBatch(self.buf[idx] if total else np.zeros(0, np.uint8), new_off,
                           self.caplen.copy(), self.wirelen.copy(), self.ts_ns.copy(),
                           self.linktype, self.snaplen, self.ts_nanos)

    def padded(self, width: int, fill: int = 0) -> np.ndarray:
        """An (N, width) uint8 matrix of each packet's first `width` bytes, padded
        with `fill` past caplen (for vectorised loads; bounds are the caller's job)."""
        n = len(self)
        out = np.full((n, width), fill, dtype=np.uint8)
        if n == 0 or width == 0:
            return out
        cols = np.arange(width, dtype=np.int64)
        valid = cols[None, :] < np.minimum(self.caplen, width)[:, None]
        src = (self.offset[:, None] + cols[None, :])[valid]
        out[valid] = self.buf[src]
        return out


def gather_index(offset: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Concatenated ranges [offset[i], offset[i]+length[i]) as one int64 index array."""
    length = np.asarray(length, dtype=np.int64)
    total = int(length.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(np.asarray(offset, np.int64) - np.concatenate(([0], np.cumsum(length)[:-1])),
                       length)
    return starts + np.arange(total, dtype=np.int64)
