"""The vector engine's maps (bpfkit.ebpf.vector.mapwave) against the reference
interpreter under adversarial traffic (issue 7, "Proof of equality").

Map semantics are sequential (DESIGN.md): every packet sees, and the maps end with,
exactly what running the packets one after another in capture order gives.  The
programs here are built so that any reordering shows: per-flow counters created with
lookup / update(BPF_NOEXIST) / lookup again, updated by atomic add, by the
load-add-store idiom clang emits, by a fetch-add whose old value is returned, by
exchange; a global counter every packet touches; deletes; a hash map small enough to
fill up (E2BIG); per-CPU maps.  The traffic: one elephant flow, all-distinct flows,
interleaved flows, a Zipf mix, with delete markers; runs split into several batches
and small waves (8 or 13 lanes) so that lanes conflict within and across wave and batch
boundaries; and hypothesis-generated sequences of map operations.  Compared (as in
tests/test_vector_engine.py): retval, instruction counts, faults, output, and
dump_maps() (values and hash iteration order)."""
from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bpfkit.ebpf.maps import MapSpec, MapType, create_map
from bpfkit.ebpf.program import Program
from bpfkit.ebpf.runner import run_batch
from bpfkit.pcap import PacketBatch

from test_vector_engine import _split, assert_same, run_both

HASH, PHASH = MapType.HASH, MapType.PERCPU_HASH
ARRAY, PARRAY = MapType.ARRAY, MapType.PERCPU_ARRAY
DELETE_MARK = 0xDE


# --- traffic --------------------------------------------------------------------------------
# a packet: 4-byte flow key, a flag byte (DELETE_MARK: delete the flow), padding; the
# length (14..160) is part of the value the programs add up

def _pkt(rng: random.Random, key: int, delete: bool = False) -> bytes:
    n = rng.randint(14, 160)
    return struct.pack("<IB", key, DELETE_MARK if delete else rng.randrange(0xDE)) + \
        rng.randbytes(n - 5)


def traffic(kind: str, n: int = 160, seed: int = 1, deletes: int = 0) -> list[bytes]:
    """kind: elephant (one flow), distinct (every packet its own flow), interleaved
    (5 flows round robin), zipf (a skewed mix of 60 flows).  deletes: every
    `deletes`-th packet is a delete marker for its flow (0: none)."""
    rng = random.Random(seed)
    if kind == "elephant":
        keys = [0x0A000001] * n
    elif kind == "distinct":
        keys = [0x0B000000 + i for i in range(n)]
    elif kind == "interleaved":
        keys = [0x0C000000 + i % 5 for i in range(n)]
    elif kind == "zipf":
        weights = [1 / (r + 1) ** 1.2 for r in range(60)]
        keys = [0x0D000000 + k for k in rng.choices(range(60), weights, k=n)]
    else:
        raise ValueError(kind)
    return [_pkt(rng, k, bool(deletes) and i % deletes == deletes - 1)
            for i, k in enumerate(keys)]


TRAFFIC = ["elephant", "distinct", "interleaved", "zipf"]


# --- programs -------------------------------------------------------------------------------

# the flow key (u32 at data + 0, masked for arrays) at fp-4, the length in r9, the
# flag byte in r8; `flows` maps key -> {u64 packets; u64 bytes}
_HEAD = """
    r6 = r1
{pre}
    r7 = *(u32 *)(r6 + 0)
    r9 = *(u32 *)(r6 + 4)
    r9 -= r7
    r1 = *(u32 *)(r7 + 0)
    {mask}
    *(u32 *)(r10 - 4) = r1
    r8 = *(u8 *)(r7 + 4)
    {delete}
    r1 = flows ll
    r2 = r10
    r2 += -4
    call 1
    if r0 != 0 goto found
    *(u64 *)(r10 - 24) = 1
    *(u64 *)(r10 - 16) = r9
    r1 = flows ll
    r2 = r10
    r2 += -4
    r3 = r10
    r3 += -24
    r4 = 1
    call 2
    if r0 != 0 goto out_rc
    r1 = flows ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto gone
    r0 = *(u64 *)(r0 + 8)
    r0 += 1000
    exit
gone:
    r0 = 999
    exit
out_rc:
    r0 &= 0xffff
    exit
"""

_DELETE = """
    if r8 != 0xde goto keep
    r1 = flows ll
    r2 = r10
    r2 += -4
    call 3
    r0 += 5000
    exit
keep:
"""

# what the found path does with the value at r0
UPDATES = {
    # non-fetching atomic adds (commutative: the engine may sum them)
    "atomic": """
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
    lock *(u64 *)(r0 + 8) += r9
    r0 = 2
    exit
""",
    # clang's `v->packets++; v->bytes += len`
    "load_add_store": """
    r1 = *(u64 *)(r0 + 0)
    r1 += 1
    *(u64 *)(r0 + 0) = r1
    r1 = *(u64 *)(r0 + 8)
    r1 += r9
    *(u64 *)(r0 + 8) = r1
    r0 = 2
    exit
""",
    # fetch-add whose old value is returned: order-dependent
    "fetch": """
    r1 = 1
    r1 = atomic_fetch_add((u64 *)(r0 + 0), r1)
    lock *(u64 *)(r0 + 8) += r9
    r0 = r1
    exit
""",
    # an add, then a read of the word: returns the running count
    "add_then_read": """
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
    r0 = *(u64 *)(r0 + 0)
    exit
""",
    # exchange (bytes = this length, return the previous length) and a 32-bit add
    "xchg": """
    r1 = r9
    r1 = xchg_64(r0 + 8, r1)
    w2 = 1
    lock *(u32 *)(r0 + 0) += r2
    r0 = r1
    exit
""",
    # a blind overwrite of the value (last writer wins), no read
    "store": """
    *(u64 *)(r0 + 0) = r9
    r1 = 7
    *(u32 *)(r0 + 8) = r1
    r0 = 2
    exit
""",
}


def flow_program(update: str, map_type, entries: int, deletes: bool, *,
                 total: bool = False) -> tuple[Program, list[MapSpec]]:
    """The per-flow counter program; `total`: also count every packet in a 1-entry
    ARRAY `total` with load-add-store first."""
    arrays = map_type in (ARRAY, PARRAY)
    specs = [MapSpec(map_type, 4, 16, entries, name="flows")]
    pre = ""
    if total:
        specs.append(MapSpec(ARRAY, 4, 8, 1, name="total"))
        pre = TOTAL
    src = _HEAD.format(pre=pre, mask=f"r1 &= {entries - 1}" if arrays else "",
                       delete=_DELETE if deletes else "")
    src += "found:\n" + UPDATES[update]
    return Program.from_asm(src, prog_type="xdp", maps=specs), specs


TOTAL = """
    *(u32 *)(r10 - 4) = 0
    r1 = total ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto start
    r1 = *(u64 *)(r0 + 0)
    r1 += 1
    *(u64 *)(r0 + 0) = r1
start:"""


def _compare(prog, pkts, *, runs=((1 << 14, 1), (13, 3)), num_cpus: int = 1, maps=None,
             what="", calls=None):
    """vector == interp for each (wave_size, number of batches) in `runs`."""
    out = None
    for w, p in runs:
        out = run_both(prog, _split(pkts, p), wave_size=w, maps=maps, calls=calls,
                       what=f"{what} wave_size={w} batches={p}", num_cpus=num_cpus)
    return out


# --- the table ------------------------------------------------------------------------------

CASES = [
    # (update, map type, entries, deletes)
    ("atomic", HASH, 1024, False),
    ("atomic", HASH, 1024, True),
    ("load_add_store", HASH, 1024, False),
    ("load_add_store", HASH, 1024, True),
    ("fetch", HASH, 1024, True),
    ("add_then_read", HASH, 1024, False),
    ("xchg", HASH, 1024, True),
    ("store", HASH, 1024, True),
    # small enough to fill up: later inserts fail with E2BIG, deletes free slots
    ("atomic", HASH, 8, False),
    ("fetch", HASH, 8, True),
    ("load_add_store", HASH, 16, True),
    ("atomic", PHASH, 1024, True),
    ("fetch", PHASH, 8, True),
    ("atomic", ARRAY, 64, False),
    ("load_add_store", ARRAY, 4, False),
    ("fetch", ARRAY, 64, False),
    ("add_then_read", PARRAY, 4, False),
    ("load_add_store", PARRAY, 64, False),
]


@pytest.mark.parametrize("update,map_type,entries,deletes", CASES,
                         ids=[f"{u}-{t.name.lower()}-{e}{'-del' if d else ''}"
                              for u, t, e, d in CASES])
def test_flow_counters(update, map_type, entries, deletes):
    prog, _ = flow_program(update, map_type, entries, deletes)
    for kind in TRAFFIC:
        pkts = traffic(kind, deletes=7 if deletes else 0)
        vec, ref = _compare(prog, pkts, what=f"{update}/{map_type.name}/{entries}/{kind}",
                            num_cpus=2 if map_type in (PHASH, PARRAY) else 1)
        assert ref.dump_maps()["flows"]          # the traffic did create flows


@pytest.mark.parametrize("update", ["atomic", "load_add_store", "fetch"])
def test_global_counter_and_flows(update):
    """Every packet also increments one global counter (each lane reads what the
    previous one wrote): the engine must still be exact, one wave at a time."""
    prog, _ = flow_program(update, HASH, 32, True, total=True)
    for kind in ("zipf", "distinct"):
        vec, ref = _compare(prog, traffic(kind, deletes=5), what=f"total+{update}/{kind}")
        assert ref.dump_maps()["total"] == [{"key": "00000000",
                                             "value": (160).to_bytes(8, "little").hex()}]


def test_full_map_e2big_is_returned_per_packet():
    """A HASH of 8 entries and 160 distinct flows: the 9th and later new flows get
    -E2BIG from update (returned as -7 & 0xffff), in capture order, until a delete
    frees a slot."""
    prog, _ = flow_program("atomic", HASH, 8, True)
    pkts = traffic("distinct", deletes=0)
    # every 10th packet deletes the flow of the packet before it
    for i in range(9, len(pkts), 10):
        pkts[i] = pkts[i - 1][:4] + bytes([DELETE_MARK]) + pkts[i][5:]
    vec, ref = _compare(prog, pkts, runs=((1 << 14, 1), (8, 4)), what="e2big")
    assert ref.retval.tolist().count(0xFFF9) > 100


# --- every kind of update on the same words, chosen per packet --------------------------------

MIXED = """
    r8 &= {ops}
    if r8 == 0 goto a64
    if r8 == 1 goto a32
    if r8 == 2 goto las
    if r8 == 3 goto blind
    if r8 == 4 goto fetch
    if r8 == 5 goto xchg
    if r8 == 6 goto byte
    r2 = r0
    r1 = r9
    r0 = *(u64 *)(r2 + 8)
    r0 = cmpxchg_64(r2 + 8, r0, r1)
    exit
a64:
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
    lock *(u64 *)(r0 + 8) += r9
    r0 = 2
    exit
a32:
    w1 = 1
    lock *(u32 *)(r0 + 0) += r1
    lock *(u32 *)(r0 + 12) += r9
    r0 = 3
    exit
las:
    r1 = *(u64 *)(r0 + 0)
    r1 += 1
    *(u64 *)(r0 + 0) = r1
    r0 = r1
    exit
blind:
    *(u32 *)(r0 + 4) = r9
    r0 = 2
    exit
fetch:
    r1 = 1
    r1 = atomic_fetch_add((u64 *)(r0 + 0), r1)
    r0 = r1
    exit
xchg:
    r1 = r9
    r1 = xchg_64(r0 + 8, r1)
    r0 = r1
    exit
byte:
    r1 = *(u8 *)(r0 + 1)
    r1 += 1
    *(u8 *)(r0 + 1) = r1
    lock *(u64 *)(r0 + 8) += r9
    r0 = 2
    exit
"""


def _mixed_program(map_type, entries, ops=7):
    arrays = map_type in (ARRAY, PARRAY)
    specs = [MapSpec(map_type, 4, 16, entries, name="flows")]
    src = _HEAD.format(pre="", mask=f"r1 &= {entries - 1}" if arrays else "",
                       delete="" if arrays else _DELETE) + "found:\n" + \
        MIXED.replace("{ops}", str(ops))
    return Program.from_asm(src, prog_type="xdp", maps=specs), specs[0]


def _prefilled(spec, keys, num_cpus=1):
    """Values just below a 32-bit carry, so that adds of different widths and orders
    give different words."""
    def make():
        m = create_map(spec, num_cpus=num_cpus)
        for k in keys:
            m.update(struct.pack("<I", k), struct.pack("<QQ", 0xFFFF_FFF0 + (k & 7),
                                                       0xFFFF_FF00) * num_cpus)
        return {"flows": m}
    return make


MIXED_MAPS = [(HASH, 64), (ARRAY, 4), (PHASH, 64), (PARRAY, 4)]


@pytest.mark.parametrize("ops", [7, 1, 6], ids=["all", "adds", "rmw"])
@pytest.mark.parametrize("map_type,entries", MIXED_MAPS,
                         ids=[f"{t.name.lower()}-{e}" for t, e in MIXED_MAPS])
@pytest.mark.parametrize("kind", ["elephant", "interleaved", "zipf"])
def test_mixed_updates_on_the_same_words(map_type, entries, kind, ops):
    """Each packet (flag byte & ops) picks one of: 64-bit add, 32-bit add,
    load-add-store, a blind 32-bit store, fetch-add, xchg, a byte read-modify-write
    next to an add, cmpxchg -- on the same two words of its flow, which starts just
    below a 32-bit carry.  ops=1: only the two widths of atomic add; ops=6: 64-bit add,
    load-add-store, fetch-add, byte read-modify-write."""
    prog, spec = _mixed_program(map_type, entries, ops)
    pkts = traffic(kind, deletes=0 if map_type in (ARRAY, PARRAY) else 11)
    keys = sorted({struct.unpack_from("<I", p)[0] for p in pkts})
    if map_type in (ARRAY, PARRAY):
        keys = list(range(entries))
    _compare(prog, pkts, maps=_prefilled(spec, keys),
             what=f"mixed({ops})/{map_type.name}/{kind}")


# --- minimal cases --------------------------------------------------------------------------

ONE = MapSpec(ARRAY, 4, 16, 1, name="a")
_LOOKUP0 = """
    r6 = r1
    r7 = *(u32 *)(r6 + 0)
    r9 = *(u8 *)(r7 + 0)
    *(u32 *)(r10 - 4) = 0
    r1 = a ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
"""


def _one(src: str) -> Program:
    return Program.from_asm(_LOOKUP0 + src + "out:\n    r0 = 2\n    exit\n", prog_type="xdp",
                            maps=[ONE])


def _one_prefilled(first: int):
    def make():
        m = create_map(ONE)
        m.update(bytes(4), struct.pack("<QQ", first, 0))
        return {"a": m}
    return make


def test_atomic_add_and_store_to_the_same_word_in_one_packet():
    """Each packet adds 1 to bytes 0..3 (lock add, u32) and stores a byte at offset 5
    of the same 8-byte word: after 3 packets the counter is 3."""
    prog = _one("""
    r1 = 1
    lock *(u32 *)(r0 + 0) += r1
    r1 = 7
    *(u8 *)(r0 + 5) = r1
""")
    batch = PacketBatch.from_packets([bytes(20)] * 3)
    vec = run_batch(prog, batch, engine="vector")
    ref = run_batch(prog, batch, engine="interp")
    assert ref.dump_maps()["a"][0]["value"] == "03000000000700000000000000000000"
    assert_same(vec, ref, what="add+store same word")


def test_atomic_adds_of_two_widths_keep_capture_order():
    """Packet 0 adds 1 to the u64 at offset 0, packet 1 adds 1 to its low u32; the
    value starts at 0xffffffff.  In capture order: 0x1_0000_0000, then the u32 add
    wraps the low half only: 0x1_0000_0001 (the other order would give 1)."""
    prog = _one("""
    r1 = 1
    if r9 == 1 goto small
    lock *(u64 *)(r0 + 0) += r1
    goto out
small:
    lock *(u32 *)(r0 + 0) += r1
""")
    batch = PacketBatch.from_packets([bytes(20), b"\x01" + bytes(19)])
    vec = run_batch(prog, batch, engine="vector", maps=_one_prefilled(0xFFFFFFFF)())
    ref = run_batch(prog, batch, engine="interp", maps=_one_prefilled(0xFFFFFFFF)())
    assert ref.dump_maps()["a"][0]["value"] == struct.pack("<QQ", 0x1_0000_0001, 0).hex()
    assert_same(vec, ref, what="u64 add then u32 add")


def _interpreted_lanes(prog, batches, wave_size, maps=None) -> int:
    """How many lanes the vector engine handed to the reference interpreter (its
    conflict re-runs), counted through VectorProgram._interp_lanes."""
    from bpfkit.ebpf.runner import Runner, _Collector
    col = _Collector(Runner(prog, maps=maps() if maps else None), "vector")
    vp = col.vprog
    assert vp is not None and hasattr(vp, "_interp_lanes"), \
        "instrumentation point VectorProgram._interp_lanes is gone: update this test"
    n = [0]
    orig, run = vp._interp_lanes, vp.run

    def counting(inp, lanes, *a, **k):
        n[0] += len(lanes)
        return orig(inp, lanes, *a, **k)
    vp._interp_lanes = counting
    vp.run = lambda inp, seed=0: run(inp, seed=seed, wave_size=wave_size)
    for b in batches:
        col.batch(b)
    return n[0]


@pytest.mark.parametrize("kind,at_most", [("distinct", 0), ("zipf", 8), ("elephant", 16)])
def test_equality_tests_exercise_the_wave_path(kind, at_most):
    """The tables above compare the engine's own map path, not only its interpreter
    re-runs: with waves of 13 lanes over 4 batches, non-fetching adds on existing flows
    commit from the waves (only lanes touching a flow created in the same wave re-run)."""
    prog, _ = flow_program("atomic", HASH, 1024, False)
    assert _interpreted_lanes(prog, _split(traffic(kind), 4), 13) <= at_most


# --- the same from C: what clang emits ------------------------------------------------------

FLOWS_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct val { __u64 packets; __u64 bytes; };

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 24);
    __type(key, __u32);
    __type(value, struct val);
} flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} total SEC(".maps");

SEC("xdp")
int count(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 6 > end)
        return XDP_ABORTED;
    __u32 key = *(__u32 *)data;
    __u8 flag = *((__u8 *)data + 4);
    __u32 zero = 0;
    __u64 seen = 0, *t = bpf_map_lookup_elem(&total, &zero);
    if (t) {
        seen = *t;
        *t = seen + 1;                          /* load-add-store */
    }
    if (flag == 0xde) {
        long rc = bpf_map_delete_elem(&flows, &key);
        return rc ? 100 : 101;
    }
    struct val *v = bpf_map_lookup_elem(&flows, &key);
    if (!v) {
        struct val init = { 1, end - data };
        long rc = bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST);
        if (rc)
            return 200 + (int)-rc;              /* E2BIG when full */
        v = bpf_map_lookup_elem(&flows, &key);
        return v ? 300 + (int)v->bytes : 400;
    }
    __u64 old = __sync_fetch_and_add(&v->packets, 1);
    v->bytes += end - data;                     /* load-add-store */
    if (flag & 1)
        __sync_fetch_and_add(&v->bytes, 1);
    return (int)(old * 1000 + (seen & 0xff));
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.clang
def test_clang_flow_counter(tmp_path):
    """The per-flow counter as clang compiles it (fetch-add returned, v->bytes += len,
    a global per-CPU counter, deletes, a 24-entry hash that fills up)."""
    import subprocess
    from bpfkit.ebpf.elf import open_elf
    from test_elf_load import CFLAGS
    src = tmp_path / "flows.c"
    src.write_text(FLOWS_C)
    obj = tmp_path / "flows.o"
    subprocess.run(["clang", *CFLAGS, "-c", str(src), "-o", str(obj)], check=True,
                   capture_output=True)
    o = open_elf(obj)
    prog = o.program("count")
    for kind in TRAFFIC:
        pkts = traffic(kind, deletes=9)
        for w, p in ((1 << 14, 1), (13, 3), (8, 5)):
            vec, ref = run_both(prog, _split(pkts, p), wave_size=w,
                                maps=lambda: o.create_maps(num_cpus=2), num_cpus=2,
                                what=f"clang/{kind} wave_size={w} batches={p}")
        assert ref.dump_maps()["total"] == [{"key": "00000000", "value": [
            (160).to_bytes(8, "little").hex(), "00" * 8]}]
        if kind == "distinct":
            assert ref.retval.tolist().count(207) > 100         # 200 + E2BIG


# --- generated map programs -----------------------------------------------------------------
#
# Random sequences of map operations per packet on three small maps (a HASH that fills
# up, an ARRAY with out-of-range keys, a PERCPU_HASH), keys from packet bytes (a small
# key space: many lanes share keys), every access kind on the values (loads, stores,
# atomic adds of both widths, fetch ops, xchg, cmpxchg, out-of-bounds offsets), updates
# with every flag, deletes; r9 accumulates what the packet saw and is returned.

GMAPS = [MapSpec(HASH, 4, 16, 6, name="h"), MapSpec(ARRAY, 4, 16, 8, name="a"),
         MapSpec(PHASH, 4, 16, 8, name="p")]


@st.composite
def _key(draw):
    b = draw(st.integers(0, 13))
    mask = draw(st.sampled_from([3, 7, 15, 1]))
    return [f"r1 = *(u8 *)(r7 + {b})", f"r1 &= {mask}", "*(u32 *)(r10 - 4) = r1"]


@st.composite
def _value_op(draw):
    sz = draw(st.sampled_from([8, 4, 1, 2]))
    off = draw(st.sampled_from([0, 8, 4, 12, 1, 16, 15]))
    if draw(st.integers(0, 9)):
        off = min(off - off % sz, 16 - sz)          # usually in bounds and aligned
    kind = draw(st.sampled_from(["load", "store", "add", "fetch", "las", "xchg", "cmpxchg",
                                 "stimm"]))
    k = draw(st.sampled_from([1, 2, -1, 0x7FFFFFFF, 5]))
    if kind in ("add", "fetch", "xchg", "cmpxchg"):
        sz = draw(st.sampled_from([8, 4]))
        off = off - off % sz if off + sz <= 16 else 16 - sz
    bits, w = 8 * sz, ("w" if sz == 4 else "r")
    if kind == "load":
        return [f"r1 = *(u{bits} *)(r0 + {off})", "r9 += r1"]
    if kind == "store":
        return [f"*(u{bits} *)(r0 + {off}) = r9"]
    if kind == "stimm":
        return [f"*(u{bits} *)(r0 + {off}) = {k}"]
    if kind == "add":
        return [f"r1 = {k}", f"lock *(u{bits} *)(r0 + {off}) += r1"]
    if kind == "fetch":
        op = draw(st.sampled_from(["add", "or", "xor", "and"]))
        return [f"r1 = {k}", f"r1 = atomic_fetch_{op}((u{bits} *)(r0 + {off}), r1)",
                "r9 ^= r1"]
    if kind == "las":
        return [f"r1 = *(u{bits} *)(r0 + {off})", f"r1 += {k}",
                f"*(u{bits} *)(r0 + {off}) = r1"]
    if kind == "xchg":
        fn = "xchg_64" if sz == 8 else "xchg32_32"
        return [f"{w}1 = {w}9", f"{w}1 = {fn}(r0 + {off}, {w}1)", "r9 += r1"]
    fn = "cmpxchg_64" if sz == 8 else "cmpxchg32_32"
    return ["r2 = r0", f"r0 = *(u{bits} *)(r2 + {off})", f"r0 += {draw(st.sampled_from([0, 1]))}",
            f"r1 = {k}", f"{w}0 = {fn}(r2 + {off}, {w}0, {w}1)", "r9 += r0", "r0 = r2"]


@st.composite
def _map_group(draw, n: int):
    m = draw(st.sampled_from(["h", "a", "p"]))
    kind = draw(st.sampled_from(["lookup", "lookup", "update", "delete", "branch"]))
    key = draw(_key())
    if kind == "branch":
        return [f"r1 = *(u8 *)(r7 + {draw(st.integers(0, 13))})",
                f"if r1 > {draw(st.integers(0, 255))} goto skip{n}", "r9 += 1", f"skip{n}:"]
    call = [f"r1 = {m} ll", "r2 = r10", "r2 += -4"]
    if kind == "lookup":
        ops = [ln for _ in range(draw(st.integers(1, 3))) for ln in draw(_value_op())]
        return key + call + ["call 1", f"if r0 == 0 goto null{n}", *ops, f"null{n}:"]
    if kind == "delete":
        return key + call + ["call 3", "r9 += r0"]
    flags = draw(st.sampled_from([0, 1, 2, 0, 4]))
    return key + ["*(u64 *)(r10 - 24) = r9", f"*(u64 *)(r10 - 16) = {draw(st.integers(0, 9))}",
                  *call, "r3 = r10", "r3 += -24", f"r4 = {flags}", "call 2", "r9 += r0"]


@st.composite
def map_programs(draw):
    body = [ln for n in range(draw(st.integers(1, 10))) for ln in draw(_map_group(n))]
    return "\n".join(["r6 = r1", "r7 = *(u32 *)(r6 + 0)", "r9 = *(u32 *)(r6 + 4)", "r9 -= r7",
                      *body, "r0 = r9", "exit"])


def _gmaps(prefill: int):
    def make():
        ms = {s.name: create_map(s) for s in GMAPS}
        rng = random.Random(prefill)
        for k in range(prefill):
            v = struct.pack("<QQ", 0xFFFF_FFFF - rng.randrange(3), rng.getrandbits(64))
            ms["a"].update(struct.pack("<I", k), v)
            if k % 2:
                ms["h"].update(struct.pack("<I", k), v)
                ms["p"].update(struct.pack("<I", k), v)
        return ms
    return make


MAPGEN = settings(max_examples=100, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.reuse, Phase.generate] +
                  ([Phase.shrink] if os.environ.get("BPFKIT_SHRINK") == "1" else []))


@MAPGEN
@given(data=st.data())
def test_generated_map_programs(data):
    src = data.draw(map_programs(), label="program")
    n = data.draw(st.integers(2, 60), label="packets")
    rng = random.Random(data.draw(st.integers(0, 1 << 20), label="traffic seed"))
    pkts = [rng.randbytes(rng.randint(14, 64)) for _ in range(n)]
    prefill = data.draw(st.sampled_from([0, 8]), label="prefill")
    wave = data.draw(st.sampled_from([1 << 14, 8, 13]), label="wave_size")
    parts = data.draw(st.sampled_from([1, 2, 3]), label="batches")
    prog = Program.from_asm(src, prog_type="xdp", maps=GMAPS)
    run_both(prog, _split(pkts, parts), wave_size=wave, maps=_gmaps(prefill), what=src)


@pytest.mark.parametrize("map_type", [HASH, PHASH])
def test_many_flows_grow_the_slab_and_reuse_rows(map_type):
    # more flows than the first slab page (1024 rows) holds, with deletes: values in
    # several pages, freed rows reused by later inserts, batched inserts in the commits
    prog, _ = flow_program("atomic", map_type, 4096, True)
    rng = random.Random(3)
    keys = [0x0E000000 + rng.randrange(2500) for _ in range(6000)]
    pkts = [_pkt(rng, k, i % 5 == 4) for i, k in enumerate(keys)]
    vec, ref = _compare(prog, pkts, runs=((1 << 14, 1), (512, 2)), what="slab",
                        num_cpus=2 if map_type == PHASH else 1)
    assert len(ref.dump_maps()["flows"]) > 1024


@pytest.mark.clang
def test_per_lane_updates_share_one_event_per_call(monkeypatch):
    """An event (the lane -> chunk table behind map value pointers) is a wave-sized
    array: the per-lane update path must make one per helper call, not one per lane
    (one per lane made `bpfkit run` of legacy_maps.c's count_bytes take 4-6 GB).
    count_bytes inserts len/64 buckets into a 128-entry HASH from the lookup-miss path
    on 1527 sample packets; its results equal the interpreter's."""
    import bpfkit.ebpf.vector.mapwave as mapwave
    from bpfkit.ebpf.elf import open_elf
    from bpfkit.ebpf.runner import run_capture
    from test_elf_load import build_object
    from test_vector_engine import SAMPLE, assert_same
    made = []
    real = mapwave.WaveMaps.new_event
    monkeypatch.setattr(mapwave.WaveMaps, "new_event",
                        lambda self: made.append(1) or real(self))
    o = open_elf(build_object("legacy_maps"))
    prog = o.program("count_bytes")
    vec = run_capture(prog, str(SAMPLE), maps=o.create_maps(), engine="vector")
    ref = run_capture(prog, str(SAMPLE), maps=o.create_maps(), engine="interp")
    assert_same(vec, ref, what="count_bytes")
    # 2 map lookups and 1 update site; a few waves (first wave, second wave)
    assert 0 < len(made) <= 12, len(made)


def test_first_wave_of_inserts_into_a_nearly_full_map_stays_small(monkeypatch):
    """60 Zipf flows inserted into a 64-entry HASH: at the start of a capture every
    packet of a wave misses and inserts, and each insert changes the element count the
    others read (E2BIG is near), so a wave's lanes all re-run on the interpreter.  The
    adaptive wave (VectorProgram.run without wave_size) starts at _MIN_WAVE lanes and
    grows once waves settle: 1023 packets re-run, against all 19,999 after the first
    with one 32k wave.  Results equal the interpreter's either way."""
    from bpfkit.ebpf.vector import engine
    reran = []
    real = engine.VectorProgram._interp_lanes
    monkeypatch.setattr(engine.VectorProgram, "_interp_lanes",
                        lambda self, inp, lanes, *a, **k:
                        reran.append(len(lanes)) or real(self, inp, lanes, *a, **k))
    prog, _ = flow_program("atomic", HASH, 64, False)
    pkts = traffic("zipf", n=20000)
    batch = PacketBatch.from_packets(pkts)
    vec = run_batch(prog, batch, engine="vector")        # the runner's default waves
    assert sum(reran) < engine._MIN_WAVE, sum(reran)
    reran.clear()
    run_both(prog, [batch], wave_size=1 << 15, what="one 32k wave")
    assert sum(reran) >= len(pkts) - 1                     # the pathology, still exact
    assert_same(vec, run_batch(prog, batch, engine="interp"), what="adaptive waves")
