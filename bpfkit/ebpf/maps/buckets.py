"""The iteration order of the kernel's chained hash tables (hashtab.c, devmap.c):
buckets in index order, and inside a bucket newest first (hlist_add_head).  Keeps only
that order; the maps keep their elements in dicts.

The sorted list of bucket numbers is maintained lazily: buckets that become non-empty
are collected and merged in at the next query; buckets that become empty stay listed
and are skipped.  Updates stay O(1) and a walk that deletes as it goes stays linear."""
from __future__ import annotations

import bisect


class BucketOrder:
    def __init__(self, n_buckets: int):
        self.mask = n_buckets - 1
        self._chains: dict[int, list[bytes]] = {}
        self._sorted: list[int] = []      # bucket numbers, ascending (may hold empties)
        self._added: set[int] = set()     # non-empty buckets not yet in _sorted

    def add_head(self, key: bytes, h: int) -> None:
        b = h & self.mask
        chain = self._chains.get(b)
        if chain is None:
            self._chains[b] = [key]
            self._added.add(b)
        else:
            chain.insert(0, key)

    def add_heads(self, keys: list[bytes], hashes: list[int]) -> None:
        """add_head(keys[i], hashes[i]) for each i in order."""
        chains, added, mask = self._chains, self._added, self.mask
        get = chains.get
        for key, h in zip(keys, hashes):
            b = h & mask
            chain = get(b)
            if chain is None:
                chains[b] = [key]
                added.add(b)
            else:
                chain.insert(0, key)

    def remove(self, key: bytes, h: int) -> None:
        b = h & self.mask
        chain = self._chains[b]
        chain.remove(key)
        if not chain:
            del self._chains[b]

    def _index(self) -> list[int]:
        if self._added:
            self._sorted = sorted(b for b in set(self._sorted) | self._added
                                  if b in self._chains)
            self._added.clear()
        return self._sorted

    def next_after(self, key: bytes | None, h: int) -> bytes | None:
        """htab_map_get_next_key(): after `key` (hash `h`) in its chain, else the first
        element of the next non-empty bucket; key None: the very first element."""
        if key is None:
            start = 0
        else:
            b = h & self.mask
            chain = self._chains[b]
            pos = chain.index(key)
            if pos + 1 < len(chain):
                return chain[pos + 1]
            start = b + 1
        order = self._index()
        i = bisect.bisect_left(order, start)
        while i < len(order):
            chain = self._chains.get(order[i])
            if chain:
                return chain[0]
            i += 1
        return None
