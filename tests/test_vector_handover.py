"""Packets the vector engine hands to the reference interpreter (issue 7).

What the engine does not run lane-parallel -- LRU and other map types, ring buffer and
perf output, tail calls, callbacks, kfuncs, callx -- is handed over per packet: a lane
that reaches it leaves its wave with nothing kept, and the interpreter runs that packet
again from the start, in capture order with respect to every map effect of the other
packets (VectorProgram._hand_over).  These tests check the order with traffic built so
that any reordering shows: an LRU flow table small enough to evict, a ring buffer small
enough to fill up (later outputs fail with -EAGAIN, and each packet returns what its
output got), packets handed over that also do order-dependent fetch-adds on a HASH
map the vector lanes use.  Compared as everywhere (tests/test_vector_engine.py): retval,
instruction counts, faults, output, maps (hash iteration order, ring buffer records)."""
from __future__ import annotations

import pytest

from bpfkit.ebpf.maps import MapSpec, MapType
from bpfkit.ebpf.program import Program

from test_vector_maps import TRAFFIC, _compare, flow_program, traffic

LRU, LRU_PCPU = MapType.LRU_HASH, MapType.LRU_PERCPU_HASH


@pytest.mark.parametrize("update", ["atomic", "load_add_store", "fetch"])
@pytest.mark.parametrize("map_type,entries", [(LRU, 8), (LRU, 1024), (LRU_PCPU, 8)],
                         ids=["lru-8", "lru-1024", "lru_percpu-8"])
def test_lru_flow_table(update, map_type, entries):
    """The per-flow counter on an LRU hash: with 8 entries the distinct and Zipf
    traffic evicts (the map ends with at most 8 flows of more seen), which flows
    survive depends on the order of every lookup and insert.  Every packet also counts
    itself in an ARRAY on the vector engine before it reaches the LRU map."""
    prog, _ = flow_program(update, map_type, entries, deletes=True, total=True)
    for kind in TRAFFIC:
        pkts = traffic(kind, deletes=7)
        vec, ref = _compare(prog, pkts, what=f"{update}/{map_type.name}/{entries}/{kind}",
                            num_cpus=2 if map_type is LRU_PCPU else 1)
        assert vec.engine == "vector"
        assert vec.handed.get("LRU map 'flows'", 0) > 0, vec.handed
        assert ref.dump_maps()["total"][0]["value"] == \
            len(pkts).to_bytes(8, "little").hex()
        flows = ref.dump_maps()["flows"]
        assert flows
        if kind == "distinct":
            assert len(flows) <= entries < len(pkts) or entries == 1024


# Every packet counts itself in a HASH map (`seen`, key = flow) with a fetch-add whose
# old value it keeps; packets with an odd flag byte also write {flow, old count, length}
# to a 4 KiB ring buffer and return what bpf_ringbuf_output returned (0, or -EAGAIN once
# the buffer is full), the others return the old count.
RINGBUF = """
    r6 = r1
    r7 = *(u32 *)(r6 + 0)
    r9 = *(u32 *)(r6 + 4)
    r9 -= r7
    r1 = *(u32 *)(r7 + 0)
    *(u32 *)(r10 - 4) = r1
    r8 = *(u8 *)(r7 + 4)
    r1 = seen ll
    r2 = r10
    r2 += -4
    call 1
    if r0 != 0 goto count
    *(u64 *)(r10 - 16) = 0
    r1 = seen ll
    r2 = r10
    r2 += -4
    r3 = r10
    r3 += -16
    r4 = 1
    call 2
    r1 = seen ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
count:
    r1 = 1
    r1 = atomic_fetch_add((u64 *)(r0 + 0), r1)
    r8 &= 1
    if r8 != 0 goto emit
    r0 = r1
    exit
emit:
    *(u64 *)(r10 - 32) = r1
    *(u64 *)(r10 - 24) = r9
    r1 = *(u32 *)(r10 - 4)
    *(u64 *)(r10 - 40) = r1
    r1 = rb ll
    r2 = r10
    r2 += -40
    r3 = 24
    r4 = 0
    call 130
    r0 += 7
    exit
out:
    r0 = 1
    exit
"""


@pytest.mark.parametrize("kind", TRAFFIC)
def test_ring_buffer_records_in_capture_order(kind):
    prog = Program.from_asm(RINGBUF, prog_type="xdp", maps=[
        MapSpec(MapType.HASH, 4, 8, 256, name="seen"),
        MapSpec(MapType.RINGBUF, 0, 0, 4096, name="rb")])
    pkts = traffic(kind, n=400)
    vec, ref = _compare(prog, pkts, what=f"ringbuf/{kind}")
    assert vec.engine == "vector"
    assert vec.handed.get("helper bpf_ringbuf_output", 0) > 0, vec.handed
    recs = vec.maps["rb"].pending()
    assert recs == ref.maps["rb"].pending()
    assert [r.packet_index for r in recs] == sorted(r.packet_index for r in recs)
    # the buffer filled up: 4096 bytes hold 127 records of 24 + 8 bytes
    assert 100 < len(recs) < sum(p[4] & 1 for p in pkts)
    assert (2**32 - 11 + 7) in vec.retval.tolist()       # -EAGAIN + 7, as u32


def test_handover_report_on_the_cli(tmp_path, capsys):
    """`bpfkit run` names what was handed over, and --json carries it."""
    import json

    from bpfkit.cli.main import main
    from bpfkit.pcap import PacketBatch, write_capture
    pkts = traffic("zipf", n=200)
    cap = tmp_path / "t.pcap"
    write_capture(cap, PacketBatch.from_packets(pkts))
    asm_file = tmp_path / "p.s"
    asm_file.write_text(RINGBUF)
    # the maps are declared on the command line the way `bpfkit run --ebpf` takes them
    rc = main(["run", "--ebpf", "--type", "xdp", "--map", "seen:hash:4:8:256",
               "--map", "rb:ringbuf:0:0:4096", "-r", str(cap), str(asm_file), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads(out)
    assert doc["engine"] == "vector"
    assert doc["handed_to_interp"]["helper bpf_ringbuf_output"] == \
        sum(1 for p in pkts if p[4] & 1)
