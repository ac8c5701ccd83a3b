"""BTF parsing (bpfkit.ebpf.btf) against `bpftool btf dump file OBJ format raw -j`
(libbpf's parser) on clang-built objects: every type of every object, field by field.
Then .BTF.ext func info against the ELF symbols, ENUM64 (which clang 14 does not emit)
on a blob built here from the uapi layout, and malformed blobs: only BtfError."""
from __future__ import annotations

import json
import random
import struct
import subprocess

import pytest

from bpfkit.ebpf import btf
from bpfkit.ebpf.btf import BtfError, parse_btf, parse_btf_ext
from bpfkit.ebpf.elf import open_elf
from bpfkit.errors import BpfError
from test_elf_load import OBJECTS, build_object, symbol_values

pytestmark = pytest.mark.clang

ENCODINGS = {0: "(none)", btf.BTF_INT_SIGNED: "SIGNED", btf.BTF_INT_CHAR: "CHAR",
             btf.BTF_INT_BOOL: "BOOL"}
LINKAGE = {0: "static", 1: "global", 2: "extern"}


def bpftool_types(obj) -> list[dict]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(obj), "format", "raw", "-j"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)["types"]


def as_bpftool(b: btf.Btf, t: btf.BtfType) -> dict:
    """Our type in bpftool's raw JSON shape (tools/bpf/bpftool/btf.c dump_btf_type)."""
    d = {"id": t.id, "kind": t.kind_name, "name": t.name or "(anon)"}
    k = t.kind
    if k == btf.INT:
        d.update(size=t.size, bits_offset=t.bit_offset, nr_bits=t.bits,
                 encoding=ENCODINGS.get(t.encoding, "UNKN"))
    elif k in (btf.PTR, btf.CONST, btf.VOLATILE, btf.RESTRICT, btf.TYPEDEF, btf.TYPE_TAG):
        d.update(type_id=t.type)
    elif k == btf.ARRAY:
        d.update(type_id=t.type, index_type_id=t.index_type, nr_elems=t.nelems)
    elif k in (btf.STRUCT, btf.UNION):
        ms = []
        for m in t.members:
            md = {"name": m.name or "(anon)", "type_id": m.type, "bits_offset": m.offset}
            if m.bitfield_size:
                md["bitfield_size"] = m.bitfield_size
            ms.append(md)
        d.update(size=t.size, vlen=len(t.members), members=ms)
    elif k == btf.ENUM:
        # bpftool prints an unsigned enum's s32 `val` through a u64 parameter, so -1
        # shows as 2**64-1; we keep the u32 the kind_flag=0 encoding means
        d.update(encoding="SIGNED" if t.kind_flag else "UNSIGNED", size=t.size,
                 vlen=len(t.members),
                 values=[{"name": m.name, "val": m.value} for m in t.members])
    elif k == btf.FWD:
        d.update(fwd_kind="union" if t.kind_flag else "struct")
    elif k == btf.FUNC:
        d.update(type_id=t.type, linkage=LINKAGE[t.linkage])
    elif k == btf.FUNC_PROTO:
        d.update(ret_type_id=t.type, vlen=len(t.members),
                 params=[{"name": m.name or "(anon)", "type_id": m.type} for m in t.members])
    elif k == btf.VAR:
        d.update(type_id=t.type, linkage=LINKAGE[t.linkage])
    elif k == btf.DATASEC:
        d.update(size=t.size, vlen=len(t.members),
                 vars=[{"type_id": m.type, "offset": m.offset, "size": m.size}
                       for m in t.members])
    elif k == btf.FLOAT:
        d.update(size=t.size)
    elif k == btf.DECL_TAG:
        d.update(type_id=t.type, component_idx=t.component_idx)
    return d


def _bpftool_fixup(d: dict) -> dict:
    if d["kind"] == "ENUM" and d["encoding"] == "UNSIGNED":
        d = dict(d, values=[dict(v, val=v["val"] & 0xFFFFFFFF) for v in d["values"]])
    return d


@pytest.mark.parametrize("stem", OBJECTS)
def test_every_type_matches_bpftool(stem):
    obj = build_object(stem)
    o = open_elf(obj)
    theirs = [_bpftool_fixup(d) for d in bpftool_types(obj)]
    ours = [as_bpftool(o.btf, t) for t in o.btf.types[1:]]
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs):
        assert a == b


def test_all_clang_kinds_are_covered():
    o = open_elf(build_object("btf_kinds"))
    kinds = {t.kind for t in o.btf.types[1:]}
    # every kind but ENUM64 (clang >= 15), which test_enum64 builds by hand
    assert kinds == set(btf.KIND_NAMES) - {btf.ENUM64}


@pytest.mark.parametrize("name, c_name, size", [
    # sizes from the C declarations in btf_kinds.c (see test_elf_load's EXPECT)
    ("bits_var", "struct bits", 88),
    ("config_word", "const volatile u64_t", 8),
    ("counter", "int", 4),
])
def test_names_and_sizes(name, c_name, size):
    o = open_elf(build_object("btf_kinds"))
    var = o.btf.find(name, btf.VAR)
    assert o.btf.type_name(var.type) == c_name
    assert o.btf.size_of(var.type) == size


def test_type_names():
    o = open_elf(build_object("btf_kinds"))
    b = o.btf
    bits = b.find("bits", btf.STRUCT)
    names = {m.name: b.type_name(m.type) for m in bits.members}
    assert names["name"] == "char[2][3]"
    assert names["fwd"] == "struct opaque *"
    assert names["fwd_u"] == "union opaque_u *"
    assert names["col"] == "enum color"
    assert names["tagged"] == "int *"
    assert b.size_of(next(m.type for m in bits.members if m.name == "name")) == 6


def test_func_info_names_the_functions():
    """.BTF.ext func info: per section, each record's offset is the address of the
    function whose FUNC type it names (llvm-nm)."""
    for stem in OBJECTS:
        obj = build_object(stem)
        o = open_elf(obj)
        addr = symbol_values(obj)
        n = 0
        for sec, recs in o.btf_ext.func_info.items():
            for r in recs:
                f = o.btf.type(r.type_id)
                assert f.kind == btf.FUNC
                assert addr[f.name] == r.insn_off, (stem, sec, f.name)
                n += 1
        assert n >= len(o.programs)


def _blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_enum64():
    # struct btf_type {name_off, info = kind << 24 | kind_flag << 31 | vlen, size}, then
    # vlen * struct btf_enum64 {name_off, val_lo32, val_hi32} (include/uapi/linux/btf.h)
    strings = b"\0e\0A\0B\0"
    t = struct.pack("<III", 1, (btf.ENUM64 << 24) | (1 << 31) | 2, 8)
    t += struct.pack("<III", 3, 0, 1 << 8)            # A = 1 << 40
    t += struct.pack("<III", 5, 0xFFFFFFFF, 0xFFFFFFFF)  # B = -1 (kind_flag: signed)
    b = parse_btf(_blob(t, strings))
    e = b.type(1)
    assert (e.kind_name, e.name, e.size) == ("ENUM64", "e", 8)
    assert [(m.name, m.value) for m in e.members] == [("A", 1 << 40), ("B", -1)]
    assert b.type_name(1) == "enum e" and b.size_of(1) == 8


@pytest.mark.parametrize("blob, match", [
    (b"", "too short"),
    (b"\x9f\xeb" + bytes(22), "unsupported BTF version 0"),
    (b"\x00\x00\x01\x00" + bytes(20), "bad magic"),
    (_blob(struct.pack("<III", 0, 30 << 24, 0), b"\0"), "unknown kind 30"),
    (_blob(struct.pack("<III", 9, 1 << 24, 4), b"\0"), "string offset 9"),
    (_blob(struct.pack("<III", 0, 2 << 24, 5), b"\0"), "refers to type id 5"),
    (_blob(struct.pack("<III", 0, (4 << 24) | 3, 4), b"\0"), "runs past the type section"),
    (_blob(struct.pack("<III", 0, 8 << 24, 1), b"\0"), "modifier chain"),
])
def test_malformed_btf(blob, match):
    with pytest.raises(BtfError, match=match):
        b = parse_btf(blob)
        b.resolve(1)          # the self-referencing typedef only fails when resolved


def test_mutated_btf_only_raises_btf_errors():
    """Every truncation and 3000 random byte mutations of real BTF and BTF.ext: the
    parsers and the queries on what they return raise nothing but BpfError."""
    o = open_elf(build_object("btf_kinds"))
    from elftools.elf.elffile import ELFFile
    with open(build_object("btf_kinds"), "rb") as fh:
        f = ELFFile(fh)
        raw = f.get_section_by_name(".BTF").data()
        ext = f.get_section_by_name(".BTF.ext").data()
    rng = random.Random(5)
    cases = [raw[:n] for n in range(0, len(raw), 7)]
    for _ in range(3000):
        m = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        cases.append(bytes(m))
    ok = 0
    for c in cases:
        try:
            b = parse_btf(c)
            for t in b.types:
                b.type_name(t.id)
                try:
                    b.size_of(t.id)
                except BtfError:
                    pass
            ok += 1
        except BpfError:
            pass
    assert 0 < ok < len(cases)
    for n in range(0, len(ext), 3):
        try:
            parse_btf_ext(ext[:n], o.btf.strings)
        except BpfError:
            pass
    for _ in range(2000):
        m = bytearray(ext)
        m[rng.randrange(len(m))] = rng.randrange(256)
        try:
            parse_btf_ext(bytes(m), o.btf.strings)
        except BpfError:
            pass


def test_core_relocation_records():
    """.BTF.ext CO-RE records of unsupported/core.c: `ctx->data_end - ctx->data` on a
    preserve_access_index struct gives two field_byte_offset (kind 0) relocations
    whose access strings are "0:1" (data_end, member 1) and "0:0" (data, member 0),
    against struct xdp_md___mine."""
    from elftools.elf.elffile import ELFFile
    with open(build_object("unsupported/core"), "rb") as fh:
        f = ELFFile(fh)
        b = parse_btf(f.get_section_by_name(".BTF").data())
        ext = parse_btf_ext(f.get_section_by_name(".BTF.ext").data(), b.strings)
    recs = ext.core_relocs["xdp"]
    assert sorted((r.access, r.kind_name, b.type(r.type_id).name) for r in recs) == [
        ("0:0", "field_byte_offset", "xdp_md___mine"),
        ("0:1", "field_byte_offset", "xdp_md___mine")]
    assert all(r.insn_off % 8 == 0 for r in recs)
