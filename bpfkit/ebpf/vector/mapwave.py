"""Maps in the vector engine: speculative waves with exact sequential semantics.

The contract (DESIGN.md): the maps end, and every lane sees, exactly what running the
packets one after another in capture order would give.  The engine runs a *wave* of
lanes at once against the maps as they were when the wave started (the snapshot S) and
never changes the real maps during a wave.  Instead each lane works on private copies:

* a lookup gives the lane a private *chunk* holding a copy of the value (the same chunk
  for every later lookup of that key by that lane, as the kernel gives the same
  pointer); loads and stores go to the chunk, and the engine notes per 8-byte word
  whether the lane read it, wrote it, or only added to it with a non-fetching atomic add
  (a *delta*: the one commutative update);
* update/delete are predicted from S plus the lane's own earlier operations, with the
  checks of array_map_update_elem / htab_map_update_elem (the same order of checks as
  bpfkit.ebpf.maps), and logged;
* existence is tracked per key: a hash lookup, update or delete *reads* it; a
  successful insert, replace or delete *writes* it.

After the wave, in lane (= capture) order, a lane *conflicts* when it read something an
earlier lane of the wave wrote: a key's existence written before it read or wrote it, a
word written or added to before it read it, a word added to before it wrote it.  The
other lanes saw exactly what sequential execution shows them.  What happens next is the
engine's (engine.VectorProgram._settle): commit the non-conflicting lanes with an undo
log and run the conflicting ones as a second wave, keeping both if they cannot have
seen each other out of order (engine._crosses), or else walk the lanes in order,
re-running conflicting lanes on the reference interpreter.  Commits apply lanes in
capture order: logged updates/deletes through the map's own program-side API (whose
return code must equal the prediction), written bytes, then the deltas summed per word.
The order of inserts into one hash bucket is part of the map's state (its iteration
order): inserts note their bucket (ORDER) so that lanes committed out of capture order
never insert into one bucket in the wrong order.

A map may fill up during a wave: once the inserts of a wave could reach max_entries,
every insert and delete of that map also reads and writes a per-map size pseudo-key,
which serialises them.

Map types run here: ARRAY, PERCPU_ARRAY, HASH, PERCPU_HASH (programs run on CPU 0);
other types make the engine hand the program to the reference interpreter (see
engine.unsupported_reason)."""
from __future__ import annotations

import itertools
import struct

import numpy as np

from ...errors import ExecutionError
from ..maps.consts import (BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, E2BIG, EEXIST, EINVAL,
                           ENOENT, MapType)
from ..maps.jhash import htab_hash, htab_hash_many
from ..maps.slab import Rows
from .memory import REGION_MAPVAL0, U64, region_base

SUPPORTED_MAP_TYPES = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH,
                                 MapType.PERCPU_HASH})
_ARRAYS = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY})
_HASHES = frozenset({MapType.HASH, MapType.PERCPU_HASH})
_IN_PLACE = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PERCPU_HASH})
EREAD, EWRITE = 1, 2
BUCKET_IDS = 1 << 36   # key ids of hash buckets (WaveMaps.bucket_ids); keys' ids are below
ORDER = 32        # an insert's place in its hash bucket (order across keys, see bucket_key)
_M64 = (1 << 64) - 1
_SIZE_KEY = None          # the pseudo-key "number of elements" of a map
_UINT = {n: struct.Struct("<" + c) for n, c in ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))}
_MASK = {n: (1 << (8 * n)) - 1 for n in _UINT}


class _LazyEvent:
    """An event of `wm` made on first use (WaveMaps.new_event)."""
    __slots__ = ("wm", "_id")

    def __init__(self, wm: "WaveMaps"):
        self.wm, self._id = wm, None

    @property
    def id(self) -> int:
        if self._id is None:
            self._id = self.wm.new_event()
        return self._id


def _rows_of(m) -> Rows | None:
    """The values of map m as rows (slab.Rows): a hash map's slab; an array's storage
    (CPU 0's for PERCPU_ARRAY: programs run on CPU 0), row = index.  None for the map
    types only the interpreter touches (VectorProgram._hand_over)."""
    if m.type not in _ARRAYS:
        return getattr(m, "_slab", None) if m.type in SUPPORTED_MAP_TYPES else None
    data = m._data if m.type == MapType.ARRAY else m._data[0]
    return Rows.over(np.frombuffer(data, np.uint8).reshape(m.max_entries, m.stride))


def _word_bits(off: np.ndarray, size: int) -> np.ndarray:
    """Bit mask of the 8-byte words [off, off+size) touches (word index capped at 63)."""
    w0 = np.minimum(off // 8, 63).astype(np.uint64)
    w1 = np.minimum((off + size - 1) // 8, 63).astype(np.uint64)
    hi = np.where(w1 >= 63, U64(_M64), (U64(1) << (w1 + U64(1))) - U64(1))
    return hi & ~((U64(1) << w0) - U64(1))


def _distinct(small: np.ndarray) -> list[int]:
    """The distinct values of an array of small non-negative ints (map indices)."""
    return np.flatnonzero(np.bincount(small)).tolist() if len(small) else []


def _distinct_lanes(lanes: np.ndarray, W: int) -> bool:
    seen = np.zeros(W, bool)
    seen[lanes] = True
    return int(np.count_nonzero(seen)) == len(lanes)


_FP_MUL = np.uint64(0x9E3779B97F4A7C15)


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row of each distinct row of `keys` (uint8 [n, k], k > 0), index
    of each row's distinct row among them).  The rows are compared as u64 words; rows
    of more than 8 bytes through a 64-bit fingerprint, checked against the rows
    (faster than np.unique on a void view; a fingerprint shared by different rows
    makes it take that way)."""
    n, ks = keys.shape
    nw = (ks + 7) // 8
    if ks % 8:
        padded = np.zeros((n, nw * 8), np.uint8)
        padded[:, :ks] = keys
    else:
        padded = np.ascontiguousarray(keys)
    words = padded.view(np.uint64)
    fp = words[:, 0].copy()
    for i in range(1, nw):
        fp = (fp * _FP_MUL) ^ words[:, i]          # wraps modulo 2**64
    _, first, inv = np.unique(fp, return_index=True, return_inverse=True)
    inv = inv.ravel()
    if nw > 1 and not (padded[first[inv]] == padded).all():
        rows = padded.view(np.dtype((np.void, nw * 8))).ravel()
        _, first, inv = np.unique(rows, return_index=True, return_inverse=True)
        inv = inv.ravel()
    return first, inv


class _Grow:
    """A growable 1-D numpy array."""

    def __init__(self, dtype, cap: int = 1024):
        self.a = np.zeros(cap, dtype=dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> np.ndarray:
        k = len(values)
        if self.n + k > len(self.a):
            new = np.zeros(max(2 * len(self.a), self.n + k), dtype=self.a.dtype)
            new[:self.n] = self.a[:self.n]
            self.a = new
        idx = np.arange(self.n, self.n + k)
        self.a[idx] = values
        self.n += k
        return idx

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


class _KeyList:
    """id -> (map index, key) for a wave's key ids, kept as two lists (registering
    thousands of keys per wave then makes no tuples)."""

    def __init__(self):
        self.mi: list[int] = []
        self.key: list = []

    def __len__(self) -> int:
        return len(self.key)

    def __getitem__(self, kid: int) -> tuple[int, object]:
        return self.mi[kid], self.key[kid]

    def append(self, entry: tuple[int, object]) -> None:
        self.mi.append(entry[0])
        self.key.append(entry[1])

    def extend(self, mi: int, keys: list) -> None:
        self.mi.extend(itertools.repeat(mi, len(keys)))
        self.key.extend(keys)


class WaveMaps:
    """The speculative map state of one wave of `lanes` lanes."""

    def __init__(self, maps: list, lanes: int):
        self.maps = maps
        self.W = lanes
        self.arena = np.zeros(1 << 12, dtype=np.uint8)
        self.wmask = np.zeros(1 << 12, dtype=np.uint8)
        self.used = 0
        # chunks
        self.c_lane = _Grow(np.int64)
        self.c_key = _Grow(np.int64)
        self.c_start = _Grow(np.int64)
        self.c_size = _Grow(np.int64)
        self.c_event = _Grow(np.int64)
        self.c_writable = _Grow(np.bool_)
        self.c_own = _Grow(np.bool_)
        self.rwords = _Grow(np.uint64)
        self.wwords = _Grow(np.uint64)
        self.dwords = _Grow(np.uint64)
        self.pwords = _Grow(np.uint64)     # words with a delta that is not one whole u64
        # the map element a chunk is a copy of: map index and row (slab.Rows; -1: own
        # new element, whose row is known only after its insert is committed)
        self.c_map = _Grow(np.int64)
        self.c_row = _Grow(np.int64)
        self.stores = [_rows_of(m) for m in maps]
        self.no_undo: set[int] = set()     # lanes that replace or delete a hash element
        # events: lane -> chunk (-1 none)
        self.events: list[np.ndarray] = []
        # held chunk per (map, lane): first key in arrays, others in a dict; chunk -1
        # means "deleted by this lane"
        self.held_key = [np.full(lanes, -1, np.int64) for _ in maps]
        self.held_chunk = [np.full(lanes, -1, np.int64) for _ in maps]
        self.extra: dict[tuple[int, int, int], int] = {}
        # keys
        # key ids: per map, key (bytes, or _SIZE_KEY) -> id; key_list[id] = (map, key);
        # hash buckets have ids of their own (bucket_ids)
        self.key_ids: list[dict] = [{} for _ in maps]
        self.key_list = _KeyList()
        # existence records and logged operations
        self.e_lane: list[np.ndarray] = []
        self.e_key: list[np.ndarray] = []
        self.e_flag: list[np.ndarray] = []
        self.eops: dict[int, list] = {}        # lane -> [(kind, map, key, value, flags, rc, chunk)]
        # _update_fast's logs, kept as arrays until a per-lane log needs eops (_unbulk)
        self.bulk: list[tuple] = []
        self.deltas: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []
        # size pseudo-key bookkeeping
        self.inserts = [0] * len(maps)
        self.size_mode = [False] * len(maps)
        self.inserters: list[list[int]] = [[] for _ in maps]
        self.len0 = [len(m) if m.type not in _ARRAYS else 0 for m in maps]
        # per map and lane: net inserts, and whether the lane inserted or deleted at all
        self.own_count = [np.zeros(lanes, np.int64) for _ in maps]
        self.own_any = [np.zeros(lanes, bool) for _ in maps]

    # --- keys, chunks, events -------------------------------------------------------------
    def key_id(self, mi: int, key) -> int:
        ids = self.key_ids[mi]
        kid = ids.get(key)
        if kid is None:
            kid = len(self.key_list)
            ids[key] = kid
            self.key_list.append((mi, key))
        return kid

    def find_key(self, mi: int, key) -> int | None:
        """The id of (map mi, key) if the wave has seen it."""
        return self.key_ids[mi].get(key)

    @staticmethod
    def bucket_ids(mi: int, hashes: np.ndarray, n_buckets: int) -> np.ndarray:
        """The pseudo-keys of hash buckets (by the keys' hashes): inserts and
        replacements put elements at the head of their bucket, so their order across
        keys is part of the map's state (its GET_NEXT_KEY order).  Their ids are
        computed, not registered (BUCKET_IDS and up), and equal in every wave."""
        b = np.asarray(hashes, np.int64) & (n_buckets - 1)
        return BUCKET_IDS + (mi << 32) + b

    def bucket_key(self, mi: int, kb: bytes) -> int:
        m = self.maps[mi]
        return int(self.bucket_ids(mi, np.array([htab_hash(kb)]), m.n_buckets)[0])

    def _alloc(self, nbytes: int) -> int:
        start = self.used
        need = start + nbytes
        if need > len(self.arena):
            cap = max(2 * len(self.arena), need)
            for name in ("arena", "wmask"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=np.uint8)
                new[:self.used] = old[:self.used]
                setattr(self, name, new)
        self.used = need
        return start

    def new_event(self) -> int:
        self.events.append(np.full(self.W, -1, np.int64))
        return len(self.events) - 1

    def new_chunks(self, event: int, lanes: np.ndarray, keys: np.ndarray, values: np.ndarray,
                   size: int, writable: bool, mi: int, rows: np.ndarray,
                   own: bool) -> np.ndarray:
        """Chunks for `lanes` (one each) holding `values` (uint8 [n, size]), copies of
        map mi's rows `rows` (-1: own new elements)."""
        n = len(lanes)
        stride = max(size, 1)
        base = self._alloc(n * stride)
        start = base + np.arange(n, dtype=np.int64) * stride
        if size:                           # the chunks are consecutive: one slice
            self.arena[base:base + n * stride].reshape(n, stride)[:, :size] = values
        ids = self.c_lane.extend(lanes)
        self.c_key.extend(keys)
        self.c_start.extend(start)
        self.c_size.extend(np.full(n, size, np.int64))
        self.c_event.extend(np.full(n, event, np.int64))
        self.c_writable.extend(np.full(n, writable, np.bool_))
        self.c_own.extend(np.full(n, own, np.bool_))
        for g in (self.rwords, self.wwords, self.dwords, self.pwords):
            g.extend(np.zeros(n, np.uint64))
        self.c_map.extend(np.full(n, mi, np.int64))
        self.c_row.extend(np.broadcast_to(np.asarray(rows, np.int64), (n,)))
        self.events[event][lanes] = ids
        return ids

    def pointer(self, chunks: np.ndarray) -> np.ndarray:
        ev = self.c_event.view[chunks]
        return U64(region_base(REGION_MAPVAL0)) + (ev.astype(np.uint64) << U64(32))

    def held(self, mi: int, lane: int, kid: int) -> int | None:
        """The lane's chunk for key kid (-1: deleted by the lane), or None."""
        if self.held_key[mi][lane] == kid:
            return int(self.held_chunk[mi][lane])
        return self.extra.get((mi, lane, kid))

    def set_held(self, mi: int, lane: int, kid: int, chunk: int) -> None:
        hk = self.held_key[mi]
        if hk[lane] == -1 or hk[lane] == kid:
            hk[lane] = kid
            self.held_chunk[mi][lane] = chunk
        else:
            self.extra[(mi, lane, kid)] = chunk

    def record(self, lanes: np.ndarray, keys: np.ndarray, flag: int) -> None:
        self.e_lane.append(np.asarray(lanes, np.int64))
        self.e_key.append(np.asarray(keys, np.int64))
        self.e_flag.append(np.full(len(lanes), flag, np.int8))

    # --- memory access through chunks (called by the engine) ------------------------------
    def resolve(self, lanes: np.ndarray, events: np.ndarray, off: np.ndarray, size: int,
                write: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ok mask, byte addresses in self.arena, chunk ids) for accesses of `size`
        bytes at offset `off` of the chunk the lane got from event `events`."""
        n = len(lanes)
        chunk = np.full(n, -1, np.int64)
        good_ev = events < len(self.events)
        for e in np.unique(events[good_ev]):
            sel = np.flatnonzero(events == e)
            chunk[sel] = self.events[int(e)][lanes[sel]]
        has = chunk >= 0
        c = np.where(has, chunk, 0)
        ok = has & (off >= 0) & (off + size <= self.c_size.view[c] if self.c_size.n
                                 else np.zeros(n, bool))
        if write:
            ok &= self.c_writable.view[c] if self.c_writable.n else False
        addr = self.c_start.view[c] + off if self.c_start.n else off
        return ok, addr, c

    def note(self, chunks: np.ndarray, off: np.ndarray, size: int, kind: str) -> None:
        bits = _word_bits(off, size)
        if kind == "r":
            self.rwords.a[chunks] |= bits
        else:
            self.wwords.a[chunks] |= bits

    def mark_written(self, addr: np.ndarray, size: int) -> None:
        for j in range(size):
            self.wmask[addr + j] = 1

    def add_delta(self, chunks: np.ndarray, off: np.ndarray, size: int,
                  values: np.ndarray) -> None:
        bits = _word_bits(off, size)
        self.dwords.a[chunks] |= bits
        partial = (off % 8 != 0) | (size != 8)
        if partial.any():
            self.pwords.a[chunks[partial]] |= bits[partial]
        self.deltas.append((chunks.copy(), off.copy(), size, values.copy()))

    # --- helpers ---------------------------------------------------------------------------
    def _keys(self, mi: int, keys: np.ndarray) -> tuple[np.ndarray, list, np.ndarray]:
        """Key ids for rows of `keys` (uint8 [n, key_size]), the distinct keys (bytes),
        and for each row the index of its key among them."""
        m = self.maps[mi]
        ks = m.key_size
        if ks == 0:
            return (np.full(len(keys), self.key_id(mi, b""), np.int64), [b""],
                    np.zeros(len(keys), np.int64))
        first, inv = _unique_rows(keys)
        # (void scalars convert to bytes of their full size, trailing zeros included)
        kb = np.ascontiguousarray(keys[first]).view(np.dtype((np.void, ks))).ravel().tolist()
        known = self.key_ids[mi]
        base = len(self.key_list)
        if not known:                       # the wave's first use of the map: all new
            ids = np.arange(base, base + len(kb), dtype=np.int64)
            new = kb
        else:
            got = [known.get(b, -1) for b in kb]
            new = [b for b, i in zip(kb, got) if i < 0]
            ids = np.array(got, np.int64)
            ids[ids < 0] = np.arange(base, base + len(new))
        if new:
            # new keys get the next ids, in one go (in kb order, as assigned above)
            known.update(zip(new, range(base, base + len(new))))
            self.key_list.extend(mi, new)
        return ids[inv], kb, inv

    def _rows_of_keys(self, mi: int, kb: list) -> np.ndarray:
        """The rows of the elements of keys kb (bytes) in the real map (-1: none)."""
        m = self.maps[mi]
        if m.type in _ARRAYS:
            idx = [int.from_bytes(k[:4], "little") for k in kb]
            return np.array([i if i < m.max_entries else -1 for i in idx], np.int64)
        get = m._elems.get
        return np.array([get(k, -1) for k in kb], np.int64)

    def lookup(self, lanes: np.ndarray, mi: int, keys: np.ndarray) -> np.ndarray:
        """bpf_map_lookup_elem for each lane: value pointers (0 = NULL)."""
        m = self.maps[mi]
        n = len(lanes)
        kids, kb, inv = self._keys(mi, keys)
        out = np.zeros(n, np.uint64)
        is_hash = m.type not in _ARRAYS
        if is_hash:
            self.record(lanes, kids, EREAD)
        held = self.held_key[mi][lanes]
        same = held == kids
        prior = np.zeros(n, np.int64) - 2           # -2: not held
        prior[same] = self.held_chunk[mi][lanes[same]]
        other = np.flatnonzero((held != -1) & ~same)
        for j in other:
            c = self.extra.get((mi, int(lanes[j]), int(kids[j])))
            if c is not None:
                prior[j] = c
        have = prior >= 0
        if have.any():
            out[have] = self.pointer(prior[have])
        need = np.flatnonzero(prior == -2)
        if len(need):
            # one map lookup per distinct key; values gathered per lane
            rows = self._rows_of_keys(mi, kb)[inv[need]]
            found = rows >= 0
            sel, rows = need[found], rows[found]
            if len(sel):
                ev = self.new_event()
                vs = m.value_size
                writable = not m.flags & (1 << 7)           # BPF_F_RDONLY_PROG
                chunks = self.new_chunks(ev, lanes[sel], kids[sel],
                                         self.stores[mi].gather(rows, vs), vs,
                                         writable, mi, rows, False)
                hk = self.held_key[mi]
                free = hk[lanes[sel]] == -1
                if free.all() and _distinct_lanes(lanes[sel], self.W):
                    hk[lanes[sel]] = kids[sel]
                    self.held_chunk[mi][lanes[sel]] = chunks
                else:
                    for lane, kid, c in zip(lanes[sel].tolist(), kids[sel].tolist(),
                                            chunks.tolist()):
                        self.set_held(mi, lane, kid, c)
                out[sel] = self.pointer(chunks)
        return out

    def direct_value(self, lanes: np.ndarray, mi: int) -> np.ndarray:
        """lddw map_value: pointers to the value of key 0 (global data)."""
        m = self.maps[mi]
        keys = np.zeros((len(lanes), m.key_size), np.uint8)
        return self.lookup(lanes, mi, keys)

    def _size_records(self, mi: int, lane: int, flag: int) -> None:
        """Inserts/deletes near capacity read and write the map's size pseudo-key."""
        m = self.maps[mi]
        if not self.size_mode[mi]:
            cap = getattr(m, "capacity", m.max_entries)
            if self.len0[mi] + self.inserts[mi] + 1 < cap:
                return
            self.size_mode[mi] = True
            sk = self.key_id(mi, _SIZE_KEY)
            if self.inserters[mi]:
                ls = np.array(self.inserters[mi], np.int64)
                self.record(ls, np.full(len(ls), sk, np.int64), EREAD | EWRITE)
        sk = self.key_id(mi, _SIZE_KEY)
        self.record(np.array([lane]), np.array([sk]), flag)

    def update(self, lanes: np.ndarray, mi: int, keys: np.ndarray, values: np.ndarray,
               flags: np.ndarray) -> np.ndarray:
        """bpf_map_update_elem for each lane (in lane order): predicted return codes."""
        kids, kb, inv = self._keys(mi, keys)
        fast = self._update_fast(lanes, mi, kids, values, flags, keys, kb, inv)
        if fast is not None:
            return fast
        return self._update_lanes(lanes, mi, kids, values, flags)

    def _update_fast(self, lanes, mi, kids, values, flags, keys, kb,
                     inv) -> np.ndarray | None:
        """The common case, all lanes at once: a hash map far from full, lanes that
        hold no element of the map yet, plain flags.  None: take the per-lane path."""
        m = self.maps[mi]
        if m.type not in (MapType.HASH, MapType.PERCPU_HASH) or self.size_mode[mi]:
            return None
        if (self.held_key[mi][lanes] != -1).any() or (flags & ~np.uint64(3)).any():
            return None
        if self.own_any[mi][lanes].any():
            return None
        cap = getattr(m, "capacity", m.max_entries)
        if self.len0[mi] + self.inserts[mi] + len(lanes) + 1 >= cap:
            return None
        n = len(lanes)
        elems = m._elems
        exists = np.array([k in elems for k in kb], bool)[inv] if n else np.zeros(0, bool)
        fl = flags.astype(np.int64)
        rc = np.zeros(n, np.int64)
        rc[exists & (fl == BPF_NOEXIST)] = -EEXIST
        rc[~exists & (fl == BPF_EXIST)] = -ENOENT
        self.record(lanes, kids, EREAD)
        ok = rc == 0
        if m.type == MapType.PERCPU_HASH and (ok & exists).any():
            return None                     # in-place writes: the per-lane path
        ins = np.flatnonzero(ok)
        if len(ins):
            self.record(lanes[ins], kids[ins], EWRITE)
            hashes = htab_hash_many(keys[ins], cache=False)     # kept in the ops (commit)
            self.record(lanes[ins], self.bucket_ids(mi, hashes, m.n_buckets), ORDER)
            self.inserts[mi] += int((~exists[ins]).sum())
            self.inserters[mi].extend(lanes[ins][~exists[ins]].tolist())
            self.own_count[mi][lanes[ins][~exists[ins]]] = 1
            self.own_any[mi][lanes[ins][~exists[ins]]] = True
            ev = self.new_event()
            chunks = self.new_chunks(ev, lanes[ins], kids[ins], values[ins], m.value_size,
                                     True, mi, -1, True)
            self.held_key[mi][lanes[ins]] = kids[ins]
            self.held_chunk[mi][lanes[ins]] = chunks
        self.no_undo.update(lanes[ok & exists].tolist())          # replacements
        chunk = np.full(n, -1, np.int64)
        hsh = np.full(n, -1, np.int64)
        if len(ins):
            chunk[ins] = chunks
            hsh[ins] = hashes
        rec = (mi, lanes.copy(), kb, inv, np.array(values[:, :m.value_size]), fl, rc, chunk,
               ~exists, hsh)
        if self.eops and any(l_ in self.eops for l_ in lanes.tolist()):
            self.bulk.append(rec)       # after ops these lanes logged already: in order
            self._unbulk()
        else:
            self.bulk.append(rec)
        return (rc.astype(np.uint64))

    def _log(self, lane: int, op: tuple) -> None:
        """Log a lane's update or delete (after any still in self.bulk)."""
        if self.bulk:
            self._unbulk()
        self.eops.setdefault(lane, []).append(op)

    @staticmethod
    def _bulk_op(rec: tuple, j: int) -> tuple:
        """Entry j of a bulk record as a per-lane log entry."""
        mi, lanes, kb, inv, vals, fl, rc, chunk, new, hsh = rec
        c, h = int(chunk[j]), int(hsh[j])
        return ("update", mi, kb[inv[j]], vals[j].tobytes(), int(fl[j]), int(rc[j]),
                None if c < 0 else c, bool(new[j]), None if h < 0 else h)

    def _unbulk(self) -> None:
        """Move the bulk records into the per-lane logs, in the order they were made."""
        bulk, self.bulk = self.bulk, []
        for rec in bulk:
            for j, lane in enumerate(rec[1].tolist()):
                self.eops.setdefault(lane, []).append(self._bulk_op(rec, j))

    def _update_lanes(self, lanes, mi, kids, values, flags) -> np.ndarray:
        m = self.maps[mi]
        rcs = np.zeros(len(lanes), np.uint64)
        is_array = m.type in _ARRAYS
        in_place = m.type in _IN_PLACE
        vs = m.value_size
        cap = getattr(m, "capacity", m.max_entries)
        # one event for all the chunks this call makes (a lane is in `lanes` once): an
        # event is a W-entry array, too big to make per lane
        ev = _LazyEvent(self)
        for j in range(len(lanes)):
            lane, kid, fl = int(lanes[j]), int(kids[j]), int(flags[j])
            _, kb = self.key_list[kid]
            h = self.held(mi, lane, kid)
            if fl & ~BPF_F_LOCK > BPF_EXIST:
                rc = -EINVAL
            elif is_array:
                idx = int.from_bytes(kb, "little")
                if idx >= m.max_entries:
                    rc = -E2BIG
                elif fl & ~BPF_F_LOCK == BPF_NOEXIST:
                    rc = -EEXIST
                elif fl & BPF_F_LOCK:
                    rc = -EINVAL
                else:
                    rc = 0
                    self._write_value(mi, lane, kid, kb, h, values[j], ev)
            elif fl & BPF_F_LOCK:
                rc = -EINVAL
            else:
                self.record(np.array([lane]), np.array([kid]), EREAD)
                if h is None:
                    exists = kb in m._elems
                else:
                    exists = h >= 0
                if exists and fl == BPF_NOEXIST:
                    rc = -EEXIST
                elif not exists and fl == BPF_EXIST:
                    rc = -ENOENT
                elif exists and in_place:
                    rc = 0
                    self._write_value(mi, lane, kid, kb, h, values[j], ev)
                else:
                    if not exists:
                        own_len = self.len0[mi] + int(self.own_count[mi][lane])
                        if own_len >= cap:
                            self._size_records(mi, lane, EREAD)
                            rc = -E2BIG
                            self._log(lane, ("update", mi, kb, bytes(values[j]), fl, rc, None))
                            rcs[j] = rc & _M64
                            continue
                        self.inserts[mi] += 1
                        self.inserters[mi].append(lane)
                        self.own_count[mi][lane] += 1
                        self.own_any[mi][lane] = True
                        self._size_records(mi, lane, EREAD | EWRITE)
                    rc = 0
                    self.record(np.array([lane]), np.array([kid]), EWRITE)
                    self.record(np.array([lane]), np.array([self.bucket_key(mi, kb)]), ORDER)
                    c = int(self.new_chunks(ev.id, np.array([lane]), np.array([kid]),
                                            values[j][None, :], vs, True, mi, -1, True)[0])
                    self.set_held(mi, lane, kid, c)
                    self._log(lane, ("update", mi, kb, bytes(values[j]), fl, rc, c, not exists))
                    if exists:
                        self.no_undo.add(lane)
                    rcs[j] = 0
                    continue
            if not is_array or rc:
                self._log(lane, ("update", mi, kb, bytes(values[j]), fl, rc, None))
            rcs[j] = rc & _M64
        return rcs

    def _write_value(self, mi: int, lane: int, kid: int, kb: bytes, h, value,
                     ev: "_LazyEvent") -> None:
        """An in-place update (arrays, per-CPU hash): the value's bytes are written, in
        the lane's chunk for the key (made now if the lane has none, in event ev)."""
        m = self.maps[mi]
        if h is None or h < 0:
            row = self._rows_of_keys(mi, [kb])
            c = int(self.new_chunks(ev.id, np.array([lane]), np.array([kid]), value[None, :],
                                    m.value_size, True, mi, row, False)[0])
            self.set_held(mi, lane, kid, c)
        else:
            c = h
            s = int(self.c_start.a[c])
            self.arena[s:s + m.value_size] = value
        s = int(self.c_start.a[c])
        self.wmask[s:s + m.value_size] = 1
        self.wwords.a[c] |= _word_bits(np.array([0]), max(m.value_size, 1))[0]

    def delete(self, lanes: np.ndarray, mi: int, keys: np.ndarray) -> np.ndarray:
        m = self.maps[mi]
        kids, _, _ = self._keys(mi, keys)
        rcs = np.zeros(len(lanes), np.uint64)
        if m.type in _ARRAYS:
            rcs[:] = U64(-EINVAL & _M64)
            return rcs
        for j in range(len(lanes)):
            lane, kid = int(lanes[j]), int(kids[j])
            _, kb = self.key_list[kid]
            h = self.held(mi, lane, kid)
            exists = (kb in m._elems) if h is None else h >= 0
            self.record(np.array([lane]), np.array([kid]), EREAD)
            if exists:
                rc = 0
                self.no_undo.add(lane)
                self.record(np.array([lane]), np.array([kid]), EWRITE)
                self._size_records(mi, lane, EREAD | EWRITE)
                self.set_held(mi, lane, kid, -1)
                self.own_count[mi][lane] -= 1
                self.own_any[mi][lane] = True
            else:
                rc = -ENOENT
            self._log(lane, ("delete", mi, kb, None, 0, rc, None))
            rcs[j] = rc & _M64
        return rcs

    # --- end of wave ---------------------------------------------------------------------
    def analyze(self):
        """(conflict mask over the wave's lanes, footprint rows: lane, key*65 + slot,
        flags).  Slot 0 is the key's existence (flags EREAD 1, EWRITE 2), slot 1+w its
        8-byte word w (flags read 4, write 8, delta 16); rows in no particular order,
        possibly several per (lane, slot).  A lane conflicts when it read something an
        earlier lane of the wave wrote."""
        W = self.W
        lanes, keys, fl = [], [], []
        if self.e_lane:
            lanes.append(np.concatenate(self.e_lane))
            keys.append(np.concatenate(self.e_key) * 65)
            fl.append(np.concatenate(self.e_flag).astype(np.int64))
        nc = self.c_lane.n
        if nc:
            own = self.c_own.view
            r, w, d = self.rwords.view, self.wwords.view, self.dwords.view
            pw = self.pwords.view
            both = w & d
            r = r | both                 # own delta and write on a word: a read-modify
            d = d & ~both
            touched = (r | w | d) & ~np.where(own, U64(_M64), U64(0))
            present = int(np.bitwise_or.reduce(touched)) if len(touched) else 0
            for bit in (b for b in range(64) if present >> b & 1):
                b = U64(1) << U64(bit)
                sel = np.flatnonzero(touched & b)
                lanes.append(self.c_lane.view[sel])
                keys.append(self.c_key.view[sel] * 65 + 1 + bit)
                # 16: deltas (whole u64 adds), 64: deltas that also include narrower
                # or unaligned adds, whose carries depend on the order of the adds
                f = (np.where(r[sel] & b, 4, 0) | np.where(w[sel] & b, 8, 0)
                     | np.where(d[sel] & b, 16, 0) | np.where(pw[sel] & b, 64, 0))
                fl.append(f.astype(np.int64))
        if not lanes:
            z = np.zeros(0, np.int64)
            return np.zeros(W, bool), z, z, z
        L = np.concatenate(lanes)
        K = np.concatenate(keys)
        F = np.concatenate(fl)
        # keys that cannot conflict (no existence or word written, and not both word
        # reads and deltas; hash buckets: ORDER only matters to _crosses) skip the sort:
        # their rows are returned as they are (the callers need no order)
        kid = K // 65
        small = kid < BUCKET_IDS
        loud = np.zeros(int(kid[small].max()) + 1 if small.any() else 0, bool)
        loud[kid[small & ((F & (EWRITE | 8)) != 0)]] = True
        reads = np.zeros(len(loud), bool)
        reads[kid[small & ((F & 4) != 0)]] = True
        adds = np.zeros(len(loud), bool)
        adds[kid[small & ((F & (16 | 64)) != 0)]] = True
        loud |= reads & adds
        sel = small.copy()
        sel[small] = loud[kid[small]]
        quiet = (L[~sel], K[~sel], F[~sel])
        L, K, F = L[sel], K[sel], F[sel]
        if not len(L):
            return np.zeros(W, bool), *quiet
        # one row per (key, lane) with the flags OR-ed, sorted by key then lane: one
        # sort of int64 values (key, lane, flags) packed, when they fit, which is the
        # usual case once the few bucket keys (huge ids) are renumbered densely
        Kd, big_ids, base = K, None, 0
        big = K >= BUCKET_IDS * 65
        if big.any():
            big_ids, rank = np.unique(K[big], return_inverse=True)
            base = int(K[~big].max()) + 1 if not big.all() else 0
            Kd = K.copy()
            Kd[big] = base + rank.ravel()
        if (int(Kd.max()) + 1) * W < 1 << 55:               # F < 128: 7 bits
            packed = np.sort(((Kd * W + L) << 7) | F)
            F, kl = packed & 127, packed >> 7
            L, Kd = kl % W, kl // W
            K = Kd
            if big_ids is not None:
                K = Kd.copy()
                hi = Kd >= base
                K[hi] = big_ids[Kd[hi] - base]
            newpair = np.ones(len(L), bool)
            newpair[1:] = kl[1:] != kl[:-1]
        else:
            order = np.lexsort((L, K))
            L, K, F = L[order], K[order], F[order]
            newpair = np.ones(len(L), bool)
            newpair[1:] = (K[1:] != K[:-1]) | (L[1:] != L[:-1])
        starts = np.flatnonzero(newpair)
        F = np.bitwise_or.reduceat(F, starts)
        L, K = L[starts], K[starts]
        seg = np.ones(len(K), bool)
        seg[1:] = K[1:] != K[:-1]
        segid = np.cumsum(seg) - 1
        seg_first = np.flatnonzero(seg)

        def prior(mask: np.ndarray) -> np.ndarray:
            c = np.cumsum(mask.astype(np.int64))
            base = (c - mask)[seg_first][segid]      # count before the segment's first row
            return (c - mask - base) > 0

        ew, er = (F & EWRITE) != 0, (F & (EREAD | EWRITE)) != 0
        cr, cw, cd = (F & 4) != 0, (F & 8) != 0, (F & (16 | 64)) != 0
        bad = (er & prior(ew)) | (cr & prior(cw | cd)) | (cw & prior(cd))
        conflict = np.zeros(W, bool)
        conflict[L[bad]] = True
        return (conflict, np.concatenate([L, quiet[0]]), np.concatenate([K, quiet[1]]),
                np.concatenate([F, quiet[2]]))

    def _prepare(self) -> None:
        """Index the wave's logs by lane once, for commits of lane ranges."""
        if self.bulk and self.eops:
            self._unbulk()
        self._op_lanes = np.array(sorted(self.eops), np.int64)
        nc = self.c_lane.n
        if nc:
            # own new elements hold the update's value already unless written since
            wc = np.flatnonzero((self.wwords.view != 0)
                                | (self.c_own.view & (self.dwords.view != 0)))
            wc = wc[np.argsort(self.c_lane.view[wc], kind="stable")]
        else:
            wc = np.zeros(0, np.int64)
        self._wc, self._wc_lane = wc, self.c_lane.view[wc] if nc else wc
        if self.deltas:
            ch = np.concatenate([d[0] for d in self.deltas])
            off = np.concatenate([d[1] for d in self.deltas])
            size = np.concatenate([np.full(len(d[0]), d[2], np.int64) for d in self.deltas])
            val = np.concatenate([d[3] for d in self.deltas])
            # own new elements are committed as whole bytes; so is a word the same
            # chunk also wrote
            own = self.c_own.view[ch]
            keep = ~own & ((self.wwords.view[ch] & _word_bits(off, 1)) == 0)
            # ... and then its bytes, which include the add, are what gets committed
            for c, o_, n_ in zip(ch[~keep & ~own].tolist(), off[~keep & ~own].tolist(),
                                 size[~keep & ~own].tolist()):
                st = int(self.c_start.a[c]) + o_
                self.wmask[st:st + n_] = 1
            ch, off, size, val = ch[keep], off[keep], size[keep], val[keep]
            lane = self.c_lane.view[ch]
            o = np.argsort(lane, kind="stable")
            self._d = (lane[o], ch[o], off[o], size[o], val[o])
        else:
            self._d = None
        self._prepared = True

    def undoable(self, lanes) -> bool:
        """Whether committing `lanes` can be undone (commit(..., undo=...)): no element
        of a hash map is replaced (it moves in its bucket) or deleted."""
        return self.no_undo.isdisjoint(lanes)

    def commit(self, lo: int, hi: int, undo: list | None = None,
               skip: np.ndarray | None = None) -> None:
        """Apply lanes [lo, hi) of the wave, in capture order (callers commit
        increasing ranges).  undo: a list to which the inverse of every change is
        appended (only for undoable() lanes).  skip: bool mask of lanes left out.

        The committed lanes never read what another of them wrote (analyze), which
        allows three steps instead of one pass per lane:
        1. bytes written to, and deltas added to, elements that existed when the wave
           started: a lane with such an element looked it up, reading its existence, so
           no earlier committed lane replaced or deleted it; a later one may, and then
           the bytes and deltas belong in the old element, before it goes;
        2. the logged updates and deletes, in lane order (runs of inserts of new keys
           at once: HashMap.insert_many);
        3. the bytes of the elements the wave created (a later committed lane cannot
           have touched them: it would have read their existence)."""
        if not getattr(self, "_prepared", False):
            self._prepare()
        a, b = np.searchsorted(self._wc_lane, lo), np.searchsorted(self._wc_lane, hi)
        wc = self._wc[a:b]
        if skip is not None:
            wc = wc[~skip[self._wc_lane[a:b]]]
        own = self.c_own.view[wc]
        deltas = None
        if self._d is not None:
            lane = self._d[0]
            a, b = np.searchsorted(lane, lo), np.searchsorted(lane, hi)
            if b > a:
                deltas = [x[a:b] for x in self._d[1:]]
                if skip is not None:
                    keep = ~skip[lane[a:b]]
                    deltas = [x[keep] for x in deltas]
                if not len(deltas[0]):
                    deltas = None
        if undo is not None:
            self._save_rows(wc[~own], undo)
        self._write_old(wc[~own])
        if deltas:
            self._commit_deltas(*deltas, undo=undo)
        self._apply_ops(lo, hi, skip, undo)
        self._write_own(wc[own])

    def _save_rows(self, chunks: np.ndarray, undo: list) -> None:
        """Note the present bytes of the rows `chunks` are copies of, for rollback."""
        maps = self.c_map.view[chunks]
        for mi in _distinct(maps):
            rows = self.c_row.view[chunks[maps == mi]]      # repeats restore alike
            store = self.stores[mi]
            undo.append(("rows", store, rows, store.gather(rows, store.width)))

    def _write_old(self, chunks: np.ndarray) -> None:
        """Step 1 of commit: the bytes the lanes wrote into their copies of elements of
        the wave's start (chunks in lane order; a byte written by several lanes gets
        the last one's)."""
        if not len(chunks):
            return
        sizes = self.c_size.view[chunks]
        which = np.repeat(np.arange(len(chunks)), sizes)
        col = np.arange(len(which)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        pos = self.c_start.view[chunks][which] + col
        w = self.wmask[pos] != 0
        which, col, pos = which[w], col[w], pos[w]
        rows = self.c_row.view[chunks][which]
        maps = self.c_map.view[chunks][which]
        for mi in _distinct(maps):
            sel = np.flatnonzero(maps == mi)
            store = self.stores[mi]
            flat = rows[sel] * store.width + col[sel]
            # the last write of each byte: first occurrence in the reversed order
            _, first = np.unique(flat[::-1], return_index=True)
            last = sel[len(sel) - 1 - first]
            store.scatter_bytes(rows[last], col[last], self.arena[pos[last]])

    def _apply_ops(self, lo: int, hi: int, skip, undo: list | None) -> None:
        """Step 2 of commit: the lanes' updates and deletes through the map's own API,
        in lane order; each must return the predicted code."""
        if self.bulk:
            self._apply_bulk(lo, hi, skip, undo)
            return
        ol = self._op_lanes
        batch: list = []                # consecutive inserts of new keys into one map

        def flush():
            if batch:
                vals = np.array([np.frombuffer(x[3], np.uint8) for x in batch])
                self._insert_run(batch[0][1], [x[2] for x in batch], vals,
                                 [x[8] if len(x) > 8 else None for x in batch],
                                 [x[4] for x in batch], undo)
                batch.clear()

        for lane in ol[np.searchsorted(ol, lo):np.searchsorted(ol, hi)].tolist():
            if skip is not None and skip[lane]:
                continue
            for op in self.eops[lane]:
                mi, rc, chunk = op[1], op[5], op[6]
                if chunk is not None and rc == 0 and op[7] and self.maps[mi].type in _HASHES:
                    if batch and batch[0][1] != mi:
                        flush()
                    batch.append(op)
                    continue
                flush()
                self._apply_one(op, undo)
        flush()

    def _apply_bulk(self, lo: int, hi: int, skip, undo: list | None) -> None:
        """_apply_ops when every logged op is in bulk records: in lane order (and
        record order within a lane), runs of inserts of new keys into one map at once,
        the other ops one by one as in _apply_ops."""
        L, R, J = [], [], []
        for r, rec in enumerate(self.bulk):
            lanes = rec[1]
            sel = (lanes >= lo) & (lanes < hi)
            if skip is not None:
                sel &= ~skip[lanes]
            j = np.flatnonzero(sel)
            L.append(lanes[j])
            R.append(np.full(len(j), r, np.int64))
            J.append(j)
        L, R, J = (np.concatenate(x) for x in (L, R, J))
        order = np.lexsort((R, L))
        R, J = R[order], J[order]
        fresh = np.zeros(len(R), bool)
        mi_of = np.zeros(len(R), np.int64)
        for r, rec in enumerate(self.bulk):
            at = np.flatnonzero(R == r)
            j = J[at]
            mi_of[at] = rec[0]
            if self.maps[rec[0]].type in _HASHES:
                fresh[at] = (rec[6][j] == 0) & rec[8][j] & (rec[7][j] >= 0)
        # segments: maximal runs of fresh inserts into one map, and single other ops
        brk = np.ones(len(R), bool)
        brk[1:] = ~fresh[1:] | ~fresh[:-1] | (mi_of[1:] != mi_of[:-1])
        starts = np.flatnonzero(brk).tolist() + [len(R)]
        for a, b in zip(starts[:-1], starts[1:]):
            if not fresh[a]:
                op = self._bulk_op(self.bulk[int(R[a])], int(J[a]))
                self._apply_one(op, undo)
                continue
            rs, js = R[a:b], J[a:b]
            if (rs == rs[0]).all():
                rec = self.bulk[int(rs[0])]
                kb, inv = rec[2], rec[3]
                kbs = [kb[u] for u in inv[js].tolist()]
                vals, hashes, flags = rec[4][js], rec[9][js].tolist(), rec[5][js].tolist()
            else:
                ops = [self._bulk_op(self.bulk[int(r)], int(j)) for r, j in zip(rs, js)]
                kbs = [op[2] for op in ops]
                vals = np.array([np.frombuffer(op[3], np.uint8) for op in ops])
                hashes = [op[8] for op in ops]
                flags = [op[4] for op in ops]
            self._insert_run(int(mi_of[a]), kbs, vals, hashes, flags, undo)

    def _insert_run(self, mi: int, kbs: list, vals: np.ndarray, hashes: list | None,
                    flags: list, undo: list | None) -> None:
        """Inserts of new keys (predicted to succeed) into hash map mi, in order; one
        at a time with their flags when HashMap.insert_many refuses them."""
        m = self.maps[mi]
        if hashes is not None and None in hashes:
            hashes = None
        if m.insert_many(kbs, vals, hashes=hashes):
            if undo is not None:
                undo.append(("delete_many", m, kbs))
            return
        for kb, v, fl in zip(kbs, vals, flags):
            self._op(m, "update", kb, v.tobytes(), fl, 0, undo)

    def _apply_one(self, op: tuple, undo: list | None) -> None:
        """One logged op (not an insert of a new key) at commit."""
        kind, mi, kb, value, fl, rc, chunk = op[:7]
        m = self.maps[mi]
        if kind == "update" and rc == 0 and chunk is None:
            # in place (per-CPU hash): the lane's chunk holds the new value, and step 1
            # wrote it (the map call would undo later lanes' writes)
            if kb not in m._elems:
                raise ExecutionError(f"vector engine: map {m.name!r} update of a missing "
                                     "key predicted in place (please report)")
            return
        self._op(m, kind, kb, value, fl, rc, undo)

    @staticmethod
    def _op(m, kind: str, kb: bytes, value, fl: int, rc: int, undo: list | None) -> None:
        got = m.update_raw(kb, value, fl, 0) if kind == "update" else m.delete_raw(kb, 0)
        if got != rc:
            raise ExecutionError(f"vector engine: map {m.name!r} {kind} returned "
                                 f"{got}, predicted {rc} (please report)")
        if undo is not None and rc == 0 and kind == "update":
            undo.append(("delete_many", m, [kb]))     # undoable lanes only insert

    def _write_own(self, chunks: np.ndarray) -> None:
        """Step 3 of commit: the whole bytes of the lanes' new elements (written or
        added to after their insert), found by key now that the inserts are done; a key
        inserted twice by one lane (insert, delete, insert) gets its last chunk."""
        if not len(chunks):
            return
        kl = self.key_list.key
        maps = self.c_map.view[chunks]
        for mi in _distinct(maps):
            m = self.maps[mi]
            sel = chunks[maps == mi]
            get = m._elems.get
            rows = np.array([get(kl[k], -1) for k in self.c_key.view[sel].tolist()],
                            np.int64)
            live = rows >= 0             # else deleted again by the lane
            sel, rows = sel[live], rows[live]
            _, first = np.unique(rows[::-1], return_index=True)
            last = len(rows) - 1 - first
            sel, rows = sel[last], rows[last]
            vs = m.value_size
            data = self.arena[self.c_start.view[sel][:, None] + np.arange(vs)]
            self.stores[mi].scatter(rows, data)

    @staticmethod
    def rollback(undo: list) -> None:
        """Undo commits recorded in `undo` (newest first)."""
        for entry in reversed(undo):
            if entry[0] == "delete_many":
                _, m, kbs = entry
                for kb in reversed(kbs):
                    if m.delete_raw(kb, 0) != 0:
                        raise ExecutionError("vector engine: rollback of an insert failed")
            elif entry[0] == "add":
                _, store, rows, words, neg = entry
                store.add_words(rows, words, neg)
            else:
                _, store, rows, old = entry
                store.scatter(rows, old)
        undo.clear()

    def _commit_deltas(self, ch, off, size, val, undo: list | None = None) -> None:
        """Add the deltas (chunk, offset, size, value; in lane order) to the values: per
        word, one sum when all its adds have the same offset and size (whole aligned
        u64 words: one numpy add for all of them), else one by one in lane order (adds
        of different widths carry differently)."""
        if (size == 8).all() and not (off % 8).any():
            # whole aligned u64 adds only: they commute, and np.add.at sums repeats
            maps = self.c_map.view[ch]
            for mi in _distinct(maps):
                g = maps == mi
                rows, words, v = self.c_row.view[ch[g]], off[g] // 8, val[g].astype(np.uint64)
                self.stores[mi].add_words(rows, words, v)
                if undo is not None:                  # undone by adding -v
                    undo.append(("add", self.stores[mi], rows, words, U64(0) - v))
            return
        if undo is not None:
            self._save_rows(ch, undo)
        key = self.c_key.view[ch]
        word = off // 8
        rank = np.arange(len(ch))
        order = np.lexsort((rank, word, key))
        key, word, off, size, val, ch = (x[order] for x in (key, word, off, size, val, ch))
        new = np.ones(len(key), bool)
        new[1:] = (key[1:] != key[:-1]) | (word[1:] != word[:-1])
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(key)]
        shape = np.ones(len(key), bool)
        shape[1:] = (off[1:] != off[:-1]) | (size[1:] != size[:-1])
        mixed = np.add.reduceat(shape.astype(np.int64), starts) > 1
        sums = np.add.reduceat(val.astype(np.uint64), starts)
        whole = ~mixed & (size[starts] == 8) & (off[starts] % 8 == 0)
        cs, rows = ch[starts], self.c_row.view[ch[starts]]
        maps = self.c_map.view[cs]
        for mi in _distinct(maps[whole]):
            g = whole & (maps == mi)
            self.stores[mi].add_words(rows[g], word[starts][g], sums[g])

        def add(c, o_, n_, v):
            buf = self.stores[int(self.c_map.a[c])].row(int(self.c_row.a[c]))
            st = _UINT[n_]
            st.pack_into(buf, o_, (st.unpack_from(buf, o_)[0] + v) & _MASK[n_])

        for g in np.flatnonzero(~whole).tolist():
            s, e = int(starts[g]), int(ends[g])
            if not mixed[g]:
                add(int(ch[s]), int(off[s]), int(size[s]), int(sums[g]))
                continue
            for i in range(s, e):
                add(int(ch[i]), int(off[i]), int(size[i]), int(val[i]))
