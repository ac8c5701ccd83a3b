"""CO-RE resolution rules on small target BTFs built here (no kernel): the object is
tests/data/elf/unsupported/core.c, whose program reads `data` (local member 0, offset
0) and `data_end` (member 1, offset 4) of `struct xdp_md___mine` (essential name
xdp_md).  Each target below says where those members are; the program's two context
loads must then use exactly those offsets, or loading must fail with CoreError."""
from __future__ import annotations

import pytest

from bpfkit.ebpf import isa
from bpfkit.ebpf.btf import INT, STRUCT, UNION, Btf, BtfMember, BtfType
from bpfkit.ebpf.core import CoreError
from bpfkit.ebpf.elf import open_elf
from test_elf_load import build_object

pytestmark = pytest.mark.clang

U32 = BtfType(1, INT, "unsigned int", size=4, bits=32)


def _target(*structs: tuple[str, list[tuple[str, int]]]) -> Btf:
    """A BTF with u32 as type 1 and one struct per (name, [(member, byte offset)])."""
    types = [BtfType(0, 0, ""), U32]
    for name, members in structs:
        ms = tuple(BtfMember(m, 1, off * 8) for m, off in members)
        types.append(BtfType(len(types), STRUCT, name, size=24, members=ms))
    return Btf(tuple(types), b"\0")


def _ctx_offsets(o) -> list[int]:
    """Offsets of the ctx loads (LDX W from r1) in program order."""
    return [i.off for i in o.program().insns
            if i.opcode == isa.BPF_LDX | isa.BPF_MEM | isa.BPF_W and i.src == 1]


@pytest.fixture(scope="module")
def obj():
    return build_object("unsupported/core")


def test_identity_and_moved_layouts(obj):
    same = open_elf(obj, core_btf=_target(("xdp_md", [("data", 0), ("data_end", 4)])))
    local = sorted(_ctx_offsets(same))
    assert local == [0, 4]
    # the program loads data then data_end or the other way round; map each load to
    # its member through the identity build, then check the moved layouts
    order = ["data" if off == 0 else "data_end" for off in _ctx_offsets(same)]
    for layout in ([("data", 8), ("data_end", 16)], [("data_end", 0), ("data", 12)],
                   [("x", 0), ("data_end", 20), ("data", 4)]):
        o = open_elf(obj, core_btf=_target(("xdp_md", layout)))
        want = dict(layout)
        assert _ctx_offsets(o) == [want[m] for m in order], layout


def test_flavour_suffix_and_anonymous_members(obj):
    # a ___flavour on the target name still matches; members found inside an
    # anonymous union count its offset too
    types = [BtfType(0, 0, ""), U32,
             BtfType(2, UNION, "", size=8, members=(BtfMember("data", 1, 0),
                                                  BtfMember("data_end", 1, 32))),
             BtfType(3, STRUCT, "xdp_md___v2", size=24,
                     members=(BtfMember("pad", 1, 0), BtfMember("", 2, 64)))]
    o = open_elf(obj, core_btf=Btf(tuple(types), b"\0"))
    same = open_elf(obj, core_btf=_target(("xdp_md", [("data", 0), ("data_end", 4)])))
    order = ["data" if off == 0 else "data_end" for off in _ctx_offsets(same)]
    want = {"data": 8, "data_end": 12}
    assert _ctx_offsets(o) == [want[m] for m in order]


@pytest.mark.parametrize("target, match", [
    (_target(("xdp_md", [("data", 0)])), "has no match in the target BTF"),
    (_target(("other", [("data", 0), ("data_end", 4)])), "has no match"),
    (_target(("xdp_md", [("data", 0), ("data_end", 4)]),
             ("xdp_md___b", [("data", 4), ("data_end", 0)])),
     "2 target types named 'xdp_md___mine' give different field_byte_offset values"),
])
def test_unresolvable(obj, target, match):
    o = open_elf(obj, core_btf=target)
    with pytest.raises(CoreError, match=match):
        o.program()
