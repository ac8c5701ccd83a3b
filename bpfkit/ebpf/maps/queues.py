"""Key-less maps: QUEUE, STACK (kernel/bpf/queue_stack_maps.c) and BLOOM_FILTER
(kernel/bpf/bloom_filter.c).  bpf(2) reaches them with a NULL key: UPDATE = push,
LOOKUP = peek (bloom: membership test of the given value), LOOKUP_AND_DELETE = pop.
Programs: push_raw(value, flags), pop_raw(), peek_raw(value=...) -- for a bloom filter
peek_raw takes the value to test (bpf_map_peek_elem passes it in)."""
from __future__ import annotations

from collections import deque

from .base import BpfMap
from .consts import (BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_WRONLY, BPF_F_ZERO_SEED,
                     BPF_NOEXIST, E2BIG, EINVAL, ENOENT, EOPNOTSUPP, EPERM, U32_MAX,
                     roundup_pow_of_two)
from .jhash import htab_hash
from .spec import MapError, MapSpec


class _QueueStack(BpfMap):
    lifo = False

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self._items: deque[bytes] = deque()   # oldest on the left

    def push_raw(self, value, flags, cpu=0):
        # queue_stack_map_push_elem(): only BPF_ANY or BPF_EXIST; full + BPF_EXIST
        # drops the oldest element to make room, full otherwise is E2BIG.
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            return -EINVAL
        if len(self._items) >= self.max_entries:
            if not flags & BPF_EXIST:
                return -E2BIG
            self._items.popleft()
        self._items.append(bytes(value))
        return 0

    def peek_raw(self, cpu=0, value=None):
        if not self._items:
            return -ENOENT, None
        return 0, self._items[-1] if self.lifo else self._items[0]

    def pop_raw(self, cpu=0):
        if not self._items:
            return -ENOENT, None
        return 0, self._items.pop() if self.lifo else self._items.popleft()

    def _sys_update(self, key, value, flags):
        return self.push_raw(value, flags)

    def _sys_lookup(self, key):
        return self.peek_raw()

    def _sys_lookup_and_delete(self, key):
        return self.pop_raw()

    def _sys_delete(self, key):
        return -EINVAL

    def _sys_next_key(self, key):
        return -EINVAL, None

    def update_raw(self, key, value, flags, cpu=0):
        return self.push_raw(value, flags)

    def delete_raw(self, key, cpu=0):
        return -EINVAL

    # Python API
    def push(self, value, flags: int = BPF_ANY) -> None:
        self.update(None, value, flags)

    def peek(self) -> bytes:
        return self.lookup(None)

    def pop(self) -> bytes:
        return self.lookup_and_delete(None)

    def keys(self):
        raise MapError(EINVAL, f"{self.type.name} has no keys", op="next_key")

    def dump(self) -> list[dict]:
        """[{"value": hex}] in pop order."""
        return [{"value": v.hex()} for v in self.values()]

    def values(self) -> list[bytes]:
        """The elements, in pop order."""
        return list(reversed(self._items)) if self.lifo else list(self._items)

    def __len__(self) -> int:
        return len(self._items)


class QueueMap(_QueueStack):
    """BPF_MAP_TYPE_QUEUE: FIFO."""


class StackMap(_QueueStack):
    """BPF_MAP_TYPE_STACK: LIFO."""
    lifo = True


class BloomFilterMap(BpfMap):
    """BPF_MAP_TYPE_BLOOM_FILTER.  map_extra & 0xF hash functions (0 = 5); the bit array
    holds max_entries * nr_hash / ln 2 bits (7/5 as the kernel approximates), rounded up
    to a power of two, at least 64; bit i of a value = jhash(value, seed + i) & mask.
    The kernel seeds with a random number unless BPF_F_ZERO_SEED; bpfkit uses seed 0
    (or `seed`), so it answers exactly like a kernel filter made with BPF_F_ZERO_SEED,
    false positives included."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1, seed: int = 0):
        super().__init__(spec, num_cpus)
        self.seed = 0 if spec.flags & BPF_F_ZERO_SEED else seed
        self.nr_hash = spec.map_extra & 0xF or 5
        nr_bits = self.max_entries * self.nr_hash
        if nr_bits > U32_MAX or (nr_bits // 5) * 7 > U32_MAX or (nr_bits // 5) * 7 > 1 << 31:
            self.mask = U32_MAX
        else:
            nr_bits = (nr_bits // 5) * 7
            nr_bits = 64 if nr_bits <= 64 else roundup_pow_of_two(nr_bits)
            self.mask = nr_bits - 1
        self._bits: set[int] = set()   # set bits (the array may be 2^32 bits)

    def _positions(self, value: bytes):
        return [htab_hash(value, (self.seed + i) & U32_MAX) & self.mask
                for i in range(self.nr_hash)]

    def push_raw(self, value, flags, cpu=0):
        if flags != BPF_ANY:
            return -EINVAL
        self._bits.update(self._positions(bytes(value)))
        return 0

    def peek_raw(self, cpu=0, value: bytes = b""):
        """bpf_map_peek_elem(bloom, value): (0, value) if maybe present, else ENOENT."""
        for p in self._positions(bytes(value)):
            if p not in self._bits:
                return -ENOENT, None
        return 0, bytes(value)

    def pop_raw(self, cpu=0):
        return -EOPNOTSUPP, None

    def contains_raw(self, value: bytes) -> int:
        """bpf_map_peek_elem(bloom, value): 0 if maybe present, -ENOENT if not."""
        return self.peek_raw(value=value)[0]

    def sys_lookup(self, key, flags=0, value: bytes = b""):
        """BPF_MAP_LOOKUP_ELEM on a bloom filter tests `value` (the value buffer is an
        input there); same flag and permission checks as map_lookup_elem()."""
        if flags & ~BPF_F_LOCK:
            return -EINVAL, None
        if self.flags & BPF_F_WRONLY:
            return -EPERM, None
        if flags & BPF_F_LOCK:
            return -EINVAL, None
        if key is not None:
            return -EINVAL, None    # __bpf_copy_key(): no key pointer for key_size 0
        return self.peek_raw(value=value)

    def _sys_update(self, key, value, flags):
        return self.push_raw(value, flags)

    def _sys_delete(self, key):
        return -EOPNOTSUPP

    def _sys_next_key(self, key):
        return -EOPNOTSUPP, None

    def update_raw(self, key, value, flags, cpu=0):
        return self.push_raw(value, flags)

    # Python API
    def push(self, value, flags: int = BPF_ANY) -> None:
        self.update(None, value, flags)

    def __contains__(self, value) -> bool:
        from .base import as_bytes
        return self.contains_raw(as_bytes(value, self.value_size, "value", "peek")) == 0

    def keys(self):
        raise MapError(EOPNOTSUPP, "a bloom filter has no keys", op="next_key")

    def dump(self) -> list[dict]:
        """A bloom filter cannot list its members: the set bit positions instead."""
        return [{"bit": b} for b in sorted(self._bits)]
