"""Malformed input never escapes as anything but a BpfError: random text into both
assemblers, random bytes into the decoder, random instruction lists into the
interpreter (load errors are BpfErrors; runs end with a result, faulted or not)."""
from __future__ import annotations

import random

from bpfkit.errors import AsmError, BpfError, EncodingError
from bpfkit.ebpf import asm, disasm, isa
from bpfkit.ebpf.interp import Interpreter, Options

TOKENS = ["r0", "r1", "w2", "r10", "r11", "%r1", "%r99", "=", "+=", "s>>=", "*(u32 *)", "(",
          ")", "[", "]", "+", "-", "0x", "0x10000", "4294967296", "-1", "ll", "goto", "if",
          "==", "lock", "fetch", "add", "call", "local", "exit", "ja", "jeq", ",", "lddw",
          "ldxw", "[%r1+4]", "[%r1", "label:", "x", "#", ".insn", "1,", "skb[", "bswap16",
          "(s8)", "atomic_fetch_add(", "xchg_64(", "cmpxchg_64(", "pc+1", "+3", "gotol",
          "12:", "(18)", "(db)", "atomic64_xchg((u64 *)(r1", "+ -", "#-5", "call bpf_x#1"]


def test_random_text_only_asm_errors():
    rng = random.Random(1)
    for _ in range(4000):
        line = " ".join(rng.choice(TOKENS) for _ in range(rng.randrange(1, 7)))
        text = "\n".join([line, "exit"] if rng.random() < 0.5 else [line])
        for syntax in ("llvm", "kernel", "conformance"):
            try:
                asm.assemble(text, syntax)
            except AsmError as e:
                assert e.line is not None and e.col is not None
            except BpfError:
                pass


def test_random_mutations_of_valid_text():
    # start from real listings and damage one character
    rng = random.Random(2)
    base = [i for i in asm.assemble(disasm.disasm([isa.Insn(0x07, 1, 0, 0, 5),
                                                   isa.lddw(2, 99), isa.Insn(0x95)]))]
    texts = [disasm.disasm(base, s) for s in ("llvm", "kernel", "conformance")]
    for _ in range(3000):
        t = rng.choice(texts)
        i = rng.randrange(len(t))
        t = t[:i] + rng.choice("()[]%r+-=0x9,: #") + t[i + 1:]
        for syntax in ("llvm", "kernel", "conformance"):
            try:
                asm.assemble(t, syntax)
            except BpfError:
                pass


def test_random_bytes_decode():
    rng = random.Random(3)
    for _ in range(3000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        for order in ("little", "big"):
            for strict in (False, True):
                try:
                    isa.decode(raw, order, strict)
                except EncodingError:
                    pass


def test_random_programs_load_or_refuse_and_always_finish():
    rng = random.Random(4)
    ops = list(isa.OPS.values())
    ran = 0
    for _ in range(3000):
        insns = []
        for _ in range(rng.randrange(1, 12)):
            op = rng.choice(ops)
            f = dict(opcode=op.opcode, dst=rng.randrange(11), src=rng.randrange(11),
                     off=rng.randrange(-4, 5), imm=rng.choice([0, 1, -1, 8, 16, 64, 5]))
            if op.variant is not None:
                field = {"call": "src", "lddw": "src", "end": "imm", "atomic": "imm"}.get(
                    op.kind, "off")
                f[field] = op.variant
            for z in op.must_be_zero:
                f[z] = 0
            insns.append(isa.Insn(**f))
        insns.append(isa.Insn(0x95))
        try:
            prog = Interpreter(insns, Options(budget=500))
        except BpfError:
            continue
        res = prog.run(mem=bytearray(16), packet=bytes(20))
        assert res.insns <= 500
        ran += 1
    assert ran > 300
