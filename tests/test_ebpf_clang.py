"""`disasm.listing` of clang-built code equals `llvm-objdump -d --no-show-raw-insn`
line by line (after removing objdump's symbol headers and '<LBB0_3>' annotations),
and the listing assembles back to the same bytes."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bpfkit.ebpf import asm, disasm, isa

pytestmark = pytest.mark.clang

SRC = Path(__file__).parent / "data" / "ebpf" / "disasm_sample.c"
BUILDS = {
    "v1": ["-mcpu=v1"],
    "v2": ["-mcpu=v2"],
    "v3": ["-mcpu=v3", "-DWITH_V3_ATOMICS"],
}


def _objdump_lines(obj: Path, section: str, alu32: bool) -> list[str]:
    args = ["llvm-objdump", "-d", "--no-show-raw-insn", f"--section={section}"]
    if alu32:
        args.append("--mattr=+alu32")
    out = subprocess.run(args + [str(obj)], check=True, capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\t(.*)$", line)
        if m:
            lines.append(re.sub(r"\s*<[^<>]*>$", "", m.group(1)).strip())
    return lines


@pytest.fixture(scope="module", params=sorted(BUILDS))
def build(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("clang")
    obj = d / "sample.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", *BUILDS[request.param],
                    "-I/usr/include/x86_64-linux-gnu", "-c", str(SRC), "-o", str(obj)],
                   check=True, capture_output=True)
    return obj, d


@pytest.mark.parametrize("section", [".text", "xdp"])
@pytest.mark.parametrize("alu32", [False, True])
def test_listing_matches_llvm_objdump(build, section, alu32):
    obj, d = build
    raw_path = d / (section.strip(".") + ".bin")
    subprocess.run(["llvm-objcopy", "-O", "binary", f"--only-section={section}", str(obj),
                    str(raw_path)], check=True, capture_output=True)
    insns = isa.decode(raw_path.read_bytes(), strict=True)
    ours = [line.split(":\t", 1)[1] for line in disasm.listing(insns, alu32=alu32).splitlines()]
    # a local call: verifier-log "call pc-1" is objdump's "call -1"
    ours = [re.sub(r"^call pc\+?", "call ", o) for o in ours]
    theirs = _objdump_lines(obj, section, alu32)
    assert ours == theirs
    assert len(ours) > 10
    assert asm.assemble(disasm.disasm(insns)) == insns
