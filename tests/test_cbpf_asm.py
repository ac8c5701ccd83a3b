"""Assembler: table-driven cases for both syntaxes and for the error messages.

Expected instructions are derived by hand from the grammar rules named next to each
case (the kernel's tools/bpf/bpf_exp.y / bpf_exp.l for bpf_asm; libpcap's bpf_image for
the listing), with the opcodes built from named fields.  The listing syntax is also
checked against tcpdump itself over the whole corpus in test_cbpf_disasm.py.
"""
from __future__ import annotations

import pytest

from bpfkit.cbpf import isa
from bpfkit.cbpf.asm import assemble, detect_syntax
from bpfkit.cbpf.isa import (BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JA,
                             BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD,
                             BPF_LDX, BPF_LEN, BPF_MEM, BPF_MISC, BPF_MSH, BPF_RET, BPF_W,
                             BPF_X, SKF_AD_OFF)
from bpfkit.errors import AsmError

RET_K = BPF_RET | BPF_K
RET_A = BPF_RET | isa.BPF_A
AD = SKF_AD_OFF & 0xFFFFFFFF          # u32 of the ancillary base


def T(code, jt=0, jf=0, k=0):
    return (code, jt, jf, k & 0xFFFFFFFF)


# (name, source, expected (code, jt, jf, k) tuples)
BPF_ASM_CASES = [
    # the kernel's Documentation/networking/filter.rst ARP example shape: labels, jeq with
    # two labels (rule jeq: '#' number ',' label ',' label -> jt and jf)
    ("two-label jeq",
     "ldh [12]\njeq #0x806, arp, drop\narp: ret #-1\ndrop: ret #0\n",
     [T(BPF_LD | BPF_H | BPF_ABS, k=12), T(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0x806),
      T(RET_K, k=-1), T(RET_K)]),
    # rule jeq '#' number ',' label: only jt set; jf stays 0 (falls through)
    ("one-label jeq falls through",
     "jeq #1, lt\nret #0\nlt: ret #1\n",
     [T(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1), T(RET_K), T(RET_K, k=1)]),
    # rules jneq / jne (same token OP_JNEQ): JEQ with only jf set
    ("jneq and jne",
     "jneq #2, out\njne x, out\nret #1\nout: ret #0\n",
     [T(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 2), T(BPF_JMP | BPF_JEQ | BPF_X, 0, 1),
      T(RET_K, k=1), T(RET_K)]),
    # rule jlt: JGE with jf; rule jle: JGT with jf
    ("jlt jle",
     "jlt #10, out\njle %x, out\nret #1\nout: ret #0\n",
     [T(BPF_JMP | BPF_JGE | BPF_K, 0, 2, 10), T(BPF_JMP | BPF_JGT | BPF_X, 0, 1),
      T(RET_K, k=1), T(RET_K)]),
    ("jgt jge jset with x and k",
     "jgt x, a1, a2\njge #0b101, a2\na1: jset #0x1fff, a2, a2\na2: ret a\n",
     [T(BPF_JMP | BPF_JGT | BPF_X, 1, 2), T(BPF_JMP | BPF_JGE | BPF_K, 1, 0, 5),
      T(BPF_JMP | BPF_JSET | BPF_K, 0, 0, 0x1FFF), T(RET_A)]),
    # rule jmp: OP_JMP label (ja and jmp are the same token); k = target - i - 1
    ("ja and jmp",
     "ja skip\njmp skip\nskip: ret #0\n",
     [T(BPF_JMP | BPF_JA, k=1), T(BPF_JMP | BPF_JA, k=0), T(RET_K)]),
    # rules ldh '[' 'x' '+' number ']' and ldxb number '*' '(' '[' number ']' '&' number ')'
    ("indirect and msh",
     "ldxb 4*([14]&0xf)\nldh [x + 14]\nldb [%x + 0]\nld [x + 2]\nldx 4*([0]&0xf)\nret a\n",
     [T(BPF_LDX | BPF_B | BPF_MSH, k=14), T(BPF_LD | BPF_H | BPF_IND, k=14),
      T(BPF_LD | BPF_B | BPF_IND, k=0), T(BPF_LD | BPF_W | BPF_IND, k=2),
      T(BPF_LDX | BPF_B | BPF_MSH, k=0), T(RET_A)]),
    # extensions (bpf_exp.l: "#"?("proto") etc.) -> BPF_ABS at SKF_AD_OFF + SKF_AD_*;
    # K_PKT_LEN ("#"?"len") -> BPF_LEN
    ("ancillary and len",
     "ld #proto\nldh type\nldb #ifidx\nld #rxhash\nld vlan_pr\nld #rand\nld #len\nldx len\n"
     "ret a\n",
     [T(BPF_LD | BPF_W | BPF_ABS, k=AD + isa.SKF_AD_PROTOCOL),
      T(BPF_LD | BPF_H | BPF_ABS, k=AD + isa.SKF_AD_PKTTYPE),
      T(BPF_LD | BPF_B | BPF_ABS, k=AD + isa.SKF_AD_IFINDEX),
      T(BPF_LD | BPF_W | BPF_ABS, k=AD + isa.SKF_AD_RXHASH),
      T(BPF_LD | BPF_W | BPF_ABS, k=AD + isa.SKF_AD_VLAN_TAG_PRESENT),
      T(BPF_LD | BPF_W | BPF_ABS, k=AD + isa.SKF_AD_RANDOM),
      T(BPF_LD | BPF_W | BPF_LEN), T(BPF_LDX | BPF_W | BPF_LEN), T(RET_A)]),
    # memory, immediates (ld '#' number, ldi, ldxi), stores
    ("memory and immediates",
     "ld M[3]\nldx M[15]\nst M[0]\nstx M[1]\nld #0x10\nldi 7\nldx #-1\nldxi #017\nret x\n",
     [T(BPF_LD | BPF_MEM, k=3), T(BPF_LDX | BPF_MEM, k=15), T(isa.BPF_ST, k=0),
      T(isa.BPF_STX, k=1), T(BPF_LD | BPF_IMM, k=0x10), T(BPF_LD | BPF_IMM, k=7),
      T(BPF_LDX | BPF_IMM, k=-1), T(BPF_LDX | BPF_IMM, k=0o17), T(BPF_RET | BPF_X)]),
    ("alu",
     "add #1\nsub x\nmul #3\ndiv %x\nmod #7\nand #0xff\nor x\nxor #1\nlsh #2\nrsh x\nneg\n"
     "tax\ntxa\nret a\n",
     [T(BPF_ALU | isa.BPF_ADD | BPF_K, k=1), T(BPF_ALU | isa.BPF_SUB | BPF_X),
      T(BPF_ALU | isa.BPF_MUL | BPF_K, k=3), T(BPF_ALU | isa.BPF_DIV | BPF_X),
      T(BPF_ALU | isa.BPF_MOD | BPF_K, k=7), T(BPF_ALU | isa.BPF_AND | BPF_K, k=0xFF),
      T(BPF_ALU | isa.BPF_OR | BPF_X), T(BPF_ALU | isa.BPF_XOR | BPF_K, k=1),
      T(BPF_ALU | isa.BPF_LSH | BPF_K, k=2), T(BPF_ALU | isa.BPF_RSH | BPF_X),
      T(BPF_ALU | isa.BPF_NEG), T(BPF_MISC | isa.BPF_TAX), T(BPF_MISC | isa.BPF_TXA),
      T(RET_A)]),
    # comments: ';' to end of line, /* */ (also across lines), '#' in column 1;
    # %option caseless: mnemonics in any case
    ("comments and case",
     "# header comment\nLDH [12] ; load type\n/* multi\n line */ RET #0\n",
     [T(BPF_LD | BPF_H | BPF_ABS, k=12), T(RET_K)]),
    # numbers: hex, binary, octal, decimal, negative (strtol into u32)
    ("number forms",
     "ld #0x1F\nld #0b11\nld #010\nld #4294967295\nld #-2147483648\nret a\n",
     [T(BPF_LD | BPF_IMM, k=0x1F), T(BPF_LD | BPF_IMM, k=3), T(BPF_LD | BPF_IMM, k=8),
      T(BPF_LD | BPF_IMM, k=0xFFFFFFFF), T(BPF_LD | BPF_IMM, k=0x80000000), T(RET_A)]),
    # a jump of exactly 255 (the largest jt/jf) is fine
    ("jump of 255",
     "jeq #0, far\n" + "ret #1\n" * 255 + "far: ret #0\n",
     [T(BPF_JMP | BPF_JEQ | BPF_K, 255, 0, 0)] + [T(RET_K, k=1)] * 255 + [T(RET_K)]),
]


@pytest.mark.parametrize("name,src,want", BPF_ASM_CASES, ids=[c[0] for c in BPF_ASM_CASES])
def test_bpf_asm(name, src, want):
    assert assemble(src).as_tuples() == want
    assert assemble(src, syntax="bpf_asm").as_tuples() == want


# The listing syntax, as bpf_image prints it: absolute jt/jf and ja targets.
TCPDUMP_CASES = [
    ("numbered",
     "(000) ldh      [12]\n(001) jeq      #0x800           jt 2\tjf 3\n"
     "(002) ret      #262144\n(003) ret      #0\n",
     [T(BPF_LD | BPF_H | BPF_ABS, k=12), T(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0x800),
      T(RET_K, k=262144), T(RET_K)]),
    ("unnumbered",
     "ldh [12]\njeq #0x800 jt 2 jf 3\nret #262144\nret #0\n",
     [T(BPF_LD | BPF_H | BPF_ABS, k=12), T(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0x800),
      T(RET_K, k=262144), T(RET_K)]),
    # bare `ret` is RET A; ja N is absolute (k = N - i - 1); [vlanp] etc. are libpcap's names
    ("ret ja ancillary",
     "(000) ld       [vlanp]\n(001) ja       3\n(002) tax      \n(003) ld       #pktlen\n"
     "(004) ret      \n",
     [T(BPF_LD | BPF_W | BPF_ABS, k=AD + isa.SKF_AD_VLAN_TAG_PRESENT), T(BPF_JMP | BPF_JA, k=1),
      T(BPF_MISC | isa.BPF_TAX), T(BPF_LD | BPF_W | BPF_LEN), T(RET_A)]),
    # unimp: the code only; JMP-class unknown codes also carry jt/jf
    ("unimp",
     "(000) unimp    0x1e\n(001) unimp    0xd5             jt 2\tjf 3\n(002) ret      #0\n"
     "(003) ret      #0\n",
     [T(0x1E), T(0xD5, 0, 1), T(RET_K), T(RET_K)]),
    ("negative and u32 operands",
     "ld       [-1048576]\nldh      [x + -4]\nadd      #-1\nand      #0xffffffff\nret #-1\n",
     [T(BPF_LD | BPF_W | BPF_ABS, k=isa.SKF_NET_OFF), T(BPF_LD | BPF_H | BPF_IND, k=-4),
      T(BPF_ALU | isa.BPF_ADD | BPF_K, k=-1), T(BPF_ALU | isa.BPF_AND | BPF_K, k=0xFFFFFFFF),
      T(RET_K, k=-1)]),
]


@pytest.mark.parametrize("name,src,want", TCPDUMP_CASES, ids=[c[0] for c in TCPDUMP_CASES])
def test_tcpdump_listing(name, src, want):
    assert assemble(src).as_tuples() == want
    assert assemble(src, syntax="tcpdump").as_tuples() == want


@pytest.mark.parametrize("src,want", [
    ("ldh [12]\nret #0\n", "common"),               # means the same in both
    ("(000) ret #0\n", "tcpdump"),
    ("ldh [12]\njeq #1 jt 2 jf 2\nret #0\n", "tcpdump"),
    ("ldh [12]\nret\n", "tcpdump"),
    ("ldh [12]\nret a\n", "bpf_asm"),
    ("ldh [12]\ngood: ret #0\n", "bpf_asm"),
    ("ld #proto\nret a\n", "bpf_asm"),
    ("ld [proto]\nret #0\n", "tcpdump"),
])
def test_detect_syntax(src, want):
    assert detect_syntax(src) == want


# (source, syntax, expected "line:col: message" prefix of the error)
ERROR_CASES = [
    ("ldh [12]\nldh x\n", "auto",
     "2:5: expected '[k]', '[x + k]' or '#extension' after 'ldh', found 'x'"),
    ("ldh [12\nret #0\n", "auto", "2:1: expected ']' after the offset in 'ldh', found 'ret'"),
    ("jeq #1, nowhere\nret #0\n", "auto", "1:9: undefined label 'nowhere'"),
    ("aa: ret #0\naa: ret #1\n", "auto", "2:1: duplicate label 'aa' (first defined at 1:1)"),
    ("ld #0x100000000\nret a\n", "auto",
     "1:5: number 0x100000000 out of range after 'ld #': expected -2147483648..4294967295"),
    ("ld #-2147483649\nret a\n", "auto", "1:5: number -2147483649 out of range"),
    ("jeq #0, far\n" + "ret #1\n" * 256 + "far: ret #0\n", "auto",
     "1:9: jump from instruction 0 to label 'far' (instruction 257) is out of range (too far)"),
    ("back: ret #0\njeq #0, back\nret #0\n", "auto",
     "2:9: jump from instruction 1 to label 'back' (instruction 0) is out of range (backward)"),
    ("ldh [12]\njeq #1 jt 300 jf 2\nret #0\n", "auto",
     "2:11: jt 300 from instruction 1 is out of range: expected a target in 2..257"),
    ("(000) ldh [12]\n(002) ret #0\n", "auto",
     "2:2: expected instruction number (001), found (002)"),
    ("(000) ldh [12]\nret #0\n", "auto",
     "2:1: expected '(001)' (every line of this listing has the instruction number)"),
    ("ldh [12]\njeq #0x800 jt 2 jf 3\nfoo: ret #0\nret #1\n", "auto",
     "3:1: the label definition 'foo:' is bpf_asm syntax, but this document is a tcpdump -d "
     "listing (decided by 'jt N jf N' at 2:12)"),
    ("ret a\n(001) ret #0\n", "auto", "2:1: the '(NNN)' instruction number is tcpdump syntax"),
    ("ldh [12]\nret a\n", "tcpdump", "2:5: 'ret a' is bpf_asm syntax"),
    ("ldxb 8*([14]&0xf)\nret #0\n", "auto",
     "1:6: expected 4 in 'ldxb 4*([k]&0xf)' (the only multiplier BPF_MSH has), found 8"),
    ("ldxb 4*([14]&0xe)\nret #0\n", "auto", "1:14: expected 0xf in 'ldxb 4*([k]&0xf)'"),
    ("x: ret #0\n", "auto", "1:1: 'x' is a keyword and cannot be a label"),
    ("len: ret #0\n", "auto", "1:1: 'len' is a keyword and cannot be a label"),
    ("ret #0\nlast:\n", "auto", "2:1: label 'last' labels no instruction"),
    ("", "auto", "1:1: expected an instruction, found end of input (empty program)"),
    ("foo #1\n", "auto", "1:1: expected an instruction mnemonic or 'label:', found 'foo'"),
    ("ld #1 @\n", "auto", "1:7: unexpected character '@'"),
    ("ret #0 /* open\n", "auto", "1:8: unterminated comment: expected '*/', found end of input"),
    ("st [1]\nret #0\n", "auto", "1:4: expected 'M[k]' after 'st', found '['"),
    ("jeq #1\nret #0\n", "auto",
     "2:1: expected ', label' or 'jt N jf N' after the operand of 'jeq', found 'ret'"),
    ("ld #0x1g\nret a\n", "auto", "1:5: malformed number '0x1g'"),
    ("ldh [12]\n", "fortran", "unknown assembly syntax 'fortran'"),
]


@pytest.mark.parametrize("src,syntax,msg", ERROR_CASES, ids=[m[:40] for _, _, m in ERROR_CASES])
def test_errors(src, syntax, msg):
    with pytest.raises(AsmError) as ei:
        assemble(src, syntax=syntax)
    text = str(ei.value)
    assert text.startswith(msg), text
    e = ei.value
    if e.line is not None:
        # the error carries the offending line and a caret under the column
        assert e.text == src.split("\n")[e.line - 1]
        assert f"{e.line}:{e.col}: " == text[:len(f"{e.line}:{e.col}: ")]


# --- malformed input never escapes as anything but AsmError ---------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_ALPHABET = st.sampled_from(list("ldhbxjeqtfaretM#%[]()+-*&,:;/ \n\t0123456789abcdefxX²٣é\x00"))
_WORDS = st.sampled_from(["ldh", "ld", "ldxb", "jeq", "jt", "jf", "ja", "ret", "#", "x", "[",
                          "]", "(", ")", "+", "4", "*", "&", "0xf", "L1", "L1:", ",", "\n",
                          "(000)", "(001)", "#proto", "[proto]", "M", "unimp", "0x15", "-1",
                          "/*", "*/", ";", "a", "%", "tax", "12", "300"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(_ALPHABET, max_size=60),
                 st.lists(_WORDS, max_size=25).map(" ".join)))
def test_fuzz_only_asm_errors(src):
    try:
        prog = assemble(src)
    except AsmError as e:
        assert e.line is None or e.line >= 1
        return
    assert len(prog) >= 1
