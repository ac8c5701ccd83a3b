"""The eBPF `Program` container (DESIGN.md data model): instructions + program type +
map specs + name/section + licence, built from assembly text, raw bytes or hex text.

Map references.  A program's maps are an ordered tuple of `MapSpec`s; an ``lddw`` with
src BPF_PSEUDO_MAP_IDX (or BPF_PSEUDO_MAP_FD, which the interpreter reads the same
way) and imm N refers to ``maps[N]`` -- libbpf's fd_array convention.  In the LLVM
assembly syntax ``r1 = NAME ll`` names the map; the listing writes it back the same way.

Hex text (`Program.from_hex`, `parse_hex`) comes in two forms, told apart by ``0x``:
  * a byte stream: ``b7 00 00 00 01 00 00 00`` (llvm-objdump's raw-instruction column,
    bpftool's ``opcodes``), with or without spaces, commas or newlines;
  * 64-bit words, one per slot: ``0x0000000000000095`` (the bpf_conformance ``-- raw``
    section): each word is the slot read as an integer in the program's byte order,
    so the opcode is the low byte of a little-endian word.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import AsmError, EncodingError, UsageError
from . import isa
from .asm import assemble
from .disasm import format_insn, listing as _llvm_listing
from .isa import Insn
from .maps import MapSpec, MapType
from .maps import consts as _consts
from .progtypes import BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_XDP, PROG_TYPE_NAMES

__all__ = ["Program", "prog_type_of", "parse_map_spec", "parse_hex", "looks_binary",
           "PROG_TYPE_ALIASES", "SYNTAXES"]

SYNTAXES = ("llvm", "kernel", "conformance")

# names accepted for a program type (bpftool says "xdp", "socket"; the enum says
# BPF_PROG_TYPE_SOCKET_FILTER)
PROG_TYPE_ALIASES = {"xdp": BPF_PROG_TYPE_XDP, "socket": BPF_PROG_TYPE_SOCKET_FILTER,
                     "socket_filter": BPF_PROG_TYPE_SOCKET_FILTER,
                     "socket-filter": BPF_PROG_TYPE_SOCKET_FILTER}

_NAME = re.compile(r"[A-Za-z_.$][\w.$]*")     # what `r1 = NAME ll` accepts (asm.py)


def prog_type_of(value: int | str) -> int:
    """BPF_PROG_TYPE_* value of a name ('xdp', 'socket', 'socket_filter') or number."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in PROG_TYPE_NAMES:
            return value
    elif isinstance(value, str):
        key = value.strip().lower()
        if key.startswith("bpf_prog_type_"):
            key = key[len("bpf_prog_type_"):]
        if key in PROG_TYPE_ALIASES:
            return PROG_TYPE_ALIASES[key]
        if key.isdigit() and int(key) in PROG_TYPE_NAMES:
            return int(key)
    known = ", ".join(f"{n} ({v})" for v, n in PROG_TYPE_NAMES.items())
    raise UsageError(f"unknown or unmodelled program type {value!r} (bpfkit models {known})")


def looks_binary(data: bytes) -> bool:
    """True when `data` is not text: any byte outside printable ASCII and whitespace.
    Raw eBPF always has such bytes (every instruction has a zero or high byte)."""
    return any(b > 0x7E or (b < 0x20 and b not in b"\t\n\r\f\v") for b in data)


_WORD = re.compile(r"0[xX]([0-9a-fA-F]{1,16})")


def parse_hex(text: str, byteorder: str = "little") -> bytes:
    """Bytes of a program written as hex text (see the module docstring for the two
    forms).  '#' and '//' start comments.  EncodingError says where it went wrong."""
    if byteorder not in ("little", "big"):
        raise EncodingError(f"byte order must be 'little' or 'big', not {byteorder!r}")
    out = bytearray()
    words = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = re.split(r"#|//", line, maxsplit=1)[0]
        for tok in re.split(r"[\s,]+", line.strip()):
            if not tok:
                continue
            is_word = tok[:2].lower() == "0x"
            if words is None:
                words = is_word
            if is_word != words:
                raise EncodingError(f"hex line {lineno}: {tok!r} mixes 0x-prefixed 64-bit words "
                                    "with a plain byte stream")
            if is_word:
                m = _WORD.fullmatch(tok)
                if not m:
                    raise EncodingError(f"hex line {lineno}: {tok!r} is not a 64-bit hex word")
                out += int(m.group(1), 16).to_bytes(8, byteorder)
            else:
                if not re.fullmatch(r"[0-9a-fA-F]+", tok) or len(tok) % 2:
                    raise EncodingError(f"hex line {lineno}: {tok!r} is not a whole number of "
                                        "hex byte pairs")
                out += bytes.fromhex(tok)
    return bytes(out)


def _flags_of(text: str, spec_text: str) -> int:
    """Map flags: a number or BPF_F_* names joined with '|' (NO_PREALLOC works too)."""
    total = 0
    for part in text.split("|"):
        part = part.strip()
        try:
            total |= int(part, 0)
            continue
        except ValueError:
            pass
        name = part.upper()
        if not name.startswith("BPF_F_"):
            name = "BPF_F_" + name
        v = getattr(_consts, name, None)
        if not isinstance(v, int):
            raise UsageError(f"map {spec_text!r}: unknown flag {part!r} "
                             "(a number or a BPF_F_* name)")
        total |= v
    return total


def parse_map_spec(text: str) -> MapSpec:
    """NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES[:FLAGS] -> MapSpec.  TYPE is a map type
    name (array, percpu_array, hash, lru_hash, ... as in enum bpf_map_type without the
    BPF_MAP_TYPE_ prefix, any case) or its number; sizes accept 0x; FLAGS a number or
    BPF_F_* names joined with '|'.  Whether the kernel would create such a map is
    checked by create_map (MapError with the kernel's errno)."""
    parts = text.split(":")
    if len(parts) not in (5, 6):
        raise UsageError(f"map {text!r}: expected NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES"
                         "[:FLAGS]")
    name, tname = parts[0].strip(), parts[1].strip()
    if not _NAME.fullmatch(name):
        raise UsageError(f"map {text!r}: {name!r} is no valid name (letters, digits, _ . $)")
    try:
        mtype = MapType(int(tname, 0))
    except ValueError:
        key = tname.upper()
        if key.startswith("BPF_MAP_TYPE_"):
            key = key[len("BPF_MAP_TYPE_"):]
        try:
            mtype = MapType[key]
        except KeyError:
            raise UsageError(f"map {text!r}: unknown map type {tname!r} (e.g. array, hash, "
                             "percpu_array, lru_hash, lpm_trie, ringbuf)") from None
    nums = []
    for what, s in zip(("KEY_SIZE", "VALUE_SIZE", "MAX_ENTRIES"), parts[2:5]):
        try:
            v = int(s.strip(), 0)
        except ValueError:
            raise UsageError(f"map {text!r}: {what} {s!r} is not a number") from None
        if not 0 <= v <= 0xFFFFFFFF:
            raise UsageError(f"map {text!r}: {what} {v} does not fit a u32")
        nums.append(v)
    flags = _flags_of(parts[5], text) if len(parts) == 6 else 0
    return MapSpec(mtype, nums[0], nums[1], nums[2], flags, name=name)


@dataclass(frozen=True, slots=True)
class Program:
    """An eBPF program.  insns: logical instructions (lddw is one); prog_type: a
    BPF_PROG_TYPE_* value (names accepted, see prog_type_of); maps: the MapSpecs
    that lddw map references index; name/section/license as an ELF object would give
    them (the ELF loader fills them in; for text and raw input they are what the
    caller says)."""
    insns: tuple[Insn, ...]
    prog_type: int = BPF_PROG_TYPE_XDP
    maps: tuple[MapSpec, ...] = ()
    name: str = ""
    section: str = ""
    license: str = "GPL"
    _names: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "insns", tuple(self.insns))
        object.__setattr__(self, "maps", tuple(self.maps))
        object.__setattr__(self, "prog_type", prog_type_of(self.prog_type))
        for i in self.insns:
            if not isinstance(i, Insn):
                raise EncodingError(f"Program.insns holds {type(i).__name__}, not Insn")
        names = tuple(m.name for m in self.maps)
        seen = set()
        for n in names:
            if not n or not _NAME.fullmatch(n):
                raise UsageError(f"map name {n!r} is not usable in assembly "
                                 "(letters, digits, _ . $)")
            if n in seen:
                raise UsageError(f"two maps are named {n!r}")
            seen.add(n)
        object.__setattr__(self, "_names", names)

    # --- construction ------------------------------------------------------------

    @classmethod
    def from_asm(cls, text: str, syntax: str = "llvm", *, prog_type: int | str = "xdp",
                 maps=(), name: str = "", section: str = "",
                 license: str = "GPL") -> "Program":
        """Assemble `text` (syntax llvm, kernel or conformance); ``r1 = NAME ll``
        refers to the map of that name in `maps` (MapSpecs)."""
        maps = tuple(maps)
        if syntax not in SYNTAXES:
            raise UsageError(f"unknown eBPF syntax {syntax!r} (expected {', '.join(SYNTAXES)})")
        try:
            insns = assemble(text, syntax, maps=[m.name for m in maps])
        except AsmError as e:
            raise _explain_map_miss(e, maps) from None
        return cls(tuple(insns), prog_type, maps, name, section, license)

    @classmethod
    def from_bytes(cls, data: bytes, byteorder: str = "little", *,
                   prog_type: int | str = "xdp", maps=(), name: str = "", section: str = "",
                   license: str = "GPL") -> "Program":
        """Decode raw instruction bytes (8-byte slots, lddw two) in either byte order."""
        return cls(tuple(isa.decode(data, byteorder)), prog_type, tuple(maps), name,
                   section, license)

    @classmethod
    def from_hex(cls, text: str, byteorder: str = "little", **kw) -> "Program":
        """Decode hex text (a byte stream or 0x-prefixed 64-bit words)."""
        return cls.from_bytes(parse_hex(text, byteorder), byteorder, **kw)

    @classmethod
    def load(cls, data: bytes, fmt: str = "auto", *, syntax: str = "llvm",
             byteorder: str = "little", **kw) -> "Program":
        """A program from file contents: fmt 'asm', 'raw', 'hex' or 'auto' (non-text ->
        raw; text made only of hex digits, 0x, commas and whitespace -> hex; other text
        -> assembly in `syntax`)."""
        if fmt == "auto":
            fmt = detect_format(data)
        if fmt == "raw":
            return cls.from_bytes(data, byteorder, **kw)
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise EncodingError(f"byte offset {e.start}: not UTF-8 text (for raw "
                                "instruction bytes say so: format 'raw')") from None
        if fmt == "hex":
            return cls.from_hex(text, byteorder, **kw)
        if fmt == "asm":
            return cls.from_asm(text, syntax, **kw)
        raise UsageError(f"unknown eBPF program format {fmt!r} (expected auto, asm, raw, hex)")

    # --- output ------------------------------------------------------------------

    @property
    def map_names(self) -> tuple[str, ...]:
        return self._names

    def to_bytes(self, byteorder: str = "little") -> bytes:
        return isa.encode(self.insns, byteorder)

    def to_hex(self, byteorder: str = "little") -> str:
        """One slot per line as bytes, e.g. ``b7 00 00 00 01 00 00 00``."""
        raw = self.to_bytes(byteorder)
        return "".join(raw[i:i + 8].hex(" ") + "\n" for i in range(0, len(raw), 8))

    def _map_text(self, i: Insn) -> str | None:
        """``rN = NAME ll`` for a map reference the program can name (llvm and kernel
        syntax both read it back; the conformance syntax has no map names)."""
        if (i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX
                and i.imm < len(self._names)):
            return f"r{i.dst} = {self._names[i.imm]} ll"
        return None

    def text(self, syntax: str = "llvm") -> str:
        """Assembly text, one instruction per line, that `from_asm` reads back to the
        same program (given the same maps)."""
        out = []
        for i in self.insns:
            t = self._map_text(i) if syntax in ("llvm", "kernel") else None
            out.append((t or format_insn(i, syntax)) + "\n")
        return "".join(out)

    def listing(self, syntax: str = "llvm") -> str:
        """A numbered listing: llvm -- as ``llvm-objdump -d --no-show-raw-insn``
        (slot right-aligned in 8 columns, ':', tab); kernel -- as the verifier log
        (``N: (op) text``, which the kernel-syntax assembler reads back); conformance
        -- plain mnemonic lines (that syntax has no numbered form)."""
        if syntax == "llvm":
            if not any(self._map_text(i) for i in self.insns):
                return _llvm_listing(self.insns)
            out = []
            for slot, i in zip(isa.slot_indices(self.insns), self.insns):
                out.append(f"{slot:8d}:\t{self._map_text(i) or format_insn(i, 'llvm')}\n")
            return "".join(out)
        if syntax == "kernel":
            return "".join(f"{slot}: ({i.opcode:02x}) "
                           f"{self._map_text(i) or format_insn(i, 'kernel')}\n"
                           for slot, i in zip(isa.slot_indices(self.insns), self.insns))
        if syntax == "conformance":
            return self.text("conformance")
        raise UsageError(f"unknown eBPF syntax {syntax!r} (expected {', '.join(SYNTAXES)})")

    def __len__(self) -> int:
        return len(self.insns)


def detect_format(data: bytes) -> str:
    """'raw', 'hex' or 'asm' for program file contents (see Program.load)."""
    if looks_binary(data):
        return "raw"
    text = bytes(data).decode("ascii", "replace")
    body = "\n".join(re.split(r"#|//", ln, maxsplit=1)[0] for ln in text.splitlines())
    if body.strip() and re.fullmatch(r"(?:[\s,]|0[xX]|[0-9a-fA-F])*", body):
        return "hex"
    return "asm"


def _explain_map_miss(e: AsmError, maps) -> AsmError:
    """The assembler calls an unknown `r1 = NAME ll` an undefined label; when the line
    has that shape, say that NAME is no map and which maps there are."""
    m = re.search(r"undefined label '([^']*)'", str(e).splitlines()[0])
    if m and e.text and re.search(r"=\s*" + re.escape(m.group(1)) + r"\s+ll\b", e.text):
        have = ", ".join(x.name for x in maps) or "none"
        msg = (f"unknown map {m.group(1)!r} (maps defined: {have}; define one with "
               "NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES)")
        return AsmError(msg, line=e.line, col=e.col, text=e.text)
    return e
