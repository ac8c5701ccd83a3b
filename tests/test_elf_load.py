"""The ELF loader on clang-built objects (tests/data/elf/*.c, compiled at test time and
cached by content hash under /tmp): programs, types, subprogram linking, map
definitions, global data, licence -- checked against llvm-readelf/llvm-objdump (the
relocation table and the section bytes are the oracle for where maps are referenced
and what the code is) and against the C sources; then every program runs on the
reference interpreter over pcaps/sample.pcap without a fault.  The kernel comparison
of the same objects is tests/test_elf_kernel.py."""
from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from bpfkit.ebpf import isa
from bpfkit.ebpf.elf import (BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, open_elf,
                             prog_type_for_section)
from bpfkit.ebpf.maps import MapSpec
from bpfkit.ebpf.maps.consts import MapType
from bpfkit.ebpf.runner import run_capture
from bpfkit.pcap import open_capture
from bpfkit.errors import UnsupportedError, UsageError

pytestmark = pytest.mark.clang

ROOT = Path(__file__).resolve().parent.parent
SRC_DIR = Path(__file__).parent / "data" / "elf"
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CACHE = Path("/tmp/bpfkit-elf-cache")
CFLAGS = ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]
OBJECTS = sorted(p.stem for p in SRC_DIR.glob("*.c"))


def build_object(stem: str, extra: tuple[str, ...] = ()) -> Path:
    """Compile tests/data/elf/<stem>.c with clang; cached by a hash of the source,
    the flags and the clang version."""
    src = SRC_DIR / f"{stem}.c"
    version = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(src.read_bytes() + repr((CFLAGS, extra, version)).encode()).hexdigest()
    CACHE.mkdir(exist_ok=True)
    out = CACHE / f"{stem.replace('/', '_')}-{h[:16]}.o"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        subprocess.run(["clang", *CFLAGS, *extra, "-c", str(src), "-o", str(tmp)],
                       check=True, capture_output=True)
        tmp.rename(out)
    return out


def readelf_relocs(obj: Path) -> dict[str, list[tuple[int, str, str]]]:
    """llvm-readelf -r: section -> [(offset, type, symbol name)]."""
    out = subprocess.run(["llvm-readelf", "-r", str(obj)], check=True, capture_output=True,
                         text=True).stdout
    res: dict[str, list] = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"Relocation section '\.rel(.*)' at offset", line)
        if m:
            cur = res.setdefault(m.group(1), [])
            continue
        m = re.match(r"([0-9a-f]{16})\s+[0-9a-f]{16}\s+(R_BPF_\S+)\s+[0-9a-f]{16}\s+(\S+)", line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return res


def symbol_values(obj: Path) -> dict[str, int]:
    out = subprocess.run(["llvm-nm", "--defined-only", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (ln.split() for ln in out.splitlines())
            if len(parts) == 3}


def section_bytes(obj: Path, section: str, tmp_path: Path) -> bytes:
    raw = tmp_path / "sec.bin"
    subprocess.run(["llvm-objcopy", "-O", "binary", f"--only-section={section}", str(obj),
                    str(raw)], check=True, capture_output=True)
    return raw.read_bytes()


# What each source defines, written down from the C text: programs as (name, section,
# prog type, subprograms in call order), maps as (name, type, key, value, max_entries,
# flags), the licence.
EXPECT = {
    "xdp_flows": dict(
        programs=[("xdp_flows", "xdp", 6, ("parse_ports",))],
        maps=[("proto_count", MapType.PERCPU_ARRAY, 4, 8, 256, 0),
              ("flows", MapType.HASH, 16, 16, 256, 0),
              ("last_len", MapType.LRU_HASH, 4, 8, 64, 0),
              # 2-byte blocked_port at 0, 4-byte max_len at 4
              (".rodata", MapType.ARRAY, 4, 8, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG),
              # seen (8) and last_proto (4)
              (".bss", MapType.ARRAY, 4, 12, 1, BPF_F_MMAPABLE),
              (".data", MapType.ARRAY, 4, 4, 1, BPF_F_MMAPABLE)],
        license="GPL",
        key_types={"flows": ("struct flow_key", "struct flow_stats"),
                   "proto_count": ("__u32", "__u64"), "last_len": (None, None)}),
    "xdp_rewrite": dict(
        programs=[("xdp_rewrite", "xdp", 6, ("swap_macs", "dec_ttl", "csum_fold"))],
        # global-data maps in ELF section order (llvm-readelf -S)
        maps=[("ttl_seen", MapType.ARRAY, 4, 4, 8, 0),
              (".rodata", MapType.ARRAY, 4, 4, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG),
              (".data", MapType.ARRAY, 4, 16, 1, BPF_F_MMAPABLE),
              (".bss", MapType.ARRAY, 4, 16, 1, BPF_F_MMAPABLE)],
        license="GPL", key_types={"ttl_seen": ("__u32", "__u32")}),
    "socket_len": dict(
        programs=[("udp_only", "socket", 1, ())],
        maps=[("kept", MapType.ARRAY, 4, 8, 2, 0)],
        license="Dual BSD/GPL", key_types={"kept": ("__u32", "__u64")}),
    "btf_kinds": dict(
        programs=[("kinds", "socket", 1, ("helper",))],
        maps=[(".rodata", MapType.ARRAY, 4, 8, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG),
              (".data", MapType.ARRAY, 4, 4, 1, BPF_F_MMAPABLE),
              # struct bits: 4 (bitfields) + 1 + 6 + 1 pad + 2 (union) + 2 pad + 6 pointers
              # and enums of 8 + long long + signed char (+7 pad) + 2 pointers = 88
              (".bss", MapType.ARRAY, 4, 88, 1, BPF_F_MMAPABLE)],
        license="GPL", key_types={}),
    "loops": dict(
        # the bpf_loop callback is appended like a called subprogram
        programs=[("loops", "xdp", 6, ("step",))],
        maps=[("sums", MapType.ARRAY, 4, 8, 16, 0)],
        license="GPL", key_types={"sums": ("__u32", "__u64")}),
    "xdp_vlan": dict(
        programs=[("xdp_vlan", "xdp", 6, ())],
        maps=[("actions", MapType.ARRAY, 4, 8, 4, 0),
              (".rodata", MapType.ARRAY, 4, 2, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG)],
        license="GPL", key_types={"actions": ("__u32", "__u64")}),
    "elf_map_iproute2": dict(
        programs=[("count_proto", "xdp", 6, ())],
        maps=[("proto_hits", MapType.PERCPU_HASH, 2, 8, 64, 0)],
        license="GPL", key_types={}),
    "printk": dict(
        programs=[("printk", "socket", 1, ())],
        # the two format strings with their NULs: 21 + 17 bytes
        maps=[("calls", MapType.ARRAY, 4, 8, 1, 0),
              (".rodata", MapType.ARRAY, 4, 38, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG)],
        license="GPL", key_types={"calls": ("__u32", "__u64")}),
    "tailcall": dict(
        programs=[("tail_drop", "xdp", 6, ()), ("tail_count", "xdp", 6, ()),
                  ("entry", "xdp", 6, ())],
        # .maps in BTF DATASEC order (as libbpf walks it): clang lists jmp first
        maps=[("jmp", MapType.PROG_ARRAY, 4, 4, 4, 0),
              ("hits", MapType.ARRAY, 4, 8, 4, 0)],
        license="GPL", key_types={"hits": ("__u32", "__u64")}),
    "ringbuf": dict(
        programs=[("rb", "xdp", 6, ())],
        maps=[("events", MapType.RINGBUF, 0, 0, 4096, 0),
              ("stats", MapType.ARRAY, 4, 8, 3, 0)],
        license="GPL", key_types={"stats": ("__u32", "__u64")}),
    "map_in_map": dict(
        programs=[("map_in_map", "xdp", 6, ())],
        # .maps in BTF DATASEC order (clang: source order here); the outer maps'
        # values are 4-byte map fds (libbpf parse_btf_map_def for `values`)
        maps=[("inner_even", MapType.ARRAY, 4, 16, 4, 0),
              ("inner_odd", MapType.ARRAY, 4, 16, 4, 0),
              ("outer", MapType.ARRAY_OF_MAPS, 4, 4, 4, 0),
              ("by_key", MapType.HASH_OF_MAPS, 4, 4, 8, 0)],
        license="GPL", key_types={"inner_odd": ("__u32", "struct cell"),
                                  "outer": ("__u32", None), "by_key": ("__u32", None)}),
    "legacy_maps": dict(
        programs=[("count_bytes", "xdp", 6, ()), ("drop_small", "xdp", 6, ())],
        maps=[("byte_count", MapType.ARRAY, 4, 8, 4, 0),
              ("len_hist", MapType.HASH, 4, 8, 128, 0)],
        license="GPL", key_types={}),
}


def test_every_source_has_expectations():
    assert sorted(EXPECT) == OBJECTS


@pytest.fixture(scope="module", params=OBJECTS)
def loaded(request):
    obj = build_object(request.param)
    return request.param, obj, open_elf(obj)


def test_programs_maps_license(loaded):
    stem, _, o = loaded
    exp = EXPECT[stem]
    assert [(p.name, p.section, p.prog_type, p.subprograms) for p in o.programs] == \
        exp["programs"]
    assert [(m.name, m.spec.type, m.spec.key_size, m.spec.value_size, m.spec.max_entries,
             m.spec.flags) for m in o.maps] == exp["maps"]
    assert o.license == exp["license"]
    for name, (kt, vt) in exp["key_types"].items():
        m = next(x for x in o.maps if x.name == name)
        assert (m.key_type, m.value_type) == (kt, vt)


def test_code_and_relocations_match_the_object(loaded, tmp_path):
    """The linked program starts with its section's bytes, changed only at the lddw
    slots llvm-readelf lists as R_BPF_64_64 (now naming the map of that symbol) and
    the call slots listed as R_BPF_64_32; subprograms follow at func_starts."""
    stem, obj, o = loaded
    relocs = readelf_relocs(obj)
    for p in o.programs:
        raw = section_bytes(obj, p.section, tmp_path)
        sec_insns = isa.decode(raw)
        slots = isa.slot_indices(sec_insns)
        # this program's function within its section (llvm-nm's symbol value)
        start = symbol_values(obj)[p.name] // 8
        prog = o.program(p.name)
        main_len = p.func_starts[1] if len(p.func_starts) > 1 else \
            sum(i.slots for i in p.insns)
        by_off = {off: (typ, sym) for off, typ, sym in relocs.get(p.section, [])}
        ours = list(zip(isa.slot_indices(p.insns), p.insns))
        theirs = {s: i for s, i in zip(slots, sec_insns)}
        checked = 0
        for slot, insn in ours:
            if slot >= main_len:
                break
            orig = theirs[start + slot]
            r = by_off.get((start + slot) * 8)
            if r is None:
                assert insn == orig, (stem, slot)
                continue
            typ, sym = r
            checked += 1
            if typ == "R_BPF_64_32":
                assert insn.opcode == orig.opcode and insn.src == isa.BPF_PSEUDO_CALL
                target = slot + 1 + insn.imm
                assert target in p.func_starts[1:]
            elif insn.src == isa.BPF_PSEUDO_FUNC:
                # a callback's address: the slot after this lddw's two + imm - 1
                assert typ == "R_BPF_64_64" and slot + 1 + insn.imm in p.func_starts[1:]
            else:
                assert typ == "R_BPF_64_64" and insn.opcode == isa.LDDW
                m = prog.maps[insn.imm & 0xFFFFFFFF]
                if insn.src == isa.BPF_PSEUDO_MAP_IDX:
                    assert m.name == sym
                else:
                    assert insn.src == isa.BPF_PSEUDO_MAP_IDX_VALUE
                    v = {x.name: x for x in o.variables().values()}
                    # a named variable: its offset; a section symbol: the section's map
                    assert (sym in v and v[sym].section == m.name
                            and insn.imm >> 32 == v[sym].offset + (orig.imm & 0xFFFFFFFF)) \
                        or sym == m.name
        assert checked == len([1 for off, _, _ in relocs.get(p.section, [])
                               if start * 8 <= off < (start + main_len) * 8])


def test_line_info_matches_the_source(loaded):
    """BTF line info: each line text is the source file's line of that number."""
    stem, _, o = loaded
    src = (SRC_DIR / f"{stem}.c").read_text().splitlines()
    n = 0
    for p in o.programs:
        for ln in p.lines:
            # clang leaves the text empty on some records (e.g. a merged epilogue)
            assert ln.text in ("", src[ln.line - 1])
            n += bool(ln.text)
            assert 0 <= ln.slot < sum(i.slots for i in p.insns)
    assert n >= len(o.programs)


def test_global_variables():
    o = open_elf(build_object("xdp_flows"))
    v = {x.name: (x.section, x.offset, x.size, x.type_name, x.const) for x in o.variables().values()}
    assert v == {"blocked_port": (".rodata", 0, 2, "const volatile __u16", True),
                 "max_len": (".rodata", 4, 4, "const volatile __u32", True),
                 "seen": (".bss", 0, 8, "__u64", False),
                 "last_proto": (".bss", 8, 4, "__u32", False),
                 "pass_verdict": (".data", 0, 4, "__u32", False)}
    maps = o.create_maps(config={"blocked_port": 53, "max_len": 1000})
    # little-endian u16 53, 2 bytes of padding (zero), u32 1000
    assert maps[".rodata"].lookup(0) == (53).to_bytes(2, "little") + b"\0\0" + \
        (1000).to_bytes(4, "little")
    assert maps[".data"].lookup(0) == (2).to_bytes(4, "little")      # XDP_PASS
    assert maps[".bss"].lookup(0) == bytes(12)
    with pytest.raises(UsageError, match="no global variable 'nope'"):
        o.create_maps(config={"nope": 1})
    with pytest.raises(UsageError, match="does not fit"):
        o.create_maps(config={"blocked_port": 1 << 16})


def test_prog_array_initialiser():
    """{ [1] = &tail_drop, [2] = &tail_count }: those slots hold the programs."""
    o = open_elf(build_object("tailcall"))
    assert o.maps[0].prog_slots == ((1, "tail_drop"), (2, "tail_count"))
    jmp = o.create_maps()["jmp"]
    assert [jmp.get_object(i) is not None for i in range(4)] == [False, True, True, False]


def test_map_in_map_initialiser():
    """`__array(values, struct inner_map)` = { [0] = &inner_even, [1] = &inner_odd }:
    the outer map's inner spec is struct inner_map's (ARRAY, u32 key, 16-byte struct
    cell, 4 entries; libbpf names it "outer.inner") and those slots hold the very
    BpfMaps created for inner_even and inner_odd; slots 2 and 3 are empty.  The hash
    of maps `by_key` = { [5] = &inner_odd } has the one key 5."""
    o = open_elf(build_object("map_in_map"))
    m = {x.name: x for x in o.maps}
    assert m["outer"].map_slots == ((0, "inner_even"), (1, "inner_odd"))
    assert m["by_key"].map_slots == ((5, "inner_odd"),)
    assert m["outer"].prog_slots == m["by_key"].prog_slots == ()
    assert m["inner_odd"].map_slots == () and m["inner_odd"].spec.inner is None
    assert m["outer"].spec.inner == MapSpec(MapType.ARRAY, 4, 16, 4, 0, name="outer.inner")
    assert m["by_key"].spec.inner == MapSpec(MapType.ARRAY, 4, 16, 4, 0, name="by_key.inner")
    maps = o.create_maps()
    slots = [maps["outer"].get_object(i) for i in range(4)]
    assert slots[0] is maps["inner_even"] and slots[1] is maps["inner_odd"]
    assert slots[2:] == [None, None]
    assert [(k, v) for k, v in maps["by_key"].items()] == \
        [((5).to_bytes(4, "little"), maps["inner_odd"])]
    assert o.format_entry("outer", bytes(4), maps["inner_even"]) is None
    # the program's lookups go through the outer maps into these objects: every IPv4
    # frame of sample.pcap (ethertype 0x0800 and a whole 20-byte IP header, the
    # program's test) and every IPv6 frame (0x86dd, through by_key) is counted in
    # one of them (test_elf_kernel.py compares the counts with the kernel's)
    r = run_capture(o.program(), str(SAMPLE), maps=maps)
    counted = sum(int.from_bytes(v[:8], "little") for n in ("inner_even", "inner_odd")
                  for _, v in maps[n].items())
    with open_capture(str(SAMPLE)) as cap:
        frames = [bytes(d) for batch in cap for _, d in batch]
    ipv4 = sum(1 for d in frames if len(d) >= 34 and d[12:14] == b"\x08\x00")
    ipv6 = sum(1 for d in frames if d[12:14] == b"\x86\xdd")
    assert ipv4 and ipv6 and counted == ipv4 + ipv6 < r.packets
    cell3 = maps["inner_odd"].lookup(3)
    assert int.from_bytes(cell3[:8], "little") >= ipv6
    assert {"PASS", "DROP"} <= set(r.verdicts)


def test_program_selection_and_types():
    o = open_elf(build_object("legacy_maps"))
    with pytest.raises(UsageError, match="2 programs match"):
        o.program()
    assert o.program("drop_small").name == "drop_small"
    assert o.program(section="xdp", name="count_bytes").section == "xdp"
    with pytest.raises(UsageError, match="no program with name 'x'"):
        o.program("x")
    # an explicit type overrides the section's; an unmodelled one is refused by name
    assert o.program("drop_small", prog_type="socket").prog_type == 1
    with pytest.raises(UnsupportedError, match="sched_cls"):
        o.program("drop_small", prog_type=3)


@pytest.mark.parametrize("section, expected", [
    ("xdp", 6), ("xdp.frags", 6), ("xdp/devmap", 6), ("socket", 1), ("tc", 3),
    ("classifier", 3), ("tc/ingress", 3), ("kprobe/do_sys_open", 2), ("kprobe", 2),
    ("tracepoint/syscalls/sys_enter_open", 5), ("cgroup_skb/egress", 8),
    ("socketx", None), ("xdp_prog", None), ("mysection", None), ("xdpx", None),
])
def test_section_names(section, expected):
    # libbpf section_defs: exact names, and 'name+' = name alone or name/...
    assert prog_type_for_section(section) == expected


@pytest.mark.parametrize("stem", OBJECTS)
def test_runs_on_the_reference_interpreter(stem):
    """Every program runs over every packet of sample.pcap without a fault or a
    skipped packet; what it computes is compared with the kernel in
    test_elf_kernel.py."""
    o = open_elf(build_object(stem))
    for p in o.programs:
        r = run_capture(o.program(p.name), str(SAMPLE), maps=o.create_maps())
        assert r.packets > 1000
        assert not r.faults and not r.skipped, (p.name, r.faults[:2], r.skipped[:2])


@pytest.mark.parametrize("stem", ["xdp_flows", "tailcall", "legacy_maps"])
def test_big_endian_objects(stem):
    """clang -target bpfeb: the same maps, variables and programs as the
    little-endian build (BTF, symbols and relocations read big-endian); running is
    refused, not done with little-endian memory."""
    le = open_elf(build_object(stem))
    be = open_elf(build_object(stem, ("-target", "bpfeb")))
    assert be.byteorder == "big"
    assert [m.spec for m in be.maps] == [m.spec for m in le.maps]
    assert [(m.initial, m.key_type, m.value_type, m.prog_slots) for m in be.maps] == \
        [(m.initial and _swap_vars(m, le), m.key_type, m.value_type, m.prog_slots)
         for m in le.maps]
    # (clang's code differs between the two byte orders, e.g. in byte-swapped compares)
    assert [(p.name, p.section, p.subprograms) for p in be.programs] == \
        [(p.name, p.section, p.subprograms) for p in le.programs]
    with pytest.raises(UnsupportedError, match="big-endian"):
        be.program(be.programs[0].name)


def _swap_vars(m, le):
    """The little-endian initial bytes with each variable byte-swapped (all variables
    in these sources are single integers)."""
    b = bytearray(m.initial)
    for v in m.variables:
        b[v.offset:v.offset + v.size] = b[v.offset:v.offset + v.size][::-1]
    return bytes(b)
