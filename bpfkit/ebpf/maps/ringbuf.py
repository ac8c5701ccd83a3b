"""BPF_MAP_TYPE_RINGBUF (kernel/bpf/ringbuf.c).

Space accounting is the kernel's: a record takes round_up(size + 8, 8) bytes (an 8-byte
header), a reservation fails when the producer would get more than max_entries - 1
bytes ahead of the consumer or of the oldest record still being written, and nothing is
consumed until the user calls consume() (in BPF_PROG_TEST_RUN nobody consumes either).
Each reserved record is its own bytearray (a stable region the program writes through)
that starts with the bytes the ring holds at that place -- zeros on the first lap, then
earlier records and their 8-byte headers -- because the kernel hands out ring memory
without clearing it; submit/discard write the record and its header back into the ring
image.  consume() returns the submitted, not discarded records in order with the index
of the packet that produced them, and stops at the first one still reserved."""
from __future__ import annotations

from dataclasses import dataclass

from .base import BpfMap, ValueRef
from .consts import (BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP,
                     BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS, BPF_RB_RING_SIZE,
                     BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ,
                     EAGAIN, EINVAL, RINGBUF_MAX_RECORD_SZ, round_up)
from .spec import MapSpec


@dataclass(frozen=True, slots=True)
class RingbufRecord:
    packet_index: int
    data: bytes


# struct bpf_ringbuf: a page of bookkeeping, then consumer_pos, producer_pos and the data
# each page-aligned, so data starts at page 3; a header's pg_off counts from there.
RINGBUF_DATA_PGOFF = 3


class _Rec:
    __slots__ = ("pos", "buf", "packet_index", "state")

    def __init__(self, pos: int, size: int, packet_index: int):
        self.pos = pos
        self.buf = bytearray(size)
        self.packet_index = packet_index
        self.state = "busy"        # busy -> committed | discarded


class RingbufMap(BpfMap):
    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self.mask = self.max_entries - 1
        self.prod_pos = 0
        self.cons_pos = 0
        self._recs: list[_Rec] = []          # records not yet consumed, by position
        self._by_buf: dict[int, _Rec] = {}
        self._image = bytearray(self.max_entries)   # the ring's data area

    def _put(self, off: int, data: bytes) -> None:
        """Write into the ring image at `off`, wrapping (the kernel maps the data pages
        twice, so a record is contiguous for the program and wraps in the ring)."""
        off &= self.mask
        first = min(len(data), self.max_entries - off)
        self._image[off:off + first] = data[:first]
        self._image[0:len(data) - first] = data[first:]

    def _get(self, off: int, n: int) -> bytes:
        off &= self.mask
        first = min(n, self.max_entries - off)
        return bytes(self._image[off:off + first]) + bytes(self._image[0:n - first])

    def _header(self, rec: _Rec, bits: int) -> None:
        # bpf_ringbuf_hdr: u32 len (bit 31 busy, bit 30 discard), u32 pg_off.
        pg_off = RINGBUF_DATA_PGOFF + ((rec.pos & self.mask) >> 12)
        self._put(rec.pos, (len(rec.buf) | bits).to_bytes(4, "little")
                  + pg_off.to_bytes(4, "little"))

    def _pending_pos(self) -> int:
        for r in self._recs:
            if r.state == "busy":
                return r.pos
        return self.prod_pos

    def reserve(self, size: int, flags: int = 0, *, packet_index: int = -1) -> ValueRef | None:
        """bpf_ringbuf_reserve(): a ValueRef to `size` bytes (holding what the ring
        held there before), or None (NULL)."""
        if flags:
            return None
        if size > RINGBUF_MAX_RECORD_SZ:
            return None
        length = round_up(size + BPF_RINGBUF_HDR_SZ, 8)
        if length > self.max_entries:
            return None
        new_prod = self.prod_pos + length
        if new_prod - self.cons_pos > self.mask or new_prod - self._pending_pos() > self.mask:
            return None
        rec = _Rec(self.prod_pos, size, packet_index)
        rec.buf[:] = self._get(rec.pos + BPF_RINGBUF_HDR_SZ, size)
        self._header(rec, BPF_RINGBUF_BUSY_BIT)
        self.prod_pos = new_prod
        self._recs.append(rec)
        self._by_buf[id(rec.buf)] = rec
        return ValueRef(rec.buf, 0, size)

    def _finish(self, ref: ValueRef, state: str) -> None:
        rec = self._by_buf.pop(id(ref.buf), None)
        if rec is None or rec.state != "busy":
            from .spec import MapError
            raise MapError(EINVAL, "ring buffer record submitted/discarded twice or unknown",
                           op="ringbuf_submit")
        rec.state = state
        self._put(rec.pos + BPF_RINGBUF_HDR_SZ, bytes(rec.buf))
        self._header(rec, BPF_RINGBUF_DISCARD_BIT if state == "discarded" else 0)

    def submit(self, ref: ValueRef, flags: int = 0) -> None:
        """bpf_ringbuf_submit() (flags only steer wakeups)."""
        self._finish(ref, "committed")

    def discard(self, ref: ValueRef, flags: int = 0) -> None:
        """bpf_ringbuf_discard()."""
        self._finish(ref, "discarded")

    def output(self, data: bytes, flags: int = 0, *, packet_index: int = -1) -> int:
        """bpf_ringbuf_output(): 0, -EINVAL (flags) or -EAGAIN (no room)."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -EINVAL
        ref = self.reserve(len(data), packet_index=packet_index)
        if ref is None:
            return -EAGAIN
        ref.write(bytes(data))
        self.submit(ref)
        return 0

    def query(self, flags: int) -> int:
        """bpf_ringbuf_query()."""
        if flags == BPF_RB_AVAIL_DATA:
            return self.prod_pos - self.cons_pos
        if flags == BPF_RB_RING_SIZE:
            return self.max_entries
        if flags == BPF_RB_CONS_POS:
            return self.cons_pos
        if flags == BPF_RB_PROD_POS:
            return self.prod_pos
        return 0

    def consume(self) -> list[RingbufRecord]:
        """What a user-space consumer reads now: committed records in order, stopping at
        the first busy one; consumed space is freed."""
        out = []
        while self._recs and self._recs[0].state != "busy":
            rec = self._recs.pop(0)
            if rec.state == "committed":
                out.append(RingbufRecord(rec.packet_index, bytes(rec.buf)))
            self.cons_pos = rec.pos + round_up(len(rec.buf) + BPF_RINGBUF_HDR_SZ, 8)
        if not self._recs:
            self.cons_pos = self.prod_pos
        return out

    def dump(self) -> list[dict]:
        """Committed, unconsumed records: [{"packet": index, "data": hex}]."""
        return [{"packet": r.packet_index, "data": r.data.hex()} for r in self.pending()]

    def keys(self):
        return iter(())

    def pending(self) -> list[RingbufRecord]:
        """Committed records not yet consumed, without consuming them."""
        return [RingbufRecord(r.packet_index, bytes(r.buf)) for r in self._recs
                if r.state == "committed"]
