"""The vector engine on loops: back-edges, may_goto's per-frame counter, bpf-to-bpf
calls (each frame its own counter and stack), against the reference interpreter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bpfkit.ebpf import progtypes
from bpfkit.ebpf.asm import assemble
from bpfkit.ebpf.vector import VectorProgram
from bpfkit.pcap import read_capture

SAMPLE = Path(__file__).resolve().parent.parent / "pcaps" / "sample.pcap"

# r0 = min(packet length, counter): a bounded-by-may_goto loop over the packet length
LEN_LOOP = """
    r2 = *(u32 *)(r1 + 4)
    r3 = *(u32 *)(r1 + 0)
    r2 -= r3
    r0 = 0
l:
    may_goto out
    if r0 >= r2 goto out
    r0 += 1
    goto l
out:
    exit
"""

# the same loop in a subprogram called twice: each call starts a fresh counter, and
# the caller's r6-r9 and stack survive the calls
CALLS = """
    r6 = *(u32 *)(r1 + 4)
    r7 = *(u32 *)(r1 + 0)
    r6 -= r7
    *(u64 *)(r10 - 8) = r6
    r1 = r6
    call f
    r8 = r0
    r1 = r6
    r1 >>= 1
    call f
    r0 += r8
    r1 = *(u64 *)(r10 - 8)
    r0 += r1
    exit
f:
    *(u64 *)(r10 - 8) = r1
    r0 = 0
m:
    may_goto done
    r2 = *(u64 *)(r10 - 8)
    if r0 >= r2 goto done
    r0 += 1
    goto m
done:
    exit
"""

# a plain back-edge bounded by the packet length (no may_goto): some lanes run out of
# instruction budget
PLAIN = """
    r2 = *(u32 *)(r1 + 4)
    r3 = *(u32 *)(r1 + 0)
    r2 -= r3
    r0 = 0
l:
    r0 += 1
    if r0 < r2 goto l
    exit
"""


def _frames():
    b = read_capture(str(SAMPLE))
    lens = np.asarray(b.caplen, np.int64)
    lanes = np.flatnonzero((lens >= 14) & (lens <= 3520))
    inp = {"buf": b.buf, "offset": np.asarray(b.offset, np.int64)[lanes],
           "caplen": lens[lanes], "ts_ns": np.asarray(b.ts_ns, np.int64)[lanes],
           "index": lanes}
    return b, lanes, inp


@pytest.mark.parametrize("src,max_loops,budget", [
    (LEN_LOOP, 100, 1_000_000),        # the counter ends long packets' loops
    (LEN_LOOP, 10_000, 1_000_000),     # the length ends every loop
    (CALLS, 60, 1_000_000),
    (CALLS, 5_000, 1_000_000),
    (PLAIN, None, 2_000),              # budget faults on packets over ~1000 bytes
    (PLAIN, None, 200_000),            # long loops: the last lanes go to the interpreter
])
def test_loops_equal_the_interpreter(src, max_loops, budget):
    insns = assemble(src)
    interp = progtypes.load(insns, progtypes.BPF_PROG_TYPE_XDP, budget=budget,
                            max_loops=max_loops)
    vp = VectorProgram(interp, progtypes.BPF_PROG_TYPE_XDP)
    assert vp.unsupported_reason is None
    b, lanes, inp = _frames()
    out = vp.run(inp, wave_size=97)              # many waves: boundaries inside loops
    want = [progtypes.run_xdp(interp, bytes(b[int(i)])) for i in lanes]
    assert out.retval.tolist() == [r.retval for r in want]
    assert out.insns.tolist() == [r.insns for r in want]
    faults = {j: (f.pc, f.kind) for j, f in out.faults.items()}
    assert faults == {j: (r.fault.pc, r.fault.kind) for j, r in enumerate(want) if r.fault}
    # the cases are not degenerate: both ways out of the loops happen
    kinds = {r.retval for r in want}
    assert len(kinds) > 10
    if src is PLAIN and budget < 10_000:
        assert 0 < len(faults) < len(want)


# `value += 1` as clang emits it without __sync (load, add, store) on a per-ethertype
# counter: every packet of the elephant flow reads and writes one word, which would make
# every lane conflict; the engine turns the idiom into an atomic-add-like delta
PLUS_EQ = """
    r2 = *(u32 *)(r1 + 4)
    r1 = *(u32 *)(r1 + 0)
    r3 = r1
    r3 += 14
    r0 = 2
    if r3 > r2 goto out
    r4 = *(u8 *)(r1 + 12)
    *(u32 *)(r10 - 4) = r4
    r1 = counts ll
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto out
    r1 = *(u64 *)(r0 + 0)
    r1 += 3
    *(u64 *)(r0 + 0) = r1
    r0 = 2
out:
    exit
"""


def test_load_add_store_is_fused_and_exact():
    from bpfkit.ebpf.program import Program
    from bpfkit.ebpf.maps import MapSpec
    from bpfkit.ebpf.runner import run_batch
    spec = MapSpec(name="counts", type=2, key_size=4, value_size=8, max_entries=256)
    prog = Program.from_asm(PLUS_EQ, prog_type="xdp", maps=[spec])
    b = read_capture(str(SAMPLE))
    a = run_batch(prog, b, engine="interp")
    v = run_batch(prog, b, engine="vector")
    assert v.engine == "vector"
    assert v.dump_maps() == a.dump_maps() and v.retval.tolist() == a.retval.tolist()
    assert v.insns.tolist() == a.insns.tolist()
    interp = progtypes.load(prog.insns, 6, maps=[v.maps["counts"]])
    assert VectorProgram(interp, 6).fuse            # the idiom was recognised
    total = sum(int.from_bytes(bytes.fromhex(e["value"]), "little") for e in a.dump_maps()["counts"])
    assert total == 3 * len(b)
