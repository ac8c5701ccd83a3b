"""What the ELF loader refuses, and how: objects using features bpfkit does not support
yet (tests/data/elf/unsupported/*.c) give UnsupportedError naming the feature and the
place; objects damaged at a chosen spot give an ElfError/BtfError naming section,
symbol and offset; and randomly mutated or truncated objects give nothing but
BpfError (and never hang)."""
from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from bpfkit.ebpf.btf import BtfError
from bpfkit.ebpf.elf import ElfError, load_elf, open_elf
from bpfkit.ebpf.elfinfo import describe
from bpfkit.ebpf.runner import Runner
from bpfkit.errors import BpfError, UnsupportedError, UsageError
from test_elf_load import OBJECTS, build_object

pytestmark = pytest.mark.clang


def build_unsupported(stem: str) -> Path:
    return build_object(f"unsupported/{stem}")


@pytest.mark.parametrize("stem, at_load, match", [
    ("data_pointer", True, r"unsupported: relocations in data sections \(pointers in "
                           r"global data\) \(section '\.data' offset 8\)"),
    ("kfunc", False, r"unsupported: calls to kernel functions \(kfuncs\) \(section 'xdp' "
                     r"offset 0 \(function 'kf'\): relocation R_BPF_64_32 against symbol "
                     r"'bpf_rcu_read_lock'\)"),
    ("core", False, r"unsupported: CO-RE relocations without a target BTF \(core_btf\) "
                    r"\(section 'xdp' offset \d+ \(function 'core'\)\)"),
    ("kconfig", False, r"unsupported: extern variables \(kconfig, ksym\) \(section 'xdp' "
                       r"offset 0 \(function 'kver'\): relocation R_BPF_64_64 against "
                       r"symbol 'LINUX_KERNEL_VERSION'\)"),
])
def test_unsupported_features(stem, at_load, match):
    obj = build_unsupported(stem)
    with pytest.raises(UnsupportedError, match=match):
        o = open_elf(obj)
        assert not at_load
        o.program()


def test_unmodelled_and_unknown_program_types():
    o = open_elf(build_unsupported("sections"))
    assert [(p.name, p.section, p.prog_type) for p in o.programs] == \
        [("classify", "tc", 3), ("custom", "mysection", None)]
    with pytest.raises(UnsupportedError, match=r"program type sched_cls .*'classify' in "
                                               r"section 'tc'"):
        o.program("classify")
    with pytest.raises(UsageError, match="section 'mysection' names no program type"):
        o.program("custom")
    assert o.program("custom", prog_type="xdp").prog_type == 6


# --- damage at a chosen place ---------------------------------------------------------

def _layout(raw: bytes):
    f = ELFFile(__import__("io").BytesIO(raw))
    secs = {s.name: (i, s.header) for i, s in enumerate(f.iter_sections())}
    shoff, shentsize = f.header["e_shoff"], f.header["e_shentsize"]
    return f, secs, shoff, shentsize


def _patch(raw: bytes, off: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def _reloc_entry(raw: bytes, section: str, n: int) -> int:
    _, secs, _, _ = _layout(raw)
    return secs[section][1]["sh_offset"] + 16 * n


def _reloc_of_type(raw: bytes, section: str, rtype: int) -> int:
    """File offset of the first relocation of `rtype` in `section`."""
    f, secs, _, _ = _layout(raw)
    for n, r in enumerate(f.get_section_by_name(section).iter_relocations()):
        if r["r_info_type"] == rtype:
            return secs[section][1]["sh_offset"] + 16 * n
    raise KeyError(rtype)


def _symbol_index(raw: bytes, name: str, stype: str = "STT_SECTION") -> int:
    f, _, _, _ = _layout(raw)
    for j, y in enumerate(f.get_section_by_name(".symtab").iter_symbols()):
        if y.name == name or (stype == "STT_SECTION" and y["st_info"]["type"] == stype
                              and f.get_section(y["st_shndx"]).name == name):
            return j
    raise KeyError(name)


def _symbol_entry(raw: bytes, name: str) -> int:
    f, secs, _, _ = _layout(raw)
    symtab = f.get_section_by_name(".symtab")
    for j, y in enumerate(symtab.iter_symbols()):
        if y.name == name:
            return secs[".symtab"][1]["sh_offset"] + 24 * j
    raise KeyError(name)


def _shdr(raw: bytes, section: str) -> int:
    _, secs, shoff, shentsize = _layout(raw)
    return shoff + shentsize * secs[section][0]


# each damage: (what, function raw -> damaged raw, error class, message regex, at load)
# xdp_flows.o's first relocation in .relxdp is the lddw of `seen` at xdp+48 (see
# llvm-objdump -dr; test_elf_load checks the relocation table against ours)
DAMAGE = [
    ("not ELF", lambda r: b"MZ" + r[2:], ElfError, "offset 0: not an ELF file", True),
    ("x86-64 machine", lambda r: _patch(r, 18, "<H", 62), ElfError,
     "not EM_BPF", True),
    ("truncated", lambda r: r[:len(r) // 2], ElfError, "malformed ELF: .*past EOF", True),
    ("relocation type ABS32 in code",
     lambda r: _patch(r, _reloc_entry(r, ".relxdp", 0) + 8, "<I", 3), ElfError,
     r"section 'xdp' offset 48 \(function 'xdp_flows'\): relocation R_BPF_64_ABS32 "
     r"against symbol 'seen': relocation type not supported in code", False),
    ("relocation on a non-lddw",
     lambda r: _patch(r, _reloc_entry(r, ".relxdp", 0), "<Q", 0), ElfError,
     r"section 'xdp' offset 0 .*'seen': not on an lddw instruction \(opcode 0x61\)", False),
    ("misaligned relocation",
     lambda r: _patch(r, _reloc_entry(r, ".relxdp", 0), "<Q", 50), ElfError,
     "section 'xdp' offset 50: relocation not on an instruction boundary", False),
    ("relocation symbol out of range",
     lambda r: _patch(r, _reloc_entry(r, ".relxdp", 0) + 12, "<I", 9999), ElfError,
     "symbol index 9999 out of range", False),
    # the call to parse_ports (R_BPF_64_32 against .text) redirected to the xdp section
    # symbol
    ("call relocation into a program section",
     lambda r: _patch(r, _reloc_of_type(r, ".relxdp", 10) + 12, "<I",
                      _symbol_index(r, "xdp")), ElfError,
     r"section 'xdp' offset \d+ \(function 'xdp_flows'\): relocation R_BPF_64_32 "
     r"against symbol 'xdp': call target is not in \.text", False),
    ("map symbol moved out of .maps",
     lambda r: _patch(r, _symbol_entry(r, "flows") + 6, "<H", 5), ElfError,
     r"section '\.maps': map 'flows' has no ELF symbol", True),
    ("truncated .BTF", lambda r: _patch(r, _shdr(r, ".BTF") + 32, "<Q", 30), BtfError,
     r"\.BTF: type section .* runs past", True),
    ("code section not whole instructions",
     lambda r: _patch(r, _shdr(r, "xdp") + 32, "<Q", 0x3e4), ElfError,
     "section 'xdp': size 996 is not a multiple of 8", True),
]


@pytest.mark.parametrize("what, damage, exc, match, at_load", DAMAGE,
                         ids=[d[0] for d in DAMAGE])
def test_damaged_object(what, damage, exc, match, at_load):
    raw = build_object("xdp_flows").read_bytes()
    bad = damage(raw)
    assert bad != raw
    if at_load:
        with pytest.raises(exc, match=match):
            load_elf(bad)
    else:
        o = load_elf(bad)
        with pytest.raises(exc, match=match):
            o.program()


# --- fuzz --------------------------------------------------------------------------------

def _exercise(raw: bytes) -> str:
    """Load, and use whatever loaded: every program as a Program and a Runner with its
    maps.  Returns 'ok' or the BpfError class name; anything else propagates."""
    try:
        o = load_elf(raw)
        describe(o)
        for m in o.maps:
            ks = m.spec.key_size if isinstance(m.spec.key_size, int) else 0
            o.format_entry(m.name, bytes(min(ks, 64)), bytes(min(m.spec.value_size, 4096)))
        for p in o.programs:
            try:
                prog = o.program(p.name, prog_type="xdp")
                Runner(prog, maps=o.create_maps())
            except BpfError:
                pass
        return "ok"
    except BpfError as e:
        return type(e).__name__


@pytest.mark.parametrize("stem", OBJECTS)
def test_mutated_objects_raise_only_bpf_errors(stem):
    """250 objects per source with 1-6 random bytes changed (half of them inside the
    ELF/section headers, symbol table and relocations, where damage matters most),
    and 40 truncations."""
    raw = build_object(stem).read_bytes()
    _, secs, shoff, shentsize = _layout(raw)
    hot = [(0, 64), (shoff, shentsize * len(secs))]
    for name, (_, h) in secs.items():
        if name == ".symtab" or name.startswith(".rel") and "debug" not in name \
                or name in (".BTF", ".maps", "maps"):
            hot.append((h["sh_offset"], h["sh_size"]))
    rng = random.Random(stem)
    outcomes: dict[str, int] = {}
    for k in range(250):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            if k % 2:
                start, size = rng.choice(hot)
                i = start + rng.randrange(max(size, 1))
            else:
                i = rng.randrange(len(b))
            if i < len(b):
                b[i] = rng.randrange(256)
        r = _exercise(bytes(b))
        outcomes[r] = outcomes.get(r, 0) + 1
    for n in sorted(rng.sample(range(len(raw)), 40)):
        r = _exercise(raw[:n])
        assert r != "ok" or n >= len(raw) - 64, n
        outcomes[r] = outcomes.get(r, 0) + 1
    # both kinds of outcome happen: mutations in unused bytes load, others are refused
    assert outcomes.get("ok", 0) > 0 and sum(v for k, v in outcomes.items() if k != "ok") > 0
