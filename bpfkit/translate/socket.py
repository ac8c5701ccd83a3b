"""Classic BPF -> eBPF, socket-filter mode: the Linux kernel's conversion
(net/core/filter.c, bpf_convert_filter, Linux 6.x), made loadable with BPF_PROG_LOAD as a
BPF_PROG_TYPE_SOCKET_FILTER program.

Register and memory mapping, as bpf_convert_filter does it:

- A = r0, X = r7, the context (``struct __sk_buff *``) = r6, a temporary = r2;
  M[k] is the 32-bit stack slot at fp - 4*(k+1).
- Prologue: ``w0 = 0; w7 = 0; r6 = r1`` (classic BPF starts with A = X = 0; the kernel
  uses ``w0 ^= w0``, which the verifier refuses on an uninitialised register).
- ALU is 32-bit (ALU32 zero-extends, so A and X always hold a u32 and the 64-bit
  conditional jumps compare the same numbers the classic ones do).
- DIV/MOD by X: ``w7 = w7; if r7 != 0 goto +2; w0 ^= w0; exit`` before the operation
  (classic division by zero returns 0).
- RET K is ``w0 = k; exit``; RET A is ``exit``.

Where this differs from the kernel's in-kernel image, and why:

- Packet loads (LD ABS/IND, and the byte load inside LDX MSH) are the eBPF LD_ABS/LD_IND
  instructions.  The kernel's internal image reads skb->data directly and calls the
  skb load helpers (convert_bpf_ld_abs); neither is allowed in a program loaded through
  bpf(2).  The verifier rewrites LD_ABS/LD_IND into the very same helpers
  (bpf_gen_ld_abs), so the semantics are identical: offsets >= 0 from skb->data
  (through skb_copy_bits into paged data), the SKF_NET_OFF / SKF_LL_OFF windows, and
  "a failed load makes the program return 0".
- Ancillary loads (convert_bpf_extensions) read the ``struct __sk_buff`` fields that the
  verifier maps onto the same ``struct sk_buff`` members (bpf_convert_ctx_access),
  or call the helper the kernel calls.  SKF_AD_IFINDEX keeps the "no device -> the
  program returns A" rule: __sk_buff.ifindex reads 0 exactly when skb->dev is NULL
  (device indexes start at 1).  SKF_AD_HATYPE, SKF_AD_NLATTR, SKF_AD_NLATTR_NEST and
  SKF_AD_PAY_OFFSET have no __sk_buff field or program-callable helper: UnsupportedError.

Jumps are fixed up as BPF_EMIT_JMP does: a conditional jump with a negative K (as s32)
compares against K moved into the temporary with a 32-bit move (zero-extended, since the
64-bit compare would sign-extend the immediate); ``jf == 0`` is one jump to jt;
``jt == 0`` for JEQ/JGT/JGE is one inverted jump (JNE/JLE/JLT) to jf; anything else is a
conditional jump to jt followed by ``ja`` to jf.  Every eBPF offset must fit the s16
``off`` field.

The program is first checked with the kernel's classic validator
(bpfkit.cbpf.validate, rules="kernel"), which includes bpf_convert_filter's own jump
range check on the kernel's (longer) layout: what SO_ATTACH_FILTER refuses is refused
here with the same reason (e.g. test_bpf's "BPF_MAXINSNS: jump over MSH").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..cbpf import isa as c
from ..cbpf.program import Program
from ..cbpf.validate import kernel_ancillary, validate
from ..ebpf import isa as e
from ..ebpf.isa import Insn as EInsn
from ..errors import UnsupportedError, ValidationError

__all__ = ["SocketTranslation", "translate_socket", "reachable", "REG_A", "REG_X", "REG_CTX",
           "REG_TMP", "scratch_offset", "SKB_FIELD_OFFSETS"]

REG_A, REG_X, REG_CTX, REG_TMP, REG_FP = 0, 7, 6, 2, 10
_S16_MIN, _S16_MAX = -0x8000, 0x7FFF

# struct __sk_buff field offsets (include/uapi/linux/bpf.h) the translation reads
SKB_FIELD_OFFSETS = {"len": 0, "pkt_type": 4, "mark": 8, "queue_mapping": 12,
                     "protocol": 16, "vlan_present": 20, "vlan_tci": 24, "vlan_proto": 28,
                     "ifindex": 40, "hash": 68}

# helper ids (include/uapi/linux/bpf.h); the kernel's conversion calls the same
# functions: bpf_get_raw_cpu_id (== bpf_get_smp_processor_id's value) and
# bpf_user_rnd_u32 (the function behind bpf_get_prandom_u32)
_HELPER_PRANDOM, _HELPER_CPU = 7, 8

# ancillary loads that read one __sk_buff field, and whether the value is a __be16 that
# the kernel converts with ntohs (convert_bpf_extensions: PROTOCOL, VLAN_TPID)
_ANC_FIELD = {
    c.SKF_AD_PROTOCOL: ("protocol", True), c.SKF_AD_PKTTYPE: ("pkt_type", False),
    c.SKF_AD_MARK: ("mark", False), c.SKF_AD_RXHASH: ("hash", False),
    c.SKF_AD_QUEUE: ("queue_mapping", False), c.SKF_AD_VLAN_TAG: ("vlan_tci", False),
    c.SKF_AD_VLAN_TAG_PRESENT: ("vlan_present", False),
    c.SKF_AD_VLAN_TPID: ("vlan_proto", True),
}
_ANC_UNSUPPORTED = {
    c.SKF_AD_HATYPE: ("SKF_AD_HATYPE", "skb->dev->type: no __sk_buff field or helper "
                      "exposes it to an eBPF program"),
    c.SKF_AD_NLATTR: ("SKF_AD_NLATTR", "the kernel calls its internal bpf_skb_get_nlattr, "
                      "which an eBPF program cannot call"),
    c.SKF_AD_NLATTR_NEST: ("SKF_AD_NLATTR_NEST", "the kernel calls its internal "
                           "bpf_skb_get_nlattr_nest, which an eBPF program cannot call"),
    c.SKF_AD_PAY_OFFSET: ("SKF_AD_PAY_OFFSET", "the kernel calls its internal "
                          "bpf_skb_get_pay_offset, which an eBPF program cannot call"),
}

_ALU_OPS = {c.BPF_ADD: e.BPF_ADD, c.BPF_SUB: e.BPF_SUB, c.BPF_MUL: e.BPF_MUL,
            c.BPF_DIV: e.BPF_DIV, c.BPF_MOD: e.BPF_MOD, c.BPF_AND: e.BPF_AND,
            c.BPF_OR: e.BPF_OR, c.BPF_XOR: e.BPF_XOR, c.BPF_LSH: e.BPF_LSH,
            c.BPF_RSH: e.BPF_RSH}
_SIZES = {c.BPF_W: e.BPF_W, c.BPF_H: e.BPF_H, c.BPF_B: e.BPF_B}
# JEQ/JGT/JGE with jt == 0 become one inverted jump to jf
_INVERTED = {c.BPF_JEQ: e.BPF_JNE, c.BPF_JGT: e.BPF_JLE, c.BPF_JGE: e.BPF_JLT}


def scratch_offset(k: int) -> int:
    """Stack offset of M[k] relative to r10 (bpf_convert_filter: -(k * 4 + 4))."""
    return -(4 * k + 4)


@dataclass(frozen=True, slots=True)
class SocketTranslation:
    """The eBPF program for one classic program.

    insns: the eBPF instructions (no lddw: index == slot).  starts[i]: index of the
    first eBPF instruction of classic instruction i, None when no path reaches it (left
    out, see translate_socket).  source: the classic Program."""
    insns: tuple[EInsn, ...]
    starts: tuple[int | None, ...]
    source: Program
    prog_type: int = 1            # BPF_PROG_TYPE_SOCKET_FILTER

    def to_bytes(self) -> bytes:
        """The raw little-endian image (what BPF_PROG_LOAD takes)."""
        return e.encode(self.insns)

    def listing(self) -> str:
        """The translation in llvm-objdump syntax, one instruction a line."""
        from ..ebpf.disasm import listing
        return listing(self.insns)


# --- emission: each classic instruction becomes a list of items; a jump item is
# (eBPF Insn with off=0, classic target index), resolved in the second pass ----------

def _alu32(op: int, dst: int, imm: int = 0, src: int | None = None) -> EInsn:
    if src is None:
        return EInsn(e.BPF_ALU | op | e.BPF_K, dst, 0, 0, _s32(imm))
    return EInsn(e.BPF_ALU | op | e.BPF_X, dst, src, 0, 0)


def _mov64(dst: int, src: int) -> EInsn:
    return EInsn(e.BPF_ALU64 | e.BPF_MOV | e.BPF_X, dst, src)


def _ldxw(dst: int, src: int, off: int) -> EInsn:
    return EInsn(e.BPF_LDX | e.BPF_MEM | e.BPF_W, dst, src, off)


def _exit() -> EInsn:
    return EInsn(e.BPF_JMP | e.BPF_EXIT)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _ancillary(ad: int) -> list:
    """convert_bpf_extensions, through __sk_buff fields and helpers."""
    if ad in _ANC_UNSUPPORTED:
        raise UnsupportedError(*_ANC_UNSUPPORTED[ad])
    if ad in _ANC_FIELD:
        name, be16 = _ANC_FIELD[ad]
        out = [_ldxw(REG_A, REG_CTX, SKB_FIELD_OFFSETS[name])]
        if be16:
            # the field holds skb->protocol / vlan_proto as stored (__be16); the kernel
            # converts with BPF_ENDIAN(BPF_FROM_BE, A, 16)
            out.append(EInsn(e.BPF_ALU | e.BPF_END | e.BPF_TO_BE, REG_A, 0, 0, 16))
        return out
    if ad == c.SKF_AD_IFINDEX:
        # no device: the kernel's conversion exits with r0 = A as it is
        return [_ldxw(REG_TMP, REG_CTX, SKB_FIELD_OFFSETS["ifindex"]),
                EInsn(e.BPF_JMP | e.BPF_JNE | e.BPF_K, REG_TMP, 0, 1, 0),
                _exit(), _mov64(REG_A, REG_TMP)]
    if ad == c.SKF_AD_CPU:
        return [EInsn(e.BPF_JMP | e.BPF_CALL, 0, 0, 0, _HELPER_CPU)]
    if ad == c.SKF_AD_RANDOM:
        return [EInsn(e.BPF_JMP | e.BPF_CALL, 0, 0, 0, _HELPER_PRANDOM)]
    if ad == c.SKF_AD_ALU_XOR_X:
        return [_alu32(e.BPF_XOR, REG_A, src=REG_X)]
    raise AssertionError(ad)        # the validator admits only known SKF_AD_* values


def _jump(ins, i: int) -> list:
    """Conditional jumps (bpf_convert_filter's BPF_JMP case)."""
    op = ins.code & 0xF0
    out = []
    if ins.code & c.BPF_X:
        src, code_src, imm = REG_X, e.BPF_X, 0
    elif _s32(ins.k) < 0:
        # a negative immediate would be sign-extended by the 64-bit compare
        out.append(_alu32(e.BPF_MOV, REG_TMP, ins.k))
        src, code_src, imm = REG_TMP, e.BPF_X, 0
    else:
        src, code_src, imm = 0, e.BPF_K, ins.k
    if ins.jf == 0:
        out.append((EInsn(e.BPF_JMP | op | code_src, REG_A, src, 0, imm), i + 1 + ins.jt))
    elif ins.jt == 0 and op in _INVERTED:
        out.append((EInsn(e.BPF_JMP | _INVERTED[op] | code_src, REG_A, src, 0, imm),
                    i + 1 + ins.jf))
    else:
        out.append((EInsn(e.BPF_JMP | op | code_src, REG_A, src, 0, imm), i + 1 + ins.jt))
        out.append((EInsn(e.BPF_JMP | e.BPF_JA), i + 1 + ins.jf))
    return out


def _convert(ins, i: int) -> list:
    code, k = ins.code, ins.k
    cls = code & 0x07
    if cls == c.BPF_RET:
        if code == c.BPF_RET | c.BPF_K:
            return [_alu32(e.BPF_MOV, REG_A, k), _exit()]
        return [_exit()]                                         # RET A
    if cls == c.BPF_LD:
        mode = code & 0xE0
        if mode == c.BPF_ABS:
            ad = kernel_ancillary(ins)
            if ad is not None:
                return _ancillary(ad)
            return [EInsn(e.BPF_LD | e.BPF_ABS | _SIZES[code & 0x18], 0, 0, 0, _s32(k))]
        if mode == c.BPF_IND:
            return [EInsn(e.BPF_LD | e.BPF_IND | _SIZES[code & 0x18], 0, REG_X, 0, _s32(k))]
        if mode == c.BPF_LEN:
            return [_ldxw(REG_A, REG_CTX, SKB_FIELD_OFFSETS["len"])]
        if mode == c.BPF_IMM:
            return [_alu32(e.BPF_MOV, REG_A, k)]
        if mode == c.BPF_MEM:
            return [_ldxw(REG_A, REG_FP, scratch_offset(k))]
    if cls == c.BPF_LDX:
        mode = code & 0xE0
        if mode == c.BPF_LEN:
            return [_ldxw(REG_X, REG_CTX, SKB_FIELD_OFFSETS["len"])]
        if mode == c.BPF_IMM:
            return [_alu32(e.BPF_MOV, REG_X, k)]
        if mode == c.BPF_MEM:
            return [_ldxw(REG_X, REG_FP, scratch_offset(k))]
        if mode == c.BPF_MSH:
            # X = A (saves A: the load writes r0); A = byte at k; A = (A & 0xf) << 2;
            # then swap A and X through tmp -- the kernel's sequence
            return [_mov64(REG_X, REG_A),
                    EInsn(e.BPF_LD | e.BPF_ABS | e.BPF_B, 0, 0, 0, _s32(k)),
                    _alu32(e.BPF_AND, REG_A, 0xF), _alu32(e.BPF_LSH, REG_A, 2),
                    _mov64(REG_TMP, REG_X), _mov64(REG_X, REG_A), _mov64(REG_A, REG_TMP)]
    if cls in (c.BPF_ST, c.BPF_STX):
        src = REG_A if cls == c.BPF_ST else REG_X
        return [EInsn(e.BPF_STX | e.BPF_MEM | e.BPF_W, REG_FP, src, scratch_offset(k))]
    if cls == c.BPF_ALU:
        op = code & 0xF0
        if op == c.BPF_NEG:
            return [EInsn(e.BPF_ALU | e.BPF_NEG, REG_A)]
        if code & c.BPF_X:
            out = []
            if op in (c.BPF_DIV, c.BPF_MOD):
                # the kernel first zero-extends X (a no-op here: X is always a u32),
                # then returns 0 on division by zero
                out += [_alu32(e.BPF_MOV, REG_X, src=REG_X),
                        EInsn(e.BPF_JMP | e.BPF_JNE | e.BPF_K, REG_X, 0, 2, 0),
                        _alu32(e.BPF_XOR, REG_A, src=REG_A), _exit()]
            return out + [_alu32(_ALU_OPS[op], REG_A, src=REG_X)]
        return [_alu32(_ALU_OPS[op], REG_A, k)]
    if cls == c.BPF_JMP:
        if code == c.BPF_JMP | c.BPF_JA:
            return [(EInsn(e.BPF_JMP | e.BPF_JA), i + 1 + k)]
        return _jump(ins, i)
    if cls == c.BPF_MISC:
        if code == c.BPF_MISC | c.BPF_TAX:
            return [_mov64(REG_X, REG_A)]
        return [_mov64(REG_A, REG_X)]                            # TXA
    raise AssertionError(f"opcode 0x{code:02x}")                 # the validator refuses it


# The kernel zeroes A and X with `w ^= w`; the verifier refuses reading the
# uninitialised r0/r7 that way ("R0 !read_ok"), so they are moved 0 instead.
_PROLOGUE = (_alu32(e.BPF_MOV, REG_A, 0), _alu32(e.BPF_MOV, REG_X, 0), _mov64(REG_CTX, 1))


def reachable(insns) -> list[bool]:
    """Which classic instructions some path from instruction 0 reaches (the CFG only:
    both edges of every conditional jump count)."""
    seen = [False] * len(insns)
    work = [0]
    while work:
        i = work.pop()
        if i >= len(insns) or seen[i]:
            continue
        seen[i] = True
        ins = insns[i]
        cls = ins.code & 0x07
        if cls == c.BPF_RET:
            continue
        if ins.code == c.BPF_JMP | c.BPF_JA:
            work.append(i + 1 + ins.k)
        elif cls == c.BPF_JMP:
            work += [i + 1 + ins.jt, i + 1 + ins.jf]
        else:
            work.append(i + 1)
    return seen


def translate_socket(prog: Program | Iterable) -> SocketTranslation:
    """Translate a classic program into an eBPF SOCKET_FILTER program that returns, for
    every skb, what the classic program returns when attached with SO_ATTACH_FILTER.

    Classic instructions that no path reaches are not translated (the verifier
    refuses unreachable code).

    Raises ValidationError (errno -22, the kernel's rule) for a program the kernel's
    classic validator refuses, UnsupportedError for an ancillary load that no eBPF
    program can express (HATYPE, NLATTR, NLATTR_NEST, PAY_OFFSET)."""
    prog = prog if isinstance(prog, Program) else Program(prog)
    validate(prog, "kernel")
    # Classic instructions no path reaches are left out: the kernel keeps them (its image
    # is never verified) but the verifier refuses a program with an unreachable
    # instruction.  Jumps only target reachable instructions, so nothing else changes.
    live = reachable(prog.insns)
    pieces = [_convert(ins, i) if live[i] else [] for i, ins in enumerate(prog.insns)]
    starts: list[int | None] = []
    pos = len(_PROLOGUE)
    for i, p in enumerate(pieces):
        starts.append(pos if live[i] else None)
        pos += len(p)
    out = list(_PROLOGUE)
    for i, p in enumerate(pieces):
        for item in p:
            if isinstance(item, tuple):
                insn, target = item
                off = starts[target] - (len(out) + 1)
                if not _S16_MIN <= off <= _S16_MAX:
                    ins = prog.insns[i]
                    raise ValidationError(
                        f"the eBPF jump for classic instruction {i} (to {target}) needs "
                        f"offset {off}, outside the s16 range of eBPF jump offsets",
                        index=i, rule="translate.jump_range", errno=-22,
                        insn_text=f"code=0x{ins.code:02x} jt={ins.jt} jf={ins.jf} k={ins.k}")
                item = EInsn(insn.opcode, insn.dst, insn.src, off, insn.imm)
            out.append(item)
    return SocketTranslation(tuple(out), tuple(starts), prog)
