"""eBPF assembler for the two syntaxes `bpfkit.ebpf.disasm` writes.

* ``llvm``: the C-like syntax of llvm-objdump and the verifier log
  (``r0 = *(u16 *)(r6 + 12)``, ``if r1 == 0x800 goto +3``, ``w0 += 1``,
  ``lock *(u64 *)(r0 + 0) += r1``, ``r1 = 0 ll``, ``r1 = my_map ll``, and
  ``r2 = callback ll`` for the address of the function at a label).
  Jump targets: ``+N``/``-N``/``pc+N`` (slots) or a label defined as ``name:``.
  Trailing llvm-objdump annotations (``<.text+0x70>``) are ignored.
* ``kernel``: the verifier log (kernel/bpf/disasm.c); lines may keep the log's
  ``N: (op)`` prefix, which also marks ``(18) r1 = 0x...`` as lddw.
* ``conformance``: the bpf_conformance mnemonic syntax (``ldxh %r0, [%r6+12]``,
  ``lock fetch add [%r10-8], %r1``, ``jne %r1, 0, label``).  As in bpf_conformance's
  assembler, the label ``exit`` means the first ``exit`` instruction unless a label of
  that name is defined.

Both accept ``.insn OPCODE, DST, SRC, OFF, IMM`` (any encoding, verbatim; lddw takes
a 64-bit IMM) and comments (``#``, ``//``, ``;``).  Every error is an AsmError with
line:col.  Immediates must fit their field: a decimal 32-bit immediate lies in
[-2**31, 2**31-1], a hexadecimal one in [0, 0xffffffff] (the bpf_conformance negative
tests invalid_imm32_*), offsets likewise in 16 bits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import AsmError, EncodingError
from . import isa
from .isa import Insn

__all__ = ["assemble"]

_NUM = r"[-+]?\s*(?:0[xX][0-9a-fA-F]+|[0-9]+)"


@dataclass(frozen=True, slots=True)
class _Pending:
    """An instruction whose jump/call target is a label resolved after the first pass."""
    insn: Insn
    label: str
    field: str          # "off" or "imm"
    line: int
    col: int
    text: str


class _Line:
    """One source line with its number, for errors."""

    def __init__(self, lineno: int, text: str):
        self.lineno = lineno
        self.text = text

    def error(self, msg: str, col: int = 1) -> AsmError:
        return AsmError(msg, line=self.lineno, col=col, text=self.text)


def _strip_comment(text: str, hash_needs_space: bool) -> str:
    for marker in ("//", ";"):
        i = text.find(marker)
        if i >= 0:
            text = text[:i]
    if hash_needs_space:
        # the verifier log writes helper ids as "name#1": only " #" starts a comment
        m = re.search(r"(^|\s)#", text)
        if m:
            text = text[:m.start()]
    else:
        i = text.find("#")
        if i >= 0:
            text = text[:i]
    return text.rstrip()


def _parse_int(ln: _Line, s: str, col: int, bits: int, what: str, *,
               hex_unsigned: bool = True, unsigned_dec: bool = False) -> int:
    """An integer that must fit `bits` bits: decimal signed (or unsigned with
    unsigned_dec), hex unsigned; raises AsmError at `col`."""
    t = s.replace(" ", "").replace("\t", "")
    neg = t.startswith("-")
    body = t.lstrip("+-")
    try:
        is_hex = body[:2].lower() == "0x"
        v = int(body, 16 if is_hex else 10)
    except ValueError:
        raise ln.error(f"expected a number for {what}, found {s!r}", col) from None
    if neg:
        v = -v
    lo = -(1 << (bits - 1))
    hi = (1 << bits) - 1 if (is_hex and hex_unsigned) or unsigned_dec else (1 << (bits - 1)) - 1
    if not lo <= v <= hi:
        raise ln.error(f"{what} {s.strip()} out of range: must fit {bits} bits "
                       f"([{lo}, {hi}] for this notation)", col)
    return v


def _reg(ln: _Line, s: str, col: int, prefixes: str) -> tuple[int, str]:
    m = re.fullmatch(r"([" + prefixes + r"])(\d+)", s)
    if not m:
        raise ln.error(f"invalid register {s!r}", col)
    n = int(m.group(2))
    if n > 10:
        raise ln.error(f"invalid register {s!r} (r0..r10)", col)
    return n, m.group(1)


def _raw_insn(ln: _Line, args: str, col: int) -> Insn:
    parts = [p.strip() for p in args.split(",")]
    if len(parts) != 5:
        raise ln.error(".insn needs 5 operands: OPCODE, DST, SRC, OFF, IMM", col)
    vals = []
    for p, bits in zip(parts, (8, 4, 4, 16, 64)):
        vals.append(_parse_int(ln, p, col, bits, ".insn field", unsigned_dec=True))
    try:
        return Insn(vals[0] & 0xFF, vals[1] & 0xF, vals[2] & 0xF, vals[3], vals[4])
    except EncodingError as e:
        raise ln.error(str(e), col) from None


# --- shared driver -------------------------------------------------------------------

class _Assembler:
    def __init__(self, parse_line: Callable, maps: Sequence[str] | None):
        self.parse_line = parse_line
        self.maps = list(maps) if maps is not None else None
        self.out: list[Insn | _Pending] = []
        self.slot = 0
        self.labels: dict[str, int] = {}
        self.first_exit: int | None = None

    def emit(self, insn: Insn) -> None:
        if insn.opcode == isa.BPF_JMP | isa.BPF_EXIT and self.first_exit is None:
            self.first_exit = self.slot
        self.out.append(insn)
        self.slot += insn.slots

    def emit_target(self, insn: Insn, target: str, field: str, ln: _Line, col: int) -> None:
        """`target` is '+N', '-N', 'pc+N' or a label."""
        m = re.fullmatch(r"(?:pc)?([-+]\s*(?:0[xX][0-9a-fA-F]+|\d+))", target)
        if m:
            v = _parse_int(ln, m.group(1), col, 16 if field == "off" else 32, "jump offset")
            self.emit(_replace(ln, insn, col, **{field: v}))
            return
        if not re.fullmatch(r"[A-Za-z_.$][\w.$]*", target):
            raise ln.error(f"invalid jump target {target!r} (+N, -N or a label)", col)
        self.out.append(_Pending(insn, target, field, ln.lineno, col, ln.text))
        self.slot += insn.slots

    def label(self, name: str, ln: _Line, col: int) -> None:
        if name in self.labels:
            raise ln.error(f"duplicate label {name!r}", col)
        self.labels[name] = self.slot

    def finish(self, exit_label: bool) -> list[Insn]:
        res: list[Insn] = []
        slot = 0
        for item in self.out:
            if isinstance(item, _Pending):
                target = self.labels.get(item.label)
                if target is None and exit_label and item.label == "exit":
                    target = self.first_exit
                if target is None:
                    raise AsmError(f"undefined label {item.label!r}", line=item.line,
                                   col=item.col, text=item.text)
                rel = target - slot - 1
                lim = 1 << 15 if item.field == "off" else 1 << 31
                if not -lim <= rel < lim:
                    raise AsmError(f"jump to {item.label!r} out of range ({rel} slots)",
                                   line=item.line, col=item.col, text=item.text)
                if item.insn.opcode == isa.LDDW:
                    # lddw of a function (BPF_PSEUDO_FUNC): the s32 offset in the first
                    # slot's imm, the second slot's imm zero
                    rel &= 0xFFFFFFFF
                item = _replace(None, item.insn, item.col, **{item.field: rel})
            res.append(item)
            slot += item.slots
        return res


def _replace(ln: _Line | None, insn: Insn, col: int, **kw) -> Insn:
    f = dict(opcode=insn.opcode, dst=insn.dst, src=insn.src, off=insn.off, imm=insn.imm)
    f.update(kw)
    try:
        return Insn(**f)
    except EncodingError as e:
        if ln is None:
            raise
        raise ln.error(str(e), col) from None


def assemble(text: str, syntax: str = "llvm", *, maps: Sequence[str] | None = None,
             allow_empty: bool = False) -> list[Insn]:
    """Assemble `text`.  syntax: 'llvm' or 'conformance'.

    `maps` names the program's maps in order: in the llvm syntax ``r1 = NAME ll`` becomes
    lddw with src BPF_PSEUDO_MAP_IDX and imm = the index of NAME (libbpf's fd_array
    convention).  An empty program is an error unless allow_empty."""
    if syntax == "llvm":
        asm = _Assembler(_llvm_line, maps)
        hash_space = True
    elif syntax == "kernel":
        asm = _Assembler(_kernel_line, maps)
        hash_space = True
    elif syntax == "conformance":
        asm = _Assembler(_conf_line, maps)
        hash_space = False
    else:
        raise AsmError(f"unknown syntax {syntax!r} (expected 'llvm', 'kernel' or "
                       "'conformance')")
    for n, raw in enumerate(text.splitlines(), 1):
        ln = _Line(n, raw)
        body = _strip_comment(raw, hash_space)
        stripped = body.strip()
        if not stripped:
            continue
        col = len(body) - len(body.lstrip()) + 1
        m = re.match(r"([A-Za-z_.$][\w.$]*)\s*:", stripped)
        if m and not stripped.startswith(".insn"):
            asm.label(m.group(1), ln, col)
            rest = stripped[m.end():]
            if not rest.strip():
                continue
            col += m.end() + len(rest) - len(rest.lstrip())
            stripped = rest.strip()
        if stripped.startswith(".insn"):
            asm.emit(_raw_insn(ln, stripped[5:], col))
            continue
        asm.parse_line(asm, ln, stripped, col)
    if not asm.out and not allow_empty:
        raise AsmError("empty program: no instructions", line=max(1, len(text.splitlines())),
                       col=1)
    return asm.finish(exit_label=syntax == "conformance")


# --- the LLVM syntax -------------------------------------------------------------------

_REG = r"[rw]\d+"
_MEMX = r"\(\s*(?P<b>" + _REG + r")\s*(?:(?P<sign>[-+])\s*(?P<off>0[xX][0-9a-fA-F]+|\d+))?\s*\)"
_ALU_SYMS = {v: k for k, v in {
    isa.BPF_ADD: "+=", isa.BPF_SUB: "-=", isa.BPF_MUL: "*=", isa.BPF_DIV: "/=",
    isa.BPF_OR: "|=", isa.BPF_AND: "&=", isa.BPF_LSH: "<<=", isa.BPF_RSH: ">>=",
    isa.BPF_MOD: "%=", isa.BPF_XOR: "^=", isa.BPF_MOV: "=", isa.BPF_ARSH: "s>>=",
}.items()}
_JMP_SYMS = {"==": isa.BPF_JEQ, ">": isa.BPF_JGT, ">=": isa.BPF_JGE, "&": isa.BPF_JSET,
             "!=": isa.BPF_JNE, "s>": isa.BPF_JSGT, "s>=": isa.BPF_JSGE, "<": isa.BPF_JLT,
             "<=": isa.BPF_JLE, "s<": isa.BPF_JSLT, "s<=": isa.BPF_JSLE}
_SIZES = {"8": isa.BPF_B, "16": isa.BPF_H, "32": isa.BPF_W, "64": isa.BPF_DW}
_ATOM_SYMS = {"+=": isa.BPF_ADD, "|=": isa.BPF_OR, "&=": isa.BPF_AND, "^=": isa.BPF_XOR}
_ATOM_NAMES = {"add": isa.BPF_ADD, "or": isa.BPF_OR, "and": isa.BPF_AND, "xor": isa.BPF_XOR}
_TARGET = r"(?P<t>(?:pc)?[-+]\s*(?:0[xX][0-9a-fA-F]+|\d+)|[A-Za-z_.$][\w.$]*)"

_LLVM_FORMS: list[tuple[str, re.Pattern]] = [(k, re.compile(p)) for k, p in [
    ("exit", r"exit"),
    ("neg", r"(?P<d>" + _REG + r")\s*=\s*-\s*(?P<s>" + _REG + r")"),
    ("movsx", r"(?P<d>" + _REG + r")\s*=\s*\(\s*s(?P<bits>8|16|32)\s*\)\s*(?P<s>" + _REG + r")"),
    ("end", r"(?P<d>" + _REG + r")\s*=\s*(?P<w>be|le|bswap)(?P<bits>16|32|64)\s+(?P<s>"
     + _REG + r")"),
    ("ldx", r"(?P<d>" + _REG + r")\s*=\s*\*\s*\(\s*(?P<sg>[us])(?P<sz>8|16|32|64)\s*\*\s*\)\s*"
     + _MEMX),
    ("ldabs", r"(?P<d>" + _REG + r")\s*=\s*\*\s*\(\s*u(?P<sz>8|16|32)\s*\*\s*\)\s*skb\s*\[\s*"
     r"(?:(?P<s>" + _REG + r")\s*(?:(?P<sign>[-+])\s*(?P<off>0[xX][0-9a-fA-F]+|\d+))?|(?P<k>"
     + _NUM + r"))\s*\]"),
    ("store", r"\*\s*\(\s*u(?P<sz>8|16|32|64)\s*\*\s*\)\s*" + _MEMX + r"\s*=\s*(?P<v>" + _REG
     + "|" + _NUM + ")"),
    ("lock", r"lock\s+\*\s*\(\s*u(?P<sz>32|64)\s*\*\s*\)\s*" + _MEMX
     + r"\s*(?P<o>\+=|\|=|&=|\^=)\s*(?P<s>" + _REG + ")"),
    ("fetch", r"(?P<r>" + _REG + r")\s*=\s*atomic_fetch_(?P<o>add|or|and|xor)\s*\(\s*\(\s*u(?P<sz>32|64)"
     r"\s*\*\s*\)\s*" + _MEMX + r"\s*,\s*(?P<s>" + _REG + r")\s*\)"),
    ("xchg", r"(?P<r>" + _REG + r")\s*=\s*(?P<fn>xchg_64|xchg32_32)\s*\(\s*(?P<b>" + _REG
     + r")\s*(?P<sign>[-+])\s*(?P<off>0[xX][0-9a-fA-F]+|\d+)\s*,\s*(?P<s>" + _REG + r")\s*\)"),
    ("cmpxchg", r"(?P<r>" + _REG + r")\s*=\s*(?P<fn>cmpxchg_64|cmpxchg32_32)\s*\(\s*(?P<b>" + _REG
     + r")\s*(?P<sign>[-+])\s*(?P<off>0[xX][0-9a-fA-F]+|\d+)\s*,\s*(?P<z>" + _REG
     + r")\s*,\s*(?P<s>" + _REG + r")\s*\)"),
    ("lddw", r"(?P<d>" + _REG + r")\s*=\s*(?P<v>" + _NUM + r"|[A-Za-z_.$][\w.$]*)\s+ll"),
    ("ld_pseudo", r"ld_pseudo\s+(?P<d>" + _REG + r")\s*,\s*(?P<src>\d+)\s*,\s*(?P<lo>" + _NUM
     + r")(?:\s*,\s*(?P<hi>" + _NUM + r"))?"),
    ("alu", r"(?P<d>" + _REG + r")\s*(?P<o>s>>=|<<=|>>=|s/=|s%=|\+=|-=|\*=|/=|\|=|&=|%=|\^=|=)\s*"
     r"(?P<v>" + _REG + "|" + _NUM + ")"),
    ("jcond", r"if\s+(?P<d>" + _REG + r")\s*(?P<o>s>=|s<=|s>|s<|==|!=|>=|<=|>|<|&)\s*(?P<v>"
     + _REG + "|" + _NUM + r")\s+goto\s+" + _TARGET),
    ("goto", r"(?P<g>gotol|goto|may_goto)\s+" + _TARGET),
    ("callx", r"callx\s+(?P<d>" + _REG + ")"),
    ("kfunc", r"call\s+kfunc\s+(?P<k>" + _NUM + r")(?:\s*,\s*(?P<o>" + _NUM + r"))?"),
    ("call", r"call\s+(?:(?P<k>" + _NUM + r")|pc(?P<pc>[-+]\s*\d+)|(?P<name>[A-Za-z_.$][\w.$]*)"
     r"(?:#(?P<id>-?\d+))?)"),
]]


def _llvm_line(asm: _Assembler, ln: _Line, s: str, col: int) -> None:
    s = re.sub(r"\s*<[^<>]*>\s*$", "", s)  # llvm-objdump's "<.text+0x70>" annotation
    for kind, pat in _LLVM_FORMS:
        m = pat.fullmatch(s)
        if m:
            break
    else:
        raise ln.error(f"unrecognised instruction {s!r}", col)

    def gcol(name: str) -> int:
        return col + m.start(name)

    def reg(name: str) -> tuple[int, str]:
        return _reg(ln, m.group(name), gcol(name), "rw")

    def mem_off() -> int:
        if m.group("off") is None:
            return 0
        v = _parse_int(ln, m.group("off"), gcol("off"), 16, "offset", unsigned_dec=True)
        v = -v if m.group("sign") == "-" else v
        if not -(1 << 15) <= v < (1 << 15):
            raise ln.error(f"offset {v} out of range for 16 bits", gcol("off"))
        return v

    def imm32(name: str) -> int:
        return _parse_int(ln, m.group(name), gcol(name), 32, "immediate", unsigned_dec=True)

    if kind == "exit":
        asm.emit(Insn(isa.BPF_JMP | isa.BPF_EXIT))
    elif kind == "neg":
        (d, p), (s_, q) = reg("d"), reg("s")
        if d != s_ or p != q:
            raise ln.error("negation must be 'rN = -rN' (same register)", gcol("s"))
        cls = isa.BPF_ALU if p == "w" else isa.BPF_ALU64
        asm.emit(Insn(cls | isa.BPF_NEG, d))
    elif kind == "movsx":
        (d, p), (s_, q) = reg("d"), reg("s")
        if p != q:
            raise ln.error("movsx registers must have the same width", gcol("s"))
        bits = int(m.group("bits"))
        if p == "w" and bits == 32:
            raise ln.error("32-bit movsx of a 32-bit register does not exist", gcol("bits"))
        cls = isa.BPF_ALU if p == "w" else isa.BPF_ALU64
        asm.emit(Insn(cls | isa.BPF_MOV | isa.BPF_X, d, s_, bits))
    elif kind == "end":
        (d, p), (s_, q) = reg("d"), reg("s")
        if d != s_ or p != "r" or q != "r":
            raise ln.error("byte swap must be 'rN = be16 rN' (same r register)", gcol("s"))
        w = m.group("w")
        code = {"le": isa.BPF_ALU | isa.BPF_END | isa.BPF_TO_LE,
                "be": isa.BPF_ALU | isa.BPF_END | isa.BPF_TO_BE,
                "bswap": isa.BPF_ALU64 | isa.BPF_END | isa.BPF_TO_LE}[w]
        asm.emit(Insn(code, d, 0, 0, int(m.group("bits"))))
    elif kind == "ldx":
        (d, p), (b, _) = reg("d"), reg("b")
        sz = _SIZES[m.group("sz")]
        if m.group("sg") == "s":
            if sz == isa.BPF_DW:
                raise ln.error("no sign-extending 64-bit load (use u64)", gcol("sz"))
            asm.emit(Insn(isa.BPF_LDX | isa.BPF_MEMSX | sz, d, b, mem_off()))
        else:
            asm.emit(Insn(isa.BPF_LDX | isa.BPF_MEM | sz, d, b, mem_off()))
    elif kind == "ldabs":
        d, _ = reg("d")
        if d != 0:
            raise ln.error("packet loads (skb[...]) write r0", gcol("d"))
        sz = _SIZES[m.group("sz")]
        if m.group("k") is not None:
            asm.emit(Insn(isa.BPF_LD | isa.BPF_ABS | sz, 0, 0, 0, imm32("k")))
        else:
            s_, _ = reg("s")
            v = 0
            if m.group("off") is not None:
                v = _parse_int(ln, m.group("off"), gcol("off"), 32, "offset", unsigned_dec=True)
                v = -v if m.group("sign") == "-" else v
                if not -(1 << 31) <= v < (1 << 31):
                    raise ln.error(f"offset {v} out of range for 32 bits", gcol("off"))
            asm.emit(_replace(ln, Insn(isa.BPF_LD | isa.BPF_IND | sz, 0, s_), col, imm=v))
    elif kind == "store":
        b, _ = reg("b")
        sz = _SIZES[m.group("sz")]
        v = m.group("v")
        if re.fullmatch(_REG, v):
            s_, _ = reg("v")
            asm.emit(Insn(isa.BPF_STX | isa.BPF_MEM | sz, b, s_, mem_off()))
        else:
            asm.emit(Insn(isa.BPF_ST | isa.BPF_MEM | sz, b, 0, mem_off(), imm32("v")))
    elif kind == "lock":
        b, _ = reg("b")
        s_, _ = reg("s")
        sz = _SIZES[m.group("sz")]
        asm.emit(Insn(isa.BPF_STX | isa.BPF_ATOMIC | sz, b, s_, mem_off(), _ATOM_SYMS[m.group("o")]))
    elif kind == "fetch":
        (r, _), (s_, _), (b, _) = reg("r"), reg("s"), reg("b")
        if r != s_:
            raise ln.error("atomic_fetch_* returns the old value in its source register",
                           gcol("r"))
        sz = _SIZES[m.group("sz")]
        asm.emit(Insn(isa.BPF_STX | isa.BPF_ATOMIC | sz, b, s_, mem_off(),
                      _ATOM_NAMES[m.group("o")] | isa.BPF_FETCH))
    elif kind in ("xchg", "cmpxchg"):
        (r, _), (s_, _), (b, _) = reg("r"), reg("s"), reg("b")
        sz = isa.BPF_DW if m.group("fn").endswith("_64") else isa.BPF_W
        if kind == "xchg":
            if r != s_:
                raise ln.error("xchg returns the old value in its source register", gcol("r"))
            code = isa.BPF_XCHG
        else:
            z, _ = reg("z")
            if r != 0 or z != 0:
                raise ln.error("cmpxchg compares with and returns in r0", gcol("r"))
            code = isa.BPF_CMPXCHG
        asm.emit(Insn(isa.BPF_STX | isa.BPF_ATOMIC | sz, b, s_, mem_off(), code))
    elif kind == "lddw":
        d, p = reg("d")
        v = m.group("v")
        if re.fullmatch(_NUM, v):
            asm.emit(Insn(isa.LDDW, d, 0, 0,
                          _parse_int(ln, v, gcol("v"), 64, "64-bit immediate", unsigned_dec=True)))
        elif asm.maps is not None and v in asm.maps:
            asm.emit(Insn(isa.LDDW, d, isa.BPF_PSEUDO_MAP_IDX, 0, asm.maps.index(v)))
        else:
            # not a map: the address of the function at label v (callbacks, bpf_loop)
            asm.emit_target(Insn(isa.LDDW, d, isa.BPF_PSEUDO_FUNC), v, "imm", ln, gcol("v"))
    elif kind == "ld_pseudo":
        d, _ = reg("d")
        src = int(m.group("src"))
        if src not in isa.PSEUDO_LDDW_NAMES:
            raise ln.error(f"unknown lddw pseudo source {src}", gcol("src"))
        lo = imm32("lo") & 0xFFFFFFFF
        hi = imm32("hi") & 0xFFFFFFFF if m.group("hi") is not None else 0
        asm.emit(Insn(isa.LDDW, d, src, 0, lo | hi << 32))
    elif kind == "alu":
        d, p = reg("d")
        o = m.group("o")
        off = 0
        if o in ("s/=", "s%="):
            op, off = (isa.BPF_DIV if o == "s/=" else isa.BPF_MOD), 1
        else:
            op = _ALU_SYMS[o]
        cls = isa.BPF_ALU if p == "w" else isa.BPF_ALU64
        v = m.group("v")
        if re.fullmatch(_REG, v):
            s_, q = reg("v")
            if q != p:
                raise ln.error("both registers of an ALU operation must have the same width",
                               gcol("v"))
            asm.emit(Insn(cls | op | isa.BPF_X, d, s_, off))
        else:
            asm.emit(Insn(cls | op | isa.BPF_K, d, 0, off, imm32("v")))
    elif kind == "jcond":
        d, p = reg("d")
        cls = isa.BPF_JMP32 if p == "w" else isa.BPF_JMP
        op = _JMP_SYMS[m.group("o")]
        v = m.group("v")
        if re.fullmatch(_REG, v):
            s_, q = reg("v")
            if q != p:
                raise ln.error("both registers of a comparison must have the same width", gcol("v"))
            insn = Insn(cls | op | isa.BPF_X, d, s_)
        else:
            insn = Insn(cls | op | isa.BPF_K, d, 0, 0, imm32("v"))
        asm.emit_target(insn, m.group("t"), "off", ln, gcol("t"))
    elif kind == "goto":
        if m.group("g") == "gotol":
            asm.emit_target(Insn(isa.BPF_JMP32 | isa.BPF_JA), m.group("t"), "imm", ln, gcol("t"))
        elif m.group("g") == "may_goto":
            asm.emit_target(Insn(isa.BPF_JMP | isa.BPF_JCOND, 0, isa.BPF_MAY_GOTO), m.group("t"),
                            "off", ln, gcol("t"))
        else:
            asm.emit_target(Insn(isa.BPF_JMP | isa.BPF_JA), m.group("t"), "off", ln, gcol("t"))
    elif kind == "callx":
        d, _ = reg("d")
        asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL | isa.BPF_X, d))
    elif kind == "kfunc":
        off = 0 if m.group("o") is None else _parse_int(ln, m.group("o"), gcol("o"), 16, "offset",
                                                         hex_unsigned=False)
        asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, isa.BPF_PSEUDO_KFUNC_CALL, off, imm32("k")))
    elif kind == "call":
        if m.group("k") is not None:
            asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, 0, 0, imm32("k")))
        elif m.group("pc") is not None:
            asm.emit_target(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, isa.BPF_PSEUDO_CALL),
                            m.group("pc"), "imm", ln, gcol("pc"))
        elif m.group("id") is not None:      # verifier log: "call bpf_map_lookup_elem#1"
            asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, 0, 0, imm32("id")))
        else:                                # a local function by label
            asm.emit_target(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, isa.BPF_PSEUDO_CALL),
                            m.group("name"), "imm", ln, gcol("name"))
    else:  # pragma: no cover - every form above is handled
        raise AssertionError(kind)


# --- the kernel's (verifier log) syntax ---------------------------------------------------

_KPREFIX = re.compile(r"(\d+):\s*(?:[0-9.]{10}\s+)?\(([0-9a-fA-F]{2})\)\s*")
_KERNEL_REWRITES = [
    # r1 = atomic64_xchg((u64 *)(r0 +8), r1)  ->  r1 = xchg_64(r0 + 8, r1)
    (re.compile(r"=\s*atomic64_xchg\s*\(\s*\(\s*u64\s*\*\s*\)\s*\(\s*(\w+)\s*([-+])\s*(\d+)\s*\)"),
     r"= xchg_64(\1 \2 \3"),
    (re.compile(r"=\s*atomic_xchg\s*\(\s*\(\s*u32\s*\*\s*\)\s*\(\s*(\w+)\s*([-+])\s*(\d+)\s*\)"),
     r"= xchg32_32(\1 \2 \3"),
    (re.compile(r"=\s*atomic64_cmpxchg\s*\(\s*\(\s*u64\s*\*\s*\)\s*\(\s*(\w+)\s*([-+])\s*(\d+)\s*\)"),
     r"= cmpxchg_64(\1 \2 \3"),
    (re.compile(r"=\s*atomic_cmpxchg\s*\(\s*\(\s*u32\s*\*\s*\)\s*\(\s*(\w+)\s*([-+])\s*(\d+)\s*\)"),
     r"= cmpxchg32_32(\1 \2 \3"),
    (re.compile(r"=\s*atomic64_fetch_"), "= atomic_fetch_"),
    (re.compile(r"\+\s*-\s*(\d)"), r"- \1"),            # skb[r7 + -2]
]


def _kernel_line(asm: _Assembler, ln: _Line, s: str, col: int) -> None:
    """A line of the verifier log's syntax, optionally with its "N: (op)" prefix (or the
    "N: LIVEREGS (op)" of the "Live regs before insn" listing)."""
    opcode = None
    m = _KPREFIX.match(s)
    if m:
        opcode = int(m.group(2), 16)
        col += m.end()
        s = s[m.end():]
    for pat, rep in _KERNEL_REWRITES:
        s = pat.sub(rep, s)
    if opcode == isa.LDDW and not s.rstrip().endswith("ll") and not s.startswith("ld_pseudo"):
        s += " ll"                                   # "(18) r1 = 0x..." is lddw
    _llvm_line(asm, ln, s, col)


# --- the bpf_conformance syntax -----------------------------------------------------------

def _conf_tables() -> dict[str, isa.Op]:
    t: dict[str, isa.Op] = {}
    for op in isa.OPS.values():
        if op.kind in ("alu", "neg", "end", "ldx", "ldxs", "st", "stx", "ldabs", "ldind"):
            t.setdefault(op.name, op)
    return t


_CONF_OPS = _conf_tables()
_CONF_JMP = {op.name: op for op in isa.OPS.values() if op.kind == "jcond"}
_CONF_ATOMIC = {op.name: op for op in isa.OPS.values() if op.kind == "atomic"}
# uBPF and older bpf_conformance files spell the v4 byte swap "swap16"
_CONF_ALIASES = {"swap16": "bswap16", "swap32": "bswap32", "swap64": "bswap64"}
_TOKEN = re.compile(r"\[[^\]]*\]|[^\s,]+")


def _conf_mem(ln: _Line, tok: str, col: int) -> tuple[int, int]:
    m = re.fullmatch(r"\[\s*(%r\d+)\s*(?:([-+])\s*(0[xX][0-9a-fA-F]+|\d+))?\s*\]", tok)
    if not m:
        raise ln.error(f"expected a memory operand [%rN+OFF], found {tok!r}", col)
    r, _ = _reg(ln, m.group(1)[1:], col + m.start(1) + 1, "r")
    off = 0
    if m.group(3) is not None:
        off = _parse_int(ln, m.group(2) + m.group(3), col + m.start(2), 16, "offset")
    return r, off


def _conf_line(asm: _Assembler, ln: _Line, s: str, col: int) -> None:
    toks = [(t.group(), col + t.start()) for t in _TOKEN.finditer(s)]
    if not toks:
        raise ln.error(f"expected an instruction, found {s!r}", col)
    mnem, mcol = toks[0]
    ops = toks[1:]

    def need(n: int, what: str = "") -> None:
        if len(ops) != n:
            raise ln.error(f"{what or mnem} takes {n} operand(s), found {len(ops)}",
                           ops[n][1] if len(ops) > n else mcol)

    def reg(i: int) -> int:
        t, c = ops[i]
        if not t.startswith("%"):
            raise ln.error(f"expected a register %rN, found {t!r}", c)
        return _reg(ln, t[1:], c + 1, "r")[0]

    def imm(i: int, bits: int = 32) -> int:
        t, c = ops[i]
        return _parse_int(ln, t, c, bits, "immediate")

    name = mnem
    if name == "lock":
        # lock [fetch] OP [%rD+OFF], %rS
        if ops and ops[0][0] == "fetch":
            if len(ops) < 2:
                raise ln.error("invalid number of operands for lock", mcol)
            name = "fetch " + ops[1][0]
            ops = ops[2:]
            opcol = toks[2][1]
        elif ops:
            name = ops[0][0]
            opcol = ops[0][1]
            ops = ops[1:]
        else:
            raise ln.error("invalid number of operands for lock", mcol)
        op = _CONF_ATOMIC.get(name)
        if op is None:
            raise ln.error(f"unknown atomic operation {name!r}", opcol)
        need(2, "lock " + name)
        d, off = _conf_mem(ln, *ops[0])
        asm.emit(Insn(isa.BPF_STX | isa.BPF_ATOMIC | (isa.BPF_W if op.size == 4 else isa.BPF_DW),
                      d, reg(1), off, op.variant))
        return
    if name == "exit":
        need(0)
        asm.emit(Insn(isa.BPF_JMP | isa.BPF_EXIT))
        return
    if name in ("ja", "ja32"):
        need(1)
        code = isa.BPF_JMP | isa.BPF_JA if name == "ja" else isa.BPF_JMP32 | isa.BPF_JA
        asm.emit_target(Insn(code), ops[0][0], "off" if name == "ja" else "imm", ln, ops[0][1])
        return
    if name == "may_goto":
        need(1)
        asm.emit_target(Insn(isa.BPF_JMP | isa.BPF_JCOND, 0, isa.BPF_MAY_GOTO), ops[0][0], "off",
                        ln, ops[0][1])
        return
    if name in ("call", "callx"):
        if len(ops) in (2, 3) and name == "call":
            mode, target = ops[0][0], ops[1]
            if mode == "local":
                asm.emit_target(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, isa.BPF_PSEUDO_CALL),
                                target[0], "imm", ln, target[1])
                return
            if mode == "runtime":
                # kfunc: the optional third operand is the BTF fd index kept in `off`
                off = imm(2, 16) if len(ops) == 3 else 0
                asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, isa.BPF_PSEUDO_KFUNC_CALL, off,
                              imm(1)))
                return
            if len(ops) == 3:
                raise ln.error("only 'call runtime' takes a third operand", ops[2][1])
            if mode == "helper":
                asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, 0, 0, imm(1)))
                return
            raise ln.error(f"invalid call mode {mode!r} (helper, local or runtime)", ops[0][1])
        need(1)
        if ops[0][0].startswith("%"):
            asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL | isa.BPF_X, reg(0)))
        elif name == "callx":
            raise ln.error("callx takes a register", ops[0][1])
        else:
            asm.emit(Insn(isa.BPF_JMP | isa.BPF_CALL, 0, 0, 0, imm(0)))
        return
    if name == "lddw":
        if len(ops) == 3:
            src = {v: k for k, v in isa.PSEUDO_LDDW_NAMES.items()}.get(ops[2][0])
            if src is None:
                raise ln.error(f"unknown lddw pseudo source {ops[2][0]!r}", ops[2][1])
        else:
            need(2)
            src = 0
        v = _parse_int(ln, ops[1][0], ops[1][1], 64, "64-bit immediate", unsigned_dec=True)
        asm.emit(Insn(isa.LDDW, reg(0), src, 0, v))
        return
    jop = _CONF_JMP.get(name)
    if jop is not None:
        need(3)
        if ops[1][0].startswith("%"):
            insn = Insn((jop.opcode & ~isa.BPF_X) | isa.BPF_X, reg(0), reg(1))
        else:
            insn = Insn(jop.opcode & ~isa.BPF_X, reg(0), 0, 0, imm(1))
        asm.emit_target(insn, ops[2][0], "off", ln, ops[2][1])
        return
    base = name[:-2] if name.endswith("64") and name[:-2] in _CONF_OPS else name
    base = _CONF_ALIASES.get(base, base)
    op = _CONF_OPS.get(base)
    if op is None:
        raise ln.error(f"unknown mnemonic {name!r}", mcol)
    k = op.kind
    if k in ("neg", "end"):
        need(1)
        asm.emit(Insn(op.opcode, reg(0), 0, 0, op.variant or 0))
    elif k == "alu":
        need(2)
        off = op.variant or 0
        if ops[1][0].startswith("%"):
            asm.emit(Insn((op.opcode & ~isa.BPF_X) | isa.BPF_X, reg(0), reg(1), off))
        else:
            if op.op == isa.BPF_MOV and off:
                raise ln.error(f"{name} takes a register source", ops[1][1])
            asm.emit(Insn(op.opcode & ~isa.BPF_X, reg(0), 0, off, imm(1)))
    elif k in ("ldx", "ldxs"):
        need(2)
        b, off = _conf_mem(ln, *ops[1])
        asm.emit(Insn(op.opcode, reg(0), b, off))
    elif k == "st":
        need(2)
        b, off = _conf_mem(ln, *ops[0])
        asm.emit(Insn(op.opcode, b, 0, off, imm(1)))
    elif k == "stx":
        need(2)
        b, off = _conf_mem(ln, *ops[0])
        asm.emit(Insn(op.opcode, b, reg(1), off))
    elif k == "ldabs":
        need(1)
        asm.emit(Insn(op.opcode, 0, 0, 0, imm(0)))
    elif k == "ldind":
        need(2)
        asm.emit(Insn(op.opcode, 0, reg(0), 0, imm(1)))
    else:  # pragma: no cover
        raise AssertionError(k)
