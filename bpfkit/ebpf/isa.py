"""eBPF instruction set: opcode fields, the one table of instruction facts, and the
frozen `Insn` with its raw encoding.

Names follow include/uapi/linux/bpf.h and bpf_common.h; the instruction set is
RFC 9669 plus the Linux v4 additions (sdiv/smod, movsx, sign-extending loads,
bswap, `gotol`) and `may_goto` (BPF_JMP | BPF_JCOND, src BPF_MAY_GOTO; Linux 6.9).
`lddw` is one logical instruction holding a 64-bit immediate that encodes to two
8-byte slots.

Field conventions of `Insn` (canonical, normalised on construction):
  off  signed 16-bit; imm signed 32-bit, except for lddw where imm is the
  64-bit immediate as an unsigned value (the kernel reads it as
  (u32)insn[0].imm | (u64)(u32)insn[1].imm << 32, see check_ld_imm / ___bpf_prog_run).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import EncodingError

# --- opcode fields (linux/bpf_common.h, linux/bpf.h) -------------------------
# classes
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
# sizes
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
# modes
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_MEMSX, BPF_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
# source
BPF_K, BPF_X = 0x00, 0x08
BPF_TO_LE, BPF_TO_BE = 0x00, 0x08
# ALU operations
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV = 0x00, 0x10, 0x20, 0x30
BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = 0x40, 0x50, 0x60, 0x70
BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV = 0x80, 0x90, 0xA0, 0xB0
BPF_ARSH, BPF_END = 0xC0, 0xD0
# JMP operations
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE = 0x00, 0x10, 0x20, 0x30
BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE = 0x40, 0x50, 0x60, 0x70
BPF_CALL, BPF_EXIT, BPF_JLT, BPF_JLE = 0x80, 0x90, 0xA0, 0xB0
BPF_JSLT, BPF_JSLE = 0xC0, 0xD0
BPF_JCOND = 0xE0                 # "may_goto" (include/uapi/linux/bpf.h, Linux 6.9)
BPF_MAY_GOTO = 0                 # src_reg of BPF_JCOND
# the hidden loop counter the verifier gives may_goto (kernel/bpf/verifier.c
# do_misc_fixups; include/linux/bpf.h BPF_MAX_LOOPS)
BPF_MAX_LOOPS = 8 * 1024 * 1024
# atomic operations (imm of BPF_STX | BPF_ATOMIC)
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
# src_reg of lddw (BPF_LD | BPF_IMM | BPF_DW)
BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_BTF_ID = 1, 2, 3
BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE = 4, 5, 6
# src_reg of BPF_JMP | BPF_CALL
BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL = 1, 2

LDDW = BPF_LD | BPF_IMM | BPF_DW          # 0x18
MAX_BPF_STACK = 512
MAX_CALL_FRAMES = 8                        # include/linux/bpf_verifier.h
REG_FP = 10

PSEUDO_LDDW_NAMES = {
    0: "imm64", BPF_PSEUDO_MAP_FD: "map_fd", BPF_PSEUDO_MAP_VALUE: "map_value",
    BPF_PSEUDO_BTF_ID: "btf_id", BPF_PSEUDO_FUNC: "func", BPF_PSEUDO_MAP_IDX: "map_idx",
    BPF_PSEUDO_MAP_IDX_VALUE: "map_idx_value",
}

ALU_OPS = {  # op bits -> conformance-syntax base name
    BPF_ADD: "add", BPF_SUB: "sub", BPF_MUL: "mul", BPF_DIV: "div", BPF_OR: "or",
    BPF_AND: "and", BPF_LSH: "lsh", BPF_RSH: "rsh", BPF_NEG: "neg", BPF_MOD: "mod",
    BPF_XOR: "xor", BPF_MOV: "mov", BPF_ARSH: "arsh",
}
JMP_OPS = {
    BPF_JEQ: "jeq", BPF_JGT: "jgt", BPF_JGE: "jge", BPF_JSET: "jset", BPF_JNE: "jne",
    BPF_JSGT: "jsgt", BPF_JSGE: "jsge", BPF_JLT: "jlt", BPF_JLE: "jle", BPF_JSLT: "jslt",
    BPF_JSLE: "jsle",
}
ATOMIC_OPS = {BPF_ADD: "add", BPF_OR: "or", BPF_AND: "and", BPF_XOR: "xor"}
SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}
SIZE_SUFFIX = {BPF_W: "w", BPF_H: "h", BPF_B: "b", BPF_DW: "dw"}


# --- the table of instruction facts -------------------------------------------

@dataclass(frozen=True, slots=True)
class Op:
    """Facts about one instruction form.

    kind: alu | neg | end | ja | gotol | jcond | may_goto | call | callx | exit |
          lddw | ldabs | ldind | ldx | st | stx | atomic
    variant: the value of the field that selects among forms sharing an opcode
    (`off` for DIV/MOD/MOV, `imm` for END and atomics, `src` for CALL), or None.
    name: the bpf_conformance mnemonic.  width: 32 or 64 for ALU/JMP, else 0.
    size: memory access bytes.  op: ALU/JMP/atomic operation bits.
    must_be_zero: fields that are reserved (must be 0) for this form.
    """
    opcode: int
    variant: int | None
    kind: str
    name: str
    width: int = 0
    size: int = 0
    op: int = 0
    source: int = BPF_K
    must_be_zero: tuple[str, ...] = ()


def _build_table() -> dict[tuple[int, int | None], Op]:
    t: dict[tuple[int, int | None], Op] = {}

    def add(o: Op):
        t[(o.opcode, o.variant)] = o

    for cls, width, sfx in ((BPF_ALU, 32, "32"), (BPF_ALU64, 64, "")):
        for op, name in ALU_OPS.items():
            if op == BPF_NEG:
                # kernel check_alu_op: BPF_NEG needs BPF_K with src_reg, off and imm zero
                add(Op(cls | op | BPF_K, None, "neg", "neg" + sfx, width, op=op,
                       must_be_zero=("src", "off", "imm")))
                continue
            for src in (BPF_K, BPF_X):
                reserved = ("src",) if src == BPF_K else ("imm",)
                code = cls | op | src
                if op in (BPF_DIV, BPF_MOD):
                    # off 1 selects the signed form (v4: sdiv/smod)
                    add(Op(code, 0, "alu", name + sfx, width, op=op, source=src,
                           must_be_zero=reserved))
                    add(Op(code, 1, "alu", "s" + name + sfx, width, op=op, source=src,
                           must_be_zero=reserved))
                elif op == BPF_MOV:
                    add(Op(code, 0, "alu", name + sfx, width, op=op, source=src,
                           must_be_zero=reserved))
                    if src == BPF_X:
                        # v4 movsx: off = source width; ALU32 allows 8/16, ALU64 8/16/32
                        for bits in ((8, 16) if width == 32 else (8, 16, 32)):
                            add(Op(code, bits, "alu", f"movsx{bits}{width}", width, op=op,
                                   source=src, must_be_zero=reserved))
                else:
                    add(Op(code, None, "alu", name + sfx, width, op=op, source=src,
                           must_be_zero=reserved + ("off",)))
    for code, base in ((BPF_ALU | BPF_END | BPF_TO_LE, "le"),
                       (BPF_ALU | BPF_END | BPF_TO_BE, "be"),
                       (BPF_ALU64 | BPF_END | BPF_TO_LE, "bswap")):
        for bits in (16, 32, 64):
            add(Op(code, bits, "end", f"{base}{bits}", 64 if base == "bswap" else 32, size=bits,
                   source=code & BPF_X, must_be_zero=("src", "off")))

    add(Op(BPF_JMP | BPF_JA, None, "ja", "ja", 64, must_be_zero=("dst", "src", "imm")))
    add(Op(BPF_JMP32 | BPF_JA, None, "gotol", "ja32", 32, must_be_zero=("dst", "src", "off")))
    # may_goto: kernel check_cond_jmp_op / check_jmp_fields accept only BPF_JMP class,
    # src BPF_MAY_GOTO (0), dst and imm zero; any off (newer kernels accept off 0 and
    # remove it as a no-op)
    add(Op(BPF_JMP | BPF_JCOND, None, "may_goto", "may_goto", 64,
           must_be_zero=("dst", "src", "imm")))
    for cls, width, sfx in ((BPF_JMP, 64, ""), (BPF_JMP32, 32, "32")):
        for op, name in JMP_OPS.items():
            add(Op(cls | op | BPF_K, None, "jcond", name + sfx, width, op=op, source=BPF_K,
                   must_be_zero=("src",)))
            add(Op(cls | op | BPF_X, None, "jcond", name + sfx, width, op=op, source=BPF_X,
                   must_be_zero=("imm",)))
    add(Op(BPF_JMP | BPF_CALL, 0, "call", "call", must_be_zero=("dst", "off")))
    add(Op(BPF_JMP | BPF_CALL, BPF_PSEUDO_CALL, "call", "call local", must_be_zero=("dst", "off")))
    # kfunc calls: off is the BTF fd index, so it is not reserved
    add(Op(BPF_JMP | BPF_CALL, BPF_PSEUDO_KFUNC_CALL, "call", "call runtime", must_be_zero=("dst",)))
    # callx (LLVM/ubpf extension, not accepted by Linux): target register in dst
    add(Op(BPF_JMP | BPF_CALL | BPF_X, None, "callx", "callx", source=BPF_X,
           must_be_zero=("src", "off", "imm")))
    add(Op(BPF_JMP | BPF_EXIT, None, "exit", "exit", must_be_zero=("dst", "src", "off", "imm")))

    for src in PSEUDO_LDDW_NAMES:
        add(Op(LDDW, src, "lddw", "lddw", size=8, must_be_zero=("off",)))
    for sz in (BPF_W, BPF_H, BPF_B):
        s = SIZE_SUFFIX[sz]
        # kernel check_ld_abs: dst_reg and off reserved; src_reg reserved for ABS
        add(Op(BPF_LD | BPF_ABS | sz, None, "ldabs", "ldabs" + s, size=SIZE_BYTES[sz],
               must_be_zero=("dst", "src", "off")))
        add(Op(BPF_LD | BPF_IND | sz, None, "ldind", "ldind" + s, size=SIZE_BYTES[sz],
               must_be_zero=("dst", "off")))
    for sz in (BPF_W, BPF_H, BPF_B, BPF_DW):
        s = SIZE_SUFFIX[sz]
        n = SIZE_BYTES[sz]
        add(Op(BPF_LDX | BPF_MEM | sz, None, "ldx", "ldx" + s, size=n, must_be_zero=("imm",)))
        if sz != BPF_DW:
            add(Op(BPF_LDX | BPF_MEMSX | sz, None, "ldxs", "ldxs" + s, size=n,
                   must_be_zero=("imm",)))
        add(Op(BPF_ST | BPF_MEM | sz, None, "st", "st" + s, size=n, must_be_zero=("src",)))
        add(Op(BPF_STX | BPF_MEM | sz, None, "stx", "stx" + s, size=n, must_be_zero=("imm",)))
    for sz, sfx in ((BPF_W, "32"), (BPF_DW, "")):
        code = BPF_STX | BPF_ATOMIC | sz
        for op, name in ATOMIC_OPS.items():
            add(Op(code, op, "atomic", name + sfx, size=SIZE_BYTES[sz], op=op))
            add(Op(code, op | BPF_FETCH, "atomic", "fetch " + name + sfx, size=SIZE_BYTES[sz],
                   op=op | BPF_FETCH))
        add(Op(code, BPF_XCHG, "atomic", "xchg" + sfx, size=SIZE_BYTES[sz], op=BPF_XCHG))
        add(Op(code, BPF_CMPXCHG, "atomic", "cmpxchg" + sfx, size=SIZE_BYTES[sz], op=BPF_CMPXCHG))
    return t


OPS: dict[tuple[int, int | None], Op] = _build_table()
_VARIANT_FIELD: dict[int, str] = {}
for (_code, _variant) in OPS:
    if _variant is not None:
        o = OPS[(_code, _variant)]
        _VARIANT_FIELD[_code] = ("src" if o.kind in ("call", "lddw")
                                 else "imm" if o.kind in ("end", "atomic") else "off")
OPCODES = frozenset(code for code, _ in OPS)


# --- the instruction ------------------------------------------------------------

def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True, slots=True)
class Insn:
    """One eBPF instruction; lddw (opcode 0x18) is one Insn holding a 64-bit imm."""
    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self):
        if not (0 <= self.opcode <= 0xFF and 0 <= self.dst <= 15 and 0 <= self.src <= 15):
            raise EncodingError(f"instruction field out of range: opcode={self.opcode} "
                                f"dst={self.dst} src={self.src} (opcode u8, registers 0..15)")
        if not -(1 << 15) <= self.off < (1 << 16):
            raise EncodingError(f"offset {self.off} does not fit 16 bits")
        object.__setattr__(self, "off", _signed(self.off, 16))
        if self.opcode == LDDW:
            if not -(1 << 63) <= self.imm < (1 << 64):
                raise EncodingError(f"lddw immediate {self.imm} does not fit 64 bits")
            object.__setattr__(self, "imm", self.imm & ((1 << 64) - 1))
        else:
            if not -(1 << 31) <= self.imm < (1 << 32):
                raise EncodingError(f"immediate {self.imm} does not fit 32 bits")
            object.__setattr__(self, "imm", _signed(self.imm, 32))

    @property
    def cls(self) -> int:
        return self.opcode & 0x07

    @property
    def slots(self) -> int:
        """Number of 8-byte slots the encoding takes (2 for lddw)."""
        return 2 if self.opcode == LDDW else 1

    def to_bytes(self, byteorder: str = "little") -> bytes:
        return encode([self], byteorder)


def op_of(insn: Insn) -> Op | None:
    """The table entry for `insn`'s form, or None if the encoding is not a known
    instruction (unknown opcode or unknown variant such as an END width of 8)."""
    field = _VARIANT_FIELD.get(insn.opcode)
    if field is None:
        return OPS.get((insn.opcode, None))
    return OPS.get((insn.opcode, getattr(insn, field)))


def reserved_fields_set(insn: Insn, op: Op) -> list[str]:
    """Reserved fields of `insn` that are not zero (RFC 9669: unused fields must be zero)."""
    return [f for f in op.must_be_zero if getattr(insn, f) != 0]


def check(insn: Insn) -> Op:
    """The Op of `insn`; EncodingError if unknown or a reserved field is set."""
    op = op_of(insn)
    field = _VARIANT_FIELD.get(insn.opcode)
    if op is None and field is not None:
        known = sorted(v for (c, v) in OPS if c == insn.opcode)
        raise EncodingError(f"opcode 0x{insn.opcode:02x}: invalid variant {field}="
                            f"{getattr(insn, field)} (known: {', '.join(map(str, known))}; "
                            f"a reserved field must be zero)")
    if op is None:
        raise EncodingError(f"unknown instruction: opcode 0x{insn.opcode:02x} "
                            f"dst={insn.dst} src={insn.src} off={insn.off} imm={insn.imm}")
    bad = reserved_fields_set(insn, op)
    if bad:
        raise EncodingError(f"{op.name}: reserved field(s) {', '.join(bad)} must be zero "
                            f"(opcode 0x{insn.opcode:02x})")
    if insn.dst > 10 or (op.source == BPF_X or op.kind in ("ldx", "ldxs", "stx", "atomic",
                                                            "ldind")) and insn.src > 10:
        raise EncodingError(f"{op.name}: register number above r10")
    return op


# --- raw encoding ------------------------------------------------------------------

_SLOT = {"little": struct.Struct("<BBhi"), "big": struct.Struct(">BBhi")}


def _regs_byte(dst: int, src: int, byteorder: str) -> int:
    # struct bpf_insn's dst_reg:4/src_reg:4 bitfields: dst is the low nibble on
    # little-endian hosts, the high nibble on big-endian ones (uapi/linux/bpf.h).
    return (src << 4 | dst) if byteorder == "little" else (dst << 4 | src)


def _check_order(byteorder: str) -> struct.Struct:
    try:
        return _SLOT[byteorder]
    except KeyError:
        raise EncodingError(f"byte order must be 'little' or 'big', not {byteorder!r}") from None


def encode(insns: Iterable[Insn], byteorder: str = "little") -> bytes:
    """Raw bytes of `insns` (lddw takes two slots)."""
    s = _check_order(byteorder)
    out = bytearray()
    for i in insns:
        if i.opcode == LDDW:
            lo = _signed(i.imm, 32)
            hi = _signed(i.imm >> 32, 32)
            out += s.pack(i.opcode, _regs_byte(i.dst, i.src, byteorder), i.off, lo)
            out += s.pack(0, 0, 0, hi)
        else:
            out += s.pack(i.opcode, _regs_byte(i.dst, i.src, byteorder), i.off, i.imm)
    return bytes(out)


def decode(data: bytes | bytearray | memoryview, byteorder: str = "little",
           strict: bool = False) -> list[Insn]:
    """Instructions from raw bytes.  EncodingError (with the byte offset) for a length
    that is not a multiple of 8, an lddw missing its second slot, or a second slot with
    non-zero opcode/registers/offset (kernel check_ld_imm rejects those).  With
    strict=True every instruction must also be a known form with reserved fields zero."""
    s = _check_order(byteorder)
    data = bytes(data)
    if len(data) % 8:
        raise EncodingError(f"program length {len(data)} bytes is not a multiple of 8 "
                            f"(trailing {len(data) % 8} bytes at byte offset {len(data) - len(data) % 8})")
    out: list[Insn] = []
    pos = 0
    while pos < len(data):
        opcode, regs, off, imm = s.unpack_from(data, pos)
        if byteorder == "little":
            dst, src = regs & 0xF, regs >> 4
        else:
            dst, src = regs >> 4, regs & 0xF
        if opcode == LDDW:
            if pos + 16 > len(data):
                raise EncodingError(f"lddw at byte offset {pos} (slot {pos // 8}) is missing "
                                    f"its second slot")
            op2, regs2, off2, imm2 = s.unpack_from(data, pos + 8)
            if op2 or regs2 or off2:
                raise EncodingError(f"lddw at byte offset {pos} (slot {pos // 8}): second slot "
                                    f"must have opcode, registers and offset zero")
            insn = Insn(opcode, dst, src, off, (imm & 0xFFFFFFFF) | (imm2 & 0xFFFFFFFF) << 32)
            size = 16
        else:
            insn = Insn(opcode, dst, src, off, imm)
            size = 8
        if strict:
            try:
                check(insn)
            except EncodingError as e:
                raise EncodingError(f"byte offset {pos} (slot {pos // 8}): {e}") from None
        out.append(insn)
        pos += size
    return out


def slot_indices(insns: Sequence[Insn]) -> list[int]:
    """Slot number of each instruction (jump offsets count slots, lddw counts 2)."""
    out, n = [], 0
    for i in insns:
        out.append(n)
        n += i.slots
    return out


def lddw(dst: int, imm64: int, src: int = 0) -> Insn:
    """Convenience constructor for lddw."""
    return Insn(LDDW, dst, src, 0, imm64)
