"""eBPF disassembler: two syntaxes, both read back exactly by `bpfkit.ebpf.asm`.

* ``llvm``: the C-like syntax of ``llvm-objdump -d`` (checked line by line against
  llvm-objdump 14 on this machine, see tests/test_ebpf_asm.py) and of the kernel's
  verifier log.  The v4 forms that llvm-objdump 14 does not know (sdiv/smod, movsx,
  sign-extending loads, bswap, gotol, BPF_ST stores, jset, mod) are written the way
  LLVM >= 17 and the kernel's kernel/bpf/disasm.c print them:
  ``r1 s/= r2``, ``r1 = (s8)r2``, ``r1 = *(s16 *)(r2 + 4)``, ``r1 = bswap16 r1``,
  ``gotol +3``, ``*(u32 *)(r10 - 8) = 5``, ``if r1 & r2 goto +1``, ``r1 %= r2``,
  ``may_goto +3`` (LLVM >= 19; llvm-objdump 14 prints ``<unknown>``).
* ``kernel``: the verifier log's spelling (kernel/bpf/disasm.c, checked against the
  "Live regs before insn" listing of this machine's 6.18 kernel): ``(r10 -8)``,
  ``goto pc+3``, ``may_goto pc+3``, jump immediates in hex, ``r1 = 0x1122334455667788``
  for lddw (the assembler needs the log's ``(18)`` opcode or an ``ll`` suffix to tell it
  from a mov),
  ``call bpf_map_lookup_elem#1``, ``r1 = atomic64_fetch_add((u64 *)(r0 +0), r1)``.
* ``conformance``: the bpf_conformance / uBPF mnemonic syntax
  (``ldxh %r0, [%r6+12]``, ``lock fetch add [%r10-8], %r1``); it has no spelling
  for may_goto, which is written ``may_goto +3`` there too.

An encoding that is no valid instruction (unknown opcode, a reserved field set, a
register above r10) is written as the directive ``.insn OPCODE, DST, SRC, OFF, IMM``,
which both assemblers accept, so any byte string survives a round trip.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import EncodingError
from . import isa
from .helper_ids import helper_name
from .isa import Insn, Op

__all__ = ["format_insn", "disasm", "listing", "raw_directive"]

# operator spelling in the LLVM syntax (BPFInstrInfo.td)
_LLVM_ALU = {
    isa.BPF_ADD: "+=", isa.BPF_SUB: "-=", isa.BPF_MUL: "*=", isa.BPF_DIV: "/=",
    isa.BPF_OR: "|=", isa.BPF_AND: "&=", isa.BPF_LSH: "<<=", isa.BPF_RSH: ">>=",
    isa.BPF_MOD: "%=", isa.BPF_XOR: "^=", isa.BPF_MOV: "=", isa.BPF_ARSH: "s>>=",
}
_LLVM_SIGNED_ALU = {isa.BPF_DIV: "s/=", isa.BPF_MOD: "s%="}
_LLVM_JMP = {
    isa.BPF_JEQ: "==", isa.BPF_JGT: ">", isa.BPF_JGE: ">=", isa.BPF_JSET: "&",
    isa.BPF_JNE: "!=", isa.BPF_JSGT: "s>", isa.BPF_JSGE: "s>=", isa.BPF_JLT: "<",
    isa.BPF_JLE: "<=", isa.BPF_JSLT: "s<", isa.BPF_JSLE: "s<=",
}
_LLVM_ATOMIC = {isa.BPF_ADD: "+=", isa.BPF_OR: "|=", isa.BPF_AND: "&=", isa.BPF_XOR: "^="}
_SIZE_NAME = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
_SSIZE_NAME = {1: "s8", 2: "s16", 4: "s32"}


def raw_directive(insn: Insn) -> str:
    """The `.insn` directive holding `insn`'s fields verbatim."""
    return f".insn 0x{insn.opcode:02x}, {insn.dst}, {insn.src}, {insn.off}, {insn.imm}"


def _valid_op(insn: Insn) -> Op | None:
    try:
        return isa.check(insn)
    except EncodingError:
        return None


def _mem(reg: int, off: int) -> str:
    # llvm-objdump: "(r10 - 8)", "(r1 + 0)"
    return f"(r{reg} - {-off})" if off < 0 else f"(r{reg} + {off})"


def _rel(n: int) -> str:
    return f"{n:+d}"


def _llvm(insn: Insn, op: Op, alu32: bool) -> str:
    k = op.kind
    d, s = insn.dst, insn.src
    if k in ("alu", "neg"):
        p = "w" if op.width == 32 else "r"
        if k == "neg":
            return f"{p}{d} = -{p}{d}"
        if op.op == isa.BPF_MOV and insn.off:
            return f"{p}{d} = (s{insn.off}){p}{s}"
        sym = (_LLVM_SIGNED_ALU[op.op] if op.op in _LLVM_SIGNED_ALU and insn.off == 1
               else _LLVM_ALU[op.op])
        rhs = f"{p}{s}" if op.source == isa.BPF_X else str(insn.imm)
        return f"{p}{d} {sym} {rhs}"
    if k == "end":
        return f"r{d} = {op.name} r{d}"
    if k == "ja":
        return f"goto {_rel(insn.off)}"
    if k == "gotol":
        return f"gotol {_rel(insn.imm)}"
    if k == "may_goto":
        return f"may_goto {_rel(insn.off)}"
    if k == "jcond":
        p = "w" if op.width == 32 else "r"
        rhs = f"{p}{s}" if op.source == isa.BPF_X else str(insn.imm)
        return f"if {p}{d} {_LLVM_JMP[op.op]} {rhs} goto {_rel(insn.off)}"
    if k == "call":
        if insn.src == isa.BPF_PSEUDO_CALL:
            # verifier-log spelling; llvm-objdump prints the bare imm ("call -3")
            return f"call pc{_rel(insn.imm)}"
        if insn.src == isa.BPF_PSEUDO_KFUNC_CALL:
            return f"call kfunc {insn.imm}" + (f", {insn.off}" if insn.off else "")
        return f"call {insn.imm}"
    if k == "callx":
        return f"callx r{d}"
    if k == "exit":
        return "exit"
    if k == "lddw":
        if insn.src == 0:
            signed = insn.imm - (1 << 64) if insn.imm >> 63 else insn.imm
            return f"r{d} = {signed} ll"
        lo, hi = insn.imm & 0xFFFFFFFF, insn.imm >> 32
        lo_s = lo - (1 << 32) if lo >> 31 else lo
        # llvm-objdump 14 prints "ld_pseudo r1, SRC, IMM" (the first slot's imm only)
        return f"ld_pseudo\tr{d}, {insn.src}, {lo_s}" + (f", {hi}" if hi else "")
    if k == "ldabs":
        return f"r0 = *({_SIZE_NAME[op.size]} *)skb[{insn.imm}]"
    if k == "ldind":
        tail = "" if insn.imm == 0 else (f" - {-insn.imm}" if insn.imm < 0 else f" + {insn.imm}")
        return f"r0 = *({_SIZE_NAME[op.size]} *)skb[r{s}{tail}]"
    if k == "ldx":
        if alu32 and op.size < 8:
            return f"w{d} = *({_SIZE_NAME[op.size]} *){_mem(s, insn.off)}"
        return f"r{d} = *({_SIZE_NAME[op.size]} *){_mem(s, insn.off)}"
    if k == "ldxs":
        return f"r{d} = *({_SSIZE_NAME[op.size]} *){_mem(s, insn.off)}"
    if k == "st":
        return f"*({_SIZE_NAME[op.size]} *){_mem(d, insn.off)} = {insn.imm}"
    if k == "stx":
        p = "w" if alu32 and op.size < 8 else "r"
        return f"*({_SIZE_NAME[op.size]} *){_mem(d, insn.off)} = {p}{s}"
    if k == "atomic":
        w64 = op.size == 8
        p = "r" if w64 else "w"
        ty = "u64" if w64 else "u32"
        a = insn.imm
        if a == isa.BPF_XCHG:
            return f"{p}{s} = {'xchg_64' if w64 else 'xchg32_32'}(r{d} + {insn.off}, {p}{s})" \
                if insn.off >= 0 else \
                f"{p}{s} = {'xchg_64' if w64 else 'xchg32_32'}(r{d} - {-insn.off}, {p}{s})"
        if a == isa.BPF_CMPXCHG:
            fn = "cmpxchg_64" if w64 else "cmpxchg32_32"
            addr = f"r{d} + {insn.off}" if insn.off >= 0 else f"r{d} - {-insn.off}"
            return f"{p}0 = {fn}({addr}, {p}0, {p}{s})"
        base = a & ~isa.BPF_FETCH
        if a & isa.BPF_FETCH:
            name = isa.ATOMIC_OPS[base]
            return f"{p}{s} = atomic_fetch_{name}(({ty} *){_mem(d, insn.off)}, {p}{s})"
        # llvm-objdump without +alu32 writes the 32-bit form with an r register
        q = "r" if w64 or not alu32 else "w"
        return f"lock *({ty} *){_mem(d, insn.off)} {_LLVM_ATOMIC[base]} {q}{s}"
    raise AssertionError(k)  # every kind of the table is handled above


def _kmem(reg: int, off: int) -> str:
    # kernel/bpf/disasm.c prints offsets with "%+d": "(r10 -8)", "(r1 +0)"
    return f"(r{reg} {off:+d})"


def _kernel(insn: Insn, op: Op) -> str:
    """kernel/bpf/disasm.c print_bpf_insn (the verifier log), Linux 6.18."""
    k = op.kind
    d, s = insn.dst, insn.src
    if k in ("alu", "neg", "end"):
        return _llvm(insn, op, False)                 # same spelling as LLVM
    if k == "ja":
        return f"goto pc{insn.off:+d}"
    if k == "gotol":
        return f"gotol pc{insn.imm:+d}"
    if k == "may_goto":
        return f"may_goto pc{insn.off:+d}"
    if k == "jcond":
        p = "w" if op.width == 32 else "r"
        rhs = f"{p}{s}" if op.source == isa.BPF_X else f"0x{insn.imm & 0xFFFFFFFF:x}"
        return f"if {p}{d} {_LLVM_JMP[op.op]} {rhs} goto pc{insn.off:+d}"
    if k == "call":
        if insn.src == isa.BPF_PSEUDO_CALL:
            return f"call pc{insn.imm:+d}"
        if insn.src == isa.BPF_PSEUDO_KFUNC_CALL:
            return _llvm(insn, op, False)
        name = "bpf_unspec" if insn.imm == 0 else helper_name(insn.imm)
        return f"call {name}#{insn.imm}"
    if k == "lddw":
        if insn.src == 0:
            return f"r{d} = 0x{insn.imm:x}"
        return _llvm(insn, op, False)
    if k == "ldabs":
        return f"r0 = *({_SIZE_NAME[op.size]} *)skb[{insn.imm}]"
    if k == "ldind":
        return f"r0 = *({_SIZE_NAME[op.size]} *)skb[r{s} + {insn.imm}]"
    if k == "ldx":
        return f"r{d} = *({_SIZE_NAME[op.size]} *){_kmem(s, insn.off)}"
    if k == "ldxs":
        return f"r{d} = *({_SSIZE_NAME[op.size]} *){_kmem(s, insn.off)}"
    if k == "st":
        return f"*({_SIZE_NAME[op.size]} *){_kmem(d, insn.off)} = {insn.imm}"
    if k == "stx":
        return f"*({_SIZE_NAME[op.size]} *){_kmem(d, insn.off)} = r{s}"
    if k == "atomic":
        ty = "u64" if op.size == 8 else "u32"
        pre = "atomic64_" if op.size == 8 else "atomic_"
        mem = f"(({ty} *){_kmem(d, insn.off)}"
        a = insn.imm
        if a == isa.BPF_XCHG:
            return f"r{s} = {pre}xchg{mem}, r{s})"
        if a == isa.BPF_CMPXCHG:
            return f"r0 = {pre}cmpxchg{mem}, r0, r{s})"
        base = a & ~isa.BPF_FETCH
        if a & isa.BPF_FETCH:
            return f"r{s} = {pre}fetch_{isa.ATOMIC_OPS[base]}{mem}, r{s})"
        return f"lock *({ty} *){_kmem(d, insn.off)} {_LLVM_ATOMIC[base]} r{s}"
    if k in ("callx", "exit"):
        return _llvm(insn, op, False)
    raise AssertionError(k)


def _conf_mem(reg: int, off: int) -> str:
    return f"[%r{reg}{off:+d}]"


def _conf(insn: Insn, op: Op) -> str:
    k = op.kind
    d, s = insn.dst, insn.src
    if k == "alu":
        rhs = f"%r{s}" if op.source == isa.BPF_X else str(insn.imm)
        return f"{op.name} %r{d}, {rhs}"
    if k in ("neg", "end"):
        return f"{op.name} %r{d}"
    if k == "ja":
        return f"ja {_rel(insn.off)}"
    if k == "gotol":
        return f"ja32 {_rel(insn.imm)}"
    if k == "may_goto":
        return f"may_goto {_rel(insn.off)}"       # bpf_conformance has no spelling of its own
    if k == "jcond":
        rhs = f"%r{s}" if op.source == isa.BPF_X else str(insn.imm)
        return f"{op.name} %r{d}, {rhs}, {_rel(insn.off)}"
    if k == "call":
        if insn.src == isa.BPF_PSEUDO_CALL:
            return f"call local {_rel(insn.imm)}"
        if insn.src == isa.BPF_PSEUDO_KFUNC_CALL:
            return f"call runtime {insn.imm}" + (f", {insn.off}" if insn.off else "")
        return f"call {insn.imm}"
    if k == "callx":
        return f"call %r{d}"
    if k == "exit":
        return "exit"
    if k == "lddw":
        if insn.src == 0:
            return f"lddw %r{d}, 0x{insn.imm:x}"
        return f"lddw %r{d}, 0x{insn.imm:x}, {isa.PSEUDO_LDDW_NAMES[insn.src]}"
    if k == "ldabs":
        return f"{op.name} {insn.imm}"
    if k == "ldind":
        return f"{op.name} %r{s}, {insn.imm}"
    if k in ("ldx", "ldxs"):
        return f"{op.name} %r{d}, {_conf_mem(s, insn.off)}"
    if k == "st":
        return f"{op.name} {_conf_mem(d, insn.off)}, {insn.imm}"
    if k == "stx":
        return f"{op.name} {_conf_mem(d, insn.off)}, %r{s}"
    if k == "atomic":
        return f"lock {op.name} {_conf_mem(d, insn.off)}, %r{s}"
    raise AssertionError(k)


def format_insn(insn: Insn, syntax: str = "llvm", *, alu32: bool = False) -> str:
    """One instruction as text.  syntax: 'llvm', 'kernel' (the verifier log's spelling)
    or 'conformance'.  alu32 only changes
    the LLVM spelling of sub-64-bit loads, stores and atomics, which then name wN
    (llvm-objdump --mattr=+alu32)."""
    op = _valid_op(insn)
    if op is None:
        return raw_directive(insn)
    if syntax == "llvm":
        return _llvm(insn, op, alu32)
    if syntax == "conformance":
        return _conf(insn, op)
    if syntax == "kernel":
        return _kernel(insn, op)
    raise EncodingError(f"unknown syntax {syntax!r} (expected 'llvm', 'kernel' or "
                        "'conformance')")


def disasm(insns: Iterable[Insn], syntax: str = "llvm", *, alu32: bool = False) -> str:
    """The program as assembly text, one instruction per line (jumps as relative offsets)."""
    return "".join(format_insn(i, syntax, alu32=alu32) + "\n" for i in insns)


def listing(insns: Sequence[Insn], *, alu32: bool = False) -> str:
    """llvm-objdump style listing: the slot number right-aligned in 8 columns, ':', tab,
    the instruction (lddw takes two slots, as in `llvm-objdump -d --no-show-raw-insn`)."""
    out = []
    for slot, i in zip(isa.slot_indices(insns), insns):
        out.append(f"{slot:8d}:\t{format_insn(i, 'llvm', alu32=alu32)}\n")
    return "".join(out)
