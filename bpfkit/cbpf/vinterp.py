"""Vectorised classic BPF interpreter: one program over a whole PacketBatch at once,
with libpcap 1.10.3 ``bpf_filter`` semantics (the userland filter tcpdump -r runs).

Lanes are packets.  The program is cut into basic blocks; a block runs once on every
lane that reached it, carrying each lane's A, X and scratch cells with it as compact
numpy arrays (so no scatter/gather per instruction).  At a conditional jump the lanes
split by the comparison and are queued at the two targets; lanes queued at one block
from several predecessors are concatenated.  A liveness pass decides which of A, X
and M[k] a lane still needs at each address; dead ones are dropped when lanes are
queued, so a split usually copies nothing but the packet indices.  2- and 4-byte
loads are one gather each, through big-endian views of the buffer at every byte
offset.  Register arrays are never modified in place, so A, X and M[k] may share one.

Blocks are taken in increasing address order from a heap of pending addresses: with
forward jumps only (everything libpcap compiles except ``protochain``) that is one
sweep over the program.  A backward ``ja``
(libpcap's ``protochain`` loop) queues lanes at an earlier address; the heap then
simply revisits that block with them, so loops need no scalar fallback.  Each lane
counts the backward jumps it takes: more than ``MAX_BACKWARD_JUMPS`` raises
ExecutionError, where libpcap 1.10.3 would spin forever (it has no such guard).

Semantics, all per libpcap 1.10.3 bpf_filter() (bpf_filter.c) and checked against it
by the differential tests:
- loads check ``offset + size <= caplen``; a failing lane's program returns 0.
  ``ld [x + k]`` adds X and k without wrapping (libpcap compares them separately with
  buflen), so the check is done in 64-bit arithmetic.  Negative / ancillary offsets
  are huge u32 values and therefore simply out of bounds (bpf_filter() is called with
  no aux data, so SKF_AD_VLAN_TAG* also return 0).
- ``len`` is the wire length; all arithmetic is u32; div/mod by X == 0 returns 0;
  shifts by X >= 32 give 0; shifts by a constant k >= 32 shift by k & 31 (1.10.3 does
  not check k, and x86-64's shift instructions mask the count to 5 bits: measured with
  the installed libpcap).  ``neg`` is 0 - A.
- ``ja`` k is signed.
- scratch memory starts zeroed.  libpcap 1.10.x leaves ``mem[]`` uninitialised (stack
  garbage); only a program that reads M[k] before writing it can tell, and no program
  libpcap compiles does; zero is what libpcap master and the kernel use.
- opcodes bpf_filter() has no case for make libpcap 1.10.3 abort(): here they raise
  ExecutionError when a lane reaches them.

Before running, the program is checked with libpcap's validator (what pcap_setfilter
does), so ValidationError is raised for programs tcpdump would refuse.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import ExecutionError
from .isa import (BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_CLASS, BPF_DIV,
                  BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP,
                  BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC,
                  BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET, BPF_RSH, BPF_ST,
                  BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR)
from .program import Insn, Program

if TYPE_CHECKING:   # the batch is duck-typed: buf, offset, caplen, wirelen columns
    from ..pcap.batch import PacketBatch

MAX_BACKWARD_JUMPS = 1 << 16

_U32 = np.uint32
_SIZE = {BPF_W: 4, BPF_H: 2, BPF_B: 1}

# The opcodes bpf_filter() implements (libpcap 1.10.3's switch in bpf_filter.c).
_LOADS_ABS = {BPF_LD | s | BPF_ABS: n for s, n in _SIZE.items()}
_LOADS_IND = {BPF_LD | s | BPF_IND: n for s, n in _SIZE.items()}
_ALU_OPS = (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR,
            BPF_LSH, BPF_RSH)
_STRAIGHT = frozenset(
    list(_LOADS_ABS) + list(_LOADS_IND)
    + [BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN, BPF_LDX | BPF_MSH | BPF_B,
       BPF_LD | BPF_IMM, BPF_LDX | BPF_IMM, BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST,
       BPF_STX, BPF_ALU | BPF_NEG, BPF_MISC | BPF_TAX, BPF_MISC | BPF_TXA]
    + [BPF_ALU | op | src for op in _ALU_OPS for src in (BPF_K, BPF_X)])
_CJUMPS = frozenset(BPF_JMP | op | src for op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET)
                    for src in (BPF_K, BPF_X))
_RETS = frozenset({BPF_RET | BPF_K, BPF_RET | BPF_A})


@dataclass(slots=True)
class _Lanes:
    """The lanes waiting at (or running through) one block, with their registers."""
    idx: np.ndarray          # int64 packet indices into the batch
    a: np.ndarray            # uint32
    x: np.ndarray            # uint32
    mem: dict                # scratch index -> uint32 array (absent = all zero)
    back: np.ndarray | None  # backward jumps taken so far (None: none anywhere yet)

    def take(self, sel: np.ndarray) -> "_Lanes":
        """The lanes where boolean ``sel`` is set (flatnonzero + take: several times
        faster than boolean indexing on unpredictable masks)."""
        ix = np.flatnonzero(sel)
        return _Lanes(self.idx.take(ix), None if self.a is None else self.a.take(ix),
                      None if self.x is None else self.x.take(ix),
                      {k: v.take(ix) for k, v in self.mem.items()},
                      None if self.back is None else self.back.take(ix))

    def __len__(self) -> int:
        return len(self.idx)


def _cat(parts: list, n: list[int], dtype) -> np.ndarray | None:
    if all(p is None for p in parts):
        return None
    return np.concatenate([np.zeros(m, dtype) if p is None else p for p, m in zip(parts, n)])


def _merge(parts: list[_Lanes]) -> _Lanes:
    if len(parts) == 1:
        return parts[0]
    sizes = [len(p) for p in parts]
    keys = set().union(*(p.mem for p in parts))
    mem = {k: _cat([p.mem.get(k) for p in parts], sizes, _U32) for k in keys}
    return _Lanes(np.concatenate([p.idx for p in parts]), _cat([p.a for p in parts], sizes, _U32),
                  _cat([p.x for p in parts], sizes, _U32), mem,
                  _cat([p.back for p in parts], sizes, np.int64))


# --- liveness: which of A, X, M[0..15] a lane still needs at each address ------------------
# Lanes queued at an address carry only the registers live there, so the copies made
# when lanes split at a branch touch only those (typically just the packet index).

_LA, _LX = 1, 2


def _lm(k: int) -> int:
    return 4 << k if 0 <= k < 16 else 0


def _use_def(ins: Insn) -> tuple[int, int]:
    code, k = ins.code, ins.k
    cls = BPF_CLASS(code)
    everything = _LA | _LX | (0xFFFF << 2)
    if code in _LOADS_ABS:
        return 0, _LA
    if code in _LOADS_IND:
        return _LX, _LA
    if code == BPF_LDX | BPF_MSH | BPF_B:
        return 0, _LX
    if code in (BPF_LD | BPF_W | BPF_LEN, BPF_LD | BPF_IMM):
        return 0, _LA
    if code in (BPF_LDX | BPF_W | BPF_LEN, BPF_LDX | BPF_IMM):
        return 0, _LX
    if code == BPF_LD | BPF_MEM:
        return _lm(k), _LA
    if code == BPF_LDX | BPF_MEM:
        return _lm(k), _LX
    if code == BPF_ST:
        return _LA, _lm(k)
    if code == BPF_STX:
        return _LX, _lm(k)
    if code == BPF_MISC | BPF_TAX:
        return _LA, _LX
    if code == BPF_MISC | BPF_TXA:
        return _LX, _LA
    if cls == BPF_ALU and code in _STRAIGHT:
        return (_LA | (_LX if code & BPF_X else 0)), _LA
    if code in _CJUMPS:
        return (_LA | (_LX if code & BPF_X else 0)), 0
    if code == BPF_RET | BPF_A:
        return _LA, 0
    if code in (BPF_RET | BPF_K, BPF_JMP | BPF_JA):
        return 0, 0
    return everything, 0          # not implemented: raises when reached


def _successors(insns: tuple[Insn, ...], pc: int) -> tuple[int, ...]:
    ins = insns[pc]
    if ins.code == BPF_JMP | BPF_JA:
        return (pc + 1 + ins.sk,)
    if ins.code in _CJUMPS:
        return (pc + 1 + ins.jt, pc + 1 + ins.jf)
    if ins.code in _STRAIGHT:
        return (pc + 1,)
    return ()


def _liveness(insns: tuple[Insn, ...]) -> list[int]:
    """live_in bitmask per address (bit 0 A, bit 1 X, bit 2+k M[k]); a backward
    dataflow fixpoint, so backward jumps are handled."""
    n = len(insns)
    ud = [_use_def(i) for i in insns]
    succ = [[s for s in _successors(insns, pc) if 0 <= s < n] for pc in range(n)]
    live = [0] * n
    changed = True
    while changed:
        changed = False
        for pc in range(n - 1, -1, -1):
            out = 0
            for s_ in succ[pc]:
                out |= live[s_]
            use, dfn = ud[pc]
            new = use | (out & ~dfn)
            if new != live[pc]:
                live[pc] = new
                changed = True
    return live


def _blocks(insns: tuple[Insn, ...]) -> dict[int, int]:
    """Leader address -> end address (exclusive) of each basic block."""
    n = len(insns)
    leaders = {0}
    for i, ins in enumerate(insns):
        cls = BPF_CLASS(ins.code)
        if ins.code == BPF_JMP | BPF_JA:
            leaders.add(i + 1 + ins.sk)
            leaders.add(i + 1)
        elif ins.code in _CJUMPS:
            leaders.update((i + 1 + ins.jt, i + 1 + ins.jf, i + 1))
        elif cls == BPF_RET or ins.code not in _STRAIGHT:
            leaders.add(i + 1)
    starts = sorted(a for a in leaders if 0 <= a < n)
    ends = {}
    for s in starts:
        e = s
        while True:
            code = insns[e].code
            if code not in _STRAIGHT or e + 1 >= n or (e + 1) in leaders:
                break
            e += 1
        ends[s] = e + 1
    return ends


class _Runner:
    def __init__(self, insns: tuple[Insn, ...], batch: "PacketBatch"):
        self.insns = insns
        self.buf = batch.buf
        self.offset = np.asarray(batch.offset, np.int64)
        self.caplen = np.asarray(batch.caplen, np.int64)
        # the shortest packet: a load that fits in it fits in every packet of the batch
        self.mincap = int(self.caplen.min()) if len(self.caplen) else 0
        self.wirelen = np.asarray(batch.wirelen, _U32)
        self.result = np.zeros(len(batch), _U32)
        # Big-endian views of the buffer at every byte offset (stride 1, unaligned): a
        # 2- or 4-byte load is then one gather.  Loads are bounds-checked against the
        # packet first, so an index never reaches past the buffer.
        buf = np.ascontiguousarray(self.buf, dtype=np.uint8)
        self.views = {1: buf}
        for size, dt in ((2, ">u2"), (4, ">u4")):
            cnt = max(len(buf) - size + 1, 0)
            self.views[size] = (np.ndarray((cnt,), dt, buffer=buf, offset=0, strides=(1,))
                                if cnt else np.zeros(0, dt))
        # The batch's head (the first bytes of every packet, next to each other; see
        # PacketBatch.head): loads inside it read there, a few MB the CPU caches hold,
        # instead of all over the capture.  Same big-endian views, at every byte of it.
        self.hwidth = 0
        self.every = None               # run_batch's first lanes: every packet, in order
        head = getattr(batch, "head", None)
        if (head is not None and head.dtype == np.uint8 and head.ndim == 2
                and len(head) == len(self.offset) and len(head) and head.shape[1] >= 4
                and head.strides[1] == 1 and head.strides[0] >= head.shape[1]):
            self.head = head            # the views below point into it
            self.hwidth = head.shape[1]
            self.hstride = head.strides[0]
            span = (len(head) - 1) * self.hstride + self.hwidth
            strided = np.lib.stride_tricks.as_strided
            self.hviews = {1: strided(head, (span,), (1,))}
            for size, dt in ((2, ">u2"), (4, ">u4")):
                first = head[0, :size].view(dt)     # the dtype, at head's first byte
                self.hviews[size] = strided(first, (span - size + 1,), (1,))

    # --- packet loads ---------------------------------------------------------
    def _load(self, ln: _Lanes, pos, size: int) -> tuple[_Lanes, np.ndarray]:
        """Keep the lanes whose [pos, pos+size) lies inside the captured bytes; the
        others finish with 0 (bpf_filter's `return 0`).  ``pos`` is an int (absolute
        loads) or an int64 array (X + k).  Returns (lanes, value)."""
        whole = ln.idx is self.every and isinstance(pos, int)
        top = pos if isinstance(pos, int) else (int(pos.max()) if len(pos) else 0)
        if top + size > self.mincap:      # (else inside every packet: nothing to check)
            if whole:
                # every packet of the batch, in order (the first loads): no gather
                ok = self.caplen >= pos + size
            else:
                ok = self.caplen.take(ln.idx) >= pos + size
            if not ok.all():
                whole = False
                ix = np.flatnonzero(ok)
                ln = ln.take(ok)
                if not isinstance(pos, int):
                    pos = pos.take(ix)
        if self.hwidth:
            if isinstance(pos, int):
                if pos + size <= self.hwidth:
                    if whole or 4 * len(ln) >= len(self.head):
                        # the column of the head at pos (a strided view, one typed copy
                        # of every packet's value), then, for some of the packets, a
                        # typed take from it: cheaper than gathering unaligned values
                        first = self.head[0, pos:pos + size].view(self.hviews[size].dtype)
                        col = np.lib.stride_tricks.as_strided(first, (len(self.head),),
                                                              (self.hstride,)).astype(_U32)
                        return ln, col if whole else col.take(ln.idx)
                    return ln, self.hviews[size][ln.idx * self.hstride + pos].astype(_U32)
                inside = None
            else:
                inside = pos + size <= self.hwidth
                if inside.all():
                    return ln, self.hviews[size][ln.idx * self.hstride + pos].astype(_U32)
            if inside is not None and inside.any():
                val = np.empty(len(ln), _U32)
                h = np.flatnonzero(inside)
                f = np.flatnonzero(~inside)
                val[h] = self.hviews[size][ln.idx.take(h) * self.hstride + pos.take(h)]
                val[f] = self.views[size][self.offset.take(ln.idx.take(f)) + pos.take(f)]
                return ln, val
        base = self.offset.take(ln.idx) + pos
        # plain indexing, not take(): take is slow on the unaligned views
        return ln, self.views[size][base].astype(_U32)

    # --- one block ------------------------------------------------------------
    def run_block(self, start: int, end: int, ln: _Lanes, push) -> None:
        insns = self.insns
        for pc in range(start, end):
            if not len(ln):
                return
            ins = insns[pc]
            code, k = ins.code, ins.k
            cls = BPF_CLASS(code)
            if code in _LOADS_ABS:
                ln, ln.a = self._load(ln, k, _LOADS_ABS[code])
            elif code in _LOADS_IND:
                pos = ln.x.astype(np.int64) + k
                ln, ln.a = self._load(ln, pos, _LOADS_IND[code])
            elif code == BPF_LDX | BPF_MSH | BPF_B:
                ln, v = self._load(ln, k, 1)
                ln.x = (v & 0xF) << 2
            elif code == BPF_LD | BPF_W | BPF_LEN:
                ln.a = self.wirelen.take(ln.idx)
            elif code == BPF_LDX | BPF_W | BPF_LEN:
                ln.x = self.wirelen.take(ln.idx)
            elif code == BPF_LD | BPF_IMM:
                ln.a = np.full(len(ln), k, _U32)
            elif code == BPF_LDX | BPF_IMM:
                ln.x = np.full(len(ln), k, _U32)
            elif code == BPF_LD | BPF_MEM:
                ln.a = ln.mem[k] if k in ln.mem else np.zeros(len(ln), _U32)
            elif code == BPF_LDX | BPF_MEM:
                ln.x = ln.mem[k] if k in ln.mem else np.zeros(len(ln), _U32)
            elif code == BPF_ST:
                ln.mem[k] = ln.a
            elif code == BPF_STX:
                ln.mem[k] = ln.x
            elif code == BPF_MISC | BPF_TAX:
                ln.x = ln.a
            elif code == BPF_MISC | BPF_TXA:
                ln.a = ln.x
            elif code == BPF_ALU | BPF_NEG:
                ln.a = (_U32(0) - ln.a).astype(_U32)
            elif cls == BPF_ALU and code in _STRAIGHT:
                ln = self._alu(code, k, ln)
            elif code in _RETS:
                self.result[ln.idx] = k if code == BPF_RET | BPF_K else ln.a
                return
            elif code == BPF_JMP | BPF_JA:
                target = pc + 1 + ins.sk
                if ins.sk < 0:
                    back = (ln.back if ln.back is not None
                            else np.zeros(len(ln), np.int64)) + 1
                    if int(back.max()) > MAX_BACKWARD_JUMPS:
                        raise ExecutionError(
                            f"instruction {pc} (ja {target}): more than {MAX_BACKWARD_JUMPS} "
                            f"backward jumps on one packet; libpcap 1.10.3 would not "
                            f"terminate")
                    ln.back = back
                push(target, ln)
                return
            elif code in _CJUMPS:
                self._cjump(pc, ins, ln, push)
                return
            else:
                raise ExecutionError(
                    f"instruction {pc}: opcode 0x{code:02x} is not implemented by libpcap "
                    f"1.10.3's bpf_filter (it would abort())")
        # fell off the end of the block into the next one
        if len(ln):
            if end >= len(insns):
                raise ExecutionError(f"instruction {end - 1}: execution runs past the end "
                                     f"of the program")
            push(end, ln)

    def _alu(self, code: int, k: int, ln: _Lanes) -> _Lanes:
        op = code & 0xF0
        a = ln.a
        if code & BPF_X:
            v = ln.x
            if op in (BPF_DIV, BPF_MOD):
                nz = v != 0          # bpf_filter: division by X == 0 returns 0
                if not nz.all():
                    ln = ln.take(nz)
                    a, v = ln.a, ln.x
            elif op in (BPF_LSH, BPF_RSH):
                big = v >= 32        # bpf_filter: shift by X >= 32 gives 0
                sh = np.where(big, 0, v).astype(_U32)
                res = (a << sh) if op == BPF_LSH else (a >> sh)
                ln.a = np.where(big, _U32(0), res).astype(_U32)
                return ln
        else:
            if op in (BPF_LSH, BPF_RSH):
                k &= 31              # unchecked in 1.10.3; x86-64 masks the count
            v = _U32(k)
        if op == BPF_ADD:
            ln.a = a + v
        elif op == BPF_SUB:
            ln.a = a - v
        elif op == BPF_MUL:
            ln.a = a * v
        elif op == BPF_DIV:
            ln.a = a // v
        elif op == BPF_MOD:
            ln.a = a % v
        elif op == BPF_AND:
            ln.a = a & v
        elif op == BPF_OR:
            ln.a = a | v
        elif op == BPF_XOR:
            ln.a = a ^ v
        elif op == BPF_LSH:
            ln.a = a << v
        else:
            ln.a = a >> v
        ln.a = ln.a.astype(_U32, copy=False)
        return ln

    chains: dict = {}
    pending: dict = {}

    def _chain(self, ch: _Chain, ln: _Lanes, push) -> None:
        """A run of jeq tests (see _jeq_chains), with the lanes at its first test and
        those waiting at its others."""
        parts, entry = [ln], [np.zeros(len(ln), np.int64)]
        for addr in range(ch.start + 1, ch.end + 1):
            waiting = self.pending.pop(addr, None)
            if waiting is not None:
                m = _merge(waiting)
                parts.append(m)
                entry.append(np.full(len(m), addr, np.int64))
        if len(parts) > 1:
            ln = _merge(parts)
            entry = np.concatenate(entry)
        else:
            entry = None
        a = ln.a
        if ch.slots is not None:
            mult, shift, table = ch.slots
            i = table.take((np.asarray(a, _U32) * mult) >> shift)
            hit = ch.keys.take(i) == a
        else:
            i = np.searchsorted(ch.keys, a)
            np.minimum(i, len(ch.keys) - 1, out=i)
            hit = ch.keys[i] == a
        if entry is not None:
            hit &= ch.where[i] >= entry
        nhit = int(np.count_nonzero(hit))
        if nhit == 0:
            push(ch.miss, ln)
            return
        if nhit < len(ln):
            push(ch.miss, ln.take(~hit))
            hl = ln.take(hit)
            tgt = ch.target[i[hit]]
        else:
            hl, tgt = ln, ch.target[i]
        first = int(tgt[0])
        if (tgt == first).all():
            push(first, hl)
            return
        for t in np.unique(tgt).tolist():
            push(t, hl.take(tgt == t))

    def _cjump(self, pc: int, ins: Insn, ln: _Lanes, push) -> None:
        ch = self.chains.get(pc)
        if ch is not None:
            self._chain(ch, ln, push)
            return
        t, f = pc + 1 + ins.jt, pc + 1 + ins.jf
        if t == f:
            push(t, ln)
            return
        op = ins.code & 0xF0
        v = ln.x if ins.code & BPF_X else _U32(ins.k)
        a = ln.a
        if op == BPF_JEQ:
            cond = a == v
        elif op == BPF_JGT:
            cond = a > v
        elif op == BPF_JGE:
            cond = a >= v
        else:
            cond = (a & v) != 0
        n_true = int(np.count_nonzero(cond))
        if n_true == len(ln):
            push(t, ln)
        elif n_true == 0:
            push(f, ln)
        else:
            push(t, ln.take(cond))
            push(f, ln.take(~cond))


# --- chains of `jeq #k` on one A: a set lookup instead of one split per key -----------
# libpcap compiles `host a or host b or ...` (and port lists, and `ether proto` lists) to
# runs of `jeq #k_i jt T_i jf <next>`: A against one key after another, the false branch
# falling into the next test.  Run one at a time, each test splits all the lanes still
# in the run.  Instead the whole run is one lookup (a hash of the keys, _Chain.slots):
# a lane goes to T_i for the first key equal to A (from the test it entered the run at),
# else to the last test's false target.  Lanes may enter a run in its middle (a jump to
# one of its tests); they are only matched against the keys from there on.

MIN_CHAIN = 4
_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K


@dataclass(frozen=True)
class _Chain:
    start: int               # address of the first test
    end: int                 # address of the last test
    keys: np.ndarray         # uint32, sorted
    where: np.ndarray        # int64, address of the test of each sorted key
    target: np.ndarray       # int64, its true target
    miss: int                # the last test's false target
    # (multiplier, shift, table): keys[table[(A * multiplier mod 2^32) >> shift]] is
    # the only key that can equal A (a collision-free multiplicative hash of the keys;
    # an empty slot holds 0, whose key differs from A since A's slot would hold it).
    # A hash lookup is ~10x cheaper than numpy's binary search (searchsorted) of
    # unsorted values.  None: no multiplier found; the sorted search is used.
    slots: Optional[tuple] = None


def _jeq_chains(insns: tuple[Insn, ...]) -> dict[int, _Chain]:
    """The runs of at least MIN_CHAIN `jeq #k` tests described above, by first address:
    distinct keys, every true target past the run.  None when the program jumps
    backwards (a lane could then come back into a run already taken)."""
    n = len(insns)
    if any(i.code == BPF_JMP | BPF_JA and i.sk < 0 for i in insns):
        return {}
    chains = {}
    pc = 0
    while pc < n:
        end = pc
        while (insns[end].code == _JEQ_K and end + 1 < n and insns[end].jf == 0
               and insns[end + 1].code == _JEQ_K):
            end += 1
        if insns[pc].code == _JEQ_K and end - pc + 1 >= MIN_CHAIN:
            run = insns[pc:end + 1]
            keys = [i.k for i in run]
            targets = [pc + j + 1 + i.jt for j, i in enumerate(run)]
            if len(set(keys)) == len(keys) and min(targets) > end:
                order = np.argsort(np.array(keys, np.uint32), kind="stable")
                sk = np.array(keys, np.uint32)[order]
                chains[pc] = _Chain(pc, end, sk, (pc + order).astype(np.int64),
                                    np.array(targets, np.int64)[order],
                                    end + 1 + insns[end].jf, _hash_slots(sk))
                pc = end + 1
                continue
        pc = max(end, pc) + 1
    return chains


def _hash_slots(keys: np.ndarray) -> Optional[tuple]:
    """_Chain.slots for the sorted, distinct uint32 `keys`: a table of 2^b slots, at
    least 64 per key (so that a random odd multiplier is collision-free most of the
    time), multipliers tried in a fixed order.  None when none of them fits."""
    n = len(keys)
    bits = max(8, (64 * n - 1).bit_length())
    if bits > 20:
        return None
    shift = np.uint32(32 - bits)
    x = 0x9E3779B9
    for _ in range(64):
        # (odd multipliers from a fixed 32-bit LCG; numpy.random is not imported for it)
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        mult = np.uint32(x | 1)
        h = (keys * mult) >> shift
        if len(np.unique(h)) == n:
            table = np.zeros(1 << bits, np.int64)
            table[h] = np.arange(n)
            return mult, shift, table
    return None


@dataclass(frozen=True)
class _Plan:
    ends: dict
    live: list
    chains: dict


_plans: dict = {}


def _plan(prog: Program) -> _Plan:
    """The per-program analysis (validation, blocks, liveness, jeq runs), made once per
    program (a capture is many batches)."""
    key = prog.insns
    plan = _plans.get(key)
    if plan is None:
        from .validate import validate
        validate(prog, "libpcap")
        plan = _Plan(_blocks(key), _liveness(key), _jeq_chains(key))
        if len(_plans) > 64:
            _plans.clear()
        _plans[key] = plan
    return plan


def run_batch(prog: Program, batch: "PacketBatch") -> np.ndarray:
    """Run classic BPF ``prog`` on every packet of ``batch`` with libpcap 1.10.3
    bpf_filter semantics; returns the uint32 return values, one per packet."""
    if not isinstance(prog, Program):
        prog = Program(prog)
    plan = _plan(prog)
    insns = prog.insns
    n = len(batch)
    runner = _Runner(insns, batch)
    if n == 0:
        return runner.result
    ends = plan.ends
    live = plan.live
    pending: dict[int, list[_Lanes]] = {}
    heap: list[int] = []
    runner.chains = plan.chains
    runner.pending = pending

    def push(addr: int, ln: _Lanes) -> None:
        if not len(ln):
            return
        if addr not in ends:     # a jump target is always a leader; defensive
            raise ExecutionError(f"jump to instruction {addr}, outside the program")
        mask = live[addr]
        if not mask & _LA:
            ln.a = None
        if not mask & _LX:
            ln.x = None
        for k in [k for k in ln.mem if not mask & _lm(k)]:
            del ln.mem[k]
        if addr not in pending:
            pending[addr] = []
            heapq.heappush(heap, addr)
        pending[addr].append(ln)

    runner.every = np.arange(n, dtype=np.int64)
    push(0, _Lanes(runner.every, np.zeros(n, _U32), np.zeros(n, _U32), {}, None))
    while heap:
        addr = heapq.heappop(heap)
        parts = pending.pop(addr, None)
        if parts is None:
            continue                # lanes a jeq run took (_Runner._chain)
        runner.run_block(addr, ends[addr], _merge(parts), push)
    return runner.result
