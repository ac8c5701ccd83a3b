"""What `bpfkit inspect prog.o` shows, as plain data: programs (section, name, type,
instruction count, subprograms, helpers called), maps (type, key/value sizes and BTF
types, max_entries, flags), global variables and the resolved relocations of each
program -- the view of bpftool and llvm-objdump in one place.  `describe` returns a
JSON-ready dict; `format_text` renders it."""
from __future__ import annotations

from . import isa
import os

from .elf import ElfObject, _T
from .helper_ids import helper_name
from .maps.consts import MapType

__all__ = ["describe", "format_text", "source_listing"]

_TYPE_NAMES = {v: k for k, v in _T.items()}


def _map_type_name(t: int) -> str:
    try:
        return MapType(t).name.lower()
    except ValueError:
        return str(t)


def _program(obj: ElfObject, p) -> dict:
    d = {"name": p.name, "section": p.section,
         "type": _TYPE_NAMES.get(p.prog_type) if p.prog_type is not None else None}
    if p.problem is not None:
        d["problem"] = str(p.problem)
        return d
    helpers, relocs = set(), []
    names = [m.name for m in obj.maps]
    starts = dict(zip(p.func_starts, (p.name, *p.subprograms)))
    for slot, i in zip(isa.slot_indices(p.insns), p.insns):
        if i.opcode == isa.BPF_JMP | isa.BPF_CALL and i.src == 0:
            helpers.add((i.imm, helper_name(i.imm)))
        elif i.opcode == isa.BPF_JMP | isa.BPF_CALL and i.src == isa.BPF_PSEUDO_CALL:
            relocs.append({"slot": slot, "kind": "call",
                           "target": starts.get(slot + 1 + i.imm, slot + 1 + i.imm)})
        elif i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX:
            relocs.append({"slot": slot, "kind": "map", "target": names[i.imm]})
        elif i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX_VALUE:
            relocs.append({"slot": slot, "kind": "map_value",
                           "target": f"{names[i.imm & 0xFFFFFFFF]}+{i.imm >> 32}"})
        elif i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_FUNC:
            relocs.append({"slot": slot, "kind": "func",
                           "target": starts.get(slot + 1 + i.imm, slot + 1 + i.imm)})
    d.update(insns=len(p.insns), slots=sum(i.slots for i in p.insns),
             subprograms=list(p.subprograms),
             helpers=[{"id": h, "name": n} for h, n in sorted(helpers)],
             relocations=relocs, line_info=len(p.lines))
    return d


def describe(obj: ElfObject) -> dict:
    """A JSON-ready description of a loaded object."""
    maps = []
    for m in obj.maps:
        s = m.spec
        maps.append({"name": m.name, "kind": m.kind, "type": _map_type_name(s.type),
                     "key_size": s.key_size, "value_size": s.value_size,
                     "max_entries": s.max_entries, "flags": s.flags,
                     "key_type": m.key_type, "value_type": m.value_type})
    variables = []
    data = {m.name: m.initial for m in obj.maps if m.initial is not None}
    for v in obj.variables().values():
        raw = data[v.section][v.offset:v.offset + v.size]
        variables.append({"name": v.name, "section": v.section, "offset": v.offset,
                          "size": v.size, "type": v.type_name, "const": v.const,
                          "initial": raw.hex()})
    return {"path": obj.path, "license": obj.license,
            "btf_types": len(obj.btf.types) - 1 if obj.btf else 0,
            "programs": [_program(obj, p) for p in obj.programs],
            "maps": maps, "variables": variables}


def format_text(d: dict) -> str:
    out = [f"{d['path'] or 'object'}: license {d['license']!r}, "
           f"{len(d['programs'])} program(s), {len(d['maps'])} map(s), "
           f"{d['btf_types']} BTF types", "", "programs:"]
    for p in d["programs"]:
        head = f"  {p['name']}  section {p['section']}  type {p['type'] or '?'}"
        if "problem" in p:
            out.append(head + f"  NOT LOADABLE: {p['problem']}")
            continue
        out.append(head + f"  {p['insns']} insns ({p['slots']} slots)")
        if p["subprograms"]:
            out.append(f"    subprograms: {', '.join(p['subprograms'])}")
        if p["helpers"]:
            out.append("    helpers: " + ", ".join(f"{h['name']} ({h['id']})"
                                                  for h in p["helpers"]))
        for r in p["relocations"]:
            out.append(f"    {r['slot']:5d}: {r['kind']:9s} {r['target']}")
    out += ["", "maps:"]
    for m in d["maps"]:
        kv = ""
        if m["key_type"] or m["value_type"]:
            kv = f"  <{m['key_type'] or '?'}, {m['value_type'] or '?'}>"
        out.append(f"  {m['name']}  {m['type']}  key {m['key_size']}  value "
                   f"{m['value_size']}  max_entries {m['max_entries']}  flags "
                   f"0x{m['flags']:x}{kv}")
    if d["variables"]:
        out += ["", "global variables:"]
        for v in d["variables"]:
            out.append(f"  {v['section']}+{v['offset']}  {v['type']} {v['name']}  "
                       f"({v['size']} bytes) = {v['initial']}")
    return "\n".join(out) + "\n"


def source_listing(obj: ElfObject, name: str | None = None, *, section: str | None = None,
                   syntax: str = "llvm") -> str:
    """The program's listing (Program.listing in `syntax`) with the source line of BTF
    line info before the instructions it covers, as bpftool's `linum` dump shows them:
    ``; <source text> @ <file>:<line>:<col>``.  Without line info: the plain listing."""
    p = obj.find_program(name, section=section)
    prog = obj.program(p.name, section=p.section,
                       prog_type=p.prog_type if p.prog_type is not None else "xdp")
    lines = prog.listing(syntax).splitlines(keepends=True)
    at: dict[int, list[str]] = {}
    for ln in p.lines:
        if ln.text:
            at.setdefault(ln.slot, []).append(
                f"; {ln.text.strip()} @ {os.path.basename(ln.file)}:{ln.line}:{ln.col}\n")
    out = []
    for slot, text in zip(isa.slot_indices(prog.insns), lines):
        out += at.get(slot, [])
        out.append(text)
    return "".join(out)
