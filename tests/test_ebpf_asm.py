"""eBPF isa / assembler / disassembler: encode-decode and text round trips for every
instruction form of the table, llvm-objdump agreement, error positions."""
from __future__ import annotations

import random

import pytest

import oracles
from bpfkit.errors import AsmError, EncodingError
from bpfkit.ebpf import asm, disasm, isa
from bpfkit.ebpf.isa import Insn


def _random_insn(op: isa.Op, rng: random.Random) -> Insn:
    """A valid instruction of form `op` with random register/offset/immediate fields
    (reserved fields zero, registers 0..10)."""
    f = dict(opcode=op.opcode, dst=rng.randrange(11), src=rng.randrange(11),
             off=rng.choice([0, 1, -1, 7, -8, 32767, -32768, rng.randrange(-32768, 32768)]),
             imm=rng.choice([0, 1, -1, 0x7FFFFFFF, -0x80000000, rng.randrange(-2**31, 2**31)]))
    if op.variant is not None:
        field = {"call": "src", "lddw": "src", "end": "imm", "atomic": "imm"}.get(op.kind, "off")
        f[field] = op.variant
    if op.kind == "lddw":
        f["imm"] = rng.choice([0, 1, (1 << 64) - 1, rng.randrange(1 << 64)])
    if op.kind == "ldabs" or op.kind == "ldind":
        f["dst"] = 0
    for name in op.must_be_zero:
        f[name] = 0
    return Insn(**f)


def _all_forms(seed: int = 1, per_form: int = 6) -> list[Insn]:
    rng = random.Random(seed)
    return [_random_insn(op, rng) for op in isa.OPS.values() for _ in range(per_form)]


FORMS = _all_forms()


def test_table_has_every_rfc9669_and_v4_form():
    # counted from RFC 9669 tables + Linux v4: ALU 2 classes x (12 ops x K/X + neg
    # + div/mod signed twins x K/X) + movsx (2 + 3), END 9, JMP 2 x 11 x 2 + ja + gotol,
    # call 3 + callx + exit, lddw 7 pseudo sources, LD_ABS/IND 6, LDX 4 + MEMSX 3,
    # ST 4, STX 4, atomics 2 sizes x 10; may_goto (Linux 6.9).
    alu = 2 * (12 * 2 + 1 + 2 * 2) + 2 + 3
    expected = alu + 9 + 2 * 11 * 2 + 2 + 5 + 7 + 6 + 7 + 4 + 4 + 20 + 1
    assert len(isa.OPS) == expected


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_encode_decode_round_trip(byteorder):
    raw = isa.encode(FORMS, byteorder)
    assert len(raw) == 8 * sum(i.slots for i in FORMS)
    assert isa.decode(raw, byteorder, strict=True) == FORMS


def test_byte_orders_differ_only_in_layout():
    # same lddw in both orders: the second slot carries the high 32 bits
    i = isa.lddw(3, 0x1122334455667788)
    assert isa.encode([i], "little") == bytes.fromhex("1803000088776655" "0000000044332211")
    assert isa.encode([i], "big") == bytes.fromhex("1830000055667788" "0000000011223344")


@pytest.mark.parametrize("raw,msg", [
    (b"\x95" + b"\0" * 6, "multiple of 8"),
    (bytes.fromhex("1801000001000000"), "second slot"),
    (bytes.fromhex("1801000001000000" "0100000000000000"), "second slot"),
])
def test_decode_errors(raw, msg):
    with pytest.raises(EncodingError, match=msg):
        isa.decode(raw)


@pytest.mark.parametrize("syntax", ["llvm", "conformance"])
def test_text_round_trip_every_form(syntax):
    text = disasm.disasm(FORMS, syntax)
    assert asm.assemble(text, syntax) == FORMS


@pytest.mark.parametrize("syntax", ["llvm", "conformance"])
def test_text_round_trip_any_encoding(syntax):
    # invalid encodings come out as `.insn` and go back verbatim
    rng = random.Random(7)
    insns = [Insn(rng.randrange(256) if rng.randrange(256) != isa.LDDW else 0, rng.randrange(16),
                  rng.randrange(16), rng.randrange(-32768, 32768), rng.randrange(-2**31, 2**31))
             for _ in range(400)]
    assert asm.assemble(disasm.disasm(insns, syntax), syntax) == insns


def test_alu32_spelling_round_trips():
    text = disasm.disasm(FORMS, "llvm", alu32=True)
    assert asm.assemble(text, "llvm") == FORMS


# forms llvm-objdump 14 cannot show (it predates Linux v4 / misses these encodings);
# our spelling for them is LLVM >= 17's, checked by the round trip above instead.
def _objdump14_knows(i: Insn, op: isa.Op) -> bool:
    if op.kind in ("ldxs", "st", "gotol", "callx", "may_goto"):
        return False
    if op.kind == "alu" and (i.off or op.op == isa.BPF_MOD):
        return False
    if op.kind == "jcond" and op.op == isa.BPF_JSET:
        return False
    if op.kind == "end" and i.opcode == isa.BPF_ALU64 | isa.BPF_END:
        return False
    if op.kind == "ldind" and i.imm:
        return False   # objdump 14 prints skb[rN] and drops the immediate
    if op.kind == "call" and i.src == isa.BPF_PSEUDO_KFUNC_CALL:
        return False
    if op.kind == "lddw" and i.src != 0 and i.imm >> 32:
        return False   # objdump shows only the first slot's imm of a pseudo lddw
    return True


@pytest.mark.clang
@pytest.mark.parametrize("alu32", [False, True])
def test_disasm_matches_llvm_objdump(alu32):
    insns = [i for i in FORMS if _objdump14_knows(i, isa.check(i))]
    if not alu32:
        # objdump without +alu32 decodes the 32-bit atomics only as "lock ... += r"
        insns = [i for i in insns if not (isa.check(i).kind == "atomic" and
                                          isa.check(i).size == 4 and i.imm != isa.BPF_ADD)]
    ours = [disasm.format_insn(i, alu32=alu32) for i in insns]
    theirs = oracles.llvm_objdump_raw(isa.encode(insns), alu32=alu32)
    # the verifier-log spelling of a local call, "call pc-3", is objdump's "call -3"
    ours = [o.replace("call pc+", "call ").replace("call pc-", "call -") for o in ours]
    diffs = [(i, o, t) for i, o, t in zip(insns, ours, theirs) if o != t]
    assert len(ours) == len(theirs)
    assert not diffs, diffs[:10]
    assert len(insns) > 250


@pytest.mark.parametrize("text,syntax,line,col", [
    ("r0 = 1\nr11 = 2\nexit", "llvm", 2, 1),
    ("r0 = 1\n  r0 += w1\nexit", "llvm", 2, 9),
    ("r0 = 1\nif r0 == 1 goto nowhere\nexit", "llvm", 2, 17),
    ("r0 = *(u16 *)(r6 + 99999)\nexit", "llvm", 1, 20),
    ("r0 = 4294967296\nexit", "llvm", 1, 6),
    ("r0 == 1\nexit", "llvm", 1, 1),
    ("mov %r0, 1\nfoo %r0\n", "conformance", 2, 1),
    ("mov %r0, %r11\nexit", "conformance", 1, 11),
    ("ldxb %r0, [%r1+0x10000]\nexit", "conformance", 1, 15),
])
def test_asm_error_positions(text, syntax, line, col):
    with pytest.raises(AsmError) as e:
        asm.assemble(text, syntax)
    assert (e.value.line, e.value.col) == (line, col)


def test_llvm_syntax_examples():
    # the spellings the issue names, with the encodings RFC 9669 gives them
    src = """
        r0 = *(u16 *)(r6 + 12)
        if r1 == 0x800 goto +3
        w0 += 1
        lock *(u64 *)(r0 + 0) += r1
        r1 = 0 ll
        r1 = my_map ll
        exit
    """
    got = asm.assemble(src, maps=["other", "my_map"])
    assert got == [
        Insn(0x69, 0, 6, 12, 0),
        Insn(0x15, 1, 0, 3, 0x800),
        Insn(0x04, 0, 0, 0, 1),
        Insn(0xDB, 0, 1, 0, 0x00),
        Insn(0x18, 1, 0, 0, 0),
        Insn(0x18, 1, isa.BPF_PSEUDO_MAP_IDX, 0, 1),
        Insn(0x95),
    ]


def test_labels_and_local_calls():
    src = "call f\nexit\nf:\n  r0 = 7\n  if r0 > 3 goto done\n  r0 = 0\ndone:\n  exit\n"
    got = asm.assemble(src)
    assert got[0] == Insn(0x85, 0, 1, 0, 1)
    assert got[3] == Insn(0x25, 0, 0, 1, 3)


def _kernel_forms(seed: int) -> list[Insn]:
    """Every form the kernel's disassembler prints for an unprivileged-looking program
    that passes its CFG check: jumps by 0, helper ids of the uapi table, no
    pseudo-calls, map references, kfuncs or callx (they need more than a listing)."""
    rng = random.Random(seed)
    out = []
    for op in isa.OPS.values():
        if op.kind in ("callx", "exit") or (op.kind in ("call", "lddw") and op.variant != 0):
            continue
        i = _random_insn(op, rng)
        f = dict(opcode=i.opcode, dst=i.dst, src=i.src, off=i.off, imm=i.imm)
        if op.kind in ("ja", "jcond", "may_goto"):
            f["off"] = 0
        if op.kind == "gotol":
            f["imm"] = 0
        if op.kind == "call":
            f["imm"] = rng.choice([0, 1, 5, 7, 26, 181, 209])
        out.append(Insn(**f))
    return out + [Insn(0x95)]


@pytest.mark.kernel
@pytest.mark.parametrize("seed", range(4))
def test_kernel_syntax_matches_verifier_listing(seed):
    insns = _kernel_forms(seed)
    listing = oracles.bpf_kernel_listing(isa.encode(insns))
    assert listing is not None
    slots = isa.slot_indices(insns)
    assert sorted(listing) == slots
    for slot, i in zip(slots, insns):
        opcode, text = listing[slot]
        assert disasm.format_insn(i, "kernel") == text
        # and the log line, with its "N: (op)" prefix, assembles back to the instruction
        assert asm.assemble(f"{slot}: ({opcode:02x}) {text}", "kernel") == [i]


def test_kernel_syntax_round_trip_every_form():
    text = disasm.disasm(FORMS, "kernel")
    # lddw needs its "(18)" prefix or "ll" in this syntax: add the opcodes as the log does
    lines = [f"{n}: ({i.opcode:02x}) {t}" for n, (i, t) in enumerate(zip(FORMS, text.splitlines()))]
    assert asm.assemble("\n".join(lines), "kernel") == FORMS


# --- may_goto (BPF_JMP | BPF_JCOND, src BPF_MAY_GOTO): Linux 6.9, LLVM 19 ----------------

@pytest.mark.parametrize("text,syntax,insn", [
    ("may_goto +2", "llvm", Insn(0xE5, 0, 0, 2, 0)),
    ("may_goto -3", "llvm", Insn(0xE5, 0, 0, -3, 0)),
    ("may_goto +0", "llvm", Insn(0xE5, 0, 0, 0, 0)),
    ("may_goto pc+2", "kernel", Insn(0xE5, 0, 0, 2, 0)),
    ("7: (e5) may_goto pc-32768", "kernel", Insn(0xE5, 0, 0, -32768, 0)),
    ("may_goto +32767", "conformance", Insn(0xE5, 0, 0, 32767, 0)),
])
def test_may_goto_spellings(text, syntax, insn):
    assert asm.assemble(text, syntax) == [insn]
    # the kernel log's prefix is not part of the disassembly
    assert disasm.format_insn(insn, syntax) == text.split(") ")[-1]
    assert isa.encode([insn]) == bytes([0xE5, 0]) + (insn.off & 0xFFFF).to_bytes(2, "little") \
        + bytes(4)


@pytest.mark.parametrize("syntax", ["llvm", "kernel", "conformance"])
def test_may_goto_labels_round_trip(syntax):
    src = {"llvm": "r0 = 0\nl:\nmay_goto out\nr0 += 1\ngoto l\nout:\nexit",
           "kernel": "r0 = 0\nl:\nmay_goto out\nr0 += 1\ngoto l\nout:\nexit",
           "conformance": "mov %r0, 0\nl:\nmay_goto out\nadd %r0, 1\nja l\nout:\nexit"}[syntax]
    insns = asm.assemble(src, syntax)
    assert insns[1] == Insn(0xE5, 0, 0, 2, 0) and insns[3] == Insn(0x05, 0, 0, -3, 0)
    text = disasm.disasm(insns, syntax)
    assert "may_goto " in text and asm.assemble(text, syntax) == insns


@pytest.mark.parametrize("insn", [
    Insn(0xE5, 1, 0, 1, 0),       # dst set
    Insn(0xE5, 0, 1, 1, 0),       # src is BPF_MAY_GOTO (0) only
    Insn(0xE5, 0, 0, 1, 7),       # imm set
])
def test_may_goto_reserved_fields(insn):
    with pytest.raises(EncodingError):
        isa.check(insn)
    # not an instruction: written as .insn and read back verbatim
    assert disasm.format_insn(insn).startswith(".insn 0xe5")
    assert asm.assemble(disasm.disasm([insn])) == [insn]


@pytest.mark.parametrize("opcode", [0xE6, 0xED])  # JMP32 | JCOND, JMP | JCOND | X
def test_may_goto_other_classes_are_unknown(opcode):
    with pytest.raises(EncodingError, match="unknown instruction"):
        isa.check(Insn(opcode))
