"""create_map(spec): BPF_MAP_CREATE for bpfkit."""
from __future__ import annotations

from .arrays import (ArrayMap, ArrayOfMapsMap, CpuMap, DevMap, PercpuArrayMap,
                     PerfEventArrayMap, ProgArrayMap, XskMap)
from .base import BpfMap
from .consts import MapType
from .hashmaps import (DevMapHash, HashMap, HashOfMapsMap, LruHashMap, LruPercpuHashMap,
                       PercpuHashMap)
from .lpm import LpmTrieMap
from .queues import BloomFilterMap, QueueMap, StackMap
from .ringbuf import RingbufMap
from .spec import MapError, MapSpec, check_create

MAP_CLASSES = {
    MapType.HASH: HashMap, MapType.ARRAY: ArrayMap, MapType.PROG_ARRAY: ProgArrayMap,
    MapType.PERF_EVENT_ARRAY: PerfEventArrayMap, MapType.PERCPU_HASH: PercpuHashMap,
    MapType.PERCPU_ARRAY: PercpuArrayMap, MapType.LRU_HASH: LruHashMap,
    MapType.LRU_PERCPU_HASH: LruPercpuHashMap, MapType.LPM_TRIE: LpmTrieMap,
    MapType.ARRAY_OF_MAPS: ArrayOfMapsMap, MapType.HASH_OF_MAPS: HashOfMapsMap,
    MapType.DEVMAP: DevMap, MapType.CPUMAP: CpuMap, MapType.XSKMAP: XskMap,
    MapType.QUEUE: QueueMap, MapType.STACK: StackMap, MapType.DEVMAP_HASH: DevMapHash,
    MapType.RINGBUF: RingbufMap, MapType.BLOOM_FILTER: BloomFilterMap,
}


def create_map(spec: MapSpec, *, num_cpus: int = 1, netdevs=None,
               nr_cpus_config: int = 8192, memory_limit: int = 1 << 30,
               lru_policy: str = "exact") -> BpfMap:
    """Create a map as BPF_MAP_CREATE would, or raise MapError with its errno.

    num_cpus: simulated CPUs (per-CPU values, cpumap keys, per-CPU LRU lists); plays
    num_possible_cpus().  netdevs: ifindexes that exist, for devmap values (None: any
    non-zero ifindex).  nr_cpus_config: the kernel's CONFIG_NR_CPUS, the cpumap size
    limit.  memory_limit: bytes a map may allocate up front before ENOMEM.
    lru_policy: "exact" (a true LRU, the default) or "kernel" (the kernel's
    bpf_lru_list algorithm step for step: same evictions as Linux when each operation
    is given the CPU it runs on there) for LRU_HASH and LRU_PERCPU_HASH."""
    if not isinstance(num_cpus, int) or num_cpus < 1:
        raise MapError(22, f"num_cpus must be >= 1, got {num_cpus!r}", op="BPF_MAP_CREATE")
    t = check_create(spec, num_cpus=num_cpus, nr_cpus_config=nr_cpus_config,
                     memory_limit=memory_limit)
    cls = MAP_CLASSES[t]
    if t in (MapType.DEVMAP, MapType.DEVMAP_HASH):
        return cls(spec, num_cpus, netdevs=netdevs)
    if t in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH):
        return cls(spec, num_cpus, lru_policy=lru_policy)
    return cls(spec, num_cpus)
