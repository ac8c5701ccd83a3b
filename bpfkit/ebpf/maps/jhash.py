"""Bob Jenkins' lookup3 hash as the kernel uses it (include/linux/jhash.h): jhash() over
bytes and jhash2() over u32 words.  Written from the published algorithm.  The hash
table (htab_map_hash) and the bloom filter pick jhash2 when the length is a multiple of
4, else jhash; with seed 0 (BPF_F_ZERO_SEED) the results, and so the kernel's bucket
order and bloom-filter bits, are reproduced exactly."""
from __future__ import annotations

import struct

import numpy as np

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


_CACHE: dict[tuple[bytes, int], int] = {}
_CACHE_MAX = 1 << 20


def htab_hash(key: bytes, seed: int = 0) -> int:
    """htab_map_hash() / the bloom filter's hash(): jhash2 for whole words.  Cached
    (bounded): the vector engine hashes many new keys at once (htab_hash_many) before
    the map inserts them one by one."""
    k = (key, seed)
    h = _CACHE.get(k)
    if h is None:
        h = jhash2(key, seed) if len(key) % 4 == 0 else jhash(key, seed)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[k] = h
    return h


def _rol(x, k: int):
    return (x << np.uint32(k)) | (x >> np.uint32(32 - k))


def _mix_np(a, b, c):
    a = a - c; a ^= _rol(c, 4); c = c + b
    b = b - a; b ^= _rol(a, 6); a = a + c
    c = c - b; c ^= _rol(b, 8); b = b + a
    a = a - c; a ^= _rol(c, 16); c = c + b
    b = b - a; b ^= _rol(a, 19); a = a + c
    c = c - b; c ^= _rol(b, 4); b = b + a
    return a, b, c


def _final_np(a, b, c):
    c ^= b; c = c - _rol(b, 14)
    a ^= c; a = a - _rol(c, 11)
    b ^= a; b = b - _rol(a, 25)
    c ^= b; c = c - _rol(b, 16)
    a ^= c; a = a - _rol(c, 4)
    b ^= a; b = b - _rol(a, 14)
    c ^= b; c = c - _rol(b, 24)
    return c


def htab_hash_many(keys: "np.ndarray", seed: int = 0, cache: bool = True) -> list[int]:
    """htab_hash of every row of `keys` (uint8 [n, key_size]), vectorised when the key
    size is a multiple of 4 (jhash2, the same steps as above on uint32 arrays); the
    results also go into htab_hash's cache unless cache=False (callers that keep the
    hashes themselves)."""
    n, ks = keys.shape
    if ks % 4 or ks == 0:
        return [htab_hash(bytes(r), seed) for r in keys]
    w = np.ascontiguousarray(keys).view("<u4").astype(np.uint32)
    nw = ks // 4
    with np.errstate(over="ignore"):
        init = np.uint32((JHASH_INITVAL + (nw << 2) + seed) & M)
        a = np.full(n, init, np.uint32)
        b, c = a.copy(), a.copy()
        i, left = 0, nw
        while left > 3:
            a = a + w[:, i]; b = b + w[:, i + 1]; c = c + w[:, i + 2]
            a, b, c = _mix_np(a, b, c)
            left -= 3
            i += 3
        if left == 0:
            out = c
        else:
            if left >= 3:
                c = c + w[:, i + 2]
            if left >= 2:
                b = b + w[:, i + 1]
            a = a + w[:, i]
            out = _final_np(a, b, c)
    hashes = out.astype(np.int64).tolist()
    if not cache:
        return hashes
    if len(_CACHE) + n >= _CACHE_MAX:
        _CACHE.clear()
    for r, h in zip(keys, hashes):
        _CACHE[(r.tobytes(), seed)] = h
    return hashes
