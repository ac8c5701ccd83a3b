"""Walk a chain of length-prefixed records (pcap records, pcapng blocks) without a
Python loop per record.

A capture file is a chain: each record's header gives its length, so the offset of
record k+1 depends on record k.  The chain is inherently sequential, but walking it
with one numpy operation per record would be no faster than Python.  Instead:

1. Cut the segment into L lanes at regular boundaries.  Lane 0 starts at the known
   record offset; every other lane starts at a *candidate*: the first offset after its
   boundary where a few consecutive headers look plausible (``Format.plausible_grid``).
2. Walk all lanes in lockstep, one vectorised step per record of the longest lane
   (``Format.step``); lane j stops at its first record at or past lane j+1's start.
3. Verify: lane 0 is right by construction; lane j is right iff lane j-1 is right and
   stopped exactly on lane j's start.  A lane whose guess was wrong is walked again
   from the offset where its predecessor stopped; repeat (the verified prefix grows by
   at least one lane per round).  After a few rounds the rest is walked one record at a
   time (``Format.scalar_step``), so adversarial files stay correct, only slower.

Guesses decide speed only: every record offset returned was reached from the known
start by the same step rule libpcap applies one record at a time.

The step also gathers each record's fixed header ("row"), so the file's headers are
read once: on this kind of machine each header read is a cache and TLB miss, and that,
not arithmetic, is what indexing costs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# step() status codes
OK = 0
STOP = 1          # a record that ends the walk without being one (e.g. a pcapng SHB)
BAD = 2           # a record libpcap rejects (the format says why)


class Format(Protocol):
    end: int

    def step(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised: (next offset, status, header rows) of the records at `pos`."""

    def scalar_step(self, pos: int) -> tuple[int, int]:
        """(next offset, status) of one record: the reference rule."""

    def rows(self, pos: np.ndarray) -> np.ndarray:
        """The header rows of the records at `pos` (as step() returns them)."""

    def plausible_grid(self, first: int, stride: int, lanes: int, width: int) -> np.ndarray:
        """Heuristic, (lanes, width) bool: does a record likely start at
        first + lane * stride + column?  Decides speed only, never results."""


@dataclass(frozen=True)
class WalkResult:
    offsets: np.ndarray   # int64, offsets of the good records in [start, seg_end), in order
    rows: np.ndarray      # their header rows (Format.rows)
    next: int             # where the walk stopped: >= seg_end, or a STOP/BAD record
    status: int           # OK / STOP / BAD (of the record at `next`)


# Tuning: a lane covers at least MIN_LANE_BYTES; at most MAX_LANES lanes per walk.  The
# number of lockstep steps is about records / lanes; the candidate search reads about
# 3 * (mean record length) / (lane bytes) of the data.
MIN_LANE_BYTES = 32 * 1024
MAX_LANES = 4096
PROBE = 64                # records walked one by one first, to learn the mean record size
MAX_ROUNDS = 8


def walk(fmt: Format, start: int, seg_end: int, *, vector: bool = True,
         rows: bool = True) -> WalkResult:
    """The records of the chain from `start` that begin before `seg_end`.  rows=False:
    offsets only (WalkResult.rows is None), for a caller that reads the headers again
    in file order."""
    seg_end = min(seg_end, fmt.end)
    if start >= seg_end or not vector or (seg_end - start) // MIN_LANE_BYTES < 2:
        return _norows(walk_scalar(fmt, start, seg_end), rows)
    probe = walk_scalar(fmt, start, seg_end, limit=PROBE)
    if probe.status != OK or probe.next >= seg_end:
        return _norows(probe, rows)
    mean = (probe.next - start) / max(len(probe.offsets), 1)
    rest = _walk_lanes(fmt, probe.next, seg_end, mean, rows)
    return WalkResult(np.concatenate((probe.offsets, rest.offsets)),
                      np.concatenate((probe.rows, rest.rows)) if rows else None,
                      rest.next, rest.status)


def _norows(w: WalkResult, rows: bool) -> WalkResult:
    return w if rows else WalkResult(w.offsets, None, w.next, w.status)


def walk_scalar(fmt: Format, start: int, seg_end: int, limit: int = -1) -> WalkResult:
    """The reference: one record at a time (at most `limit` records when >= 0)."""
    out = []
    pos = start
    status = OK
    seg_end = min(seg_end, fmt.end)
    while pos < seg_end and limit != 0:
        nxt, st = fmt.scalar_step(pos)
        if st != OK:
            status = st
            break
        out.append(pos)
        pos = nxt
        limit -= 1
    offs = np.array(out, dtype=np.int64)
    return WalkResult(offs, fmt.rows(offs), pos, status)


def _find_candidates(fmt: Format, start: int, stride: int, lanes: int, window: int):
    """First plausible offset in [start + j*stride, + window) for lanes j = 0..lanes-1,
    or -1.  Lanes that find none are left out: their predecessor walks their part."""
    good = fmt.plausible_grid(start, stride, lanes, window)
    found = good.any(axis=1)
    cand = np.full(lanes, -1, np.int64)
    cand[found] = start + stride * np.flatnonzero(found) + good[found].argmax(axis=1)
    return cand


@dataclass
class _Round:
    """One lockstep walk of some lanes: per step, the lanes that read a good record."""
    lanes: list            # per step: lane ids (ascending)
    offs: list             # per step: record offsets
    rows: list             # per step: header rows


def _lockstep(fmt: Format, lane_ids: np.ndarray, starts: np.ndarray, stops: np.ndarray):
    """Walk lanes from starts[j] until an offset >= stops[j] or a non-OK record.
    Returns (the _Round, end offset per lane, status per lane, records per lane)."""
    n = len(starts)
    pos = np.array(starts, dtype=np.int64)
    status = np.zeros(n, np.int8)
    count = np.zeros(n, np.int64)
    active = np.flatnonzero(pos < stops)
    rnd = _Round([], [], [])
    while active.size:
        p = pos[active]
        nxt, st, rows = fmt.step(p)
        ok = st == OK
        if not ok.all():
            status[active[~ok]] = st[~ok]
            active, p, nxt, rows = active[ok], p[ok], nxt[ok], rows[ok]
        rnd.lanes.append(lane_ids[active])
        rnd.offs.append(p)
        rnd.rows.append(rows)
        count[active] += 1
        pos[active] = nxt
        active = active[nxt < stops[active]]
    return rnd, pos, status, count


def _lockstep_offsets(fmt: Format, lane_ids: np.ndarray, starts: np.ndarray,
                      stops: np.ndarray):
    """_lockstep without header rows, for a format with ``step_offsets``: the same walk
    with about half the numpy calls per step (the lanes' positions and stops travel
    compacted; counts are added up at the end)."""
    n = len(starts)
    pos = np.array(starts, dtype=np.int64)
    status = np.zeros(n, np.int8)
    active = np.flatnonzero(pos < stops)
    p = pos[active]
    stp = stops[active]
    rnd = _Round([], [], [])
    while active.size:
        nxt, bad = fmt.step_offsets(p)
        if bad is not None:
            ok = ~bad
            if not ok.all():
                status[active[bad]] = BAD
                pos[active[bad]] = p[bad]
                active, p, nxt, stp = active[ok], p[ok], nxt[ok], stp[ok]
        rnd.lanes.append(active)
        rnd.offs.append(p)
        rnd.rows.append(None)
        go = nxt < stp
        if go.all():
            p = nxt
            continue
        done = ~go
        pos[active[done]] = nxt[done]
        active, p, stp = active[go], nxt[go], stp[go]
    count = np.zeros(n, np.int64)
    if rnd.lanes:
        count = np.bincount(np.concatenate(rnd.lanes), minlength=n).astype(np.int64)
    rnd.lanes = [lane_ids[a] for a in rnd.lanes]
    return rnd, pos, status, count


def _walk_lanes(fmt: Format, start: int, seg_end: int, mean: float,
                want_rows: bool = True) -> WalkResult:
    nlanes = max(2, min(MAX_LANES, (seg_end - start) // MIN_LANE_BYTES))
    stride = (seg_end - start) // nlanes // 4 * 4   # keeps 4-byte alignment (pcapng)
    window = int(min(stride, max(64, 3 * mean)))
    cand = _find_candidates(fmt, start + stride, stride, nlanes - 1, window)
    starts = np.concatenate(([start], cand[cand >= 0])).astype(np.int64)
    stops = np.append(starts[1:], seg_end)
    n = len(starts)

    lanes = np.arange(n)
    lockstep = _lockstep_offsets if not want_rows and hasattr(fmt, "step_offsets") \
        else _lockstep
    rnd, ends, status, count = lockstep(fmt, lanes, starts, stops)
    rounds = [rnd]
    lane_round = np.zeros(n, np.int64)          # the round holding each lane's latest walk
    nkeep = n

    for r in range(1, MAX_ROUNDS + 1):
        # a lane is right when its predecessor is right, ended OK and stopped on its start
        follows = (ends[:nkeep - 1] == starts[1:nkeep]) & (status[:nkeep - 1] == OK)
        bad = np.flatnonzero(~follows) + 1      # lanes that do not follow their predecessor
        if bad.size == 0:
            break
        j = int(bad[0])                          # lanes < j are verified
        if status[j - 1] != OK:
            nkeep = j                            # the chain ends inside lane j-1
            break
        if r == MAX_ROUNDS:
            # stop guessing: walk the rest one record at a time from the verified point
            tail = walk_scalar(fmt, int(ends[j - 1]), seg_end)
            offs, rows = _assemble(fmt, rounds, lane_round, count, j, want_rows)
            return WalkResult(np.concatenate((offs, tail.offsets)),
                              np.concatenate((rows, tail.rows)) if want_rows else None,
                              tail.next, tail.status)
        # walk again, from where its predecessor stopped, every lane whose predecessor
        # follows its own: right for lane j, and very likely for the others.  A lane
        # whose predecessor is itself being corrected keeps its guess: once the
        # predecessor is right it usually ends exactly there.
        redo = bad[~np.isin(bad - 1, bad)]
        starts[redo] = ends[redo - 1]
        rnd, e2, s2, c2 = lockstep(fmt, redo, starts[redo], stops[redo])
        rounds.append(rnd)
        lane_round[redo] = len(rounds) - 1
        ends[redo] = e2
        status[redo] = s2
        count[redo] = c2

    offs, rows = _assemble(fmt, rounds, lane_round, count, nkeep, want_rows)
    return WalkResult(offs, rows, int(ends[nkeep - 1]), int(status[nkeep - 1]))


def _assemble(fmt: Format, rounds: list[_Round], lane_round: np.ndarray, count: np.ndarray,
              nkeep: int, want_rows: bool = True):
    """Offsets and rows of lanes [0, nkeep) from their latest walk, in file order.
    Lanes are in file order and each lane reads at most one record per step, so the
    k-th step of lane j lands at base[j] + k: a scatter, no sort."""
    count = np.where(np.arange(len(count)) < nkeep, count, 0)
    base = np.concatenate(([0], np.cumsum(count)[:-1]))
    total = int(count.sum())
    offs = np.empty(total, np.int64)
    rows = flat = None
    if want_rows:
        proto = fmt.rows(np.zeros(0, np.int64))
        rows = np.empty((total,) + proto.shape[1:], proto.dtype)
        # rows move as one opaque item each: numpy scatters those ~10x faster than 2-D rows
        item = np.dtype(f"V{proto.dtype.itemsize * int(np.prod(proto.shape[1:]))}")
        flat = rows.view(item).reshape(total)
    for r, rnd in enumerate(rounds):
        if not rnd.lanes:
            continue
        # (lanes only drop out of a walk: its first step has all of them)
        first = rnd.lanes[0]
        if not want_rows and bool(((lane_round[first] == r) & (first < nkeep)).all()):
            # the usual case, no lane of this walk redone: each step straight to its place
            for k, (ln, o) in enumerate(zip(rnd.lanes, rnd.offs)):
                offs[base[ln] + k] = o
            continue
        ln = np.concatenate(rnd.lanes)
        step = np.repeat(np.arange(len(rnd.lanes)), [len(x) for x in rnd.lanes])
        sel = (lane_round[ln] == r) & (ln < nkeep)
        got = np.concatenate(rnd.offs)
        if want_rows:
            src = np.ascontiguousarray(np.concatenate(rnd.rows)).view(item).reshape(-1)
        if sel.all():               # the usual case: no lane of this walk was redone
            dest = base[ln] + step
            offs[dest] = got
            if want_rows:
                flat[dest] = src
            continue
        dest = base[ln[sel]] + step[sel]
        offs[dest] = got[sel]
        if want_rows:
            flat[dest] = src[sel]
    return offs, rows
