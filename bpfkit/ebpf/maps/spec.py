"""MapSpec (what BPF_MAP_CREATE is given), MapError, and the create-time checks.

check_create() refuses exactly what the kernel's BPF_MAP_CREATE refuses, with the same
errno (kernel/bpf/syscall.c map_create() and each map type's map_alloc_check/map_alloc).
The order of the checks follows the kernel's, so when several things are wrong the
errno is the one the kernel reports first.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import BpfError, UnsupportedError
from .consts import (BPF_F_ACCESS_MASK, BPF_F_INNER_MAP, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU,
                     BPF_F_NO_PREALLOC, BPF_F_NUMA_NODE, BPF_F_PRESERVE_ELEMS, BPF_F_RDONLY,
                     BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BPF_F_ZERO_SEED, E2BIG,
                     EINVAL, ENOMEM, ENOTSUPP, ERRNO_NAMES, HTAB_BUCKET_SIZE, HTAB_ELEM_SIZE,
                     INT_MAX, KMALLOC_MAX_SIZE, LPM_KEY_SIZE_MAX, LPM_KEY_SIZE_MIN,
                     LPM_VAL_SIZE_MAX, PAGE_SIZE, PCPU_MIN_UNIT_SIZE, U32_MAX, MapType, round_up,
                     roundup_pow_of_two)


class MapError(BpfError):
    """A map operation or map creation refused, with the kernel's errno (positive)."""

    def __init__(self, errno: int, message: str, *, op: str | None = None):
        self.errno = errno
        self.op = op
        name = ERRNO_NAMES.get(errno, str(errno))
        super().__init__(f"{op + ': ' if op else ''}{message} ({name})")


@dataclass(frozen=True, slots=True)
class MapSpec:
    """The attributes of BPF_MAP_CREATE.  `inner` is the inner map's spec for
    ARRAY_OF_MAPS / HASH_OF_MAPS (the kernel's inner_map_fd); `map_extra` is only
    meaningful for BLOOM_FILTER (number of hash functions in the low 4 bits)."""
    type: MapType | int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    name: str = ""
    inner: "MapSpec | None" = None
    map_extra: int = 0

    @property
    def map_type(self) -> MapType:
        return MapType(self.type)


# Known map types bpfkit does not model (sockets, cgroups, tasks, struct_ops ...).
_UNSUPPORTED = {MapType.STACK_TRACE, MapType.CGROUP_ARRAY, MapType.SOCKMAP, MapType.SOCKHASH,
                MapType.CGROUP_STORAGE, MapType.REUSEPORT_SOCKARRAY,
                MapType.PERCPU_CGROUP_STORAGE, MapType.SK_STORAGE, MapType.STRUCT_OPS,
                MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.USER_RINGBUF,
                MapType.CGRP_STORAGE, MapType.ARENA}

_ARRAY_FLAGS = (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS
                | BPF_F_INNER_MAP)
_HTAB_FLAGS = (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
               | BPF_F_ZERO_SEED)
_LPM_FLAGS = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
_QUEUE_FLAGS = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
_BLOOM_FLAGS = BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_ACCESS_MASK
_DEV_FLAGS = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY

_ARRAYS = {MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
           MapType.ARRAY_OF_MAPS}
_FD_ARRAYS = {MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.ARRAY_OF_MAPS}
_HASHES = {MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
           MapType.HASH_OF_MAPS}
MAP_IN_MAP = {MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS}


def _fail(errno: int, why: str):
    raise MapError(errno, why, op="BPF_MAP_CREATE")


def _access_ok(flags: int) -> bool:
    # bpf_map_flags_access_ok(): a program may not be both read-only and write-only.
    both = BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
    return flags & both != both


def _check_array(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    if t in _FD_ARRAYS:
        # fd_array_map_alloc_check(): values are u32 fds; programs never write them.
        if s.value_size != 4:
            _fail(EINVAL, f"{t.name} needs value_size 4, got {s.value_size}")
        if s.flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
            _fail(EINVAL, f"{t.name} refuses BPF_F_RDONLY_PROG/BPF_F_WRONLY_PROG")
    percpu = t == MapType.PERCPU_ARRAY
    # array_map_alloc_check()
    if s.max_entries == 0 or s.key_size != 4 or s.value_size == 0:
        _fail(EINVAL, f"{t.name} needs key_size 4, value_size > 0, max_entries > 0")
    if s.flags & ~_ARRAY_FLAGS or not _access_ok(s.flags):
        _fail(EINVAL, f"map_flags {s.flags:#x} not allowed for {t.name}")
    if percpu and s.flags & BPF_F_NUMA_NODE:
        _fail(EINVAL, "per-CPU maps cannot be bound to a NUMA node")
    if t != MapType.ARRAY and s.flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
        _fail(EINVAL, "BPF_F_MMAPABLE/BPF_F_INNER_MAP only for ARRAY")
    if t != MapType.PERF_EVENT_ARRAY and s.flags & BPF_F_PRESERVE_ELEMS:
        _fail(EINVAL, "BPF_F_PRESERVE_ELEMS only for PERF_EVENT_ARRAY")
    if s.value_size > INT_MAX:
        _fail(E2BIG, "value_size > INT_MAX")
    if percpu and round_up(s.value_size, 8) > PCPU_MIN_UNIT_SIZE:
        _fail(E2BIG, f"per-CPU value_size {s.value_size} > {PCPU_MIN_UNIT_SIZE}")
    if t in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        mem.need(s.max_entries * round_up(s.value_size, 8) * (mem.num_cpus if percpu else 1))


def _check_htab(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    if t == MapType.HASH_OF_MAPS and s.value_size != 4:
        # fd_htab_map_alloc_check()
        _fail(EINVAL, f"HASH_OF_MAPS needs value_size 4, got {s.value_size}")
    lru = t in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
    percpu = t in (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)
    percpu_lru = bool(s.flags & BPF_F_NO_COMMON_LRU)
    prealloc = not s.flags & BPF_F_NO_PREALLOC
    # htab_map_alloc_check()
    if s.flags & ~_HTAB_FLAGS or not _access_ok(s.flags):
        _fail(EINVAL, f"map_flags {s.flags:#x} not allowed for {t.name}")
    if not lru and percpu_lru:
        _fail(EINVAL, "BPF_F_NO_COMMON_LRU only for LRU maps")
    if lru and not prealloc:
        _fail(ENOTSUPP, "LRU maps are always preallocated (BPF_F_NO_PREALLOC refused)")
    if s.flags & BPF_F_NUMA_NODE and (percpu or percpu_lru):
        _fail(EINVAL, "per-CPU maps cannot be bound to a NUMA node")
    if s.max_entries == 0 or s.key_size == 0 or s.value_size == 0:
        _fail(EINVAL, f"{t.name} needs key_size, value_size and max_entries > 0")
    if s.key_size + s.value_size >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
        _fail(E2BIG, "key_size + value_size too large for one element")
    if percpu and round_up(s.value_size, 8) > PCPU_MIN_UNIT_SIZE:
        _fail(E2BIG, f"per-CPU value_size {s.value_size} > {PCPU_MIN_UNIT_SIZE}")
    # htab_map_alloc()
    n = htab_max_entries(s, mem.num_cpus)
    if n > 1 << 31:
        _fail(E2BIG, "max_entries > 2^31")
    if roundup_pow_of_two(n) > U32_MAX // HTAB_BUCKET_SIZE:
        _fail(E2BIG, "too many hash buckets (max_entries > 2^27)")
    mem.need(roundup_pow_of_two(n) * HTAB_BUCKET_SIZE)
    if prealloc:
        elem = HTAB_ELEM_SIZE + round_up(s.key_size, 8)
        elem += 8 if percpu else round_up(s.value_size, 8)
        mem.need(n * elem + (n * round_up(s.value_size, 8) * mem.num_cpus if percpu else 0))


def htab_max_entries(s: MapSpec, num_cpus: int) -> int:
    """htab_map_alloc(): with BPF_F_NO_COMMON_LRU every CPU gets its own LRU list, so
    max_entries is rounded up to a multiple of the CPU count (down if that overflows)."""
    n = s.max_entries
    if s.flags & BPF_F_NO_COMMON_LRU:
        up = round_up(n, num_cpus)
        n = up if up <= U32_MAX else n // num_cpus * num_cpus
    return n


def _check_lpm(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # trie_alloc(): the trie is never preallocated, so BPF_F_NO_PREALLOC is mandatory.
    if (s.max_entries == 0 or not s.flags & BPF_F_NO_PREALLOC or s.flags & ~_LPM_FLAGS
            or not _access_ok(s.flags)
            or not LPM_KEY_SIZE_MIN <= s.key_size <= LPM_KEY_SIZE_MAX
            or not 1 <= s.value_size <= LPM_VAL_SIZE_MAX):
        _fail(EINVAL, "LPM_TRIE needs BPF_F_NO_PREALLOC, key_size 5..260 (u32 prefixlen + "
              f"1..256 data bytes), value_size 1..{LPM_VAL_SIZE_MAX}, max_entries > 0")


def _check_queue(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # queue_stack_map_alloc_check()
    if (s.max_entries == 0 or s.key_size != 0 or s.value_size == 0
            or s.flags & ~_QUEUE_FLAGS or not _access_ok(s.flags)):
        _fail(EINVAL, f"{t.name} needs key_size 0, value_size > 0, max_entries > 0")
    if s.value_size > KMALLOC_MAX_SIZE:
        _fail(E2BIG, f"value_size > {KMALLOC_MAX_SIZE}")
    mem.need((s.max_entries + 1) * s.value_size)


def _check_bloom(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # bloom_map_alloc_check() then bloom_map_alloc()
    if s.value_size > KMALLOC_MAX_SIZE:
        _fail(E2BIG, f"value_size > {KMALLOC_MAX_SIZE}")
    if (s.key_size != 0 or s.value_size == 0 or s.max_entries == 0
            or s.flags & ~_BLOOM_FLAGS or not _access_ok(s.flags) or s.map_extra & ~0xF):
        _fail(EINVAL, "BLOOM_FILTER needs key_size 0, value_size > 0, max_entries > 0, "
              "map_extra (hash count) <= 15")
    nbits = s.max_entries * (s.map_extra & 0xF or 5) // 5 * 7
    mem.need(min(roundup_pow_of_two(max(nbits, 64)), 1 << 32) // 8)


def _check_ringbuf(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # ringbuf_map_alloc(): the data area is a power-of-2 number of pages.
    if s.flags & ~BPF_F_NUMA_NODE:
        _fail(EINVAL, f"map_flags {s.flags:#x} not allowed for RINGBUF")
    n = s.max_entries
    if s.key_size or s.value_size or n == 0 or n & (n - 1) or n % PAGE_SIZE:
        _fail(EINVAL, "RINGBUF needs key_size 0, value_size 0, max_entries a power of 2 "
              f"multiple of {PAGE_SIZE}")
    mem.need(n)


def _check_devmap(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # dev_map_init_map(): value is struct bpf_devmap_val: ifindex [+ program fd].
    if (s.max_entries == 0 or s.key_size != 4 or s.value_size not in (4, 8)
            or s.flags & ~_DEV_FLAGS):
        _fail(EINVAL, f"{t.name} needs key_size 4, value_size 4 or 8, max_entries > 0")
    if t == MapType.DEVMAP_HASH and s.max_entries > 1 << 31:
        _fail(EINVAL, "DEVMAP_HASH max_entries > 2^31")
    if t == MapType.DEVMAP:
        mem.need(s.max_entries * 8)


def _check_cpumap(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # cpu_map_alloc(): value is struct bpf_cpumap_val: qsize [+ program fd].
    if (s.max_entries == 0 or s.key_size != 4 or s.value_size not in (4, 8)
            or s.flags & ~BPF_F_NUMA_NODE):
        _fail(EINVAL, "CPUMAP needs key_size 4, value_size 4 or 8, max_entries > 0")
    if s.max_entries > mem.nr_cpus_config:
        _fail(E2BIG, f"CPUMAP max_entries > NR_CPUS ({mem.nr_cpus_config})")


def _check_xskmap(s: MapSpec, t: MapType, mem: "_Mem") -> None:
    # xsk_map_alloc()
    if (s.max_entries == 0 or s.key_size != 4 or s.value_size != 4
            or s.flags & ~(BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY)):
        _fail(EINVAL, "XSKMAP needs key_size 4, value_size 4, max_entries > 0")
    mem.need(s.max_entries * 8)


_CHECKS = {MapType.LPM_TRIE: _check_lpm, MapType.QUEUE: _check_queue,
           MapType.STACK: _check_queue, MapType.BLOOM_FILTER: _check_bloom,
           MapType.RINGBUF: _check_ringbuf, MapType.DEVMAP: _check_devmap,
           MapType.DEVMAP_HASH: _check_devmap, MapType.CPUMAP: _check_cpumap,
           MapType.XSKMAP: _check_xskmap}
_CHECKS.update({t: _check_array for t in _ARRAYS})
_CHECKS.update({t: _check_htab for t in _HASHES})


@dataclass(slots=True)
class _Mem:
    """Up-front allocation the kernel would make; above `limit` bytes -> ENOMEM.
    (The kernel's limit is whatever memory the machine has; ours is a parameter.)"""
    num_cpus: int
    nr_cpus_config: int
    limit: int

    def need(self, nbytes: int) -> None:
        if nbytes > self.limit:
            _fail(ENOMEM, f"would allocate {nbytes} bytes up front (limit {self.limit})")


def check_create(spec: MapSpec, *, num_cpus: int = 1, nr_cpus_config: int = 8192,
                 memory_limit: int = 1 << 30) -> MapType:
    """Raise MapError with BPF_MAP_CREATE's errno if the kernel would refuse `spec`;
    UnsupportedError for map types bpfkit recognises but does not model.  Returns the
    MapType.  `num_cpus` plays num_possible_cpus(), `nr_cpus_config` CONFIG_NR_CPUS."""
    for field in ("key_size", "value_size", "max_entries", "flags"):
        v = getattr(spec, field)
        if not isinstance(v, int) or not 0 <= v <= U32_MAX:
            _fail(EINVAL, f"{field} must be a u32, got {v!r}")
    if not isinstance(spec.map_extra, int) or not 0 <= spec.map_extra < 1 << 64:
        _fail(EINVAL, f"map_extra must be a u64, got {spec.map_extra!r}")
    try:
        t = MapType(spec.type)
    except ValueError:
        _fail(EINVAL, f"unknown map type {spec.type!r}")
    # map_create(): map_extra is for bloom filters only; RDONLY+WRONLY is contradictory.
    if t != MapType.BLOOM_FILTER and spec.map_extra:
        _fail(EINVAL, "map_extra is only for BLOOM_FILTER")
    if spec.flags & BPF_F_RDONLY and spec.flags & BPF_F_WRONLY:
        _fail(EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY together")
    if t == MapType.UNSPEC:
        _fail(EINVAL, "map type UNSPEC")
    if t in _UNSUPPORTED:
        raise UnsupportedError(f"map type {t.name}", "bpfkit does not model it")
    _CHECKS[t](spec, t, _Mem(num_cpus, nr_cpus_config, memory_limit))
    if t in MAP_IN_MAP:
        _check_inner(spec.inner)
    return t


def _check_inner(inner: MapSpec | None) -> None:
    # bpf_map_meta_alloc(): inner_map_fd must be a map, not itself a map-in-map, and
    # of a type that can be compared (prog arrays cannot: -ENOTSUPP).
    if inner is None:
        _fail(EINVAL, "map-in-map needs an inner map spec (inner_map_fd)")
    it = MapType(inner.type)
    if it in MAP_IN_MAP:
        _fail(EINVAL, "inner map cannot itself be a map-in-map")
    if it == MapType.PROG_ARRAY:
        _fail(ENOTSUPP, "PROG_ARRAY cannot be an inner map")


def inner_compatible(meta: MapSpec, inner: MapSpec) -> bool:
    """bpf_map_meta_equal() (+ array_map_meta_equal): may `inner` be stored in an outer
    map created with inner spec `meta`?  Arrays must also agree on max_entries unless
    the template has BPF_F_INNER_MAP."""
    # BPF_F_RDONLY/WRONLY belong to the fd, not the map (bpf_map_flags_retain_permanent).
    fd_only = BPF_F_RDONLY | BPF_F_WRONLY
    same = (MapType(meta.type) == MapType(inner.type) and meta.key_size == inner.key_size
            and meta.value_size == inner.value_size
            and meta.flags & ~fd_only == inner.flags & ~fd_only)
    if same and MapType(meta.type) in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        return bool(meta.flags & BPF_F_INNER_MAP) or meta.max_entries == inner.max_entries
    return same
