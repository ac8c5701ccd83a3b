"""The vector engine: one eBPF program over many packets at once, bit-exact with the
reference interpreter (bpfkit.ebpf.interp) on return values, packet bytes, maps, trace
output, instruction counts and faults (pc and kind).

Lanes are packets.  The program is cut into basic blocks (cfg.py); a block runs once
on every lane that reached it, with each lane's registers carried as compact uint64
arrays (dead registers dropped, cfg liveness).  A conditional jump splits the lanes; the
parts wait at their targets and lanes that arrive at one block from several places run
together.  Blocks are taken lowest address first, so forward-only programs are one sweep;
back-edges (bounded loops) simply queue lanes at an earlier block again.  bpf-to-bpf
calls keep the caller's registers with the lanes (a lane's call stack is part of the key
lanes wait under, so only lanes with the same stack run together).  Instruction counts
are exact per lane, so the instruction budget faults where the interpreter's does.

Memory is per lane (memory.py); maps run in speculative waves with sequential
semantics (mapwave.py).  Helpers are vector functions over lanes; the few that work on
bytes (csum_diff, trace_printk, strncmp, *_load_bytes) run the interpreter's own helper
once per calling lane on a one-lane memory view, so their semantics cannot drift.

What the engine does not run lane-parallel (tail calls, bpf_loop callbacks, ring buffers,
perf events, queue/stack/LRU/LPM and other map types, kfuncs, callx) is handed over per
packet: a lane that reaches it leaves the wave with nothing kept and the reference
interpreter runs that packet again, in capture order with respect to every map effect
(VectorProgram._hand_over; LaneOutcome.handed counts them by reason).  Only program
types other than XDP and socket filter are refused as a whole (`unsupported_reason`;
the capture runner then uses the interpreter and says so).  It never guesses."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from ...errors import ExecutionError
from .. import isa
from ..interp import (_MAP_HANDLE_BASE, _MAP_HANDLE_STRIDE, SKF_LL_OFF,
                      SKF_NET_OFF, Fault, HelperExit, Interpreter, MemoryFault)
from ..maps.consts import MapType
from ..prandom import draw_array
from ..progtypes import (_CB, _SKB_FIELDS, BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_XDP,
                         EACCES, EINVAL, ETH_HLEN, META_MAX, PAGE_SIZE, XDP_ABORTED,
                         XDP_DATA_HARD_END, XDP_FRAME_SIZE, XDP_PACKET_HEADROOM, XDP_REDIRECT)
from . import alu as A
from . import cfg
from .mapwave import BUCKET_IDS, SUPPORTED_MAP_TYPES, WaveMaps
from .memory import (REGION_CTX, REGION_MAPVAL0, REGION_PACKET, REGION_STACK0, STACK_SIZE,
                     U64, decode, gather, gather_rows, region_base, scatter, unaligned_view)

__all__ = ["VectorProgram", "LaneOutcome", "VECTOR_HELPERS", "batch_input"]

_M64 = (1 << 64) - 1
_EFAULT = 14
# helpers the engine runs lane-parallel or per lane; anything else -> interpreter
_SCALAR_HELPERS = frozenset({6, 28, 182})           # trace_printk, csum_diff, strncmp
VECTOR_HELPERS = frozenset({1, 2, 3, 5, 7, 8, 125, 160, 93, 94, 23, 26, 44, 51, 54, 65,
                            188, 189, 190}) | _SCALAR_HELPERS


@dataclass(slots=True)
class LaneOutcome:
    """Results of a run over n lanes (arrays in lane order)."""
    retval: np.ndarray                 # uint64, r0 at exit (0 after a fault)
    insns: np.ndarray                  # int64
    faults: dict                       # lane -> interp.Fault
    trace: dict                        # lane -> list[bytes]
    packets: list | None = None        # XDP: output bytes per lane (None: as captured)
    meta: dict | None = None           # XDP: lane -> metadata bytes (when non-empty)
    redirects: dict | None = None      # XDP: lane -> redirect target
    waves: int = 0
    # lanes the reference interpreter ran instead, by reason (VectorProgram._hand_over)
    handed: dict = field(default_factory=dict)


_LOOPS = 11          # register slot of the may_goto counter
_MIN_WAVE = 1024     # the smallest adaptive wave (VectorProgram.run)


def _is_scalar(v) -> bool:
    return not isinstance(v, np.ndarray) or v.ndim == 0


def _arr(v, n: int) -> np.ndarray:
    """A register as a lane array (registers equal on every lane are kept as numpy
    scalars: the context and frame pointers, constants; numpy broadcasts them)."""
    if isinstance(v, np.ndarray) and v.ndim == 1:
        return v
    return np.full(n, 0 if v is None else v, np.uint64)


def _norm(v):
    return U64(v) if isinstance(v, np.ndarray) and v.ndim == 0 else v


class _Group:
    """Lanes at one block, their registers and call frames, and `cnt`: the instructions
    each lane has run (an int when equal on every lane, the common case, so that a
    block costs no per-lane counting; an int64 array otherwise)."""
    __slots__ = ("lanes", "regs", "frames", "cnt")

    def __init__(self, lanes, regs, frames, cnt=0):
        self.lanes = lanes
        self.regs = regs
        self.frames = frames          # tuple of (return pc, saved regs)
        self.cnt = cnt

    def take(self, sel: np.ndarray) -> "_Group":
        """The lanes selected by a boolean mask or an index array (in order)."""
        if sel.dtype == bool:
            # one nonzero pass, then take() per register: several times faster than a
            # boolean index per register when the mask is irregular
            sel = np.flatnonzero(sel)
        regs = [r if r is None or _is_scalar(r) else r.take(sel) for r in self.regs]
        frames = tuple((pc, [r if r is None or _is_scalar(r) else r.take(sel) for r in saved])
                       for pc, saved in self.frames)
        cnt = self.cnt if isinstance(self.cnt, int) else self.cnt.take(sel)
        return _Group(self.lanes.take(sel), regs, frames, cnt)

    def counts(self, sel=None):
        """`cnt` of the lanes `sel` (all), as an int or an array."""
        if isinstance(self.cnt, int) or sel is None:
            return self.cnt
        return self.cnt[sel]


def _concat(parts: list[_Group]) -> _Group:
    if len(parts) == 1:
        return parts[0]
    n = [len(p.lanes) for p in parts]

    def cat(arrs):
        if all(a is None for a in arrs):
            return None
        if all(a is not None and _is_scalar(a) for a in arrs) and \
                all(a == arrs[0] for a in arrs):
            return arrs[0]
        return np.concatenate([_arr(a, k) for a, k in zip(arrs, n)])
    nr = len(parts[0].regs)
    regs = [cat([p.regs[r] for p in parts]) for r in range(nr)]
    frames = tuple((parts[0].frames[d][0], [cat([p.frames[d][1][r] for p in parts])
                                            for r in range(nr)])
                   for d in range(len(parts[0].frames)))
    cnts = [p.cnt for p in parts]
    if all(isinstance(c, int) and c == cnts[0] for c in cnts):
        cnt = cnts[0]
    else:
        cnt = np.concatenate([np.full(k, c, np.int64) if isinstance(c, int) else c
                              for c, k in zip(cnts, n)])
    return _Group(np.concatenate([p.lanes for p in parts]), regs, frames, cnt)


class _Wave:
    """Per-wave lane state."""

    def __init__(self, prog: "VectorProgram", src: np.ndarray, inp: dict, slot: int = 0):
        W = len(src)
        self.slot = slot
        self.abandoned: list[int] = []      # lanes left to the interpreter
        self.handed: dict[str, int] = {}      # reason -> lanes (see _hand_over)
        self.W = W
        self.src = src
        self.retval = np.zeros(W, np.uint64)
        self.insns = np.zeros(W, np.int64)
        self.faults: dict[int, Fault] = {}
        self.trace: dict[int, list] = {}
        self.prand_k = np.zeros(W, np.int64)
        self.pkt_index = inp["index"][src]
        self.ts = inp["ts_ns"][src]
        self.stack = np.zeros(W * prog.depth * STACK_SIZE, np.uint8)
        self.maps = WaveMaps(prog.maps, W) if prog.maps else None
        self.buf = inp["buf"]
        self.frame_off = inp["offset"][src].astype(np.int64)
        self.frame_len = inp["caplen"][src].astype(np.int64)
        self._head_cache(inp.get("head"), src)
        # XDP programs and the conformance "mem" mode both see the bytes in a page
        self.xdp = prog.prog_type == BPF_PROG_TYPE_XDP or prog.mem_mode
        self.mem_mode = prog.mem_mode
        if self.xdp:
            # one frame per lane; the kernel's is a 4096-byte page, but bytes past
            # headroom + packet can only be reached by bpf_xdp_adjust_tail, so programs
            # that do not call it get frames just long enough (fewer pages to touch)
            longest = int(self.frame_len.max()) if W else 0
            fit = (XDP_PACKET_HEADROOM + longest + 63) // 64 * 64
            # (the conformance "mem" mode has no page limit: its buffers can be longer)
            ps = max(fit, PAGE_SIZE) if prog.grows_tail or prog.mem_mode else \
                min(PAGE_SIZE, fit)
            self.ps = ps
            self.prog = prog
            # frames are made on a lane's first write or resize (materialize); until
            # then its packet is read in place from the capture buffer
            self.page = None
            self.mat = np.zeros(W, bool)
            self.n_mat = 0
            self.data = np.full(W, XDP_PACKET_HEADROOM, np.int64)
            self.data_meta = self.data.copy()
            self.data_end = self.data + self.frame_len
            self.redirect: dict[int, tuple] = {}
            self.ifindex = inp.get("ingress_ifindex", 1)
            self.rxq = inp.get("rx_queue_index", 0)
        else:
            self.cb = np.zeros(W * (_CB[1] - _CB[0]), np.uint8)
            self.skb_vals = _SkbValues(self.buf, self.frame_off, self.frame_len)


    def _head_cache(self, head, src: np.ndarray) -> None:
        """PacketBatch.head of the wave's lanes (each packet's first bytes, next to each
        other, filled by the capture reader while the bytes were in the CPU's caches):
        loads inside it read one compact block instead of all over the capture.  A slice
        (no copy) when the wave's lanes are consecutive input lanes."""
        self.hflat = None
        if head is None or not len(src) or head.ndim != 2 or head.dtype != np.uint8 \
                or head.strides[1] != 1:
            return
        lo, hi = int(src[0]), int(src[-1]) + 1
        rows = head[lo:hi] if hi - lo == len(src) and (np.diff(src) == 1).all() \
            else np.ascontiguousarray(head[src])
        self.hw, self.hstride = rows.shape[1], rows.strides[0]
        span = (len(rows) - 1) * self.hstride + self.hw
        self.hflat = np.lib.stride_tricks.as_strided(rows[0], (span,), (1,))

    def packet_bytes(self, lanes: np.ndarray, off, size: int,
                     big_endian: bool = False) -> np.ndarray:
        """Bytes [off, off + size) of the lanes' captured packets (the caller has checked
        them against caplen) as uint64 integers; `off` an int or an array."""
        if self.hflat is not None and \
                (int(off) if np.ndim(off) == 0 else int(off.max())) + size <= self.hw:
            arena, where = self.hflat, lanes * self.hstride + off
        else:
            arena, where = self.buf, self.frame_off[lanes] + off
        return unaligned_view(arena, size, big_endian)[where].astype(np.uint64)


def batch_input(batch, lanes: np.ndarray, first: int = 0) -> dict:
    """VectorProgram.run's input for the packets `lanes` of a PacketBatch: the batch's
    buffer, their offsets, lengths and timestamps, their packet numbers (first + lanes:
    prandom draws and trace tags) and the batch's head cache when it has one."""
    inp = {"buf": batch.buf, "offset": np.asarray(batch.offset, np.int64)[lanes],
           "caplen": np.asarray(batch.caplen, np.int64)[lanes],
           "ts_ns": np.asarray(batch.ts_ns, np.int64)[lanes], "index": first + lanes}
    head = getattr(batch, "head", None)
    if head is not None:
        inp["head"] = head if len(lanes) == len(batch) else head[lanes]
    return inp


def materialize(w: "_Wave", lanes: np.ndarray) -> None:
    """Give `lanes` their own writable frame (a copy of the packet behind zeroed
    headroom), as the test run's page; later accesses of theirs go to the frame."""
    lanes = lanes[~w.mat[lanes]]
    if not len(lanes):
        return
    lanes = np.unique(lanes)
    if w.page is None:
        w.page = w.prog.frames(w.W * w.ps, w.slot)
    frames = w.page[:w.W * w.ps].reshape(w.W, w.ps)
    rows = np.empty((len(lanes), w.ps), np.uint8)
    _fill_frames(rows, w.buf, w.frame_off[lanes], w.frame_len[lanes], XDP_PACKET_HEADROOM)
    frames[lanes] = rows
    w.mat[lanes] = True
    w.n_mat += len(lanes)


class _SkbValues:
    """__sk_buff fields a test run sets (progtypes.SkBuff), per lane, computed on first
    use: eth_type_trans on the loopback device, vectorised."""

    def __init__(self, buf, off, length):
        self.buf, self.off, self.length = buf, off, length
        self._vals: dict[str, np.ndarray] = {}

    def _byte(self, i: int) -> np.ndarray:
        ok = self.length > i
        v = np.zeros(len(self.off), np.uint64)
        v[ok] = self.buf[self.off[ok] + i]
        return v

    def get(self, name: str):
        if name in self._vals:
            return self._vals[name]
        n = len(self.off)
        if name == "len":
            v = (self.length - ETH_HLEN).astype(np.uint64)
        elif name == "ifindex":
            v = np.ones(n, np.uint64)               # the loopback device
        elif name == "pkt_type":
            dest = [self._byte(i) for i in range(6)]
            zero = np.logical_and.reduce([d == 0 for d in dest])
            # eth_type_trans: lo's address and broadcast address are all zero
            v = np.where(zero, U64(0), np.where(dest[0] & U64(1), U64(2), U64(3)))
        elif name == "protocol":
            proto = (self._byte(12) << U64(8)) | self._byte(13)
            raw = (self._byte(14) == 0xFF) & (self._byte(15) == 0xFF)
            # the IPX hack: under 0x600 is 802.3 raw (0xffff follows) or 802.2 LLC
            proto = np.where(proto < 0x600, np.where(raw, U64(0x0001), U64(0x0004)), proto)
            v = ((proto & U64(0xFF)) << U64(8)) | (proto >> U64(8))   # __be16 as loaded
        else:
            return None
        self._vals[name] = v
        return v


class VectorProgram:
    """A program ready for the vector engine, built from a loaded reference Interpreter
    (which has validated it) and its program type."""

    def __init__(self, interp: Interpreter, prog_type: int | None):
        """prog_type None: the bpf_conformance convention of Interpreter.run(mem=...):
        r1 points to a per-lane copy of the packet bytes, r2 holds their length, and
        every helper the Interpreter was given may be called."""
        self.interp = interp
        self.prog_type = prog_type
        self.mem_mode = prog_type is None
        self.slots, self.ops = interp.slots, interp.ops
        self.maps = list(interp.options.maps)
        self.budget = interp.options.budget
        self.max_loops = getattr(interp.options, "max_loops", isa.BPF_MAX_LOOPS)
        self.helpers = interp.options.helpers
        self.blocks = cfg.build(self.slots, self.ops)
        self.depth = 1
        self.grows_tail = any(i is not None and op.kind == "call" and i.src == 0
                              and i.imm == 65 for i, op in zip(self.slots, self.ops))
        self._frames: np.ndarray | None = None
        self.unsupported_reason = self._check()
        self.fuse = _find_fusions(self.slots, self.ops, self.blocks) if self.maps else {}
        self._wave_hint = _MIN_WAVE       # run(): the next wave's size, with maps

    def frames(self, nbytes: int, slot: int = 0) -> np.ndarray:
        """A reusable buffer for the XDP frames of a wave (its contents are stale);
        waves alive at the same time use different slots."""
        if self._frames is None:
            self._frames = {}
        buf = self._frames.get(slot)
        if buf is None or len(buf) < nbytes:
            buf = self._frames[slot] = np.empty(nbytes, np.uint8)
        return buf[:nbytes]

    def _check(self) -> str | None:
        """Why the engine cannot run the program at all (its type), else None.  What it
        does not run lane-parallel is handed over per lane instead (see _hand_over):
        `handover` maps pc -> reason for instructions that hand every lane reaching them
        to the interpreter, `interp_maps` map index -> reason for maps whose helper
        calls do."""
        self.handover: dict[int, str] = {}
        self.interp_maps: dict[int, str] = {}
        if not self.mem_mode and self.prog_type not in (BPF_PROG_TYPE_XDP,
                                                          BPF_PROG_TYPE_SOCKET_FILTER):
            return f"program type {self.prog_type}"
        from ..helper_ids import helper_name
        for pc, (i, op) in enumerate(zip(self.slots, self.ops)):
            if i is None:
                continue
            if op.kind == "callx":
                self.handover[pc] = "callx"
            if op.kind == "call":
                if i.src == isa.BPF_PSEUDO_CALL:
                    self.depth = isa.MAX_CALL_FRAMES
                elif i.src != 0:
                    self.handover[pc] = "kfunc call" if i.src == isa.BPF_PSEUDO_KFUNC_CALL \
                        else f"call kind {i.src}"
                elif i.imm not in VECTOR_HELPERS and not self.mem_mode:
                    self.handover[pc] = f"helper {helper_name(i.imm)}"
            if op.kind == "lddw" and i.src == isa.BPF_PSEUDO_FUNC:
                self.handover[pc] = "callback (lddw func)"
        for mi, m in enumerate(self.maps):
            t = getattr(m, "type", None)
            if getattr(m, "_klru", None) is not None or getattr(m, "lru", False):
                self.interp_maps[mi] = f"LRU map {getattr(m, 'name', '?')!r}"
            elif t not in SUPPORTED_MAP_TYPES:
                self.interp_maps[mi] = f"map {getattr(m, 'name', '?')!r} of type " \
                    f"{t.name.lower() if isinstance(t, MapType) else t}"
        return None

    # --- running ------------------------------------------------------------------------
    def run(self, inp: dict, *, seed: int = 0, wave_size: int | None = None) -> LaneOutcome:
        """Run over the lanes described by `inp` (numpy columns: buf uint8, offset,
        caplen, ts_ns, index (packet numbers, for prandom and trace tags)), in lane order
        for map semantics."""
        if self.unsupported_reason:
            raise ExecutionError(f"vector engine: unsupported {self.unsupported_reason}")
        if wave_size is None:
            # waves of 64k lanes amortise the per-block dispatch; with maps, smaller
            # waves have fewer packets of one new flow in them (fewer conflicts), and
            # 32k lanes measured best for bench/xdp_flowcount.c (1M packets: 8k lanes
            # 2.46 s, 16k 2.30 s, 32k 2.07 s of CPU on a loaded machine)
            wave_size = 1 << 15 if self.maps else 1 << 16
            adaptive = bool(self.maps)
        else:
            adaptive = False
        n = len(inp["offset"])
        retval = np.zeros(n, np.uint64)
        insns = np.zeros(n, np.int64)
        faults: dict = {}
        trace: dict = {}
        xdp = self.prog_type == BPF_PROG_TYPE_XDP or self.mem_mode
        packets: list | None = [None] * n if xdp else None
        meta: dict = {}
        redirects: dict = {}
        waves = 0
        handed: dict[str, int] = {}
        out = (retval, insns, faults, trace, packets, meta, redirects)
        lo = 0
        while lo < n:
            # with maps, the wave size adapts (kept across runs, i.e. batches): a wave
            # most of whose lanes had to be re-run on the interpreter (the first packets
            # of a capture all inserting the same few keys into a nearly full hash map:
            # every insert changes the element count the others read) halves the next
            # one, down to _MIN_WAVE; a wave without that doubles it back up
            ws = min(self._wave_hint, wave_size) if adaptive else wave_size
            pending = np.arange(lo, min(n, lo + ws), dtype=np.int64)
            lo += len(pending)
            waves += 1
            w = _Wave(self, pending, inp)
            self._execute(w, seed)
            for why, c in w.handed.items():
                handed[why] = handed.get(why, 0) + c
            if w.maps is None:
                ab = np.zeros(w.W, bool)
                ab[w.abandoned] = True
                done = np.flatnonzero(~ab)
                self._keep(w, done, pending[done], out)
                if w.abandoned:
                    self._interp_lanes(inp, pending[np.flatnonzero(ab)], seed, out)
                continue
            # (lanes handed over run on the interpreter whatever the wave size)
            reran = self._settle(w, inp, pending, seed, out) - len(w.abandoned)
            if adaptive:
                self._wave_hint = max(_MIN_WAVE, ws // 2) if reran * 4 > w.W else \
                    min(wave_size, ws * 2)
        return LaneOutcome(retval, insns, faults, trace, packets, meta if xdp else None,
                           redirects if xdp else None, waves, handed)

    def _settle(self, w: _Wave, inp: dict, pending: np.ndarray, seed: int, out) -> int:
        """Make a wave's map effects sequential (see mapwave).  Lanes that read what an
        earlier lane of the wave wrote (the conflicting lanes R) must run again; the
        others (T) keep their results.  First try: commit T (with an undo log), run R
        as a second wave, and keep everything if R saw nothing of a later T lane and
        changed nothing a later T lane saw (and R is conflict-free itself); typical
        for flow tables, where R is the later packets of flows first seen in the wave.
        Otherwise undo and walk (_walk).  Returns how many lanes the walk re-ran on the
        interpreter (0: none)."""
        wm = w.maps
        conflict, L, K, F = wm.analyze()
        W = w.W
        if w.abandoned:
            # lanes handed to the interpreter mid-run: re-run in order by the walk
            conflict[w.abandoned] = True
            return self._walk(w, inp, pending, seed, out, conflict, L, K // 65)
        if not conflict.any():
            wm.commit(0, W)
            self._keep(w, np.arange(W), pending, out)
            return 0
        R = np.flatnonzero(conflict)
        T = np.flatnonzero(~conflict)
        if wm.undoable(T.tolist()):
            undo: list = []
            wm.commit(0, W, undo=undo, skip=conflict)
            w2 = _Wave(self, pending[R], inp, slot=1)
            self._execute(w2, seed)
            c2, L2, K2, F2 = w2.maps.analyze()
            if not c2.any() and not w2.abandoned and not _crosses(wm, L, K, F, conflict, w2.maps, R[L2], K2, F2):
                w2.maps.commit(0, w2.W)
                self._keep(w, T, pending[T], out)
                self._keep(w2, np.arange(w2.W), pending[R], out)
                return 0
            wm.rollback(undo)
        return self._walk(w, inp, pending, seed, out, conflict, L, K // 65)

    def _walk(self, w: _Wave, inp: dict, pending: np.ndarray, seed: int, out, conflict,
              rl, rk) -> int:
        """Walk the wave's lanes in capture order: a conflicting lane, or one that
        touched a key a re-run lane changed, runs again on the reference interpreter
        against the real maps, which then hold exactly the effects of every lane before
        it; the other lanes keep their wave results and are committed in order in
        between.  Returns the number of lanes re-run."""
        wm = w.maps
        rerun = conflict.copy()
        dirty: set = set()
        pos = 0
        W = w.W
        while pos < W:
            nxt = np.flatnonzero(rerun[pos:])
            stop = pos + int(nxt[0]) if len(nxt) else W
            if stop > pos:
                wm.commit(pos, stop)
                self._keep(w, np.arange(pos, stop), pending[pos:stop], out)
            if stop >= W:
                break
            written = self._rerun(inp, int(pending[stop]), seed, out)
            new = {wm.find_key(*k) for k in written} - {None} - dirty
            if new:
                dirty |= new
                later = rl > stop
                hit = later & np.isin(rk, np.fromiter(new, np.int64, len(new)))
                rerun[rl[hit]] = True
            pos = stop + 1
        return int(np.count_nonzero(rerun))

    def _rerun(self, inp: dict, i: int, seed: int, out) -> set:
        """Run lane i on the interpreter (real maps); the (map, key) pairs it touched
        (looked up, updated, deleted: any of them may have been written through a
        pointer) and the size pseudo-keys of maps whose element count it changed."""
        ri = self._rerun_interp
        for p in self._proxies:
            p.log.clear()
        self._interp_lanes(inp, np.array([i]), seed, out, interp=ri)
        touched = set()
        for mi, p in enumerate(self._proxies):
            for kb in p.log:
                touched.add((mi, kb))
            if p.size_changed:
                touched.add((mi, None))
        return touched

    @property
    def _rerun_interp(self) -> Interpreter:
        if self.__dict__.get("_ri") is None:
            from ..interp import Options
            self._proxies = [_RecordingMap(m) for m in self.maps]
            o = self.interp.options
            self._ri = Interpreter(self.interp.insns, Options(
                budget=o.budget, helpers=o.helpers, callx_helpers=o.callx_helpers,
                maps=tuple(self._proxies)))
        return self._ri

    def _keep(self, w: _Wave, done: np.ndarray, src: np.ndarray, out) -> None:
        """Store the results of wave lanes `done` as input lanes `src`."""
        retval, insns, faults, trace, packets, meta, redirects = out
        retval[src] = w.retval[done]
        insns[src] = w.insns[done]
        dest = np.full(w.W, -1, np.int64)
        dest[done] = src
        for lane, f in w.faults.items():
            if dest[lane] >= 0:
                faults[int(dest[lane])] = f
        for lane, t in w.trace.items():
            if dest[lane] >= 0:
                trace[int(dest[lane])] = t
        if w.xdp:
            self._xdp_outputs(w, done, src, packets, meta, redirects, dest)

    def _interp_lanes(self, inp: dict, lanes: np.ndarray, seed: int, out,
                      interp: Interpreter | None = None) -> None:
        """Run lanes one at a time on the reference interpreter (same maps)."""
        interp = interp or self.interp
        from ..prandom import PacketRandom
        from ..progtypes import run_socket_filter, run_xdp
        retval, insns, faults, trace, packets, meta, redirects = out
        buf = inp["buf"]
        for i in lanes.tolist():
            o, ln = int(inp["offset"][i]), int(inp["caplen"][i])
            data = buf[o:o + ln].tobytes()
            common = {"cpu": 0, "ktime_ns": int(inp["ts_ns"][i]),
                      "prandom": PacketRandom(seed, int(inp["index"][i])),
                      "packet_index": int(inp["index"][i])}
            if self.mem_mode:
                mem = bytearray(data)
                r = interp.run(mem=mem, **common)
                packets[i] = bytes(mem)
            elif self.prog_type == BPF_PROG_TYPE_XDP:
                r = run_xdp(interp, data, ingress_ifindex=inp.get("ingress_ifindex", 1),
                            rx_queue_index=inp.get("rx_queue_index", 0), **common)
                packets[i] = r.packet
                if r.meta:
                    meta[i] = r.meta
                if r.redirect is not None:
                    redirects[i] = r.redirect
            else:
                r = run_socket_filter(interp, data, **common)
            retval[i] = r.retval
            insns[i] = r.insns
            if r.fault is not None:
                faults[i] = r.fault
            if r.trace:
                trace[i] = list(r.trace)

    def _xdp_outputs(self, w: _Wave, done, src, packets, meta, redirects, dest) -> None:
        base = done * w.ps
        d0, d1, dm = w.data[done], w.data_end[done], w.data_meta[done]
        mat = w.mat[done]
        if w.n_mat:
            raw = w.page[:w.W * w.ps].tobytes()
            for j in np.flatnonzero(mat).tolist():
                packets[int(src[j])] = raw[int(base[j] + d0[j]):int(base[j] + d1[j])]
        # untouched lanes (never written or resized) stay None: the packet as captured
        for j in np.flatnonzero(dm != d0).tolist():
            b = int(base[j])
            meta[int(src[j])] = w.page[b + int(dm[j]):b + int(d0[j])].tobytes()
        for lane, r in w.redirect.items():
            if dest[lane] >= 0:
                redirects[int(dest[lane])] = r

    def _execute(self, w: _Wave, seed: int) -> None:
        # r0-r10, and the frame's may_goto counter (the verifier's hidden stack slot)
        regs: list = [None] * 12
        regs[_LOOPS] = U64(self.max_loops)
        W = w.W
        live = self.blocks[0].live_in
        for r in live:
            regs[r] = U64(0)
        if w.mem_mode:
            regs[1] = U64(region_base(REGION_PACKET)) + w.data.astype(np.uint64)
            regs[2] = w.frame_len.astype(np.uint64)
        else:
            regs[1] = U64(region_base(REGION_CTX))
        regs[10] = U64(region_base(REGION_STACK0) + STACK_SIZE)
        self.seed = seed
        pending: dict[tuple, list[_Group]] = {(0, ()): [_Group(np.arange(W), regs, ())]}
        heap = [(0, ())]
        with np.errstate(all="ignore"):      # u64 arithmetic wraps, as in the kernel
            self._sweep(w, pending, heap)

    def _sweep(self, w: _Wave, pending, heap) -> None:
        # a few lanes that keep looping cost a block dispatch per iteration for almost
        # no lanes: after many visits, hand groups of <= 4 lanes to the interpreter
        # (abandoned lanes are run again from the start; nothing of theirs is kept)
        visits, patience = 0, 64 * len(self.blocks) + 1024
        while heap:
            key = heapq.heappop(heap)
            parts = pending.pop(key, None)
            if not parts:
                continue
            g = _concat(parts)
            visits += 1
            if visits > patience and len(g.lanes) <= 4:
                self._hand_over(w, g, "long loops on few packets")
                continue
            self._run_block(w, g, self.blocks[key[0]], pending, heap)

    def _queue(self, pending, heap, pc: int, g: _Group) -> None:
        if not len(g.lanes):
            return
        b = self.blocks[pc]
        g.regs = [r if i in b.live_in or i == _LOOPS else None for i, r in enumerate(g.regs)]
        key = (pc, tuple(f[0] for f in g.frames))
        if key not in pending:
            pending[key] = []
            heapq.heappush(heap, key)
        pending[key].append(g)

    # --- one block ------------------------------------------------------------------------
    def _run_block(self, w: _Wave, g: _Group, b: cfg.Block, pending, heap) -> None:
        n_insns = len(b.pcs)
        c = g.cnt
        risky = (c if isinstance(c, int) else int(c.max())) + n_insns > self.budget
        skip = 0
        for k, pc in enumerate(b.pcs):
            if skip:
                skip -= 1
                continue
            if not risky and pc in self.fuse and w.maps is not None:
                g = self._fused(w, g, pc, k)
                skip = 2
                if not len(g.lanes):
                    return
                continue
            if risky:
                # interp: `if count >= budget` before each instruction; the count stays
                over = np.broadcast_to(g.cnt + k >= self.budget, (len(g.lanes),))
                if over.any():
                    lanes = g.lanes[over]
                    w.insns[lanes] = g.counts(over) + k
                    w.retval[lanes] = 0
                    for l_ in lanes.tolist():
                        w.faults[l_] = Fault(pc, "budget", f"instruction budget of "
                                             f"{self.budget} exhausted")
                    g = g.take(~over)
                    if not len(g.lanes):
                        return
            g = self._insn(w, g, pc, k)
            if not len(g.lanes):
                return
        g.cnt = g.cnt + n_insns
        last = self.slots[b.pcs[-1]]
        op = self.ops[b.pcs[-1]]
        if b.term == "jcond":
            taken = self._cond(g, last, op)
            t = np.flatnonzero(taken)
            if len(t) == len(g.lanes):
                self._queue(pending, heap, b.target, g)
            elif not len(t):
                self._queue(pending, heap, b.follow, g)
            else:
                self._queue(pending, heap, b.target, g.take(t))
                self._queue(pending, heap, b.follow, g.take(np.flatnonzero(~taken)))
        elif b.term == "ja":
            self._queue(pending, heap, b.target, g)
        elif b.term == "may_goto":
            # interp: jump when the counter is 0, else decrement and fall through
            c = g.regs[_LOOPS]
            zero = np.broadcast_to(c == 0, (len(g.lanes),))
            if zero.any():
                self._queue(pending, heap, b.target, g.take(zero))
            if not zero.all():
                g = g.take(~zero)
                g.regs[_LOOPS] = _norm(g.regs[_LOOPS] - U64(1))
                self._queue(pending, heap, b.follow, g)
        elif b.term == "fall":
            if b.follow is None:
                raise ExecutionError("vector engine: fell off the end of the program")
            self._queue(pending, heap, b.follow, g)
        elif b.term == "exit":
            if not g.frames:
                w.retval[g.lanes] = g.regs[0]
                w.insns[g.lanes] = g.cnt
                return
            r0 = g.regs[0]
            ret_pc, saved = g.frames[-1]
            g = _Group(g.lanes, list(saved), g.frames[:-1], g.cnt)
            g.regs[0] = r0
            self._queue(pending, heap, ret_pc, g)
        elif b.term == "call":
            depth = len(g.frames) + 1
            if depth >= isa.MAX_CALL_FRAMES:
                lanes = g.lanes
                w.insns[lanes] = g.cnt
                for l_ in lanes.tolist():
                    w.faults[l_] = Fault(b.pcs[-1], "call_depth",
                                         f"more than {isa.MAX_CALL_FRAMES} call frames")
                w.retval[lanes] = 0
                return
            saved = list(g.regs)
            regs = [None] * 12
            regs[_LOOPS] = U64(self.max_loops)
            for r in range(1, 6):
                regs[r] = g.regs[r] if g.regs[r] is not None else U64(0)
            for r in (0, 6, 7, 8, 9):
                regs[r] = U64(0)
            regs[10] = U64(region_base(REGION_STACK0 + depth) + STACK_SIZE)
            # each frame's stack starts zeroed, as the interpreter's _new_frame does
            self._zero_frame(w, g.lanes, depth)
            self._queue(pending, heap, b.target,
                        _Group(g.lanes, regs, g.frames + ((b.follow, saved),), g.cnt))

    def _zero_frame(self, w: _Wave, lanes: np.ndarray, depth: int) -> None:
        base = lanes * (self.depth * STACK_SIZE) + depth * STACK_SIZE
        w.stack[base[:, None] + np.arange(STACK_SIZE)] = 0

    def _cond(self, g: _Group, insn, op) -> np.ndarray:
        bits = op.width
        a = A.mask_to(g.regs[insn.dst], bits)
        if op.source == isa.BPF_X:
            b = A.mask_to(g.regs[insn.src], bits)
        else:
            b = U64((insn.imm & _M64) & (0xFFFFFFFF if bits == 32 else _M64))
        t = A.jcond(op.op, a, b, bits)
        return t if isinstance(t, np.ndarray) and t.ndim == 1 else \
            np.full(len(g.lanes), bool(t))

    # --- lanes leaving mid-block ------------------------------------------------------------
    def _end_lanes(self, w: _Wave, g: _Group, mask: np.ndarray, k: int) -> _Group:
        """Lanes in `mask` end normally with r0 = 0 after instruction k of the block (a
        failed LD_ABS/LD_IND: the verifier's ld_abs epilogue)."""
        lanes = g.lanes[mask]
        w.insns[lanes] = g.counts(mask) + k + 1
        w.retval[lanes] = 0
        return g.take(~mask)

    # --- one instruction --------------------------------------------------------------------
    def _insn(self, w: _Wave, g: _Group, pc: int, k: int) -> _Group:
        if pc in self.handover:
            return self._hand_over(w, g, self.handover[pc])
        insn, op = self.slots[pc], self.ops[pc]
        kind = op.kind
        regs = g.regs
        if kind == "alu":
            bits = op.width
            if op.op == isa.BPF_MOV and insn.off:
                v = A.mask_to(A.sext(regs[insn.src], insn.off).view(U64), bits)
            else:
                if op.source == isa.BPF_X:
                    b = A.mask_to(regs[insn.src], bits)
                else:
                    b = U64((insn.imm & _M64) & (0xFFFFFFFF if bits == 32 else _M64))
                a = regs[insn.dst]
                a = U64(0) if a is None else A.mask_to(a, bits)
                v = A.alu(op.op, insn.off, a, b, bits)
            regs[insn.dst] = _norm(v)
        elif kind == "neg":
            regs[insn.dst] = _norm(A.mask_to(U64(0) - regs[insn.dst], op.width))
        elif kind == "end":
            v = regs[insn.dst]
            if op.name.startswith("le"):
                regs[insn.dst] = _norm(v & U64((1 << insn.imm) - 1) if insn.imm < 64 else v)
            else:
                regs[insn.dst] = _norm(A.swap(v, insn.imm))
        elif kind in ("ja", "gotol", "jcond", "may_goto", "exit") or (kind == "call"
                                                           and insn.src == isa.BPF_PSEUDO_CALL):
            pass                                        # block terminators
        elif kind == "lddw":
            g = self._lddw(w, g, insn, pc, k)
        elif kind in ("ldx", "ldxs"):
            addr = regs[insn.src] + U64(insn.off & _M64)
            v, bad = self._load(w, g, addr, op.size)
            if kind == "ldxs":
                v = A.sext(v, 8 * op.size).view(U64)
            g.regs[insn.dst] = v
            if bad is not None:
                g = self._fault(w, g, bad, k, pc)
        elif kind in ("st", "stx"):
            n = len(g.lanes)
            addr = _arr(regs[insn.dst] + U64(insn.off & _M64), n)
            val = (np.full(n, insn.imm & _M64, np.uint64) if kind == "st"
                   else _arr(regs[insn.src], n))
            bad = self._store(w, g, addr, op.size, val)
            if bad is not None:
                g = self._fault(w, g, bad, k, pc)
        elif kind == "atomic":
            g = self._atomic(w, g, insn, op, pc, k)
        elif kind in ("ldabs", "ldind"):
            g = self._ld_pkt(w, g, insn, op, k, pc)
        elif kind == "call":
            g = self._call(w, g, insn, pc, k)
        else:  # pragma: no cover - _check refuses the rest
            raise ExecutionError(f"vector engine: instruction kind {kind}")
        return g

    def _hand_over(self, w: _Wave, g: _Group, why: str, mask=None) -> _Group:
        """Lanes (all of g, or those in `mask`) that reach what the engine does not run
        lane-parallel (helpers such as ringbuf/perf output or tail calls, LRU and other
        map types, kfuncs, callbacks; a loop that keeps a few lanes going) leave the
        wave: nothing of theirs is kept, and the reference interpreter runs each of
        them again from the start, in capture order with respect to every map effect
        (run: after the wave when it has no maps; _settle/_walk: between the other lanes'
        commits).  Maps only these lanes touch therefore see the packets in order.
        Returns the lanes that stay."""
        lanes = g.lanes if mask is None else g.lanes[mask]
        w.abandoned.extend(lanes.tolist())
        w.handed[why] = w.handed.get(why, 0) + len(lanes)
        return g.take(np.zeros(len(g.lanes), bool) if mask is None else ~mask)

    def _fused(self, w: _Wave, g: _Group, pc: int, k: int) -> _Group:
        """`rA = *(uS *)(rP + o); rA += x; *(uS *)(rP + o) = rA` with rA dead after: on
        lanes where rP points into a writable map value this is an add of x to that
        value, the same as a non-fetching atomic add, so it becomes a delta (mapwave:
        commutative, no read of the word); other lanes run the three instructions."""
        size, a, p, o, add_pc = self.fuse[pc]
        n = len(g.lanes)
        addr = _arr(g.regs[p] + U64(o & _M64), n)
        region, off = decode(addr)
        cand = np.flatnonzero(region >= REGION_MAPVAL0)
        fast = np.zeros(n, bool)
        chunks = None
        if len(cand):
            ok, byte, ch = w.maps.resolve(g.lanes[cand], region[cand] - REGION_MAPVAL0,
                                          off[cand], size, True)
            fast[cand[ok]] = True
            byte, ch = byte[ok], ch[ok]
            chunks = ch
        parts = []
        if fast.any():
            f = g.take(fast)
            mask = U64((1 << (8 * size)) - 1)
            add = self.slots[add_pc]
            aop = self.ops[add_pc]
            if aop.source == isa.BPF_X:
                x = _arr(f.regs[add.src], len(f.lanes))
            else:
                x = np.full(len(f.lanes), add.imm & _M64, np.uint64)
            old = gather(w.maps.arena, byte, size)
            scatter(w.maps.arena, byte, size, (old + x) & mask)
            w.maps.add_delta(chunks, off[fast], size, x & mask)
            f.regs[a] = _norm(A.mask_to(old + x, aop.width))
            parts.append(f)
        if not fast.all():
            rest = g.take(~fast)
            for j in range(3):
                rest = self._insn(w, rest, pc + j, k + j)
                if not len(rest.lanes):
                    break
            parts.append(rest)
        parts = [q for q in parts if len(q.lanes)]
        if not parts:
            return g.take(np.zeros(n, bool))
        return _concat(parts)

    def _fault(self, w: _Wave, g: _Group, bad: tuple, k: int, pc: int) -> _Group:
        mask, kinds, details, regions = bad
        lanes = g.lanes[mask]
        w.insns[lanes] = g.counts(mask) + k + 1
        w.retval[lanes] = 0
        for l_, kd, d, r in zip(lanes.tolist(), kinds, details, regions):
            w.faults[l_] = Fault(pc, kd, d, None, 0, r)
        return g.take(~mask)

    # --- memory -----------------------------------------------------------------------------
    def _locate(self, w: _Wave, lanes: np.ndarray, addr: np.ndarray, size: int,
                write: bool):
        """Split an access by region.  Returns (segments, bad) where segments are
        (positions, tag, arena, byte addresses, extra) and bad maps position ->
        (kind, detail, region name)."""
        region, off = decode(addr)
        segs = []
        bad: dict[int, tuple] = {}
        if len(region) and region.min() == region.max():
            groups = [(int(region[0]), np.arange(len(region)))]
        else:
            u = np.unique(region)
            groups = [(int(r), np.flatnonzero(region == r)) for r in u]
        n_frames = self.depth
        for r, pos in groups:
            o = off[pos]
            ln = lanes[pos]
            if r == REGION_CTX:
                segs.append((pos, "ctx", None, o, None))
                continue
            if r == REGION_PACKET and w.xdp:
                ok = (o >= w.data_meta[ln]) & (o + size <= w.data_end[ln])
                name = "packet"
                if write:
                    materialize(w, ln[ok])
                mat = w.mat[ln] if w.n_mat else None
                if mat is None or not mat.any():
                    # in place: frame byte o of an untouched lane is packet byte o - 256
                    arena, byte = w.buf, w.frame_off[ln] + (o - XDP_PACKET_HEADROOM)
                elif mat.all():
                    arena, byte = w.page, ln * w.ps + o
                else:
                    in_buf = np.flatnonzero(ok & ~mat)
                    if len(in_buf):
                        segs.append((pos[in_buf], name, w.buf,
                                     w.frame_off[ln[in_buf]] + (o[in_buf] - XDP_PACKET_HEADROOM),
                                     None))
                    in_page = np.flatnonzero(ok & mat)
                    if len(in_page):
                        segs.append((pos[in_page], name, w.page,
                                     ln[in_page] * w.ps + o[in_page], None))
                    for j in np.flatnonzero(~ok).tolist():
                        bad[int(pos[j])] = ("memory", f"access of {size} byte(s) at "
                                            f"0x{int(addr[pos[j]]):x} outside every region "
                                            f"(nearest: {name!r})", name)
                    continue
            elif REGION_STACK0 <= r < REGION_STACK0 + n_frames:
                d = r - REGION_STACK0
                ok = o + size <= STACK_SIZE
                arena = w.stack
                byte = ln * (n_frames * STACK_SIZE) + d * STACK_SIZE + o
                name = f"stack[{d}]"
            elif r >= REGION_MAPVAL0 and w.maps is not None and \
                    r - REGION_MAPVAL0 < len(w.maps.events):
                ok, byte, chunks = w.maps.resolve(ln, np.full(len(pos), r - REGION_MAPVAL0),
                                                  o, size, write)
                arena, name = w.maps.arena, "map value"
                good = np.flatnonzero(ok)
                if len(good):
                    segs.append((pos[good], "mapval", None, byte[good], (chunks[good], o[good])))
                for j in np.flatnonzero(~ok).tolist():
                    bad[int(pos[j])] = ("memory", f"access of {size} byte(s) at "
                                        f"0x{int(addr[pos[j]]):x} outside the map value",
                                        name)
                continue
            else:
                for j in pos.tolist():
                    bad[j] = ("memory", f"access of {size} byte(s) at 0x{int(addr[j]):x} "
                              "outside every region", None)
                continue
            if ok.all():                    # the usual case: no copies of pos and byte
                segs.append((pos, name, arena, byte, None))
                continue
            good = np.flatnonzero(ok)
            if len(good):
                segs.append((pos[good], name, arena, byte[good], None))
            for j in np.flatnonzero(~ok).tolist():
                bad[int(pos[j])] = ("memory", f"access of {size} byte(s) at "
                                    f"0x{int(addr[pos[j]]):x} outside every region "
                                    f"(nearest: {name!r})", name)
        return segs, bad

    @staticmethod
    def _load_in_place(w: _Wave, lanes: np.ndarray, addr: np.ndarray, size: int):
        """The common XDP load, short of _locate's generality: every lane reads inside
        its own packet and no lane of the wave has a frame yet (so data_meta == data ==
        XDP_PACKET_HEADROOM and frame byte o is packet byte o - headroom in the capture
        buffer).  None when that is not the case for all the lanes."""
        if _is_scalar(addr):
            # the same address on every lane (a constant offset from `data`, which is
            # the same synthetic address for all the lanes)
            region, off = (int(x[0]) for x in decode(np.array([addr], np.uint64)))
            if region != REGION_PACKET or off < XDP_PACKET_HEADROOM:
                return None
        else:
            region, off = decode(addr)
            if not (region == REGION_PACKET).all() or off.min() < XDP_PACKET_HEADROOM:
                return None
        if not (off + size <= w.data_end[lanes]).all():
            return None
        return w.packet_bytes(lanes, off - XDP_PACKET_HEADROOM, size)

    @staticmethod
    def _bad_tuple(n: int, bad: dict):
        if not bad:
            return None
        mask = np.zeros(n, bool)
        keys = sorted(bad)
        mask[keys] = True
        return (mask, [bad[j][0] for j in keys], [bad[j][1] for j in keys],
                [bad[j][2] for j in keys])

    def _load(self, w: _Wave, g: _Group, addr, size: int):
        n = len(g.lanes)
        if w.xdp and not w.n_mat:
            v = self._load_in_place(w, g.lanes, addr, size)
            if v is not None:
                return v, None
        addr = _arr(addr, n)
        out = np.zeros(n, np.uint64)
        segs, bad = self._locate(w, g.lanes, addr, size, False)
        for pos, tag, arena, byte, extra in segs:
            if tag == "ctx":
                v, cbad = self._ctx_load(w, g.lanes[pos], byte, size)
                if _is_scalar(v) and len(segs) == 1 and len(pos) == n and not cbad:
                    return _norm(v), None           # the same on every lane
                out[pos] = v
                for j, why in cbad.items():
                    bad[int(pos[j])] = why
            elif tag == "mapval":
                chunks, o = extra
                out[pos] = gather(w.maps.arena, byte, size)
                w.maps.note(chunks, o, size, "r")
            elif len(pos) == n:                # every lane (pos is 0..n-1): no scatter
                out = gather(arena, byte, size)
            else:
                out[pos] = gather(arena, byte, size)
        return out, self._bad_tuple(n, bad)

    def _store(self, w: _Wave, g: _Group, addr: np.ndarray, size: int, val: np.ndarray):
        n = len(g.lanes)
        segs, bad = self._locate(w, g.lanes, addr, size, True)
        for pos, tag, arena, byte, extra in segs:
            if tag == "ctx":
                cbad = self._ctx_store(w, g.lanes[pos], byte, size, val[pos])
                for j, why in cbad.items():
                    bad[int(pos[j])] = why
            elif tag == "mapval":
                chunks, o = extra
                scatter(w.maps.arena, byte, size, val[pos])
                w.maps.note(chunks, o, size, "w")
                w.maps.mark_written(byte, size)
            else:
                scatter(arena, byte, size, val[pos])
        # mapval segments that were refused for writing are read-only values
        return self._bad_tuple(n, bad)

    # --- contexts -----------------------------------------------------------------------------
    def _ctx_load(self, w: _Wave, lanes: np.ndarray, off: np.ndarray, size: int):
        out = np.zeros(len(lanes), np.uint64)
        bad: dict[int, tuple] = {}
        offs = [int(off[0])] if len(off) and off.min() == off.max() else np.unique(off).tolist()
        for o in offs:
            pos = np.flatnonzero(off == o) if len(offs) > 1 else np.arange(len(off))
            ln = lanes[pos]
            v, why = (self._xdp_ctx(w, ln, o, size) if w.xdp else self._skb_ctx(w, ln, o, size))
            if why is not None:
                for j in pos.tolist():
                    bad[j] = why
            elif len(pos) == len(lanes) and _is_scalar(v):
                return v, bad
            else:
                out[pos] = v
        return out, bad

    def _xdp_ctx(self, w: _Wave, ln, o: int, size: int):
        if o + size > 24 or o < 0:
            return None, ("memory", f"access of {size} byte(s) outside 'ctx'", "ctx")
        if size != 4 or o not in (0, 4, 8, 12, 16):
            return None, ("memory", f"invalid xdp_md access off={o} size={size} "
                          "(xdp_is_valid_access)", "ctx")
        pb = U64(region_base(REGION_PACKET))
        if o in (0, 4, 8):
            v = (w.data, w.data_end, w.data_meta)[o // 4][ln]
            if o != 4 and w.n_mat == 0:
                # nothing resized yet: data and data_meta are the headroom on every lane
                return pb + U64(XDP_PACKET_HEADROOM), None
            return pb + v.astype(np.uint64), None
        return np.full(len(ln), w.ifindex if o == 12 else w.rxq, np.uint64), None

    def _skb_ctx(self, w: _Wave, ln, o: int, size: int):
        from ..progtypes import SKB_CTX_SIZE
        why = ("memory", f"invalid __sk_buff load off={o} size={size} "
               "(sk_filter_is_valid_access)", "ctx")
        if o < 0 or o + size > SKB_CTX_SIZE:
            return None, ("memory", f"access of {size} byte(s) outside 'ctx'", "ctx")
        if o % size:
            return None, why
        if _CB[0] <= o < _CB[1]:
            if o + size > _CB[1]:
                return None, why
            cbw = _CB[1] - _CB[0]
            return gather(w.cb, ln * cbw + (o - _CB[0]), size), None
        field = _SKB_FIELDS.get(o & ~3)
        if field is None or size == 8:
            return None, why
        name, target = field
        v = w.skb_vals.get(name)
        v = np.zeros(len(ln), np.uint64) if v is None else v[ln]
        v = v & U64((1 << (8 * target)) - 1)
        if size < target:
            v = (v >> U64(8 * (o & 3))) & U64((1 << (8 * size)) - 1)
        return v, None

    def _ctx_store(self, w: _Wave, lanes, off, size, val) -> dict:
        bad: dict[int, tuple] = {}
        for o in np.unique(off).tolist():
            pos = np.flatnonzero(off == o)
            if w.xdp:
                why = ("memory", f"write of {size} byte(s) to read-only 'ctx'", "ctx")
            elif o + size > 192 or o % size or not (_CB[0] <= o and o + size <= _CB[1]):
                why = ("memory", f"invalid __sk_buff store off={o} size={size} "
                       "(sk_filter_is_valid_access)", "ctx")
            else:
                cbw = _CB[1] - _CB[0]
                scatter(w.cb, lanes[pos] * cbw + (o - _CB[0]), size, val[pos])
                continue
            for j in pos.tolist():
                bad[j] = why
        return bad

    # --- lddw, atomics, packet loads ---------------------------------------------------------
    def _lddw(self, w: _Wave, g: _Group, insn, pc: int, k: int) -> _Group:
        if insn.src == 0:
            g.regs[insn.dst] = U64(insn.imm)
            return g
        mi = insn.imm & 0xFFFFFFFF
        if insn.src in (isa.BPF_PSEUDO_MAP_FD, isa.BPF_PSEUDO_MAP_IDX):
            g.regs[insn.dst] = U64(_MAP_HANDLE_BASE + mi * _MAP_HANDLE_STRIDE)
            return g
        if mi in self.interp_maps:
            return self._hand_over(w, g, self.interp_maps[mi])
        ptr = w.maps.direct_value(g.lanes, mi)
        g.regs[insn.dst] = ptr + U64(insn.imm >> 32)
        return g

    def _atomic(self, w: _Wave, g: _Group, insn, op, pc: int, k: int) -> _Group:
        size = op.size
        mask = U64((1 << (8 * size)) - 1)
        n = len(g.lanes)
        addr = _arr(g.regs[insn.dst] + U64(insn.off & _M64), n)
        segs, bad = self._locate(w, g.lanes, addr, size, True)
        src = _arr(g.regs[insn.src], n) & mask
        # the fetching forms write registers in place: give them arrays of their own
        # (registers may share one array after a mov)
        if insn.imm & isa.BPF_FETCH:
            g.regs[insn.src] = _arr(g.regs[insn.src], n).copy()
            g.regs[0] = _arr(g.regs[0], n).copy()
        a = insn.imm
        for pos, tag, arena, byte, extra in segs:
            if tag == "ctx":
                # interp._atomic: a context load (its hook), then a store (__sk_buff cb
                # only; xdp_md is read-only); programs the verifier would refuse
                old, cbad = self._ctx_load(w, g.lanes[pos], byte, size)
                old = _arr(old, len(pos))
                okm = np.ones(len(pos), bool)
                for j, why in cbad.items():
                    bad[int(pos[j])] = why
                    okm[j] = False
                s = src[pos]
                new = self._atomic_value(a, old, s, _arr(g.regs[0], n)[pos] & mask, mask)
                sel = np.flatnonzero(okm)
                sbad = self._ctx_store(w, g.lanes[pos[sel]], byte[sel], size, new[sel])
                for j, why in sbad.items():
                    bad[int(pos[sel[j]])] = why
                    okm[sel[j]] = False
                done = pos[okm]
                if a == isa.BPF_CMPXCHG:
                    g.regs[0][done] = old[okm]
                elif a & isa.BPF_FETCH:
                    g.regs[insn.src][done] = old[okm]
                continue
            if tag == "mapval":
                arena = w.maps.arena
                chunks, o = extra
            old = gather(arena, byte, size)
            s = src[pos]
            if a == isa.BPF_ADD and tag == "mapval":
                # a non-fetching add on a map value: a commutative delta (mapwave)
                scatter(arena, byte, size, (old + s) & mask)
                w.maps.add_delta(chunks, o, size, s)
                continue
            new = self._atomic_value(a, old, s, _arr(g.regs[0], n)[pos] & mask, mask)
            scatter(arena, byte, size, new)
            if tag == "mapval":
                w.maps.note(chunks, o, size, "r")
                w.maps.note(chunks, o, size, "w")
                w.maps.mark_written(byte, size)
            if a == isa.BPF_CMPXCHG:
                g.regs[0][pos] = old
            elif a & isa.BPF_FETCH:
                g.regs[insn.src][pos] = old
        b = self._bad_tuple(len(g.lanes), bad)
        if b is not None:
            g = self._fault(w, g, b, k, pc)
        return g

    @staticmethod
    def _atomic_value(a: int, old, s, r0, mask):
        """The value an atomic operation stores (interp._atomic)."""
        if a == isa.BPF_XCHG:
            return s
        if a == isa.BPF_CMPXCHG:
            return np.where(r0 == old, s, old)
        base = a & ~isa.BPF_FETCH
        return {isa.BPF_ADD: old + s, isa.BPF_OR: old | s, isa.BPF_AND: old & s,
                isa.BPF_XOR: old ^ s}[base] & mask

    def _ld_pkt(self, w: _Wave, g: _Group, insn, op, k: int, pc: int) -> _Group:
        """LD_ABS / LD_IND (bpf_skb_load_helper_*): a failing load ends the program with
        r0 = 0 (not a fault)."""
        n = len(g.lanes)
        size = op.size
        if w.xdp:
            flen = np.zeros(n, np.int64)        # the interpreter passes no packet for XDP
            data_off = 0
        else:
            flen = w.frame_len[g.lanes]
            data_off = ETH_HLEN
        if op.kind == "ldabs" and insn.imm >= 0:
            # the common case: a constant offset from skb->data
            off = data_off + insn.imm
            ok = np.broadcast_to(off + size <= flen, (n,))
        else:
            if op.kind == "ldabs":
                kk = np.full(n, insn.imm, np.int64)
            else:
                kk = A.sext((g.regs[insn.src] + U64(insn.imm & _M64)) & A.M32, 32)
            off = np.where(kk >= 0, data_off + kk,
                           np.where(kk >= SKF_NET_OFF, data_off + (kk - SKF_NET_OFF),
                                    kk - SKF_LL_OFF))
            ok = (kk >= SKF_LL_OFF) & (off >= 0) & (off + size <= flen)
            ok = np.broadcast_to(ok, (n,)).copy()
        if ok.all():
            g.regs[0] = w.packet_bytes(g.lanes, off, size, big_endian=True)
            return g
        good = np.flatnonzero(ok)
        v = np.zeros(n, np.uint64)
        if len(good):
            v[good] = w.packet_bytes(g.lanes[good], off if np.ndim(off) == 0 else off[good],
                                     size, big_endian=True)
        g.regs[0] = v
        return self._end_lanes(w, g, ~ok, k)

    # --- helpers --------------------------------------------------------------------------------
    def _call(self, w: _Wave, g: _Group, insn, pc: int, k: int) -> _Group:
        hid = insn.imm
        if self.interp_maps and hid in (1, 2, 3, 51) and not w.mem_mode:
            mi = self._map_index(_arr(g.regs[1], len(g.lanes)))
            for m in np.unique(mi).tolist():
                if m in self.interp_maps:
                    g = self._hand_over(w, g, self.interp_maps[m], mi == m)
                    mi = mi[mi != m]
            if not len(g.lanes):
                return g
        n = len(g.lanes)
        regs = g.regs
        r = [_arr(regs[i], n) for i in range(6)]
        res = None
        bad: dict[int, tuple] = {}
        if hid in (1, 2, 3) and self.maps:
            res = self._map_helper(w, g, hid, r, bad)
        elif w.mem_mode:
            res = self._scalar_helper(w, g, hid, r, bad)
        elif hid in (5, 125, 160):
            res = w.ts[g.lanes].astype(np.uint64)
        elif hid == 7:
            res = draw_array(self.seed, w.pkt_index[g.lanes], w.prand_k[g.lanes])
            w.prand_k[g.lanes] += 1
        elif hid in (8, 93, 94):
            res = np.zeros(n, np.uint64)
        elif hid in (44, 54, 65):
            res = self._xdp_adjust(w, g, hid, r, bad)
        elif hid == 188:
            res, bad = self._need_xdp_ctx(w, g, r[1], "xdp_get_buff_len")
            if w.xdp:
                res = (w.data_end[g.lanes] - w.data[g.lanes]).astype(np.uint64)
        elif hid in (23, 51):
            res = self._redirect(w, g, hid, r, bad)
        else:
            res = self._scalar_helper(w, g, hid, r, bad)
        if isinstance(res, tuple):          # (values, lanes ending with HelperExit)
            res, exits = res
        else:
            exits = None
        g.regs[0] = res                 # r1-r5 keep their values, as in the interpreter
        if exits:
            mask = np.zeros(n, bool)
            vals = np.zeros(n, np.uint64)
            for j, v in exits.items():
                mask[j] = True
                vals[j] = v
            # a lane ending through HelperExit: retval = its value, no fault
            lanes = g.lanes[mask]
            w.insns[lanes] = g.counts(mask) + k + 1
            w.retval[lanes] = vals[mask]
            for j in exits:
                bad.pop(j, None)
            keep_bad = self._bad_tuple(n, bad)
            g2 = g.take(~mask)
            if keep_bad is not None:
                kb = keep_bad[0][~mask]
                keep_bad = (kb, keep_bad[1], keep_bad[2], keep_bad[3])
                g2 = self._fault(w, g2, keep_bad, k, pc)
            return g2
        b = self._bad_tuple(n, bad)
        if b is not None:
            g = self._fault(w, g, b, k, pc)
        return g

    def _map_index(self, handle: np.ndarray) -> np.ndarray:
        rel = handle - U64(_MAP_HANDLE_BASE)
        idx = (rel // U64(_MAP_HANDLE_STRIDE)).astype(np.int64)
        ok = (handle >= U64(_MAP_HANDLE_BASE)) & (rel % U64(_MAP_HANDLE_STRIDE) == 0) & \
            (idx < len(self.maps))
        return np.where(ok, idx, -1)

    def _read_bytes(self, w: _Wave, lanes: np.ndarray, addr: np.ndarray, nbytes: int,
                    bad: dict, pos_map: np.ndarray) -> np.ndarray:
        """uint8 [n, nbytes] read by helpers (a failing read marks the lane in bad)."""
        out = np.zeros((len(lanes), nbytes), np.uint8)
        if nbytes == 0:
            return out
        segs, b = self._locate(w, lanes, addr, nbytes, False)
        for j, why in b.items():
            bad[int(pos_map[j])] = ("memory", why[1], why[2])
        for pos, tag, arena, byte, extra in segs:
            if tag == "ctx":
                continue                          # the raw context buffer reads as zeros
            if tag == "mapval":
                arena = w.maps.arena
                chunks, o = extra
                w.maps.note(chunks, o, nbytes, "r")
            out[pos] = gather_rows(arena, byte, nbytes)
        return out

    def _map_helper(self, w: _Wave, g: _Group, hid: int, r: list, bad: dict) -> np.ndarray:
        n = len(g.lanes)
        res = np.zeros(n, np.uint64)
        mi_all = self._map_index(r[1])
        for j in np.flatnonzero(mi_all < 0).tolist():
            bad[j] = ("helper", f"0x{int(r[1][j]):x} is not a map pointer", None)
        for mi in np.unique(mi_all[mi_all >= 0]).tolist():
            pos = np.flatnonzero(mi_all == mi)
            m = self.maps[mi]
            b0 = len(bad)
            keys = self._read_bytes(w, g.lanes[pos], r[2][pos], m.key_size, bad, pos)
            if hid == 2:
                vals = self._read_bytes(w, g.lanes[pos], r[3][pos], m.value_size, bad, pos)
            if len(bad) != b0:
                okm = np.array([int(p) not in bad for p in pos], bool)
                pos, keys = pos[okm], keys[okm]
                if hid == 2:
                    vals = vals[okm]
            if not len(pos):
                continue
            lanes = g.lanes[pos]
            if hid == 1:
                res[pos] = w.maps.lookup(lanes, mi, keys)
            elif hid == 2:
                res[pos] = w.maps.update(lanes, mi, keys, vals, r[4][pos])
            else:
                res[pos] = w.maps.delete(lanes, mi, keys)
        return res

    def _need_xdp_ctx(self, w: _Wave, g: _Group, r1: np.ndarray, name: str):
        bad: dict[int, tuple] = {}
        if not w.xdp:
            for j in range(len(g.lanes)):
                bad[j] = ("helper", f"bpf_{name} needs the XDP context in r1", None)
        else:
            for j in np.flatnonzero(r1 != U64(region_base(REGION_CTX))).tolist():
                bad[j] = ("helper", f"bpf_{name} needs the XDP context in r1", None)
        return np.zeros(len(g.lanes), np.uint64), bad

    def _xdp_adjust(self, w: _Wave, g: _Group, hid: int, r: list, bad: dict) -> np.ndarray:
        name = {44: "adjust_head", 54: "adjust_meta", 65: "adjust_tail"}[hid]
        res, b = self._need_xdp_ctx(w, g, r[1], f"xdp_{name}")
        bad.update(b)
        if not w.xdp:
            return res
        okl = np.ones(len(g.lanes), bool)
        okl[list(b)] = False
        pos = np.flatnonzero(okl)
        ln = g.lanes[pos]
        materialize(w, ln)
        offset = A.sext(r[2][pos] & A.M32, 32)
        data, meta, end = w.data[ln], w.data_meta[ln], w.data_end[ln]
        rc = np.zeros(len(pos), np.int64)
        if hid == 44:
            metalen = data - meta
            nd = data + offset
            fail = (nd < XDP_FRAME_SIZE + metalen) | (nd > end - ETH_HLEN)
            rc[fail] = -EINVAL
            okp = ~fail
            for j in np.flatnonzero(okp & (metalen > 0)).tolist():
                base = int(ln[j]) * w.ps
                m0, ml, o = int(meta[j]), int(metalen[j]), int(offset[j])
                chunk = w.page[base + m0:base + m0 + ml].copy()
                w.page[base + m0 + o:base + m0 + o + ml] = chunk
            w.data_meta[ln[okp]] = meta[okp] + offset[okp]
            w.data[ln[okp]] = nd[okp]
        elif hid == 54:
            nm = meta + offset
            fail1 = (nm < XDP_FRAME_SIZE) | (nm > data)
            metalen = data - nm
            fail2 = ~fail1 & ((metalen % 4 != 0) | (metalen > META_MAX))
            rc[fail1] = -EINVAL
            rc[fail2] = -EACCES
            okp = ~(fail1 | fail2)
            w.data_meta[ln[okp]] = nm[okp]
        else:
            ne = end + offset
            fail = (ne > XDP_DATA_HARD_END) | (ne < data + ETH_HLEN)
            rc[fail] = -EINVAL
            okp = ~fail
            grow = np.flatnonzero(okp & (offset > 0))
            if len(grow):
                lens = offset[grow]
                _zero_runs(w.page, ln[grow] * w.ps + end[grow], lens)
            w.data_end[ln[okp]] = ne[okp]
        res[pos] = rc.astype(np.uint64)
        return res

    def _redirect(self, w: _Wave, g: _Group, hid: int, r: list, bad: dict) -> np.ndarray:
        from ..progtypes import _ACTION_MASK, BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS
        n = len(g.lanes)
        res = np.zeros(n, np.uint64)
        if not w.xdp:
            for j in range(n):
                bad[j] = ("helper", "bpf_redirect needs the XDP context", None)
            return res
        for j in range(n):
            lane = int(g.lanes[j])
            if hid == 23:
                if int(r[2][j]):
                    res[j] = XDP_ABORTED
                    continue
                w.redirect[lane] = ("ifindex", int(r[1][j]) & 0xFFFFFFFF)
                res[j] = XDP_REDIRECT
                continue
            mi = int(self._map_index(r[1][j:j + 1])[0])
            if mi < 0:
                bad[j] = ("helper", f"0x{int(r[1][j]):x} is not a map pointer", None)
                continue
            m = self.maps[mi]
            if not hasattr(m, "redirect_target"):
                bad[j] = ("helper", "bpf_redirect_map on a map without redirect targets "
                          f"({type(m).__name__})", None)
                continue
            devmap = m.type in (MapType.DEVMAP, MapType.DEVMAP_HASH)
            fm = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS if devmap else 0
            flags = int(r[3][j])
            if flags & ~(_ACTION_MASK | fm):
                res[j] = XDP_ABORTED
                continue
            if flags & BPF_F_BROADCAST:
                bad[j] = ("unsupported", "bpf_redirect_map with BPF_F_BROADCAST", None)
                continue
            key = int(r[2][j]) & 0xFFFFFFFF
            t = m.redirect_target(key)
            if t is None:
                w.redirect.pop(lane, None)
                res[j] = flags & _ACTION_MASK
            else:
                w.redirect[lane] = ("map", getattr(m, "name", ""), key, t)
                res[j] = XDP_REDIRECT
        return res

    def _scalar_helper(self, w: _Wave, g: _Group, hid: int, r: list, bad: dict):
        """Helpers that work on bytes: the interpreter's implementation, once per lane,
        on a one-lane view of the lane's memory (_LaneMemory)."""
        n = len(g.lanes)
        res = np.zeros(n, np.uint64)
        exits: dict[int, int] = {}
        if hid in (26, 189, 190):
            fn = {26: self._skb_load_bytes, 189: self._xdp_bytes, 190: self._xdp_bytes}[hid]
        else:
            fn = self.helpers[hid]
        for j in range(n):
            mem = _LaneMemory(self, w, int(g.lanes[j]))
            try:
                if hid in (26, 189, 190):
                    v = fn(mem, hid, *(int(r[i][j]) for i in range(1, 6)))
                else:
                    v = fn(mem, *(int(r[i][j]) for i in range(1, 6)))
                res[j] = v & _M64
            except MemoryFault as f:
                bad[j] = (f.kind, f.detail, f.region)
            except HelperExit as e:
                exits[j] = e.value & _M64
            if mem.trace:
                w.trace.setdefault(int(g.lanes[j]), []).extend(mem.trace)
        return (res, exits) if exits else res

    def _skb_load_bytes(self, mem: "_LaneMemory", hid, r1, r2, r3, r4, r5) -> int:
        w, lane = mem.w, mem.lane
        if w.xdp or r1 != region_base(REGION_CTX):
            raise MemoryFault("helper", "bpf_skb_load_bytes needs the __sk_buff context in r1")
        offset, length = r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF
        o, fl = int(w.frame_off[lane]), int(w.frame_len[lane])
        data = w.buf[o + ETH_HLEN:o + fl].tobytes() if fl > ETH_HLEN else b""
        if offset > 0x7FFFFFFF or offset + length > len(data):
            mem.write(r3, bytes(length))
            return -_EFAULT & _M64
        mem.write(r3, data[offset:offset + length])
        return 0

    def _xdp_bytes(self, mem: "_LaneMemory", hid, r1, r2, r3, r4, r5) -> int:
        w, lane = mem.w, mem.lane
        store = hid == 190
        if not w.xdp or r1 != region_base(REGION_CTX):
            raise MemoryFault("helper", f"bpf_xdp_{'store' if store else 'load'}_bytes "
                              "needs the XDP context in r1")
        offset, length = r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF
        if offset > 0xFFFF or length > 0xFFFF:
            return -_EFAULT & _M64
        if offset + length > int(w.data_end[lane] - w.data[lane]):
            return -EINVAL & _M64
        materialize(w, np.array([lane]))
        start = lane * w.ps + int(w.data[lane]) + offset
        if store:
            w.page[start:start + length] = np.frombuffer(mem.read(r3, length), np.uint8)
        else:
            mem.write(r3, w.page[start:start + length].tobytes())
        return 0


def _fill_frames(frames: np.ndarray, buf: np.ndarray, off: np.ndarray, length: np.ndarray,
                 at: int) -> None:
    """frames[i] = zeros, with buf[off[i]:off[i]+length[i]] at byte `at`: one row copy
    per lane through a sliding-window view of the capture buffer (bytes past a packet's
    end are cleared again, so no lane's frame holds another packet's bytes)."""
    W = len(off)
    if not W:
        return
    frames[:, :at] = 0
    L = frames.shape[1] - at
    longest = int(length.max())
    L = min(L, longest)
    fits = off + L <= len(buf)
    idx = np.flatnonzero(fits)
    if len(idx) and L:
        win = np.lib.stride_tricks.as_strided(buf, shape=(len(buf) - L + 1, L),
                                              strides=(1, 1), writeable=False)
        frames[idx, at:at + L] = win[off[idx]]
        frames[idx, at:at + L][np.arange(L)[None, :] >= length[idx, None]] = 0
    for i in np.flatnonzero(~fits).tolist():
        o, n = int(off[i]), int(length[i])
        frames[i, at:] = 0
        frames[i, at:at + n] = buf[o:o + n]
    frames[:, at + L:] = 0


def _zero_runs(arena: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> None:
    total = int(lens.sum())
    if not total:
        return
    firsts = np.cumsum(lens) - lens
    within = np.arange(total, dtype=np.int64) - np.repeat(firsts, lens)
    arena[np.repeat(starts, lens) + within] = 0


def _find_fusions(slots, ops, blocks) -> dict:
    """pc -> (size, rA, rP, off, pc of the add) for each `rA = *(uS *)(rP + o);
    rA += x; *(uS *)(rP + o) = rA` inside one block with rA dead afterwards: the
    load-add-store clang emits for `value->counter += x` (VectorProgram._fused)."""
    from .cfg import _uses_defs
    fusions = {}
    for b in blocks.values():
        if b.term == "call":
            continue
        live_out = set()
        for t in (b.target, b.follow):
            if t is not None and t in blocks:
                live_out |= blocks[t].live_in
        if b.term == "exit":
            live_out |= {0}
        pcs = b.pcs
        # live registers after each instruction of the block
        after = [set() for _ in pcs]
        live = set(live_out)
        for j in range(len(pcs) - 1, -1, -1):
            after[j] = set(live)
            u, d = _uses_defs(slots[pcs[j]], ops[pcs[j]])
            live = (live - d) | u
        for j in range(len(pcs) - 2):
            i0, i1, i2 = (slots[pcs[j + q]] for q in range(3))
            o0, o1, o2 = (ops[pcs[j + q]] for q in range(3))
            if o0.kind != "ldx" or o2.kind != "stx" or o1.kind != "alu":
                continue
            size = o0.size
            a, p, off = i0.dst, i0.src, i0.off
            if o1.op != isa.BPF_ADD or i1.dst != a or i1.off:
                continue
            if o1.source == isa.BPF_X and i1.src in (a, p):
                continue
            if size == 8 and o1.width != 64:
                continue
            if o2.size != size or i2.dst != p or i2.src != a or i2.off != off or a == p:
                continue
            if a in after[j + 2] or pcs[j + 1] != pcs[j] + 1 or pcs[j + 2] != pcs[j] + 2:
                continue
            fusions[pcs[j]] = (size, a, p, off, pcs[j + 1])
    return fusions


def _crosses(wm, L, K, F, conflict, wm2, L2, K2, F2) -> bool:
    """Whether a second-wave lane r (rows L2 = wave-1 lane numbers, K2 in wm2's key ids)
    and a committed first-wave lane t > r touched one slot in an order-dependent way:
    anything but read/read or delta/delta (see mapwave.analyze for the flags)."""
    if not len(L2):
        return False
    t_rows = ~conflict[L]
    Lt, Kt, Ft = L[t_rows], K[t_rows], F[t_rows]
    # K2 -> wave-1 key ids (a key wave 1 never saw cannot cross)
    kid2 = K2 // 65
    uniq, inv = np.unique(kid2, return_inverse=True)
    kl2 = wm2.key_list
    to1 = np.array([k if k >= BUCKET_IDS else wm.key_ids[kl2[k][0]].get(kl2[k][1], -1)
                    for k in uniq.tolist()], np.int64)
    k1 = to1[inv.ravel()]
    known = k1 >= 0
    if not known.any() or not len(Lt):
        return False
    Kr = k1[known] * 65 + K2[known] % 65
    Lr, Fr = L2[known], F2[known]
    # ORDER (32, bucket places) counts as a write: two inserts into one bucket in the
    # wrong order leave another bucket order
    # and a word with narrower or unaligned adds (64) counts as read and written: their
    # carries depend on the order of the adds
    READ, WRITE, DELTA = 1 | 4 | 64, 2 | 8 | 32 | 64, 16
    # only the T rows of slots the second wave touched matter
    ukr = np.unique(Kr)
    at = np.minimum(np.searchsorted(ukr, Kt), len(ukr) - 1)
    mine = ukr[at] == Kt
    if not mine.any():
        return False
    Kt, Lt, Ft = Kt[mine], Lt[mine], Ft[mine]
    order = np.argsort(Kt, kind="stable")
    Kt, Lt, Ft = Kt[order], Lt[order], Ft[order]
    starts = np.flatnonzero(np.r_[True, Kt[1:] != Kt[:-1]])
    keys = Kt[starts]

    def last(flag):
        v = np.where((Ft & flag) != 0, Lt, -1)
        return np.maximum.reduceat(v, starts)
    mR, mW, mD = last(READ), last(WRITE), last(DELTA)
    pos = np.searchsorted(keys, Kr)
    pos = np.minimum(pos, len(keys) - 1)
    hit = keys[pos] == Kr
    if not hit.any():
        return False
    Kr, Lr, Fr, pos = Kr[hit], Lr[hit], Fr[hit], pos[hit]
    r_read, r_write, r_delta = (Fr & READ) != 0, (Fr & WRITE) != 0, (Fr & DELTA) != 0
    after = lambda m: m[pos] > Lr                                        # noqa: E731
    bad = (r_read & (after(mW) | after(mD))) | \
        (r_write & (after(mR) | after(mW) | after(mD))) | \
        (r_delta & (after(mR) | after(mW)))
    return bool(bad.any())


class _RecordingMap:
    """A map seen through the program-side API, noting the keys a run touches (for the
    re-run walk in VectorProgram._settle)."""

    def __init__(self, m):
        self.__dict__["_m"] = m
        self.__dict__["log"] = set()
        self.__dict__["_len"] = None

    def __getattr__(self, name):
        return getattr(self._m, name)

    @property
    def size_changed(self) -> bool:
        return self._len is not None and \
            getattr(self._m, "type", None) not in (MapType.ARRAY, MapType.PERCPU_ARRAY) \
            and hasattr(self._m, "__len__") and len(self._m) != self._len

    def _note(self, key) -> None:
        if self.__dict__["_len"] is None or not self.log:
            # only hash-like maps change their element count (an array's len() walks
            # every index: too slow to ask per re-run packet)
            sized = hasattr(self._m, "__len__") and \
                getattr(self._m, "type", None) not in (MapType.ARRAY, MapType.PERCPU_ARRAY)
            self.__dict__["_len"] = len(self._m) if sized else 0
        self.log.add(bytes(key))

    def lookup_ptr(self, key, cpu=0):
        self._note(key)
        return self._m.lookup_ptr(key, cpu)

    def update_raw(self, key, value, flags, cpu=0):
        self._note(key)
        return self._m.update_raw(key, value, flags, cpu)

    def delete_raw(self, key, cpu=0):
        self._note(key)
        return self._m.delete_raw(key, cpu)


class _RegionView:
    """What interp.Memory.find returns, for one lane's region (helpers read buf[lo:hi])."""
    __slots__ = ("name", "buf", "lo", "hi")

    def __init__(self, name, buf, lo, hi):
        self.name, self.buf, self.lo, self.hi = name, buf, lo, hi


class _LaneMemory:
    """interp.Memory's helper-facing interface over one lane of a wave."""

    def __init__(self, prog: VectorProgram, w: _Wave, lane: int):
        self.prog, self.w, self.lane = prog, w, lane
        self.trace: list[bytes] = []
        self.cpu = 0
        self.ktime_ns = int(w.ts[lane])
        self.packet_index = int(w.pkt_index[lane])
        self.context = None
        self.reserved: dict = {}

    def prandom(self) -> int:
        v = int(draw_array(self.prog.seed, np.array([self.packet_index]),
                           np.array([self.w.prand_k[self.lane]]))[0])
        self.w.prand_k[self.lane] += 1
        return v

    def _seg(self, addr: int, size: int, write: bool):
        lanes = np.array([self.lane], np.int64)
        segs, bad = self.prog._locate(self.w, lanes, np.array([addr & _M64], np.uint64),
                                      max(size, 1), write)
        if bad:
            kind, detail, region = bad[0]
            raise MemoryFault(kind, detail, addr, size, region)
        pos, tag, arena, byte, extra = segs[0]
        if tag == "ctx":
            return None, int(byte[0]), "ctx"
        if tag == "mapval":
            self.w.maps.note(extra[0], extra[1], max(size, 1), "w" if write else "r")
            arena = self.w.maps.arena
        return arena, int(byte[0]), tag

    def _ctx_size(self) -> int:
        from ..progtypes import SKB_CTX_SIZE
        return 24 if self.w.xdp else SKB_CTX_SIZE

    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        arena, b, tag = self._seg(addr, size, False)
        if tag == "ctx":
            # interp.Memory.read takes the context region's raw buffer, which holds
            # zeros (its fields come from load hooks)
            if b + size > self._ctx_size():
                raise MemoryFault("memory", f"access of {size} byte(s) outside 'ctx'", addr,
                                  size, "ctx")
            return bytes(size)
        return arena[b:b + size].tobytes()

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        arena, b, tag = self._seg(addr, len(data), True)
        if tag == "ctx":
            n = len(data)
            if b + n > self._ctx_size():
                raise MemoryFault("memory", f"access of {n} byte(s) outside 'ctx'", addr, n,
                                  "ctx")
            if self.w.xdp:
                raise MemoryFault("memory", f"write of {n} byte(s) to read-only 'ctx'", addr,
                                  n, "ctx")
            # SkBuff._store: aligned, inside cb[]
            if b % n or not (_CB[0] <= b and b + n <= _CB[1]):
                raise MemoryFault("memory", f"invalid __sk_buff store off={b} size={n} "
                                  "(sk_filter_is_valid_access)", addr, n, "ctx")
            cbw = _CB[1] - _CB[0]
            i = self.lane * cbw + b - _CB[0]
            self.w.cb[i:i + n] = np.frombuffer(bytes(data), np.uint8)
            return
        arena[b:b + len(data)] = np.frombuffer(bytes(data), np.uint8)
        if tag == "mapval":
            self.w.maps.mark_written(np.array([b]), len(data))

    def load(self, addr: int, size: int) -> int:
        return int.from_bytes(self.read(addr, size), "little")

    def store(self, addr: int, size: int, value: int) -> None:
        self.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def find(self, addr: int, size: int):
        """The lane's region around addr, as (view, offset) (for %s strings): the bytes
        from addr to the end of the lane's window."""
        arena, b, tag = self._seg(addr, size, False)
        region, off = decode(np.array([addr & _M64], np.uint64))
        off = int(off[0])
        if tag == "ctx":
            n = self._ctx_size()
            return _RegionView("ctx", bytes(n), 0, n), off
        if tag == "mapval":
            ch = int(self.w.maps.events[int(region[0]) - REGION_MAPVAL0][self.lane])
            end = int(self.w.maps.c_size.a[ch])
            self.w.maps.note(np.array([ch]), np.array([0]), max(end, 1), "r")
        elif tag == "packet":
            end = int(self.w.data_end[self.lane])
        else:
            end = STACK_SIZE
        tail = arena[b:b + (end - off)].tobytes()
        return _RegionView(tag, bytes(off) + tail, 0, off + len(tail)), off

    def map_at(self, addr: int):
        i = int(self.prog._map_index(np.array([addr & _M64], np.uint64))[0])
        if i < 0:
            raise MemoryFault("helper", f"0x{addr:x} is not a map pointer", addr)
        return self.prog.maps[i]
