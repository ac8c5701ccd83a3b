"""Classic BPF instructions and programs (the data model; no behaviour beyond encoding)."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import EncodingError

DEFAULT_SNAPLEN = 262144   # tcpdump's default snapshot length (MAXIMUM_SNAPLEN)

_SOCK_FILTER = {"little": struct.Struct("<HBBI"), "big": struct.Struct(">HBBI")}


@dataclass(frozen=True, slots=True)
class Insn:
    """One `struct sock_filter` / `struct bpf_insn`: u16 code, u8 jt, u8 jf, u32 k."""
    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0

    def __post_init__(self):
        if not (0 <= self.code <= 0xFFFF and 0 <= self.jt <= 0xFF and 0 <= self.jf <= 0xFF
                and 0 <= self.k <= 0xFFFFFFFF):
            raise EncodingError(
                f"instruction field out of range: code={self.code} jt={self.jt} "
                f"jf={self.jf} k={self.k} (code u16, jt/jf u8, k u32)")

    def to_bytes(self, byteorder: str = "little") -> bytes:
        return _SOCK_FILTER[byteorder].pack(self.code, self.jt, self.jf, self.k)

    @property
    def sk(self) -> int:
        """k as a signed 32-bit value."""
        return self.k - (1 << 32) if self.k & 0x80000000 else self.k


def insn(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> Insn:
    """Build an Insn, accepting a negative k (stored as its u32 two's complement)."""
    return Insn(code, jt, jf, k & 0xFFFFFFFF if k < 0 else k)


@dataclass(frozen=True, slots=True)
class Program:
    """A classic BPF program: the instructions plus the link type and snapshot
    length it was compiled for (both optional metadata; they do not change how
    the instructions run)."""
    insns: tuple[Insn, ...]
    linktype: int | None = None
    snaplen: int = DEFAULT_SNAPLEN

    def __init__(self, insns: Iterable[Insn | Sequence[int]], linktype: int | None = None,
                 snaplen: int = DEFAULT_SNAPLEN):
        out = []
        for i in insns:
            if not isinstance(i, Insn):
                try:
                    i = insn(*i)
                except TypeError as e:
                    raise EncodingError(f"instruction {len(out)}: expected (code, jt, jf, k), "
                                        f"found {i!r}") from e
            out.append(i)
        object.__setattr__(self, "insns", tuple(out))
        object.__setattr__(self, "linktype", linktype)
        object.__setattr__(self, "snaplen", snaplen)

    def __len__(self) -> int:
        return len(self.insns)

    def __iter__(self):
        return iter(self.insns)

    def __getitem__(self, i):
        return self.insns[i]

    def to_bytes(self, byteorder: str = "little") -> bytes:
        """The raw array of 8-byte `struct sock_filter`."""
        return b"".join(i.to_bytes(byteorder) for i in self.insns)

    @classmethod
    def from_bytes(cls, data: bytes, byteorder: str = "little", **meta) -> "Program":
        if len(data) % 8:
            raise EncodingError(f"raw program length {len(data)} is not a multiple of 8 "
                                f"(struct sock_filter is 8 bytes); {len(data) % 8} trailing bytes "
                                f"at byte offset {len(data) - len(data) % 8}")
        s = _SOCK_FILTER[byteorder]
        return cls((Insn(*s.unpack_from(data, o)) for o in range(0, len(data), 8)), **meta)

    def as_tuples(self) -> list[tuple[int, int, int, int]]:
        return [(i.code, i.jt, i.jf, i.k) for i in self.insns]
