"""`bpfkit asm` and `bpfkit disasm`: output flags, stdin/stdout, files, errors (exit 2)."""
from __future__ import annotations

import io
import sys

import pytest

import oracles
from bpfkit.cbpf.encodings import format_comma, load_program
from bpfkit.cbpf.program import Program
from bpfkit.cli import main as cli_main

EXPR = "tcp port 80 or udp port 53"


@pytest.fixture
def bpfkit(monkeypatch):
    """main() run in-process, with stdin replaceable."""

    def run(*argv, stdin: bytes | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        return cli_main.main(list(argv))
    return run


def _tcpdump(flag: str) -> str:
    rc, out, err = oracles.tcpdump_compile(EXPR, "EN10MB", flag)
    assert rc == 0, err
    return out


@pytest.mark.tcpdump
@pytest.mark.parametrize("flag", ["-d", "-dd", "-ddd"])
def test_asm_listing_outputs_match_tcpdump(bpfkit, capsys, tmp_path, flag):
    src = tmp_path / "l.txt"
    src.write_text(_tcpdump("-d"))
    assert bpfkit("asm", str(src), flag) == 0
    assert capsys.readouterr().out == _tcpdump(flag)


@pytest.mark.tcpdump
@pytest.mark.parametrize("flag", ["-d", "-dd", "-ddd"])
def test_disasm_stdin_matches_tcpdump(bpfkit, capsys, flag):
    assert bpfkit("disasm", "-", flag, stdin=_tcpdump("-ddd").encode()) == 0
    assert capsys.readouterr().out == _tcpdump(flag)


@pytest.mark.tcpdump
def test_default_output_is_listing(bpfkit, capsys):
    assert bpfkit("disasm", "-", stdin=_tcpdump("-dd").encode()) == 0
    assert capsys.readouterr().out == _tcpdump("-d")


BPF_ASM_SRC = b"ldh [12]\njeq #0x800, ip\nret #0\nip: ret #-1\n"
# ldh [12] = (0x28, 0, 0, 12); jeq with only jt (bpf_exp.y) -> jt 1 to 'ip' (index 3)
BPF_ASM_PROG = Program([(0x28, 0, 0, 12), (0x15, 1, 0, 0x800), (6, 0, 0, 0),
                        (6, 0, 0, 0xFFFFFFFF)])


def test_asm_bpf_asm_to_comma(bpfkit, capsys):
    assert bpfkit("asm", "-", "--comma", stdin=BPF_ASM_SRC) == 0
    out = capsys.readouterr().out
    assert out == format_comma(BPF_ASM_PROG)
    assert out == "4,40 0 0 12,21 1 0 2048,6 0 0 0,6 0 0 4294967295\n"


def test_asm_raw_to_file_and_back(bpfkit, capsys, tmp_path):
    out = tmp_path / "p.bin"
    assert bpfkit("asm", "-", "--raw", "--byteorder", "big", "-o", str(out),
                  stdin=BPF_ASM_SRC) == 0
    assert out.read_bytes() == BPF_ASM_PROG.to_bytes("big")
    assert bpfkit("disasm", str(out), "--byteorder", "big", "--bpf-asm") == 0
    text = capsys.readouterr().out
    assert load_program(text) == BPF_ASM_PROG


def test_asm_raw_to_stdout(bpfkit, capsysbinary):
    assert bpfkit("asm", "-", "--raw", stdin=BPF_ASM_SRC) == 0
    assert capsysbinary.readouterr().out == BPF_ASM_PROG.to_bytes("little")


def test_disasm_forced_format(bpfkit, capsys):
    # "1\n6 0 0 0" would be detected as -ddd too; --format asm makes it assembly -> error
    assert bpfkit("disasm", "-", "--format", "ddd", "-ddd", stdin=b"1\n6 0 0 7\n") == 0
    assert capsys.readouterr().out == "1\n6 0 0 7\n"
    assert bpfkit("disasm", "-", "--format", "asm", stdin=b"1\n6 0 0 7\n") == 2
    assert "expected an instruction mnemonic" in capsys.readouterr().err


def test_asm_rejects_non_assembly(bpfkit, capsys):
    """asm reads assembly only (disasm reads every encoding)."""
    assert bpfkit("asm", "-", stdin=b"1\n6 0 0 0\n") == 2
    assert "1:1: expected an instruction mnemonic" in capsys.readouterr().err


def test_asm_syntax_forced(bpfkit, capsys):
    assert bpfkit("asm", "-", "--syntax", "tcpdump", stdin=BPF_ASM_SRC) == 2
    assert "is bpf_asm syntax" in capsys.readouterr().err


@pytest.mark.parametrize("argv,stdin,msg", [
    (["asm", "/nonexistent/x.s"], None,
     "bpfkit asm: error: /nonexistent/x.s: cannot read program: No such file or directory"),
    (["disasm", "-"], b"2\n6 0 0 0\n",
     "bpfkit disasm: error: <stdin>: line 1: instruction count mismatch: the count says 2, "
     "found 1 instructions"),
    (["asm", "-"], b"ldh [12]\nldh x\n",
     "bpfkit asm: error: <stdin>: 2:5: expected '[k]', '[x + k]' or '#extension' after "
     "'ldh', found 'x'"),
])
def test_errors_exit_2(bpfkit, capsys, argv, stdin, msg):
    assert bpfkit(*argv, stdin=stdin) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[0] == msg


def test_output_flags_are_exclusive(bpfkit, capsys):
    with pytest.raises(SystemExit) as ei:
        bpfkit("asm", "x", "-d", "-dd")
    assert ei.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["asm", "disasm"])
def test_help_has_examples(bpfkit, capsys, cmd):
    with pytest.raises(SystemExit) as ei:
        bpfkit(cmd, "--help")
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"bpfkit {cmd}" in out
    for flag in ("-dd", "-ddd", "--comma", "--raw", "--bpf-asm"):
        assert flag in out
