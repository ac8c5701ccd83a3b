"""Classic BPF disassembler: the `tcpdump -d` listing and the kernel's bpf_asm syntax.

Two text forms:

* ``format_tcpdump(prog)`` (alias ``listing``) / ``image(insn, n)``: byte for byte what libpcap 1.10.3's
  ``bpf_dump(prog, 1)`` / ``bpf_image(insn, n)`` print (Debian 12: tcpdump 4.99.3),
  trailing spaces included (``"(005) tax      "``).  Jump targets are absolute
  instruction numbers.  Opcodes bpf_image has no case for print as ``unimp 0x<code>``
  (1.10.3 has none for ``ldx #pktlen``, 0x81, either).  The listing does not show
  the fields an instruction does not use (e.g. k of ``tax``), so it is exact only
  for programs whose unused fields are zero: see ``listing_fields``.

* ``format_bpf_asm(prog)`` (alias ``to_bpf_asm``): the syntax of the kernel's tools/bpf/bpf_asm (bpf_exp.l /
  bpf_exp.y), with labels ``L<n>:`` on jump targets, that ``bpf_asm`` and
  ``bpfkit.cbpf.asm.assemble`` read back to the same program.  Fields bpf_asm
  cannot express are reported in a ``;`` comment on the line, never dropped silently.

Which programs round-trip, ``assemble(text) == prog`` (tested with hypothesis over
every opcode of isa.OPCODES plus unknown ones, and over the tcpdump corpus):

* tcpdump syntax: every program whose instructions have zero in the fields their line
  does not show (``listing_fields``: e.g. jt/jf/k of ``tax``, k of ``jeq x``; for an
  opcode bpf_image does not know, ``unimp 0x..``, everything but the code and, for the
  JMP class, jt/jf).  Unknown opcodes round-trip.  Any ``ja`` target round-trips, also
  one outside the program.  Other programs come back with those fields zeroed, and the
  listing of the result is the same text (a fixed point).
* bpf_asm syntax: every program whose opcodes are in isa.OPCODES or are ``ret x``,
  whose unshown fields (``bpf_asm_fields``) are zero, and whose jumps all land on an
  instruction of the program (a label must name one).  Unknown opcodes and jumps out of
  the program raise UnsupportedError; non-zero unshown fields are named in a comment.
"""
from __future__ import annotations

from typing import Iterable

from ..errors import UnsupportedError
from .isa import (ANCILLARY_NAMES, BPF_A, BPF_CLASS, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT,
                  BPF_JMP, BPF_OP, BPF_RET, BPF_X, OPCODES, SKF_AD_OFF, ancillary_of)
from .program import Insn, Program

# BPF_RET|BPF_X: not an instruction for the kernel or libpcap (isa.OPCODES leaves it
# out), but bpf_asm's grammar has `ret x` and emits it (bpf_exp.y, rule `ret`).
RET_X = BPF_RET | BPF_X

# Names libpcap 1.10.3's bpf_image prints for absolute loads at SKF_AD_OFF + n
# (bpf_print_abs_load_operand, `offsets[]`; Debian builds it against linux/filter.h,
# which defines every SKF_AD_* up to SKF_AD_MAX = 64).  Several differ from bpf_asm's
# keywords (isa.ANCILLARY_NAMES): vlanp / vlan_avail, random / rand, and xor_x has no
# bpf_asm keyword at all.  Checked against libpcap's own bpf_image in the tests.
LIBPCAP_ANCILLARY_NAMES: dict[int, str] = {
    0: "proto", 4: "type", 8: "ifidx", 12: "nla", 16: "nlan", 20: "mark", 24: "queue",
    28: "hatype", 32: "rxhash", 36: "cpu", 40: "xor_x", 44: "vlan_tci", 48: "vlanp",
    52: "poff", 56: "random", 60: "vlan_tpid",
}
_LIBPCAP_AD_MAX = 64   # SKF_AD_MAX of the headers libpcap was built with

# Opcodes in isa.OPCODES that libpcap 1.10.3's bpf_image still prints as `unimp`
# (measured with the installed libpcap; master added a case for it).
_IMAGE_UNIMP = frozenset({0x81})      # BPF_LDX|BPF_W|BPF_LEN


def _s32(v: int) -> int:
    """C's `%d` of a 32-bit unsigned value: the value reinterpreted as int."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _as_program(prog) -> Program:
    return prog if isinstance(prog, Program) else Program(prog)


# --- tcpdump -d (libpcap bpf_image) -----------------------------------------

def _image_operand(ins: Insn, n: int) -> tuple[str, str]:
    """(op, operand) as libpcap 1.10.3 bpf_image chooses them."""
    info = OPCODES.get(ins.code)
    if info is None or ins.code in _IMAGE_UNIMP:
        return "unimp", f"0x{ins.code:x}"
    shape, k = info.operand, ins.k
    if shape == "abs":
        # bpf_print_abs_load_operand: symbolic only for the exact SKF_AD_OFF + n
        # offsets the table names, else the offset as a signed int.
        name = None
        ad = k - (SKF_AD_OFF & 0xFFFFFFFF)
        if 0 <= ad < _LIBPCAP_AD_MAX:
            name = LIBPCAP_ANCILLARY_NAMES.get(ad)
        return info.mnemonic, f"[{name}]" if name else f"[{_s32(k)}]"
    if shape == "ind":
        return info.mnemonic, f"[x + {_s32(k)}]"
    if shape == "msh":
        return info.mnemonic, f"4*([{_s32(k)}]&0xf)"
    if shape == "len":
        return info.mnemonic, "#pktlen"
    if shape == "imm":
        return info.mnemonic, f"#0x{k:x}"
    if shape == "mem":
        return info.mnemonic, f"M[{_s32(k)}]"
    if shape == "ja":
        return "ja", str(_s32(n + 1 + k))
    if shape == "jk":
        return info.mnemonic, f"#0x{k:x}"
    if shape in ("jx", "alux"):
        return info.mnemonic, "x"
    if shape == "aluk":
        # and/or/xor print hex, the arithmetic and shift ops signed decimal
        if info.mnemonic in ("and", "or", "xor"):
            return info.mnemonic, f"#0x{k:x}"
        return info.mnemonic, f"#{_s32(k)}"
    if shape == "retk":
        return "ret", f"#{_s32(k)}"
    if shape == "none":
        return info.mnemonic, ""
    raise AssertionError(f"isa.OPCODES: unknown operand shape {shape!r}")


def image(ins: Insn, n: int) -> str:
    """One line of `tcpdump -d` for instruction ``ins`` at index ``n``, without the
    newline; byte for byte libpcap 1.10.3's bpf_image(), e.g. ``(001) jeq      #0x800
    jt 2<TAB>jf 5``.  Validators use it to show the instruction in error messages."""
    op, operand = _image_operand(ins, n)
    if BPF_CLASS(ins.code) == BPF_JMP and BPF_OP(ins.code) != BPF_JA:
        # bpf_image computes the targets in C int arithmetic (%d of n + 1 + jt)
        return (f"({n:03d}) {op:<8} {operand:<16} jt {_s32(n + 1 + ins.jt)}"
                f"\tjf {_s32(n + 1 + ins.jf)}")
    return f"({n:03d}) {op:<8} {operand}"


def listing(prog: Program | Iterable[Insn]) -> str:
    """The whole `tcpdump -d` text: one image() line per instruction, each ending in
    a newline (bpf_dump's puts)."""
    return "".join(image(ins, n) + "\n" for n, ins in enumerate(_as_program(prog)))


def listing_fields(code: int) -> frozenset[str]:
    """Which of jt, jf, k the `tcpdump -d` line of an instruction with opcode
    ``code`` shows (the code itself always shows).  A listing re-assembles to the
    same instruction exactly when the other fields are zero."""
    jumps = BPF_CLASS(code) == BPF_JMP and BPF_OP(code) != BPF_JA
    info = OPCODES.get(code)
    if info is None or code in _IMAGE_UNIMP:
        shown = set()
    elif info.operand in ("none", "len", "jx", "alux"):
        shown = set()
    else:
        shown = {"k"}
    if jumps:
        shown |= {"jt", "jf"}
    return frozenset(shown)


def bpf_asm_fields(code: int) -> frozenset[str] | None:
    """Which of jt, jf, k the bpf_asm syntax expresses for opcode ``code``; None when
    bpf_asm has no syntax for the opcode at all."""
    if code == RET_X:
        return frozenset()
    info = OPCODES.get(code)
    if info is None:
        return None
    shown = set()
    if info.operand in ("abs", "ind", "msh", "imm", "mem", "ja", "jk", "aluk", "retk"):
        shown.add("k")
    if info.operand in ("jk", "jx"):
        shown |= {"jt", "jf"}
    return frozenset(shown)


def unused_fields(ins: Insn, shown: frozenset[str]) -> dict[str, int]:
    """The non-zero fields of ``ins`` that a text form showing ``shown`` loses."""
    return {f: getattr(ins, f) for f in ("jt", "jf", "k") if f not in shown and getattr(ins, f)}


# --- bpf_asm (tools/bpf/bpf_exp.y) ------------------------------------------

def _num(k: int) -> str:
    """An offset as bpf_asm reads it: negative offsets (SKF_NET_OFF, SKF_LL_OFF,
    SKF_AD_OFF + n) are clearer signed; strtol in bpf_exp.l takes either."""
    return str(_s32(k))


# bpf_asm's single-label forms: `jeq #k, L` sets only jt (jf = 0, fall through);
# `jneq`/`jle`/`jlt #k, L` set only jf of JEQ/JGT/JGE (bpf_exp.y rules jneq/jle/jlt).
_INVERSE = {BPF_JEQ: "jneq", BPF_JGT: "jle", BPF_JGE: "jlt"}


def _bpf_asm_text(ins: Insn, n: int, label_of) -> str:
    code, k = ins.code, ins.k
    if code == RET_X:
        return "ret x"
    info = OPCODES.get(code)
    if info is None:
        raise UnsupportedError(
            "bpf_asm syntax for an unknown opcode",
            f"instruction {n}: {image(ins, n).strip()}: bpf_asm has no mnemonic for 0x{code:x}")
    mn, shape = info.mnemonic, info.operand
    if shape == "abs":
        ad = ancillary_of(k)
        if ad is not None and ad in ANCILLARY_NAMES:
            return f"{mn} #{ANCILLARY_NAMES[ad]}"
        return f"{mn} [{_num(k)}]"
    if shape == "ind":
        return f"{mn} [x + {_num(k)}]"
    if shape == "msh":
        return f"ldxb 4*([{_num(k)}]&0xf)"
    if shape == "len":
        return f"{mn} #len"
    if shape == "imm":
        return f"{mn} #0x{k:x}"
    if shape == "mem":
        return f"{mn} M[{k}]"
    if shape == "ja":
        return f"ja {label_of((n + 1 + k) & 0xFFFFFFFF)}"
    if shape in ("jk", "jx"):
        operand = f"#0x{k:x}" if shape == "jk" else "x"
        t, f = n + 1 + ins.jt, n + 1 + ins.jf
        if ins.jf == 0:
            return f"{mn} {operand}, {label_of(t)}"
        if ins.jt == 0 and BPF_OP(code) in _INVERSE:
            return f"{_INVERSE[BPF_OP(code)]} {operand}, {label_of(f)}"
        return f"{mn} {operand}, {label_of(t)}, {label_of(f)}"
    if shape == "aluk":
        if mn in ("and", "or", "xor"):
            return f"{mn} #0x{k:x}"
        return f"{mn} #{k}"
    if shape == "alux":
        return f"{mn} x"
    if shape == "retk":
        return f"ret #{k}"
    if shape == "none":
        if code == BPF_RET | BPF_A:
            return "ret a"
        return mn
    raise AssertionError(f"isa.OPCODES: unknown operand shape {shape!r}")


def _jump_targets(ins: Insn, n: int) -> list[int]:
    if BPF_CLASS(ins.code) != BPF_JMP or ins.code not in OPCODES:
        return []
    if BPF_OP(ins.code) == BPF_JA:
        return [(n + 1 + ins.k) & 0xFFFFFFFF]
    if ins.jf == 0:
        return [n + 1 + ins.jt]
    if ins.jt == 0 and BPF_OP(ins.code) in _INVERSE:
        return [n + 1 + ins.jf]
    return [n + 1 + ins.jt, n + 1 + ins.jf]


def to_bpf_asm(prog: Program | Iterable[Insn]) -> str:
    """The program in bpf_asm syntax, one instruction a line, ``L<n>:`` labels on the
    instructions that jumps target.  Raises UnsupportedError for what bpf_asm cannot
    express: opcodes without a mnemonic, and jumps to targets outside the program."""
    prog = _as_program(prog)
    count = len(prog)
    targets: set[int] = set()
    for n, ins in enumerate(prog):
        for t in _jump_targets(ins, n):
            if t >= count:
                raise UnsupportedError(
                    "bpf_asm syntax for a jump outside the program",
                    f"instruction {n}: {image(ins, n).strip()}: target {_s32(t)}, "
                    f"the program has {count} instructions; labels must name an instruction")
            targets.add(t)

    def label_of(t: int) -> str:
        return f"L{t}"

    width = max((len(label_of(t)) + 2 for t in targets), default=0)
    lines = []
    for n, ins in enumerate(prog):
        text = _bpf_asm_text(ins, n, label_of)
        lost = unused_fields(ins, bpf_asm_fields(ins.code))
        if lost:
            # bpf_asm has no way to set these; say so instead of dropping them silently
            text += "  ; not expressible, dropped: " + " ".join(
                f"{f}={v if f != 'k' else hex(v)}" for f, v in lost.items())
        prefix = f"{label_of(n) + ':':<{width}}" if n in targets else " " * width
        lines.append((prefix + text).rstrip() + "\n")
    return "".join(lines)


# the names the rest of bpfkit uses
format_tcpdump = listing
format_bpf_asm = to_bpf_asm


__all__ = ["image", "listing", "format_tcpdump", "to_bpf_asm", "format_bpf_asm", "listing_fields", "bpf_asm_fields",
           "unused_fields", "LIBPCAP_ANCILLARY_NAMES", "RET_X"]
