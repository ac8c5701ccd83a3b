"""Per-lane memory of the vector engine: every pointer a program holds is a synthetic
64-bit address ``BASE + (region << 32) + offset`` (the reference interpreter's address
space: regions 4 GiB apart), and the region number says which per-lane area it is:

  0          the context (xdp_md / __sk_buff), computed by the program type's hooks
  1          the XDP page (4096 bytes per lane; window data_meta..data_end)
  2 .. 9     stack frames 0..7 (512 bytes each per lane)
  16 + e     map values handed out by lookup event e (bpfkit.ebpf.vector.mapwave)

A lane's address can only ever reach that lane's bytes: each area is indexed by the
lane number, never by anything the program computes, and every access is checked
against the lane's own window.  That is the isolation property the tests check: no
packet's bytes can leak into another packet's result.  The numeric value of a pointer
may differ from the interpreter's (which numbers regions in the order it creates them);
programs that print or store pointers see other numbers, as they would in two kernel
runs."""
from __future__ import annotations

import numpy as np

U64 = np.uint64
BASE = 0xFFFF_8880_0000_0000
REGION_CTX, REGION_PACKET, REGION_STACK0, REGION_MAPVAL0 = 0, 1, 2, 16
STACK_SIZE = 512
MAX_FRAMES = 8


def region_base(region: int) -> int:
    return BASE + (region << 32)


def decode(addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(region number, offset) per lane; addresses below BASE give huge region numbers."""
    rel = addr - U64(BASE)
    return (rel >> U64(32)).astype(np.int64), (rel & U64(0xFFFFFFFF)).astype(np.int64)


_VIEW_DT = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_VIEW_BE = {1: "u1", 2: ">u2", 4: ">u4"}


def unaligned_view(arena: np.ndarray, size: int, big_endian: bool = False) -> np.ndarray:
    """A view of `arena` where element i is the `size`-byte integer starting at byte i."""
    if size == 1:
        return arena
    n = arena.shape[0] - size + 1
    dt = (_VIEW_BE if big_endian else _VIEW_DT)[size]
    return np.ndarray((max(n, 0),), dtype=dt, buffer=arena, strides=(1,))


def gather(arena: np.ndarray, byte_addr: np.ndarray, size: int) -> np.ndarray:
    return unaligned_view(arena, size)[byte_addr].astype(U64)


def scatter(arena: np.ndarray, byte_addr: np.ndarray, size: int, value: np.ndarray) -> None:
    dt = np.dtype(_VIEW_DT[size])
    unaligned_view(arena, size)[byte_addr] = value.astype(dt) if size < 8 else value


def gather_rows(arena: np.ndarray, byte_addr: np.ndarray, nbytes: int) -> np.ndarray:
    """uint8 [n, nbytes]: the nbytes bytes at each byte address (a view of the arena as
    overlapping nbytes-wide records, one gather: much faster than a 2-D fancy index)."""
    if not arena.flags.c_contiguous or arena.ndim != 1:
        return arena[byte_addr[:, None] + np.arange(nbytes)]
    n = max(arena.shape[0] - nbytes + 1, 0)
    rec = np.ndarray((n,), dtype=np.dtype((np.void, nbytes)), buffer=arena, strides=(1,))
    return rec[byte_addr].view(np.uint8).reshape(-1, nbytes)
