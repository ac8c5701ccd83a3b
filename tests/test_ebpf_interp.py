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
