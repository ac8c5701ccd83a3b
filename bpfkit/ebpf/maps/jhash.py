"""Bob Jenkins' lookup3 hash as the kernel uses it (include/linux/jhash.h): jhash() over
bytes and jhash2() over u32 words.  Written from the published algorithm.  The hash
table (htab_map_hash) and the bloom filter pick jhash2 when the length is a multiple of
4, else jhash; with seed 0 (BPF_F_ZERO_SEED) the results, and so the kernel's bucket
order and bloom-filter bits, are reproduced exactly."""
from __future__ import annotations

import functools

import struct

JHASH_INITVAL = 0xDEADBEEF
M = 0xFFFFFFFF


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    # __jhash_mix, with rol32(x, k) written out: ((x << k) | (x >> (32 - k))) & M
    a = (a - c) & M; a ^= ((c << 4) | (c >> 28)) & M; c = (c + b) & M
    b = (b - a) & M; b ^= ((a << 6) | (a >> 26)) & M; a = (a + c) & M
    c = (c - b) & M; c ^= ((b << 8) | (b >> 24)) & M; b = (b + a) & M
    a = (a - c) & M; a ^= ((c << 16) | (c >> 16)) & M; c = (c + b) & M
    b = (b - a) & M; b ^= ((a << 19) | (a >> 13)) & M; a = (a + c) & M
    c = (c - b) & M; c ^= ((b << 4) | (b >> 28)) & M; b = (b + a) & M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    # __jhash_final
    c ^= b; c = (c - (((b << 14) | (b >> 18)) & M)) & M
    a ^= c; a = (a - (((c << 11) | (c >> 21)) & M)) & M
    b ^= a; b = (b - (((a << 25) | (a >> 7)) & M)) & M
    c ^= b; c = (c - (((b << 16) | (b >> 16)) & M)) & M
    a ^= c; a = (a - (((c << 4) | (c >> 28)) & M)) & M
    b ^= a; b = (b - (((a << 14) | (a >> 18)) & M)) & M
    c ^= b; c = (c - (((b << 24) | (b >> 8)) & M)) & M
    return c


def jhash(key: bytes, initval: int = 0) -> int:
    n = len(key)
    a = b = c = (JHASH_INITVAL + n + initval) & M
    i = 0
    while n > 12:
        a = (a + int.from_bytes(key[i:i + 4], "little")) & M
        b = (b + int.from_bytes(key[i + 4:i + 8], "little")) & M
        c = (c + int.from_bytes(key[i + 8:i + 12], "little")) & M
        a, b, c = _mix(a, b, c)
        n -= 12
        i += 12
    if n == 0:
        return c
    # The last 1..12 bytes, zero-padded, little-endian into a, b, c.
    tail = key[i:i + n] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & M
    b = (b + int.from_bytes(tail[4:8], "little")) & M
    c = (c + int.from_bytes(tail[8:12], "little")) & M
    return _final(a, b, c)


def jhash2(key: bytes, initval: int = 0) -> int:
    """jhash2() over len(key) // 4 native-endian (little) u32 words."""
    n = len(key) // 4
    a = b = c = (JHASH_INITVAL + (n << 2) + initval) & M
    w = struct.unpack_from(f"<{n}I", key)
    i = 0
    while n > 3:
        a = (a + w[i]) & M
        b = (b + w[i + 1]) & M
        c = (c + w[i + 2]) & M
        a, b, c = _mix(a, b, c)
        n -= 3
        i += 3
    if n == 0:
        return c
    if n >= 3:
        c = (c + w[i + 2]) & M
    if n >= 2:
        b = (b + w[i + 1]) & M
    a = (a + w[i]) & M
    return _final(a, b, c)


@functools.lru_cache(maxsize=1 << 16)
def htab_hash(key: bytes, seed: int = 0) -> int:
    """htab_map_hash() / the bloom filter's hash(): jhash2 for whole words.  Cached:
    the vector engine asks for a new key's bucket before the map inserts it."""
    return jhash2(key, seed) if len(key) % 4 == 0 else jhash(key, seed)
