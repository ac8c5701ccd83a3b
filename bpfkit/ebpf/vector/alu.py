"""Vectorised eBPF ALU, byte-swap and comparison semantics over uint64 lane arrays.

The same rules as the reference interpreter (bpfkit.ebpf.interp._alu and _JCOND, i.e.
kernel/bpf/core.c plus the verifier's div/mod patches): ALU32 works on the low 32 bits
and zero-extends; shift amounts are masked to the width; unsigned division by 0 gives 0
and modulo by 0 leaves dst; sdiv/smod truncate toward zero (C), sdiv by -1 negates and
smod by -1 gives 0, both by 0 as their unsigned forms."""
from __future__ import annotations

import numpy as np

from .. import isa
from ..interp import _JCOND

U64 = np.uint64
M32 = U64(0xFFFFFFFF)
_ZERO = U64(0)


def mask_to(v: np.ndarray, bits: int) -> np.ndarray:
    return v & M32 if bits == 32 else v


def sext(v: np.ndarray, bits: int) -> np.ndarray:
    """Sign-extend the low `bits` bits of uint64 values; the result is int64."""
    if bits == 64:
        return v.view(np.int64)
    sh = U64(64 - bits)
    return (v << sh).view(np.int64) >> np.int64(64 - bits)


def _neg(v: np.ndarray) -> np.ndarray:
    return _ZERO - v


def alu(op: int, signed: int, a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """One ALU operation on `bits`-wide operands already masked to the width."""
    if op == isa.BPF_ADD:
        r = a + b
    elif op == isa.BPF_SUB:
        r = a - b
    elif op == isa.BPF_MUL:
        r = a * b
    elif op == isa.BPF_DIV or op == isa.BPF_MOD:
        if signed:
            sa, sb = sext(a, bits), sext(b, bits)
            # magnitudes as u64 (|INT_MIN| = 2**63 fits), the C truncating division
            ua = np.where(sa < 0, _neg(sa.view(U64)), sa.view(U64))
            ub = np.where(sb < 0, _neg(sb.view(U64)), sb.view(U64))
            zero = ub == 0
            safe = np.where(zero, U64(1), ub)
            if op == isa.BPF_DIV:
                q = ua // safe
                r = np.where((sa < 0) != (sb < 0), _neg(q), q)
                r = np.where(zero, _ZERO, r)
            else:
                m = ua % safe
                r = np.where(sa < 0, _neg(m), m)
                r = np.where(zero, a, r)
        else:
            zero = b == 0
            safe = np.where(zero, U64(1), b)
            if op == isa.BPF_DIV:
                r = np.where(zero, _ZERO, a // safe)
            else:
                r = np.where(zero, a, a % safe)
    elif op == isa.BPF_OR:
        r = a | b
    elif op == isa.BPF_AND:
        r = a & b
    elif op == isa.BPF_XOR:
        r = a ^ b
    elif op == isa.BPF_LSH:
        r = a << (b & U64(bits - 1))
    elif op == isa.BPF_RSH:
        r = a >> (b & U64(bits - 1))
    elif op == isa.BPF_ARSH:
        r = (sext(a, bits) >> (b & U64(bits - 1)).view(np.int64)).view(U64)
    elif op == isa.BPF_MOV:
        r = b
    else:  # pragma: no cover - the table has no other ALU op
        raise AssertionError(op)
    return mask_to(r, bits)


def swap(v: np.ndarray, bits: int) -> np.ndarray:
    """Reverse the low `bits` bits' bytes (be16/be32/be64 and bswap on a little-endian
    host); the result is zero-extended."""
    dt = {16: "<u2", 32: "<u4", 64: "<u8"}[bits]
    return v.astype(dt).byteswap().astype(U64)


_SIGNED_JUMPS = frozenset({isa.BPF_JSGT, isa.BPF_JSGE, isa.BPF_JSLT, isa.BPF_JSLE})


def jcond(op: int, a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """The taken mask of a conditional jump (operands masked to the width): the
    interpreter's own comparison table (interp._JCOND) applied to lane arrays."""
    sa, sb = (sext(a, bits), sext(b, bits)) if op in _SIGNED_JUMPS else (None, None)
    return _JCOND[op](a, b, sa, sb)
