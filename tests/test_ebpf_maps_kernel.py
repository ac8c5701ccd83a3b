"""Kernel differential tests for bpfkit.ebpf.maps: the same map is created in the kernel
(BPF_MAP_CREATE through tests/oracles.py) and in bpfkit, the same seeded random sequence
of operations runs on both, and every return code and every returned byte must be equal.

* bpf(2) element commands on every map type (sys_* methods);
* BPF_MAP_CREATE accept/refuse with the errno, on random and near-valid attributes;
* program-side behaviour through hand-encoded XDP programs run with BPF_PROG_TEST_RUN:
  helper calls on the maps (lookup_ptr / update_raw / ...), writes through value
  pointers, per-CPU effects, map-in-map lookups, ring buffer records read back through
  the kernel's mmap layout, perf_event_output return codes;
* LRU maps: the exact policy where the kernel cannot evict, the kernel policy always.
The counts of compared operations are asserted to be non-trivial."""
from __future__ import annotations

import contextlib
import os
import random
import socket

import pytest

from conftest import skip_or_fail

import oracles
from bpfkit.errors import UnsupportedError
from bpfkit.ebpf.maps import (BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_F_ZERO_SEED,
                              ENOMEM, MapError, MapSpec, MapType, check_create, create_map)

pytestmark = pytest.mark.kernel

T = MapType


@pytest.fixture(scope="module")
def env():
    if oracles.missing("kernel"):
        skip_or_fail(f"oracle 'kernel' missing: {oracles.missing('kernel')}")
    ncpu = oracles.possible_cpus()
    # CONFIG_NR_CPUS, read off the kernel: the largest CPUMAP it accepts.
    lo, hi = 1, 1 << 16
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fd = oracles.kmap_create(T.CPUMAP, 4, 4, mid)
        if fd >= 0:
            os.close(fd)
            lo = mid
        else:
            hi = mid - 1
    netdevs = frozenset(i for i, _ in socket.if_nameindex())
    return {"ncpu": ncpu, "nr_cpus": lo, "netdevs": netdevs}


def make(env, t, ks, vs, me, flags=0, extra=0, inner=None):
    """(kernel map, bpfkit map) created from the same attributes."""
    spec = MapSpec(t, ks, vs, me, flags, map_extra=extra,
                   inner=None if inner is None else inner[1].spec)
    ours = create_map(spec, num_cpus=env["ncpu"], netdevs=env["netdevs"],
                      nr_cpus_config=env["nr_cpus"])
    k = oracles.KernelMap.create(t, ks, vs, me, flags, 0 if inner is None else inner[0].fd,
                                 extra, percpu=ours.percpu)
    return k, ours


@contextlib.contextmanager
def pinned_cpu0():
    """LRU maps are deterministic only on one CPU (see LruState)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


class Cmp:
    """Runs each command on both maps and compares the results."""

    def __init__(self, k, ours):
        self.k, self.o, self.n = k, ours, 0

    def same(self, what, kr, orr):
        self.n += 1
        assert kr == orr, f"{what}: kernel {kr!r} bpfkit {orr!r}"

    def lookup(self, key, flags=0):
        self.same(("lookup", key, flags), self.k.lookup(key, flags), self.o.sys_lookup(key, flags))

    def update(self, key, value, flags=0):
        self.same(("update", key, value, flags), self.k.update(key, value, flags),
                  self.o.sys_update(key, value, flags))

    def delete(self, key):
        self.same(("delete", key), self.k.delete(key), self.o.sys_delete(key))

    def next_key(self, key):
        self.same(("next_key", key), self.k.next_key(key), self.o.sys_next_key(key))

    def lookup_and_delete(self, key, flags=0):
        self.same(("lookup_and_delete", key, flags), self.k.lookup_and_delete(key, flags),
                  self.o.sys_lookup_and_delete(key, flags))

    def walk(self, ordered=True):
        ko = self.k.keys()
        oo = list(self.o.keys())
        self.same("walk", ko if ordered else sorted(ko), oo if ordered else sorted(oo))
        assert len(set(ko)) == len(ko)


def rbytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


FLAGS = [0, 0, 0, 1, 1, 2, 2, 3, 4, 8]


# ---- array, percpu_array --------------------------------------------------------------

@pytest.mark.parametrize("t,vs,me", [(T.ARRAY, 8, 16), (T.ARRAY, 5, 7), (T.ARRAY, 1, 1),
                                     (T.PERCPU_ARRAY, 8, 9), (T.PERCPU_ARRAY, 12, 4)])
def test_array_ops(env, t, vs, me):
    rng = random.Random(f"array{t}{vs}{me}")
    k, o = make(env, t, 4, vs, me)
    c = Cmp(k, o)
    with k:
        for _ in range(600):
            key = rng.randrange(me + 3).to_bytes(4, "little")
            op = rng.random()
            if op < 0.4:
                c.update(key, rbytes(rng, k.value_buf_size), rng.choice(FLAGS))
            elif op < 0.6:
                c.lookup(key, rng.choice([0, 0, 0, 4, 1]))
            elif op < 0.7:
                c.delete(key)
            elif op < 0.85:
                c.next_key(rng.choice([None, key, b"\xff\xff\xff\xff"]))
            elif op < 0.9:
                c.lookup_and_delete(key)
            else:
                c.walk()
    assert c.n == 600


# ---- hash family --------------------------------------------------------------------

HASH_CASES = [
    (T.HASH, 4, 8, 16, 0), (T.HASH, 4, 8, 16, BPF_F_NO_PREALLOC), (T.HASH, 3, 5, 10, 0),
    (T.HASH, 8, 4, 32, BPF_F_ZERO_SEED), (T.HASH, 13, 3, 20, BPF_F_ZERO_SEED),
    (T.HASH, 16, 16, 64, BPF_F_ZERO_SEED | BPF_F_NO_PREALLOC), (T.HASH, 1, 1, 3, BPF_F_ZERO_SEED),
    (T.HASH, 12, 8, 100, BPF_F_ZERO_SEED),
    (T.PERCPU_HASH, 4, 8, 16, 0), (T.PERCPU_HASH, 6, 12, 16, BPF_F_ZERO_SEED),
    (T.PERCPU_HASH, 4, 4, 8, BPF_F_ZERO_SEED | BPF_F_NO_PREALLOC),
]


def _hash_run(env, t, ks, vs, me, flags, n_ops, max_live=None, seed=""):
    rng = random.Random(f"hash{t}{ks}{vs}{me}{flags}{seed}")
    ordered = bool(flags & BPF_F_ZERO_SEED)
    k, o = make(env, t, ks, vs, me, flags)
    c = Cmp(k, o)
    pool = [rbytes(rng, ks) for _ in range(me * 2 + 2)]
    with k:
        for _ in range(n_ops):
            key = rng.choice(pool)
            op = rng.random()
            if op < 0.45:
                if max_live is not None and len(o) >= max_live:
                    c.delete(rng.choice(list(o.keys())))
                    continue
                c.update(key, rbytes(rng, k.value_buf_size), rng.choice(FLAGS))
            elif op < 0.6:
                c.lookup(key, rng.choice([0, 0, 0, 4]))
            elif op < 0.75:
                c.delete(key)
            elif op < 0.87:
                if ordered:
                    c.next_key(rng.choice([None, key]))
                else:
                    # Random seed in the kernel: only "which keys exist" is comparable.
                    nk = rng.choice([None, rbytes(rng, ks)])
                    (kr, kk), (orr, ok) = k.next_key(nk), o.sys_next_key(nk)
                    c.same(("next_key rc", nk), kr, orr)
                    assert kr or (kk in o._elems and ok in o._elems)
            elif op < 0.95:
                c.lookup_and_delete(key, rng.choice([0, 0, 0, 4]))
            else:
                c.walk(ordered)
        c.walk(ordered)
    return c.n


@pytest.mark.parametrize("t,ks,vs,me,flags", HASH_CASES)
def test_hash_ops(env, t, ks, vs, me, flags):
    assert _hash_run(env, t, ks, vs, me, flags, 700) >= 700


# LRU: the kernel's LRU is deterministic only while it never has to evict: on one CPU,
# with at least target_free free nodes left at every update.  Since 6.16 target_free =
# clamp(max_entries / ncpus / 2, 1, 128) (bpf_lru_list.c; 128 = LOCAL_FREE_TARGET
# before); with BPF_F_NO_COMMON_LRU a CPU owns max_entries / ncpus nodes.  So updates
# run only while fewer than that many keys are present (else a key is deleted first);
# eviction itself is tested against written-down reasoning in test_ebpf_maps.py.
LRU_CASES = [(T.LRU_HASH, 4, 8, 64, 0), (T.LRU_HASH, 5, 3, 200, BPF_F_ZERO_SEED),
             (T.LRU_HASH, 8, 8, 64, BPF_F_NO_COMMON_LRU | BPF_F_ZERO_SEED),
             (T.LRU_PERCPU_HASH, 4, 8, 64, BPF_F_ZERO_SEED),
             (T.LRU_PERCPU_HASH, 4, 4, 32, BPF_F_NO_COMMON_LRU)]


@pytest.mark.parametrize("t,ks,vs,me,flags", LRU_CASES)
def test_lru_ops_without_eviction(env, t, ks, vs, me, flags):
    ncpu = env["ncpu"]
    if flags & BPF_F_NO_COMMON_LRU:
        safe = me // ncpu - 1
    else:
        safe = me - min(max(me // ncpu // 2, 1), 128) - 1
    with pinned_cpu0():
        assert _hash_run(env, t, ks, vs, me, flags, 700, max_live=safe) >= 700


# ---- LPM trie -------------------------------------------------------------------------

@pytest.mark.parametrize("ks,me", [(5, 40), (8, 60), (8, 6), (20, 50), (6, 30)])
def test_lpm_ops(env, ks, me):
    rng = random.Random(f"lpm{ks}{me}")
    dlen = ks - 4
    maxp = 8 * dlen
    k, o = make(env, T.LPM_TRIE, ks, 4, me, BPF_F_NO_PREALLOC)
    c = Cmp(k, o)
    # A few base addresses so that prefixes nest and share bits.
    bases = [rbytes(rng, dlen) for _ in range(4)]

    def addr():
        b = bytearray(rng.choice(bases))
        for _ in range(rng.randrange(3)):
            i = rng.randrange(8 * dlen)
            b[i >> 3] ^= 0x80 >> (i & 7)
        return bytes(b)

    def key(plen=None):
        if plen is None:
            plen = rng.choice([rng.randrange(maxp + 1), maxp, maxp + 1, rng.randrange(9)])
        return plen.to_bytes(4, "little") + addr()

    seen = []
    with k:
        for _ in range(1000):
            op = rng.random()
            if op < 0.4:
                kk = key()
                seen.append(kk)
                c.update(kk, rbytes(rng, 4), rng.choice([0, 0, 1, 2, 3]))
            elif op < 0.6:
                c.lookup(key(rng.choice([maxp, maxp, rng.randrange(maxp + 1), maxp + 1, 1 << 31])))
            elif op < 0.75:
                c.delete(rng.choice(seen) if seen and rng.random() < 0.7 else key())
            elif op < 0.9:
                c.next_key(rng.choice([None, key()] + seen[-5:]))
            else:
                c.walk()
        c.walk()
    assert c.n >= 1000


# ---- queue / stack / bloom ------------------------------------------------------------

@pytest.mark.parametrize("t,vs,me", [(T.QUEUE, 4, 5), (T.STACK, 4, 5), (T.QUEUE, 7, 1),
                                     (T.STACK, 16, 30)])
def test_queue_stack_ops(env, t, vs, me):
    rng = random.Random(f"qs{t}{vs}{me}")
    k, o = make(env, t, 0, vs, me)
    c = Cmp(k, o)
    with k:
        for _ in range(1500):
            op = rng.random()
            if op < 0.45:
                c.update(None, rbytes(rng, vs), rng.choice([0, 0, 0, 2, 2, 1, 3, 4]))
            elif op < 0.65:
                c.lookup(None, rng.choice([0, 0, 0, 4, 1]))
            elif op < 0.9:
                c.lookup_and_delete(None, rng.choice([0, 0, 0, 0, 4, 1]))
            elif op < 0.95:
                c.delete(None)
            else:
                c.next_key(None)
    assert c.n == 1500


@pytest.mark.parametrize("vs,me,extra", [(4, 10, 0), (4, 3, 1), (3, 50, 3), (8, 20, 15),
                                         (13, 2, 2)])
def test_bloom_filter_ops(env, vs, me, extra):
    """With BPF_F_ZERO_SEED the kernel's bits are a pure function of the values, so every
    membership answer -- false positives included -- must agree."""
    rng = random.Random(f"bloom{vs}{me}{extra}")
    k, o = make(env, T.BLOOM_FILTER, 0, vs, me, BPF_F_ZERO_SEED, extra)
    c = Cmp(k, o)
    pool = [rbytes(rng, vs) for _ in range(4 * me + 40)]
    positives = 0
    with k:
        for _ in range(800):
            v = rng.choice(pool)
            op = rng.random()
            if op < 0.3:
                c.update(None, v, rng.choice([0, 0, 0, 0, 1, 2, 4]))
            elif op < 0.9:
                f = rng.choice([0, 0, 0, 0, 4])
                kr = k.lookup_value(v, f)
                c.same(("peek", v, f), kr, o.sys_lookup(None, f, value=v)[0])
                positives += kr == 0
            elif op < 0.95:
                c.delete(None)
            else:
                c.lookup_and_delete(None)
    assert c.n == 800 and positives > 0


# ---- redirect maps --------------------------------------------------------------------

@pytest.mark.parametrize("t,vs,me", [(T.DEVMAP, 4, 6), (T.DEVMAP, 8, 3), (T.DEVMAP_HASH, 4, 4),
                                     (T.DEVMAP_HASH, 8, 9)])
def test_devmap_ops(env, t, vs, me):
    rng = random.Random(f"dev{t}{vs}{me}")
    k, o = make(env, t, 4, vs, me)
    c = Cmp(k, o)
    ifs = sorted(env["netdevs"]) + [0, 0, 99999]
    with k:
        for _ in range(1000):
            key = rng.randrange(me + 4 if t == T.DEVMAP else 3 * me).to_bytes(4, "little")
            op = rng.random()
            if op < 0.45:
                val = rng.choice(ifs).to_bytes(4, "little")
                if vs == 8:
                    val += rng.choice([0, 0, -1, -7]).to_bytes(4, "little", signed=True)
                c.update(key, val, rng.choice([0, 0, 1, 2, 3]))
            elif op < 0.65:
                c.lookup(key)
            elif op < 0.8:
                c.delete(key)
            elif op < 0.95:
                c.next_key(rng.choice([None, key]))
            else:
                c.walk()
    assert c.n == 1000


@pytest.mark.parametrize("vs,me", [(4, 4), (8, 2), (4, 1)])
def test_cpumap_ops(env, vs, me):
    rng = random.Random(f"cpu{vs}{me}")
    k, o = make(env, T.CPUMAP, 4, vs, me)
    c = Cmp(k, o)
    with k:
        for _ in range(1000):
            key = rng.randrange(me + 2).to_bytes(4, "little")
            op = rng.random()
            if op < 0.45:
                val = rng.choice([0, 1, 64, 16384, 16385, 1 << 20]).to_bytes(4, "little")
                if vs == 8:
                    val += rng.choice([0, -1]).to_bytes(4, "little", signed=True)
                c.update(key, val, rng.choice([0, 0, 1, 2, 3]))
            elif op < 0.65:
                c.lookup(key)
            elif op < 0.8:
                c.delete(key)
            else:
                c.next_key(rng.choice([None, key]))
    assert c.n == 1000


@pytest.mark.parametrize("t", [T.XSKMAP, T.PROG_ARRAY, T.PERF_EVENT_ARRAY])
def test_object_array_empty_ops(env, t):
    """Maps of sockets/programs/perf events: the commands that need no such object."""
    rng = random.Random(f"objarr{t}")
    k, o = make(env, t, 4, 4, 5)
    c = Cmp(k, o)
    with k:
        for _ in range(300):
            key = rng.randrange(8).to_bytes(4, "little")
            op = rng.random()
            if op < 0.3:
                c.lookup(key)
            elif op < 0.6:
                c.delete(key)
            elif op < 0.9:
                c.next_key(rng.choice([None, key]))
            else:
                c.lookup_and_delete(key)
    assert c.n == 300


@pytest.mark.parametrize("outer,inner_t,me,ifl", [(T.ARRAY_OF_MAPS, T.ARRAY, 4, 0),
                                                  (T.HASH_OF_MAPS, T.ARRAY, 3, 0),
                                                  (T.HASH_OF_MAPS, T.HASH, 5, 0),
                                                  (T.ARRAY_OF_MAPS, T.ARRAY, 3, 4096)])
def test_map_in_map_ops(env, outer, inner_t, me, ifl):
    """Inner maps are kernel fds on one side and BpfMap objects on the other, paired.
    Values (the kernel's map ids) are compared by which pair they came from.  The
    candidates differ from the template in max_entries (allowed only for hash inner
    maps or with BPF_F_INNER_MAP), flags or type."""
    rng = random.Random(f"mim{outer}{inner_t}{me}{ifl}")
    inners = [make(env, inner_t, 4, 4, 2, ifl) for _ in range(3)]
    other = T.HASH if inner_t == T.ARRAY else T.ARRAY
    inners += [make(env, inner_t, 4, 4, 3, ifl), make(env, other, 4, 4, 2),
               make(env, inner_t, 4, 4, 2, ifl ^ 8), make(env, inner_t, 4, 4, 2, ifl ^ 128)]
    # BPF_F_ZERO_SEED on the hash-of-maps: its key order is then the kernel's too.
    k, o = make(env, outer, 4, 4, me, BPF_F_ZERO_SEED if outer == T.HASH_OF_MAPS else 0,
                inner=inners[0])
    ids = {}
    n = 0
    with k:
        for _ in range(600):
            key = rng.randrange(me + 2).to_bytes(4, "little")
            op = rng.random()
            if op < 0.4:
                i = rng.randrange(len(inners))
                flags = rng.choice([0, 0, 1, 2])
                kr = k.update(key, inners[i][0].fd.to_bytes(4, "little"), flags)
                try:
                    o.update(key, inners[i][1], flags)
                    orr = 0
                except MapError as e:
                    orr = -e.errno
                if kr == 0:
                    ids[key] = i
                assert kr == orr, (key, i, flags, kr, orr)
            elif op < 0.7:
                kr, kv = k.lookup(key)
                orr, ov = o.sys_lookup(key)
                assert kr == orr
                if kr == 0:
                    assert ov is inners[ids[key]][1]
            elif op < 0.85:
                assert k.delete(key) == o.sys_delete(key)
            else:
                nk = rng.choice([None, key])
                assert k.next_key(nk) == o.sys_next_key(nk)
            n += 1
    for km, _ in inners:
        km.close()
    assert n == 600


# ---- BPF_MAP_CREATE checks ------------------------------------------------------------

SIZES = [0, 1, 3, 4, 5, 8, 9, 16, 260, 261, 4096, 32760, 32768, 32769, 4194024, 4194025,
         4194200, 4194252, 4194256, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
ENTRIES = [0, 1, 2, 3, 7, 64, 256, 257, 2048, 4096, 8192, 12288, 1 << 16, 1 << 20, 1 << 27,
           (1 << 27) + 1, 1 << 28, 1 << 31, (1 << 31) + 1, (1 << 32) - 1]
FLAG_BITS = [0, 0, 0, 1, 2, 4, 8, 16, 24, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192, 65,
             3, 1 << 17]
TYPES = [T.HASH, T.ARRAY, T.PROG_ARRAY, T.PERF_EVENT_ARRAY, T.PERCPU_HASH, T.PERCPU_ARRAY,
         T.LRU_HASH, T.LRU_PERCPU_HASH, T.LPM_TRIE, T.DEVMAP, T.CPUMAP, T.XSKMAP, T.QUEUE,
         T.STACK, T.DEVMAP_HASH, T.RINGBUF, T.BLOOM_FILTER, 0, 40, 1000]
SAFE = 64 << 20   # specs whose up-front allocation may exceed this are not sent to the kernel


def _create_cmp(env, t, ks, vs, me, fl, extra):
    spec = MapSpec(t, ks, vs, me, fl, map_extra=extra)
    try:
        check_create(spec, num_cpus=env["ncpu"], nr_cpus_config=env["nr_cpus"],
                     memory_limit=SAFE)
        ours = 0
    except MapError as e:
        if e.errno == ENOMEM:
            return False   # too big to try on the kernel; ENOMEM is machine-dependent
        ours = -e.errno
    fd = oracles.kmap_create(t, ks, vs, me, fl, 0, extra)
    if fd >= 0:
        os.close(fd)
        fd = 0
    assert fd == ours, (T(t).name if t in T._value2member_map_ else t, ks, vs, me, hex(fl), extra)
    return True


def test_create_checks_random(env):
    rng = random.Random("create")
    n = 0
    for _ in range(4000):
        t = rng.choice(TYPES)
        ks = rng.choice(SIZES[:12]) if rng.random() < 0.8 else rng.choice(SIZES)
        vs = rng.choice(SIZES[:12]) if rng.random() < 0.7 else rng.choice(SIZES)
        if rng.random() < 0.3:
            ks = 4 if rng.random() < 0.7 else 0
        me = rng.choice(ENTRIES[:12]) if rng.random() < 0.8 else rng.choice(ENTRIES)
        fl = rng.choice(FLAG_BITS) | (rng.choice(FLAG_BITS) if rng.random() < 0.3 else 0)
        extra = rng.choice([0, 0, 0, 0, 1, 5, 15, 16, 1 << 40])
        n += _create_cmp(env, t, ks, vs, me, fl, extra)
    assert n > 3000


@pytest.mark.parametrize("t,ks,vs,me,fl,extra", [
    (T.HASH, 4, 4194248, 1, 1, 0), (T.HASH, 4, 4194252, 1, 1, 0),
    (T.HASH, 4, 4, (1 << 27) + 1, 1, 0), (T.HASH, 4, 4, 1 << 31, 1, 0),
    (T.LRU_HASH, 4, 4, 1, 1, 0), (T.LRU_PERCPU_HASH, 4, 4, 3, 2, 0),
    (T.PERCPU_ARRAY, 4, 32768, 1, 0, 0), (T.PERCPU_ARRAY, 4, 32769, 1, 0, 0),
    (T.PERCPU_HASH, 4, 32769, 1, 1, 0), (T.PERCPU_HASH, 4, 4, 1, 4, 0),
    (T.ARRAY, 4, (1 << 31), 1, 0, 0), (T.ARRAY, 4, 8, 1, 1024 | 4096, 0),
    (T.LPM_TRIE, 8, 4194024, 1, 1, 0), (T.LPM_TRIE, 8, 4194025, 1, 1, 0),
    (T.LPM_TRIE, 260, 1, 1, 1, 0), (T.LPM_TRIE, 261, 1, 1, 1, 0), (T.LPM_TRIE, 8, 8, 1, 0, 0),
    (T.QUEUE, 0, 4194304, 1, 0, 0), (T.QUEUE, 0, 4194305, 1, 0, 0),
    (T.BLOOM_FILTER, 0, 4194305, 1, 0, 0), (T.BLOOM_FILTER, 4, 4194305, 1, 0, 16),
    (T.BLOOM_FILTER, 0, 4, 1, 0, 16), (T.BLOOM_FILTER, 0, 4, 1, 0, 15),
    (T.RINGBUF, 0, 0, 4096, 0, 0), (T.RINGBUF, 0, 0, 12288, 0, 0), (T.RINGBUF, 0, 0, 2048, 0, 0),
    (T.DEVMAP_HASH, 4, 4, (1 << 31) + 1, 0, 0), (T.CPUMAP, 4, 4, 1 << 16, 0, 0),
    (T.XSKMAP, 4, 4, 1, 8, 0), (T.XSKMAP, 4, 4, 1, 1, 0), (T.PROG_ARRAY, 4, 4, 1, 128, 0),
    (T.PERF_EVENT_ARRAY, 4, 4, 1, 2048, 0), (T.ARRAY, 4, 4, 1, 8 | 16, 0),
    (T.HASH, 4, 4, 1, 0, 1), (T.ARRAY, 4, 4, 1, 128 | 256, 0),
])
def test_create_checks_boundaries(env, t, ks, vs, me, fl, extra):
    assert _create_cmp(env, t, ks, vs, me, fl, extra)


def test_create_map_in_map(env):
    inner = oracles.KernelMap.create(T.ARRAY, 4, 4, 1)
    prog = oracles.KernelMap.create(T.PROG_ARRAY, 4, 4, 1)
    aom = oracles.KernelMap.create(T.ARRAY_OF_MAPS, 4, 4, 1, inner_map_fd=inner.fd)
    specs = {"array": (inner, MapSpec(T.ARRAY, 4, 4, 1)),
             "prog": (prog, MapSpec(T.PROG_ARRAY, 4, 4, 1)),
             "aom": (aom, MapSpec(T.ARRAY_OF_MAPS, 4, 4, 1, inner=MapSpec(T.ARRAY, 4, 4, 1)))}
    n = 0
    try:
        for outer in (T.ARRAY_OF_MAPS, T.HASH_OF_MAPS):
            for name, (km, ispec) in specs.items():
                for vs in (4, 8):
                    fd = oracles.kmap_create(outer, 4, vs, 2, 0, km.fd)
                    if fd >= 0:
                        os.close(fd)
                        fd = 0
                    try:
                        check_create(MapSpec(outer, 4, vs, 2, inner=ispec),
                                     num_cpus=env["ncpu"])
                        ours = 0
                    except MapError as e:
                        ours = -e.errno
                    assert fd == ours, (outer, name, vs)
                    n += 1
    finally:
        for km, _ in specs.values():
            km.close()
    assert n == 12


def test_unsupported_types_are_named(env):
    with pytest.raises(UnsupportedError, match="SOCKMAP"):
        check_create(MapSpec(T.SOCKMAP, 4, 4, 1))


# ---- program side: the helpers inside a BPF program ---------------------------------------
# A hand-encoded XDP program turns each test packet into one helper call on the map, so the
# program-facing methods (lookup_ptr / update_raw / delete_raw / push_raw / pop_raw /
# peek_raw / lookup_percpu_ptr) are compared with what the kernel's helpers do.  Packet:
#   [0] op  [1] flags/cpu  [4:8] u32 key  [8:16] u64 value  [16:24] output  (32 bytes)
# op 0 update, 1 lookup (store the old value at [16:24], then write [8:16] through the
# pointer: returns 1, or 2 if NULL), 2 delete, 3 push, 4 pop, 5 peek (value -> [16:24]),
# 6 lookup_percpu_elem(key, cpu=[1]) (value -> [16:24], returns 1/2).
# Programs run on CPU 0 (the test pins itself), so per-CPU effects land on CPU 0.

def _insn(op, dst=0, src=0, off=0, imm=0):
    import struct
    return struct.pack("<BBhi", op, dst | src << 4, off, imm)


def _program(map_fd, ops):
    """Assemble the dispatcher for the helper calls in `ops` (a subset of 0..6)."""
    code, fix, labels = [], [], {}

    def emit(op, dst=0, src=0, off=0, imm=0, label=None):
        if label is not None:
            fix.append((len(code), label))
        code.append([op, dst, src, off, imm])

    def ld_map():
        emit(0x18, 1, 1, 0, map_fd)     # r1 = map (BPF_PSEUDO_MAP_FD)
        emit(0, 0, 0, 0, 0)

    emit(0xbf, 6, 1)                     # r6 = ctx
    emit(0x61, 7, 6, 0)                  # r7 = data
    emit(0x61, 3, 6, 4)                  # r3 = data_end
    emit(0xbf, 4, 7)
    emit(0x07, 4, 0, 0, 32)
    emit(0x2d, 4, 3, label="short")     # if r7 + 32 > data_end goto short
    emit(0x61, 5, 7, 4)
    emit(0x63, 10, 5, -8)                # key -> fp-8
    emit(0x79, 5, 7, 8)
    emit(0x7b, 10, 5, -16)               # value -> fp-16
    emit(0x71, 8, 7, 0)                  # r8 = op
    emit(0x71, 9, 7, 1)                  # r9 = flags
    for op in ops:
        emit(0x15, 8, 0, 0, op, label=f"op{op}")
    emit(0xb7, 0, 0, 0, 0xdead)
    emit(0x95)

    def label(name):
        labels[name] = len(code)

    def key_arg(reg=2, at=-8):
        emit(0xbf, reg, 10)
        emit(0x07, reg, 0, 0, at)

    def copy_out(from_reg):             # *(u64 *)(pkt + 16) = *(u64 *)(from_reg + 0)
        emit(0x79, 5, from_reg, 0)
        emit(0x7b, 7, 5, 16)

    for op in ops:
        label(f"op{op}")
        ld_map()
        if op == 0:
            key_arg()
            key_arg(3, -16)
            emit(0xbf, 4, 9)
            emit(0x85, imm=2)
        elif op in (1, 6):
            key_arg()
            if op == 6:
                emit(0xbf, 3, 9)
            emit(0x85, imm=1 if op == 1 else 195)
            emit(0x55, 0, 0, 2)             # if r0 != 0 skip the miss exit
            emit(0xb7, 0, 0, 0, 2)
            emit(0x95)
            copy_out(0)
            if op == 1:
                emit(0x79, 5, 10, -16)
                emit(0x7b, 0, 5, 0)         # write through the value pointer
            emit(0xb7, 0, 0, 0, 1)
        elif op == 2:
            key_arg()
            emit(0x85, imm=3)
        elif op == 3:
            key_arg(2, -16)
            emit(0xbf, 3, 9)
            emit(0x85, imm=87)
        elif op in (4, 5):
            emit(0xb7, 5, 0, 0, 0)
            emit(0x7b, 10, 5, -16)          # zero the buffer the helper fills
            key_arg(2, -16)
            emit(0x85, imm=88 if op == 4 else 89)
            emit(0x79, 5, 10, -16)
            emit(0x7b, 7, 5, 16)
        emit(0x95)
    label("short")
    emit(0xb7, 0, 0, 0, 0xbad)
    emit(0x95)
    for at, name in fix:
        code[at][3] = labels[name] - at - 1
    return b"".join(_insn(*c) for c in code)


def _ours_prog(o, pkt):
    """What the program does, through bpfkit's program-side interface (CPU 0)."""
    import struct
    op, flags = pkt[0], pkt[1]
    key, val = pkt[4:8], pkt[8:16]
    out = bytearray(pkt)
    if op == 0:
        rc = o.update_raw(key, val, flags, cpu=0)
    elif op in (1, 6):
        ref = o.lookup_ptr(key, cpu=0) if op == 1 else o.lookup_percpu_ptr(key, flags)
        if ref is None:
            return 2, bytes(out)
        out[16:24] = ref.read()
        if op == 1:
            ref.write(val)
        rc = 1
    elif op == 2:
        rc = o.delete_raw(key, cpu=0)
    elif op == 3:
        rc = o.push_raw(val, flags, cpu=0)
    else:
        rc, got = (o.pop_raw if op == 4 else o.peek_raw)(cpu=0)
        out[16:24] = got if rc == 0 else bytes(8)
    return struct.unpack("<I", struct.pack("<i", rc))[0] if rc < 0 else rc, bytes(out)


PROG_CASES = [(T.ARRAY, 6, 0, (0, 1, 2)), (T.PERCPU_ARRAY, 6, 0, (0, 1, 2, 6)),
              (T.HASH, 8, 0, (0, 1, 2)), (T.HASH, 8, BPF_F_NO_PREALLOC, (0, 1, 2)),
              (T.PERCPU_HASH, 8, 0, (0, 1, 2, 6)),
              (T.PERCPU_HASH, 8, BPF_F_NO_PREALLOC, (0, 1, 2, 6)), (T.LRU_HASH, 64, 0, (0, 1, 2)),
              (T.LRU_PERCPU_HASH, 64, 0, (0, 1, 2, 6)),
              (T.QUEUE, 4, 0, (3, 4, 5)), (T.STACK, 4, 0, (3, 4, 5))]


@pytest.mark.parametrize("t,me,flags,ops", PROG_CASES)
def test_program_side_ops(env, t, me, flags, ops):
    rng = random.Random(f"prog{t}{me}{flags}")
    ks = 0 if t in (T.QUEUE, T.STACK) else 4
    k, o = make(env, t, ks, 8, me, flags)
    lru = t in (T.LRU_HASH, T.LRU_PERCPU_HASH)
    safe = me - min(max(me // env["ncpu"] // 2, 1), 128) - 1 if lru else None
    n = 0
    with k, pinned_cpu0():
        fd = oracles.bpf_prog_load(_program(k.fd, ops), oracles.BPF_PROG_TYPE_XDP)
        try:
            for _ in range(500):
                op = rng.choice(ops + (9,))     # 9: a bpf(2) update, to mix both sides
                key = rng.randrange(me + 3)
                if lru and op in (0, 9) and len(o) >= safe:
                    op = 2
                if op == 9:
                    if ks:
                        kb, v = u32le(key), rbytes(rng, k.value_buf_size)
                        fl = rng.choice([0, 0, 1, 2])
                        assert k.update(kb, v, fl) == o.sys_update(kb, v, fl)
                    n += 1
                    continue
                fl = rng.choice([0, 0, 1, 2, 3, 4]) if op in (0, 3) else 0
                if op == 6:
                    fl = rng.randrange(env["ncpu"] + 1)
                pkt = bytes([op, fl, 0, 0]) + u32le(key) + rbytes(rng, 8) + bytes(16)
                got = oracles.bpf_prog_test_run(fd, pkt)
                want = _ours_prog(o, pkt)
                assert got == want, (op, fl, key, got, want)
                n += 1
            if ks:
                assert sorted(k.keys()) == sorted(o.keys())
                for kb in k.keys():
                    assert k.lookup(kb) == o.sys_lookup(kb)
        finally:
            os.close(fd)
    assert n == 500


def u32le(i):
    return i.to_bytes(4, "little")


@pytest.mark.parametrize("t,ks", [(T.ARRAY, 4), (T.HASH, 4), (T.PERCPU_HASH, 4), (T.QUEUE, 0),
                                  (T.LPM_TRIE, 8)])
@pytest.mark.parametrize("fl", [8, 16, 128, 256])   # BPF_F_RDONLY/WRONLY(_PROG)
def test_access_flags(env, t, ks, fl):
    """bpf(2) on a map created read-only or write-only for user space: EPERM where the
    fd lacks the permission (map_get_sys_perms), before the other checks."""
    if t == T.LPM_TRIE:
        fl |= BPF_F_NO_PREALLOC
    k, o = make(env, t, ks, 4, 4, fl)
    c = Cmp(k, o)
    key = None if ks == 0 else (b"\x20\0\0\0" + bytes(4) if t == T.LPM_TRIE else bytes(4))
    with k:
        for f in (0, 4, 1):
            c.update(key, bytes(k.value_buf_size), f)
            c.lookup(key, f)
            c.lookup_and_delete(key, f)
        c.delete(key)
        c.next_key(None)
        c.next_key(key)
    assert c.n == 12


# ---- ring buffer, from a program, read back through the kernel's mmap layout ----------
# Packet: [0] op [1] flags [2] size/discard bit [8:16] u64 data.  op 8: ringbuf_output
# of size [2]&7 bytes; op 9/11: reserve 512/100 bytes, store the data, then submit (or
# discard when [2]&1): returns 1, or 2 on NULL; op 10: ringbuf_query(flags).

def _ringbuf_program(map_fd):
    code = []

    def e(op, dst=0, src=0, off=0, imm=0):
        code.append(_insn(op, dst, src, off, imm))

    def ld_map():
        e(0x18, 1, 1, 0, map_fd)
        e(0, 0, 0, 0, 0)

    e(0xbf, 6, 1)
    e(0x61, 7, 6, 0)
    e(0x61, 3, 6, 4)
    e(0xbf, 4, 7)
    e(0x07, 4, 0, 0, 32)
    e(0x2d, 4, 3, 1)                    # short packet: on to "return 0xbad"
    e(0x05, off=2)                      # goto body
    e(0xb7, 0, 0, 0, 0xbad)
    e(0x95)
    e(0x79, 5, 7, 8)
    e(0x7b, 10, 5, -16)
    e(0x71, 8, 7, 0)
    e(0x71, 9, 7, 1)
    bodies = []
    # op 8: output
    b = []
    b += [(0x18, 1, 1, 0, map_fd), (0, 0, 0, 0, 0), (0xbf, 2, 10, 0, 0), (0x07, 2, 0, 0, -16),
          (0x71, 3, 7, 2, 0), (0x57, 3, 0, 0, 7), (0xbf, 4, 9, 0, 0), (0x85, 0, 0, 0, 130),
          (0x95, 0, 0, 0, 0)]
    bodies.append((8, b))
    for op, size in ((9, 512), (11, 100)):
        b = [(0x71, 8, 7, 2, 0),                       # r8 = discard flag byte
             (0x18, 1, 1, 0, map_fd), (0, 0, 0, 0, 0), (0xb7, 2, 0, 0, size),
             (0xbf, 3, 9, 0, 0), (0x85, 0, 0, 0, 131),
             (0x55, 0, 0, 2, 0), (0xb7, 0, 0, 0, 2), (0x95, 0, 0, 0, 0),
             (0x79, 5, 10, -16, 0), (0x7b, 0, 5, 0, 0),
             (0xbf, 1, 0, 0, 0), (0xb7, 2, 0, 0, 0), (0x57, 8, 0, 0, 1),
             (0x15, 8, 0, 2, 0),                      # if !(discard) goto submit
             (0x85, 0, 0, 0, 133), (0x05, 0, 0, 1, 0),
             (0x85, 0, 0, 0, 132),
             (0xb7, 0, 0, 0, 1), (0x95, 0, 0, 0, 0)]
        bodies.append((op, b))
    b = [(0x18, 1, 1, 0, map_fd), (0, 0, 0, 0, 0), (0xbf, 2, 9, 0, 0), (0x85, 0, 0, 0, 134),
         (0x95, 0, 0, 0, 0)]
    bodies.append((10, b))
    # dispatch: jeq r8, op -> body
    n_dispatch = len(bodies) + 2
    at = len(code) + n_dispatch
    for op, b in bodies:
        e(0x15, 8, 0, at - len(code) - 1, op)
        at += len(b)
    e(0xb7, 0, 0, 0, 0xdead)
    e(0x95)
    for _, b in bodies:
        for ins in b:
            e(*ins)
    return b"".join(code)


class _KernelRing:
    """User-space consumer of a kernel BPF ring buffer through its mmap layout:
    page 0 consumer_pos (rw), page 1 producer_pos, then the data area mapped twice."""

    def __init__(self, fd, size):
        import mmap
        self.size = size
        self.cons = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                              offset=0)
        self.prod = mmap.mmap(fd, 4096 + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                              offset=4096)

    def consume(self):
        import struct
        cons = struct.unpack_from("<Q", self.cons, 0)[0]
        prod = struct.unpack_from("<Q", self.prod, 0)[0]
        out = []
        while cons < prod:
            at = 4096 + (cons & (self.size - 1))
            hdr = struct.unpack_from("<I", self.prod, at)[0]
            if hdr & (1 << 31):
                break
            n = hdr & ~(3 << 30)
            if not hdr & (1 << 30):
                out.append(bytes(self.prod[at + 8:at + 8 + n]))
            cons += (n + 8 + 7) // 8 * 8
        struct.pack_into("<Q", self.cons, 0, cons)
        return out

    def close(self):
        self.cons.close()
        self.prod.close()


@pytest.mark.parametrize("size", [4096, 8192])
def test_ringbuf_from_program(env, size):
    rng = random.Random(f"ringbuf{size}")
    k, o = make(env, T.RINGBUF, 0, 0, size)
    n = consumed = 0
    with k:
        ring = _KernelRing(k.fd, size)
        fd = oracles.bpf_prog_load(_ringbuf_program(k.fd), oracles.BPF_PROG_TYPE_XDP)
        try:
            for i in range(1000):
                op = rng.choice([8, 8, 9, 11, 11, 10, 12])
                if op == 12:                       # the user consumes
                    got = ring.consume()
                    want = [r.data for r in o.consume()]
                    assert got[:] == want
                    consumed += len(got)
                    continue
                flags = rng.choice([0, 0, 0, 1, 2, 4]) if op != 10 else rng.randrange(5)
                sz = rng.randrange(256)
                val = rbytes(rng, 8)
                pkt = bytes([op, flags, sz, 0]) + bytes(4) + val + bytes(16)
                rc, _ = oracles.bpf_prog_test_run(fd, pkt)
                if op == 8:
                    want = o.output(val[:sz & 7], flags, packet_index=i) & 0xFFFFFFFF
                elif op == 10:
                    want = o.query(flags) & 0xFFFFFFFF
                else:
                    ref = o.reserve(512 if op == 9 else 100, flags, packet_index=i)
                    if ref is None:
                        want = 2
                    else:
                        ref.write(val)
                        (o.discard if sz & 1 else o.submit)(ref)
                        want = 1
                assert rc == want, (i, op, flags, sz, rc, want)
                n += 1
        finally:
            os.close(fd)
            ring.close()
    assert n > 700 and consumed > 40


def test_lru_kernel_batch_eviction_is_documented(env):
    """The difference LruState documents, measured: the kernel evicts target_free =
    clamp(max_entries / ncpus / 2, 1, 128) elements at once when a full common-LRU map
    takes a new key; bpfkit's exact LRU evicts one.  Fails if the kernel changes."""
    me = 64
    k, o = make(env, T.LRU_HASH, 4, 4, me)
    with k, pinned_cpu0():
        for i in range(me + 1):
            assert k.update(u32le(i), b"aaaa") == 0
            assert o.sys_update(u32le(i), b"aaaa", 0) == 0
        target_free = min(max(me // env["ncpu"] // 2, 1), 128)
        assert len(k.keys()) == me - target_free + 1
        assert sorted(o.keys()) == [u32le(i) for i in range(1, me + 1)]


@pytest.mark.parametrize("t,ks,vs,me", [(T.HASH, 4, 4, 4), (T.ARRAY, 4, 4, 4), (T.QUEUE, 0, 4, 4),
                                        (T.LPM_TRIE, 8, 4, 4), (T.BLOOM_FILTER, 0, 4, 4),
                                        (T.DEVMAP_HASH, 4, 4, 4)])
def test_null_and_stray_keys(env, t, ks, vs, me):
    """A NULL key for a keyed map faults (EFAULT); a key for a key-less map is EINVAL
    (__bpf_copy_key); GET_NEXT_KEY takes NULL as "the first key"."""
    k, o = make(env, t, ks, vs, me, BPF_F_NO_PREALLOC if t == T.LPM_TRIE else 0)
    c = Cmp(k, o)
    key = None if ks else b"\0\0\0\0"
    other = bytes(4) if ks == 0 else None
    with k:
        for kk in (key, other):
            c.lookup(kk)
            c.delete(kk)
            c.next_key(kk)
            c.lookup_and_delete(kk)
            c.update(kk, b"\x01\0\0\0", 0)
    assert c.n == 10


# ---- perf event array: bpf_perf_event_output() from a program -----------------------

def _perf_output_program(map_fd):
    code = [(0xbf, 6, 1, 0, 0), (0x61, 7, 6, 0, 0), (0x61, 3, 6, 4, 0), (0xbf, 4, 7, 0, 0),
            (0x07, 4, 0, 0, 32), (0x2d, 4, 3, 11, 0),
            (0x79, 5, 7, 8, 0), (0x7b, 10, 5, -16, 0),
            (0xbf, 1, 6, 0, 0), (0x18, 2, 1, 0, map_fd), (0, 0, 0, 0, 0),
            (0x61, 3, 7, 4, 0),                       # flags = u32 index from the packet
            (0xbf, 4, 10, 0, 0), (0x07, 4, 0, 0, -16), (0xb7, 5, 0, 0, 8),
            (0x85, 0, 0, 0, 25), (0x95, 0, 0, 0, 0),
            (0xb7, 0, 0, 0, 0xbad), (0x95, 0, 0, 0, 0)]
    return b"".join(_insn(*c) for c in code)


def test_perf_event_output_codes(env):
    """Return codes of bpf_perf_event_output() against PerfEventArrayMap.output():
    E2BIG (index out of range), ENOENT (no event), EOPNOTSUPP (the event is bound to
    another CPU), 0; BPF_F_CURRENT_CPU picks the running CPU (0: the test is pinned)."""
    ncpu = env["ncpu"]
    rng = random.Random("perf")
    me = ncpu + 2
    k, o = make(env, T.PERF_EVENT_ARRAY, 4, 4, me)
    events = [oracles.perf_bpf_output_open(c) for c in range(ncpu)]
    assert all(fd >= 0 for fd in events), events
    # An event needs its ring buffer mapped, or output fails with ENOSPC.
    import mmap
    rings = [mmap.mmap(fd, 9 * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
             for fd in events]
    ok = n = 0
    with k, pinned_cpu0():
        prog = oracles.bpf_prog_load(_perf_output_program(k.fd), oracles.BPF_PROG_TYPE_XDP)
        try:
            for i in range(600):
                op = rng.random()
                idx = rng.randrange(me + 1)
                if op < 0.2:                      # attach the event of a random CPU
                    cpu = rng.randrange(ncpu)
                    assert k.update(u32le(idx), events[cpu].to_bytes(4, "little")) == \
                        _rc(lambda: o.open(idx, cpu))
                elif op < 0.3:
                    assert k.delete(u32le(idx)) == o.sys_delete(u32le(idx))
                else:
                    flags = rng.choice([idx, idx, 0xFFFFFFFF])
                    pkt = bytes(4) + u32le(flags) + rbytes(rng, 8) + bytes(16)
                    rc, _ = oracles.bpf_prog_test_run(prog, pkt)
                    want = o.output(flags, pkt[8:16], cpu=0, packet_index=i)
                    assert rc == want & 0xFFFFFFFF, (i, flags, rc, want)
                    ok += want == 0
                n += 1
        finally:
            os.close(prog)
            for r in rings:
                r.close()
            for fd in events:
                os.close(fd)
    assert n == 600 and ok > 50 and len(o.records) == ok


def _rc(fn) -> int:
    try:
        fn()
        return 0
    except MapError as e:
        return -e.errno


# ---- map-in-map from a program: outer lookup gives the inner map ------------------------

def _mim_program(outer_fd):
    code = [(0xbf, 6, 1, 0, 0), (0x61, 7, 6, 0, 0), (0x61, 3, 6, 4, 0), (0xbf, 4, 7, 0, 0),
            (0x07, 4, 0, 0, 32), (0x2d, 4, 3, 24, 0),
            (0x61, 5, 7, 4, 0), (0x63, 10, 5, -8, 0),
            (0x18, 1, 1, 0, outer_fd), (0, 0, 0, 0, 0),
            (0xbf, 2, 10, 0, 0), (0x07, 2, 0, 0, -8), (0x85, 0, 0, 0, 1),
            (0x55, 0, 0, 2, 0), (0xb7, 0, 0, 0, 2), (0x95, 0, 0, 0, 0),
            (0xbf, 1, 0, 0, 0), (0xb7, 5, 0, 0, 0), (0x63, 10, 5, -4, 0),
            (0xbf, 2, 10, 0, 0), (0x07, 2, 0, 0, -4), (0x85, 0, 0, 0, 1),
            (0x55, 0, 0, 2, 0), (0xb7, 0, 0, 0, 3), (0x95, 0, 0, 0, 0),
            (0x61, 5, 0, 0, 0), (0x07, 5, 0, 0, 1), (0x63, 0, 5, 0, 0),
            (0xbf, 0, 5, 0, 0), (0x95, 0, 0, 0, 0),
            (0xb7, 0, 0, 0, 0xbad), (0x95, 0, 0, 0, 0)]
    return b"".join(_insn(*c) for c in code)


@pytest.mark.parametrize("outer,inner_t", [(T.ARRAY_OF_MAPS, T.ARRAY),
                                           (T.HASH_OF_MAPS, T.HASH)])
def test_map_in_map_from_program(env, outer, inner_t):
    """lookup(outer, key) -> inner map; lookup(inner, 0) -> value; *value += 1.  The
    inner maps' contents are compared at the end."""
    rng = random.Random(f"mimprog{outer}{inner_t}")
    inners = [make(env, inner_t, 4, 4, 2) for _ in range(3)]
    k, o = make(env, outer, 4, 4, 4, inner=inners[0])
    for i, (km, om) in enumerate(inners[1:]):
        assert km.update(u32le(0), u32le(100 * i)) == om.sys_update(u32le(0), u32le(100 * i), 0)
    n = 0
    with k, pinned_cpu0():
        prog = oracles.bpf_prog_load(_mim_program(k.fd), oracles.BPF_PROG_TYPE_XDP)
        try:
            for i in range(400):
                key = rng.randrange(6)
                if rng.random() < 0.2:
                    j = rng.randrange(len(inners))
                    assert k.update(u32le(key), inners[j][0].fd.to_bytes(4, "little")) == \
                        _rc(lambda: o.update(key, inners[j][1]))
                    continue
                rc, _ = oracles.bpf_prog_test_run(prog, bytes(4) + u32le(key) + bytes(24))
                inner = o.lookup_ptr(u32le(key))
                if inner is None:
                    want = 2
                else:
                    ref = inner.lookup_ptr(u32le(0))
                    if ref is None:
                        want = 3
                    else:
                        want = (int.from_bytes(ref.read(), "little") + 1) & 0xFFFFFFFF
                        ref.write(want.to_bytes(4, "little"))
                assert rc == want, (i, key, rc, want)
                n += 1
            for km, om in inners:
                assert km.lookup(u32le(0)) == om.sys_lookup(u32le(0))
        finally:
            os.close(prog)
            for km, _ in inners:
                km.close()
    assert n > 250


VALID = {T.HASH: (4, 8, 64, 0, 0), T.ARRAY: (4, 8, 64, 0, 0), T.PROG_ARRAY: (4, 4, 8, 0, 0),
         T.PERF_EVENT_ARRAY: (4, 4, 8, 0, 0), T.PERCPU_HASH: (4, 8, 64, 0, 0),
         T.PERCPU_ARRAY: (4, 8, 64, 0, 0), T.LRU_HASH: (4, 8, 64, 0, 0),
         T.LRU_PERCPU_HASH: (4, 8, 64, 0, 0), T.LPM_TRIE: (8, 8, 64, 1, 0),
         T.DEVMAP: (4, 4, 8, 0, 0), T.CPUMAP: (4, 4, 2, 0, 0), T.XSKMAP: (4, 4, 8, 0, 0),
         T.QUEUE: (0, 8, 64, 0, 0), T.STACK: (0, 8, 64, 0, 0), T.DEVMAP_HASH: (4, 8, 8, 0, 0),
         T.RINGBUF: (0, 0, 4096, 0, 0), T.BLOOM_FILTER: (0, 8, 64, 0, 3)}


def test_create_checks_near_valid(env):
    """Valid specs with one or two attributes changed: the accept/refuse boundary."""
    rng = random.Random("near-valid")
    n = accepted = 0
    for t, base in VALID.items():
        for _ in range(150):
            ks, vs, me, fl, extra = base
            for _ in range(rng.choice([1, 1, 2])):
                which = rng.randrange(5)
                if which == 0:
                    ks = rng.choice([0, 1, 2, 3, 4, 5, 8, 16, 64, 260, 261, 512])
                elif which == 1:
                    vs = rng.choice([0, 1, 3, 4, 6, 8, 12, 16, 100, 4096, 32768, 32769])
                elif which == 2:
                    me = rng.choice([0, 1, 2, 3, 5, 4096, 8192, 6144, 256, 257, 1 << 16])
                elif which == 3:
                    fl ^= 1 << rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
                else:
                    extra = rng.choice([0, 1, 7, 15, 16, 1 << 33])
            if _create_cmp(env, t, ks, vs, me, fl, extra):
                n += 1
                try:
                    check_create(MapSpec(t, ks, vs, me, fl, map_extra=extra),
                                 num_cpus=env["ncpu"], nr_cpus_config=env["nr_cpus"])
                    accepted += 1
                except MapError:
                    pass
    assert n > 2400 and accepted > 500


# ---- LRU with lru_policy="kernel": the kernel's own algorithm, evictions included ---------

@contextlib.contextmanager
def on_cpu(cpu):
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


KLRU_CASES = [(T.LRU_HASH, 8, 0, 0.8), (T.LRU_HASH, 64, 0, 0.8), (T.LRU_HASH, 200, 0, 0.8),
              (T.LRU_HASH, 64, BPF_F_NO_COMMON_LRU, 0.8),
              (T.LRU_HASH, 20, BPF_F_NO_COMMON_LRU, 0.5),
              (T.LRU_PERCPU_HASH, 64, 0, 0.8), (T.LRU_PERCPU_HASH, 16, 0, 0.8),
              (T.LRU_PERCPU_HASH, 40, BPF_F_NO_COMMON_LRU, 0.5),
              # small maps used from both CPUs: nodes parked in the other CPU's local
              # lists get stolen (bpf_common_lru_pop_free's steal loop)
              # (with 2 CPUs a CPU parks at most target_free nodes, so only a 1-entry
              # map reaches the steal loop)
              (T.LRU_HASH, 6, 0, 0.5), (T.LRU_HASH, 12, 0, 0.5), (T.LRU_PERCPU_HASH, 8, 0, 0.5),
              (T.LRU_HASH, 1, 0, 0.5), (T.LRU_HASH, 2, 0, 0.5), (T.LRU_PERCPU_HASH, 1, 0, 0.5)]


@pytest.mark.parametrize("t,me,flags,p0", KLRU_CASES)
def test_lru_kernel_policy(env, t, me, flags, p0):
    """Random bpf(2) and program operations, each on a chosen CPU, with evictions: every
    return code, value and the full key order (BPF_F_ZERO_SEED) must match."""
    rng = random.Random(f"klru{t}{me}{flags}{p0}")
    flags |= BPF_F_ZERO_SEED
    spec = MapSpec(t, 4, 8, me, flags)
    o = create_map(spec, num_cpus=env["ncpu"], lru_policy="kernel")
    k = oracles.KernelMap.create(t, 4, 8, me, flags, percpu=o.percpu)
    ops = (0, 1, 2, 6) if o.percpu else (0, 1, 2)
    pool = [u32le(i) for i in range(3 * me)]
    n = 0
    with k:
        prog = oracles.bpf_prog_load(_program(k.fd, ops), oracles.BPF_PROG_TYPE_XDP)
        try:
            for i in range(1200):
                cpu = 0 if rng.random() < p0 else rng.randrange(env["ncpu"])
                o.sys_cpu = cpu
                key = rng.choice(pool)
                op = rng.random()
                with on_cpu(cpu):
                    if op < 0.35:
                        v = rbytes(rng, k.value_buf_size)
                        fl = rng.choice([0, 0, 0, 1, 2])
                        got, want = k.update(key, v, fl), o.sys_update(key, v, fl)
                    elif op < 0.45:
                        got, want = k.delete(key), o.sys_delete(key)
                    elif op < 0.5:
                        got, want = k.lookup_and_delete(key), o.sys_lookup_and_delete(key)
                    elif op < 0.55:
                        got, want = k.lookup(key), o.sys_lookup(key)
                    else:
                        pop = rng.choice(ops)
                        fl = rng.choice([0, 0, 1, 2]) if pop == 0 else 0
                        if pop == 6:
                            fl = rng.randrange(env["ncpu"])
                        pkt = bytes([pop, fl, 0, 0]) + key + rbytes(rng, 8) + bytes(16)
                        got = oracles.bpf_prog_test_run(prog, pkt)
                        want = _ours_prog_cpu(o, pkt, cpu)
                assert got == want, (i, cpu, op, key, got, want)
                n += 1
                if i % 50 == 49:
                    assert k.keys() == list(o.keys()), i
            assert k.keys() == list(o.keys())
            for kb in k.keys():
                assert k.lookup(kb) == o.sys_lookup(kb)
        finally:
            os.close(prog)
    assert n == 1200


def _ours_prog_cpu(o, pkt, cpu):
    import struct
    op, flags = pkt[0], pkt[1]
    key, val = pkt[4:8], pkt[8:16]
    out = bytearray(pkt)
    if op == 0:
        rc = o.update_raw(key, val, flags, cpu=cpu)
    elif op in (1, 6):
        ref = o.lookup_ptr(key, cpu=cpu) if op == 1 else o.lookup_percpu_ptr(key, flags)
        if ref is None:
            return 2, bytes(out)
        out[16:24] = ref.read()
        if op == 1:
            ref.write(val)
        rc = 1
    else:
        rc = o.delete_raw(key, cpu=cpu)
    return struct.unpack("<I", struct.pack("<i", rc))[0] if rc < 0 else rc, bytes(out)
