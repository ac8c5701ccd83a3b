"""`bpfkit inspect`: the JSON agrees with llvm-objdump (helpers called: the `call N`
lines of the program's section and of .text) and llvm-readelf (one map/global-data
reference per R_BPF_64_64 relocation of the section), and with test_elf_load's
expectations for the maps; bad input exits 2 with a one-line error."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from test_elf_load import EXPECT, OBJECTS, build_object, readelf_relocs

pytestmark = pytest.mark.clang


def _inspect(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["bpfkit", "inspect", *args], capture_output=True, text=True,
                          timeout=120)


def _objdump_helper_calls(obj, section: str) -> set[int]:
    out = subprocess.run(["llvm-objdump", "-d", f"--section={section}", str(obj)],
                         check=True, capture_output=True, text=True).stdout
    # helper calls have src_reg 0: raw bytes "85 00 ..."; bpf-to-bpf calls are "85 10"
    return {int(m.group(1)) for m in re.finditer(r"\t85 00 00 00 [0-9a-f ]+\tcall (\d+)", out)}


@pytest.mark.parametrize("stem", OBJECTS)
def test_inspect_json(stem):
    obj = build_object(stem)
    r = _inspect("--json", str(obj))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    exp = EXPECT[stem]
    assert [(m["name"], m["key_size"], m["value_size"], m["max_entries"], m["flags"])
            for m in d["maps"]] == [(n, k, v, e, f) for n, _t, k, v, e, f in exp["maps"]]
    relocs = readelf_relocs(obj)
    for p in d["programs"]:
        called = _objdump_helper_calls(obj, p["section"])
        if p["subprograms"]:
            called |= _objdump_helper_calls(obj, ".text")
        assert {h["id"] for h in p["helpers"]} <= called
        if len(d["programs"]) == 1:
            assert {h["id"] for h in p["helpers"]} == called
            refs = [x for x in p["relocations"] if x["kind"] in ("map", "map_value")]
            n64 = [x for x in relocs.get(p["section"], []) if x[1] == "R_BPF_64_64"]
            n64 += [x for x in relocs.get(".text", []) if x[1] == "R_BPF_64_64"]
            funcs = [x for x in p["relocations"] if x["kind"] == "func"]
            assert len(refs) + len(funcs) == len(n64)


def test_inspect_text_and_errors(tmp_path):
    r = _inspect(str(build_object("xdp_flows")))
    assert r.returncode == 0
    assert "flows  hash  key 16  value 16  max_entries 256  flags 0x0  " \
           "<struct flow_key, struct flow_stats>" in r.stdout
    assert ".rodata+0  const volatile __u16 blocked_port  (2 bytes) = 0000" in r.stdout
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF" + bytes(60))
    r = _inspect(str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "malformed ELF" in r.stderr


@pytest.mark.parametrize("stem", OBJECTS)
def test_source_listing(stem):
    """The annotated listing is the program's listing with one '; text @ file:line:col'
    line per BTF line-info record (test_elf_load checks the texts against the source)
    placed right before the instruction the record covers."""
    from bpfkit.ebpf.elf import open_elf
    from bpfkit.ebpf.elfinfo import source_listing
    o = open_elf(build_object(stem))
    for p in o.programs:
        text = source_listing(o, p.name)
        plain = o.program(p.name, prog_type=p.prog_type or "xdp").listing()
        assert "".join(ln for ln in text.splitlines(True) if not ln.startswith("; ")) == plain
        expected: dict[int, list[str]] = {}
        for ln in p.lines:
            if ln.text:
                expected.setdefault(ln.slot, []).append(
                    f"; {ln.text.strip()} @ {ln.file.rsplit('/', 1)[-1]}:{ln.line}:{ln.col}")
        seen: dict[int, list[str]] = {}
        pending: list[str] = []
        for line in text.splitlines():
            if line.startswith("; "):
                pending.append(line)
            elif pending:
                seen[int(line.split(":")[0])] = pending
                pending = []
        assert seen == expected and not pending
