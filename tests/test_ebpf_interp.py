"""Reference interpreter: faults are records (never exceptions), program-level problems
are refused at load, calls/frames/budget behave as the kernel's interpreter.  ALU/JMP
semantics themselves are covered by the conformance suite and the kernel differential."""
from __future__ import annotations

import pytest

from bpfkit.errors import UnsupportedError, ValidationError
from bpfkit.ebpf import assemble, isa
from bpfkit.ebpf.interp import HelperExit, Interpreter, Options, Region, run
from bpfkit.ebpf.isa import Insn


def _run(src: str, **kw):
    opts = kw.pop("options", None)
    return Interpreter(assemble(src), opts).run(**kw)


# --- memory faults: a record with pc, address and region ------------------------------

@pytest.mark.parametrize("src,pc,region", [
    # 8 bytes at fp+0 are just above the 512-byte frame
    ("r0 = *(u64 *)(r10 + 0)\nexit", 0, "stack[0]"),
    # fp-513 is just below the frame: no region contains it, the stack is the nearest
    ("r0 = *(u8 *)(r10 - 513)\nexit", 0, "stack[0]"),
    # a 4-byte load whose last byte is past the 4-byte mem region
    ("r0 = *(u32 *)(r1 + 1)\nexit", 0, "mem"),
    ("r0 = 0\n*(u64 *)(r1 + 0) = r0\nexit", 1, "mem"),
    # a null pointer
    ("r1 = 0\nr0 = *(u8 *)(r1 + 0)\nexit", 1, None),
    # an atomic past the end of the stack frame
    ("r1 = 1\nlock *(u64 *)(r10 - 4) += r1\nexit", 1, "stack[0]"),
])
def test_out_of_bounds_is_a_fault_record(src, pc, region):
    res = _run(src, mem=bytearray(4))
    assert res.fault is not None
    assert (res.fault.kind, res.fault.pc, res.fault.region) == ("memory", pc, region)
    assert res.retval == 0


def test_fault_address_is_the_accessed_address():
    res = _run("r0 = *(u16 *)(r1 + 3)\nexit", mem=bytearray(4))
    # mem's base is r1; the access starts 3 bytes in and needs 2 bytes of 4
    base = Interpreter(assemble("r0 = r1\nexit")).run(mem=bytearray(4)).retval
    assert res.fault.address == base + 3 and res.fault.size == 2


def test_no_region_reaches_another():
    # regions sit 4 GiB apart: adding any s32 to a pointer cannot reach a neighbour
    res = _run("r1 += 2147483647\nr0 = *(u8 *)(r1 + 32767)\nexit", mem=bytearray(16))
    assert res.fault.kind == "memory"


def test_read_only_region():
    ctx = Region("ctx", bytearray(8), writable=False)
    prog = Interpreter(assemble("r2 = 7\n*(u32 *)(r1 + 0) = r2\nexit"))
    res = prog.run(regions=[ctx], args=["ctx"])
    assert res.fault.kind == "memory" and res.fault.region == "ctx"
    assert ctx.buf == bytearray(8)


def test_writes_land_in_caller_buffer():
    buf = bytearray(4)
    res = _run("r2 = 0x11223344\n*(u32 *)(r1 + 0) = r2\nr0 = 0\nexit", mem=buf)
    assert res.fault is None and buf == bytes.fromhex("44332211")   # little-endian store


def test_stack_starts_zeroed_per_run():
    prog = Interpreter(assemble("r0 = *(u64 *)(r10 - 8)\nr1 = 5\n*(u64 *)(r10 - 8) = r1\nexit"))
    assert prog.run().retval == 0
    assert prog.run().retval == 0


# --- budget, calls, frames ----------------------------------------------------------

def test_budget():
    loop = assemble("r0 = 0\nl:\nr0 += 1\ngoto l")
    res = Interpreter(loop, Options(budget=1000)).run()
    # 1 insn before the loop, then 2 per iteration: the 1001st instruction is refused
    assert res.fault.kind == "budget" and res.insns == 1000
    assert Interpreter(loop).options.budget == 1_000_000


def test_bpf_to_bpf_call_preserves_callee_saved_and_passes_args():
    src = """
        r1 = 10
        r6 = 6
        call f
        r0 += r6        # 6 preserved: 10*2 + 6
        r0 += r1        # the caller's r1 is untouched by the callee (kernel interpreter)
        exit
    f:
        r6 = 99
        r0 = r1
        r0 *= 2
        r1 = 1000
        exit
    """
    assert _run(src).retval == 10 * 2 + 6 + 10


def test_each_frame_has_its_own_stack():
    src = """
        r1 = 1
        *(u64 *)(r10 - 8) = r1
        call f
        r0 = *(u64 *)(r10 - 8)      # still 1
        exit
    f:
        r2 = 2
        *(u64 *)(r10 - 8) = r2
        r0 = 0
        exit
    """
    assert _run(src).retval == 1


def _recursion(depth_limit_calls: int) -> str:
    # f calls itself while r1 > 0, decrementing r1: r1 = n means n nested calls
    return f"""
        r1 = {depth_limit_calls}
        call f
        exit
    f:
        if r1 == 0 goto done
        r1 -= 1
        call f
    done:
        r0 = 7
        exit
    """


def test_eight_frames_allowed_nine_refused():
    # main + 7 calls = 8 frames (MAX_CALL_FRAMES) is fine; one more is a fault
    assert _run(_recursion(6)).fault is None      # main, f x7 (r1 = 6..0)
    res = _run(_recursion(7))                     # main + f x8 = 9 frames
    assert res.fault.kind == "call_depth"


# --- LD_ABS / LD_IND -----------------------------------------------------------------

def test_ld_abs_big_endian_and_out_of_range_returns_zero():
    pkt = bytes.fromhex("0102030405")
    assert _run("r0 = *(u16 *)skb[1]\nexit", packet=pkt).retval == 0x0203
    assert _run("r0 = *(u32 *)skb[1]\nexit", packet=pkt).retval == 0x02030405
    # one byte short: bpf_skb_load_helper fails and the program returns 0, no fault
    res = _run("r0 = 9\nr0 = *(u32 *)skb[2]\nexit", packet=pkt)
    assert (res.retval, res.fault) == (0, None)
    assert _run("r7 = 3\nr0 = *(u8 *)skb[r7 + 1]\nexit", packet=pkt).retval == 5


@pytest.mark.parametrize("k,expected", [
    (0, ord("c")),                          # skb->data is 2 bytes into the frame
    (-0x100000, ord("d")),                  # network header at 3
    (-0x100000 + 2, ord("f")),
    (-0x200000, ord("a")),                  # mac header = start of the frame
    (-0x200000 + 5, ord("f")),
    (-0x200000 + 6, 0),                     # past the end: the program returns 0
    (-0x200001, 0),                         # below SKF_LL_OFF: fails
    (-1, 0),                                # NET window, 0xfffff past the header
])
def test_ld_abs_windows(k, expected):
    src = f"r0 = *(u8 *)skb[{k}]\nexit"
    assert _run(src, packet=b"abcdef", data_offset=2, network_offset=3).retval == expected


# --- refused at load --------------------------------------------------------------------

@pytest.mark.parametrize("insns,exc,match", [
    ([Insn(0xB7, 0, 0, 0, 1)], ValidationError, "last instruction"),
    ([Insn(0x05, 0, 0, 5, 0), Insn(0x95)], ValidationError, "jump"),
    ([Insn(0x05, 0, 0, 1, 0), isa.lddw(0, 1), Insn(0x95)], ValidationError, "lddw"),
    ([Insn(0x07, 0, 1, 0, 0), Insn(0x95)], ValidationError, "reserved"),
    ([Insn(0xFF), Insn(0x95)], ValidationError, "unknown"),
    ([Insn(0x85, 0, 0, 0, 1), Insn(0x95)], UnsupportedError, r"helper 1 \(bpf_map_lookup_elem\)"),
    ([Insn(0x85, 0, 2, 0, 7), Insn(0x95)], UnsupportedError, "kfunc"),
    ([Insn(0x8D, 1), Insn(0x95)], UnsupportedError, "callx"),
    ([isa.lddw(1, 3, src=isa.BPF_PSEUDO_MAP_FD), Insn(0x95)], ValidationError, "map 3"),
    ([isa.lddw(1, 3, src=isa.BPF_PSEUDO_BTF_ID), Insn(0x95)], UnsupportedError, "btf_id"),
    ([], ValidationError, "empty"),
])
def test_refused_at_load(insns, exc, match):
    with pytest.raises(exc, match=match):
        Interpreter(insns)


def test_helpers_and_helper_exit():
    calls = []

    def h(memory, r1, r2, r3, r4, r5):
        calls.append((r1, r2))
        if r1 == 0:
            raise HelperExit(42)
        return memory.load(r2, 1) + 1

    opts = Options(helpers={99: h})
    src = "r2 = r1\nr1 = 1\ncall 99\nexit"
    assert _run(src, mem=bytearray(b"\x07"), options=opts).retval == 8
    assert _run("r1 = 0\ncall 99\nr0 = 5\nexit", options=opts).retval == 42


def test_run_convenience_and_reentrancy():
    prog = assemble("r0 = r2\nexit")
    assert run(prog, mem=b"abc").retval == 3
    it = Interpreter(prog)
    assert [it.run(mem=bytes(n)).retval for n in (1, 5, 2)] == [1, 5, 2]


# --- may_goto: the verifier's hidden loop counter ----------------------------------------

_COUNT = "r0 = 0\nl:\nmay_goto out\nr0 += 1\ngoto l\nout:\nexit"
# main: 2 iterations of its own loop, a call whose subprogram exhausts its own counter
# (two loops sharing it), then main's second loop uses what is left of main's counter
_FRAMES = """
    r6 = 0
l1: may_goto d1
    r6 += 1
    if r6 < 2 goto l1
d1: call f
    r6 += r0
l2: may_goto d2
    r6 += 1
    goto l2
d2: r0 = r6
    exit
f:  r0 = 0
l3: may_goto d3
    r0 += 1
    goto l3
d3: may_goto d4
    r0 += 100
    goto d3
d4: exit
"""

# the same frames with loops that end by themselves (f returns 6 + 3 * 100)
_FRAMES_BOUNDED = """
    r6 = 0
l1: may_goto d1
    r6 += 1
    if r6 < 2 goto l1
d1: call f
    r6 += r0
l2: may_goto d2
    r6 += 1
    if r6 < 30 goto l2
d2: r0 = r6
    exit
f:  r0 = 0
l3: may_goto d3
    r0 += 1
    if r0 < 6 goto l3
d3: may_goto d4
    r0 += 100
    if r0 < 300 goto d3
d4: exit
"""


@pytest.mark.parametrize("name,src,max_loops,want", [
    # the counter starts at max_loops: that many may_goto fall through, the next jumps
    ("count 0", _COUNT, 0, 0),
    ("count 1", _COUNT, 1, 1),
    ("count 77", _COUNT, 77, 77),
    # a forward may_goto: taken only when the counter is spent
    ("forward spent", "r0 = 1\nmay_goto +1\nr0 = 2\nexit", 0, 1),
    ("forward left", "r0 = 1\nmay_goto +1\nr0 = 2\nexit", 1, 2),
    # off 0: a no-op either way (the verifier removes it)
    ("off 0", "r0 = 3\nmay_goto +0\nexit", 0, 3),
    # one counter per frame: main 2 + f 5 (its second loop finds it spent) + main 3
    # (a program-wide counter would give 2 + 3 + 0, an unsaved caller counter 2 + 5 + 0)
    ("frames", _FRAMES, 5, 2 + 5 + 3),
    ("frames bounded", _FRAMES_BOUNDED, isa.BPF_MAX_LOOPS, 2 + 306 + 1),
    # a loop that ends by itself before the counter is spent
    ("own bound", "r0 = 0\nl:\nmay_goto out\nr0 += 1\nif r0 < 40 goto l\nout:\nexit", 40, 40),
    ("own bound cut", "r0 = 0\nl:\nmay_goto out\nr0 += 1\nif r0 < 40 goto l\nout:\nexit",
     39, 39),
])
def test_may_goto_counter(name, src, max_loops, want):
    res = _run(src, options=Options(max_loops=max_loops))
    assert (res.retval, res.fault) == (want, None)


def test_may_goto_default_is_the_kernels_bpf_max_loops():
    assert Options().max_loops == isa.BPF_MAX_LOOPS == 8 * 1024 * 1024
    # the default instruction budget runs out long before 8M iterations
    res = _run(_COUNT)
    assert res.fault.kind == "budget"
    res = _run(_COUNT, options=Options(max_loops=100_000, budget=400_000))
    assert (res.retval, res.fault) == (100_000, None)


def test_may_goto_counter_is_per_run():
    prog = Interpreter(assemble(_COUNT), Options(max_loops=9))
    assert [prog.run().retval for _ in range(3)] == [9, 9, 9]


def test_may_goto_target_checked_at_load():
    with pytest.raises(ValidationError, match="jump"):
        Interpreter([Insn(0xE5, 0, 0, 5, 0), Insn(0x95)])


@pytest.mark.kernel
@pytest.mark.parametrize("insns", [
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xE5, 0, 0, 0, 0), Insn(0x95)],
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xE5, 0, 0, 1, 0), Insn(0xB7, 0, 0, 0, 2), Insn(0x95)],
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xE5, 1, 0, 0, 0), Insn(0x95)],
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xE5, 0, 1, 0, 0), Insn(0x95)],
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xE5, 0, 0, 0, 1), Insn(0x95)],
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xE6, 0, 0, 0, 0), Insn(0x95)],
    [Insn(0xB7, 0, 0, 0, 1), Insn(0xED, 0, 0, 0, 0), Insn(0x95)],
    assemble("r0 = 0\nl:\nmay_goto out\nr0 += 1\nif r0 < 1000 goto l\nout:\nexit"),
    assemble(_FRAMES_BOUNDED),
])
def test_may_goto_matches_kernel(insns):
    """The kernel accepts exactly the encodings bpfkit's table does, and where no
    counter runs out (the kernel's is timed here, so exhaustion cannot be compared)
    the answers are equal."""
    import os

    import oracles
    from bpfkit.errors import EncodingError
    try:
        for i in insns:
            isa.check(i)
        ours = True
    except EncodingError:
        ours = False
    try:
        fd = oracles.bpf_prog_load(isa.encode(insns), prog_type=oracles.BPF_PROG_TYPE_XDP)
    except oracles.BpfLoadError:
        assert not ours
        return
    try:
        assert ours
        want = oracles.bpf_prog_test_run(fd, bytes(14))[0]
    finally:
        os.close(fd)
    assert Interpreter(insns).run().retval == want
