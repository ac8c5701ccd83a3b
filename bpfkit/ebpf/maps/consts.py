"""Numbers of the bpf(2) map interface, as in include/uapi/linux/bpf.h (Linux 6.x),
and the kernel-internal limits that BPF_MAP_CREATE checks against (x86-64, 4 KiB pages)."""
from __future__ import annotations

import errno as _errno
from enum import IntEnum


class MapType(IntEnum):
    """enum bpf_map_type."""
    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


# Map creation flags (map_flags).
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG

# Element update flags.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# Ring buffer helper flags and bpf_ringbuf_query() selectors.
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8

# perf_event_output flags.
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32

# errno values the map code returns (ENOTSUPP is kernel-internal, not in <errno.h>).
EPERM = _errno.EPERM
ENOENT = _errno.ENOENT
E2BIG = _errno.E2BIG
EBADF = _errno.EBADF
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EFAULT = _errno.EFAULT
EEXIST = _errno.EEXIST
ENODEV = _errno.ENODEV
EINVAL = _errno.EINVAL
ENOSPC = _errno.ENOSPC
EOVERFLOW = _errno.EOVERFLOW
ENOTSOCK = _errno.ENOTSOCK
EOPNOTSUPP = _errno.EOPNOTSUPP
ENOTSUPP = 524

ERRNO_NAMES = {EPERM: "EPERM", ENOENT: "ENOENT", E2BIG: "E2BIG", EBADF: "EBADF",
               EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EFAULT: "EFAULT", EEXIST: "EEXIST",
               ENODEV: "ENODEV", EINVAL: "EINVAL", ENOSPC: "ENOSPC", EOVERFLOW: "EOVERFLOW",
               ENOTSOCK: "ENOTSOCK", EOPNOTSUPP: "EOPNOTSUPP", ENOTSUPP: "ENOTSUPP"}

# Kernel limits used by the create-time checks (x86-64, SLUB, 4 KiB pages, MAX_PAGE_ORDER 10).
KMALLOC_MAX_SIZE = 1 << 22
PCPU_MIN_UNIT_SIZE = 32 << 10          # per-CPU value bound (round_up(value_size, 8))
HTAB_ELEM_SIZE = 48                    # sizeof(struct htab_elem): hashtab.c's E2BIG bound
HTAB_BUCKET_SIZE = 16                  # sizeof(struct bucket): n_buckets * 16 must fit u32
LPM_DATA_SIZE_MIN, LPM_DATA_SIZE_MAX = 1, 256
LPM_KEY_SIZE_MIN, LPM_KEY_SIZE_MAX = 4 + LPM_DATA_SIZE_MIN, 4 + LPM_DATA_SIZE_MAX
LPM_TRIE_NODE_SIZE = 24                # sizeof(struct lpm_trie_node), measured: max value 4194024
LPM_VAL_SIZE_MAX = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - LPM_TRIE_NODE_SIZE
INT_MAX = (1 << 31) - 1
U32_MAX = (1 << 32) - 1
PAGE_SIZE = 4096
CPUMAP_MAX_QSIZE = 16384               # cpu_map_entry alloc refuses larger with EOVERFLOW
RINGBUF_MAX_RECORD_SZ = U32_MAX // 4


def round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def roundup_pow_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
