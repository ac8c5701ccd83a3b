"""Classic BPF -> eBPF, XDP mode: a verifier-clean BPF_PROG_TYPE_XDP program that makes
the classic program's match decision (return value != 0) with libpcap 1.10.3
``bpf_filter`` semantics on the frame, and returns a configurable verdict for match and
for no match (default XDP_PASS / XDP_DROP).

Semantics matched (bpfkit.cbpf.interp.run_filter, packet = the frame from
xdp_md.data to data_end, wire length = that length):

- loads are checked against the packet end; a load past it, or at an offset that can
  never be inside a packet (>= 0xffff, the verifier's MAX_PACKET_OFF, far beyond the
  3520 bytes of an XDP test-run buffer), means "no match".  ``ld [x + k]`` adds X and k
  in 64 bits (libpcap never wraps).  Negative or ancillary offsets are huge u32 values,
  so they never match;
- ``len`` is data_end - data; u32 arithmetic; division or modulo by X == 0 means no
  match; a shift by X >= 32 gives 0; a constant shift by k >= 32 shifts by k & 31
  (libpcap 1.10.3 on x86-64); M[] starts zeroed (the slots the program reads are
  cleared in the prologue; libpcap 1.10.x leaves them uninitialised, see interp.py).

Code shape: a plain per-load guard (the baseline the issue compares cbpfc-style
widened guards with): for each load ``r2 = data + off; r3 = r2 + size;
if r3 > data_end goto nomatch; load *(r2 + 0); bswap``.  A = w0, X = w7, data = r8,
data_end = r9, len = r6; M[k] at fp - 4(k+1).  Classic instructions no path reaches are
left out (the verifier refuses unreachable code).

Loops (backward ``ja``, which libpcap emits only for ``protochain``): every backward
``ja`` becomes ``may_goto nomatch; goto target``, so the verifier accepts the loop
(it explores may_goto's exit and needs no bound of its own), and a run that keeps
looping ends with "no match" once the kernel's hidden may_goto counter is spent:
BPF_MAX_LOOPS (8M) back-edges with the verifier's non-timed fixup and in bpfkit's
eBPF interpreter (bpfkit.ebpf.interp, Options.max_loops), about 250 ms with the timed
variant of newer x86-64 JITs (this machine's 6.18).  Programs with loops always get
per-load guards: the widened-guard analysis (packet_need, guards) follows forward
jumps only.

Equivalence for loops.  Where libpcap's bpf_filter returns, the XDP program makes its
decision, provided the run takes at most BPF_MAX_LOOPS backward jumps (or 250 ms).
Where bpf_filter never returns, the XDP program answers "no match".  For what libpcap
compiles this covers every frame: at protochain's loop head the future is fixed by
the header offset X and by whether the header there is AH or another extension
header, and every continuing iteration reads byte X + 1, so on an n-byte frame a run
either ends within 2n backward jumps (n <= 3520 in XDP's linear area: far below both
8M and the 65,536 after which bpfkit's cBPF interpreters give up, MAX_BACKWARD_JUMPS)
or repeats a state and loops forever.  libpcap 1.10.3 really does loop forever: its
AH step sets X = (ah_len + 2) * 4 without adding the old X, so an AH header at offset
X whose length field gives X again spins bpf_filter for good.  bpfkit's cBPF
interpreters raise ExecutionError there (no reference answer); the translation says
"no match".  A hand-written classic loop that needs more than 8M iterations to return
gets "no match" too, where libpcap would return its answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..cbpf import isa as c
from ..cbpf.program import Program
from ..cbpf.validate import validate
from ..ebpf import isa as e
from ..ebpf.isa import Insn as EInsn
from ..errors import UnsupportedError, UsageError, ValidationError

__all__ = ["XdpTranslation", "translate_xdp", "VERDICTS", "packet_need"]

VERDICTS = {"aborted": 0, "drop": 1, "pass": 2, "tx": 3, "redirect": 4}
MAX_PACKET_OFF = 0xFFFF          # include/linux/bpf_verifier.h (kernel/bpf/verifier.c)
REG_A, REG_X, REG_LEN, REG_DATA, REG_END, T1, T2, FP = 0, 7, 6, 8, 9, 2, 3, 10
_S16_MIN, _S16_MAX = -0x8000, 0x7FFF
_SIZE = {c.BPF_W: (4, e.BPF_W), c.BPF_H: (2, e.BPF_H), c.BPF_B: (1, e.BPF_B)}
_ALU_OPS = {c.BPF_ADD: e.BPF_ADD, c.BPF_SUB: e.BPF_SUB, c.BPF_MUL: e.BPF_MUL,
            c.BPF_DIV: e.BPF_DIV, c.BPF_MOD: e.BPF_MOD, c.BPF_AND: e.BPF_AND,
            c.BPF_OR: e.BPF_OR, c.BPF_XOR: e.BPF_XOR, c.BPF_LSH: e.BPF_LSH,
            c.BPF_RSH: e.BPF_RSH}
_INVERTED = {c.BPF_JEQ: e.BPF_JNE, c.BPF_JGT: e.BPF_JLE, c.BPF_JGE: e.BPF_JLT}
_NOMATCH = "nomatch"             # jump target: the shared "return nomatch" block


@dataclass(frozen=True, slots=True)
class XdpTranslation:
    """insns: the eBPF program (no lddw).  starts[i]: first eBPF index of classic
    instruction i (None when unreachable and left out).  match / nomatch: the
    verdicts returned.  guards: the guard placement used ("per-load" for programs
    with loops, whatever was asked).  loops: the classic program has backward jumps
    (the translation has may_goto)."""
    insns: tuple[EInsn, ...]
    starts: tuple[int | None, ...]
    source: Program
    match: int
    nomatch: int
    prog_type: int = 6            # BPF_PROG_TYPE_XDP
    guards: str = "widened"
    loops: bool = False

    def to_bytes(self) -> bytes:
        return e.encode(self.insns)

    def listing(self) -> str:
        from ..ebpf.disasm import listing
        return listing(self.insns)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _alu32(op: int, dst: int, imm: int = 0, src: int | None = None) -> EInsn:
    if src is None:
        return EInsn(e.BPF_ALU | op | e.BPF_K, dst, 0, 0, _s32(imm))
    return EInsn(e.BPF_ALU | op | e.BPF_X, dst, src, 0, 0)


def _alu64(op: int, dst: int, imm: int = 0, src: int | None = None) -> EInsn:
    if src is None:
        return EInsn(e.BPF_ALU64 | op | e.BPF_K, dst, 0, 0, _s32(imm))
    return EInsn(e.BPF_ALU64 | op | e.BPF_X, dst, src, 0, 0)


def _exit() -> EInsn:
    return EInsn(e.BPF_JMP | e.BPF_EXIT)


def _jmp(op: int, dst: int, imm: int = 0, src: int | None = None) -> EInsn:
    if src is None:
        return EInsn(e.BPF_JMP | op | e.BPF_K, dst, 0, 0, _s32(imm))
    return EInsn(e.BPF_JMP | op | e.BPF_X, dst, src, 0, 0)


def _guarded_load(ptr_setup: list, size: int, esize: int, dst: int) -> list:
    """ptr_setup leaves data + offset in r2; then the bounds guard and the load."""
    out = list(ptr_setup)
    out += [_alu64(e.BPF_MOV, T2, src=T1), _alu64(e.BPF_ADD, T2, size),
            (_jmp(e.BPF_JGT, T2, src=REG_END), _NOMATCH),
            EInsn(e.BPF_LDX | e.BPF_MEM | esize, dst, T1, 0, 0)]
    if size > 1:
        # packet bytes are big-endian; the load is little-endian (x86-64)
        out.append(EInsn(e.BPF_ALU | e.BPF_END | e.BPF_TO_BE, dst, 0, 0, 8 * size))
    return out


def _abs_load(k: int, size: int, esize: int, dst: int) -> list | None:
    """None when the load can never succeed (always no match)."""
    if k + size > MAX_PACKET_OFF:
        return None
    return _guarded_load([_alu64(e.BPF_MOV, T1, src=REG_DATA), _alu64(e.BPF_ADD, T1, k)],
                         size, esize, dst)


def _ind_load(k: int, size: int, esize: int, dst: int) -> list:
    # X + k without wrapping (u32 + u32 in 64 bits), then bounded for the verifier
    setup = [_alu64(e.BPF_MOV, T1, src=REG_X)]
    if k:
        setup += [_alu32(e.BPF_MOV, T2, k), _alu64(e.BPF_ADD, T1, src=T2)]
    # find_good_pkt_pointers only marks the range when the variable offset plus the
    # access size stays within MAX_PACKET_OFF
    setup += [(_jmp(e.BPF_JGT, T1, MAX_PACKET_OFF - size), _NOMATCH),
              _alu64(e.BPF_ADD, T1, src=REG_DATA)]
    return _guarded_load(setup, size, esize, dst)


_INF = 1 << 40


def _bound(ins) -> int:
    """Packet length a load needs to succeed at all (X >= 0, so X + k + size >= k +
    size for ld [x + k]); 0 for instructions that do not load from the packet."""
    code = ins.code
    if (code & 0x07 == c.BPF_LD and code & 0xE0 in (c.BPF_ABS, c.BPF_IND)
            and code & 0x18 in _SIZE):
        return ins.k + _SIZE[code & 0x18][0]
    if code == c.BPF_LDX | c.BPF_MSH | c.BPF_B:
        return ins.k + 1
    return 0


def _has_loops(insns) -> bool:
    return any(ins.code == c.BPF_JMP | c.BPF_JA and _s32(ins.k) < 0 for ins in insns)


def packet_need(insns) -> list[int]:
    """need[i]: a lower bound on the packet length of every path from instruction i
    that ends in a match (a ret other than `ret #0`): each load on such a path must
    succeed, and a load fails on a packet shorter than its bound.  On a shorter packet,
    no match is possible from i, so a guard may give up early (cbpfc's widened
    guards).  _INF: no path from i matches at all.  Forward jumps only:
    UnsupportedError for a program with a backward ``ja`` (a loop needs a fixpoint,
    and translate_xdp uses per-load guards for those)."""
    if _has_loops(insns):
        raise UnsupportedError("packet_need of a program with backward jumps",
                               "the analysis follows forward jumps only")
    n = len(insns)
    need = [_INF] * n
    for i in range(n - 1, -1, -1):
        ins = insns[i]
        code = ins.code
        if code & 0x07 == c.BPF_RET:
            need[i] = _INF if code == c.BPF_RET | c.BPF_K and ins.k == 0 else 0
        elif code == c.BPF_JMP | c.BPF_JA:
            need[i] = need[i + 1 + ins.k]
        elif code & 0x07 == c.BPF_JMP:
            need[i] = min(need[i + 1 + ins.jt], need[i + 1 + ins.jf])
        else:
            need[i] = max(_bound(ins), need[i + 1])
    return need


class _Xlate:
    def __init__(self, prog: Program, match: int, nomatch: int, widened: bool):
        self.prog = prog
        self.match = match
        self.nomatch = nomatch
        self.widened = widened
        self.need = packet_need(prog.insns) if widened else None

    def dead(self, i: int) -> bool:
        """Widened mode: no path from i can match on any packet the verifier admits."""
        return self.widened and self.need[i] > MAX_PACKET_OFF

    def terminal(self, ins, i: int) -> bool:
        """Classic instructions after which control never falls through."""
        cls = ins.code & 0x07
        if cls == c.BPF_RET or self.dead(i):
            return True
        if (cls == c.BPF_LD and ins.code & 0xE0 == c.BPF_ABS
                or ins.code == c.BPF_LDX | c.BPF_MSH | c.BPF_B):
            return ins.k + _SIZE.get(ins.code & 0x18, (1,))[0] > MAX_PACKET_OFF
        return False

    def reachable(self) -> list[bool]:
        insns = self.prog.insns
        seen = [False] * len(insns)
        work = [0]
        while work:
            i = work.pop()
            if i >= len(insns) or seen[i]:
                continue
            seen[i] = True
            ins = insns[i]
            if self.terminal(ins, i):
                continue
            if ins.code == c.BPF_JMP | c.BPF_JA:
                work.append(i + 1 + _s32(ins.k))
            elif ins.code & 0x07 == c.BPF_JMP:
                work += [i + 1 + ins.jt, i + 1 + ins.jf]
            else:
                work.append(i + 1)
        return seen

    def ret(self, value_is_a: bool, k: int = 0) -> list:
        if not value_is_a:
            return [_alu32(e.BPF_MOV, REG_A, self.match if k else self.nomatch), _exit()]
        return [EInsn(e.BPF_JMP | e.BPF_JNE | e.BPF_K, REG_A, 0, 2, 0),
                _alu32(e.BPF_MOV, REG_A, self.nomatch), _exit(),
                _alu32(e.BPF_MOV, REG_A, self.match), _exit()]

    def abs_load(self, k: int, size: int, esize: int, dst: int) -> list | None:
        if not self.widened:
            return _abs_load(k, size, esize, dst)
        # a dominating guard has proven the packet long enough (see guards())
        if k <= _S16_MAX:
            out = [EInsn(e.BPF_LDX | e.BPF_MEM | esize, dst, REG_DATA, k, 0)]
        else:
            out = [_alu64(e.BPF_MOV, T1, src=REG_DATA), _alu64(e.BPF_ADD, T1, k),
                   EInsn(e.BPF_LDX | e.BPF_MEM | esize, dst, T1, 0, 0)]
        if size > 1:
            out.append(EInsn(e.BPF_ALU | e.BPF_END | e.BPF_TO_BE, dst, 0, 0, 8 * size))
        return out

    def convert(self, ins, i: int) -> list:
        code, k = ins.code, ins.k
        cls = code & 0x07
        if code > 0xFF:
            # bpf_filter switches on the whole 16-bit code: it has no case for these
            raise UnsupportedError(f"opcode 0x{code:02x} in XDP mode",
                                   f"instruction {i}: libpcap's bpf_filter has no case for it")
        if self.dead(i):
            return [(EInsn(e.BPF_JMP | e.BPF_JA), _NOMATCH)]
        if cls == c.BPF_RET:
            if code == c.BPF_RET | c.BPF_K:
                return self.ret(False, k)
            if code == c.BPF_RET | c.BPF_A:
                return self.ret(True)
        elif cls == c.BPF_LD:
            mode, sz = code & 0xE0, code & 0x18
            if mode == c.BPF_ABS and sz in _SIZE:
                out = self.abs_load(k, *_SIZE[sz], REG_A)
                return out if out is not None else [(EInsn(e.BPF_JMP | e.BPF_JA), _NOMATCH)]
            if mode == c.BPF_IND and sz in _SIZE:
                return _ind_load(k, *_SIZE[sz], REG_A)
            if code == c.BPF_LD | c.BPF_W | c.BPF_LEN:
                return [_alu64(e.BPF_MOV, REG_A, src=REG_LEN)]
            if code == c.BPF_LD | c.BPF_IMM:
                return [_alu32(e.BPF_MOV, REG_A, k)]
            if code == c.BPF_LD | c.BPF_MEM:
                return [EInsn(e.BPF_LDX | e.BPF_MEM | e.BPF_W, REG_A, FP, -(4 * k + 4))]
        elif cls == c.BPF_LDX:
            if code == c.BPF_LDX | c.BPF_W | c.BPF_LEN:
                return [_alu64(e.BPF_MOV, REG_X, src=REG_LEN)]
            if code == c.BPF_LDX | c.BPF_IMM:
                return [_alu32(e.BPF_MOV, REG_X, k)]
            if code == c.BPF_LDX | c.BPF_MEM:
                return [EInsn(e.BPF_LDX | e.BPF_MEM | e.BPF_W, REG_X, FP, -(4 * k + 4))]
            if code == c.BPF_LDX | c.BPF_MSH | c.BPF_B:
                out = self.abs_load(k, 1, e.BPF_B, REG_X)
                if out is None:
                    return [(EInsn(e.BPF_JMP | e.BPF_JA), _NOMATCH)]
                return out + [_alu32(e.BPF_AND, REG_X, 0xF), _alu32(e.BPF_LSH, REG_X, 2)]
        elif code in (c.BPF_ST, c.BPF_STX):
            src = REG_A if code == c.BPF_ST else REG_X
            return [EInsn(e.BPF_STX | e.BPF_MEM | e.BPF_W, FP, src, -(4 * k + 4))]
        elif cls == c.BPF_ALU:
            op = code & 0xF0
            if code == c.BPF_ALU | c.BPF_NEG:
                return [EInsn(e.BPF_ALU | e.BPF_NEG, REG_A)]
            if op in _ALU_OPS and code & c.BPF_X:
                if op in (c.BPF_DIV, c.BPF_MOD):
                    return [(_jmp(e.BPF_JEQ, REG_X, 0), _NOMATCH),
                            _alu32(_ALU_OPS[op], REG_A, src=REG_X)]
                if op in (c.BPF_LSH, c.BPF_RSH):
                    # bpf_filter: a shift by X >= 32 gives 0 (eBPF would mask X)
                    return [EInsn(e.BPF_JMP | e.BPF_JGE | e.BPF_K, REG_X, 0, 2, 32),
                            _alu32(_ALU_OPS[op], REG_A, src=REG_X),
                            EInsn(e.BPF_JMP | e.BPF_JA, 0, 0, 1, 0),
                            _alu32(e.BPF_MOV, REG_A, 0)]
                return [_alu32(_ALU_OPS[op], REG_A, src=REG_X)]
            if op in _ALU_OPS:
                if op in (c.BPF_LSH, c.BPF_RSH):
                    k &= 31                  # unchecked in 1.10.3; x86-64 masks the count
                return [_alu32(_ALU_OPS[op], REG_A, k)]
        elif cls == c.BPF_JMP:
            op = code & 0xF0
            if code == c.BPF_JMP | c.BPF_JA:
                target = i + 1 + _s32(k)
                if target <= i:
                    # a loop's back-edge: may_goto lets the verifier accept the loop;
                    # once its hidden counter is spent the answer is "no match"
                    return [(EInsn(e.BPF_JMP | e.BPF_JCOND, 0, e.BPF_MAY_GOTO), _NOMATCH),
                            (EInsn(e.BPF_JMP | e.BPF_JA), target)]
                return [(EInsn(e.BPF_JMP | e.BPF_JA), target)]
            if op in (c.BPF_JEQ, c.BPF_JGT, c.BPF_JGE, c.BPF_JSET):
                return self.cond(ins, i, op)
        elif cls == c.BPF_MISC:
            if code == c.BPF_MISC | c.BPF_TAX:
                return [_alu64(e.BPF_MOV, REG_X, src=REG_A)]
            if code == c.BPF_MISC | c.BPF_TXA:
                return [_alu64(e.BPF_MOV, REG_A, src=REG_X)]
        raise UnsupportedError(f"opcode 0x{code:02x} in XDP mode",
                               f"instruction {i}: libpcap's bpf_filter has no case for it")

    def guards(self, live: list[bool]) -> dict[int, int]:
        """Widened mode: {classic index: length to check before it}.  G[i] is the
        packet length every path reaching i has already checked; a direct load with a
        bound above it gets a guard for need[i] (>= every bound from i on until the
        next branch, and as far as every matching path needs), so later blocks usually
        need none.  The verifier follows the same facts: a passed guard sets the range
        of the packet pointer r8 (find_good_pkt_pointers) on that path."""
        insns = self.prog.insns
        n = len(insns)
        g_in = [_INF] * n
        g_in[0] = 0
        out = {}
        for i in range(n):
            if not live[i]:
                continue
            g = g_in[i]
            ins = insns[i]
            direct = (ins.code & 0x07 == c.BPF_LD and ins.code & 0xE0 == c.BPF_ABS
                      or ins.code == c.BPF_LDX | c.BPF_MSH | c.BPF_B)
            if not self.dead(i) and direct and _bound(ins) > g:
                out[i] = self.need[i]
                g = self.need[i]
            if self.terminal(ins, i):
                continue
            if ins.code == c.BPF_JMP | c.BPF_JA:
                succ = [i + 1 + ins.k]
            elif ins.code & 0x07 == c.BPF_JMP:
                succ = [i + 1 + ins.jt, i + 1 + ins.jf]
            else:
                succ = [i + 1]
            for t in succ:
                g_in[t] = min(g_in[t], g)
        return out

    @staticmethod
    def cond(ins, i: int, op: int) -> list:
        out = []
        if ins.code & c.BPF_X:
            src, imm = REG_X, None
        elif _s32(ins.k) < 0:
            out.append(_alu32(e.BPF_MOV, T1, ins.k))      # no sign extension
            src, imm = T1, None
        else:
            src, imm = None, ins.k

        def j(o):
            return _jmp(o, REG_A, imm or 0, src)

        if ins.jf == 0:
            out.append((j(op), i + 1 + ins.jt))
        elif ins.jt == 0 and op in _INVERTED:
            out.append((j(_INVERTED[op]), i + 1 + ins.jf))
        else:
            out += [(j(op), i + 1 + ins.jt), (EInsn(e.BPF_JMP | e.BPF_JA), i + 1 + ins.jf)]
        return out


def translate_xdp(prog: Program | Iterable, *, match: int | str = "pass",
                  nomatch: int | str = "drop", guards: str = "widened") -> XdpTranslation:
    """Translate a classic filter into an XDP program returning `match` when the filter
    accepts the frame (returns non-zero) and `nomatch` otherwise.  Verdicts are XDP_*
    numbers or names (aborted, drop, pass, tx, redirect).

    guards="widened" (default): bounds guards in the manner of cloudflare's cbpfc --
    one guard where a path first needs more packet than it has checked, widened to
    what every matching path from there needs anyway (packet_need); code from which
    no path can match becomes "return nomatch".  guards="per-load": the plain baseline,
    one guard per load.  Indirect loads (X + k) always get their own guard.  Programs
    with backward jumps (protochain's loop) always get per-load guards and a may_goto
    at each back-edge (see the module docstring for what that means for the answer).

    ValidationError for programs libpcap's validator refuses; UnsupportedError for
    opcodes bpf_filter does not implement."""
    match, nomatch = (_verdict(v) for v in (match, nomatch))
    if guards not in ("widened", "per-load"):
        raise UsageError(f"guards must be 'widened' or 'per-load', not {guards!r}")
    prog = prog if isinstance(prog, Program) else Program(prog)
    validate(prog, "libpcap")
    loops = _has_loops(prog.insns)
    if loops:
        guards = "per-load"          # packet_need and guards() assume forward jumps
    # every instruction libpcap could execute must be one bpf_filter implements (it
    # abort()s otherwise): checked on the plain control flow, before widened guards
    # prune code from which no path matches
    plain = _Xlate(prog, match, nomatch, False)
    for i, ok in enumerate(plain.reachable()):
        if ok:
            plain.convert(prog.insns[i], i)
    x = plain if guards == "per-load" else _Xlate(prog, match, nomatch, True)
    live = x.reachable()
    pieces = [x.convert(ins, i) if live[i] else [] for i, ins in enumerate(prog.insns)]
    if x.widened:
        for i, length in x.guards(live).items():
            pieces[i] = [_alu64(e.BPF_MOV, T1, src=REG_DATA), _alu64(e.BPF_ADD, T1, length),
                         (_jmp(e.BPF_JGT, T1, src=REG_END), _NOMATCH)] + pieces[i]
    uses_len = any(live[i] and ins.code in (c.BPF_LD | c.BPF_W | c.BPF_LEN,
                                             c.BPF_LDX | c.BPF_W | c.BPF_LEN)
                   for i, ins in enumerate(prog.insns))
    read_slots = sorted({ins.k for i, ins in enumerate(prog.insns)
                         if live[i] and ins.code in (c.BPF_LD | c.BPF_MEM, c.BPF_LDX | c.BPF_MEM)})
    prologue = [_alu32(e.BPF_MOV, REG_A, 0), _alu32(e.BPF_MOV, REG_X, 0),
                EInsn(e.BPF_LDX | e.BPF_MEM | e.BPF_W, REG_DATA, 1, 0, 0),    # xdp_md.data
                EInsn(e.BPF_LDX | e.BPF_MEM | e.BPF_W, REG_END, 1, 4, 0)]     # data_end
    if uses_len:
        prologue += [_alu64(e.BPF_MOV, REG_LEN, src=REG_END),
                     _alu64(e.BPF_SUB, REG_LEN, src=REG_DATA)]
    prologue += [EInsn(e.BPF_ST | e.BPF_MEM | e.BPF_W, FP, 0, -(4 * k + 4), 0)
                 for k in read_slots]
    starts: list[int | None] = []
    pos = len(prologue)
    for i, p in enumerate(pieces):
        starts.append(pos if live[i] else None)
        pos += len(p)
    nomatch_at = pos
    needs_nomatch = any(isinstance(it, tuple) and it[1] == _NOMATCH for p in pieces for it in p)
    out = list(prologue)
    for i, p in enumerate(pieces):
        for item in p:
            if isinstance(item, tuple):
                insn, target = item
                dest = nomatch_at if target == _NOMATCH else starts[target]
                off = dest - (len(out) + 1)
                if not _S16_MIN <= off <= _S16_MAX:
                    raise ValidationError(
                        f"the eBPF jump for classic instruction {i} needs offset {off}, "
                        f"outside the s16 range of eBPF jump offsets", index=i,
                        rule="translate.jump_range")
                item = EInsn(insn.opcode, insn.dst, insn.src, off, insn.imm)
            out.append(item)
    if needs_nomatch:
        out += [_alu32(e.BPF_MOV, REG_A, nomatch), _exit()]
    return XdpTranslation(tuple(out), tuple(starts), prog, match, nomatch,
                          guards=guards, loops=loops)


def _verdict(v: int | str) -> int:
    if isinstance(v, str):
        if v.lower() not in VERDICTS:
            raise UsageError(f"unknown XDP verdict {v!r} (one of {', '.join(VERDICTS)})")
        return VERDICTS[v.lower()]
    if not 0 <= v <= 0xFFFFFFFF:
        raise UsageError(f"XDP verdict {v} is not a u32")
    return v
