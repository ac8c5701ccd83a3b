"""The seeded generator behind bpf_get_prandom_u32 in capture runs.

Draw k (0, 1, ...) of packet i under seed s is a pure function of (s, i, k): the upper
32 bits of SplitMix64's output for the state mix(s, i) advanced k + 1 times.  A packet's
draws therefore do not depend on how many draws earlier packets made, so the reference
interpreter (one packet at a time) and the vector engine (all packets at once) give the
same values, and re-running a subset of a capture reproduces its draws.
SplitMix64: Steele, Lea, Flood, "Fast splittable pseudorandom number generators"
(OOPSLA 2014), the constants of java.util.SplittableRandom."""
from __future__ import annotations

import numpy as np

__all__ = ["draw", "draw_array", "PacketRandom"]

_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def _state(seed: int, packet: int) -> int:
    return _mix((seed & _M64) ^ _mix((packet * _GAMMA + _GAMMA) & _M64))


def draw(seed: int, packet: int, k: int) -> int:
    """The k-th u32 draw of packet `packet`."""
    return _mix((_state(seed, packet) + (k + 1) * _GAMMA) & _M64) >> 32


def _mix_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))


def draw_array(seed: int, packets: np.ndarray, k: np.ndarray) -> np.ndarray:
    """draw() over arrays of packet indices and draw numbers (uint64 results)."""
    with np.errstate(over="ignore"):
        p = packets.astype(np.uint64)
        st = _mix_np(np.uint64(seed & _M64) ^ _mix_np(p * np.uint64(_GAMMA) + np.uint64(_GAMMA)))
        z = st + (k.astype(np.uint64) + np.uint64(1)) * np.uint64(_GAMMA)
        return _mix_np(z) >> np.uint64(32)


class PacketRandom:
    """A callable giving the successive draws of one packet (what the interpreter's
    `prandom` argument expects)."""

    def __init__(self, seed: int, packet: int):
        self._state = _state(seed, packet)
        self._k = 0

    def __call__(self) -> int:
        self._k += 1
        return _mix((self._state + self._k * _GAMMA) & _M64) >> 32
