"""eBPF maps with the bpf(2) contract of Linux 6.x.

Create with ``create_map(MapSpec(type, key_size, value_size, max_entries, flags, ...))``;
creation refuses what BPF_MAP_CREATE refuses, with its errno (MapError.errno).

Three ways in (see base.BpfMap):

* Python API -- ``lookup/get/update/delete/lookup_and_delete/next_key/keys/items``,
  ``push/pop/peek`` for queue and stack, ``as_numpy()`` for arrays, ``items_numpy()``,
  ``dump()`` (the --dump-maps JSON shape).  Errors raise MapError (a BpfError) with
  ``.errno`` = the kernel's errno.  next_key(None) is the first key, None = no more.
* ``sys_*`` -- the bpf(2) element commands, bytes in the syscall layout, 0/-errno.
* program side, for the interpreter's helpers (cpu = the simulated CPU running it):

  =============================  ==============================================
  helper                         method
  =============================  ==============================================
  map_lookup_elem (1)            ``lookup_ptr(key, cpu)`` -> ValueRef | None
                                 (map-in-map: the inner BpfMap; xskmap: the socket)
  map_update_elem (2)            ``update_raw(key, value, flags, cpu)`` -> 0/-errno
  map_delete_elem (3)            ``delete_raw(key, cpu)`` -> 0/-errno
  tail_call (12)                 ``ProgArrayMap.get_object(index)`` -> prog | None
  redirect_map (51)              ``redirect_target(key)`` (devmap, devmap_hash,
                                 cpumap, xskmap) -> target | None
  perf_event_output (25)         ``PerfEventArrayMap.output(flags, data, cpu=,
                                 packet_index=)`` -> 0/-errno
  map_push/pop/peek (87-89)      ``push_raw(value, flags)``, ``pop_raw()``,
                                 ``peek_raw(value=...)`` -> 0/-errno, (rc, bytes)
  ringbuf_output (130)           ``RingbufMap.output(data, flags, packet_index=)``
  ringbuf_reserve (131)          ``RingbufMap.reserve(size, flags, packet_index=)``
  ringbuf_submit/discard         ``RingbufMap.submit(ref)`` / ``discard(ref)``
  ringbuf_query (134)            ``RingbufMap.query(flags)``
  map_lookup_percpu_elem (195)   ``lookup_percpu_ptr(key, cpu)``
  =============================  ==============================================

  A ValueRef is (buf, offset, size): ``buf`` is the map's own storage, so the
  interpreter can expose ``buf[offset:offset+size]`` as a writable region (its
  Region(buf=ref.buf, lo=ref.offset, hi=ref.offset+ref.size)); the same element always
  gives the same (buf, offset) while it exists, so (id(buf), offset) can key a stable
  fake address.  Array values share one buf (one ValueRef per slot); a hash element's
  buf is a memoryview of its row in the map's slab (maps/slab.py); LPM elements and
  ring buffer records each have their own bytearray.

Semantics are sequential (one operation at a time).  Documented differences from the
kernel: the hash order equals the kernel's only for BPF_F_ZERO_SEED maps; LRU maps are an
exact LRU by default (hashmaps.LruState says where the kernel's approximate LRU differs)
or, with create_map(..., lru_policy="kernel"), the kernel's own algorithm; a
pointer kept past the deletion or replacement of its element points to detached memory
(the kernel may recycle a preallocated element for another key); BPF_F_LOCK is EINVAL
(no bpf_spin_lock in values: there is no BTF); fd-valued maps (prog/perf/map-in-map/xsk)
take Python objects instead of file descriptors, and bpf(2) lookups on them return the
object instead of the kernel's id; perf event rings never fill (no -ENOSPC); devmap and
cpumap entry programs are UnsupportedError; devmap ifindexes are checked only against
the ``netdevs`` given to create_map; ENOMEM is a configurable limit (memory_limit),
where the kernel's is the machine's memory; BPF_MAP_FREEZE, batch operations and
mmap of arrays are not modelled.
"""
from .arrays import (ArrayMap, ArrayOfMapsMap, CpuMap, DevMap, PercpuArrayMap, PerfEventArrayMap,
                     PerfRecord, ProgArrayMap, XskMap)
from .base import BpfMap, ValueRef
from .consts import *  # noqa: F401,F403  (map types, flags, errno values)
from .consts import MapType
from .create import MAP_CLASSES, create_map
from .hashmaps import (DevMapHash, HashMap, HashOfMapsMap, LruHashMap, LruPercpuHashMap,
                       LruState, PercpuHashMap)
from .jhash import jhash, jhash2
from .lpm import LpmTrieMap
from .lru_kernel import KernelLru
from .queues import BloomFilterMap, QueueMap, StackMap
from .ringbuf import RingbufMap, RingbufRecord
from .spec import MapError, MapSpec, check_create

__all__ = ["ArrayMap", "ArrayOfMapsMap", "BloomFilterMap", "BpfMap", "CpuMap", "DevMap",
           "DevMapHash", "HashMap", "HashOfMapsMap", "KernelLru", "LpmTrieMap", "LruHashMap",
           "LruPercpuHashMap", "LruState", "MAP_CLASSES", "MapError", "MapSpec", "MapType",
           "PercpuArrayMap", "PercpuHashMap", "PerfEventArrayMap", "PerfRecord",
           "ProgArrayMap", "QueueMap", "RingbufMap", "RingbufRecord", "StackMap", "ValueRef",
           "XskMap", "check_create", "create_map", "jhash", "jhash2"]
