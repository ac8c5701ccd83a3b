"""CO-RE (compile once, run everywhere) relocations, as libbpf applies them
(tools/lib/bpf/relo_core.c: bpf_core_calc_relo_insn, bpf_core_patch_insn) -- for the
field and type kinds whose value depends only on type layout:

  field_byte_offset, field_byte_size, field_exists, type_exists, type_size

The local access (type id + access string "0:1:2" from .BTF.ext) is walked in the
object's BTF; the same path is walked *by member name* in every target type with the
same kind and essential name (the name without a "___suffix"), anonymous struct/union
members searched through as libbpf's bpf_core_match_member does.  All candidates must
agree, as libbpf demands.  The instruction is then checked to hold the local value
(libbpf refuses "unexpected insn" otherwise) and patched: ALU imm, LDX/ST/STX off, or
lddw imm.  Bitfields, enum values and type ids are refused (UnsupportedError), never
guessed."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import BpfError, UnsupportedError
from . import btf as _btf
from . import isa

__all__ = ["CoreError", "core_value", "patch_insn"]

SUPPORTED = {0: "field_byte_offset", 1: "field_byte_size", 2: "field_exists",
             8: "type_exists", 9: "type_size"}


class CoreError(BpfError):
    """A CO-RE relocation that cannot be resolved against the target BTF."""


@dataclass(frozen=True, slots=True)
class _Spec:
    root: int                    # resolved root type id
    path: tuple[tuple[str, str | int], ...]   # ("m", member name) | ("a", index)
    bit_offset: int
    field_type: int              # type id of the accessed field (unresolved)


def _essential(name: str) -> str:
    i = name.find("___")
    return name[:i] if i > 0 else name


def _local_spec(b: _btf.Btf, type_id: int, access: str, where: str) -> _Spec:
    try:
        idx = [int(x) for x in access.split(":")]
    except ValueError:
        raise CoreError(f"{where}: bad CO-RE access string {access!r}") from None
    root = b.resolve(type_id)
    bits = idx[0] * b.size_of(root.id) * 8
    t, tid, path = root, root.id, []
    for i in idx[1:]:
        if t.kind in (_btf.STRUCT, _btf.UNION):
            if not 0 <= i < len(t.members):
                raise CoreError(f"{where}: member {i} of {b.type_name(t.id)} out of range")
            m = t.members[i]
            if m.bitfield_size:
                raise UnsupportedError("CO-RE relocations of bitfields", where)
            bits += m.offset
            path.append(("m", m.name))
            tid = m.type
        elif t.kind == _btf.ARRAY:
            bits += i * b.size_of(t.type) * 8
            path.append(("a", i))
            tid = t.type
        else:
            raise CoreError(f"{where}: access {access!r} goes into a "
                            f"{t.kind_name}, not a struct, union or array")
        t = b.resolve(tid)
    return _Spec(root.id, tuple(path), bits, tid)


def _find_member(b: _btf.Btf, t: _btf.BtfType, name: str, depth: int = 0):
    """(bit offset, member type) of `name` in t, looking inside anonymous members."""
    for m in t.members:
        if m.name == name:
            return m.offset, m.type, m.bitfield_size
        if not m.name and depth < 32:
            inner = b.resolve(m.type)
            if inner.kind in (_btf.STRUCT, _btf.UNION):
                r = _find_member(b, inner, name, depth + 1)
                if r is not None:
                    return m.offset + r[0], r[1], r[2]
    return None


def _target_spec(b: _btf.Btf, cand: _btf.BtfType, local: _Spec, where: str):
    bits, t, tid = 0, cand, cand.id
    for kind, key in local.path:
        if kind == "m":
            if t.kind not in (_btf.STRUCT, _btf.UNION):
                return None
            r = _find_member(b, t, key)
            if r is None:
                return None
            off, tid, bf = r
            if bf:
                raise UnsupportedError("CO-RE relocations of bitfields", where)
            bits += off
        else:
            if t.kind != _btf.ARRAY:
                return None
            bits += key * b.size_of(t.type) * 8
            tid = t.type
        t = b.resolve(tid)
    return bits, tid


def core_value(local: _btf.Btf, target: _btf.Btf, reloc: _btf.CoreReloc,
               where: str) -> tuple[int, int]:
    """(local value, target value) of one relocation."""
    kind = reloc.kind
    if kind not in SUPPORTED:
        raise UnsupportedError(f"CO-RE relocation kind {reloc.kind_name}", where)
    lroot = local.resolve(reloc.type_id)
    cands = [t for t in target.types
             if t.kind == lroot.kind and t.name and
             _essential(t.name) == _essential(lroot.name)]
    if kind in (8, 9):
        lval = 1 if kind == 8 else local.size_of(lroot.id)
        vals = {1 if kind == 8 else target.size_of(c.id) for c in cands}
        if not cands:
            if kind == 8:
                return lval, 0
            raise CoreError(f"{where}: no type {lroot.name!r} in the target BTF")
    else:
        spec = _local_spec(local, reloc.type_id, reloc.access, where)
        lval = {0: spec.bit_offset // 8, 1: local.size_of(spec.field_type), 2: 1}[kind]
        vals = set()
        for c in cands:
            r = _target_spec(target, c, spec, where)
            if r is None:
                continue
            bits, ftid = r
            vals.add({0: bits // 8, 1: target.size_of(ftid), 2: 1}[kind])
        if not vals:
            if kind == 2:
                return lval, 0
            raise CoreError(f"{where}: {lroot.name!r} access {reloc.access} "
                            f"({'.'.join(str(k) for _, k in spec.path)}) has no match "
                            "in the target BTF")
    if len(vals) != 1:
        raise CoreError(f"{where}: {len(vals)} target types named {lroot.name!r} give "
                        f"different {reloc.kind_name} values {sorted(vals)}")
    return lval, vals.pop()


def patch_insn(code: bytearray, pos: int, lval: int, tval: int, bo: str, where: str):
    """bpf_core_patch_insn for the value kinds: the instruction must hold `lval`."""
    e = "<" if bo == "little" else ">"
    opcode = code[pos]
    cls = opcode & 7
    if cls in (isa.BPF_ALU, isa.BPF_ALU64) and not opcode & isa.BPF_X:
        field, fmt = 4, "i"
    elif cls in (isa.BPF_LDX, isa.BPF_ST, isa.BPF_STX) and opcode & 0xE0 in \
            (isa.BPF_MEM, isa.BPF_MEMSX):
        field, fmt = 2, "h"
    elif opcode == isa.LDDW:
        field, fmt = 4, "i"
    else:
        raise CoreError(f"{where}: CO-RE relocation on instruction opcode 0x{opcode:02x}")
    cur = struct.unpack_from(e + fmt, code, pos + field)[0]
    if cur != lval:
        raise CoreError(f"{where}: instruction holds {cur}, the local CO-RE value is "
                        f"{lval}")
    lim = 0x7FFF if fmt == "h" else 0x7FFFFFFF
    if not -lim - 1 <= tval <= lim:
        raise CoreError(f"{where}: CO-RE value {tval} does not fit the instruction")
    struct.pack_into(e + fmt, code, pos + field, tval)
    if opcode == isa.LDDW:
        struct.pack_into(e + "i", code, pos + 12, 0)
