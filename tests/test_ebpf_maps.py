"""bpfkit.ebpf.maps without the kernel: the Python API's exceptions, the program-side
interface the interpreter uses (ValueRef pointers, per-CPU values, 0/-errno codes), and
the behaviour the kernel differential tests cannot reach (LRU eviction, ring buffer,
perf output, redirect targets).  Expected values are derived in the comments next to
them from the kernel functions named there."""
from __future__ import annotations

import numpy as np
import pytest

from bpfkit.errors import BpfError, UnsupportedError
from bpfkit.ebpf.maps import (BPF_ANY, BPF_EXIST, BPF_F_CURRENT_CPU, BPF_F_LOCK,
                              BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_NOEXIST,
                              BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_PROD_POS,
                              BPF_RB_RING_SIZE, E2BIG, EAGAIN, EEXIST, EINVAL, ENOENT,
                              EOPNOTSUPP, ENOSPC, MapError, MapSpec, MapType, ValueRef,
                              create_map)

T = MapType


def u32(i):
    return i.to_bytes(4, "little")


# ---- Python API: errors are MapError with the kernel's errno ----------------------------

@pytest.mark.parametrize("spec,action,errno", [
    (MapSpec(T.HASH, 4, 4, 2), lambda m: m.lookup(1), ENOENT),
    (MapSpec(T.HASH, 4, 4, 2), lambda m: m.delete(1), ENOENT),
    (MapSpec(T.HASH, 4, 4, 2), lambda m: m.update(1, b"aaaa", BPF_EXIST), ENOENT),
    (MapSpec(T.HASH, 4, 4, 2),
     lambda m: [m.update(1, b"aaaa"), m.update(1, b"bbbb", BPF_NOEXIST)], EEXIST),
    (MapSpec(T.HASH, 4, 4, 2), lambda m: [m.update(i, b"aaaa") for i in range(3)], E2BIG),
    (MapSpec(T.HASH, 4, 4, 2), lambda m: m.update(1, b"aaaa", BPF_F_LOCK), EINVAL),
    (MapSpec(T.HASH, 4, 4, 2), lambda m: m.update(b"abc", b"aaaa"), EINVAL),
    (MapSpec(T.HASH, 4, 4, 2), lambda m: m.update(1, b"aaaaa"), EINVAL),
    (MapSpec(T.ARRAY, 4, 4, 2), lambda m: m.delete(0), EINVAL),
    (MapSpec(T.ARRAY, 4, 4, 2), lambda m: m.update(2, b"aaaa"), E2BIG),
    (MapSpec(T.ARRAY, 4, 4, 2), lambda m: m.update(0, b"aaaa", BPF_NOEXIST), EEXIST),
    (MapSpec(T.ARRAY, 4, 4, 2), lambda m: m.lookup(5), ENOENT),
    (MapSpec(T.QUEUE, 0, 4, 1), lambda m: m.pop(), ENOENT),
    (MapSpec(T.QUEUE, 0, 4, 1), lambda m: [m.push(b"aaaa"), m.push(b"bbbb")], E2BIG),
    (MapSpec(T.QUEUE, 0, 4, 1), lambda m: m.push(b"aaaa", BPF_NOEXIST), EINVAL),
    (MapSpec(T.QUEUE, 0, 4, 1), lambda m: m.lookup(b""), EINVAL),
    (MapSpec(T.LPM_TRIE, 8, 4, 1, BPF_F_NO_PREALLOC),
     lambda m: [m.update(u32(8) + b"\x0a\0\0\0", b"aaaa"),
                m.update(u32(16) + b"\x0a\0\0\0", b"aaaa")], ENOSPC),
    (MapSpec(T.LPM_TRIE, 8, 4, 1, BPF_F_NO_PREALLOC),
     lambda m: m.update(u32(33) + bytes(4), b"aaaa"), EINVAL),
    (MapSpec(T.BLOOM_FILTER, 0, 4, 1), lambda m: m.delete(None), EOPNOTSUPP),
    (MapSpec(T.HASH, 4, 4, 2, 8), lambda m: m.update(1, b"aaaa"), 1),     # BPF_F_RDONLY: EPERM
])
def test_python_api_errors(spec, action, errno):
    m = create_map(spec)
    with pytest.raises(MapError) as ei:
        action(m)
    assert ei.value.errno == errno
    assert isinstance(ei.value, BpfError)


def test_f_lock_refusal_says_why():
    m = create_map(MapSpec(T.ARRAY, 4, 8, 1))
    with pytest.raises(MapError, match="EINVAL"):
        m.update(0, bytes(8), BPF_F_LOCK)
    assert m.update_raw(u32(0), bytes(8), BPF_F_LOCK) == -EINVAL


@pytest.mark.parametrize("spec,errno", [
    (MapSpec(T.LPM_TRIE, 8, 4, 1), EINVAL),           # no BPF_F_NO_PREALLOC
    (MapSpec(T.LRU_HASH, 4, 4, 1, BPF_F_NO_PREALLOC), 524),
    (MapSpec(T.ARRAY, 4, 4, 0), EINVAL),
    (MapSpec(T.PERCPU_ARRAY, 4, 32769, 1), E2BIG),
    (MapSpec(T.HASH, 4, 4, 1, map_extra=1), EINVAL),
    (MapSpec(T.ARRAY_OF_MAPS, 4, 4, 1), EINVAL),      # no inner map
    (MapSpec(T.ARRAY, 4, 8, 1 << 30), 12),            # more than memory_limit: ENOMEM
    (MapSpec(99, 4, 4, 1), EINVAL),
])
def test_create_errors(spec, errno):
    with pytest.raises(MapError) as ei:
        create_map(spec)
    assert ei.value.errno == errno


def test_unsupported_type_named():
    with pytest.raises(UnsupportedError, match="CGROUP_STORAGE"):
        create_map(MapSpec(T.CGROUP_STORAGE, 12, 8, 0))


def test_python_api_roundtrip():
    m = create_map(MapSpec(T.HASH, 4, 8, 4))
    m.update(1, b"a" * 8)
    m.update(u32(2), b"b" * 8)
    assert m.lookup(1) == b"a" * 8 and m.get(3) is None and m.get(3, b"") == b""
    assert 2 in m and 3 not in m and len(m) == 2
    assert sorted(m.keys()) == [u32(1), u32(2)]
    assert dict(m.items()) == {u32(1): b"a" * 8, u32(2): b"b" * 8}
    assert m.lookup_and_delete(1) == b"a" * 8 and len(m) == 1
    assert m.next_key(u32(9)) == u32(2) and m.next_key(u32(2)) is None
    keys, vals = m.items_numpy(np.uint32, np.uint64)
    assert keys.tolist() == [2] and vals.tolist() == [int.from_bytes(b"b" * 8, "little")]


def test_percpu_python_api():
    m = create_map(MapSpec(T.PERCPU_HASH, 4, 4, 4), num_cpus=3)
    m.update(7, [u32(1), u32(2), u32(3)])
    assert m.lookup(7) == [u32(1), u32(2), u32(3)]
    # The syscall layout: round_up(4, 8) = 8 bytes per CPU.
    assert m.sys_lookup(u32(7)) == (0, u32(1) + bytes(4) + u32(2) + bytes(4) + u32(3) + bytes(4))
    with pytest.raises(MapError):
        m.update(7, [u32(1)])
    keys, vals = m.items_numpy(np.uint32, np.uint32)
    assert vals.tolist() == [[1, 2, 3]]


# ---- program side: pointers --------------------------------------------------------------

def test_array_pointer_writes_reach_the_map_and_numpy():
    m = create_map(MapSpec(T.ARRAY, 4, 4, 3))
    ref = m.lookup_ptr(u32(1))
    assert isinstance(ref, ValueRef) and ref.size == 4
    ref.write(b"\x05\0\0\0")
    assert m.lookup(1) == b"\x05\0\0\0"
    assert m.lookup_ptr(u32(1)).buf is ref.buf and m.lookup_ptr(u32(1)).offset == ref.offset
    view = m.as_numpy(np.uint32)
    assert view.tolist() == [0, 5, 0]
    view[2] = 9
    assert m.lookup(2) == u32(9)
    assert m.lookup_ptr(u32(3)) is None
    with pytest.raises(MapError):
        ref.write(b"12345")


def test_hash_pointer_stable_until_delete_or_replace():
    m = create_map(MapSpec(T.HASH, 4, 4, 4))
    assert m.update_raw(u32(1), b"aaaa", BPF_ANY) == 0
    ref = m.lookup_ptr(u32(1))
    ref.view()[0:1] = b"z"
    assert m.lookup(1) == b"zaaa"
    assert m.lookup_ptr(u32(1)).buf is ref.buf
    # htab_map_update_elem() replaces the element: the old pointer is detached.
    m.update(1, b"bbbb")
    ref.write(b"cccc")
    assert m.lookup(1) == b"bbbb"
    assert m.lookup_ptr(u32(9)) is None


def test_percpu_program_updates():
    m = create_map(MapSpec(T.PERCPU_HASH, 4, 4, 4), num_cpus=2)
    # pcpu_init_value(): a program creating the element sets its CPU, zeroes the others.
    assert m.update_raw(u32(1), u32(7), BPF_ANY, cpu=1) == 0
    assert m.lookup(1) == [u32(0), u32(7)]
    # An existing element is updated in place, on the program's CPU only.
    assert m.update_raw(u32(1), u32(8), BPF_ANY, cpu=0) == 0
    assert m.lookup(1) == [u32(8), u32(7)]
    assert m.lookup_ptr(u32(1), cpu=1).read() == u32(7)
    assert m.lookup_percpu_ptr(u32(1), 0).read() == u32(8)
    assert m.lookup_percpu_ptr(u32(1), 2) is None
    a = create_map(MapSpec(T.PERCPU_ARRAY, 4, 4, 2), num_cpus=2)
    assert a.update_raw(u32(0), u32(3), BPF_ANY, cpu=1) == 0
    assert a.lookup(0) == [u32(0), u32(3)]
    assert a.as_numpy(np.uint32).tolist() == [[0, 3], [0, 0]]


@pytest.mark.parametrize("spec,key,flags,rc", [
    (MapSpec(T.ARRAY, 4, 4, 2), 0, 3, -EINVAL),
    (MapSpec(T.ARRAY, 4, 4, 2), 2, BPF_ANY, -E2BIG),
    (MapSpec(T.ARRAY, 4, 4, 2), 0, BPF_NOEXIST, -EEXIST),
    (MapSpec(T.HASH, 4, 4, 2), 0, BPF_EXIST, -ENOENT),
    (MapSpec(T.HASH, 4, 4, 2), 0, BPF_F_LOCK, -EINVAL),
])
def test_update_raw_codes(spec, key, flags, rc):
    assert create_map(spec).update_raw(u32(key), bytes(4), flags) == rc


def test_queue_stack_program_side():
    q = create_map(MapSpec(T.QUEUE, 0, 1, 2))
    s = create_map(MapSpec(T.STACK, 0, 1, 2))
    for m in (q, s):
        assert m.push_raw(b"a", BPF_ANY) == 0 and m.push_raw(b"b", BPF_ANY) == 0
        assert m.push_raw(b"c", BPF_ANY) == -E2BIG
        # queue_stack_map_push_elem(): full + BPF_EXIST drops the oldest ("a").
        assert m.push_raw(b"c", BPF_EXIST) == 0
    assert q.values() == [b"b", b"c"] and s.values() == [b"c", b"b"]
    assert q.peek_raw() == (0, b"b") and s.peek_raw() == (0, b"c")
    assert q.pop_raw() == (0, b"b") and s.pop_raw() == (0, b"c")
    assert q.pop() == b"c" and s.pop() == b"b"
    assert q.pop_raw() == (-ENOENT, None)


def test_bloom_membership():
    m = create_map(MapSpec(T.BLOOM_FILTER, 0, 4, 100))
    m.push(b"abcd")
    assert b"abcd" in m and m.contains_raw(b"abcd") == 0
    assert m.push_raw(b"abcd", BPF_EXIST) == -EINVAL


# ---- LRU eviction (exact LRU; the kernel differs, see LruState) --------------------------

def test_lru_evicts_least_recently_used():
    m = create_map(MapSpec(T.LRU_HASH, 4, 4, 3))
    for k in (1, 2, 3):
        m.update_raw(u32(k), u32(k), BPF_ANY)
    # A program lookup is a use: order of last use is now 2, 3, 1.
    assert m.lookup_ptr(u32(1)) is not None
    m.update_raw(u32(4), u32(4), BPF_ANY)          # full: evicts 2
    assert sorted(m.keys()) == [u32(1), u32(3), u32(4)]
    # A bpf(2) lookup is not a use (lookup_elem_sys_only): 3 is still the oldest.
    m.lookup(3)
    m.update(5, u32(5))
    assert sorted(m.keys()) == [u32(1), u32(4), u32(5)]
    # Updating an existing key makes it the most recent and evicts nothing.
    m.update(1, u32(11))
    m.update(6, u32(6))                            # evicts 4
    assert sorted(m.keys()) == [u32(1), u32(5), u32(6)]
    # A failing BPF_NOEXIST update changes nothing.
    assert m.update_raw(u32(5), u32(0), BPF_NOEXIST) == -EEXIST
    assert len(m) == 3


def test_lru_percpu_lists():
    # BPF_F_NO_COMMON_LRU on 2 CPUs, max_entries 3 -> rounded up to 4, 2 per CPU.
    m = create_map(MapSpec(T.LRU_HASH, 4, 4, 3, BPF_F_NO_COMMON_LRU), num_cpus=2)
    assert m.capacity == 4
    for k in (1, 2):
        m.update_raw(u32(k), u32(k), BPF_ANY, cpu=0)
    m.update_raw(u32(3), u32(3), BPF_ANY, cpu=1)
    m.update_raw(u32(4), u32(4), BPF_ANY, cpu=0)   # CPU 0 full: evicts its oldest, 1
    assert sorted(m.keys()) == [u32(2), u32(3), u32(4)]


# ---- ring buffer ---------------------------------------------------------------------

def test_ringbuf_space_and_records():
    rb = create_map(MapSpec(T.RINGBUF, 0, 0, 4096))
    # A record takes round_up(size + 8, 8); the producer may run at most 4095 ahead.
    r1 = rb.reserve(4080, packet_index=0)            # 4088 bytes
    assert r1 is not None and rb.reserve(1) is None  # 4088 + 16 > 4095
    assert rb.output(b"x", packet_index=1) == -EAGAIN
    assert rb.query(BPF_RB_PROD_POS) == 4088 and rb.query(BPF_RB_RING_SIZE) == 4096
    r1.write(b"hi")
    rb.submit(r1)
    recs = rb.consume()
    assert [(r.packet_index, r.data[:2], len(r.data)) for r in recs] == [(0, b"hi", 4080)]
    assert rb.query(BPF_RB_CONS_POS) == 4088 and rb.query(BPF_RB_AVAIL_DATA) == 0
    a = rb.reserve(4, packet_index=2)
    assert rb.output(b"abc", packet_index=3) == 0
    d = rb.reserve(1, packet_index=4)
    rb.discard(d)
    assert rb.consume() == []                        # the first record is still busy
    a.write(b"AAAA")
    rb.submit(a)
    assert [(r.packet_index, r.data) for r in rb.consume()] == [(2, b"AAAA"), (3, b"abc")]
    assert rb.reserve(8, flags=1) is None and rb.output(b"x", flags=4) == -EINVAL
    with pytest.raises(MapError):
        rb.submit(a)
    assert rb.sys_lookup(None) == (-524, None)


# ---- perf event array, redirect maps, map-in-map -----------------------------------------

def test_perf_event_output():
    m = create_map(MapSpec(T.PERF_EVENT_ARRAY, 4, 4, 2), num_cpus=2)
    # __bpf_perf_event_output(): index range, then a reader there, then its CPU.
    assert m.output(5, b"x", cpu=0) == -E2BIG
    assert m.output(BPF_F_CURRENT_CPU, b"x", cpu=0) == -ENOENT
    m.open_all()
    assert m.output(BPF_F_CURRENT_CPU, b"hello", cpu=1, packet_index=7) == 0
    assert m.output(0, b"x", cpu=1) == -EOPNOTSUPP
    assert [(r.packet_index, r.index, r.data) for r in m.records] == [(7, 1, b"hello")]


def test_redirect_targets():
    dev = create_map(MapSpec(T.DEVMAP, 4, 4, 4), netdevs={1, 2})
    dev.update(0, u32(2))
    with pytest.raises(MapError):
        dev.update(1, u32(3))                     # no such device: EINVAL
    assert dev.redirect_target(0) == 2 and dev.redirect_target(1) is None
    assert dev.lookup_ptr(u32(0)).read() == u32(2)
    dh = create_map(MapSpec(T.DEVMAP_HASH, 4, 8, 4))
    dh.update(100, u32(5) + bytes(4))
    assert dh.redirect_target(100) == 5 and dh.redirect_target(1) is None
    with pytest.raises(UnsupportedError):
        dh.update(101, u32(5) + u32(3))           # an XDP program on the entry
    cpu = create_map(MapSpec(T.CPUMAP, 4, 4, 4), num_cpus=2)
    cpu.update(1, u32(64))
    assert cpu.redirect_target(1) == 64 and cpu.redirect_target(0) is None
    xsk = create_map(MapSpec(T.XSKMAP, 4, 4, 2))
    sock = object()
    xsk.update(0, sock)
    with pytest.raises(MapError) as ei:
        xsk.update(1, sock, BPF_EXIST)
    assert ei.value.errno == ENOENT
    assert xsk.redirect_target(0) is sock and xsk.lookup_ptr(u32(0)) is sock


def test_map_in_map_program_lookup():
    inner_spec = MapSpec(T.ARRAY, 4, 4, 1)
    outer = create_map(MapSpec(T.ARRAY_OF_MAPS, 4, 4, 2, inner=inner_spec))
    inner = create_map(inner_spec)
    outer.update(1, inner)
    assert outer.lookup_ptr(u32(1)) is inner and outer.lookup_ptr(u32(0)) is None
    with pytest.raises(MapError) as ei:
        outer.update(0, create_map(MapSpec(T.ARRAY, 4, 4, 2)))   # max_entries differs
    assert ei.value.errno == EINVAL
    hom = create_map(MapSpec(T.HASH_OF_MAPS, 4, 4, 2, inner=inner_spec))
    hom.update(9, inner)
    assert hom.lookup_ptr(u32(9)) is inner and hom.lookup(9) is inner
    prog = create_map(MapSpec(T.PROG_ARRAY, 4, 4, 2))
    target = object()
    prog.update(1, target)
    assert prog.get_object(1) is target and prog.get_object(0) is None
    with pytest.raises(UnsupportedError):
        prog.sys_update(u32(0), u32(3), 0)


def test_dump_shapes():
    """The --dump-maps JSON shape (issue 4): key/value hex, per-CPU value lists."""
    h = create_map(MapSpec(T.HASH, 4, 2, 2))
    h.update(1, b"\xab\xcd")
    assert h.dump() == [{"key": "01000000", "value": "abcd"}]
    p = create_map(MapSpec(T.PERCPU_ARRAY, 4, 2, 1), num_cpus=2)
    p.update(0, [b"\x01\x02", b"\x03\x04"])
    assert p.dump() == [{"key": "00000000", "value": ["0102", "0304"]}]
    q = create_map(MapSpec(T.STACK, 0, 1, 3))
    q.push(b"\x01")
    q.push(b"\x02")
    assert q.dump() == [{"value": "02"}, {"value": "01"}]
    rb = create_map(MapSpec(T.RINGBUF, 0, 0, 4096))
    rb.output(b"\x07", packet_index=4)
    assert rb.dump() == [{"packet": 4, "data": "07"}]


def test_keys_may_be_views():
    """The interpreter may pass keys as memoryviews of its stack: they are copied."""
    h = create_map(MapSpec(T.HASH, 4, 4, 2))
    stack = bytearray(b"\x01\0\0\0")
    assert h.update_raw(memoryview(stack), b"aaaa", BPF_ANY) == 0
    stack[0] = 2                                   # the stored key must not change
    assert h.lookup_ptr(memoryview(bytearray(u32(1)))).read() == b"aaaa"
    assert h.lookup_ptr(memoryview(stack)) is None
    t = create_map(MapSpec(T.LPM_TRIE, 8, 4, 2, BPF_F_NO_PREALLOC))
    key = bytearray(u32(8) + b"\x0a\0\0\0")
    assert t.update_raw(memoryview(key), b"bbbb", BPF_ANY) == 0
    key[4] = 0x0b
    assert t.lookup(u32(32) + b"\x0a\x01\x02\x03") == b"bbbb"
    with pytest.raises(MapError):
        h.sys_lookup(1)                            # sys_* take bytes


def test_lru_policy_choice():
    with pytest.raises(UnsupportedError):
        create_map(MapSpec(T.LRU_HASH, 4, 4, 4), lru_policy="clock")
    # The kernel policy on one CPU, worked by hand (bpf_lru_list.c): 64 entries and
    # 1 CPU give target_free = clamp(64 / 1 / 2, 1, 128) = 32 nodes per refill.  The
    # 65th insert flushes the 32 pending nodes to the inactive list, finds no free node
    # and shrinks 32 unreferenced ones from the inactive tail: keys 0..31 are evicted.
    m = create_map(MapSpec(T.LRU_HASH, 4, 4, 64), lru_policy="kernel")
    for i in range(65):
        m.update(i, u32(i))
    assert sorted(int.from_bytes(k, "little") for k in m.keys()) == list(range(32, 65))


@pytest.mark.parametrize("key_size", [4, 8, 12, 13, 16, 20, 36, 64])
def test_htab_hash_many_equals_htab_hash(key_size):
    # the vector engine hashes many keys at once; each must equal the scalar jhash
    # (jhash2 for whole words, jhash otherwise) that fixes the kernel's bucket order
    import numpy as np
    from bpfkit.ebpf.maps.jhash import _CACHE, htab_hash_many, jhash, jhash2
    rng = np.random.default_rng(key_size)
    keys = rng.integers(0, 256, size=(300, key_size), dtype=np.uint8)
    keys[0] = 0
    keys[1] = 255
    _CACHE.clear()
    for seed in (0, 0x12345678):
        want = [(jhash2 if key_size % 4 == 0 else jhash)(bytes(r), seed) for r in keys]
        assert htab_hash_many(keys, seed) == want
