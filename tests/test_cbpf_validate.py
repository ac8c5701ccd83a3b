"""The two classic BPF validators (bpfkit.cbpf.validate), each rule checked against
its oracle: the running kernel (SO_ATTACH_FILTER: EINVAL or accepted) and libpcap
1.10.3's own bpf_validate (through ctypes).  The random differentials live here for
libpcap and in test_cbpf_kernel.py for the kernel."""
from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings

import oracles
from bpfkit.cbpf.disasm import image
from bpfkit.cbpf.isa import SKF_AD_OFF, SKF_LL_OFF, SKF_NET_OFF
from bpfkit.cbpf.program import Insn, Program
from bpfkit.cbpf.validate import RULE_SETS, check, is_valid, validate
from bpfkit.cli.main import main
from bpfkit.errors import UsageError, ValidationError

from cbpf_gen import libpcap_programs, wild_programs

U32 = 0xFFFFFFFF
RET0 = (0x06, 0, 0, 0)
RETA = (0x16, 0, 0, 0)


def _kernel_rc(insns) -> int:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        oracles.attach_filter(b, insns)
        return 0
    except OSError as e:
        return -e.errno
    finally:
        a.close()
        b.close()


def _jump_over_msh():
    # test_bpf.c "BPF_MAXINSNS: jump over MSH": ja over 4094 ldxb-msh, each of which
    # converts to ~20 eBPF instructions, so the eBPF jump offset overflows s16
    return [(0x05, 0, 0, 4094)] + [(0xB1, 0, 0, 0)] * 4094 + [RET0]


# (rule, program): the kernel must refuse each with EINVAL and we must name the rule
KERNEL_REJECT = [
    ("kernel.length", []),
    ("kernel.length", [RET0] * 4097),
    ("kernel.opcode", [(0x21, 0, 0, 0), RET0]),             # ldx [k] (LDX ABS)
    ("kernel.opcode", [(0x0E, 0, 0, 0), RET0]),             # ret x
    ("kernel.opcode", [(0x08, 0, 0, 0), RET0]),             # ld with size on IMM
    ("kernel.opcode", [(0x8C, 0, 0, 0), RET0]),             # neg with X bit
    ("kernel.opcode", [(0xFF, 0, 0, 0), RET0]),
    ("kernel.opcode", [(0x106, 0, 0, 0), RET0]),            # code above 8 bits
    ("kernel.div_by_zero", [(0x34, 0, 0, 0), RET0]),
    ("kernel.div_by_zero", [(0x94, 0, 0, 0), RET0]),        # mod #0
    ("kernel.shift_range", [(0x64, 0, 0, 32), RET0]),
    ("kernel.shift_range", [(0x74, 0, 0, U32), RET0]),
    ("kernel.scratch_index", [(0x02, 0, 0, 16), RET0]),
    ("kernel.scratch_index", [(0x03, 0, 0, U32), RET0]),
    ("kernel.scratch_index", [(0x00, 0, 0, 0), (0x02, 0, 0, 0), (0x60, 0, 0, 16), RET0]),
    ("kernel.jump_range", [(0x05, 0, 0, 1), RET0]),
    ("kernel.jump_range", [(0x05, 0, 0, U32), RET0]),        # ja -1: no backward jumps
    ("kernel.jump_range", [(0x15, 1, 0, 0), RET0]),
    ("kernel.jump_range", [(0x15, 0, 1, 0), RET0]),
    ("kernel.ancillary", [(0x20, 0, 0, (SKF_AD_OFF + 64) & U32), RETA]),   # SKF_AD_MAX
    ("kernel.ancillary", [(0x30, 0, 0, U32), RETA]),         # ld [-1]
    ("kernel.ancillary", [(0x28, 0, 0, (SKF_AD_OFF + 1) & U32), RETA]),
    ("kernel.last_ret", [(0x00, 0, 0, 1)]),
    ("kernel.last_ret", [RET0, (0x07, 0, 0, 0)]),
    ("kernel.scratch_uninit", [(0x60, 0, 0, 0), RETA]),
    ("kernel.scratch_uninit", [(0x00, 0, 0, 1), (0x15, 0, 1, 1), (0x02, 0, 0, 3),
                               (0x61, 0, 0, 3), RETA]),     # written on one path only
    ("kernel.convert_jump", _jump_over_msh()),
]

# programs one step inside each boundary: the kernel accepts them
KERNEL_ACCEPT = [
    [RET0],
    [RET0] * 4096,
    [(0x64, 0, 0, 31), RET0],
    [(0x6C, 0, 0, 0), RET0],                                 # lsh x: runtime only
    [(0x3C, 0, 0, 0), RET0],                                 # div x: runtime only
    [(0x02, 0, 0, 15), (0x60, 0, 0, 15), RETA],
    [(0x05, 0, 0, 0), RET0],
    [(0x15, 0, 0, 0), RET0],
    [(0x20, 0, 0, (SKF_AD_OFF + 60) & U32), RETA],           # SKF_AD_VLAN_TPID
    [(0x30, 0, 0, (SKF_AD_OFF - 1) & U32), RETA],            # below SKF_AD_OFF: a load
    [(0x30, 0, 0, SKF_NET_OFF & U32), RETA],
    [(0x30, 0, 0, SKF_LL_OFF & U32), RETA],
    [(0x50, 0, 0, U32), RETA],                               # ld [x - 1]: runtime
    [(0xB1, 0, 0, (SKF_AD_OFF + 100) & U32), RETA],          # msh: no ancillary check
    # M[3] written on both paths before the join
    [(0x00, 0, 0, 1), (0x15, 0, 2, 1), (0x02, 0, 0, 3), (0x05, 0, 0, 1), (0x02, 0, 0, 3),
     (0x61, 0, 0, 3), RETA],
]


@pytest.mark.kernel
@pytest.mark.parametrize("rule,insns", KERNEL_REJECT,
                         ids=[f"{r}-{i}" for i, (r, _) in enumerate(KERNEL_REJECT)])
def test_kernel_rule_rejected_by_kernel(rule, insns):
    assert _kernel_rc(insns) == -22
    errs = check(insns, "kernel")
    assert errs and errs[0].rule == rule and errs[0].errno == -22, errs
    with pytest.raises(ValidationError) as e:
        validate(insns, "kernel")
    assert e.value.rule == rule


@pytest.mark.kernel
@pytest.mark.parametrize("insns", KERNEL_ACCEPT, ids=range(len(KERNEL_ACCEPT)))
def test_kernel_boundary_accepted_by_kernel(insns):
    assert _kernel_rc(insns) == 0
    assert check(insns, "kernel") == []


@pytest.mark.kernel
@pytest.mark.parametrize("k", [0, 1, 0x7FFF, 0x8000, 40000, 0x80000000, U32])
def test_kernel_convert_jump_boundary(k):
    """`ja` over n `ldxb 4*([k]&0xf)`: each converts to a k-dependent number of eBPF
    instructions (bpf_convert_filter).  Find, with our model, the smallest n whose
    eBPF jump no longer fits s16; the kernel must refuse exactly that n with EINVAL
    and not n - 1.  (n - 1 is still too big for the socket's memory charge,
    net.core.optmem_max: ENOMEM, a resource limit and not a validation rule.)"""
    def prog(n):
        return [(0x05, 0, 0, n)] + [(0xB1, 0, 0, k)] * n + [RET0]
    lo, hi = 1, 4094
    while lo < hi:
        mid = (lo + hi) // 2
        if check(prog(mid), "kernel"):
            hi = mid
        else:
            lo = mid + 1
    assert lo < 4094
    assert check(prog(lo), "kernel")[0].rule == "kernel.convert_jump"
    assert _kernel_rc(prog(lo)) == -22
    assert check(prog(lo - 1), "kernel") == []
    assert _kernel_rc(prog(lo - 1)) in (0, -12)


_HEAVY: dict = {}


def _heavy_msh(first_rejected, prog) -> int:
    if "n" not in _HEAVY:
        _HEAVY["n"] = max(0, first_rejected(0, 4091, lambda h: prog(h, 0)) - 1 - 50)
    return _HEAVY["n"]


FILLERS = [
    (0x20, 0, 0, 0), (0x28, 0, 0, 40000), (0x30, 0, 0, 0x7FFF), (0x20, 0, 0, 0x8000),
    (0x20, 0, 0, SKF_NET_OFF & U32), (0x40, 0, 0, 0), (0x48, 0, 0, 7), (0x50, 0, 0, U32),
    (0x3C, 0, 0, 0), (0x9C, 0, 0, 0), (0x15, 0, 0, U32), (0x15, 0, 0, 5), (0x25, 1, 0, 5),
    (0x35, 1, 1, 0x80000000), (0x1D, 0, 0, 0),
] + [(0x20, 0, 0, (SKF_AD_OFF + ad) & U32)
     for ad in (0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60)]


@pytest.mark.kernel
@pytest.mark.parametrize("filler", FILLERS, ids=[f"{c:#x}-{jt}-{jf}-{k:#x}" for c, jt, jf, k in FILLERS])
def test_kernel_convert_jump_boundary_by_insn(filler):
    """As above for `ja` over n copies of other instructions (their eBPF expansion
    lengths differ: loads with fast path or not, ancillary loads, guarded div/mod,
    jumps through a temp register)."""
    def prog(heavy, n):
        # ja over `heavy` msh (about 18 eBPF instructions each) then n fillers
        return ([(0x00, 0, 0, 0), (0x02, 0, 0, 0), (0x05, 0, 0, heavy + n)]
                + [(0xB1, 0, 0, 0)] * heavy + [filler] * n + [RET0] * 2)

    def first_rejected(lo, hi, make):
        while lo < hi:
            mid = (lo + hi) // 2
            if check(make(mid), "kernel"):
                hi = mid
            else:
                lo = mid + 1
        return lo
    # the most msh that still fit, minus 50: the remaining s16 budget is then crossed
    # after a few hundred fillers, so a wrong filler length would move the boundary
    heavy = _heavy_msh(first_rejected, prog)
    top = 4091 - heavy
    if not check(prog(heavy, top), "kernel"):
        assert _kernel_rc(prog(heavy, top)) in (0, -12)
        return
    n = first_rejected(1, top, lambda m: prog(heavy, m))
    assert check(prog(heavy, n), "kernel")[0].rule == "kernel.convert_jump"
    assert _kernel_rc(prog(heavy, n)) == -22
    assert _kernel_rc(prog(heavy, n - 1)) in (0, -12)


@pytest.mark.kernel
def test_kernel_ancillary_offsets_exhaustive():
    """Every LD ABS offset in [SKF_AD_OFF, 0) in all three sizes, plus a few below:
    the kernel's accept/reject equals ours."""
    disagree = []
    for size in (0x00, 0x08, 0x10):
        for off in list(range(SKF_AD_OFF, 0)) + [SKF_AD_OFF - 1, SKF_AD_OFF - 4, -0x2000,
                                                 SKF_NET_OFF, SKF_LL_OFF, -0x7FFFFFFF]:
            insns = [(0x20 | size, 0, 0, off & U32), RETA]
            if (_kernel_rc(insns) == 0) != is_valid(insns, "kernel"):
                disagree.append((size, off))
    assert not disagree


@pytest.mark.kernel
def test_kernel_corpus_expected_fail_rules(shared_dir):
    """The FLAG_EXPECTED_FAIL cases of the kernel's test suite: the kernel refuses each
    (checked live) and we do, with -22."""
    cases = json.loads((shared_dir / "corpus" / "linux-test_bpf-classic.json").read_text())
    n = 0
    for case in cases["tests"]:
        if "FLAG_EXPECTED_FAIL" not in case["flags"]:
            continue
        insns = [(c, jt & 0xFF, jf & 0xFF, k & U32) for c, jt, jf, k in case["insns"]]
        assert _kernel_rc(insns) == case["expected_errcode"] == -22
        errs = check(insns, "kernel")
        assert errs and errs[0].errno == -22
        n += 1
    assert n == 12


# --- libpcap -----------------------------------------------------------------------

LIBPCAP_REJECT = [
    ("libpcap.length", []),
    ("libpcap.opcode", [(0xC0, 0, 0, 0), RET0]),             # ld mode 0xc0
    ("libpcap.opcode", [(0xB4, 0, 0, 0), RET0]),             # alu op 0xb0
    ("libpcap.opcode", [(0x55, 0, 0, 0), RET0]),             # jmp op 0x50
    ("libpcap.scratch_index", [(0x60, 0, 0, 16), RET0]),
    ("libpcap.scratch_index", [(0x02, 0, 0, 16), RET0]),
    ("libpcap.scratch_index", [(0x03, 0, 0, U32), RET0]),
    ("libpcap.div_by_zero", [(0x34, 0, 0, 0), RET0]),
    ("libpcap.div_by_zero", [(0x94, 0, 0, 0), RET0]),
    ("libpcap.jump_range", [(0x05, 0, 0, 1), RET0]),
    ("libpcap.jump_range", [(0x05, 0, 0, (-2) & U32), RET0]),   # before the start
    ("libpcap.jump_range", [(0x25, 0, 1, 0), RET0]),
    ("libpcap.last_ret", [(0x00, 0, 0, 0)]),
]

LIBPCAP_ACCEPT = [
    [(0x05, 0, 0, U32), RET0],           # ja -1 (to itself): u32 wrap-around passes
    [(0x21, 0, 0, 0), RET0],             # ldx [k]: mode ABS passes the class checks
    [(0x0E, 0, 0, 0), RET0],             # ret x: any RET passes
    [(0x64, 0, 0, 33), RET0],            # constant shift >= 32 is not checked
    [(0x20, 0, 0, (SKF_AD_OFF + 64) & U32), RET0],
    [(0x60, 0, 0, 3), RETA],             # uninitialised M[] is not checked
    [(0x0E, 0, 0, 0)],                   # last is `ret x`: class RET
    [RET0] * 5000,                       # no 4096-instruction limit in userland
]


@pytest.mark.tcpdump
@pytest.mark.parametrize("rule,insns", LIBPCAP_REJECT,
                         ids=[f"{r}-{i}" for i, (r, _) in enumerate(LIBPCAP_REJECT)])
def test_libpcap_rule_rejected_by_libpcap(rule, insns):
    assert not oracles.libpcap_validate(insns)
    errs = check(insns, "libpcap")
    assert errs and errs[0].rule == rule and errs[0].errno is None, errs


@pytest.mark.tcpdump
@pytest.mark.parametrize("insns", LIBPCAP_ACCEPT, ids=range(len(LIBPCAP_ACCEPT)))
def test_libpcap_boundary_accepted_by_libpcap(insns):
    assert oracles.libpcap_validate(insns)
    assert check(insns, "libpcap") == []


@pytest.mark.tcpdump
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=wild_programs())
def test_libpcap_validator_vs_bpf_validate(prog):
    assert (not check(prog, "libpcap")) == oracles.libpcap_validate(prog.insns), prog.as_tuples()


@pytest.mark.tcpdump
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=libpcap_programs())
def test_libpcap_valid_generated(prog):
    assert oracles.libpcap_validate(prog.insns) and check(prog, "libpcap") == []


# --- error details -------------------------------------------------------------------

def test_error_carries_index_text_rule_errno():
    prog = [(0x00, 0, 0, 1), (0x34, 0, 0, 0), RET0]
    with pytest.raises(ValidationError) as e:
        validate(prog, "kernel")
    err = e.value
    assert (err.index, err.rule, err.errno) == (1, "kernel.div_by_zero", -22)
    # the tcpdump -d line of the instruction, without "(001) " and padding
    assert err.insn_text == " ".join(image(Insn(0x34, 0, 0, 0), 1).split()[1:])
    assert str(err).startswith("1: (div #0) ")


def test_check_lists_every_insn_problem():
    prog = [(0x34, 0, 0, 0), (0x64, 0, 0, 40), (0x02, 0, 0, 99), (0x00, 0, 0, 0)]
    assert [e.rule for e in check(prog, "kernel")] == [
        "kernel.div_by_zero", "kernel.shift_range", "kernel.scratch_index", "kernel.last_ret"]
    assert [e.index for e in check(prog, "kernel")] == [0, 1, 2, 3]


def test_unknown_rules():
    with pytest.raises(UsageError):
        check([RET0], "bsd")
    assert RULE_SETS == ("kernel", "libpcap")


def test_accepts_program_and_tuples():
    assert check(Program([RET0]), "kernel") == check([RET0], "kernel") == []


# --- CLI --------------------------------------------------------------------------------

def _write(tmp_path, insns):
    p = tmp_path / "prog.ddd"
    p.write_text(f"{len(insns)}\n" + "".join(f"{c} {jt} {jf} {k}\n" for c, jt, jf, k in insns))
    return str(p)


def test_cli_ok(tmp_path, capsys):
    assert main(["validate", _write(tmp_path, [(0x28, 0, 0, 12), RETA])]) == 0
    assert capsys.readouterr().out == "ok: 2 instructions\n"


def test_cli_invalid(tmp_path, capsys):
    path = _write(tmp_path, [(0x60, 0, 0, 2), RETA])
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert "0: (ld M[2])" in out and "[kernel.scratch_uninit]" in out
    assert main(["validate", "--rules", "libpcap", path]) == 0


def test_cli_json(tmp_path, capsys):
    path = _write(tmp_path, [(0x34, 0, 0, 0), RET0])
    assert main(["validate", "--json", path]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False and doc["instructions"] == 2
    assert doc["errors"][0]["rule"] == "kernel.div_by_zero"
    assert doc["errors"][0]["errno"] == -22 and doc["errors"][0]["index"] == 0


def test_cli_unreadable(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing")]) == 2
    assert "cannot read program" in capsys.readouterr().err


def test_backward_ja_target_is_printed_signed():
    """`ja -5` at pc 1 targets 1 + 1 - 5 = -3: the message says -3, not the u32 sum
    4294967293 (the listing prints it so too: `ja -3`)."""
    prog = [(0x00, 0, 0, 1), (0x05, 0, 0, (-5) & U32), RET0, (0x06, 0, 0, 1)]
    for rules, text in (("kernel", "1: (ja -3) ja target -3 is not after the jump "
                                   "(jumps go forward only)"),
                        ("libpcap", "1: (ja -3) ja target -3 is outside the program (0..3)")):
        with pytest.raises(ValidationError) as e:
            validate(prog, rules)
        assert str(e.value).startswith(text), rules
    # ja -1 jumps to itself: not after the jump either; a forward one past the end is
    # still "past the last instruction"
    with pytest.raises(ValidationError, match=r"ja target 0 is not after the jump"):
        validate([(0x05, 0, 0, U32), RET0], "kernel")
    with pytest.raises(ValidationError, match=r"ja target 7 is past the last instruction 3"):
        validate([(0x00, 0, 0, 1), (0x05, 0, 0, 5), RET0, (0x06, 0, 0, 1)], "kernel")
