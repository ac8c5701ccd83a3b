"""Hash map values in a Slab (bpfkit.ebpf.maps.slab): rows in pages that never move,
freed rows reused only once no pointer holds them, and HashMap.insert_many (the vector
engine's batched inserts) equal to inserting one key at a time."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from bpfkit.ebpf.maps import BPF_ANY, BPF_NOEXIST, MapSpec, MapType, create_map
from bpfkit.ebpf.maps.slab import Slab

T = MapType


def u32(i):
    return i.to_bytes(4, "little")


def test_slab_grows_in_pages_that_do_not_move():
    s = Slab(12, first_rows=4)
    assert s.width == 16                       # whole u64 words
    rows = s.alloc_many(3) + [s.alloc() for _ in range(10)]
    assert rows == list(range(13))
    first = s.view(0)
    first[:4] = b"abcd"
    s.alloc_many(100)                          # more pages; row 0 stays where it was
    assert len(s.pages) > 2 and s.starts[:3] == [0, 4, 8]
    assert s.view(0) is first and bytes(s.row(0)[:4]) == b"abcd"
    got = s.gather(np.array([0, 12, 100]), 4)
    assert got.shape == (3, 4) and bytes(got[0]) == b"abcd"


def test_slab_reuses_a_row_only_when_no_view_holds_it():
    s = Slab(8, first_rows=8)
    a, b = s.alloc_many(2)
    s.free(a)                                  # never viewed: reusable at once
    assert s.alloc() == a
    v = s.view(b)
    v[:1] = b"x"
    s.free(b)
    c = s.alloc()                              # b is still held through v
    assert c not in (a, b)
    del v
    gc.collect()
    assert s.alloc() == b                      # released: reused, and zeroed
    assert bytes(s.row(b)) == bytes(8)


def test_slab_vector_ops_across_pages():
    s = Slab(16, first_rows=2)
    rows = np.array(s.alloc_many(9), np.int64)
    s.scatter(rows, np.arange(9 * 8, dtype=np.uint8).reshape(9, 8))
    s.add_words(np.r_[rows, rows[:3]], np.zeros(12, np.int64),
                np.full(12, (1 << 64) - 1, np.uint64))          # -1, wrapping
    s.scatter_bytes(rows[[1, 7]], np.array([9, 15]), np.array([7, 8], np.uint8))
    got = s.gather(rows, 16)
    base = np.arange(9 * 8, dtype=np.uint8).reshape(9, 8).view("<u8").ravel()
    want = base - np.where(np.arange(9) < 3, 2, 1).astype(np.uint64)
    assert got[:, :8].copy().view("<u8").ravel().tolist() == want.tolist()
    assert got[1, 9] == 7 and got[7, 15] == 8


def test_hash_pointer_past_delete_is_detached_and_row_reused_after():
    m = create_map(MapSpec(T.HASH, 4, 8, 4))
    m.update(1, bytes(8))
    ref = m.lookup_ptr(u32(1))
    m.delete(1)
    m.update(2, b"22222222")                   # may not take 1's row: ref holds it
    ref.write(b"zzzzzzzz")
    assert m.lookup(2) == b"22222222"
    # delete + reinsert of the same key: a fresh element, the old pointer detached
    m.update(1, b"11111111")
    old = m.lookup_ptr(u32(1))
    m.delete(1)
    assert m.update_raw(u32(1), b"aaaaaaaa", BPF_NOEXIST) == 0
    old.write(b"bbbbbbbb")
    assert m.lookup(1) == b"aaaaaaaa"
    del ref, old
    gc.collect()
    for k in range(3, 5):
        m.update(k, u32(k) * 2)
    assert dict(m.items()) == {u32(2): b"22222222", u32(1): b"aaaaaaaa",
                               u32(3): u32(3) * 2, u32(4): u32(4) * 2}
    assert m._slab.rows <= 6                   # freed rows were reused


def test_hash_many_deletes_and_inserts_keep_contents():
    m = create_map(MapSpec(T.HASH, 4, 12, 3000))
    model = {}
    rng = np.random.default_rng(5)
    for step in range(6000):
        k = int(rng.integers(0, 2500))
        if rng.random() < 0.3 and k in model:
            m.delete(k)
            del model[k]
        else:
            v = bytes(rng.integers(0, 256, 12, dtype=np.uint8))
            m.update(k, v)
            model[k] = v
    assert {int.from_bytes(k, "little"): v for k, v in m.items()} == model
    assert m._slab.rows < 3000


@pytest.mark.parametrize("mtype", [T.HASH, T.PERCPU_HASH])
def test_insert_many_equals_one_by_one(mtype):
    spec = MapSpec(mtype, 8, 12, 64)
    rng = np.random.default_rng(1)
    keys = [bytes(r) for r in rng.integers(0, 256, (40, 8), dtype=np.uint8)]
    vals = rng.integers(0, 256, (40, 12), dtype=np.uint8)
    a = create_map(spec, num_cpus=2)
    b = create_map(spec, num_cpus=2)
    for m in (a, b):
        m.update_raw(keys[0], bytes(12), BPF_ANY, cpu=0)
        m.update_raw(keys[1], bytes(12), BPF_ANY, cpu=0)
        m.delete(keys[0])                     # a free row
    assert a.insert_many(keys[2:], vals[2:], cpu=0)
    for k, v in zip(keys[2:], vals[2:]):
        assert b.update_raw(k, v.tobytes(), BPF_NOEXIST, cpu=0) == 0
    assert list(a.keys()) == list(b.keys())               # the same bucket order
    assert list(a.items()) == list(b.items())
    # refused, and nothing changed: an existing key, a repeated key, no room
    before = list(a.items())
    assert not a.insert_many([keys[5], b"\xff" * 8], vals[:2])
    assert not a.insert_many([b"\xfe" * 8, b"\xfe" * 8], vals[:2])
    assert not a.insert_many([bytes([i]) * 8 for i in range(30)], vals[:30])
    assert list(a.items()) == before


def test_percpu_hash_rows_hold_every_cpu():
    m = create_map(MapSpec(T.PERCPU_HASH, 4, 4, 8), num_cpus=3)
    assert m.update_raw(u32(1), u32(7), BPF_ANY, cpu=2) == 0
    assert m.lookup(1) == [u32(0), u32(0), u32(7)]
    m.update(1, [u32(1), u32(2), u32(3)])
    ref = m.lookup_ptr(u32(1), cpu=1)
    assert ref.read() == u32(2) and ref.offset == 8
    ref.write(u32(9))
    assert m.lookup_and_delete(1) == [u32(1), u32(9), u32(3)]
    assert m.lookup_ptr(u32(1)) is None
