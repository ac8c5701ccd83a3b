"""The bpf_conformance suite (../shared/corpus/bpf_conformance, cpu v4) on the reference
interpreter: every case in tests/*.data must give its `-- result`; every case in
negative/ must be refused (by the assembler, the strict decoder, the .data parser) or
disagree with its expectation — the suite's own check that a runner can fail."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bpfkit.errors import AsmError, EncodingError
from bpfkit.ebpf import asm, disasm, isa
from bpfkit.ebpf.interp import HelperExit, Interpreter, Options

SECTIONS = ("asm", "mem", "result", "error", "raw", "c", "no register offset")


class DataFormatError(Exception):
    pass


def parse_data(text: str) -> dict[str, str]:
    """Split a .data file into its sections (bpf_test_parser.cc's format): lines
    '-- NAME' start a section; text before the first one is a comment."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("-- "):
            name = line[3:].strip()
            if name not in SECTIONS:
                raise DataFormatError(f"unknown directive {line!r}")
            cur = out.setdefault(name, [])
            continue
        if cur is not None:
            cur.append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _hex_bytes(text: str) -> bytearray:
    return bytearray(bytes.fromhex(re.sub(r"#.*", "", text).replace("\n", " ")))


def _unwind(memory, r1, *_):
    # uBPF's conformance plugin registers helper 5 as "unwind": it returns its argument
    # and, when that is 0, stops the program with r0 = 0 (ubpf_plugin.cc).  The two
    # cases that call it (call_unwind_fail, callx) pass -1, so the program continues.
    if r1 == 0:
        raise HelperExit(0)
    return r1


OPTIONS = Options(helpers={5: _unwind}, callx_helpers=True)


def run_case(sections: dict[str, str]):
    """(expected, got) for one positive case: both 64-bit results."""
    insns = asm.assemble(sections["asm"], "conformance")
    mem = _hex_bytes(sections["mem"]) if "mem" in sections else None
    res = Interpreter(insns, OPTIONS).run(mem=mem if mem is not None else bytearray())
    expected = int(sections["result"].split()[0], 16)
    return expected, res


def _cases(shared: Path, sub: str):
    return sorted((shared / "corpus" / "bpf_conformance" / sub).glob("*.data"))


def test_every_positive_case(shared_dir):
    files = _cases(shared_dir, "tests")
    assert len(files) == 313
    passed, failures = 0, []
    for f in files:
        sections = parse_data(f.read_text())
        expected, res = run_case(sections)
        if res.fault is None and res.retval == expected:
            passed += 1
        else:
            failures.append((f.name, hex(expected), hex(res.retval), res.fault))
    assert failures == [] and passed == 313, failures


def test_raw_sections_match_assembler(shared_dir):
    # lddw.data carries the suite's own encoding as 64-bit words (-- raw)
    sections = parse_data((shared_dir / "corpus/bpf_conformance/tests/lddw.data").read_text())
    words = [int(w, 16) for w in sections["raw"].split()]
    raw = b"".join(w.to_bytes(8, "little") for w in words)
    assert isa.decode(raw, strict=True) == asm.assemble(sections["asm"], "conformance")


def test_every_positive_case_round_trips_through_both_syntaxes(shared_dir):
    for f in _cases(shared_dir, "tests"):
        insns = asm.assemble(parse_data(f.read_text())["asm"], "conformance")
        for syntax in ("conformance", "llvm"):
            assert asm.assemble(disasm.disasm(insns, syntax), syntax) == insns, (f.name, syntax)


# how each negative case must fail: the kind of refusal, and for the assembler the
# line:col of the error (line numbers count within the -- asm section)
NEGATIVE = {
    "empty.data": ("no program", None),
    "empty_instructions.data": ("no program", None),
    "error.data": ("expects error, runs fine", None),
    "incorrect_return_value_high_bits.data": ("wrong result", None),
    "invalid_imm32_dec_range.data": ("asm", (2, 12)),
    "invalid_imm32_hex_range.data": ("asm", (2, 12)),
    "invalid_label.data": ("asm", (1, 4)),
    "invalid_lock.data": ("asm", (1, 1)),
    "invalid_lock2.data": ("asm", (1, 1)),
    "invalid_mnemonic.data": ("asm", (2, 1)),
    "invalid_offset.data": ("asm", (1, 11)),
    "invalid_offset_range.data": ("asm", (2, 15)),
    "invalid_operand_count.data": ("asm", (1, 1)),
    "invalid_register.data": ("asm", (1, 10)),
    "invalid_unknown_directive.data": ("data format", None),
}


def test_every_negative_case_fails(shared_dir):
    files = _cases(shared_dir, "negative")
    assert len(files) == 60
    outcomes = {}
    for f in files:
        text = f.read_text()
        try:
            sections = parse_data(text)
        except DataFormatError:
            outcomes[f.name] = ("data format", None)
            continue
        if "raw" in sections:
            raw = _hex_bytes(sections["raw"])
            with pytest.raises(EncodingError, match="reserved field"):
                isa.decode(raw, strict=True)
            outcomes[f.name] = ("reserved field", None)
            continue
        if "asm" not in sections:
            outcomes[f.name] = ("no program", None)
            continue
        try:
            insns = asm.assemble(sections["asm"], "conformance")
        except AsmError as e:
            outcomes[f.name] = ("asm", (e.line, e.col))
            continue
        res = Interpreter(insns, OPTIONS).run(
            mem=_hex_bytes(sections["mem"]) if "mem" in sections else bytearray())
        if "error" in sections:
            assert res.fault is None
            outcomes[f.name] = ("expects error, runs fine", None)
        else:
            assert res.retval != int(sections["result"].split()[0], 16)
            outcomes[f.name] = ("wrong result", None)
    unused = {n for n in outcomes if n.startswith("unused-")}
    assert len(unused) == 45 and all(outcomes[n] == ("reserved field", None) for n in unused)
    assert {n: o for n, o in outcomes.items() if n not in unused} == NEGATIVE
