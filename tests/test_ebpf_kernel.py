"""Kernel differential for the reference interpreter: random valid programs (ALU/ALU64,
JMP/JMP32, v4 sdiv/smod/movsx/bswap/sign-extending loads/gotol, stack loads, stores and
atomics, LD_ABS/LD_IND) are loaded with BPF_PROG_LOAD as SOCKET_FILTER and run with
BPF_PROG_TEST_RUN on random packets; the kernel's retval must equal the interpreter's.

For a socket filter the test run hands the program an skb whose data starts after the
14-byte Ethernet header (bpf_prog_test_run_skb calls eth_type_trans), so LD_ABS offset 0
is byte 14 of the input: the interpreter gets the frame with data_offset=14, network
header there too (checked by test_ld_abs_sees_data_after_ethernet_header)."""
from __future__ import annotations

import os
import random

import pytest

import oracles
from bpfkit.ebpf import disasm, isa
from bpfkit.ebpf.interp import Interpreter, Options
from bpfkit.ebpf.progtypes import run_xdp, xdp_helpers
from bpfkit.ebpf.isa import Insn

pytestmark = pytest.mark.kernel

POOL = [0, 1, 2, 3, 4, 5, 7, 8, 9]       # r6 keeps ctx for LD_ABS, r10 is the frame
STACK = 64                                # bytes of stack the programs use
ALU_OPS = [isa.BPF_ADD, isa.BPF_SUB, isa.BPF_MUL, isa.BPF_DIV, isa.BPF_OR, isa.BPF_AND,
           isa.BPF_LSH, isa.BPF_RSH, isa.BPF_MOD, isa.BPF_XOR, isa.BPF_MOV, isa.BPF_ARSH]
JMP_OPS = list(isa.JMP_OPS)
SIZES = [isa.BPF_B, isa.BPF_H, isa.BPF_W, isa.BPF_DW]


def _imm(rng: random.Random) -> int:
    return rng.choice([0, 1, -1, 2, 7, -8, 0x7FFFFFFF, -0x80000000, 0xFF, 0xFFFF,
                       rng.randrange(-2**31, 2**31), rng.randrange(-64, 64)])


def _imm64(rng: random.Random) -> int:
    return rng.choice([0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 1 << 32,
                       rng.randrange(1 << 64), rng.randrange(1 << 64), rng.randrange(-99, 99)])


class _Jump:
    """A body item that jumps forward to the start of another item (filled in later)."""

    def __init__(self, insn: Insn, target: int, field: str):
        self.insn, self.target, self.field = insn, target, field


def _item(rng: random.Random, i: int, n: int, pool: list[int] = POOL, xdp: bool = False,
          ld: bool = True) -> list:
    """One body item (list of Insn or _Jump) at body position i of n.  xdp: r2 points
    at 64 checked packet bytes; packet loads/stores replace LD_ABS/LD_IND."""
    r = rng.random()
    if not ld and not xdp and r >= 0.90:
        r = rng.random() * 0.40                 # no packet loads here: an ALU item instead
    d, s = rng.choice(pool), rng.choice(pool)
    if r < 0.40:
        cls = rng.choice([isa.BPF_ALU, isa.BPF_ALU64])
        width = 32 if cls == isa.BPF_ALU else 64
        kind = rng.random()
        if kind < 0.05:
            return [Insn(cls | isa.BPF_NEG, d)]
        if kind < 0.12:
            bits = rng.choice([8, 16] if width == 32 else [8, 16, 32])
            return [Insn(cls | isa.BPF_MOV | isa.BPF_X, d, s, bits)]
        op = rng.choice(ALU_OPS)
        off = 1 if op in (isa.BPF_DIV, isa.BPF_MOD) and rng.random() < 0.5 else 0
        if rng.random() < 0.5:
            return [Insn(cls | op | isa.BPF_X, d, s, off)]
        imm = _imm(rng)
        if op in (isa.BPF_LSH, isa.BPF_RSH, isa.BPF_ARSH):
            imm = rng.randrange(width)      # the verifier refuses constant shifts >= width
        if op in (isa.BPF_DIV, isa.BPF_MOD) and imm == 0:
            imm = rng.choice([3, -1, -3])   # and constant division by zero
        return [Insn(cls | op | isa.BPF_K, d, 0, off, imm)]
    if r < 0.45:
        code = rng.choice([isa.BPF_ALU | isa.BPF_END | isa.BPF_TO_LE,
                           isa.BPF_ALU | isa.BPF_END | isa.BPF_TO_BE,
                           isa.BPF_ALU64 | isa.BPF_END | isa.BPF_TO_LE])
        return [Insn(code, d, 0, 0, rng.choice([16, 32, 64]))]
    if r < 0.60:
        target = rng.randrange(i + 1, n + 1)
        cls = rng.choice([isa.BPF_JMP, isa.BPF_JMP32])
        op = rng.choice(JMP_OPS)
        if rng.random() < 0.5:
            insn = Insn(cls | op | isa.BPF_X, d, s)
        else:
            insn = Insn(cls | op | isa.BPF_K, d, 0, 0, _imm(rng))
        return [_Jump(insn, target, "off")]
    if r < 0.63:
        target = rng.randrange(i + 1, n + 1)
        if rng.random() < 0.5:
            return [_Jump(Insn(isa.BPF_JMP | isa.BPF_JA), target, "off")]
        return [_Jump(Insn(isa.BPF_JMP32 | isa.BPF_JA), target, "imm")]
    size = rng.choice(SIZES)
    nbytes = isa.SIZE_BYTES[size]
    off = -nbytes * rng.randrange(1, STACK // nbytes + 1)
    if r < 0.72:
        if rng.random() < 0.5:
            return [Insn(isa.BPF_ST | isa.BPF_MEM | size, 10, 0, off, _imm(rng))]
        return [Insn(isa.BPF_STX | isa.BPF_MEM | size, 10, s, off)]
    if r < 0.82:
        if size != isa.BPF_DW and rng.random() < 0.4:
            return [Insn(isa.BPF_LDX | isa.BPF_MEMSX | size, d, 10, off)]
        return [Insn(isa.BPF_LDX | isa.BPF_MEM | size, d, 10, off)]
    if r < 0.90:
        size = rng.choice([isa.BPF_W, isa.BPF_DW])
        nbytes = isa.SIZE_BYTES[size]
        off = -nbytes * rng.randrange(1, STACK // nbytes + 1)
        code = rng.choice([0x00, 0x40, 0x50, 0xA0, 0x01, 0x41, 0x51, 0xA1, isa.BPF_XCHG,
                           isa.BPF_CMPXCHG])
        return [Insn(isa.BPF_STX | isa.BPF_ATOMIC | size, 10, s, off, code)]
    if xdp:
        size = rng.choice(SIZES)
        nbytes = isa.SIZE_BYTES[size]
        off = rng.randrange(0, XDP_CHECKED - nbytes + 1)
        c = rng.random()
        if c < 0.4:
            return [Insn(isa.BPF_LDX | isa.BPF_MEM | size, d, 2, off)]
        if c < 0.5 and size != isa.BPF_DW:
            return [Insn(isa.BPF_LDX | isa.BPF_MEMSX | size, d, 2, off)]
        if c < 0.75:
            return [Insn(isa.BPF_STX | isa.BPF_MEM | size, 2, s, off)]
        return [Insn(isa.BPF_ST | isa.BPF_MEM | size, 2, 0, off, _imm(rng))]
    # LD_ABS / LD_IND: r0 = packet bytes (big-endian) or the program returns 0; they
    # clobber r1-r5, which the verifier then treats as unreadable, so re-initialise them
    size = rng.choice([isa.BPF_B, isa.BPF_H, isa.BPF_W])
    out: list = []
    if rng.random() < 0.5:
        # mostly inside the packet, sometimes past its end (the program then returns 0),
        # sometimes relative to the network (SKF_NET_OFF) or mac header (SKF_LL_OFF)
        k = rng.randrange(0, 40) if rng.random() < 0.8 else rng.randrange(0, 200)
        c = rng.random()
        if c < 0.1:
            k += -0x100000
        elif c < 0.2:
            k += -0x200000
        elif c < 0.22:
            k = rng.choice([-1, -0x200001, -0x100001])
        out.append(Insn(isa.BPF_LD | isa.BPF_ABS | size, 0, 0, 0, k))
    else:
        x = rng.choice([7, 8, 9])
        out.append(Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K, x, 0, 0, rng.randrange(0, 30)))
        k = rng.randrange(0, 20) if rng.random() < 0.9 else rng.randrange(0, 200)
        out.append(Insn(isa.BPF_LD | isa.BPF_IND | size, 0, x, 0, k))
    out += [Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K, r, 0, 0, _imm(rng)) for r in (1, 2, 3, 4, 5)]
    return out


XDP_CHECKED = 64                        # packet bytes an XDP program checks, then uses
XDP_POOL = [0, 1, 4, 5, 7, 8, 9]        # r2 = data, r3 = data_end, r6 = ctx
XDP_HELPER_OFFSETS = {
    # bpf_xdp_adjust_head: 216 bytes of headroom usable, >= 14 bytes must remain
    44: [-216, -217, -200, -14, -1, 0, 1, 14, 40, 100, -300, 5000],
    # bpf_xdp_adjust_meta: 4-byte multiples up to 252 fit, others EACCES / EINVAL
    54: [-4, -8, -32, -36, -252, -256, -3, 0, 4, -220, -216],
    # bpf_xdp_adjust_tail: grows up to the 3776-byte hard end, shrinks to 14 bytes
    65: [-10, -1, 0, 5, 100, 3000, 4000, -40, -200, 64],
}


def _kernel_allows_xdp_helper(hid: int) -> bool:
    """Whether this kernel lets XDP programs call helper `hid` (bpf_xdp_adjust_meta is
    refused by some 6.18 builds, see test_ebpf_progtypes)."""
    import functools

    @functools.lru_cache(maxsize=None)
    def probe(h):
        prog = [Insn(0x85, 0, 0, 0, h), Insn(0xB7), Insn(0x95)]
        try:
            os.close(oracles.bpf_prog_load(isa.encode(prog), oracles.BPF_PROG_TYPE_XDP))
            return True
        except oracles.BpfLoadError as e:
            return "cannot use helper" not in e.log
        except OSError:
            return True                 # no kernel to ask (the test itself will say so)
    return probe(hid)


def random_program(rng: random.Random, n_items: int, xdp: bool = False) -> list[Insn]:
    pool = XDP_POOL if xdp else POOL
    prologue: list[Insn] = [Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_X, 6, 1)]
    if xdp:
        # a few resize helper calls first (they invalidate packet pointers), result in r7
        usable = sorted(h for h in XDP_HELPER_OFFSETS if _kernel_allows_xdp_helper(h))
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            hid = rng.choice(usable)
            prologue += [Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_X, 1, 6),
                         Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K, 2, 0, 0,
                              rng.choice(XDP_HELPER_OFFSETS[hid])),
                         Insn(isa.BPF_JMP | isa.BPF_CALL, 0, 0, 0, hid),
                         Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_X, 7, 0)]
    for r in pool:
        if rng.random() < 0.5:
            prologue.append(isa.lddw(r, _imm64(rng)))
        else:
            cls = rng.choice([isa.BPF_ALU, isa.BPF_ALU64])
            prologue.append(Insn(cls | isa.BPF_MOV | isa.BPF_K, r, 0, 0, _imm(rng)))
    for off in range(-8, -STACK - 1, -8):
        prologue.append(Insn(isa.BPF_ST | isa.BPF_MEM | isa.BPF_DW, 10, 0, off, _imm(rng)))
    items = [_item(rng, i, n_items, pool, xdp) for i in range(n_items)]
    # epilogue: fold every register and the stack into r0, high half into low half
    # (socket filters return only the low 32 bits of r0)
    epi: list[Insn] = []
    for r in pool[1:]:
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_MUL | isa.BPF_K, 0, 0, 0, 0x3B9ACA07))
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_XOR | isa.BPF_X, 0, r))
    for off in range(-8, -STACK - 1, -8):
        epi.append(Insn(isa.BPF_LDX | isa.BPF_MEM | isa.BPF_DW, 1, 10, off))
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_MUL | isa.BPF_K, 0, 0, 0, 0x3B9ACA07))
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_XOR | isa.BPF_X, 0, 1))
    epi += [Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_X, 1, 0),
            Insn(isa.BPF_ALU64 | isa.BPF_RSH | isa.BPF_K, 1, 0, 0, 32),
            Insn(isa.BPF_ALU64 | isa.BPF_XOR | isa.BPF_X, 0, 1),
            Insn(isa.BPF_JMP | isa.BPF_EXIT)]
    # slot of each item's start; item n is the epilogue
    starts = []
    slot = sum(i.slots for i in prologue)
    for it in items:
        starts.append(slot)
        slot += sum(1 if isinstance(x, _Jump) else x.slots for x in it)
    starts.append(slot)
    if xdp:
        # r2 = data, r3 = data_end; with fewer than 64 bytes skip the body to a block
        # that gives r0 (the check's temporary, a packet pointer) a scalar value:
        #   [prologue][check][r0 = K][body][ja +1][r0 = K'][epilogue]
        check = [Insn(isa.BPF_LDX | isa.BPF_MEM | isa.BPF_W, 2, 6, 0),
                 Insn(isa.BPF_LDX | isa.BPF_MEM | isa.BPF_W, 3, 6, 4),
                 Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_X, 0, 2),
                 Insn(isa.BPF_ALU64 | isa.BPF_ADD | isa.BPF_K, 0, 0, 0, XDP_CHECKED),
                 None,
                 Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K, 0, 0, 0, _imm(rng))]
        jump_slot = sum(i.slots for i in prologue) + 4
        starts = [x + len(check) for x in starts]
        check[4] = Insn(isa.BPF_JMP | isa.BPF_JGT | isa.BPF_X, 0, 3,
                        starts[-1] + 1 - jump_slot - 1)
        prologue = prologue + check
        epi = [Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, 1),
               Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K, 0, 0, 0, _imm(rng))] + epi
    out = list(prologue)
    slot = sum(i.slots for i in prologue)
    for it in items:
        for x in it:
            if isinstance(x, _Jump):
                rel = starts[x.target] - slot - 1
                f = dict(opcode=x.insn.opcode, dst=x.insn.dst, src=x.insn.src, off=x.insn.off,
                         imm=x.insn.imm)
                f[x.field] = rel
                x = Insn(**f)
            out.append(x)
            slot += x.slots
    return out + epi


def _all_reachable(insns: list[Insn]) -> bool:
    """The verifier's check_cfg refuses unreachable instructions: a forward `ja` may
    skip code no conditional jump reaches, so such programs are generated again."""
    slots: list[Insn | None] = []
    for i in insns:
        slots += [i] + [None] * (i.slots - 1)
    seen, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in seen:
            continue
        seen.add(pc)
        i = slots[pc]
        op = isa.check(i)
        if op.kind == "exit":
            continue
        if op.kind in ("ja", "gotol"):
            todo.append(pc + 1 + (i.off if op.kind == "ja" else i.imm))
            continue
        if op.kind == "jcond":
            todo.append(pc + 1 + i.off)
        todo.append(pc + i.slots)
    return len(seen) == sum(1 for x in slots if x is not None)


def _kernel_retval(insns: list[Insn], packets: list[bytes]) -> list[int]:
    try:
        fd = oracles.bpf_prog_load(isa.encode(insns))
    except oracles.BpfLoadError as e:
        pytest.fail(f"verifier refused a generated program:\n{disasm.listing(insns)}\n"
                    f"{e.log[-3000:]}")
    try:
        return [oracles.bpf_prog_test_run(fd, p)[0] for p in packets]
    finally:
        os.close(fd)


def test_ld_abs_sees_data_after_ethernet_header():
    from bpfkit.ebpf.asm import assemble
    prog = assemble("r6 = r1\nr0 = *(u8 *)skb[0]\nexit\n")
    data = bytes(range(64))
    assert _kernel_retval(prog, [data]) == [14]
    assert Interpreter(prog).run(packet=data, data_offset=14).retval == 14


N_PROGRAMS = 3000
PACKETS_PER_PROGRAM = 2


def test_random_programs_match_kernel():
    rng = random.Random(20261122)
    compared = 0
    mismatches = []
    for n in range(N_PROGRAMS):
        prog = random_program(rng, rng.randrange(4, 40))
        while not _all_reachable(prog):
            prog = random_program(rng, rng.randrange(4, 40))
        packets = [bytes(rng.randrange(256) for _ in range(rng.randrange(14, 160)))
                   for _ in range(PACKETS_PER_PROGRAM)]
        kernel = _kernel_retval(prog, packets)
        interp = Interpreter(prog)
        for p, k in zip(packets, kernel):
            res = interp.run(packet=p, data_offset=14)
            assert res.fault is None, (res.fault, disasm.listing(prog))
            compared += 1
            if res.retval & 0xFFFFFFFF != k:
                mismatches.append((n, k, res.retval & 0xFFFFFFFF, disasm.listing(prog), p.hex()))
    assert not mismatches, mismatches[:3]
    assert compared == N_PROGRAMS * PACKETS_PER_PROGRAM


N_XDP_PROGRAMS = 1500


def _xdp_kernel(insns: list[Insn], packets: list[bytes]) -> list[tuple[int, bytes]]:
    try:
        fd = oracles.bpf_prog_load(isa.encode(insns), oracles.BPF_PROG_TYPE_XDP)
    except oracles.BpfLoadError as e:
        pytest.fail(f"verifier refused a generated program:\n{disasm.listing(insns)}\n"
                    f"{e.log[-3000:]}")
    try:
        return [oracles.bpf_prog_test_run(fd, p) for p in packets]
    finally:
        os.close(fd)


def test_random_xdp_programs_match_kernel():
    """retval and output bytes (metadata then packet, as the test run returns them)
    after packet loads/stores and bpf_xdp_adjust_head/meta/tail."""
    rng = random.Random(7)
    helpers = Options(helpers=xdp_helpers())
    compared = 0
    mismatches = []
    for n in range(N_XDP_PROGRAMS):
        prog = random_program(rng, rng.randrange(4, 30), xdp=True)
        while not _all_reachable(prog):
            prog = random_program(rng, rng.randrange(4, 30), xdp=True)
        packets = [bytes(rng.randrange(256) for _ in range(rng.choice([14, 20, 63, 64, 100, 300])))
                   for _ in range(2)]
        kernel = _xdp_kernel(prog, packets)
        interp = Interpreter(prog, helpers)
        for p, (kret, kout) in zip(packets, kernel):
            res = run_xdp(interp, p)
            assert res.fault is None, (res.fault, disasm.listing(prog))
            compared += 1
            if (res.retval, res.meta + res.packet) != (kret, kout):
                mismatches.append((n, kret, res.retval, kout.hex(), (res.meta + res.packet).hex(),
                                   disasm.listing(prog)))
    assert not mismatches, mismatches[:2]
    assert compared == 2 * N_XDP_PROGRAMS


class _Call:
    """A body item that calls subprogram `target` (bpf-to-bpf, resolved at layout)."""

    def __init__(self, target: int):
        self.target = target


def _layout(bodies: list[list[list]], n_items: list[int], prologues: list[list[Insn]],
            epilogues: list[list[Insn]]) -> list[Insn]:
    """Functions one after another; _Jump targets are item indices within a function
    (n = its epilogue), _Call targets function indices."""
    starts_f, item_starts = [], []
    slot = 0
    for body, pro, epi in zip(bodies, prologues, epilogues):
        starts_f.append(slot)
        slot += sum(i.slots for i in pro)
        st = []
        for it in body:
            st.append(slot)
            slot += sum(1 if isinstance(x, (_Jump, _Call)) else x.slots for x in it)
        st.append(slot)
        item_starts.append(st)
        slot += sum(i.slots for i in epi)
    out: list[Insn] = []
    slot = 0
    for f, (body, pro, epi) in enumerate(zip(bodies, prologues, epilogues)):
        out += pro
        slot += sum(i.slots for i in pro)
        for it in body:
            for x in it:
                if isinstance(x, _Jump):
                    rel = item_starts[f][x.target] - slot - 1
                    kw = dict(opcode=x.insn.opcode, dst=x.insn.dst, src=x.insn.src,
                              off=x.insn.off, imm=x.insn.imm)
                    kw[x.field] = rel
                    x = Insn(**kw)
                elif isinstance(x, _Call):
                    x = Insn(isa.BPF_JMP | isa.BPF_CALL, 0, isa.BPF_PSEUDO_CALL, 0,
                             starts_f[x.target] - slot - 1)
                out.append(x)
                slot += x.slots
        out += epi
        slot += sum(i.slots for i in epi)
    return out


def _init_regs(rng, regs) -> list[Insn]:
    out = []
    for r in regs:
        if rng.random() < 0.5:
            out.append(isa.lddw(r, _imm64(rng)))
        else:
            out.append(Insn(rng.choice([isa.BPF_ALU, isa.BPF_ALU64]) | isa.BPF_MOV | isa.BPF_K,
                            r, 0, 0, _imm(rng)))
    return out


def _init_stack(rng) -> list[Insn]:
    return [Insn(isa.BPF_ST | isa.BPF_MEM | isa.BPF_DW, 10, 0, off, _imm(rng))
            for off in range(-8, -STACK - 1, -8)]


def _fold(pool) -> list[Insn]:
    epi = []
    for r in pool:
        if r == 0:
            continue
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_MUL | isa.BPF_K, 0, 0, 0, 0x3B9ACA07))
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_XOR | isa.BPF_X, 0, r))
    for off in range(-8, -STACK - 1, -8):
        epi.append(Insn(isa.BPF_LDX | isa.BPF_MEM | isa.BPF_DW, 1, 10, off))
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_MUL | isa.BPF_K, 0, 0, 0, 0x3B9ACA07))
        epi.append(Insn(isa.BPF_ALU64 | isa.BPF_XOR | isa.BPF_X, 0, 1))
    return epi


def random_call_program(rng: random.Random) -> list[Insn]:
    """main + up to 3 subprograms; function k calls only functions > k (no recursion).
    Callees start by setting r0 and r6-r9 (which the caller must get back unchanged)
    and their own stack; after a call r1-r5 are dead, so the caller re-initialises them."""
    nf = rng.randrange(2, 5)
    bodies, ns, pros, epis = [], [], [], []
    for f in range(nf):
        n = rng.randrange(3, 15)
        body = []
        for i in range(n):
            if f + 1 < nf and rng.random() < 0.2:
                body.append([_Call(rng.randrange(f + 1, nf))] + _init_regs(rng, [1, 2, 3, 4, 5]))
            else:
                body.append(_item(rng, i, n, POOL, ld=False))
        pool_init = POOL if f == 0 else [0, 6, 7, 8, 9]
        pro = (_init_regs(rng, pool_init) if f == 0
               else _init_regs(rng, [0, 6, 7, 8, 9])) + _init_stack(rng)
        epi = _fold([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] if f else POOL) + [
            Insn(isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_X, 1, 0),
            Insn(isa.BPF_ALU64 | isa.BPF_RSH | isa.BPF_K, 1, 0, 0, 32),
            Insn(isa.BPF_ALU64 | isa.BPF_XOR | isa.BPF_X, 0, 1),
            Insn(isa.BPF_JMP | isa.BPF_EXIT)]
        bodies.append(body)
        ns.append(n)
        pros.append(pro)
        epis.append(epi)
    return _layout(bodies, ns, pros, epis)


N_CALL_PROGRAMS = 600


def test_random_bpf_to_bpf_calls_match_kernel():
    rng = random.Random(99)
    mismatches = []
    for n in range(N_CALL_PROGRAMS):
        prog = random_call_program(rng)
        while not _all_reachable_calls(prog):
            prog = random_call_program(rng)
        pkt = bytes(rng.randrange(256) for _ in range(40))
        k = _kernel_retval(prog, [pkt])[0]
        res = Interpreter(prog).run(packet=pkt, data_offset=14)
        assert res.fault is None, res.fault
        if res.retval & 0xFFFFFFFF != k:
            mismatches.append((n, k, res.retval & 0xFFFFFFFF, disasm.listing(prog)))
    assert not mismatches, mismatches[:2]


def _all_reachable_calls(insns: list[Insn]) -> bool:
    """Like _all_reachable, following bpf-to-bpf calls into their targets too."""
    slots: list[Insn | None] = []
    for i in insns:
        slots += [i] + [None] * (i.slots - 1)
    seen, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in seen:
            continue
        seen.add(pc)
        i = slots[pc]
        op = isa.check(i)
        if op.kind == "exit":
            continue
        if op.kind in ("ja", "gotol"):
            todo.append(pc + 1 + (i.off if op.kind == "ja" else i.imm))
            continue
        if op.kind == "jcond":
            todo.append(pc + 1 + i.off)
        if op.kind == "call" and i.src == isa.BPF_PSEUDO_CALL:
            todo.append(pc + 1 + i.imm)
        todo.append(pc + i.slots)
    return len(seen) == sum(1 for x in slots if x is not None)


def test_kernel_listing_of_random_programs():
    """Our kernel-syntax disassembly equals the verifier's own listing for generated
    programs with real jumps and bpf-to-bpf calls."""
    rng = random.Random(5)
    checked = 0
    for n in range(40):
        gen = (lambda: random_call_program(rng)) if n % 2 else (lambda: random_program(rng, 20))
        prog = gen()
        while not _all_reachable_calls(prog):
            prog = gen()
        listing = oracles.bpf_kernel_listing(isa.encode(prog))
        assert listing is not None
        for slot, i in zip(isa.slot_indices(prog), prog):
            assert disasm.format_insn(i, "kernel") == listing[slot][1], (slot, i)
            checked += 1
    assert checked > 2000
