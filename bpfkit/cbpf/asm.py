"""Classic BPF assembler for two text syntaxes.

``tcpdump``: the `tcpdump -d` listing (libpcap bpf_image), with or without the
``(000)`` prefixes.  Jump targets are absolute instruction numbers (``jt 2 jf 5``,
``ja 7``); operands as bpf_image prints them (``ldh [12]``, ``ld [proto]``,
``ld #pktlen``, bare ``ret`` for RET A, ``unimp 0x1e`` for an opcode without a
mnemonic: code only, jt/jf when the code is of the JMP class).

``bpf_asm``: the kernel's tools/bpf/bpf_asm (bpf_exp.l / bpf_exp.y): labels
``name:``, ``jeq #0x800, ip, drop`` / ``jeq #0x800, ip`` (jf falls through),
``jneq``/``jne``/``jlt``/``jle #k, L`` (only jf), ``ja``/``jmp label``,
``ldh [x + 14]``, ``ldxb 4*([14]&0xf)``, ``ld #proto`` / ``ld proto`` (ancillary),
``ld #len``, ``ld M[3]``, ``ldi``/``ldxi``, ``ret a`` / ``ret x`` / ``ret #0``,
``%x``/``%a`` register spelling, numbers ``0x1f``, ``0b101``, ``017`` (octal), ``-1``;
comments ``;`` to end of line, ``/* ... */``, and lines beginning with ``#``.
Mnemonics and keywords are case-insensitive (flex %option caseless); labels are
case-sensitive, need at least 2 characters and cannot be keywords (bpf_exp.l).

Both syntaxes are free-form token streams (as flex/bison read bpf_asm): line breaks
separate nothing.  Lines the two syntaxes share (``ldh [12]``, ``ret #0``, ``tax``)
mean the same in both, so a document's syntax is decided by its first construct that
only one syntax has, and every later construct must agree:

* tcpdump-only: the ``(NNN)`` prefix, ``jt N jf N``, ``ja N``, ``[proto]``-style
  ancillary names, ``#pktlen``, bare ``ret``, ``unimp``;
* bpf_asm-only: label definitions, labels as jump targets, ``#len``/``#proto``,
  ``ret a``/``ret x``, ``%x``, ``ldi``, ``ldxi``, ``jneq``/``jne``/``jlt``/``jle``,
  ``ldx 4*(...)``.

Comments are allowed in both.  With ``(NNN)`` prefixes, every instruction must have
one and the numbers must count 0, 1, 2, ... (so a lost line is an error, not a
silently shifted jump).  A document with no syntax-specific construct reads the same
either way.

Differences from bpf_asm, all more permissive: ``[x+14]`` (flex lexes ``+14`` as a
number there, a syntax error in bpf_asm), several labels on one instruction, a sign
on any number.  bpf_asm truncates numbers to 32 bits silently; here a number outside
-2**31 .. 2**32-1 is an error.  Errors are AsmError with line:col and expected vs found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import AsmError
from .disasm import LIBPCAP_ANCILLARY_NAMES, RET_X
from .isa import (ANCILLARY_BY_NAME, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV,
                  BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP,
                  BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC,
                  BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET, BPF_RSH, BPF_ST,
                  BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR, SKF_AD_OFF,
                  BPF_A)
from .program import Insn, Program

TCPDUMP = "tcpdump"
BPF_ASM = "bpf_asm"
SYNTAXES = ("auto", TCPDUMP, BPF_ASM)

# --- lexer -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str        # 'word', 'num', 'punct', 'eof'
    text: str
    line: int
    col: int

    def describe(self) -> str:
        return "end of input" if self.kind == "eof" else repr(self.text)


_PUNCT = set(":,#%[]()+*&")
_DIGITS = frozenset("0123456789")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# a number is a digit run that may carry letters (0x1f, 0b101); checked when converted
_NUM_RE = re.compile(r"-?[0-9][0-9A-Za-z_]*", re.ASCII)


def _tokenize(text: str) -> list[Token]:
    """Split into tokens; comments as bpf_exp.l: `;` to end of line, `/* */`, and a
    line whose first character is `#`."""
    toks: list[Token] = []
    line, line_start, i, n = 1, 0, 0, len(text)
    lines = text.split("\n")

    def err(msg, ln, cl):
        raise AsmError(msg, line=ln, col=cl, text=lines[ln - 1] if ln - 1 < len(lines) else None)

    while i < n:
        c = text[i]
        col = i - line_start + 1
        if c == "\n":
            line += 1
            i += 1
            line_start = i
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == ";" or (c == "#" and col == 1):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                err("unterminated comment: expected '*/', found end of input", line, col)
            for k in range(i, j):
                if text[k] == "\n":
                    line += 1
                    line_start = k + 1
            i = j + 2
            continue
        # ASCII digits only: str.isdigit() would also take '²' or '٣'
        if c in _DIGITS or (c == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUM_RE.match(text, i)
            toks.append(Token("num", m.group(), line, col))
            i = m.end()
            continue
        m = _WORD_RE.match(text, i)
        if m:
            toks.append(Token("word", m.group(), line, col))
            i = m.end()
            continue
        if c in _PUNCT:
            toks.append(Token("punct", c, line, col))
            i += 1
            continue
        err(f"unexpected character {c!r}", line, col)
    toks.append(Token("eof", "", line, i - line_start + 1))
    return toks


_NUMBER_FORMS = [
    (re.compile(r"0[xX][0-9a-fA-F]+"), 16),
    (re.compile(r"0[bB][01]+"), 2),
    (re.compile(r"0[0-7]+"), 8),
    (re.compile(r"0|[1-9][0-9]*"), 10),
]

U32_MAX = 0xFFFFFFFF
S32_MIN = -(1 << 31)

# --- instruction tables --------------------------------------------------------

_SIZES = {"ld": BPF_W, "ldh": BPF_H, "ldb": BPF_B}
_ALU = {"add": BPF_ADD, "sub": BPF_SUB, "mul": BPF_MUL, "div": BPF_DIV, "mod": BPF_MOD,
        "and": BPF_AND, "or": BPF_OR, "xor": BPF_XOR, "lsh": BPF_LSH, "rsh": BPF_RSH}
_JCOND = {"jeq": BPF_JEQ, "jgt": BPF_JGT, "jge": BPF_JGE, "jset": BPF_JSET}
# bpf_asm's one-label jumps that set only jf: jneq/jne = JEQ, jlt = JGE, jle = JGT
_JINV = {"jneq": BPF_JEQ, "jne": BPF_JEQ, "jlt": BPF_JGE, "jle": BPF_JGT}

# Every keyword of bpf_exp.l; none of them can be a label (flex matches the keyword
# rule first for an equally long match, case-insensitively).
_KEYWORDS = frozenset(
    ["ldb", "ldh", "ld", "ldi", "ldx", "ldxi", "ldxb", "st", "stx", "jmp", "ja", "jeq",
     "jneq", "jne", "jlt", "jle", "jgt", "jge", "jset", "add", "sub", "mul", "div", "mod",
     "neg", "and", "xor", "or", "lsh", "rsh", "ret", "tax", "txa", "len"]
    + list(ANCILLARY_BY_NAME) + ["vlan_pr"])
# bpf_exp.l's extension keywords (vlan_pr is an alias of vlan_avail)
_EXTENSIONS = dict(ANCILLARY_BY_NAME, vlan_pr=ANCILLARY_BY_NAME["vlan_avail"])
_LIBPCAP_EXT = {v: k for k, v in LIBPCAP_ANCILLARY_NAMES.items()}

_MNEMONICS = (set(_SIZES) | set(_ALU) | set(_JCOND) | set(_JINV)
              | {"ldi", "ldx", "ldxi", "ldxb", "st", "stx", "ja", "jmp", "neg", "tax", "txa",
                 "ret", "unimp"})


@dataclass(slots=True)
class _Pending:
    """One parsed instruction whose jump fields may still name labels."""
    index: int
    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0
    jt_label: Token | None = None
    jf_label: Token | None = None
    k_label: Token | None = None        # ja/jmp label


# --- parser --------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, syntax: str):
        self.lines = text.split("\n")
        self.toks = _tokenize(text)
        self.pos = 0
        self.syntax: str | None = None
        self.reason = ""
        if syntax != "auto":
            self.syntax = syntax
            self.reason = f"syntax={syntax!r} was requested"
        self.insns: list[_Pending] = []
        self.labels: dict[str, tuple[int, Token]] = {}
        self.pending_labels: list[Token] = []
        self.prefixed: bool | None = None      # does this listing number its lines?
        self.pending_prefix = False            # a '(NNN)' was read, its instruction not yet

    # -- helpers
    def error(self, msg: str, tok: Token):
        text = self.lines[tok.line - 1] if 0 < tok.line <= len(self.lines) else None
        raise AsmError(msg, line=tok.line, col=tok.col, text=text)

    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.peek()
        if t.kind != "eof":
            self.pos += 1
        return t

    def is_punct(self, c: str, ahead: int = 0) -> bool:
        t = self.peek(ahead)
        return t.kind == "punct" and t.text == c

    def is_word(self, w: str, ahead: int = 0) -> bool:
        t = self.peek(ahead)
        return t.kind == "word" and t.text.lower() == w

    def expect_punct(self, c: str, context: str) -> Token:
        t = self.next()
        if not (t.kind == "punct" and t.text == c):
            self.error(f"expected {c!r} {context}, found {t.describe()}", t)
        return t

    def mark(self, dialect: str, tok: Token, what: str) -> None:
        """Record that `what` at `tok` belongs to one syntax only; the first such
        construct decides the document's syntax."""
        if self.syntax is None:
            self.syntax = dialect
            self.reason = f"decided by {what} at {tok.line}:{tok.col}"
        elif self.syntax != dialect:
            other = "a tcpdump -d listing" if self.syntax == TCPDUMP else "bpf_asm syntax"
            self.error(f"{what} is {dialect} syntax, but this document is {other} "
                       f"({self.reason})", tok)

    def number(self, context: str, *, lo: int = S32_MIN, hi: int = U32_MAX) -> int:
        """A number token (an optional '+' before it) converted as bpf_exp.l does,
        returned as u32 (negative values wrap, as strtol's result stored in u32)."""
        if self.is_punct("+") and self.peek(1).kind == "num":
            self.next()
        t = self.next()
        if t.kind != "num":
            self.error(f"expected a number {context}, found {t.describe()}", t)
        body = t.text[1:] if t.text.startswith("-") else t.text
        for rx, base in _NUMBER_FORMS:
            if rx.fullmatch(body):
                v = int(body[2:] if base in (2, 16) else body, base)
                break
        else:
            self.error(f"malformed number {t.text!r}: expected decimal, 0x hex, 0b binary "
                       f"or 0-prefixed octal", t)
        if t.text.startswith("-"):
            v = -v
        if not lo <= v <= hi:
            self.error(f"number {t.text} out of range {context}: expected {lo}..{hi}", t)
        return v & U32_MAX

    def label_ref(self, context: str) -> Token:
        t = self.next()
        if t.kind != "word":
            self.error(f"expected a label {context}, found {t.describe()}", t)
        self.check_label_name(t)
        self.mark(BPF_ASM, t, "a label as jump target")
        return t

    def check_label_name(self, t: Token) -> None:
        if t.text.lower() in _KEYWORDS or t.text.lower() in ("x", "a", "m"):
            self.error(f"{t.text!r} is a keyword and cannot be a label", t)
        if len(t.text) < 2:
            self.error(f"label {t.text!r} is too short: bpf_asm labels have at least "
                       f"2 characters", t)

    def register(self, reg: str) -> Token | None:
        """Consume `x` / `%x` (or `a` / `%a`) if present."""
        if self.is_word(reg):
            return self.next()
        if self.is_punct("%") and self.is_word(reg, 1):
            pct = self.next()
            self.mark(BPF_ASM, pct, f"'%{reg}'")
            return self.next()
        return None

    # -- document
    def parse(self) -> list[_Pending]:
        while self.peek().kind != "eof":
            t = self.peek()
            if t.kind == "punct" and t.text == "(":
                self.prefix()
                continue
            if t.kind == "word" and self.is_punct(":", 1):
                self.label_def()
                continue
            if self.prefixed and not self.pending_prefix:
                self.error(f"expected '({len(self.insns):03d})' (every line of this listing "
                           f"has the instruction number), found {t.describe()}", t)
            self.instruction()
        if self.pending_labels:
            lab = self.pending_labels[0]
            self.error(f"label {lab.text!r} labels no instruction: expected an instruction "
                       f"after it, found end of input", lab)
        if not self.insns:
            self.error("expected an instruction, found end of input (empty program)",
                       self.peek())
        return self.insns

    def prefix(self):
        open_ = self.next()
        t = self.next()
        if t.kind != "num" or not t.text.isdigit():
            self.error(f"expected an instruction number after '(', found {t.describe()}", t)
        self.expect_punct(")", "after the instruction number")
        self.mark(TCPDUMP, open_, "the '(NNN)' instruction number")
        if self.prefixed is False:
            self.error(f"expected an instruction, found {open_.describe()} (earlier "
                       f"instructions had no '(NNN)' number)", open_)
        self.prefixed = True
        if self.pending_prefix:
            self.error(f"expected an instruction after '({len(self.insns):03d})', "
                       f"found {open_.describe()}", open_)
        if int(t.text) != len(self.insns):
            self.error(f"expected instruction number ({len(self.insns):03d}), "
                       f"found ({t.text})", t)
        self.pending_prefix = True

    def label_def(self):
        t = self.next()
        self.next()  # ':'
        self.check_label_name(t)
        self.mark(BPF_ASM, t, f"the label definition '{t.text}:'")
        if t.text in self.labels:
            first = self.labels[t.text][1]
            self.error(f"duplicate label {t.text!r} (first defined at {first.line}:{first.col})", t)
        self.labels[t.text] = (len(self.insns), t)
        self.pending_labels.append(t)

    def instruction(self):
        t = self.next()
        if t.kind != "word" or t.text.lower() not in _MNEMONICS:
            self.error(f"expected an instruction mnemonic or 'label:', found {t.describe()}", t)
        if self.prefixed is None:
            self.prefixed = False
        self.pending_prefix = False
        self.pending_labels = []
        mn = t.text.lower()
        ins = _Pending(len(self.insns), 0)
        getattr(self, "_" + mn if hasattr(self, "_" + mn) else "_generic")(mn, t, ins)
        self.insns.append(ins)

    # -- loads
    def _generic(self, mn: str, t: Token, ins: _Pending):
        if mn in _SIZES:
            return self.load(mn, t, ins)
        if mn in _ALU:
            return self.alu(mn, t, ins)
        if mn in _JCOND:
            return self.jcond(mn, t, ins)
        if mn in _JINV:
            return self.jinv(mn, t, ins)
        raise AssertionError(mn)

    def load(self, mn: str, t: Token, ins: _Pending):
        size = _SIZES[mn]
        nxt = self.peek()
        if self.is_punct("["):
            self.next()
            reg = self.register("x")
            if reg is not None:
                self.expect_punct("+", f"after '[x' in '{mn}'")
                off = self.number(f"after '[x +' in '{mn}'")
                self.expect_punct("]", f"after '[x + offset' in '{mn}'")
                ins.code, ins.k = BPF_LD | size | BPF_IND, off
                return
            if self.peek().kind == "word":
                w = self.next()
                ad = _LIBPCAP_EXT.get(w.text)
                if ad is None:
                    self.error(f"expected an offset, 'x +' or an ancillary name "
                               f"({', '.join(_LIBPCAP_EXT)}) after '[', found {w.describe()}", w)
                self.mark(TCPDUMP, w, f"the ancillary operand '[{w.text}]'")
                self.expect_punct("]", f"after '[{w.text}'")
                ins.code, ins.k = BPF_LD | size | BPF_ABS, (SKF_AD_OFF + ad) & U32_MAX
                return
            off = self.number(f"after '[' in '{mn}'")
            self.expect_punct("]", f"after the offset in '{mn}'")
            ins.code, ins.k = BPF_LD | size | BPF_ABS, off
            return
        if self.is_punct("#") or nxt.kind == "word":
            hash_ = self.next() if self.is_punct("#") else None
            w = self.peek()
            if w.kind == "word":
                key = w.text.lower()
                if key == "pktlen" and hash_ is not None and mn == "ld":
                    self.next()
                    self.mark(TCPDUMP, w, "'#pktlen'")
                    ins.code = BPF_LD | BPF_W | BPF_LEN
                    return
                if key == "len" and mn == "ld":
                    self.next()
                    self.mark(BPF_ASM, w, f"'{'#' if hash_ else ''}len'")
                    ins.code = BPF_LD | BPF_W | BPF_LEN
                    return
                if key in _EXTENSIONS:
                    self.next()
                    self.mark(BPF_ASM, w, f"the ancillary operand '{'#' if hash_ else ''}{key}'")
                    ins.code, ins.k = BPF_LD | size | BPF_ABS, (SKF_AD_OFF + _EXTENSIONS[key]) & U32_MAX
                    return
                if mn == "ld" and key == "m" and hash_ is None:
                    self.next()
                    ins.code, ins.k = BPF_LD | BPF_MEM, self.mem_operand(mn)
                    return
                self.error(self.load_expected(mn, w), w)
            if hash_ is not None and mn == "ld":
                ins.code, ins.k = BPF_LD | BPF_IMM, self.number("after 'ld #'")
                return
            self.error(self.load_expected(mn, w), w)
        self.error(self.load_expected(mn, nxt), nxt)

    @staticmethod
    def load_expected(mn: str, found: Token) -> str:
        forms = "'[k]', '[x + k]' or '#extension'"
        if mn == "ld":
            forms = "'[k]', '[x + k]', '#k', 'M[k]', '#len' or '#extension'"
        return f"expected {forms} after {mn!r}, found {found.describe()}"

    def mem_operand(self, mn: str) -> int:
        self.expect_punct("[", f"after 'M' in '{mn}'")
        k = self.number(f"in '{mn} M[...]'")
        self.expect_punct("]", f"after 'M[k' in '{mn}'")
        return k

    def _ldi(self, mn, t, ins):
        self.mark(BPF_ASM, t, f"'{mn}'")
        if self.is_punct("#"):
            self.next()
        ins.code = (BPF_LD if mn == "ldi" else BPF_LDX) | BPF_IMM
        ins.k = self.number(f"after '{mn}'")

    _ldxi = _ldi

    def _ldx(self, mn, t, ins):
        nxt = self.peek()
        if self.is_punct("#") or (nxt.kind == "word" and nxt.text.lower() == "len"):
            hash_ = self.next() if self.is_punct("#") else None
            w = self.peek()
            if w.kind == "word" and w.text.lower() == "pktlen" and hash_ is not None:
                self.next()
                self.mark(TCPDUMP, w, "'#pktlen'")
                ins.code = BPF_LDX | BPF_W | BPF_LEN
                return
            if w.kind == "word" and w.text.lower() == "len":
                self.next()
                self.mark(BPF_ASM, w, "'#len'")
                ins.code = BPF_LDX | BPF_W | BPF_LEN
                return
            ins.code, ins.k = BPF_LDX | BPF_IMM, self.number("after 'ldx #'")
            return
        if nxt.kind == "word" and nxt.text.lower() == "m":
            self.next()
            ins.code, ins.k = BPF_LDX | BPF_MEM, self.mem_operand(mn)
            return
        if nxt.kind == "num":
            self.mark(BPF_ASM, t, "'ldx 4*([k]&0xf)' (tcpdump writes ldxb)")
            return self.msh(mn, ins)
        self.error(f"expected '#k', 'M[k]', '#len' or '4*([k]&0xf)' after 'ldx', found "
                   f"{nxt.describe()}", nxt)

    def _ldxb(self, mn, t, ins):
        self.msh(mn, ins)

    def msh(self, mn: str, ins: _Pending):
        four_tok = self.peek()
        four = self.number(f"in '{mn} 4*([k]&0xf)'")
        self.expect_punct("*", f"after '{four_tok.text}' in '{mn} 4*([k]&0xf)'")
        self.expect_punct("(", f"after '*' in '{mn} 4*([k]&0xf)'")
        self.expect_punct("[", f"after '(' in '{mn} 4*([k]&0xf)'")
        k = self.number(f"in '{mn} 4*([k]&0xf)'")
        self.expect_punct("]", f"after the offset in '{mn} 4*([k]&0xf)'")
        self.expect_punct("&", f"after ']' in '{mn} 4*([k]&0xf)'")
        mask_tok = self.peek()
        mask = self.number(f"in '{mn} 4*([k]&0xf)'")
        self.expect_punct(")", f"after the mask in '{mn} 4*([k]&0xf)'")
        # bpf_exp.y: anything but 4*(...&0xf) is "ldxb offset not supported!"
        if four != 4:
            self.error(f"expected 4 in '{mn} 4*([k]&0xf)' (the only multiplier BPF_MSH "
                       f"has), found {four_tok.text}", four_tok)
        if mask != 0xF:
            self.error(f"expected 0xf in '{mn} 4*([k]&0xf)' (the only mask BPF_MSH has), "
                       f"found {mask_tok.text}", mask_tok)
        ins.code, ins.k = BPF_LDX | BPF_B | BPF_MSH, k

    # -- stores
    def _st(self, mn, t, ins):
        m = self.next()
        if not (m.kind == "word" and m.text.lower() == "m"):
            self.error(f"expected 'M[k]' after '{mn}', found {m.describe()}", m)
        ins.code = BPF_ST if mn == "st" else BPF_STX
        ins.k = self.mem_operand(mn)

    _stx = _st

    # -- ALU
    def alu(self, mn, t, ins):
        if self.is_punct("#"):
            self.next()
            ins.code, ins.k = BPF_ALU | _ALU[mn] | BPF_K, self.number(f"after '{mn} #'")
            return
        if self.register("x") is not None:
            ins.code = BPF_ALU | _ALU[mn] | BPF_X
            return
        nxt = self.peek()
        self.error(f"expected '#k' or 'x' after {mn!r}, found {nxt.describe()}", nxt)

    def _neg(self, mn, t, ins):
        ins.code = BPF_ALU | BPF_NEG

    def _tax(self, mn, t, ins):
        ins.code = BPF_MISC | BPF_TAX

    def _txa(self, mn, t, ins):
        ins.code = BPF_MISC | BPF_TXA

    # -- return
    def _ret(self, mn, t, ins):
        if self.is_punct("#"):
            self.next()
            ins.code, ins.k = BPF_RET | BPF_K, self.number("after 'ret #'")
            return
        a = self.register("a")
        if a is not None:
            self.mark(BPF_ASM, a, "'ret a'")
            ins.code = BPF_RET | BPF_A
            return
        x = self.register("x")
        if x is not None:
            self.mark(BPF_ASM, x, "'ret x'")
            ins.code = RET_X
            return
        # a bare `ret` (how bpf_image prints RET A) ends where the next instruction,
        # its '(NNN)' number or the input ends
        nxt = self.peek()
        if not (nxt.kind == "eof" or self.is_punct("(") or (
                nxt.kind == "word" and (nxt.text.lower() in _MNEMONICS or self.is_punct(":", 1)))):
            self.error(f"expected '#k', 'a' or 'x' after 'ret', found {nxt.describe()}", nxt)
        # tcpdump prints RET A as a bare `ret`
        self.mark(TCPDUMP, t, "a bare 'ret' (RET A)")
        ins.code = BPF_RET | BPF_A

    # -- jumps
    def absolute(self, ins: _Pending, what: str, tok: Token) -> int:
        """A tcpdump absolute target converted to the u8 offset from `ins`."""
        target = self.number(f"after '{what}'", lo=-(1 << 31), hi=(1 << 31) - 1)
        target = target - (1 << 32) if target & 0x80000000 else target
        off = target - ins.index - 1
        if not 0 <= off <= 255:
            where = self.toks[self.pos - 1]
            self.error(f"{what} {target} from instruction {ins.index} is out of range: "
                       f"expected a target in {ins.index + 1}..{ins.index + 256} "
                       f"(jt/jf are forward offsets 0..255), found offset {off}", where)
        return off

    def jump_tail(self, mn: str, t: Token, ins: _Pending, *, allow_two: bool, jf_only: bool):
        if self.is_punct(","):
            self.next()
            first = self.label_ref(f"after ',' in '{mn}'")
            if jf_only:
                ins.jf_label = first
                return
            ins.jt_label = first
            if allow_two and self.is_punct(","):
                self.next()
                ins.jf_label = self.label_ref(f"after the second ',' in '{mn}'")
            return
        if self.is_word("jt") and not jf_only:
            jt_tok = self.next()
            self.mark(TCPDUMP, jt_tok, "'jt N jf N'")
            ins.jt = self.absolute(ins, "jt", jt_tok)
            jf_tok = self.next()
            if not (jf_tok.kind == "word" and jf_tok.text.lower() == "jf"):
                self.error(f"expected 'jf' after 'jt {ins.index + 1 + ins.jt}', found "
                           f"{jf_tok.describe()}", jf_tok)
            ins.jf = self.absolute(ins, "jf", jf_tok)
            return
        nxt = self.peek()
        want = "', label'" if jf_only else "', label' or 'jt N jf N'"
        self.error(f"expected {want} after the operand of {mn!r}, found {nxt.describe()}", nxt)

    def jump_operand(self, mn: str) -> tuple[int, int]:
        if self.is_punct("#"):
            self.next()
            return BPF_K, self.number(f"after '{mn} #'")
        if self.register("x") is not None:
            return BPF_X, 0
        nxt = self.peek()
        self.error(f"expected '#k' or 'x' after {mn!r}, found {nxt.describe()}", nxt)

    def jcond(self, mn, t, ins):
        src, k = self.jump_operand(mn)
        ins.code, ins.k = BPF_JMP | _JCOND[mn] | src, k
        self.jump_tail(mn, t, ins, allow_two=True, jf_only=False)

    def jinv(self, mn, t, ins):
        self.mark(BPF_ASM, t, f"'{mn}'")
        src, k = self.jump_operand(mn)
        ins.code, ins.k = BPF_JMP | _JINV[mn] | src, k
        self.jump_tail(mn, t, ins, allow_two=False, jf_only=True)

    def _ja(self, mn, t, ins):
        ins.code = BPF_JMP | BPF_JA
        nxt = self.peek()
        if nxt.kind == "num" or (self.is_punct("+") and self.peek(1).kind == "num"):
            self.mark(TCPDUMP, nxt, "an absolute 'ja' target")
            target = self.number(f"after '{mn}'", lo=-(1 << 31), hi=(1 << 31) - 1)
            ins.k = (target - ins.index - 1) & U32_MAX
            return
        ins.k_label = self.label_ref(f"after '{mn}'")

    _jmp = _ja

    def _unimp(self, mn, t, ins):
        self.mark(TCPDUMP, t, "'unimp'")
        ins.code = self.number("after 'unimp' (the opcode)", lo=0, hi=0xFFFF)
        if ins.code & 0x07 == BPF_JMP and ins.code & 0xF0 != BPF_JA:
            # bpf_image prints jt/jf for every JMP-class code but ja, known or not
            self.jump_tail(mn, t, ins, allow_two=False, jf_only=False)

    # -- labels
    def resolve(self) -> list[Insn]:
        out = []
        for p in self.insns:
            if p.k_label is not None:
                p.k = (self.target(p.k_label) - p.index - 1) & U32_MAX
            if p.jt_label is not None:
                p.jt = self.offset(p, p.jt_label)
            if p.jf_label is not None:
                p.jf = self.offset(p, p.jf_label)
            out.append(Insn(p.code, p.jt, p.jf, p.k))
        return out

    def target(self, tok: Token) -> int:
        if tok.text not in self.labels:
            self.error(f"undefined label {tok.text!r}", tok)
        return self.labels[tok.text][0]

    def offset(self, p: _Pending, tok: Token) -> int:
        t = self.target(tok)
        off = t - p.index - 1
        # bpf_exp.y bpf_encode_jt_jf_offset: "jumps to insn #t, which is out of range"
        if not 0 <= off <= 255:
            kind = "backward" if off < 0 else "too far"
            self.error(f"jump from instruction {p.index} to label {tok.text!r} (instruction "
                       f"{t}) is out of range ({kind}): jt/jf are forward offsets 0..255, "
                       f"found {off}", tok)
        return off


def assemble(text: str, *, syntax: str = "auto") -> Program:
    """Assemble a `tcpdump -d` listing or bpf_asm source into a Program.

    ``syntax``: 'auto' (decided by the first construct only one syntax has; see the
    module doc), 'tcpdump' or 'bpf_asm' (every construct of the other syntax is an
    error).  Raises AsmError with line:col on any problem."""
    return Program(_parse(text, syntax).resolve())


def detect_syntax(text: str) -> str:
    """'tcpdump', 'bpf_asm', or 'common' when the document has only constructs both
    syntaxes share (it then means the same in both).  Raises AsmError when the text
    does not parse."""
    p = _parse(text, "auto")
    p.resolve()
    return p.syntax or "common"


def _parse(text: str, syntax: str) -> _Parser:
    if syntax not in SYNTAXES:
        raise AsmError(f"unknown assembly syntax {syntax!r}: expected one of {', '.join(SYNTAXES)}")
    p = _Parser(text, syntax)
    p.parse()
    return p


__all__ = ["assemble", "detect_syntax", "SYNTAXES", "TCPDUMP", "BPF_ASM"]
