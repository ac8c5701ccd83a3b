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

import struct

import numpy as np

from ...errors import ExecutionError
from ..maps.consts import (BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, E2BIG, EEXIST, EINVAL,
                           ENOENT, MapType)
from ..maps.jhash import htab_hash, htab_hash_many
from .memory import REGION_MAPVAL0, U64, region_base

SUPPORTED_MAP_TYPES = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.HASH,
                                 MapType.PERCPU_HASH})
_ARRAYS = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY})
_IN_PLACE = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PERCPU_HASH})
EREAD, EWRITE = 1, 2
ORDER = 32        # an insert's place in its hash bucket (order across keys, see bucket_key)
_M64 = (1 << 64) - 1
_SIZE_KEY = None          # the pseudo-key "number of elements" of a map
_UINT = {n: struct.Struct("<" + c) for n, c in ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))}
_MASK = {n: (1 << (8 * n)) - 1 for n in _UINT}


def _word_bits(off: np.ndarray, size: int) -> np.ndarray:
    """Bit mask of the 8-byte words [off, off+size) touches (word index capped at 63)."""
    w0 = np.minimum(off // 8, 63).astype(np.uint64)
    w1 = np.minimum((off + size - 1) // 8, 63).astype(np.uint64)
    hi = np.where(w1 >= 63, U64(_M64), (U64(1) << (w1 + U64(1))) - U64(1))
    return hi & ~((U64(1) << w0) - U64(1))


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
        self.c_ref: list = []                 # ValueRef from S (None: own new element)
        # events: lane -> chunk (-1 none)
        self.events: list[np.ndarray] = []
        # held chunk per (map, lane): first key in arrays, others in a dict; chunk -1
        # means "deleted by this lane"
        self.held_key = [np.full(lanes, -1, np.int64) for _ in maps]
        self.held_chunk = [np.full(lanes, -1, np.int64) for _ in maps]
        self.extra: dict[tuple[int, int, int], int] = {}
        # keys
        self.key_ids: dict[tuple[int, object], int] = {}
        self.key_list: list[tuple[int, object]] = []
        # existence records and logged operations
        self.e_lane: list[np.ndarray] = []
        self.e_key: list[np.ndarray] = []
        self.e_flag: list[np.ndarray] = []
        self.eops: dict[int, list] = {}        # lane -> [(kind, map, key, value, flags, rc, chunk)]
        self.deltas: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []
        # size pseudo-key bookkeeping
        self.inserts = [0] * len(maps)
        self.size_mode = [False] * len(maps)
        self.inserters: list[list[int]] = [[] for _ in maps]
        self.len0 = [len(m) if m.type not in _ARRAYS else 0 for m in maps]
        self.own_count: dict[tuple[int, int], int] = {}     # (map, lane) -> net inserts

    # --- keys, chunks, events -------------------------------------------------------------
    def key_id(self, mi: int, key) -> int:
        k = (mi, key)
        kid = self.key_ids.get(k)
        if kid is None:
            kid = len(self.key_list)
            self.key_ids[k] = kid
            self.key_list.append(k)
        return kid

    def bucket_key(self, mi: int, kb: bytes) -> int:
        """The pseudo-key of kb's hash bucket: inserts and replacements put elements at
        the head of their bucket, so their order across keys is part of the map's state
        (its GET_NEXT_KEY order)."""
        m = self.maps[mi]
        return self.key_id(mi, ("bucket", htab_hash(kb) & (m.n_buckets - 1)))

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
                   size: int, writable: bool, refs: list, own: bool) -> np.ndarray:
        """Chunks for `lanes` (one each) holding `values` (uint8 [n, size])."""
        n = len(lanes)
        stride = max(size, 1)
        start = self._alloc(n * stride) + np.arange(n, dtype=np.int64) * stride
        if size:
            self.arena[start[:, None] + np.arange(size)] = values
        ids = self.c_lane.extend(lanes)
        self.c_key.extend(keys)
        self.c_start.extend(start)
        self.c_size.extend(np.full(n, size, np.int64))
        self.c_event.extend(np.full(n, event, np.int64))
        self.c_writable.extend(np.full(n, writable, np.bool_))
        self.c_own.extend(np.full(n, own, np.bool_))
        for g in (self.rwords, self.wwords, self.dwords, self.pwords):
            g.extend(np.zeros(n, np.uint64))
        self.c_ref.extend(refs)
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
    def _keys(self, mi: int, keys: np.ndarray) -> tuple[np.ndarray, list]:
        """Global key ids for rows of `keys` (uint8 [n, key_size]) and the unique keys."""
        m = self.maps[mi]
        if m.key_size == 0:
            return np.full(len(keys), self.key_id(mi, b""), np.int64), [b""]
        rows = np.ascontiguousarray(keys).view(np.dtype((np.void, m.key_size))).ravel()
        uniq, inv = np.unique(rows, return_inverse=True)
        kb = [u.tobytes() for u in uniq]
        ids = np.array([self.key_id(mi, b) for b in kb], np.int64)
        return ids[inv.ravel()], kb

    def lookup(self, lanes: np.ndarray, mi: int, keys: np.ndarray) -> np.ndarray:
        """bpf_map_lookup_elem for each lane: value pointers (0 = NULL)."""
        m = self.maps[mi]
        n = len(lanes)
        kids, _ = self._keys(mi, keys)
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
            # one map lookup per distinct key; values copied per lane from a matrix
            uk, inv = np.unique(kids[need], return_inverse=True)
            inv = inv.ravel()
            refs = [m.lookup_ptr(self.key_list[int(k)][1], 0) for k in uk.tolist()]
            found_u = np.array([r is not None for r in refs], bool)
            found = found_u[inv]
            sel = need[found]
            if len(sel):
                ev = self.new_event()
                vs = m.value_size
                umat = np.zeros((len(uk), vs), np.uint8)
                for i in np.flatnonzero(found_u).tolist():
                    if vs:
                        umat[i] = np.frombuffer(refs[i].read(), np.uint8)
                rows = inv[found]
                writable = not m.flags & (1 << 7)           # BPF_F_RDONLY_PROG
                chunks = self.new_chunks(ev, lanes[sel], kids[sel], umat[rows], vs,
                                         writable, [refs[i] for i in rows.tolist()], False)
                hk = self.held_key[mi]
                free = hk[lanes[sel]] == -1
                if free.all() and len(np.unique(lanes[sel])) == len(sel):
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
        kids, _ = self._keys(mi, keys)
        fast = self._update_fast(lanes, mi, kids, values, flags, keys)
        if fast is not None:
            return fast
        return self._update_lanes(lanes, mi, kids, values, flags)

    def _update_fast(self, lanes, mi, kids, values, flags, keys) -> np.ndarray | None:
        """The common case, all lanes at once: a hash map far from full, lanes that
        hold no element of the map yet, plain flags.  None: take the per-lane path."""
        m = self.maps[mi]
        if m.type not in (MapType.HASH, MapType.PERCPU_HASH) or self.size_mode[mi]:
            return None
        if (self.held_key[mi][lanes] != -1).any() or (flags & ~np.uint64(3)).any():
            return None
        if any((mi, int(l_)) in self.own_count for l_ in lanes.tolist()) \
                if self.own_count else False:
            return None
        cap = getattr(m, "capacity", m.max_entries)
        if self.len0[mi] + self.inserts[mi] + len(lanes) + 1 >= cap:
            return None
        n = len(lanes)
        exists = np.array([self.key_list[int(k)][1] in m._elems for k in kids.tolist()], bool) \
            if n else np.zeros(0, bool)
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
            hashes = htab_hash_many(keys[ins])
            nb = m.n_buckets - 1
            self.record(lanes[ins], np.array([self.key_id(mi, ("bucket", h & nb))
                                              for h in hashes], np.int64), ORDER)
            self.inserts[mi] += int((~exists[ins]).sum())
            self.inserters[mi].extend(lanes[ins][~exists[ins]].tolist())
            for l_ in lanes[ins][~exists[ins]].tolist():
                self.own_count[(mi, l_)] = 1
            ev = self.new_event()
            chunks = self.new_chunks(ev, lanes[ins], kids[ins], values[ins], m.value_size,
                                     True, [None] * len(ins), True)
            self.held_key[mi][lanes[ins]] = kids[ins]
            self.held_chunk[mi][lanes[ins]] = chunks
        chunk_of = dict(zip(ins.tolist(), chunks.tolist())) if len(ins) else {}
        for j in range(n):
            lane = int(lanes[j])
            kb = self.key_list[int(kids[j])][1]
            self.eops.setdefault(lane, []).append(
                ("update", mi, kb, values[j].tobytes(), int(fl[j]), int(rc[j]),
                 chunk_of.get(j), not exists[j]))
        return (rc.astype(np.uint64))

    def _update_lanes(self, lanes, mi, kids, values, flags) -> np.ndarray:
        m = self.maps[mi]
        rcs = np.zeros(len(lanes), np.uint64)
        is_array = m.type in _ARRAYS
        in_place = m.type in _IN_PLACE
        vs = m.value_size
        cap = getattr(m, "capacity", m.max_entries)
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
                    self._write_value(mi, lane, kid, kb, h, values[j])
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
                    self._write_value(mi, lane, kid, kb, h, values[j])
                else:
                    if not exists:
                        own_len = self.len0[mi] + self.own_count.get((mi, lane), 0)
                        if own_len >= cap:
                            self._size_records(mi, lane, EREAD)
                            rc = -E2BIG
                            self.eops.setdefault(lane, []).append(
                                ("update", mi, kb, bytes(values[j]), fl, rc, None))
                            rcs[j] = rc & _M64
                            continue
                        self.inserts[mi] += 1
                        self.inserters[mi].append(lane)
                        self.own_count[(mi, lane)] = self.own_count.get((mi, lane), 0) + 1
                        self._size_records(mi, lane, EREAD | EWRITE)
                    rc = 0
                    self.record(np.array([lane]), np.array([kid]), EWRITE)
                    self.record(np.array([lane]), np.array([self.bucket_key(mi, kb)]), ORDER)
                    ev = self.new_event()
                    c = int(self.new_chunks(ev, np.array([lane]), np.array([kid]),
                                            values[j][None, :], vs, True, [None], True)[0])
                    self.set_held(mi, lane, kid, c)
                    self.eops.setdefault(lane, []).append(
                        ("update", mi, kb, bytes(values[j]), fl, rc, c, not exists))
                    rcs[j] = 0
                    continue
            if not is_array or rc:
                self.eops.setdefault(lane, []).append(
                    ("update", mi, kb, bytes(values[j]), fl, rc, None))
            rcs[j] = rc & _M64
        return rcs

    def _write_value(self, mi: int, lane: int, kid: int, kb: bytes, h, value) -> None:
        """An in-place update (arrays, per-CPU hash): the value's bytes are written, in
        the lane's chunk for the key (made now if the lane has none)."""
        m = self.maps[mi]
        if h is None or h < 0:
            ev = self.new_event()
            ref = m.lookup_ptr(kb, 0)
            c = int(self.new_chunks(ev, np.array([lane]), np.array([kid]), value[None, :],
                                    m.value_size, True, [ref], False)[0])
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
        kids, _ = self._keys(mi, keys)
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
                self.record(np.array([lane]), np.array([kid]), EWRITE)
                self._size_records(mi, lane, EREAD | EWRITE)
                self.set_held(mi, lane, kid, -1)
                self.own_count[(mi, lane)] = self.own_count.get((mi, lane), 0) - 1
            else:
                rc = -ENOENT
            self.eops.setdefault(lane, []).append(("delete", mi, kb, None, 0, rc, None))
            rcs[j] = rc & _M64
        return rcs

    # --- end of wave ---------------------------------------------------------------------
    def analyze(self):
        """(conflict mask over the wave's lanes, footprint rows: lane, key*65 + slot,
        flags).  Slot 0 is the key's existence (flags EREAD 1, EWRITE 2), slot 1+w its
        8-byte word w (flags read 4, write 8, delta 16); one row per (lane, slot).  A
        lane conflicts when it read something an earlier lane of the wave wrote."""
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
            for bit in range(64):
                b = U64(1) << U64(bit)
                sel = np.flatnonzero(touched & b)
                if not len(sel):
                    continue
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
        # one row per (key, lane) with the flags OR-ed, sorted by key then lane
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
        return conflict, L, K, F

    def _prepare(self) -> None:
        """Index the wave's logs by lane once, for commits of lane ranges."""
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
        for lane in lanes:
            for op in self.eops.get(int(lane), ()):
                if op[5] != 0:
                    continue
                if op[0] == "delete":
                    return False
                if op[6] is not None and len(op) > 7 and not op[7]:
                    return False
        return True

    def commit(self, lo: int, hi: int, undo: list | None = None,
               skip: np.ndarray | None = None) -> None:
        """Apply lanes [lo, hi) of the wave, in capture order (callers commit
        increasing ranges).  undo: a list to which the inverse of every change is
        appended (only for undoable() lanes).  skip: bool mask of lanes left out."""
        if not getattr(self, "_prepared", False):
            self._prepare()
        ol = self._op_lanes
        op_lanes = ol[np.searchsorted(ol, lo):np.searchsorted(ol, hi)].tolist()
        a, b = np.searchsorted(self._wc_lane, lo), np.searchsorted(self._wc_lane, hi)
        by_lane: dict[int, list[int]] = {}
        for c, l_ in zip(self._wc[a:b].tolist(), self._wc_lane[a:b].tolist()):
            by_lane.setdefault(l_, []).append(c)
        for lane in sorted(set(op_lanes) | set(by_lane)):
            if skip is not None and skip[lane]:
                continue
            for op in self.eops.get(lane, ()):
                kind, mi, kb, value, fl, rc, chunk = op[:7]
                m = self.maps[mi]
                if undo is not None and rc == 0 and kind == "update":
                    if chunk is not None:
                        undo.append(("delete", m, kb))
                    else:                                   # in place (per-CPU hash)
                        ref = m.lookup_ptr(kb, 0)
                        undo.append(("bytes", ref.buf, ref.offset, ref.read()))
                got = m.update_raw(kb, value, fl, 0) if kind == "update" else \
                    m.delete_raw(kb, 0)
                if got != rc:
                    raise ExecutionError(f"vector engine: map {m.name!r} {kind} returned "
                                         f"{got}, predicted {rc} (please report)")
                if chunk is not None and (self.wwords.a[chunk] or self.dwords.a[chunk]):
                    self.c_ref[chunk] = m.lookup_ptr(kb, 0)
            for c in by_lane.get(lane, ()):
                ref = self.c_ref[c]
                if ref is None:
                    continue
                s, n = int(self.c_start.a[c]), int(self.c_size.a[c])
                data = self.arena[s:s + n]
                if undo is not None and not self.c_own.a[c]:
                    undo.append(("bytes", ref.buf, ref.offset, bytes(ref.buf[ref.offset:
                                                                             ref.offset + n])))
                if self.c_own.a[c]:
                    ref.buf[ref.offset:ref.offset + n] = data.tobytes()
                    continue
                mask = self.wmask[s:s + n]
                view = np.frombuffer(ref.buf, np.uint8, count=n, offset=ref.offset) \
                    if isinstance(ref.buf, bytearray) else None
                if view is not None and n:
                    np.copyto(view, data, where=mask.astype(bool))
                else:
                    for i in np.flatnonzero(mask):
                        ref.buf[ref.offset + int(i)] = int(data[i])
        if self._d is not None:
            lane = self._d[0]
            a, b = np.searchsorted(lane, lo), np.searchsorted(lane, hi)
            if b > a:
                parts = [x[a:b] for x in self._d[1:]]
                if skip is not None:
                    keep = ~skip[lane[a:b]]
                    parts = [x[keep] for x in parts]
                if len(parts[0]):
                    self._commit_deltas(*parts, undo=undo)

    @staticmethod
    def rollback(undo: list) -> None:
        """Undo commits recorded in `undo` (newest first)."""
        for entry in reversed(undo):
            if entry[0] == "delete":
                _, m, kb = entry
                if m.delete_raw(kb, 0) != 0:
                    raise ExecutionError("vector engine: rollback of an insert failed")
            else:
                _, buf, off, old = entry
                buf[off:off + len(old)] = old
        undo.clear()

    def _commit_deltas(self, ch, off, size, val, undo: list | None = None) -> None:
        """Add the deltas (chunk, offset, size, value; in lane order) to the values: per
        word, one sum when all its adds have the same offset and size, else one by one
        in lane order (adds of different widths carry differently)."""
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
        sums = np.add.reduceat(val, starts)

        c_ref = self.c_ref

        def add(c, o_, n_, v):
            ref = c_ref[c]
            o = ref.offset + o_
            if undo is not None:
                undo.append(("bytes", ref.buf, o, bytes(ref.buf[o:o + n_])))
            st = _UINT[n_]
            st.pack_into(ref.buf, o, (st.unpack_from(ref.buf, o)[0] + v) & _MASK[n_])

        for g, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            if not mixed[g]:
                add(int(ch[s]), int(off[s]), int(size[s]), int(sums[g]))
                continue
            for i in range(s, e):
                add(int(ch[i]), int(off[i]), int(size[i]), int(val[i]))
