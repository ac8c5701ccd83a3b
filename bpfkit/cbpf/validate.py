"""Classic BPF validators: the Linux kernel's and libpcap's, rule for rule.

Two named rule sets:

``kernel``
    What ``setsockopt(SO_ATTACH_FILTER)`` / ``bpf_prog_create()`` check before a classic
    program runs (net/core/filter.c, Linux 6.x): bpf_check_basics_ok, bpf_check_classic
    (chk_code_allowed, the per-opcode checks, bpf_anc_helper, the final RET,
    check_load_and_stores) and the one check bpf_convert_filter adds (a converted jump
    offset must fit the eBPF instruction's s16 ``off``).  Every failure is -EINVAL.

``libpcap``
    libpcap 1.10.3's ``bpf_validate`` / ``pcap_validate_filter`` (bpf_filter.c), which
    pcap_setfilter runs before the userland interpreter executes a program.

A kernel-valid program can still fail SO_ATTACH_FILTER with ENOMEM (-12) when its
eBPF translation (``ebpf_length``) does not fit the socket's net.core.optmem_max
charge: a per-socket resource limit that depends on a sysctl, not a validation rule,
so it is not reported here (the tests tell the two apart against the kernel).

``check(prog, rules)`` lists the problems; ``validate(prog, rules)`` raises the first
one, which is the one the kernel / libpcap stops at (both return at the first failure,
in instruction order, then the whole-program checks).  Each error carries
``index``, ``insn_text`` (the ``tcpdump -d`` line without its ``(NNN)`` prefix),
``rule`` (e.g. ``kernel.jump_range``) and, for the kernel, ``errno=-22``.

Rule names (the function each one mirrors):

==========================  ================================================
kernel.length               bpf_check_basics_ok: 1..BPF_MAXINSNS (4096)
kernel.opcode               chk_code_allowed
kernel.div_by_zero          bpf_check_classic: DIV/MOD K with k == 0
kernel.shift_range          bpf_check_classic: LSH/RSH K with k >= 32
kernel.scratch_index        bpf_check_classic: LD/LDX MEM, ST, STX with k >= 16
kernel.jump_range           bpf_check_classic: ja/jt/jf target past the end
kernel.ancillary            bpf_check_classic + bpf_anc_helper: LD ABS at
                            k >= SKF_AD_OFF (as u32) that is no known SKF_AD_*
kernel.last_ret             bpf_check_classic: last is not RET K / RET A
kernel.scratch_uninit       check_load_and_stores: M[k] may be read unwritten
kernel.convert_jump         bpf_convert_filter: eBPF jump offset outside s16
libpcap.length              pcap_validate_filter: len < 1
libpcap.opcode              unknown class / mode / ALU op / jump op
libpcap.scratch_index       LD/LDX MEM, ST, STX with k >= 16
libpcap.div_by_zero         DIV/MOD K with k == 0
libpcap.jump_range          ja (u32 wrap-around arithmetic) / jt / jf past the end
libpcap.last_ret            class of the last instruction is not RET
==========================  ================================================
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import UsageError, ValidationError
from .isa import (BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_CLASS, BPF_DIV, BPF_H, BPF_IMM,
                  BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K,
                  BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MAXINSNS, BPF_MEM, BPF_MEMWORDS,
                  BPF_MOD, BPF_MODE, BPF_MSH, BPF_OP, BPF_RET, BPF_RSH, BPF_SIZE,
                  BPF_SRC, BPF_ST, BPF_STX, BPF_W, BPF_X, OPCODES, SKF_AD_ALU_XOR_X,
                  SKF_AD_CPU, SKF_AD_HATYPE, SKF_AD_IFINDEX, SKF_AD_MARK, SKF_AD_NLATTR,
                  SKF_AD_NLATTR_NEST, SKF_AD_OFF, SKF_AD_PAY_OFFSET, SKF_AD_PKTTYPE,
                  SKF_AD_PROTOCOL, SKF_AD_QUEUE, SKF_AD_RANDOM, SKF_AD_RXHASH,
                  SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT, SKF_AD_VLAN_TPID)
from .program import Insn, Program

RULE_SETS = ("kernel", "libpcap")
EINVAL = 22

_U32 = 0xFFFFFFFF
_SKF_AD_OFF_U32 = SKF_AD_OFF & _U32

# bpf_anc_helper's switch: the ancillary loads the kernel knows (include/linux/filter.h).
KERNEL_ANCILLARY = frozenset({
    SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX, SKF_AD_NLATTR, SKF_AD_NLATTR_NEST,
    SKF_AD_MARK, SKF_AD_QUEUE, SKF_AD_HATYPE, SKF_AD_RXHASH, SKF_AD_CPU, SKF_AD_ALU_XOR_X,
    SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT, SKF_AD_PAY_OFFSET, SKF_AD_RANDOM,
    SKF_AD_VLAN_TPID,
})

_LD_ABS = frozenset({BPF_LD | BPF_W | BPF_ABS, BPF_LD | BPF_H | BPF_ABS, BPF_LD | BPF_B | BPF_ABS})
_MEM_OPS = frozenset({BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX})


def kernel_ancillary(ins: Insn) -> int | None:
    """The SKF_AD_* index if ``ins`` is an LD ABS the kernel treats as an ancillary
    load (bpf_anc_helper: only the exact SKF_AD_OFF + SKF_AD_* offsets), else None."""
    if ins.code in _LD_ABS:
        ad = ins.k - _SKF_AD_OFF_U32
        if 0 <= ad and ad in KERNEL_ANCILLARY:
            return ad
    return None


# --- helpers -----------------------------------------------------------------

def _as_insns(prog) -> tuple[Insn, ...]:
    if isinstance(prog, Program):
        return prog.insns
    return Program(prog).insns


def _text(ins: Insn, n: int) -> str:
    """The tcpdump -d line of the instruction, without the ``(NNN) `` prefix and with
    runs of blanks (bpf_image pads to columns, and tabs before jf) collapsed."""
    from .disasm import image   # lazy: the disassembler is only needed for messages
    line = image(ins, n)
    if line.startswith("(") and ") " in line:
        line = line.split(") ", 1)[1]
    return " ".join(line.split())


def _err(rules: str, rule: str, msg: str, insns: Sequence[Insn] | None = None,
         index: int | None = None) -> ValidationError:
    text = _text(insns[index], index) if insns is not None and index is not None else None
    return ValidationError(msg, index=index, insn_text=text, rule=f"{rules}.{rule}",
                           errno=-EINVAL if rules == "kernel" else None)


# --- the kernel ----------------------------------------------------------------

def _kernel_insn_error(insns: Sequence[Insn], pc: int) -> ValidationError | None:
    """bpf_check_classic's loop body for instruction ``pc`` (first failing check)."""
    ins = insns[pc]
    flen = len(insns)
    code, k = ins.code, ins.k
    info = OPCODES.get(code)
    if info is None or not info.in_kernel:
        return _err("kernel", "opcode", f"opcode 0x{code:02x} is not allowed "
                    "(chk_code_allowed)", insns, pc)
    if code in (BPF_ALU | BPF_DIV | BPF_K, BPF_ALU | BPF_MOD | BPF_K) and k == 0:
        return _err("kernel", "div_by_zero", "division or modulo by constant 0", insns, pc)
    if code in (BPF_ALU | BPF_LSH | BPF_K, BPF_ALU | BPF_RSH | BPF_K) and k >= 32:
        return _err("kernel", "shift_range", f"constant shift by {k} (must be < 32)", insns, pc)
    if code in _MEM_OPS and k >= BPF_MEMWORDS:
        return _err("kernel", "scratch_index", f"scratch memory index {k} "
                    f"(M[0]..M[{BPF_MEMWORDS - 1}])", insns, pc)
    if code == BPF_JMP | BPF_JA:
        # ftest->k >= (unsigned)(flen - pc - 1): unsigned, so no backward jumps
        if k >= flen - pc - 1:
            # k is printed as the signed offset it was meant as (k = -5: target pc - 4)
            target = pc + 1 + _s32(k)
            where = f"past the last instruction {flen - 1}" if target >= flen else \
                "not after the jump"
            return _err("kernel", "jump_range", f"ja target {target} is {where} "
                        f"(jumps go forward only)", insns, pc)
    elif BPF_CLASS(code) == BPF_JMP:
        if pc + ins.jt + 1 >= flen or pc + ins.jf + 1 >= flen:
            return _err("kernel", "jump_range", f"jump target jt {pc + ins.jt + 1} / "
                        f"jf {pc + ins.jf + 1} past the last instruction {flen - 1}",
                        insns, pc)
    elif code in _LD_ABS and k >= _SKF_AD_OFF_U32 and kernel_ancillary(ins) is None:
        return _err("kernel", "ancillary", f"unknown ancillary load SKF_AD_OFF + "
                    f"{k - _SKF_AD_OFF_U32} (offsets in [SKF_AD_OFF, 0) must name a known "
                    f"SKF_AD_* field)", insns, pc)
    return None


def _check_load_and_stores(insns: Sequence[Insn]) -> list[ValidationError]:
    """check_load_and_stores(): the kernel's one linear scan.  ``memvalid`` is the set
    of M[] cells written on the fall-through path; each jump ANDs it into its targets'
    masks and resets it to all-ones.  RET does not reset it (so this is exactly as
    conservative as the kernel: no more, no less).  Continues past the first failure
    to list every offending read; the kernel stops at the first."""
    flen = len(insns)
    masks = [0xFFFF] * flen
    memvalid = 0
    errors = []
    for pc, ins in enumerate(insns):
        memvalid &= masks[pc]
        code, k = ins.code, ins.k
        if code in (BPF_ST, BPF_STX):
            memvalid |= 1 << k
        elif code in (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM):
            if not memvalid & (1 << k):
                errors.append(_err("kernel", "scratch_uninit", f"M[{k}] is read before it "
                                   f"is written on some path (check_load_and_stores)",
                                   insns, pc))
        elif code == BPF_JMP | BPF_JA:
            masks[pc + 1 + k] &= memvalid
            memvalid = 0xFFFF
        elif BPF_CLASS(code) == BPF_JMP:
            masks[pc + 1 + ins.jt] &= memvalid
            masks[pc + 1 + ins.jf] &= memvalid
            memvalid = 0xFFFF
    return errors


# --- bpf_convert_filter: how many eBPF instructions each classic one becomes -------

_S16_MIN, _S16_MAX = -0x8000, 0x7FFF

# convert_bpf_extensions / convert_skb_access, little-endian x86-64, Linux >= 6.2
# (VLAN_TAG_PRESENT reads skb->vlan_all: load, jeq, mov).
_ANC_LEN = {
    SKF_AD_PROTOCOL: 2, SKF_AD_PKTTYPE: 2, SKF_AD_IFINDEX: 4, SKF_AD_HATYPE: 4,
    SKF_AD_MARK: 1, SKF_AD_RXHASH: 1, SKF_AD_QUEUE: 1, SKF_AD_VLAN_TAG: 1,
    SKF_AD_VLAN_TAG_PRESENT: 3, SKF_AD_VLAN_TPID: 2, SKF_AD_PAY_OFFSET: 4,
    SKF_AD_NLATTR: 4, SKF_AD_NLATTR_NEST: 4, SKF_AD_CPU: 4, SKF_AD_RANDOM: 4,
    SKF_AD_ALU_XOR_X: 1,
}


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _ld_abs_len(size_code: int, mode: int, k: int) -> int:
    """convert_bpf_ld_abs: the direct-load fast path (absolute, offset >= 0 as int,
    x86-64 has efficient unaligned access) then the helper-call slow path."""
    offset = _s32(k)
    n = 0
    if mode == BPF_ABS and offset >= 0:
        n += 1                                   # tmp = headlen
        n += 1 if offset else 0                  # tmp -= offset
        n += 1                                   # if tmp s< size goto slow
        n += 1 if offset <= _S16_MAX else 3      # A = *(data + offset)
        n += 1 if size_code != BPF_B else 0      # bswap
        n += 1                                   # goto out
    n += 3                                       # arg1..arg3
    n += 1 if mode == BPF_ABS else (1 + (1 if k else 0))   # arg4 = offset / X (+ k)
    n += 1                                       # call bpf_skb_load_helper_*
    n += 3                                       # if A s>= 0 skip; A = 0; exit
    return n


def _conversion(ins: Insn, i: int) -> tuple[int, list[tuple[int, int]], bool]:
    """(eBPF length, [(position of a jump inside the expansion, classic target)],
    seen_ld_abs) of classic instruction ``ins`` at index ``i`` (bpf_convert_filter)."""
    code, k = ins.code, ins.k
    cls = BPF_CLASS(code)
    if code in _LD_ABS:
        ad = kernel_ancillary(ins)
        if ad is not None:
            return _ANC_LEN[ad], [], False
        return _ld_abs_len(BPF_SIZE(code), BPF_ABS, k), [], True
    if cls == BPF_LD and BPF_MODE(code) == BPF_IND:
        return _ld_abs_len(BPF_SIZE(code), BPF_IND, k), [], True
    if code == BPF_LDX | BPF_B | BPF_MSH:
        # X = A; A = byte at k (as LD|ABS|B); A &= 0xf; A <<= 2; tmp = X; X = A; A = tmp
        return 1 + _ld_abs_len(BPF_B, BPF_ABS, k) + 5, [], True
    if code in (BPF_ALU | BPF_DIV | BPF_X, BPF_ALU | BPF_MOD | BPF_X):
        return 5, [], False                      # w7 = w7; if X != 0 skip; A = 0; exit; op
    if code == BPF_JMP | BPF_JA:
        return 1, [(0, i + 1 + k)], False
    if cls == BPF_JMP:
        pos = 0
        if BPF_SRC(code) == BPF_K and _s32(k) < 0:
            pos = 1                              # tmp = k (zero-extended), compare with tmp
        if ins.jf == 0:
            return pos + 1, [(pos, i + 1 + ins.jt)], False
        if ins.jt == 0 and BPF_OP(code) in (BPF_JEQ, BPF_JGT, BPF_JGE):
            return pos + 1, [(pos, i + 1 + ins.jf)], False       # inverted: jne/jle/jlt
        return pos + 2, [(pos, i + 1 + ins.jt), (pos + 1, i + 1 + ins.jf)], False
    if code == BPF_RET | BPF_K:
        return 2, [], False                      # r0 = k; exit
    return 1, [], False


def _convert_errors(insns: Sequence[Insn]) -> list[ValidationError]:
    """bpf_convert_filter's BPF_EMIT_JMP check, over both passes of the conversion call
    that fills the program.  addrs[] comes from kcalloc, so in the first pass every
    (forward) target's address still reads 0: a jump whose own eBPF address is past
    32767 already fails there.  The second pass checks the real distance."""
    layout = [_conversion(ins, i) for i, ins in enumerate(insns)]
    seen_ld_abs = any(l[2] for l in layout)
    addrs = []
    a = 3 + (4 if seen_ld_abs else 0)            # prologue: A = 0, X = 0, ctx (+ data, headlen)
    for n, _, _ in layout:
        addrs.append(a)
        a += n
    errors = []
    for i, (_, jumps, _) in enumerate(layout):
        for pos, target in jumps:
            first = -addrs[i] - 1 - pos
            off = addrs[target] - addrs[i] - 1 - pos
            if first < _S16_MIN or off > _S16_MAX:
                errors.append(_err(
                    "kernel", "convert_jump",
                    f"after conversion to eBPF this jump is {off if first >= _S16_MIN else first}"
                    f" instructions long (instruction at eBPF address {addrs[i] + pos}); eBPF "
                    f"jump offsets are s16 (bpf_convert_filter)", insns, i))
                break
    return errors


def ebpf_length(prog) -> int:
    """The number of eBPF instructions bpf_convert_filter makes of a kernel-valid
    program (what SO_ATTACH_FILTER charges against net.core.optmem_max)."""
    insns = _as_insns(prog)
    layout = [_conversion(ins, i) for i, ins in enumerate(insns)]
    return 3 + (4 if any(l[2] for l in layout) else 0) + sum(l[0] for l in layout)


def _check_kernel(insns: Sequence[Insn]) -> list[ValidationError]:
    flen = len(insns)
    if flen == 0 or flen > BPF_MAXINSNS:
        return [_err("kernel", "length", f"program has {flen} instructions "
                     f"(the kernel takes 1..{BPF_MAXINSNS})")]
    errors = [e for e in (_kernel_insn_error(insns, pc) for pc in range(flen)) if e]
    if insns[-1].code not in (BPF_RET | BPF_K, BPF_RET | BPF_A):
        errors.append(_err("kernel", "last_ret", "the last instruction must be "
                           "`ret #k` or `ret a`", insns, flen - 1))
    if errors:
        return errors
    errors = _check_load_and_stores(insns)
    if errors:
        return errors
    return _convert_errors(insns)


# --- libpcap 1.10.3 pcap_validate_filter ---------------------------------------

_PCAP_LD_MODES = frozenset({BPF_IMM, BPF_ABS, BPF_IND, BPF_MSH, BPF_MEM, BPF_LEN})
_PCAP_ALU_OPS = frozenset({0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0})
_PCAP_JMP_OPS = frozenset({BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET})


def _libpcap_insn_error(insns: Sequence[Insn], i: int) -> ValidationError | None:
    """pcap_validate_filter's switch on the class (1.10.3 checks classes, modes and
    operations, not whole opcodes: e.g. `ld` with a size on BPF_IMM passes here
    although bpf_filter has no case for it)."""
    ins = insns[i]
    n = len(insns)
    code, k = ins.code, ins.k
    cls = BPF_CLASS(code)
    if cls in (BPF_LD, BPF_LDX):
        mode = BPF_MODE(code)
        if mode not in _PCAP_LD_MODES:
            return _err("libpcap", "opcode", f"opcode 0x{code:02x}: unknown load mode "
                        f"0x{mode:02x}", insns, i)
        if mode == BPF_MEM and k >= BPF_MEMWORDS:
            return _err("libpcap", "scratch_index", f"scratch memory index {k} "
                        f"(M[0]..M[{BPF_MEMWORDS - 1}])", insns, i)
    elif cls in (BPF_ST, BPF_STX):
        if k >= BPF_MEMWORDS:
            return _err("libpcap", "scratch_index", f"scratch memory index {k} "
                        f"(M[0]..M[{BPF_MEMWORDS - 1}])", insns, i)
    elif cls == BPF_ALU:
        op = BPF_OP(code)
        if op not in _PCAP_ALU_OPS:
            return _err("libpcap", "opcode", f"opcode 0x{code:02x}: unknown ALU operation "
                        f"0x{op:02x}", insns, i)
        if op in (BPF_DIV, BPF_MOD) and BPF_SRC(code) == BPF_K and k == 0:
            return _err("libpcap", "div_by_zero", "division or modulo by constant 0",
                        insns, i)
    elif cls == BPF_JMP:
        op = BPF_OP(code)
        frm = i + 1
        if op not in _PCAP_JMP_OPS:
            return _err("libpcap", "opcode", f"opcode 0x{code:02x}: unknown jump operation "
                        f"0x{op:02x}", insns, i)
        if op == BPF_JA:
            # `from + p->k >= (u_int)len` in u_int: a backward jump (k negative as
            # int32) passes when it lands inside the program (ip6 protochain uses it).
            if (frm + k) & _U32 >= n:
                return _err("libpcap", "jump_range", f"ja target {frm + _s32(k)} is outside "
                            f"the program (0..{n - 1})", insns, i)
        elif frm + ins.jt >= n or frm + ins.jf >= n:
            return _err("libpcap", "jump_range", f"jump target jt {frm + ins.jt} / "
                        f"jf {frm + ins.jf} past the last instruction {n - 1}", insns, i)
    # BPF_RET and BPF_MISC: any operation passes the validator
    return None


def _check_libpcap(insns: Sequence[Insn]) -> list[ValidationError]:
    n = len(insns)
    if n < 1:
        return [_err("libpcap", "length", "empty program (libpcap needs at least one "
                     "instruction)")]
    errors = [e for e in (_libpcap_insn_error(insns, i) for i in range(n)) if e]
    if BPF_CLASS(insns[-1].code) != BPF_RET:
        errors.append(_err("libpcap", "last_ret", "the last instruction must be a `ret`",
                           insns, n - 1))
    return errors


# --- public API ----------------------------------------------------------------

def check(prog: Program | Iterable, rules: str = "kernel") -> list[ValidationError]:
    """Every problem the named validator finds, first the one it stops at."""
    insns = _as_insns(prog)
    if rules == "kernel":
        return _check_kernel(insns)
    if rules == "libpcap":
        return _check_libpcap(insns)
    raise UsageError(f"unknown rule set {rules!r} (choose from {', '.join(RULE_SETS)})")


def validate(prog: Program | Iterable, rules: str = "kernel") -> None:
    """Raise the ValidationError the named validator stops at, or return None."""
    errors = check(prog, rules)
    if errors:
        raise errors[0]


def is_valid(prog: Program | Iterable, rules: str = "kernel") -> bool:
    return not check(prog, rules)
