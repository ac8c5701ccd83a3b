"""The hash-table maps: HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS,
and DEVMAP_HASH (kernel/bpf/hashtab.c, devmap.c).

Iteration order (GET_NEXT_KEY) is the kernel's exactly when the kernel map was created
with BPF_F_ZERO_SEED: bucket = jhash(key, 0) & (n_buckets - 1), n_buckets =
roundup_pow_of_two(max_entries), buckets in index order, newest element first within a
bucket (an update that replaces an element moves it to the head; per-CPU maps update in
place).  Without BPF_F_ZERO_SEED the kernel seeds jhash randomly per map, so its order is
unpredictable; bpfkit always uses seed 0.  A key that is not in the map, or None, gives
the first key.

Capacity: preallocated and BPF_F_NO_PREALLOC maps both refuse a new key when
max_entries keys are present (E2BIG); replacing an existing key always works (the kernel
keeps a spare element per CPU for that: htab->extra_elems).

LRU maps: see LruState.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ...errors import UnsupportedError
from .base import BpfMap, ValueRef, _b
from .buckets import BucketOrder
from .consts import (BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_NO_COMMON_LRU, BPF_NOEXIST, E2BIG,
                     EEXIST, EINVAL, ENOENT, ENOMEM, ENOTSUPP, round_up, roundup_pow_of_two)
from .jhash import htab_hash, htab_hash_many
from .lru_kernel import KernelLru
from .slab import Slab
from .spec import MapSpec, htab_max_entries, inner_compatible


class LruState:
    """An exact LRU: each element has a last-use time; when a new key must be inserted
    into a full map, the least recently used element is evicted first.  A use is: the
    element's creation or update, and a lookup by a program (bpf_map_lookup_elem).
    bpf(2) lookups and GET_NEXT_KEY are not uses (the kernel's lookup_elem_sys_only does
    not set the reference bit either).  With BPF_F_NO_COMMON_LRU each CPU has its own
    list of max_entries / num_cpus elements, elements belong to the CPU that created
    them, and a CPU evicts only its own.

    How this relates to the kernel (kernel/bpf/bpf_lru_list.c): the kernel's LRU is an
    approximation built for concurrency.  With the common LRU, free nodes move to a
    per-CPU local list in batches of target_free = clamp(max_entries / ncpus / 2, 1, 128)
    (LOCAL_FREE_TARGET = 128 before 6.16); when a CPU finds fewer free nodes than that it
    "shrinks" the global list, evicting a whole batch of unreferenced elements at once
    (or one referenced element, when all are referenced); it can evict while other CPUs
    still hold free nodes; and an update of an existing key or a failing BPF_NOEXIST
    update first takes (and may evict for) a new node.  Measured on 6.18 with 2 CPUs,
    one CPU used: filling a 64-entry LRU_HASH and inserting one more key leaves 49
    entries (16 evicted), where this exact LRU leaves 64.  With BPF_F_NO_COMMON_LRU the
    kernel also evicts when a CPU's own list is empty, in batches of 4.  Results are
    identical as long as the kernel never has to evict: on one CPU, with at least
    target_free (per-CPU lists: one) free nodes at every update.  After that they
    differ: the kernel evicts more, and not necessarily the least recently used.

    For results identical to the kernel's in every case, create the map with
    ``lru_policy="kernel"`` (lru_kernel.KernelLru: the kernel's lists step for step,
    given the CPU of each operation)."""

    def __init__(self, capacity: int, num_cpus: int, per_cpu_lists: bool):
        self.per_cpu = per_cpu_lists
        self.lists = [OrderedDict() for _ in range(num_cpus if per_cpu_lists else 1)]
        self.cap = capacity // num_cpus if per_cpu_lists else capacity
        self.owner: dict[bytes, int] = {}

    def _list(self, cpu: int) -> OrderedDict:
        return self.lists[cpu if self.per_cpu else 0]

    def use(self, key: bytes) -> None:
        self._list(self.owner[key]).move_to_end(key)

    def victim(self, cpu: int) -> bytes | None:
        """The key to evict before inserting a new one on `cpu`, or None if room."""
        lst = self._list(cpu)
        if len(lst) < self.cap:
            return None
        return next(iter(lst))

    def add(self, key: bytes, cpu: int) -> None:
        c = cpu if self.per_cpu else 0
        self.owner[key] = c
        self.lists[c][key] = None

    def remove(self, key: bytes) -> None:
        c = self.owner.pop(key)
        del self.lists[c][key]


class HashMap(BpfMap):
    """BPF_MAP_TYPE_HASH (and the base of the other hash maps).  Each element's value is
    a row of the map's Slab (slab.py; per-CPU maps: one round_up(value_size, 8) slot per
    CPU in the row); ``_elems`` maps a key to its row, and programs get the row's
    memoryview as a ValueRef."""

    lru = False
    #: The CPU bpf(2) calls run on (matters for LRU maps only); set it per map object
    #: to replay a user-space process that runs on another CPU.
    sys_cpu = 0

    def __init__(self, spec: MapSpec, num_cpus: int = 1, lru_policy: str = "exact"):
        super().__init__(spec, num_cpus)
        self.capacity = htab_max_entries(spec, num_cpus)
        self.n_buckets = roundup_pow_of_two(self.capacity)
        self._order = BucketOrder(self.n_buckets)
        self._elems: dict[bytes, Any] = {}
        self._hash: dict[bytes, int] = {}
        if lru_policy not in ("exact", "kernel"):
            raise UnsupportedError(f"LRU policy {lru_policy!r}", "use 'exact' or 'kernel'")
        per_cpu_lists = bool(spec.flags & BPF_F_NO_COMMON_LRU)
        self._lru = None
        self._klru = None
        self._nodes: dict[bytes, Any] = {}
        if self.lru and lru_policy == "kernel":
            self._klru = KernelLru(self.capacity, num_cpus, per_cpu_lists, self._evict_node)
        elif self.lru:
            self._lru = LruState(self.capacity, num_cpus, per_cpu_lists)
        self.stride = round_up(self.value_size, 8)
        self._slab = self._make_slab()

    # -- element storage: a row of the slab (overridden by per-CPU maps) --
    def _make_slab(self) -> Slab | None:
        return Slab(self.stride, min(self.capacity, 1024))

    def _new_sys(self, value: bytes) -> Any:
        row = self._slab.alloc()
        self._slab.view(row)[:self.value_size] = value
        return row

    def _new_prog(self, value: bytes, cpu: int) -> Any:
        return self._new_sys(value)

    def _read_sys(self, elem) -> bytes:
        return bytes(self._slab.view(elem)[:self.value_size])

    def _ref(self, elem, cpu: int) -> ValueRef:
        return ValueRef(self._slab.view(elem), 0, self.value_size)

    def _drop(self, elem) -> None:
        """The element is gone from the map: its row may be reused (see Slab.free)."""
        if self._slab is not None:
            self._slab.free(elem)

    def _in_place(self) -> bool:
        """Per-CPU maps and HASH_OF_MAPS overwrite an existing element (same place in
        its bucket: htab_map_update_elem_in_place); the others replace it with a new
        element at the head of the bucket."""
        return False

    def _write_sys(self, elem, value: bytes) -> None:
        raise AssertionError("only per-CPU maps update in place")

    def _write_prog(self, elem, value: bytes, cpu: int) -> None:
        raise AssertionError("only per-CPU maps update in place")

    # -- core --
    def _insert(self, key: bytes, elem: Any, cpu: int) -> None:
        h = htab_hash(key)
        self._hash[key] = h
        self._elems[key] = elem
        self._order.add_head(key, h)
        if self._lru is not None:
            self._lru.add(key, cpu)

    def _remove(self, key: bytes) -> None:
        self._order.remove(key, self._hash.pop(key))
        if self._lru is not None:
            self._lru.remove(key)
        if self._klru is not None:
            self._klru.push_free(self._nodes.pop(key))
        self._drop(self._elems.pop(key))

    def _evict_node(self, node) -> None:
        """htab_lru_map_delete_node(): the kernel LRU evicts the element of `node`."""
        key = node.key
        self._order.remove(key, self._hash.pop(key))
        del self._nodes[key]
        self._drop(self._elems.pop(key))

    def _update_klru(self, key: bytes, flags: int, cpu: int, make, write) -> int:
        # htab_lru_map_update_elem() / __htab_lru_percpu_map_update_elem(): take a node
        # first (which may evict, even this key), then check the flags; a replaced
        # element's node goes back to the free lists, the new one is marked referenced.
        if flags > BPF_EXIST:
            return -EINVAL
        in_place = self._in_place()
        node = None
        if not (in_place and flags == BPF_EXIST):
            node = self._klru.pop_free(cpu, key)
            if node is None:
                return -ENOMEM
        exists = key in self._elems
        rc = 0
        if exists and flags == BPF_NOEXIST:
            rc = -EEXIST
        elif not exists and flags == BPF_EXIST:
            rc = -ENOENT
        if rc:
            if node is not None:
                self._klru.push_free(node)
            return rc
        if exists and in_place:
            self._klru.set_ref(self._nodes[key])
            self._elems[key] = write(self._elems[key])
            if node is not None:
                self._klru.push_free(node)
            return 0
        old = None
        if exists:
            old = self._nodes[key]
            self._order.remove(key, self._hash[key])
            self._drop(self._elems[key])
        h = htab_hash(key) if not exists else self._hash[key]
        self._hash[key] = h
        self._elems[key] = make()
        self._order.add_head(key, h)
        self._nodes[key] = node
        if old is not None:
            self._klru.set_ref(node)
            self._klru.push_free(old)
        return 0

    def _update(self, key: bytes, flags: int, cpu: int, make, write) -> int:
        if self._klru is not None:
            return self._update_klru(key, flags, cpu, make, write)
        # htab_map_update_elem(): flag check, then check_flags() against the old
        # element, then allocation (E2BIG when full; LRU maps evict instead).
        if flags & ~BPF_F_LOCK > BPF_EXIST:
            return -EINVAL
        if flags & BPF_F_LOCK:
            return -EINVAL  # no bpf_spin_lock in the value
        exists = key in self._elems
        if exists and flags == BPF_NOEXIST:
            return -EEXIST
        if not exists and flags == BPF_EXIST:
            return -ENOENT
        if exists and self._in_place():
            self._elems[key] = write(self._elems[key])
            if self._lru is not None:
                self._lru.use(key)
            return 0
        if not exists:
            if self._lru is not None:
                victim = self._lru.victim(cpu)
                if victim is not None:
                    self._remove(victim)
            elif len(self._elems) >= self.capacity:
                return -E2BIG
        owner = cpu
        if exists:
            if self._lru is not None:
                owner = self._lru.owner[key]
            self._remove(key)
        self._insert(key, make(), owner)
        return 0

    def _sys_update(self, key, value, flags):
        return self._update(key, flags, self.sys_cpu, lambda: self._new_sys(value),
                            lambda e: self._write_sys(e, value))

    def _sys_lookup(self, key):
        elem = self._elems.get(key)
        if elem is None:
            return -ENOENT, None
        return 0, self._read_sys(elem)

    def _sys_delete(self, key):
        if key not in self._elems:
            return -ENOENT
        self._remove(key)
        return 0

    def _sys_lookup_and_delete(self, key):
        elem = self._elems.get(key)
        if elem is None:
            return -ENOENT, None
        value = self._read_sys(elem)
        self._remove(key)
        return 0, value

    def _sys_next_key(self, key):
        if key is not None and key not in self._elems:
            key = None  # not found: restart from the first element, as the kernel does
        nxt = self._order.next_after(key, self._hash[key] if key is not None else 0)
        return (-ENOENT, None) if nxt is None else (0, nxt)

    def __len__(self) -> int:
        return len(self._elems)

    # -- program side --
    def _use(self, key: bytes) -> None:
        """A program's lookup: a use for the exact LRU, the reference bit for the
        kernel's (bpf_lru_node_set_ref)."""
        if self._lru is not None:
            self._lru.use(key)
        elif self._klru is not None:
            self._klru.set_ref(self._nodes[key])

    def lookup_ptr(self, key, cpu=0):
        key = _b(key)
        elem = self._elems.get(key)
        if elem is None:
            return None
        self._use(key)
        return self._ref(elem, cpu)

    def update_raw(self, key, value, flags, cpu=0):
        key = _b(key)
        return self._update(key, flags, cpu, lambda: self._new_prog(value, cpu),
                            lambda e: self._write_prog(e, value, cpu))

    def delete_raw(self, key, cpu=0):
        return self._sys_delete(_b(key))

    def insert_many(self, keys: list[bytes], values, cpu: int = 0,
                    hashes: list[int] | None = None) -> bool:
        """update_raw(keys[i], values[i], BPF_ANY, cpu) for each i in order, where every
        key is new and the map has room for all of them (no eviction, no E2BIG): what
        the vector engine commits for a run of new flows, with the rows written in one
        numpy operation.  values: uint8 [n, value_size]; hashes: htab_hash of each key
        if the caller has them.  False, and nothing changed,
        when that precondition does not hold (the caller then updates one by one)."""
        n = len(keys)
        if self._slab is None or self.lru or len(self._elems) + n > self.capacity:
            return False
        if len(set(keys)) != n or not self._elems.keys().isdisjoint(keys):
            return False
        slab = self._slab
        rows = slab.alloc_many(n)
        slab.scatter(np.array(rows, np.int64), values[:, :self.value_size],
                     at=cpu * self.stride if self.percpu else 0)
        if hashes is None:
            hashes = htab_hash_many(
                np.frombuffer(b"".join(keys), np.uint8).reshape(n, self.key_size), cache=False)
        self._hash.update(zip(keys, hashes))
        self._elems.update(zip(keys, rows))
        self._order.add_heads(keys, hashes)
        return True


class PercpuHashMap(HashMap):
    """BPF_MAP_TYPE_PERCPU_HASH.  A program creating an element sets its CPU's value
    and zeroes the others (pcpu_init_value); updating an existing one changes only its
    CPU's value, in place."""

    percpu = True

    def _make_slab(self):
        return Slab(self.stride * self.num_cpus, min(self.capacity, 1024))

    def _new_sys(self, value):
        row = self._slab.alloc()
        self._slab.view(row)[:] = value          # num_cpus * stride bytes, padding too
        return row

    def _new_prog(self, value, cpu):
        row = self._slab.alloc()                  # zeroed: the other CPUs' values
        o = cpu * self.stride
        self._slab.view(row)[o:o + self.value_size] = value
        return row

    def _read_sys(self, elem):
        return bytes(self._slab.view(elem)[:self.stride * self.num_cpus])

    def _ref(self, elem, cpu):
        return ValueRef(self._slab.view(elem), cpu * self.stride, self.value_size)

    def _in_place(self):
        return True

    def _write_sys(self, elem, value):
        self._slab.view(elem)[:self.stride * self.num_cpus] = value
        return elem

    def _write_prog(self, elem, value, cpu):
        o = cpu * self.stride
        self._slab.view(elem)[o:o + self.value_size] = value
        return elem

    def lookup_percpu_ptr(self, key, cpu):
        # bpf_map_lookup_percpu_elem(): NULL for cpu >= nr_cpu_ids; on an LRU map the
        # lookup is a use (htab_lru_percpu_map_lookup_percpu_elem sets the ref bit).
        if not 0 <= cpu < self.num_cpus:
            return None
        key = _b(key)
        elem = self._elems.get(key)
        if elem is None:
            return None
        self._use(key)
        return self._ref(elem, cpu)


class LruHashMap(HashMap):
    """BPF_MAP_TYPE_LRU_HASH: a HASH that evicts (exact LRU, see LruState) instead of
    failing with E2BIG."""
    lru = True


class LruPercpuHashMap(PercpuHashMap):
    """BPF_MAP_TYPE_LRU_PERCPU_HASH."""
    lru = True


class HashOfMapsMap(HashMap):
    """BPF_MAP_TYPE_HASH_OF_MAPS: values are BpfMap objects compatible with spec.inner.
    The Python API takes the map object (bpf(2) takes its fd); programs' lookups return
    the inner map itself."""

    def _make_slab(self):
        return None               # values are map objects, not bytes

    def _sys_update(self, key, value, flags):
        raise UnsupportedError("HASH_OF_MAPS update with a file descriptor",
                               "pass the map object to update()")

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        key = self._key(key, "update")
        # bpf_fd_htab_map_update_elem(): the inner map is checked before the flags.
        if not isinstance(value, BpfMap) or not inner_compatible(self.spec.inner, value.spec):
            rc = -EINVAL
        else:
            rc = self._update(key, flags, self.sys_cpu, lambda: value, lambda old: value)
        self._raise(rc, "update")

    def _in_place(self):
        return True

    def _read_sys(self, elem):
        return elem  # the kernel returns the inner map's id; bpfkit returns the map

    def _unpack_value(self, raw):
        return raw

    def _sys_lookup_and_delete(self, key):
        return -ENOTSUPP, None

    def lookup_ptr(self, key, cpu=0):
        return self._elems.get(_b(key))

    def update_raw(self, key, value, flags, cpu=0):
        return -ENOTSUPP


class DevMapHash(BpfMap):
    """BPF_MAP_TYPE_DEVMAP_HASH: u32 key -> struct bpf_devmap_val, chained by
    key & (n_buckets - 1) (dev_map_index_hash), newest first."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1, netdevs=None):
        super().__init__(spec, num_cpus)
        self.netdevs = None if netdevs is None else frozenset(netdevs)
        self._order = BucketOrder(roundup_pow_of_two(self.max_entries))
        self._elems: dict[bytes, bytearray] = {}

    def _h(self, key: bytes) -> int:
        return int.from_bytes(key, "little")

    def _sys_update(self, key, value, flags):
        from .arrays import parse_dev_value
        # __dev_map_hash_update_elem(): flags; ifindex 0; NOEXIST on an existing key;
        # the new entry (ifindex checks); then capacity for a new key.  BPF_EXIST on a
        # missing key is not checked by the kernel: it inserts.
        if flags > BPF_EXIST:
            return -EINVAL
        if int.from_bytes(value[:4], "little") == 0:
            return -EINVAL
        old = key in self._elems
        if old and flags & BPF_NOEXIST:
            return -EEXIST
        rc, stored = parse_dev_value(value, self.netdevs, self.value_size)
        if rc:
            return rc
        if old:
            self._order.remove(key, self._h(key))
        elif len(self._elems) >= self.max_entries:
            return -E2BIG
        self._elems[key] = stored
        self._order.add_head(key, self._h(key))
        return 0

    def _sys_lookup(self, key):
        v = self._elems.get(key)
        return (-ENOENT, None) if v is None else (0, bytes(v))

    def _sys_delete(self, key):
        if key not in self._elems:
            return -ENOENT
        del self._elems[key]
        self._order.remove(key, self._h(key))
        return 0

    def _sys_next_key(self, key):
        if key is not None and key not in self._elems:
            key = None
        nxt = self._order.next_after(key, self._h(key) if key is not None else 0)
        return (-ENOENT, None) if nxt is None else (0, nxt)

    def lookup_ptr(self, key, cpu=0):
        v = self._elems.get(_b(key))
        return None if v is None else ValueRef(v, 0, self.value_size)

    def redirect_target(self, key: int) -> int | None:
        v = self._elems.get(key.to_bytes(4, "little")) if 0 <= key < 1 << 32 else None
        return None if v is None else int.from_bytes(v[:4], "little")
