"""Classic BPF program encodings: reading and writing every form tools exchange.

=========  ===============================================================  ==============
name       what                                                             written by
=========  ===============================================================  ==============
``raw``    the array of 8-byte ``struct sock_filter`` (u16 code, u8 jt,     SO_ATTACH_FILTER
           u8 jf, u32 k), little- or big-endian (``byteorder``)
``dd``     the C array, one ``{ 0x28, 0, 0, 0x0000000c },`` a line          ``tcpdump -dd``
``ddd``    the count on the first line, then ``40 0 0 12`` a line           ``tcpdump -ddd``
``comma``  ``4,40 0 0 12,21 0 1 2048,6 0 0 262144,6 0 0 0`` (count first)   nfbpf_compile, for
                                                                            iptables xt_bpf / tc
``asm``    assembly text: a ``tcpdump -d`` listing or the kernel's bpf_asm  ``tcpdump -d``, humans
           syntax (see bpfkit.cbpf.asm)
=========  ===============================================================  ==============

Format detection (``fmt='auto'``), in this order; each rule is decided by the first
bytes alone, and no input satisfies the condition of an earlier rule and is meant as a
later format:

1. ``raw`` when the data holds a byte that is not printable ASCII or whitespace
   (tab, newline, CR, FF, VT).  Every valid program ends in ``ret``, whose code (0x06 or
   0x16) puts a control byte or a NUL into the encoding in either byte order, so a
   usable raw program is always detected; a raw program made only of printable bytes
   must be forced with ``fmt='raw'``.
2. ``dd`` when the first non-blank character is ``{``.
3. ``comma`` when the text starts (after blanks) with a decimal number followed by ``,``.
4. ``ddd`` when the first non-blank line is one decimal number and nothing else.
5. ``asm`` otherwise.  Assembly never starts with a digit or ``{`` (mnemonics and labels
   start with a letter, listing lines with ``(``, comments with ``;``, ``/*`` or ``#``).
"""
from __future__ import annotations

import copy
import re
import sys

from ..errors import AsmError, BpfError, EncodingError
from .program import DEFAULT_SNAPLEN, Insn, Program

FORMATS = ("raw", "dd", "ddd", "comma", "asm")
# fmt values load_program accepts: a format, 'auto', or an assembly syntax
# (forcing both the format 'asm' and that syntax; see bpfkit.cbpf.asm).
LOAD_FORMATS = ("auto",) + FORMATS + ("tcpdump", "bpf_asm")
BYTEORDERS = ("little", "big")

_U = {"code": 0xFFFF, "jt": 0xFF, "jf": 0xFF, "k": 0xFFFFFFFF}
_FIELDS = ("code", "jt", "jf", "k")


# --- writers -------------------------------------------------------------------

def format_raw(prog: Program, byteorder: str = "little") -> bytes:
    """The raw `struct sock_filter` array."""
    _check_byteorder(byteorder)
    return prog.to_bytes(byteorder)


def format_dd(prog: Program) -> str:
    """`tcpdump -dd`: libpcap bpf_dump(option 2), `{ 0x%x, %d, %d, 0x%08x },` a line."""
    return "".join(f"{{ 0x{i.code:x}, {i.jt}, {i.jf}, 0x{i.k:08x} }},\n" for i in prog)


def format_ddd(prog: Program) -> str:
    """`tcpdump -ddd`: libpcap bpf_dump(option 3), the count then `%u %u %u %u` lines."""
    return f"{len(prog)}\n" + "".join(f"{i.code} {i.jt} {i.jf} {i.k}\n" for i in prog)


def format_comma(prog: Program) -> str:
    """The one-line form iptables `-m bpf --bytecode` and tc `bytecode` take (as
    iptables' nfbpf_compile prints it): the count, then each instruction as
    `code jt jf k`, all separated by commas; ends with a newline."""
    return ",".join([str(len(prog))] + [f"{i.code} {i.jt} {i.jf} {i.k}" for i in prog]) + "\n"


def format_program(prog: Program, fmt: str, *, byteorder: str = "little") -> str | bytes:
    """Write ``prog`` in ``fmt``: 'raw' (bytes), 'dd', 'ddd', 'comma', 'tcpdump'
    (the -d listing) or 'bpf_asm' (str)."""
    if fmt == "raw":
        return format_raw(prog, byteorder)
    if fmt == "dd":
        return format_dd(prog)
    if fmt == "ddd":
        return format_ddd(prog)
    if fmt == "comma":
        return format_comma(prog)
    if fmt in ("tcpdump", "asm"):
        from .disasm import format_tcpdump
        return format_tcpdump(prog)
    if fmt == "bpf_asm":
        from .disasm import format_bpf_asm
        return format_bpf_asm(prog)
    raise EncodingError(f"unknown output format {fmt!r}: expected one of raw, dd, ddd, comma, "
                        f"tcpdump, bpf_asm")


# --- parsers -------------------------------------------------------------------

def _check_byteorder(byteorder: str) -> None:
    if byteorder not in BYTEORDERS:
        raise EncodingError(f"unknown byte order {byteorder!r}: expected 'little' or 'big'")


def parse_raw(data: bytes, byteorder: str = "little", **meta) -> Program:
    """Read a raw `struct sock_filter` array; its length must be a positive multiple of 8."""
    _check_byteorder(byteorder)
    if not data:
        raise EncodingError("empty raw program: expected at least one 8-byte instruction")
    return Program.from_bytes(bytes(data), byteorder, **meta)


def _field(text: str, name: str, where: str, *, c_syntax: bool) -> int:
    """One numeric field.  -dd: a C integer literal (0x hex, 0 octal, decimal; a U/L
    suffix allowed).  -ddd/comma: decimal, as tcpdump prints them; k may be negative
    (it is a u32 read by sscanf %u in tc/iptables, which wraps negative input)."""
    t = text.strip()
    v = None
    if c_syntax:
        m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)[uUlL]*", t)
        if m:
            lit = m.group(1)
            v = int(lit, 16) if lit[:2].lower() == "0x" else int(lit, 8) if lit.startswith("0") \
                else int(lit)
        want = "a C integer (0x hex, decimal or 0-octal)"
    else:
        if re.fullmatch(r"[0-9]+", t) or (name == "k" and re.fullmatch(r"-[0-9]+", t)):
            v = int(t)
        want = "a decimal number" + (" (k may be negative)" if name == "k" else "")
    if v is None:
        raise EncodingError(f"{where}: field {name}: expected {want}, found {t!r}")
    lo = -(1 << 31) if name == "k" else 0
    if not lo <= v <= _U[name]:
        raise EncodingError(f"{where}: field {name}: expected {lo}..{_U[name]}, found {v}")
    return v & 0xFFFFFFFF


def _insn_from_fields(parts: list[str], where: str, found: str, *, c_syntax: bool) -> Insn:
    if len(parts) != 4:
        raise EncodingError(f"{where}: expected 4 fields 'code jt jf k', found {len(parts)} "
                            f"in {found!r}")
    code, jt, jf, k = (_field(p, n, where, c_syntax=c_syntax) for p, n in zip(parts, _FIELDS))
    return Insn(code, jt, jf, k)


def _check_count(declared: int, insns: list, where: str) -> None:
    if declared != len(insns):
        raise EncodingError(f"{where}: instruction count mismatch: the count says {declared}, "
                            f"found {len(insns)} instructions")
    if not insns:
        raise EncodingError(f"{where}: empty program: expected at least one instruction")


_DD_LINE = re.compile(r"\{(?P<body>[^{}]*)\}\s*,?")


def parse_dd(text: str, **meta) -> Program:
    """Read `tcpdump -dd` output: one `{ code, jt, jf, k },` a line; blank lines and
    `//` or `/* */` comments on their own lines are skipped (C source it was pasted into)."""
    insns = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("//") or (s.startswith("/*") and s.endswith("*/")):
            continue
        m = _DD_LINE.fullmatch(s)
        if not m:
            raise EncodingError(f"line {n}: expected '{{ code, jt, jf, k }},' (tcpdump -dd), "
                                f"found {s!r}")
        insns.append(_insn_from_fields(m.group("body").split(","), f"line {n}", s, c_syntax=True))
    if not insns:
        raise EncodingError("empty -dd program: expected at least one '{ code, jt, jf, k },' line")
    return Program(insns, **meta)


def parse_ddd(text: str, **meta) -> Program:
    """Read `tcpdump -ddd` output: the count, then `code jt jf k` (decimal) a line.
    Blank lines are skipped; the count must equal the number of instruction lines."""
    lines = [(n, l.strip()) for n, l in enumerate(text.splitlines(), 1) if l.strip()]
    if not lines:
        raise EncodingError("empty -ddd program: expected the instruction count on line 1")
    n0, first = lines[0]
    if not re.fullmatch(r"[0-9]+", first):
        raise EncodingError(f"line {n0}: expected the instruction count (tcpdump -ddd), "
                            f"found {first!r}")
    insns = [_insn_from_fields(s.split(), f"line {n}", s, c_syntax=False) for n, s in lines[1:]]
    _check_count(int(first), insns, f"line {n0}")
    return Program(insns, **meta)


def parse_comma(text: str, **meta) -> Program:
    """Read the iptables/tc form `count,code jt jf k,code jt jf k,...`.  Whitespace
    (also newlines) around items and one trailing comma are accepted."""
    body = text.strip()
    if body.endswith(","):
        body = body[:-1]
    items = body.split(",")
    pos = [0]
    for it in items[:-1]:
        pos.append(pos[-1] + len(it) + 1)
    lead = len(text) - len(text.lstrip())

    def where(i):
        return f"item {i + 1} (character {lead + pos[i] + 1})"

    head = items[0].strip()
    if not re.fullmatch(r"[0-9]+", head):
        raise EncodingError(f"{where(0)}: expected the instruction count (comma form "
                            f"'count,code jt jf k,...'), found {head!r}")
    insns = []
    for i, it in enumerate(items[1:], 1):
        if not it.strip():
            raise EncodingError(f"{where(i)}: expected 'code jt jf k', found an empty item")
        insns.append(_insn_from_fields(it.split(), where(i), it.strip(), c_syntax=False))
    _check_count(int(head), insns, where(0))
    return Program(insns, **meta)


# --- detection and loading -------------------------------------------------------

_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(b"\t\n\r\f\v")


def detect_format(data: bytes | str) -> str:
    """One of FORMATS, by the rules in the module doc."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        if not data:
            raise EncodingError("empty input: expected a program")
        if any(b not in _TEXT_BYTES for b in data):
            return "raw"
        text = data.decode("ascii")
    else:
        text = data
    s = text.lstrip()
    if not s:
        raise EncodingError("empty input: expected a program")
    if s.startswith("{"):
        return "dd"
    if re.match(r"[0-9]+[ \t]*,", s):
        return "comma"
    if re.fullmatch(r"[0-9]+", s.split("\n", 1)[0].strip()):
        return "ddd"
    return "asm"


def load_program(data: bytes | str, *, fmt: str = "auto", byteorder: str = "little",
                 linktype: int | None = None, snaplen: int = DEFAULT_SNAPLEN) -> Program:
    """Read a program in any encoding.  ``fmt``: 'auto' (detect_format), one of FORMATS,
    or 'tcpdump'/'bpf_asm' (assembly in that syntax).  ``byteorder`` applies to 'raw'.
    Raises EncodingError (AsmError for assembly) saying where and what was expected."""
    if fmt not in LOAD_FORMATS:
        raise EncodingError(f"unknown program format {fmt!r}: expected one of "
                            f"{', '.join(LOAD_FORMATS)}")
    _check_byteorder(byteorder)
    meta = {"linktype": linktype, "snaplen": snaplen}
    if fmt == "auto":
        fmt = detect_format(data)
    if fmt == "raw":
        if isinstance(data, str):
            raise EncodingError("raw format needs bytes, found text (str)")
        return parse_raw(data, byteorder, **meta)
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise EncodingError(f"byte offset {e.start}: expected text for format {fmt!r}, "
                                f"found byte 0x{bytes(data)[e.start]:02x}") from None
    else:
        text = data
    if fmt == "dd":
        return parse_dd(text, **meta)
    if fmt == "ddd":
        return parse_ddd(text, **meta)
    if fmt == "comma":
        return parse_comma(text, **meta)
    from .asm import assemble   # assembly pulls in the assembler only when needed
    prog = assemble(text, syntax="auto" if fmt == "asm" else fmt)
    return Program(prog.insns, **meta)


def read_program(path_or_dash: str, *, fmt: str = "auto", byteorder: str = "little",
                 linktype: int | None = None, snaplen: int = DEFAULT_SNAPLEN) -> Program:
    """load_program() on a file's contents, or stdin's for '-'.  A file that cannot be
    read is a BpfError naming the path; format errors are prefixed with the path."""
    path = str(path_or_dash)
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise BpfError(f"{name}: cannot read program: {e.strerror or e}") from None
    try:
        return load_program(data, fmt=fmt, byteorder=byteorder, linktype=linktype,
                            snaplen=snaplen)
    except (EncodingError, AsmError) as e:
        raise _with_prefix(e, name) from None


def _with_prefix(e: BpfError, name: str) -> BpfError:
    """The same error (class and attributes kept) with `name: ` before its message."""
    new = copy.copy(e)
    new.args = (f"{name}: {e}",)
    return new


__all__ = ["FORMATS", "LOAD_FORMATS", "format_raw", "format_dd", "format_ddd", "format_comma",
           "format_program", "parse_raw", "parse_dd", "parse_ddd", "parse_comma",
           "detect_format", "load_program", "read_program"]
