"""BTF (`.BTF`) and BTF.ext (`.BTF.ext`) parsing, as clang writes them into BPF objects.

Layout follows include/uapi/linux/btf.h and tools/lib/bpf/libbpf_internal.h
(struct btf_ext_header, btf_ext_info_sec):

* `.BTF`: a header (magic 0xEB9F, version 1, hdr_len, type_off/len, str_off/len), the
  type section (one `struct btf_type` of 12 bytes per type, followed by kind-specific
  data) and the string section.  Type ids start at 1; id 0 is `void`.  All 19 kinds of
  Linux 6.x are parsed (INT .. ENUM64); an unknown kind, a string or type id out of
  range, or a record running past the section is a BtfError naming the byte offset --
  as the kernel's btf_parse_hdr/btf_check_all_metas refuse such blobs.
* `.BTF.ext`: func info, line info and CO-RE relocation records per ELF section.
  Offsets in these records are byte offsets into the section (libbpf divides by 8).

Objects are little-endian when the magic reads 0xEB9F little-endian (bpfel), else
big-endian (bpfeb).  Nothing here touches ELF: the loader (elf.py) passes section bytes.
`dump_value` decodes map keys and values through BTF as `bpftool map dump` does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import BpfError

__all__ = ["BtfError", "Btf", "BtfType", "BtfMember", "BtfExt", "FuncInfo", "LineInfo",
           "CoreReloc", "KIND_NAMES", "parse_btf", "parse_btf_ext", "dump_value"]

BTF_MAGIC = 0xEB9F
# enum btf_kind (include/uapi/linux/btf.h)
(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
 FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)
KIND_NAMES = {INT: "INT", PTR: "PTR", ARRAY: "ARRAY", STRUCT: "STRUCT", UNION: "UNION",
              ENUM: "ENUM", FWD: "FWD", TYPEDEF: "TYPEDEF", VOLATILE: "VOLATILE",
              CONST: "CONST", RESTRICT: "RESTRICT", FUNC: "FUNC", FUNC_PROTO: "FUNC_PROTO",
              VAR: "VAR", DATASEC: "DATASEC", FLOAT: "FLOAT", DECL_TAG: "DECL_TAG",
              TYPE_TAG: "TYPE_TAG", ENUM64: "ENUM64"}
# kinds whose third word is a type id (the others: a size, or unused)
_REF_KINDS = {PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DECL_TAG,
              TYPE_TAG}
_MODIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
# the kernel's MAX_RESOLVE_DEPTH (kernel/bpf/btf.c): deeper modifier chains are refused
MAX_RESOLVE_DEPTH = 32
BTF_INT_SIGNED, BTF_INT_CHAR, BTF_INT_BOOL = 1, 2, 4
CORE_RELO_KINDS = {0: "field_byte_offset", 1: "field_byte_size", 2: "field_exists",
                   3: "field_signed", 4: "field_lshift_u64", 5: "field_rshift_u64",
                   6: "type_id_local", 7: "type_id_target", 8: "type_exists",
                   9: "type_size", 10: "enumval_exists", 11: "enumval_value",
                   12: "type_matches"}


class BtfError(BpfError):
    """Malformed or unusable BTF; the message names the section and byte offset."""


@dataclass(frozen=True, slots=True)
class BtfMember:
    """A member of STRUCT/UNION (name, type, bit offset, bitfield size), an ENUM/ENUM64
    value (name, value), a FUNC_PROTO parameter (name, type) or a DATASEC variable
    (type = VAR id, offset and size in bytes)."""
    name: str
    type: int = 0
    offset: int = 0          # STRUCT/UNION: bit offset; DATASEC: byte offset
    bitfield_size: int = 0
    value: int = 0           # ENUM/ENUM64
    size: int = 0            # DATASEC


@dataclass(frozen=True, slots=True)
class BtfType:
    """One BTF type.  `size` for INT/STRUCT/UNION/ENUM/ENUM64/DATASEC/FLOAT, `type` for
    the reference kinds (PTR, TYPEDEF, modifiers, FUNC, FUNC_PROTO return, VAR,
    DECL_TAG); ARRAY: `type` = element, `index_type`, `nelems`; INT: `encoding`,
    `bit_offset`, `bits`; FUNC/VAR: `linkage`; DECL_TAG: `component_idx`."""
    id: int
    kind: int
    name: str
    kind_flag: bool = False
    size: int = 0
    type: int = 0
    members: tuple[BtfMember, ...] = ()
    index_type: int = 0
    nelems: int = 0
    encoding: int = 0
    bit_offset: int = 0
    bits: int = 0
    linkage: int = 0
    component_idx: int = 0

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


@dataclass(frozen=True, slots=True)
class Btf:
    """Parsed `.BTF`: `types[i]` is type id i (types[0] is void, kind 0)."""
    types: tuple[BtfType, ...]
    strings: bytes
    byteorder: str = "little"

    def __len__(self) -> int:
        return len(self.types)

    def type(self, tid: int) -> BtfType:
        if not 0 <= tid < len(self.types):
            raise BtfError(f"BTF type id {tid} out of range (have {len(self.types) - 1})")
        return self.types[tid]

    def resolve(self, tid: int) -> BtfType:
        """Skip typedefs and modifiers (const, volatile, restrict, type tags)."""
        for _ in range(MAX_RESOLVE_DEPTH):
            t = self.type(tid)
            if t.kind not in _MODIFIERS:
                return t
            tid = t.type
        raise BtfError(f"BTF type {tid}: modifier chain deeper than {MAX_RESOLVE_DEPTH}")

    def size_of(self, tid: int) -> int:
        """Byte size of a type, as btf__resolve_size: modifiers skipped, PTR = 8,
        ARRAY = nelems * element size.  VOID/FUNC/FWD have no size: BtfError."""
        mult = 1
        for _ in range(MAX_RESOLVE_DEPTH):
            t = self.resolve(tid)
            if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT):
                return mult * t.size
            if t.kind == PTR:
                return mult * 8
            if t.kind == VAR:
                tid = t.type
                continue
            if t.kind == ARRAY:
                mult *= t.nelems
                tid = t.type
                continue
            raise BtfError(f"BTF type {tid} ({KIND_NAMES.get(t.kind, 'void')}) has no size")
        raise BtfError(f"BTF type {tid}: type chain deeper than {MAX_RESOLVE_DEPTH}")

    def type_name(self, tid: int, _depth: int = 0) -> str:
        """A C-like name: 'struct flow_key', '__u32', 'unsigned int *', 'char[4]'."""
        if _depth > MAX_RESOLVE_DEPTH:
            return "..."
        t = self.type(tid)
        if t.kind == 0:
            return "void"
        if t.kind in (STRUCT, UNION, ENUM, ENUM64):
            tag = {STRUCT: "struct", UNION: "union"}.get(t.kind, "enum")
            return f"{tag} {t.name}" if t.name else f"{tag} (anon)"
        if t.kind == FWD:
            return f"{'union' if t.kind_flag else 'struct'} {t.name}"
        if t.kind == PTR:
            return self.type_name(t.type, _depth + 1) + " *"
        if t.kind == ARRAY:
            # C order: the outer array's dimension first (char x[2][3] is an ARRAY of 2
            # ARRAYs of 3 chars)
            dims = ""
            while t.kind == ARRAY and _depth <= MAX_RESOLVE_DEPTH:
                dims += f"[{t.nelems}]"
                t = self.type(t.type)
                _depth += 1
            return self.type_name(t.id, _depth + 1) + dims
        if t.kind in (CONST, VOLATILE, RESTRICT):
            q = {CONST: "const", VOLATILE: "volatile", RESTRICT: "restrict"}[t.kind]
            return f"{q} {self.type_name(t.type, _depth + 1)}"
        if t.kind == TYPE_TAG:
            return self.type_name(t.type, _depth + 1)
        return t.name or f"({t.kind_name})"

    def find(self, name: str, kind: int | None = None) -> BtfType | None:
        """The first type named `name` (of `kind`, if given)."""
        for t in self.types:
            if t.name == name and (kind is None or t.kind == kind):
                return t
        return None


def _unpacker(byteorder: str):
    return "<" if byteorder == "little" else ">"


def _str(strings: bytes, off: int, where: str) -> str:
    if not 0 <= off < len(strings):
        raise BtfError(f"{where}: string offset {off} outside the string section "
                       f"({len(strings)} bytes)")
    end = strings.find(b"\0", off)
    if end < 0:
        raise BtfError(f"{where}: string at offset {off} is not NUL-terminated")
    return strings[off:end].decode("utf-8", "replace")


def parse_btf(data: bytes, section: str = ".BTF") -> Btf:
    """Parse a `.BTF` blob (btf_parse_hdr, btf_parse_str_sec, btf_parse_type_sec)."""
    data = bytes(data)
    if len(data) < 24:
        raise BtfError(f"{section}: {len(data)} bytes, too short for the 24-byte header")
    if struct.unpack_from("<H", data, 0)[0] == BTF_MAGIC:
        bo = "little"
    elif struct.unpack_from(">H", data, 0)[0] == BTF_MAGIC:
        bo = "big"
    else:
        raise BtfError(f"{section}: offset 0: bad magic {data[:2].hex()} (expected 0xeb9f)")
    e = _unpacker(bo)
    _magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
        struct.unpack_from(e + "HBBIIIII", data, 0)
    if version != 1:
        raise BtfError(f"{section}: offset 2: unsupported BTF version {version}")
    if hdr_len < 24 or hdr_len > len(data):
        raise BtfError(f"{section}: offset 4: bad header length {hdr_len}")
    tstart, sstart = hdr_len + type_off, hdr_len + str_off
    if tstart + type_len > len(data) or sstart + str_len > len(data) or type_len % 4:
        raise BtfError(f"{section}: type section [{tstart}, +{type_len}) or string section "
                       f"[{sstart}, +{str_len}) runs past the {len(data)}-byte blob")
    strings = data[sstart:sstart + str_len]
    if str_len and (strings[0] != 0 or strings[-1] != 0):
        # btf_parse_str_sec: the first string is "" and the section ends with NUL
        raise BtfError(f"{section}: offset {sstart}: string section must start and end "
                       "with NUL")
    types = [BtfType(0, 0, "")]
    pos, end = tstart, tstart + type_len
    while pos < end:
        t, pos = _parse_type(data, pos, end, len(types), strings, e, section)
        types.append(t)
    n = len(types)
    for t in types[1:]:
        refs = []
        if t.kind in _REF_KINDS:
            refs.append(t.type)
        if t.kind == ARRAY:
            refs += [t.type, t.index_type]
        if t.kind in (STRUCT, UNION, FUNC_PROTO, DATASEC):
            refs += [m.type for m in t.members]
        for r in refs:
            if not 0 <= r < n:
                raise BtfError(f"{section}: type {t.id} ({t.kind_name} {t.name!r}) refers "
                               f"to type id {r}, out of range (last id {n - 1})")
    return Btf(tuple(types), strings, bo)


def _parse_type(data: bytes, pos: int, end: int, tid: int, strings: bytes, e: str,
                section: str) -> tuple[BtfType, int]:
    where = f"{section}: type {tid} at offset {pos}"
    if pos + 12 > end:
        raise BtfError(f"{where}: truncated type record")
    name_off, info, st = struct.unpack_from(e + "III", data, pos)
    pos += 12
    vlen, kind, kflag = info & 0xFFFF, (info >> 24) & 0x1F, bool(info >> 31)
    if kind not in KIND_NAMES:
        raise BtfError(f"{where}: unknown kind {kind}")
    name = _str(strings, name_off, where)

    def need(n: int) -> None:
        if pos + n > end:
            raise BtfError(f"{where}: {KIND_NAMES[kind]} data ({n} bytes) runs past the "
                           "type section")

    kw: dict = {}
    if kind in _REF_KINDS:
        kw["type"] = st
    else:
        kw["size"] = st
    if kind == INT:
        need(4)
        v = struct.unpack_from(e + "I", data, pos)[0]
        pos += 4
        kw.update(encoding=(v >> 24) & 0xF, bit_offset=(v >> 16) & 0xFF, bits=v & 0xFF)
    elif kind == ARRAY:
        need(12)
        et, it, ne = struct.unpack_from(e + "III", data, pos)
        pos += 12
        kw.update(type=et, index_type=it, nelems=ne)
    elif kind in (STRUCT, UNION):
        need(12 * vlen)
        ms = []
        for i in range(vlen):
            mn, mt, mo = struct.unpack_from(e + "III", data, pos + 12 * i)
            if kflag:
                ms.append(BtfMember(_str(strings, mn, where), mt, mo & 0xFFFFFF, mo >> 24))
            else:
                ms.append(BtfMember(_str(strings, mn, where), mt, mo))
        pos += 12 * vlen
        kw["members"] = tuple(ms)
    elif kind == ENUM:
        need(8 * vlen)
        fmt = e + ("Ii" if kflag else "II")
        kw["members"] = tuple(
            BtfMember(_str(strings, mn, where), value=v)
            for mn, v in (struct.unpack_from(fmt, data, pos + 8 * i) for i in range(vlen)))
        pos += 8 * vlen
    elif kind == ENUM64:
        need(12 * vlen)
        ms = []
        for i in range(vlen):
            mn, lo, hi = struct.unpack_from(e + "III", data, pos + 12 * i)
            v = lo | hi << 32
            if kflag and v >> 63:
                v -= 1 << 64
            ms.append(BtfMember(_str(strings, mn, where), value=v))
        pos += 12 * vlen
        kw["members"] = tuple(ms)
    elif kind == FUNC_PROTO:
        need(8 * vlen)
        kw["members"] = tuple(
            BtfMember(_str(strings, mn, where), mt)
            for mn, mt in (struct.unpack_from(e + "II", data, pos + 8 * i) for i in range(vlen)))
        pos += 8 * vlen
    elif kind == VAR:
        need(4)
        kw["linkage"] = struct.unpack_from(e + "I", data, pos)[0]
        pos += 4
    elif kind == DATASEC:
        need(12 * vlen)
        kw["members"] = tuple(
            BtfMember("", vt, off, size=sz)
            for vt, off, sz in (struct.unpack_from(e + "III", data, pos + 12 * i)
                                for i in range(vlen)))
        pos += 12 * vlen
    elif kind == DECL_TAG:
        need(4)
        kw["component_idx"] = struct.unpack_from(e + "i", data, pos)[0]
        pos += 4
    elif kind == FUNC:
        kw["linkage"] = vlen
    return BtfType(tid, kind, name, kflag, **kw), pos


# --- .BTF.ext ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FuncInfo:
    insn_off: int            # byte offset in the section
    type_id: int             # a FUNC type


@dataclass(frozen=True, slots=True)
class LineInfo:
    insn_off: int
    file: str
    line_text: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class CoreReloc:
    insn_off: int
    type_id: int
    access: str              # e.g. "0:1:0"
    kind: int

    @property
    def kind_name(self) -> str:
        return CORE_RELO_KINDS.get(self.kind, f"kind {self.kind}")


@dataclass(frozen=True, slots=True)
class BtfExt:
    """Records per ELF section name."""
    func_info: dict[str, tuple[FuncInfo, ...]]
    line_info: dict[str, tuple[LineInfo, ...]]
    core_relocs: dict[str, tuple[CoreReloc, ...]]


def parse_btf_ext(data: bytes, strings: bytes, byteorder: str = "little",
                  section: str = ".BTF.ext") -> BtfExt:
    """Parse `.BTF.ext`; `strings` is the string section of the object's `.BTF`
    (its names refer there), as libbpf's btf_ext__new does."""
    data = bytes(data)
    e = _unpacker(byteorder)
    if len(data) < 8:
        raise BtfError(f"{section}: {len(data)} bytes, too short for a header")
    magic, version, _flags, hdr_len = struct.unpack_from(e + "HBBI", data, 0)
    if magic != BTF_MAGIC:
        raise BtfError(f"{section}: offset 0: bad magic {data[:2].hex()}")
    if version != 1:
        raise BtfError(f"{section}: offset 2: unsupported version {version}")
    if hdr_len < 24 or hdr_len > len(data):
        raise BtfError(f"{section}: offset 4: bad header length {hdr_len}")
    fi_off, fi_len, li_off, li_len = struct.unpack_from(e + "IIII", data, 8)
    co_off = co_len = 0
    if hdr_len >= 32:
        co_off, co_len = struct.unpack_from(e + "II", data, 24)

    def records(off: int, length: int, what: str, min_rec: int):
        """(section name, [record bytes]) per btf_ext_info_sec (libbpf
        btf_ext_setup_info)."""
        out: dict[str, list[bytes]] = {}
        if length == 0:
            return out
        start = hdr_len + off
        stop = start + length
        if stop > len(data) or length < 4:
            raise BtfError(f"{section}: {what} [{start}, +{length}) runs past the data")
        rec = struct.unpack_from(e + "I", data, start)[0]
        if rec < min_rec or rec % 4:
            raise BtfError(f"{section}: offset {start}: {what} record size {rec} "
                           f"(at least {min_rec}, multiple of 4)")
        pos = start + 4
        while pos < stop:
            if pos + 8 > stop:
                raise BtfError(f"{section}: offset {pos}: truncated {what} section header")
            name_off, num = struct.unpack_from(e + "II", data, pos)
            name = _str(strings, name_off, f"{section}: offset {pos}")
            pos += 8
            if num == 0 or pos + num * rec > stop:
                raise BtfError(f"{section}: offset {pos}: {what} of {name!r}: {num} records "
                               f"of {rec} bytes do not fit")
            out.setdefault(name, []).extend(data[pos + i * rec:pos + (i + 1) * rec]
                                            for i in range(num))
            pos += num * rec
        return out

    fi = {n: tuple(FuncInfo(*struct.unpack_from(e + "II", r)) for r in rs)
          for n, rs in records(fi_off, fi_len, "func info", 8).items()}
    li = {}
    for n, rs in records(li_off, li_len, "line info", 16).items():
        out = []
        for r in rs:
            off, fname, lname, lc = struct.unpack_from(e + "IIII", r)
            where = f"{section}: line info of {n!r}"
            out.append(LineInfo(off, _str(strings, fname, where), _str(strings, lname, where),
                                lc >> 10, lc & 0x3FF))
        li[n] = tuple(out)
    co = {}
    for n, rs in records(co_off, co_len, "CO-RE relocation", 16).items():
        out = []
        for r in rs:
            off, tid, acc, kind = struct.unpack_from(e + "IIII", r)
            out.append(CoreReloc(off, tid, _str(strings, acc, f"{section}: CO-RE of {n!r}"),
                                 kind))
        co[n] = tuple(out)
    return BtfExt(fi, li, co)


# --- values as bpftool shows them ---------------------------------------------------

def dump_value(b: Btf, tid: int, data: bytes, byteorder: str | None = None):
    """A map key or value decoded through its BTF type into JSON-ready data, in the
    shape of `bpftool -j map dump`'s "formatted" member (tools/bpf/bpftool/
    btf_dumper.c): integers as numbers; bitfields and 128-bit integers as "0x.."
    strings; _Bool as true/false; CHAR-encoded ints as one-character strings; char arrays holding
    a NUL-terminated printable string as that string; pointers as numbers; an enum
    value as its name when one matches, else the number; structs and unions as
    objects; arrays as lists; VAR as {name: value}; DATASEC as {name: [vars]}.
    Checked against bpftool 7.x in tests/test_elf_kernel.py.
    Kinds bpftool cannot print (FLOAT, FWD, FUNC ...) raise UnsupportedError."""
    bo = byteorder or b.byteorder
    return _dump(b, tid, bytes(data), 0, bo, 0)


def _uint(data: bytes, size: int, bo: str) -> int:
    chunk = data[:size]
    if len(chunk) < size:      # a value shorter than its type: what is missing reads 0
        chunk = chunk + bytes(size - len(chunk)) if bo == "little" else \
            bytes(size - len(chunk)) + chunk
    return int.from_bytes(chunk, bo)


def _sint(data: bytes, size: int, bo: str) -> int:
    v = _uint(data, size, bo)
    return v - (1 << (8 * size)) if v >> (8 * size - 1) else v


def _bits(data: bytes, bit_offset: int, nbits: int, bo: str) -> str:
    # btf_dumper_bitfield: the bits [bit_offset, bit_offset + nbits) of the bytes at
    # data, counted from the least significant bit on little-endian machines
    nbytes = (bit_offset + nbits + 7) // 8
    v = _uint(data, nbytes, bo)
    if bo == "little":
        v >>= bit_offset
    else:
        v >>= 8 * nbytes - bit_offset - nbits
    return f"0x{v & ((1 << nbits) - 1):x}"


def _dump(b: Btf, tid: int, data: bytes, bit_offset: int, bo: str, depth: int):
    from ..errors import UnsupportedError
    if depth > 64:
        raise BtfError(f"BTF type {tid}: nesting deeper than 64")
    t = b.type(tid)
    k = t.kind
    if k in _MODIFIERS:
        r = b.resolve(tid)
        return _dump(b, r.id, data, bit_offset, bo, depth + 1)
    if k == INT:
        if bit_offset or t.bit_offset or t.bits % 8:
            total = bit_offset + t.bit_offset
            return _bits(data[total // 8:], total % 8, t.bits, bo)
        if t.bits == 128:
            return f"0x{_uint(data, 16, bo):x}"
        nb = t.bits // 8
        if t.encoding == 0:
            return _uint(data, nb, bo) if nb in (1, 2, 4, 8) else _bits(data, 0, t.bits, bo)
        if t.encoding == BTF_INT_SIGNED:
            return _sint(data, nb, bo) if nb in (1, 2, 4, 8) else _bits(data, 0, t.bits, bo)
        if t.encoding == BTF_INT_CHAR:
            return chr(data[0] if data else 0)
        if t.encoding == BTF_INT_BOOL:
            # this machine's bpftool (7.x) reads the _Bool's own bytes (older ones
            # read an int, taking the 3 bytes after it too)
            return _uint(data, nb, bo) != 0
        raise BtfError(f"BTF type {tid}: INT encoding {t.encoding}")
    if k == PTR:
        return _uint(data, 8, bo)
    if k in (ENUM, ENUM64):
        if k == ENUM:
            v = _sint(data, t.size, bo) if t.size in (1, 2, 4, 8) else None
            if v is None:
                raise BtfError(f"BTF type {tid}: enum of size {t.size}")
            # enums[i].val is a __s32 whatever the kind_flag says
            for m in t.members:
                mv = m.value if m.value < (1 << 31) else m.value - (1 << 32)
                if v == mv:
                    return m.name
            return v
        v = _uint(data, 8, bo)
        for m in t.members:
            if v == m.value & ((1 << 64) - 1):
                return m.name
        return v - (1 << 64) if v >> 63 else v
    if k in (STRUCT, UNION):
        out = {}
        for m in t.members:
            sub = data[m.offset // 8:]
            if m.bitfield_size:
                out[m.name] = _bits(sub, m.offset % 8, m.bitfield_size, bo)
            else:
                out[m.name] = _dump(b, m.type, sub, m.offset % 8, bo, depth + 1)
        return out
    if k == ARRAY:
        elem = b.type(t.type)
        e = elem
        while e.kind in (VOLATILE, CONST, RESTRICT, TYPE_TAG):   # not typedefs
            e = b.type(e.type)
        if t.nelems and e.kind == INT and e.size == 1 and \
                (e.encoding == BTF_INT_CHAR or e.name == "char"):
            # is_str_array: printable characters up to a NUL inside the array
            chunk = data[:t.nelems]
            end = chunk.find(b"\0")
            if end >= 0 and all(0x1F < c < 0x7F for c in chunk[:end]):
                return chunk[:end].decode("ascii")
        size = b.size_of(t.type)
        return [_dump(b, t.type, data[i * size:], 0, bo, depth + 1) for i in range(t.nelems)]
    if k == VAR:
        return {t.name: _dump(b, t.type, data, bit_offset, bo, depth + 1)}
    if k == DATASEC:
        return {t.name: [_dump(b, m.type, data[m.offset:], 0, bo, depth + 1)
                         for m in t.members]}
    raise UnsupportedError(f"printing BTF kind {KIND_NAMES.get(k, k)} in a map dump",
                           f"type {tid}")
