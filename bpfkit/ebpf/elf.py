"""Load clang-compiled BPF ELF objects (`clang -O2 -g -target bpf -c prog.c`) the way
libbpf does (tools/lib/bpf/libbpf.c), in pure Python; pyelftools reads the ELF.

What is understood (anything else is refused with a BpfError naming section, symbol
and offset -- never loaded half-right):

* Programs: every global function (STT_FUNC) of an executable section other than
  `.text`; several per section are allowed (libbpf >= 0.7).  Program type from the
  section name with libbpf's SEC() conventions (`xdp`, `xdp.frags`, `socket`,
  `tc`/`classifier`, ... see SECTION_TYPES); another name needs an explicit type.
* Subprograms: functions in `.text` (and static functions in the program's own
  section) reached by `call` are appended after the program, as
  bpf_object__reloc_code does; R_BPF_64_32 call relocations resolve to
  ``symbol value / 8 + imm + 1`` (libbpf's formula, which serves both function and
  section symbols), calls without relocation are section-relative.
* Maps: BTF-defined maps in `.maps` (parse_btf_map_def: type, key/value as a type or
  key_size/value_size, max_entries, map_flags, map_extra; pinning accepted and
  ignored; numa_node refused; `__array(values, ...)`: for a PROG_ARRAY its initialiser
  -- relocations in `.maps` naming programs -- fills its slots in create_maps; for an
  ARRAY_OF_MAPS / HASH_OF_MAPS the struct gives MapSpec.inner (libbpf's "<map>.inner")
  and the initialiser's relocations name maps of `.maps`, whose BpfMaps create_maps
  puts in those slots, as init_map_in_map_slots does), legacy `SEC("maps")` `struct bpf_map_def` (and iproute2's
  36-byte `struct bpf_elf_map`, whose id and pinning are ignored; libbpf >= 1.0
  refuses both).  Map order: .maps in BTF DATASEC order, legacy maps by offset, then
  global data in section order.  An `lddw` relocated against a map symbol becomes
  ``lddw src=BPF_PSEUDO_MAP_IDX imm=<index into Program.maps>``.
* Global data: `.data*`, `.rodata*`, `.bss*` each become a one-element ARRAY map named
  after the section (libbpf names it "<obj>.<sec>"; bpfkit uses the section name)
  with value_size = section size; `.rodata*` gets BPF_F_RDONLY_PROG, all get
  BPF_F_MMAPABLE (bpf_object__init_internal_map).  An `lddw` against a variable
  becomes ``src=BPF_PSEUDO_MAP_IDX_VALUE imm=index | (addend + symbol value) << 32``
  (libbpf: insn[1].imm = insn[0].imm + sym_off).  `ElfObject.create_maps(config=)`
  fills them, setting `const volatile` variables by name as skeletons do.
* `license` section, `.BTF` (all kinds, bpfkit.ebpf.btf) and `.BTF.ext` (func and line
  info kept per program; CO-RE relocations applied against a target BTF given as
  `core_btf` -- bpfkit.ebpf.core, the layout kinds only -- and refused without one).
* Relocations in debug and BTF sections are ignored; in code only R_BPF_64_64 (on
  lddw) and R_BPF_64_32 (on pseudo calls) are accepted; in data sections (pointers
  in global data) they are refused.
* Callbacks (bpf_loop ...): an `lddw` relocated against a function in `.text` appends
  that function like a called one and becomes ``src=BPF_PSEUDO_FUNC`` with imm relative
  to the next slot (libbpf RELO_SUBPROG_ADDR: target = symbol value / 8 + imm / 8).

Not yet: extern kconfig/ksym variables, kfuncs, legacy map-in-map definitions, CO-RE
beyond the layout kinds,
programs in `.text`; big-endian (bpfeb) objects are parsed (maps, BTF, code) but
their programs are refused by program().  These raise UnsupportedError naming the
feature and where it is; a problem in one program's code is raised by
`ElfObject.program()` for that program only, so the others stay usable.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, replace
from typing import Mapping

from ..errors import BpfError, UnsupportedError, UsageError
from . import btf as _btf
from . import core as _core
from . import isa
from .isa import Insn
from .maps import MapError, MapSpec, create_map
from .maps.consts import KMALLOC_MAX_SIZE, MapType
from .program import Program
from .progtypes import PROG_TYPE_NAMES
from .progtypes import load as _load_prog

__all__ = ["ElfError", "ElfObject", "ElfProgram", "ElfMap", "GlobalVar", "LineRef",
           "load_elf", "open_elf", "SECTION_TYPES", "prog_type_for_section"]

EM_BPF = 247
R_BPF_NONE, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_NODYLD32, R_BPF_64_32 = \
    0, 1, 2, 3, 4, 10
RELOC_NAMES = {0: "R_BPF_NONE", 1: "R_BPF_64_64", 2: "R_BPF_64_ABS64", 3: "R_BPF_64_ABS32",
               4: "R_BPF_64_NODYLD32", 10: "R_BPF_64_32"}
SHT_PROGBITS, SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 1, 2, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL = 0
SHN_UNDEF, SHN_LORESERVE = 0, 0xFF00
_MAP_IN_MAP = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)

BPF_F_RDONLY_PROG = 1 << 7      # include/uapi/linux/bpf.h
BPF_F_MMAPABLE = 1 << 10

# enum bpf_prog_type (include/uapi/linux/bpf.h)
_T = {"socket_filter": 1, "kprobe": 2, "sched_cls": 3, "sched_act": 4, "tracepoint": 5,
      "xdp": 6, "perf_event": 7, "cgroup_skb": 8, "cgroup_sock": 9, "lwt_in": 10,
      "lwt_out": 11, "lwt_xmit": 12, "sock_ops": 13, "sk_skb": 14, "cgroup_device": 15,
      "sk_msg": 16, "raw_tracepoint": 17, "cgroup_sock_addr": 18, "lwt_seg6local": 19,
      "lirc_mode2": 20, "sk_reuseport": 21, "flow_dissector": 22, "cgroup_sysctl": 23,
      "raw_tracepoint_writable": 24, "cgroup_sockopt": 25, "tracing": 26, "struct_ops": 27,
      "ext": 28, "lsm": 29, "sk_lookup": 30, "syscall": 31, "netfilter": 32}

# libbpf's section_defs (libbpf.c, 1.x): name -> program type.  A trailing '+' means
# the name alone or followed by '/...' (SEC_DEF with a "+" suffix); otherwise the name
# must match exactly.
SECTION_TYPES: tuple[tuple[str, str], ...] = (
    ("socket", "socket_filter"), ("sk_reuseport/migrate", "sk_reuseport"),
    ("sk_reuseport", "sk_reuseport"), ("kprobe+", "kprobe"), ("uprobe+", "kprobe"),
    ("kretprobe+", "kprobe"), ("uretprobe+", "kprobe"), ("ksyscall+", "kprobe"),
    ("kretsyscall+", "kprobe"), ("usdt+", "kprobe"), ("kprobe.multi+", "kprobe"),
    ("kretprobe.multi+", "kprobe"), ("tc/ingress", "sched_cls"), ("tc/egress", "sched_cls"),
    ("tcx/ingress", "sched_cls"), ("tcx/egress", "sched_cls"), ("tc", "sched_cls"),
    ("classifier", "sched_cls"), ("action", "sched_act"), ("tracepoint+", "tracepoint"),
    ("tp+", "tracepoint"), ("raw_tracepoint+", "raw_tracepoint"),
    ("raw_tp+", "raw_tracepoint"), ("raw_tracepoint.w+", "raw_tracepoint_writable"),
    ("raw_tp.w+", "raw_tracepoint_writable"), ("tp_btf+", "tracing"), ("fentry+", "tracing"),
    ("fmod_ret+", "tracing"), ("fexit+", "tracing"), ("fentry.s+", "tracing"),
    ("fmod_ret.s+", "tracing"), ("fexit.s+", "tracing"), ("freplace+", "ext"),
    ("lsm+", "lsm"), ("lsm.s+", "lsm"), ("iter+", "tracing"), ("iter.s+", "tracing"),
    ("syscall", "syscall"), ("xdp.frags/devmap", "xdp"), ("xdp/devmap", "xdp"),
    ("xdp.frags/cpumap", "xdp"), ("xdp/cpumap", "xdp"), ("xdp.frags", "xdp"), ("xdp", "xdp"),
    ("perf_event", "perf_event"), ("lwt_in", "lwt_in"), ("lwt_out", "lwt_out"),
    ("lwt_xmit", "lwt_xmit"), ("lwt_seg6local", "lwt_seg6local"),
    ("sockops", "sock_ops"), ("sk_skb/stream_parser", "sk_skb"),
    ("sk_skb/stream_verdict", "sk_skb"), ("sk_skb", "sk_skb"), ("sk_msg", "sk_msg"),
    ("lirc_mode2", "lirc_mode2"), ("flow_dissector", "flow_dissector"),
    ("cgroup_skb/ingress", "cgroup_skb"), ("cgroup_skb/egress", "cgroup_skb"),
    ("cgroup/skb", "cgroup_skb"), ("cgroup/sock_create", "cgroup_sock"),
    ("cgroup/sock_release", "cgroup_sock"), ("cgroup/sock", "cgroup_sock"),
    ("cgroup/post_bind4", "cgroup_sock"), ("cgroup/post_bind6", "cgroup_sock"),
    ("cgroup/bind4", "cgroup_sock_addr"), ("cgroup/bind6", "cgroup_sock_addr"),
    ("cgroup/connect4", "cgroup_sock_addr"), ("cgroup/connect6", "cgroup_sock_addr"),
    ("cgroup/sendmsg4", "cgroup_sock_addr"), ("cgroup/sendmsg6", "cgroup_sock_addr"),
    ("cgroup/recvmsg4", "cgroup_sock_addr"), ("cgroup/recvmsg6", "cgroup_sock_addr"),
    ("cgroup/getpeername4", "cgroup_sock_addr"), ("cgroup/getpeername6", "cgroup_sock_addr"),
    ("cgroup/getsockname4", "cgroup_sock_addr"), ("cgroup/getsockname6", "cgroup_sock_addr"),
    ("cgroup/sysctl", "cgroup_sysctl"), ("cgroup/getsockopt", "cgroup_sockopt"),
    ("cgroup/setsockopt", "cgroup_sockopt"), ("cgroup/dev", "cgroup_device"),
    ("struct_ops+", "struct_ops"), ("sk_lookup", "sk_lookup"), ("netfilter", "netfilter"),
)


def prog_type_for_section(section: str) -> int | None:
    """BPF_PROG_TYPE_* for a section name by libbpf's conventions, None if unknown."""
    for pat, tname in SECTION_TYPES:
        if pat.endswith("+"):
            base = pat[:-1]
            if section == base or section.startswith(base + "/"):
                return _T[tname]
        elif section == pat:
            return _T[tname]
    return None


class ElfError(BpfError):
    """A malformed or unsupported BPF object; the message says where."""


# --- plain data read out of pyelftools -------------------------------------------

@dataclass(frozen=True, slots=True)
class _Section:
    index: int
    name: str
    type: int
    flags: int
    size: int
    data: bytes          # empty for NOBITS
    info: int
    link: int


@dataclass(frozen=True, slots=True)
class _Symbol:
    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int


@dataclass(frozen=True, slots=True)
class _Reloc:
    offset: int
    sym: int
    type: int


def _read_elf(data: bytes):
    """Sections, symbols and REL relocations (by target section) out of pyelftools;
    every pyelftools failure becomes ElfError."""
    from elftools.elf.elffile import ELFFile
    if data[:4] != b"\x7fELF":
        raise ElfError(f"offset 0: not an ELF file (magic {bytes(data[:4])!r})")
    try:
        f = ELFFile(io.BytesIO(data))
        if f.header["e_machine"] not in ("EM_BPF", EM_BPF):
            raise ElfError(f"ELF machine {f.header['e_machine']} is not EM_BPF (247)")
        if f.elfclass != 64:
            raise ElfError(f"ELF class {f.elfclass}: BPF objects are 64-bit")
        byteorder = "little" if f.little_endian else "big"
        sections: list[_Section] = []
        symtab = None
        for i in range(f.num_sections()):
            s = f.get_section(i)
            h = s.header
            stype = _sh_type(h["sh_type"])
            size = h["sh_size"]
            body = b"" if stype == SHT_NOBITS else bytes(s.data())
            if stype != SHT_NOBITS and len(body) != size:
                raise ElfError(f"section [{i}] {s.name!r}: {size} bytes declared at file "
                               f"offset {h['sh_offset']}, {len(body)} present")
            sections.append(_Section(i, s.name, stype, h["sh_flags"], size, body,
                                     h["sh_info"], h["sh_link"]))
            if stype == SHT_SYMTAB:
                if symtab is not None:
                    raise ElfError(f"section [{i}] {s.name!r}: a second symbol table")
                symtab = s
        symbols: list[_Symbol] = []
        if symtab is not None:
            if symtab["sh_entsize"] != 24:
                raise ElfError(f"symbol table {symtab.name!r}: entry size "
                               f"{symtab['sh_entsize']}, expected 24")
            for j in range(symtab.num_symbols()):
                y = symtab.get_symbol(j)
                symbols.append(_Symbol(j, y.name, y["st_value"], y["st_size"],
                                       _st_type(y["st_info"]["type"]),
                                       _st_bind(y["st_info"]["bind"]),
                                       _shndx(y["st_shndx"])))
        relocs: dict[int, tuple[int, list[_Reloc]]] = {}
        for s in sections:
            if s.type not in (SHT_REL, SHT_RELA):
                continue
            sec = f.get_section(s.index)
            if sec["sh_entsize"] not in (16, 24):
                raise ElfError(f"relocation section {s.name!r}: entry size "
                               f"{sec['sh_entsize']}")
            rs = [_Reloc(r["r_offset"], r["r_info_sym"], r["r_info_type"])
                  for r in sec.iter_relocations()]
            relocs[s.index] = (s.type, rs)
        return byteorder, sections, symbols, relocs
    except BpfError:
        raise
    except Exception as e:      # pyelftools raises ELFError, construct and stream errors
        raise ElfError(f"malformed ELF: {type(e).__name__}: {e}") from None


def _sh_type(v) -> int:
    names = {"SHT_PROGBITS": SHT_PROGBITS, "SHT_SYMTAB": SHT_SYMTAB, "SHT_RELA": SHT_RELA,
             "SHT_NOBITS": SHT_NOBITS, "SHT_REL": SHT_REL}
    return names.get(v, -1) if isinstance(v, str) else int(v)


def _st_type(v) -> int:
    names = {"STT_NOTYPE": STT_NOTYPE, "STT_OBJECT": STT_OBJECT, "STT_FUNC": STT_FUNC,
             "STT_SECTION": STT_SECTION}
    return names.get(v, -1) if isinstance(v, str) else int(v)


def _st_bind(v) -> int:
    return {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2}.get(v, -1) \
        if isinstance(v, str) else int(v)


def _shndx(v) -> int:
    if isinstance(v, str):
        return SHN_UNDEF if v == "SHN_UNDEF" else SHN_LORESERVE   # ABS, COMMON, ...
    return int(v)


# --- the loaded object --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GlobalVar:
    """A variable of a global-data section (from BTF, placed by its ELF symbol)."""
    name: str
    section: str
    offset: int
    size: int
    type_id: int
    type_name: str
    const: bool


@dataclass(frozen=True, slots=True)
class ElfMap:
    """A map defined by the object.  kind: 'btf' (.maps), 'legacy' (SEC("maps")) or
    'data' (.data/.rodata/.bss); key/value BTF type ids and C names when BTF says them;
    `initial` is the value of a data map's single element (zeros for .bss)."""
    spec: MapSpec
    kind: str
    section: str
    offset: int
    key_type: str | None = None
    value_type: str | None = None
    key_type_id: int = 0
    value_type_id: int = 0
    initial: bytes | None = None
    variables: tuple[GlobalVar, ...] = ()
    # PROG_ARRAY initialiser (`__array(values, ...)` = { [i] = &prog }): (index, program)
    prog_slots: tuple[tuple[int, str], ...] = ()
    values_offset: int | None = None     # byte offset of `values` in the definition
    # ARRAY_OF_MAPS / HASH_OF_MAPS initialiser ({ [i] = &inner_map }): (index or u32
    # key, name of the map of this object to put there)
    map_slots: tuple[tuple[int, str], ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class LineRef:
    """Source line of the instruction at slot `slot` of a linked program."""
    slot: int
    file: str
    line: int
    col: int
    text: str


@dataclass(frozen=True, slots=True)
class ElfProgram:
    """A program of the object, linked: its own code then the subprograms it calls.
    prog_type is None when the section name says nothing libbpf knows."""
    name: str
    section: str
    prog_type: int | None
    insns: tuple[Insn, ...]
    subprograms: tuple[str, ...]
    license: str
    lines: tuple[LineRef, ...] = ()
    func_starts: tuple[int, ...] = (0,)
    # why this program cannot be used (its code needs something bpfkit does not
    # support); the other programs of the object stay usable.  program() raises it.
    problem: BpfError | None = None

    @property
    def prog_type_name(self) -> str | None:
        if self.prog_type is None:
            return None
        return {v: k for k, v in _T.items()}.get(self.prog_type)


@dataclass(frozen=True, slots=True)
class ElfObject:
    """A loaded BPF object: its programs, maps (object order: .maps, legacy maps, then
    global-data sections), licence and BTF."""
    programs: tuple[ElfProgram, ...]
    maps: tuple[ElfMap, ...]
    license: str
    btf: _btf.Btf | None
    btf_ext: _btf.BtfExt | None
    byteorder: str = "little"
    path: str = ""

    def find_program(self, name: str | None = None, *, section: str | None = None) -> ElfProgram:
        """The program with function name `name` or in `section`; with neither, the only
        program.  UsageError lists the choices when that is ambiguous or absent."""
        cands = [p for p in self.programs
                 if (name is None or p.name == name) and (section is None or p.section == section)]
        if len(cands) == 1:
            return cands[0]
        have = ", ".join(f"{p.name} (section {p.section})" for p in self.programs) or "none"
        what = " and ".join(x for x in (name and f"name {name!r}",
                                         section and f"section {section!r}") if x) or "no choice"
        if not cands:
            raise UsageError(f"no program with {what} (programs: {have})")
        raise UsageError(f"{len(cands)} programs match {what}; pick one by name "
                         f"(programs: {have})")

    def program(self, name: str | None = None, *, section: str | None = None,
                prog_type: int | str | None = None) -> Program:
        """A bpfkit Program for one program of the object: its linked instructions, the
        object's maps (all of them; lddw map references index this tuple), name,
        section and licence.  prog_type overrides the section's type (needed when the
        section name is not one libbpf knows)."""
        p = self.find_program(name, section=section)
        if p.problem is not None:
            raise p.problem
        if self.byteorder != "little":
            # the interpreter and the kernels bpfkit compares with are little-endian: a
            # bpfeb program's loads and stores would mean something else there
            raise UnsupportedError("running big-endian (bpfeb) objects",
                                   f"program {p.name!r}: the object is big-endian")
        ptype = p.prog_type if prog_type is None else prog_type
        if ptype is None:
            raise UsageError(f"program {p.name!r}: section {p.section!r} names no program "
                             "type libbpf knows; give the type explicitly")
        if isinstance(ptype, int) and ptype not in PROG_TYPE_NAMES:
            tname = {v: k for k, v in _T.items()}.get(ptype, str(ptype))
            raise UnsupportedError(f"program type {tname}",
                                   f"program {p.name!r} in section {p.section!r}: bpfkit "
                                   f"runs {', '.join(PROG_TYPE_NAMES.values())} programs")
        return Program(p.insns, ptype, tuple(m.spec for m in self.maps), p.name, p.section,
                       p.license)

    def format_entry(self, map_name: str, key: bytes, value):
        """One map entry decoded through BTF as `bpftool -j map dump` shows it in
        "formatted": {"key": ..., "value": ...} ("values": [{"cpu": i, "value": ...}]
        for per-CPU maps, a list of bytes per CPU), the key left out when the map has
        no BTF key type (global data), None when it has no BTF types at all (maps
        declared with key_size/value_size, legacy maps).  Global-data values show
        each variable: {".data": [{"name": value}, ...]}."""
        m = next((x for x in self.maps if x.name == map_name), None)
        if m is None:
            raise UsageError(f"no map {map_name!r}")
        if self.btf is None or m.spec.type in _MAP_IN_MAP:
            # libbpf creates map-in-maps without BTF (the kernel's map_check_no_btf),
            # so bpftool shows their entries unformatted
            return None

        def val(raw: bytes):
            raw = bytes(raw)
            if m.kind == "data":
                return {m.section: [{v.name: _btf.dump_value(self.btf, v.type_id,
                                                             raw[v.offset:], self.byteorder)}
                                    for v in m.variables]}
            return _btf.dump_value(self.btf, m.value_type_id, raw, self.byteorder)

        has_value = m.kind == "data" or m.value_type_id
        if not m.key_type_id and not has_value:
            return None
        out = {}
        if m.key_type_id:
            out["key"] = _btf.dump_value(self.btf, m.key_type_id, bytes(key), self.byteorder)
        if has_value:
            if isinstance(value, list):
                out["values"] = [{"cpu": i, "value": val(v)} for i, v in enumerate(value)]
            else:
                out["value"] = val(value)
        return out

    def variables(self) -> dict[str, GlobalVar]:
        return {v.name: v for m in self.maps for v in m.variables}

    def create_maps(self, *, num_cpus: int = 1,
                    config: Mapping[str, int | bytes] | None = None) -> dict:
        """Fresh BpfMaps for every map (by name), global-data maps filled with their
        initial contents, then `config` applied: variable name -> int (stored in the
        variable's size and the object's byte order; negative = two's complement) or
        bytes of exactly its size.  This is what a libbpf skeleton's `rodata->x = v`
        before load does.  Pass the result to Runner/run_capture(maps=...)."""
        data = {m.name: bytearray(m.initial) for m in self.maps if m.initial is not None}
        variables = self.variables()
        for vname, value in (config or {}).items():
            v = variables.get(vname)
            if v is None:
                raise UsageError(f"no global variable {vname!r} (have: "
                                 f"{', '.join(sorted(variables)) or 'none'})")
            if isinstance(value, (bytes, bytearray)):
                raw = bytes(value)
                if len(raw) != v.size:
                    raise UsageError(f"variable {vname!r} has {v.size} bytes, got {len(raw)}")
            else:
                iv = int(value)
                if not -(1 << (8 * v.size - 1)) <= iv < (1 << (8 * v.size)):
                    raise UsageError(f"value {iv} does not fit {vname!r} ({v.size} bytes)")
                raw = (iv % (1 << (8 * v.size))).to_bytes(v.size, self.byteorder)
            data[v.section][v.offset:v.offset + v.size] = raw
        out = {}
        for m in self.maps:
            bm = create_map(m.spec, num_cpus=num_cpus)
            if m.initial is not None:
                bm.update(0, bytes(data[m.name]))
            out[m.name] = bm
        # map-in-map initialisers: each slot gets the BpfMap created above for the
        # named map (libbpf's init_map_in_map_slots right after creating the maps);
        # an inner map that does not match the outer map's inner spec is refused
        # with EINVAL as the kernel's update refuses it
        for m in self.maps:
            for idx, iname in m.map_slots:
                try:
                    out[m.name].update(idx, out[iname])
                except MapError as e:
                    raise MapError(e.errno, f"map {m.name!r} slot {idx}: cannot hold map "
                                   f"{iname!r}", op="initialise") from None
        # prog-array initialisers: each slot gets its program, loaded with these maps
        # (libbpf's bpf_object_init_prog_arrays after loading the programs)
        for m in self.maps:
            for idx, pname in m.prog_slots:
                prog = self.program(pname)
                interp = _load_prog(prog.insns, prog.prog_type,
                                    maps=[out[x.name] for x in self.maps])
                out[m.name].update(idx, interp)
        return out


# --- loading ---------------------------------------------------------------------

def open_elf(path: str | os.PathLike, *, core_btf: _btf.Btf | None = None) -> ElfObject:
    """Load the BPF object at `path` (load_elf on its bytes)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    obj = load_elf(data, core_btf=core_btf)
    return ElfObject(obj.programs, obj.maps, obj.license, obj.btf, obj.btf_ext,
                     obj.byteorder, str(path))


def load_elf(data: bytes, *, core_btf: _btf.Btf | None = None) -> ElfObject:
    """Parse a BPF ELF object (bytes) into an ElfObject.  ElfError/UnsupportedError/
    BtfError (all BpfError) say what is wrong and where.  core_btf: the BTF to apply
    CO-RE relocations against (the target kernel's, e.g. parse_btf of
    /sys/kernel/btf/vmlinux, see bpfkit.ebpf.core); without it a program with CO-RE
    relocations is refused."""
    return _Loader(bytes(data), core_btf).load()


def _is_data_section(name: str) -> bool:
    # libbpf bpf_object__elf_collect: ".data", ".rodata", ".bss" and their ".x" suffixes
    return any(name == p or name.startswith(p + ".") for p in (".data", ".rodata", ".bss"))


def _ignored_reloc_target(name: str) -> bool:
    """Sections whose relocations do not matter for running (libbpf ignores them)."""
    return name.startswith(".debug") or name in (".BTF", ".BTF.ext", ".eh_frame",
                                                 ".llvm_addrsig")


@dataclass(slots=True)
class _Func:
    section: int
    name: str
    start: int           # slot
    end: int             # slot, exclusive
    is_global: bool


class _Loader:
    def __init__(self, data: bytes, core_btf: _btf.Btf | None = None):
        self.data = data
        self.core_btf = core_btf

    def load(self) -> ElfObject:
        self.maps_relocs: list[_Reloc] = []
        self.bo, self.sections, self.symbols, relocs = _read_elf(self.data)
        self.relocs: dict[int, list[_Reloc]] = {}
        for idx, (rtype, rs) in relocs.items():
            tgt_i = self.sections[idx].info
            if not 0 <= tgt_i < len(self.sections):
                raise ElfError(f"relocation section {self.sections[idx].name!r} applies to "
                               f"section index {tgt_i}, which does not exist")
            tgt = self.sections[tgt_i]
            if tgt.flags & SHF_EXECINSTR:
                if rtype == SHT_RELA:
                    raise ElfError(f"relocation section {self.sections[idx].name!r}: RELA "
                                   f"relocations in code section {tgt.name!r} (BPF uses REL)")
                self.relocs.setdefault(tgt_i, []).extend(rs)
            elif tgt.name == ".maps":
                self.maps_relocs = rs          # prog-array initialisers, resolved below
            elif tgt.name == "maps" and rs:
                raise UnsupportedError("initialisers of legacy map definitions",
                                       f"relocations in section {tgt.name!r}")
            elif rs and not _ignored_reloc_target(tgt.name):
                # e.g. a pointer stored in .data: its value would be an address the
                # program cannot use; refuse rather than leave a wrong number there
                raise UnsupportedError("relocations in data sections (pointers in global "
                                       "data)", f"section {tgt.name!r} offset "
                                       f"{rs[0].offset}")
            # relocations of debug info and BTF: not needed to run
        self.license = self._license()
        self.btf = self.btf_ext = None
        s = self._section_named(".BTF")
        if s is not None:
            self.btf = _btf.parse_btf(s.data)
            e = self._section_named(".BTF.ext")
            if e is not None:
                self.btf_ext = _btf.parse_btf_ext(e.data, self.btf.strings, self.btf.byteorder)
        maps = self._btf_maps() + self._legacy_maps() + self._data_maps()
        names = set()
        for m in maps:
            if m.name in names:
                raise ElfError(f"two maps named {m.name!r}")
            names.add(m.name)
        self.maps = maps
        # symbol lookups for relocations: (section index, offset) -> map index
        self.map_at = {(self._section_named(m.section).index, m.offset): i
                       for i, m in enumerate(maps) if m.kind != "data"}
        self.data_map = {self._section_named(m.section).index: i
                         for i, m in enumerate(maps) if m.kind == "data"}
        self.funcs = self._functions()
        if self.maps_relocs:
            maps = self._init_slots(maps)
            self.maps = maps
        programs = tuple(self._program(f) for f in self.funcs
                         if f.is_global and self.sections[f.section].name != ".text")
        return ElfObject(programs, tuple(maps), self.license, self.btf, self.btf_ext, self.bo)

    # --- sections and symbols ----

    def _section_named(self, name: str) -> _Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def _symbol(self, idx: int, where: str) -> _Symbol:
        if not 0 <= idx < len(self.symbols):
            raise ElfError(f"{where}: symbol index {idx} out of range "
                           f"({len(self.symbols)} symbols)")
        return self.symbols[idx]

    def _license(self) -> str:
        s = self._section_named("license")
        if s is None:
            return ""
        raw = s.data.split(b"\0", 1)[0]
        return raw.decode("ascii", "replace")

    def _section_symbols(self, sec: _Section) -> list[_Symbol]:
        return [y for y in self.symbols
                if y.shndx == sec.index and y.type != STT_SECTION and y.name]

    # --- maps ----

    def _btf_maps(self) -> list[ElfMap]:
        sec = self._section_named(".maps")
        if sec is None:
            return []
        where = "section '.maps'"
        if self.btf is None:
            raise ElfError(f"{where}: BTF-defined maps need a .BTF section")
        ds = self.btf.find(".maps", _btf.DATASEC)
        if ds is None:
            raise ElfError(f"{where}: .BTF has no DATASEC '.maps'")
        syms = {y.name: y for y in self._section_symbols(sec)}
        out = []
        for vi in ds.members:
            var = self.btf.type(vi.type)
            if var.kind != _btf.VAR:
                raise ElfError(f"{where}: DATASEC entry type {vi.type} is "
                               f"{var.kind_name}, not VAR")
            y = syms.get(var.name)
            if y is None:
                raise ElfError(f"{where}: map {var.name!r} has no ELF symbol")
            out.append(self._btf_map_def(var.name, var.type, y.value, sec))
        return out

    def _btf_map_def(self, name: str, tid: int, offset: int, sec: _Section) -> ElfMap:
        """libbpf parse_btf_map_def: the map's struct, one member per attribute."""
        where = f"map {name!r} (section '.maps' offset {offset})"
        spec, key_t, val_t, values_off = self._btf_map_struct(name, tid, where, False)
        b = self.btf
        return ElfMap(spec, "btf", ".maps", offset,
                      b.type_name(key_t) if key_t else None,
                      b.type_name(val_t) if val_t else None, key_t, val_t,
                      values_offset=values_off)

    def _btf_map_struct(self, name: str, tid: int, where: str, is_inner: bool):
        """(MapSpec, key type id, value type id, byte offset of `values` or None) of a
        map definition struct; `is_inner` for the struct of a map-in-map's
        `__array(values, struct ...)`, which gives the inner map's spec."""
        b = self.btf
        st = b.resolve(tid)
        if st.kind != _btf.STRUCT:
            raise ElfError(f"{where}: definition is {st.kind_name}, not a struct")
        ints: dict[str, int] = {}
        key_t = val_t = 0
        values_off = None
        inner_tid = None        # the inner map's definition struct (map-in-map)
        for n, m in enumerate(st.members):
            if m.name in ("type", "max_entries", "map_flags", "numa_node", "key_size",
                          "value_size", "map_extra", "pinning"):
                # __uint(name, v) is `int (*name)[v]`: v is the array's nelems
                p = b.resolve(m.type)
                arr = b.resolve(p.type) if p.kind == _btf.PTR else None
                if arr is None or arr.kind != _btf.ARRAY:
                    raise ElfError(f"{where}: attribute {m.name!r} is not __uint(...) "
                                   "(pointer to an array)")
                ints[m.name] = arr.nelems
            elif m.name in ("key", "value"):
                p = b.resolve(m.type)
                if p.kind != _btf.PTR:
                    raise ElfError(f"{where}: {m.name!r} is not __type(...) (a pointer)")
                size = b.size_of(p.type)
                if m.name == "key":
                    key_t = p.type
                    ints.setdefault("_key", size)
                else:
                    val_t = p.type
                    ints.setdefault("_value", size)
            elif m.name == "values":
                # __array(values, T): a flexible array of pointers; T a function type
                # for a prog array (its slots get programs), a map definition struct
                # for map-in-map (the inner map's spec; its slots get maps)
                arr = b.resolve(m.type)
                ptr = b.resolve(arr.type) if arr.kind == _btf.ARRAY else None
                target = b.resolve(ptr.type) if ptr is not None and ptr.kind == _btf.PTR \
                    else None
                if target is None or m.offset % 8:
                    raise ElfError(f"{where}: 'values' is not __array(values, ...)")
                if is_inner:
                    # parse_btf_map_def: "multi-level inner maps not supported" (nor
                    # by the kernel: an inner map cannot be a map-in-map)
                    raise ElfError(f"{where}: an inner map definition with its own "
                                   "'values' (multi-level map-in-map)")
                if n != len(st.members) - 1:
                    raise ElfError(f"{where}: 'values' must be the last member")
                if target.kind == _btf.STRUCT:
                    inner_tid = ptr.type
                elif target.kind != _btf.FUNC_PROTO:
                    raise ElfError(f"{where}: 'values' points to {target.kind_name}, not "
                                   "a function type (prog array) or a map definition "
                                   "struct (map-in-map)")
                values_off = m.offset // 8
            else:
                raise ElfError(f"{where}: unknown map attribute {m.name!r}")
        for attr, sized in (("key_size", "_key"), ("value_size", "_value")):
            if attr in ints and sized in ints and ints[attr] != ints[sized]:
                raise ElfError(f"{where}: {attr} {ints[attr]} disagrees with the "
                               f"{attr[:-5]} type's size {ints[sized]}")
        if "type" not in ints:
            raise ElfError(f"{where}: no map type")
        if ints.get("numa_node", 0):
            raise UnsupportedError("map numa_node", where)
        inner = None
        if values_off is not None:
            want = MapType.PROG_ARRAY if inner_tid is None else "map-in-map"
            if (inner_tid is None and ints["type"] != MapType.PROG_ARRAY) or \
                    (inner_tid is not None and ints["type"] not in _MAP_IN_MAP):
                what = "function" if inner_tid is None else "map definition"
                raise ElfError(f"{where}: {what} 'values' in a map of type "
                               f"{ints['type']}, not a {want}")
            # parse_btf_map_def: the values of prog arrays and map-in-maps are 4-byte
            # fds; another value size is a conflict
            vs = ints.get("value_size", ints.get("_value", 4))
            if vs != 4:
                raise ElfError(f"{where}: value size {vs} conflicts with 'values' "
                               "(4-byte fds)")
            ints["value_size"] = 4
            if inner_tid is not None:
                # libbpf names the inner map "<outer>.inner" and creates it only to
                # give BPF_MAP_CREATE its inner_map_fd (bpf_object__create_map)
                iname = f"{name}.inner"
                inner = self._btf_map_struct(iname, inner_tid,
                                             f"{where}: inner map {iname!r}", True)[0]
        spec = MapSpec(ints["type"], ints.get("key_size", ints.get("_key", 0)),
                       ints.get("value_size", ints.get("_value", 0)),
                       ints.get("max_entries", 0), ints.get("map_flags", 0), name=name,
                       inner=inner, map_extra=ints.get("map_extra", 0))
        return spec, key_t, val_t, values_off

    def _init_slots(self, maps: list[ElfMap]) -> list[ElfMap]:
        """bpf_object__collect_map_relos: each R_BPF_64_ABS64 in .maps sits in the
        `values` array of one map definition; its slot index is the distance from
        `values` / 8 and its symbol is the program (prog array) or the map of .maps
        (map-in-map) to put there."""
        maps_sec = self._section_named(".maps")
        starts = sorted((m.offset, i) for i, m in enumerate(maps) if m.kind == "btf")
        progs: dict[int, list[tuple[int, str]]] = {}
        inner: dict[int, list[tuple[int, str]]] = {}
        for r in self.maps_relocs:
            where = f"section '.maps' offset {r.offset}"
            if r.type not in (R_BPF_64_ABS64, R_BPF_64_64):
                raise ElfError(f"{where}: relocation type "
                               f"{RELOC_NAMES.get(r.type, r.type)} in map definitions")
            owner = None
            for off, i in starts:
                if off <= r.offset:
                    owner = i
            m = maps[owner] if owner is not None else None
            if m is None or m.values_offset is None or \
                    r.offset < m.offset + m.values_offset or \
                    (r.offset - m.offset - m.values_offset) % 8:
                raise ElfError(f"{where}: relocation outside any map's 'values' array")
            idx = (r.offset - m.offset - m.values_offset) // 8
            # an array's slot past max_entries: the kernel refuses the update (E2BIG)
            # and libbpf's load fails; a hash of maps takes any u32 key
            if m.spec.type != MapType.HASH_OF_MAPS and idx >= m.spec.max_entries:
                raise ElfError(f"{where}: map {m.name!r} slot {idx} >= max_entries "
                               f"{m.spec.max_entries}")
            sym = self._symbol(r.sym, where)
            tsec = self.sections[sym.shndx] if 0 < sym.shndx < len(self.sections) else None
            if m.spec.type in _MAP_IN_MAP:
                # libbpf: the symbol must be a BTF-defined map (in .maps); a hash of
                # maps is filled with int keys, so its key_size must be 4
                if m.spec.type == MapType.HASH_OF_MAPS and m.spec.key_size != 4:
                    raise ElfError(f"{where}: hash of maps {m.name!r} with an "
                                   f"initialiser needs key_size 4, not {m.spec.key_size}")
                target = self.map_at.get((sym.shndx, sym.value)) \
                    if tsec is not None and tsec is maps_sec else None
                if target is None:
                    raise ElfError(f"{where}: map {m.name!r} slot {idx}: symbol "
                                   f"{sym.name!r} is not a map of section '.maps'")
                inner.setdefault(owner, []).append((idx, maps[target].name))
                continue
            if sym.type != STT_FUNC or tsec is None or not tsec.flags & SHF_EXECINSTR \
                    or tsec.name == ".text" or sym.bind == STB_LOCAL:
                raise ElfError(f"{where}: map {m.name!r} slot {idx}: symbol "
                               f"{sym.name!r} is not a program")
            progs.setdefault(owner, []).append((idx, sym.name))
        return [replace(m, prog_slots=tuple(sorted(progs.get(i, ()))),
                        map_slots=tuple(sorted(inner.get(i, ()))))
                if i in progs or i in inner else m
                for i, m in enumerate(maps)]

    def _legacy_maps(self) -> list[ElfMap]:
        sec = self._section_named("maps")
        if sec is None:
            return []
        syms = sorted(self._section_symbols(sec), key=lambda y: y.value)
        if not syms:
            return []
        # bpf_object__init_user_maps: all definitions have the same size
        size = sec.size // len(syms)
        if size < 20 or size % 4 or sec.size % len(syms):
            raise ElfError(f"section 'maps': {sec.size} bytes for {len(syms)} map symbols: "
                           "not a whole number of struct bpf_map_def")
        if sec.type == SHT_NOBITS:
            raise ElfError("section 'maps' has no contents (NOBITS)")
        e = "<" if self.bo == "little" else ">"
        out = []
        for y in syms:
            where = f"map {y.name!r} (section 'maps' offset {y.value})"
            if y.value % 4 or y.value + size > sec.size:
                raise ElfError(f"{where}: definition outside the section or misaligned")
            raw = sec.data[y.value:y.value + size]
            mtype, ks, vs, me, fl = struct.unpack_from(e + "5I", raw)
            extra = raw[20:]
            if size == 36:
                # iproute2 struct bpf_elf_map: id, pinning (ignored), inner_id, inner_idx
                _id, _pin, inner_id, inner_idx = struct.unpack_from(e + "4I", raw, 20)
                if inner_id or inner_idx:
                    raise UnsupportedError("bpf_elf_map inner maps", where)
            elif any(extra):
                raise UnsupportedError("map definition fields beyond struct bpf_map_def",
                                       f"{where}: bytes 20..{size} are not zero")
            if mtype in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
                raise UnsupportedError("legacy map-in-map definitions", where)
            out.append(ElfMap(MapSpec(mtype, ks, vs, me, fl, name=y.name), "legacy", "maps",
                              y.value))
        return out

    def _data_maps(self) -> list[ElfMap]:
        out = []
        for s in self.sections:
            if not _is_data_section(s.name) or not s.flags & SHF_ALLOC or s.size == 0:
                continue
            if s.size > KMALLOC_MAX_SIZE:
                raise ElfError(f"section {s.name!r}: {s.size} bytes of global data (the "
                               f"kernel's array value limit is {KMALLOC_MAX_SIZE})")
            rodata = s.name.startswith(".rodata")
            flags = BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if rodata else 0)
            initial = bytes(s.size) if s.type == SHT_NOBITS else s.data
            spec = MapSpec(MapType.ARRAY, 4, s.size, 1, flags, name=s.name)
            out.append(ElfMap(spec, "data", s.name, 0, value_type=None,
                              initial=initial, variables=self._variables(s)))
        return out

    def _variables(self, sec: _Section) -> tuple[GlobalVar, ...]:
        """Variables of a data section: BTF DATASEC entries placed by their ELF symbols
        (clang leaves DATASEC offsets 0; libbpf's btf_fixup_datasec uses the symbols)."""
        if self.btf is None:
            return ()
        ds = self.btf.find(sec.name, _btf.DATASEC)
        if ds is None:
            return ()
        syms = {y.name: y for y in self._section_symbols(sec)}
        out = []
        for vi in ds.members:
            var = self.btf.type(vi.type)
            y = syms.get(var.name)
            if var.kind != _btf.VAR or y is None:
                continue          # static variables without a symbol: not settable by name
            size = self.btf.size_of(var.type)
            if y.value + size > sec.size:
                raise ElfError(f"variable {var.name!r}: {size} bytes at offset {y.value} "
                               f"run past section {sec.name!r} ({sec.size} bytes)")
            t = self.btf.type(var.type)
            const = False
            for _ in range(_btf.MAX_RESOLVE_DEPTH):
                if t.kind == _btf.CONST:
                    const = True
                if t.kind not in (_btf.CONST, _btf.VOLATILE, _btf.RESTRICT, _btf.TYPE_TAG):
                    break
                t = self.btf.type(t.type)
            out.append(GlobalVar(var.name, sec.name, y.value, size, var.type,
                                 self.btf.type_name(var.type), const))
        return tuple(out)

    # --- programs ----

    def _functions(self) -> list[_Func]:
        funcs = []
        for s in self.sections:
            if not s.flags & SHF_EXECINSTR or s.type != SHT_PROGBITS:
                continue
            if s.size % 8:
                raise ElfError(f"section {s.name!r}: size {s.size} is not a multiple of 8")
            fs = []
            for y in self.symbols:
                if y.shndx != s.index or y.type != STT_FUNC:
                    continue
                if y.value % 8 or y.size % 8 or y.value + y.size > s.size or y.size == 0:
                    raise ElfError(f"function {y.name!r} in section {s.name!r}: offset "
                                   f"{y.value} size {y.size} is not whole instructions "
                                   "inside the section")
                fs.append(_Func(s.index, y.name, y.value // 8, (y.value + y.size) // 8,
                                y.bind != STB_LOCAL))
            fs.sort(key=lambda f: f.start)
            for a, b in zip(fs, fs[1:]):
                if b.start < a.end:
                    raise ElfError(f"section {s.name!r}: functions {a.name!r} and "
                                   f"{b.name!r} overlap")
            funcs += fs
        return funcs

    def _func_at(self, section: int, slot: int, where: str) -> _Func:
        for f in self.funcs:
            if f.section == section and f.start == slot:
                return f
        sname = self.sections[section].name if 0 <= section < len(self.sections) else section
        raise ElfError(f"{where}: call target {sname}+{slot * 8} is not the start of a "
                       "function")

    def _program(self, main: _Func) -> ElfProgram:
        try:
            return self._link(main)
        except BpfError as e:
            sec = self.sections[main.section].name
            return ElfProgram(main.name, sec, prog_type_for_section(sec), (), (),
                              self.license, problem=e)

    def _link(self, main: _Func) -> ElfProgram:
        """bpf_object__reloc_code: relocate the program, append each called subprogram
        once (then relocate it too), fix call offsets."""
        e = "<" if self.bo == "little" else ">"
        code = bytearray()
        placed: dict[tuple[int, int], int] = {}
        order: list[_Func] = []

        def place(f: _Func) -> int:
            key = (f.section, f.start)
            if key not in placed:
                placed[key] = len(code) // 8
                order.append(f)
                code.extend(self.sections[f.section].data[f.start * 8:f.end * 8])
            return placed[key]

        place(main)
        k = 0
        while k < len(order):
            f = order[k]
            k += 1
            base = placed[(f.section, f.start)]
            sec = self.sections[f.section]
            if self.btf_ext is not None and self.btf_ext.core_relocs.get(sec.name):
                cos = [r for r in self.btf_ext.core_relocs[sec.name]
                       if f.start * 8 <= r.insn_off < f.end * 8]
                if cos and self.core_btf is None:
                    raise UnsupportedError("CO-RE relocations without a target BTF "
                                           "(core_btf)",
                                           f"section {sec.name!r} offset {cos[0].insn_off} "
                                           f"(function {f.name!r})")
                for r in cos:
                    where = (f"section {sec.name!r} offset {r.insn_off} (function "
                             f"{f.name!r}): CO-RE {r.kind_name} {r.access}")
                    if r.insn_off % 8:
                        raise ElfError(f"{where}: not on an instruction boundary")
                    lval, tval = _core.core_value(self.btf, self.core_btf, r, where)
                    _core.patch_insn(code, (base + r.insn_off // 8 - f.start) * 8,
                                     lval, tval, self.bo, where)
            rel = {r.offset: r for r in self.relocs.get(f.section, [])
                   if f.start * 8 <= r.offset < f.end * 8}
            for r in rel.values():
                if r.offset % 8:
                    raise ElfError(f"section {sec.name!r} offset {r.offset}: relocation not "
                                   "on an instruction boundary")
            local = 0
            n = f.end - f.start
            while local < n:
                pos = (base + local) * 8
                off = (f.start + local) * 8
                opcode, regs = code[pos], code[pos + 1]
                src = regs >> 4 if self.bo == "little" else regs & 0xF
                where = f"section {sec.name!r} offset {off} (function {f.name!r})"
                r = rel.get(off)
                is_lddw = opcode == isa.LDDW
                if is_lddw and local + 1 >= n:
                    raise ElfError(f"{where}: lddw is missing its second slot")
                if r is not None:
                    self._apply(r, code, pos, where, e, place)
                elif opcode == isa.BPF_JMP | isa.BPF_CALL and src == isa.BPF_PSEUDO_CALL:
                    imm = struct.unpack_from(e + "i", code, pos + 4)[0]
                    tgt = f.start + local + imm + 1
                    tf = self._func_at(f.section, tgt, where)
                    self._set_call(code, pos, place(tf), base + local, e)
                elif is_lddw and src != 0:
                    raise UnsupportedError(f"lddw with src {src} "
                                           f"({isa.PSEUDO_LDDW_NAMES.get(src, '?')}) in an "
                                           "object file", where)
                local += 2 if is_lddw else 1
        try:
            insns = tuple(isa.decode(bytes(code), self.bo))
        except BpfError as ex:
            raise ElfError(f"program {main.name!r} (section "
                           f"{self.sections[main.section].name!r}): {ex}") from None
        lines = self._lines(order, placed)
        sec_name = self.sections[main.section].name
        return ElfProgram(main.name, sec_name, prog_type_for_section(sec_name), insns,
                          tuple(f.name for f in order[1:]), self.license, lines,
                          tuple(placed[(f.section, f.start)] for f in order))

    def _set_call(self, code: bytearray, pos: int, target_slot: int, slot: int, e: str):
        struct.pack_into(e + "i", code, pos + 4, target_slot - (slot + 1))

    def _apply(self, r: _Reloc, code: bytearray, pos: int, where: str, e: str, place) -> None:
        sym = self._symbol(r.sym, where)
        opcode, regs = code[pos], code[pos + 1]
        tname = RELOC_NAMES.get(r.type, f"type {r.type}")
        sname = sym.name
        if not sname and sym.type == STT_SECTION and 0 < sym.shndx < len(self.sections):
            sname = self.sections[sym.shndx].name
        where = f"{where}: relocation {tname} against symbol {sname or '?'!r}"
        if r.type == R_BPF_64_32:
            src = regs >> 4 if self.bo == "little" else regs & 0xF
            if opcode == isa.BPF_JMP | isa.BPF_CALL and sym.shndx == SHN_UNDEF:
                raise UnsupportedError("calls to kernel functions (kfuncs)", where)
            if opcode != isa.BPF_JMP | isa.BPF_CALL or src != isa.BPF_PSEUDO_CALL:
                raise ElfError(f"{where}: not on a bpf-to-bpf call (opcode 0x{opcode:02x})")
            if not 0 < sym.shndx < len(self.sections) or \
                    self.sections[sym.shndx].name != ".text":
                raise ElfError(f"{where}: call target is not in .text")
            imm = struct.unpack_from(e + "i", code, pos + 4)[0]
            # libbpf: sub_insn_idx = sym_off / BPF_INSN_SZ + insn->imm + 1
            if sym.value % 8:
                raise ElfError(f"{where}: symbol value {sym.value} is not an instruction")
            tgt = sym.value // 8 + imm + 1
            tf = self._func_at(sym.shndx, tgt, where)
            self._set_call(code, pos, place(tf), pos // 8, e)
            return
        if r.type != R_BPF_64_64:
            raise ElfError(f"{where}: relocation type not supported in code")
        if opcode != isa.LDDW:
            raise ElfError(f"{where}: not on an lddw instruction (opcode 0x{opcode:02x})")
        if sym.shndx == SHN_UNDEF:
            raise UnsupportedError("extern variables (kconfig, ksym)", where)
        if not 0 < sym.shndx < len(self.sections):
            raise ElfError(f"{where}: symbol in section index {sym.shndx}")
        tsec = self.sections[sym.shndx]
        lo = struct.unpack_from(e + "i", code, pos + 4)[0]
        if tsec.flags & SHF_EXECINSTR:
            # a callback's address (bpf_loop, bpf_for_each_map_elem, timers): libbpf
            # RELO_SUBPROG_ADDR, sub_insn_idx = sym_off / 8 + insn->imm / 8, then the
            # lddw becomes src=BPF_PSEUDO_FUNC with imm relative to the next slot
            if tsec.name != ".text" or sym.type not in (STT_FUNC, STT_SECTION) \
                    or lo % 8 or sym.value % 8:
                raise ElfError(f"{where}: a subprogram address must name a function in "
                               ".text")
            tf = self._func_at(sym.shndx, sym.value // 8 + lo // 8, where)
            self._set_lddw(code, pos, isa.BPF_PSEUDO_FUNC, 0, 0, e)
            self._set_call(code, pos, place(tf), pos // 8, e)
            return
        if (sym.shndx, sym.value) in self.map_at and tsec.name in (".maps", "maps"):
            idx = self.map_at[(sym.shndx, sym.value)]
            if lo != 0:
                raise ElfError(f"{where}: map reference with addend {lo}")
            self._set_lddw(code, pos, isa.BPF_PSEUDO_MAP_IDX, idx, 0, e)
            return
        if sym.shndx in self.data_map:
            idx = self.data_map[sym.shndx]
            off = lo + sym.value
            if not 0 <= off < tsec.size:
                raise ElfError(f"{where}: offset {off} outside section {tsec.name!r} "
                               f"({tsec.size} bytes)")
            self._set_lddw(code, pos, isa.BPF_PSEUDO_MAP_IDX_VALUE, idx, off, e)
            return
        if tsec.name in (".maps", "maps"):
            raise ElfError(f"{where}: no map definition at offset {sym.value} of "
                           f"section {tsec.name!r}")
        raise ElfError(f"{where}: symbol is in section {tsec.name!r}, which holds no maps "
                       "or global data")

    def _set_lddw(self, code: bytearray, pos: int, src: int, imm_lo: int, imm_hi: int,
                  e: str) -> None:
        regs = code[pos + 1]
        if self.bo == "little":
            code[pos + 1] = (regs & 0x0F) | (src << 4)
        else:
            code[pos + 1] = (regs & 0xF0) | src
        struct.pack_into(e + "I", code, pos + 4, imm_lo)
        struct.pack_into(e + "I", code, pos + 12, imm_hi)

    def _lines(self, order: list[_Func], placed) -> tuple[LineRef, ...]:
        if self.btf_ext is None:
            return ()
        out = []
        for f in order:
            sec = self.sections[f.section].name
            base = placed[(f.section, f.start)]
            for li in self.btf_ext.line_info.get(sec, ()):
                if f.start * 8 <= li.insn_off < f.end * 8 and li.insn_off % 8 == 0:
                    out.append(LineRef(base + li.insn_off // 8 - f.start, li.file, li.line,
                                       li.col, li.line_text))
        out.sort(key=lambda x: x.slot)
        return tuple(out)
