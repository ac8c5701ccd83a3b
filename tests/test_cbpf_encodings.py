"""Program encodings: writers, parsers, detection, read_program.

The writers are compared with tcpdump's own -dd/-ddd output over the whole corpus in
test_cbpf_disasm.py; the golden strings here follow bpf_dump's printf formats
(`{ 0x%x, %d, %d, 0x%08x },` and `%u %u %u %u`).
"""
from __future__ import annotations

import io
import struct
import sys

import pytest
from hypothesis import given, settings, strategies as st

from bpfkit.cbpf.encodings import (detect_format, format_comma, format_dd, format_ddd,
                                   format_program, format_raw, load_program, parse_comma,
                                   parse_ddd, parse_dd, read_program)
from bpfkit.cbpf.program import Insn, Program
from bpfkit.errors import AsmError, BpfError, EncodingError

# ldh [12]; jeq #0x800 jt 0 jf 1; ret #262144; ret #0  ('ip' on Ethernet)
IP = Program([Insn(0x28, 0, 0, 12), Insn(0x15, 0, 1, 0x800), Insn(0x6, 0, 0, 262144),
              Insn(0x6, 0, 0, 0)])

DD = ("{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 1, 0x00000800 },\n"
      "{ 0x6, 0, 0, 0x00040000 },\n{ 0x6, 0, 0, 0x00000000 },\n")
DDD = "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n"
COMMA = "4,40 0 0 12,21 0 1 2048,6 0 0 262144,6 0 0 0\n"
# struct sock_filter little-endian: u16 code, u8 jt, u8 jf, u32 k
RAW_LE = b"".join(struct.pack("<HBBI", *t) for t in IP.as_tuples())
RAW_BE = b"".join(struct.pack(">HBBI", *t) for t in IP.as_tuples())
LISTING = ("(000) ldh      [12]\n(001) jeq      #0x800           jt 2\tjf 3\n"
           "(002) ret      #262144\n(003) ret      #0\n")


def test_writers_golden():
    assert format_dd(IP) == DD
    assert format_ddd(IP) == DDD
    assert format_comma(IP) == COMMA
    assert format_raw(IP) == RAW_LE
    assert format_raw(IP, "big") == RAW_BE
    assert format_program(IP, "tcpdump") == LISTING
    assert format_program(IP, "bpf_asm") == ("    ldh [12]\n    jneq #0x800, L3\n"
                                             "    ret #262144\nL3: ret #0\n")


@pytest.mark.parametrize("data,fmt", [
    (DD, "dd"), (DDD, "ddd"), (COMMA, "comma"), (RAW_LE, "raw"), (RAW_BE, "raw"),
    (LISTING, "asm"), ("ldh [12]\nret #0\n", "asm"), (DD.encode(), "dd"), (DDD.encode(), "ddd"),
    ("  \n\t" + DDD, "ddd"), (" 4, 40 0 0 12", "comma"), ("4,\n40 0 0 12", "comma"),
    ("; bpf_asm comment\nret #0", "asm"), ("/* c */ ret #0", "asm"),
    ("# comment\nret #0", "asm"),
])
def test_detect_format(data, fmt):
    assert detect_format(data) == fmt


@pytest.mark.parametrize("data,byteorder", [
    (DD, "little"), (DDD, "little"), (COMMA, "little"), (RAW_LE, "little"), (RAW_BE, "big"),
    (LISTING, "little"), (DD.encode(), "little"),
    ("4,40 0 0 12,21 0 1 2048,6 0 0 262144,6 0 0 0,", "little"),   # tc's trailing comma
    ("4\n\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0", "little"),
    # bpf_asm -c prints `{ %#04x, %2u, %2u, %#010x },`: zero k comes out as 0000000000
    ("{ 0x28,  0,  0, 0x0000000c },\n{ 0x15,  0,  1, 0x00000800 },\n"
     "{ 0x06,  0,  0, 0x00040000 },\n{ 0x06,  0,  0, 0000000000 },\n", "little"),
    # bpf_asm without -c prints `%u,` then `%u %u %u %u,` each: the comma form
    ("4,40 0 0 12,21 0 1 2048,6 0 0 262144,6 0 0 0,\n", "little"),
    ("{ 0x28, 0, 0, 12 },\n{ 0x15, 0, 01, 0x800U },\n// c\n{ 0x6, 0, 0, 0x40000 },\n"
     "{ 6, 0, 0, 0 }\n", "little"),                      # C literals: decimal, octal, suffix
])
def test_load_program_auto(data, byteorder):
    assert load_program(data, byteorder=byteorder) == IP


def test_every_ret_program_is_detected_as_raw():
    """The detection argument of the module doc: a ret's code byte is a control byte."""
    for code in (0x06, 0x16):
        for order in ("little", "big"):
            raw = Program([Insn(code, 0x41, 0x41, 0x41414141)]).to_bytes(order)
            assert detect_format(raw) == "raw"


def test_printable_raw_needs_fmt_raw():
    raw = b"ld  AAAA"          # code 0x646c, jt ' ', jf ' ', k 'AAAA': all printable
    assert detect_format(raw) == "asm"
    assert load_program(raw, fmt="raw").as_tuples() == [(0x646C, 0x20, 0x20, 0x41414141)]


def test_meta_passed_through():
    p = load_program(DDD, linktype=1, snaplen=100)
    assert (p.linktype, p.snaplen) == (1, 100)


# (data, fmt, expected message start)
ERRORS = [
    ("3\n40 0 0 12\n6 0 0 0\n", "auto",
     "line 1: instruction count mismatch: the count says 3, found 2 instructions"),
    ("2\n40 0 0\n6 0 0 0\n", "auto", "line 2: expected 4 fields 'code jt jf k', found 3"),
    ("1\n40 0 256 12\n", "auto", "line 2: field jf: expected 0..255, found 256"),
    ("1\n65536 0 0 0\n", "auto", "line 2: field code: expected 0..65535, found 65536"),
    ("1\n6 0 0 4294967296\n", "auto", "line 2: field k: expected -2147483648..4294967295"),
    ("1\n6 0 0 0x10\n", "auto", "line 2: field k: expected a decimal number"),
    ("0\n", "auto", "line 1: empty program"),
    ("x\n6 0 0 0", "ddd", "line 1: expected the instruction count (tcpdump -ddd), found 'x'"),
    ("3,6 0 0 0,6 0 0 1", "auto",
     "item 1 (character 1): instruction count mismatch: the count says 3, found 2"),
    ("2,6 0 0 0,,6 0 0 1", "auto", "item 3 (character 11): expected 'code jt jf k', found an "
                                   "empty item"),
    ("2,6 0 0 0,6 0 x 1", "auto", "item 3 (character 11): field jf: expected a decimal number"),
    ("{ 0x6, 0, 0, 0 },\n{ 0x6, 0, 0 },\n", "auto",
     "line 2: expected 4 fields 'code jt jf k', found 3"),
    ("{ 0x6, 0, 0, 0 },\nret #0\n", "auto",
     "line 2: expected '{ code, jt, jf, k },' (tcpdump -dd), found 'ret #0'"),
    ("{ 0x6, 0, 0, 0x1zz },", "auto", "line 1: field k: expected a C integer"),
    (b"\x06\x00\x00\x00\x00\x00\x00", "auto",
     "raw program length 7 is not a multiple of 8"),
    (b"", "auto", "empty input"),
    ("   \n", "auto", "empty input"),
    (b"", "raw", "empty raw program"),
    ("ret #0", "raw", "raw format needs bytes"),
    (b"\xff\xfe", "ddd", "byte offset 0: expected text for format 'ddd', found byte 0xff"),
    ("ret #0", "pdf", "unknown program format 'pdf'"),
]


@pytest.mark.parametrize("data,fmt,msg", ERRORS, ids=[m[:40] for _, _, m in ERRORS])
def test_errors(data, fmt, msg):
    with pytest.raises(EncodingError) as ei:
        load_program(data, fmt=fmt)
    assert str(ei.value).startswith(msg), str(ei.value)


def test_asm_errors_come_through():
    with pytest.raises(AsmError, match="^1:5: "):
        load_program("ldh x\n")
    with pytest.raises(AsmError, match="'ret a' is bpf_asm syntax"):
        load_program("ret a\n", fmt="tcpdump")


# --- round trips over random programs (any field values) -------------------------------

insns = st.builds(Insn, st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255),
                  st.integers(0, 0xFFFFFFFF))
progs = st.lists(insns, min_size=1, max_size=30).map(Program)


@settings(max_examples=300, deadline=None)
@given(progs)
def test_roundtrip_every_numeric_encoding(prog):
    for fmt in ("dd", "ddd", "comma"):
        text = format_program(prog, fmt)
        assert load_program(text) == prog, fmt
        assert load_program(text, fmt=fmt) == prog, fmt
    for order in ("little", "big"):
        raw = format_raw(prog, order)
        assert load_program(raw, fmt="raw", byteorder=order) == prog


@settings(max_examples=100, deadline=None)
@given(progs)
def test_parsers_agree(prog):
    assert parse_dd(format_dd(prog)) == parse_ddd(format_ddd(prog)) == \
        parse_comma(format_comma(prog)) == prog


# --- read_program ------------------------------------------------------------------------

def test_read_program_file_and_stdin(tmp_path, monkeypatch):
    f = tmp_path / "p.bin"
    f.write_bytes(RAW_BE)
    assert read_program(str(f), byteorder="big") == IP
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(COMMA.encode())))
    assert read_program("-") == IP


def test_read_program_missing_file(tmp_path):
    path = str(tmp_path / "nope.bpf")
    with pytest.raises(BpfError) as ei:
        read_program(path)
    assert not isinstance(ei.value, OSError)
    assert str(ei.value).startswith(f"{path}: cannot read program: No such file")


def test_read_program_errors_name_the_file(tmp_path):
    f = tmp_path / "bad.s"
    f.write_text("ldh [12]\nldh x\n")
    with pytest.raises(AsmError) as ei:
        read_program(str(f))
    assert str(ei.value).startswith(f"{f}: 2:5: expected")
    assert (ei.value.line, ei.value.col) == (2, 5)
    f.write_text("2\n6 0 0 0\n")
    with pytest.raises(EncodingError, match=f"^{f}: line 1: instruction count mismatch"):
        read_program(str(f))


# --- malformed input never escapes as anything but a BpfError ----------------------------

_PIECES = st.sampled_from(["4", "40 0 0 12", ",", "\n", "{", "}", "0x28", "-1", " ", "x",
                           "6 0 0 0", "99999999999", "ret", "#0", "\x00", "\xff", "é"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=40),
                 st.lists(_PIECES, max_size=20).map(lambda l: "".join(l).encode("utf-8"))))
def test_fuzz_only_bpf_errors(data):
    for fmt in ("auto", "raw", "dd", "ddd", "comma", "asm"):
        try:
            prog = load_program(data, fmt=fmt)
        except BpfError:
            continue
        assert len(prog) >= 1
