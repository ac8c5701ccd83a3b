"""Array-indexed maps: ARRAY, PERCPU_ARRAY, and the arrays whose slots hold objects
(PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS, DEVMAP, CPUMAP, XSKMAP).

Keys are u32 indices (little-endian).  GET_NEXT_KEY walks indices in order; a missing or
out-of-range key restarts at 0 (array_map_get_next_key(), kernel/bpf/arraymap.c).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ...errors import UnsupportedError
from .base import BpfMap, ValueRef
from .consts import (BPF_ANY, BPF_EXIST, BPF_F_CURRENT_CPU, BPF_F_INDEX_MASK, BPF_F_LOCK,
                     BPF_NOEXIST, CPUMAP_MAX_QSIZE, E2BIG, EEXIST, EINVAL, ENODEV, ENOENT,
                     EOPNOTSUPP, EOVERFLOW, ENOTSUPP, U32_MAX, round_up)
from .spec import MapError, MapSpec, inner_compatible


def _index(key: bytes | None) -> int:
    return U32_MAX if key is None else int.from_bytes(key[:4], "little")


class _Indexed(BpfMap):
    """next_key and the flag rules shared by every array-shaped map."""

    def _sys_next_key(self, key):
        i = _index(key)
        if i >= self.max_entries:
            return 0, b"\0\0\0\0"
        if i == self.max_entries - 1:
            return -ENOENT, None
        return 0, (i + 1).to_bytes(4, "little")


class ArrayMap(_Indexed):
    """BPF_MAP_TYPE_ARRAY: max_entries zero-initialised values, never deleted.

    Storage is one bytearray with a stride of round_up(value_size, 8), as the kernel's
    (so ``as_numpy()`` is a zero-copy, writable view)."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self.stride = round_up(self.value_size, 8)
        self._data = bytearray(self.max_entries * self.stride)

    def _ref(self, i: int) -> ValueRef:
        return ValueRef(self._data, i * self.stride, self.value_size)

    def _sys_lookup(self, key):
        i = _index(key)
        if i >= self.max_entries:
            return -ENOENT, None
        return 0, self._ref(i).read()

    def _update(self, key, flags, write) -> int:
        # array_map_update_elem(): flag check, then range (E2BIG), then NOEXIST (every
        # slot always exists), then BPF_F_LOCK (needs a bpf_spin_lock in the value).
        if flags & ~BPF_F_LOCK > BPF_EXIST:
            return -EINVAL
        i = _index(key)
        if i >= self.max_entries:
            return -E2BIG
        if flags & ~BPF_F_LOCK == BPF_NOEXIST:
            return -EEXIST
        if flags & BPF_F_LOCK:
            return -EINVAL
        write(i)
        return 0

    def _sys_update(self, key, value, flags):
        return self._update(key, flags, lambda i: self._ref(i).write(value))

    def _sys_delete(self, key):
        return -EINVAL  # array elements cannot be deleted

    def lookup_ptr(self, key, cpu=0):
        i = _index(key)
        return self._ref(i) if i < self.max_entries else None

    def update_raw(self, key, value, flags, cpu=0):
        return self._update(key, flags, lambda i: self._ref(i).write(value))

    def delete_raw(self, key, cpu=0):
        return -EINVAL

    def as_numpy(self, dtype=None):
        """A writable numpy view of all values, shape (max_entries,).  `dtype` must have
        itemsize value_size (default: value_size raw bytes as a void dtype)."""
        import numpy as np
        dt = np.dtype(dtype) if dtype is not None else np.dtype((np.void, self.value_size))
        if dt.itemsize != self.value_size:
            raise MapError(EINVAL, f"dtype itemsize {dt.itemsize} != value_size "
                           f"{self.value_size}")
        return np.ndarray((self.max_entries,), dtype=dt, buffer=self._data,
                          strides=(self.stride,))


class PercpuArrayMap(_Indexed):
    """BPF_MAP_TYPE_PERCPU_ARRAY: one ArrayMap-like storage per CPU.  Programs see and
    update their own CPU's value; bpf(2) moves all CPUs' values at once, each padded
    to round_up(value_size, 8) bytes (the padding is stored, as copy_map_value_long()
    does in bpf_percpu_array_update/copy)."""

    percpu = True

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self.stride = round_up(self.value_size, 8)
        self._data = [bytearray(self.max_entries * self.stride) for _ in range(num_cpus)]

    def _sys_lookup(self, key):
        i = _index(key)
        if i >= self.max_entries:
            return -ENOENT, None
        s = self.stride
        return 0, b"".join(bytes(d[i * s:(i + 1) * s]) for d in self._data)

    def _sys_update(self, key, value, flags):
        s = self.stride

        def write(i):
            for c, d in enumerate(self._data):
                d[i * s:(i + 1) * s] = value[c * s:(c + 1) * s]
        return ArrayMap._update(self, key, flags, write)

    def _sys_delete(self, key):
        return -EINVAL

    def lookup_ptr(self, key, cpu=0):
        return self.lookup_percpu_ptr(key, cpu)

    def lookup_percpu_ptr(self, key, cpu):
        i = _index(key)
        if i >= self.max_entries or not 0 <= cpu < self.num_cpus:
            return None
        return ValueRef(self._data[cpu], i * self.stride, self.value_size)

    def update_raw(self, key, value, flags, cpu=0):
        # A program updates only the CPU it runs on (array_map_update_elem).
        return ArrayMap._update(self, key, flags, lambda i: ValueRef(
            self._data[cpu], i * self.stride, self.value_size).write(value))

    def delete_raw(self, key, cpu=0):
        return -EINVAL

    def as_numpy(self, dtype=None):
        """Writable numpy view, shape (max_entries, num_cpus)."""
        import numpy as np
        dt = np.dtype(dtype) if dtype is not None else np.dtype((np.void, self.value_size))
        if dt.itemsize != self.value_size:
            raise MapError(EINVAL, f"dtype itemsize {dt.itemsize} != value_size "
                           f"{self.value_size}")
        return np.stack([np.ndarray((self.max_entries,), dtype=dt, buffer=d,
                                    strides=(self.stride,)) for d in self._data], axis=1)


class _ObjectArray(_Indexed):
    """Arrays whose slots hold objects (programs, maps, perf readers) rather than bytes.
    bpf(2) passes file descriptors for those; bpfkit has none, so the Python API takes
    the objects themselves (`update(index, obj)`), and the bytes-level sys_update refuses
    with UnsupportedError.  Rules from bpf_fd_array_map_update_elem() and
    fd_array_map_delete_elem(): only BPF_ANY; index >= max_entries is E2BIG for both."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self._slots: list[Any] = [None] * self.max_entries

    def _sys_update(self, key, value, flags):
        raise UnsupportedError(f"{self.type.name} update with a file descriptor",
                               "pass the object to update()")

    def _check_obj(self, obj) -> int:
        return 0

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        key = self._key(key, "update")
        if flags != BPF_ANY:
            rc = -EINVAL
        elif _index(key) >= self.max_entries:
            rc = -E2BIG
        else:
            rc = self._check_obj(value)
            if rc == 0:
                self._slots[_index(key)] = value
        self._raise(rc, "update")

    def _sys_delete(self, key):
        i = _index(key)
        if i >= self.max_entries:
            return -E2BIG
        if self._slots[i] is None:
            return -ENOENT
        self._slots[i] = None
        return 0

    def _sys_lookup(self, key):
        i = _index(key)
        if i >= self.max_entries or self._slots[i] is None:
            return -ENOENT, None
        # The kernel returns the object's id; bpfkit has no ids, it returns the object.
        return 0, self._slots[i]

    def lookup(self, key=None):
        return super().lookup(key)

    def _unpack_value(self, raw):
        return raw

    def items(self):
        """(key, object) for the occupied slots, in index order."""
        for i, obj in enumerate(self._slots):
            if obj is not None:
                yield i.to_bytes(4, "little"), obj

    def get_object(self, index: int):
        """The object in slot `index` (None if empty or out of range)."""
        return self._slots[index] if 0 <= index < self.max_entries else None


class ProgArrayMap(_ObjectArray):
    """BPF_MAP_TYPE_PROG_ARRAY: tail-call targets.  Programs cannot look it up; the
    interpreter's tail_call uses get_object(index) (None = the call falls through)."""


class ArrayOfMapsMap(_ObjectArray):
    """BPF_MAP_TYPE_ARRAY_OF_MAPS: slots hold BpfMap objects compatible with spec.inner
    (bpf_map_meta_equal); a program's lookup returns the inner map itself."""

    def _check_obj(self, obj) -> int:
        if not isinstance(obj, BpfMap) or not inner_compatible(self.spec.inner, obj.spec):
            return -EINVAL
        return 0

    def lookup_ptr(self, key, cpu=0):
        i = _index(key)
        return self._slots[i] if i < self.max_entries else None


@dataclass(frozen=True, slots=True)
class PerfRecord:
    """One bpf_perf_event_output() record: the packet that produced it, the perf event
    index (the CPU ring it went to) and the bytes."""
    packet_index: int
    index: int
    data: bytes


class PerfEventArrayMap(_ObjectArray):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY.  A slot is "open" when a reader (a perf event of
    type BPF_OUTPUT bound to a CPU) is attached: open(index, cpu).  output() follows
    __bpf_perf_event_output(): E2BIG out of range, ENOENT no reader, EOPNOTSUPP when the
    reader's CPU is not the CPU the program runs on.  Records are kept in order, without
    limit: the kernel's per-event ring can fill up (or be unmapped), and then output
    fails with -ENOSPC, which bpfkit never returns."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self.records: list[PerfRecord] = []

    def _sys_lookup(self, key):
        return -ENOTSUPP, None

    def open(self, index: int, cpu: int | None = None) -> None:
        """Attach a reader at `index`, bound to `cpu` (default: cpu == index)."""
        self.update(index, index if cpu is None else cpu)

    def open_all(self) -> None:
        """A reader per CPU, index i on CPU i (what libbpf's perf_buffer does)."""
        for i in range(min(self.num_cpus, self.max_entries)):
            self.open(i)

    def _check_obj(self, obj) -> int:
        return 0 if isinstance(obj, int) and 0 <= obj < self.num_cpus else -EINVAL

    def dump(self) -> list[dict]:
        """The records: [{"packet": index, "index": perf index, "data": hex}]."""
        return [{"packet": r.packet_index, "index": r.index, "data": r.data.hex()}
                for r in self.records]

    def output(self, flags: int, data: bytes, *, cpu: int = 0, packet_index: int = -1) -> int:
        """The map part of bpf_perf_event_output(): flags' low 32 bits pick the index
        (BPF_F_CURRENT_CPU = the running CPU).  The helper checks the other flag bits."""
        index = flags & BPF_F_INDEX_MASK
        if index == BPF_F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -E2BIG
        reader_cpu = self._slots[index]
        if reader_cpu is None:
            return -ENOENT
        if reader_cpu != cpu:
            return -EOPNOTSUPP
        self.records.append(PerfRecord(packet_index, index, bytes(data)))
        return 0


# ---- redirect targets ---------------------------------------------------------------

class _ValueSlots(_Indexed):
    """Arrays of small fixed values written only from user space (devmap, cpumap)."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self._slots: list[bytearray | None] = [None] * self.max_entries

    def _sys_lookup(self, key):
        i = _index(key)
        if i >= self.max_entries or self._slots[i] is None:
            return -ENOENT, None
        return 0, bytes(self._slots[i])

    def _sys_delete(self, key):
        # dev_map_delete_elem()/cpu_map_delete_elem(): empty slots delete fine.
        i = _index(key)
        if i >= self.max_entries:
            return -EINVAL
        self._slots[i] = None
        return 0

    def lookup_ptr(self, key, cpu=0):
        i = _index(key)
        if i >= self.max_entries or self._slots[i] is None:
            return None
        return ValueRef(self._slots[i], 0, self.value_size)

    def redirect_target(self, key: int) -> int | None:
        """For bpf_redirect_map(): the slot's first u32 (ifindex / cpu qsize) or None."""
        if not 0 <= key < self.max_entries or self._slots[key] is None:
            return None
        return int.from_bytes(self._slots[key][:4], "little")


def parse_dev_value(value: bytes, netdevs, vsize: int) -> tuple[int, bytes | None]:
    """struct bpf_devmap_val -> (rc, stored value).  __dev_map_alloc_node():
    ifindex 0 stores nothing (and then a program fd is EINVAL); an unknown ifindex is
    EINVAL; attaching a program (fd > 0) is not modelled."""
    ifindex = int.from_bytes(value[:4], "little")
    fd = struct.unpack("<i", value[4:8])[0] if vsize == 8 else 0
    if ifindex == 0:
        return (-EINVAL if fd > 0 else 0), None
    if netdevs is not None and ifindex not in netdevs:
        return -EINVAL, None
    if fd > 0:
        raise UnsupportedError("devmap entry program (bpf_devmap_val.bpf_prog.fd)")
    return 0, bytearray(ifindex.to_bytes(4, "little") + bytes(vsize - 4))


class DevMap(_ValueSlots):
    """BPF_MAP_TYPE_DEVMAP: index -> struct bpf_devmap_val {ifindex, prog id}.
    `netdevs` is the set of ifindexes that exist (None: any non-zero one)."""

    def __init__(self, spec: MapSpec, num_cpus: int = 1, netdevs=None):
        super().__init__(spec, num_cpus)
        self.netdevs = None if netdevs is None else frozenset(netdevs)

    def _sys_update(self, key, value, flags):
        # dev_map_update_elem()
        if flags > BPF_EXIST:
            return -EINVAL
        i = _index(key)
        if i >= self.max_entries:
            return -E2BIG
        if flags == BPF_NOEXIST:
            return -EEXIST
        rc, stored = parse_dev_value(value, self.netdevs, self.value_size)
        if rc == 0:
            self._slots[i] = stored
        return rc


class CpuMap(_ValueSlots):
    """BPF_MAP_TYPE_CPUMAP: cpu -> struct bpf_cpumap_val {qsize, prog id}."""

    def _sys_update(self, key, value, flags):
        # cpu_map_update_elem(): flags, range, NOEXIST (always EEXIST), the qsize
        # sanity limit (EOVERFLOW), a possible CPU (ENODEV), then qsize 0 = delete.
        if flags > BPF_EXIST:
            return -EINVAL
        i = _index(key)
        if i >= self.max_entries:
            return -E2BIG
        if flags == BPF_NOEXIST:
            return -EEXIST
        qsize = int.from_bytes(value[:4], "little")
        if qsize > CPUMAP_MAX_QSIZE:
            return -EOVERFLOW
        if i >= self.num_cpus:
            return -ENODEV
        if qsize == 0:
            self._slots[i] = None
            return 0
        if self.value_size == 8 and struct.unpack("<i", value[4:8])[0] > 0:
            raise UnsupportedError("cpumap entry program (bpf_cpumap_val.bpf_prog.fd)")
        self._slots[i] = bytearray(qsize.to_bytes(4, "little") + bytes(self.value_size - 4))
        return 0


class XskMap(_ObjectArray):
    """BPF_MAP_TYPE_XSKMAP: index -> an AF_XDP socket.  bpfkit has no sockets: any
    non-None object stands for one.  xsk_map_update_elem(): flags > EXIST EINVAL,
    range E2BIG, NOEXIST on a taken slot EEXIST, EXIST on an empty one ENOENT;
    delete of an in-range slot always succeeds; bpf(2) lookup is EOPNOTSUPP."""

    def _sys_lookup(self, key):
        return -EOPNOTSUPP, None

    def _sys_delete(self, key):
        i = _index(key)
        if i >= self.max_entries:
            return -EINVAL
        self._slots[i] = None
        return 0

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        key = self._key(key, "update")
        i = _index(key)
        if flags > BPF_EXIST:
            rc = -EINVAL
        elif i >= self.max_entries:
            rc = -E2BIG
        elif value is None:
            rc = -EINVAL
        elif self._slots[i] is not None and flags == BPF_NOEXIST:
            rc = -EEXIST
        elif self._slots[i] is None and flags == BPF_EXIST:
            rc = -ENOENT
        else:
            self._slots[i] = value
            rc = 0
        self._raise(rc, "update")

    def lookup_ptr(self, key, cpu=0):
        i = _index(key)
        return self._slots[i] if i < self.max_entries else None

    def redirect_target(self, key: int):
        return self.get_object(key)
