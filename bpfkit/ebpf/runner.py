"""Run an eBPF `Program` over a capture on the reference interpreter: the API behind
`bpfkit run --ebpf`.

Semantics (DESIGN.md "Map semantics are sequential"): packets run one at a time in
capture order on one simulated CPU (cpu 0), as consecutive BPF_PROG_TEST_RUN calls
would; the maps persist from packet to packet; `bpf_ktime_get_ns` (and the boot and
coarse variants) return the packet's capture time in ns; `bpf_get_prandom_u32` gives
the k-th draw of packet i as a pure function of (seed, i, k) (bpfkit.ebpf.prandom), so a
replay gives the same answers and the vector engine, which runs all packets at once,
gives the same values.

What a program sees per packet follows bpfkit.ebpf.progtypes, i.e. the kernel's test
run: XDP gets the captured bytes as an Ethernet frame in a 4096-byte page
(run_xdp); a socket filter gets the frame through eth_type_trans with skb->data after
the 14-byte header (run_socket_filter).  Both therefore need Ethernet captures: any
other link type is refused (ExecutionError naming it) rather than misread.  A packet
the kernel's test run would refuse (shorter than 14 bytes: EINVAL) or that bpfkit does
not model (XDP frames over 3520 bytes need multi-buffer XDP) is not run; it is listed
in `skipped` with the reason, its output bytes are its input bytes and its retval is 0.

Memory: run_capture and run_batch keep the per-packet results (and the output
packets), so their memory grows with the capture.  stream_capture hands the results out
batch by batch (BatchResult) and keeps only the maps: what `bpfkit run --ebpf` uses
(with bpfkit.ebpf.runreport) to run over captures of any size in bounded memory.  Both
give the same results: map state, packet indexes and the output's file header carry
over from batch to batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional

import numpy as np

from ..errors import BpfError, ExecutionError, UnsupportedError
from ..pcap import PacketBatch, open_capture
from ..pcap import linktypes
from .maps import BpfMap, create_map
from .prandom import PacketRandom
from .program import Program
from .progtypes import (BPF_PROG_TYPE_XDP, PROG_TYPE_NAMES,
                        XDP_VERDICTS, load, run_socket_filter, run_xdp, verdict_name)

__all__ = ["Runner", "RunResult", "PacketFault", "SkippedPacket", "TraceLine", "PacketOutcome",
           "BatchResult", "CaptureRun", "run_capture", "run_batch", "stream_capture",
           "iter_outcomes", "LINKTYPE_ETHERNET", "DEFAULT_BATCH_PACKETS"]

LINKTYPE_ETHERNET = 1
DEFAULT_BATCH_PACKETS = 65536      # packets per batch read from a capture (open_capture's)
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PacketFault:
    """A run that stopped abnormally (interp.Fault) on packet `packet`; its retval is 0."""
    packet: int
    pc: int
    kind: str
    detail: str
    address: int | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedPacket:
    """A packet that was not run, and why (the kernel's refusal, or a limit of bpfkit)."""
    packet: int
    reason: str


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One bpf_trace_printk message, tagged with the packet that printed it."""
    packet: int
    text: bytes


@dataclass(frozen=True, slots=True)
class PacketOutcome:
    """The result of one packet.  retval: r0 as u32 (0 after a fault or when skipped);
    packet: the bytes after the run (XDP: data..data_end; socket filter: unchanged);
    meta: XDP metadata (data_meta..data); redirect: XDP redirect target or None."""
    index: int
    retval: int
    packet: bytes
    insns: int = 0
    meta: bytes = b""
    fault: PacketFault | None = None
    skipped: SkippedPacket | None = None
    redirect: tuple | None = None
    trace: tuple[TraceLine, ...] = ()


class Runner:
    """A loaded program with its maps and the run's state (generator, packet count).
    `run_packet` runs the next packet; the maps persist between calls."""

    def __init__(self, program: Program, *, maps: Mapping[str, BpfMap] | None = None,
                 seed: int = 0, budget: int = 1_000_000, num_cpus: int = 1,
                 ingress_ifindex: int = 1, rx_queue_index: int = 0):
        self.program = program
        given = dict(maps or {})
        unknown = set(given) - set(program.map_names)
        if unknown:
            raise BpfError(f"maps {sorted(unknown)} are not maps of the program "
                           f"(it has {list(program.map_names) or 'none'})")
        # BPF_MAP_CREATE for every map the caller did not bring (pre-filled maps can be
        # passed in); MapError carries the kernel's errno for an impossible spec
        self.maps: dict[str, BpfMap] = {
            spec.name: given[spec.name] if spec.name in given
            else create_map(spec, num_cpus=num_cpus)
            for spec in program.maps}
        self.interp = load(program.insns, program.prog_type,
                           maps=[self.maps[n] for n in program.map_names], budget=budget)
        self.seed = seed
        self._xdp_args = {"ingress_ifindex": ingress_ifindex, "rx_queue_index": rx_queue_index}
        self.next_index = 0

    def run_packet(self, data: bytes, ts_ns: int = 0) -> PacketOutcome:
        """Run the program on one packet (its index is the number of packets run
        before it on this Runner)."""
        index = self.next_index
        self.next_index += 1
        data = bytes(data)
        common = {"cpu": 0, "ktime_ns": int(ts_ns), "prandom": PacketRandom(self.seed, index),
                  "packet_index": index}
        try:
            if self.program.prog_type == BPF_PROG_TYPE_XDP:
                res = run_xdp(self.interp, data, **self._xdp_args, **common)
                out, meta, redirect = res.packet, res.meta, res.redirect
            else:
                res = run_socket_filter(self.interp, data, **common)
                out, meta, redirect = data, b"", None
        except (ExecutionError, UnsupportedError) as e:
            return PacketOutcome(index, 0, data, skipped=SkippedPacket(index, str(e)))
        f = res.fault
        fault = None if f is None else PacketFault(index, f.pc, f.kind, f.detail, f.address,
                                                   f.region)
        trace = tuple(TraceLine(index, t) for t in res.trace)
        return PacketOutcome(index, res.retval, out, res.insns, meta, fault, None, redirect,
                             trace)


@dataclass(eq=False)
class RunResult:
    """Per-packet results in capture order (numpy arrays of length `packets`), the
    output packets as a PacketBatch (same timestamps; wirelen keeps what the capture
    cut off: new caplen + old wirelen - old caplen), faults, skipped packets, trace
    lines tagged with the packet index, and the maps after the last packet."""
    program: Program
    packets: int
    retval: np.ndarray                     # uint32
    insns: np.ndarray                      # uint64, instructions executed
    output: PacketBatch
    maps: dict[str, BpfMap]
    faults: list[PacketFault] = field(default_factory=list)
    skipped: list[SkippedPacket] = field(default_factory=list)
    trace: list[TraceLine] = field(default_factory=list)
    meta: dict[int, bytes] = field(default_factory=dict)
    redirects: dict[int, tuple] = field(default_factory=dict)
    problems: list = field(default_factory=list)   # capture problems (non-strict reading)
    engine: str = "interp"       # what ran it: "vector", or "interp" (with the reason)
    # vector engine: packets it handed to the reference interpreter, by reason (helpers
    # and map types it does not run lane-parallel; see VectorProgram._hand_over)
    handed: dict[str, int] = field(default_factory=dict)

    @property
    def engine_summary(self) -> str:
        """`engine` with the hand-overs, for the CLI's `engine:` line."""
        return engine_summary(self.engine, self.handed, self.packets)

    @property
    def is_xdp(self) -> bool:
        return self.program.prog_type == BPF_PROG_TYPE_XDP

    @property
    def verdicts(self) -> list[str] | None:
        """XDP only: the verdict name of every packet (XDP_PASS -> 'PASS'; values the
        kernel passes through unnamed are shown as numbers)."""
        if not self.is_xdp:
            return None
        return [verdict_name(int(r)) for r in self.retval]

    def verdict_counts(self) -> dict[str, int]:
        """XDP: packets per verdict (the five XDP actions always listed, others as
        seen); socket filter: 'accepted' (retval != 0) and 'rejected'."""
        if not self.is_xdp:
            acc = int(np.count_nonzero(self.retval))
            return {"accepted": acc, "rejected": self.packets - acc}
        return add_verdict_counts({name: 0 for name in XDP_VERDICTS.values()}, self.retval)

    def dump_maps(self) -> dict[str, list[dict]]:
        """map name -> [{"key": hex, "value": hex}] (per-CPU: a list of hex per CPU)."""
        return {name: m.dump() for name, m in self.maps.items()}

    def to_json(self, *, dump_maps: bool = False) -> dict:
        """The `bpfkit run --ebpf --json` object."""
        out: dict = {"packets": self.packets,
                     "type": PROG_TYPE_NAMES[self.program.prog_type],
                     "retval": self.retval.tolist()}
        if self.is_xdp:
            out["verdict"] = self.verdicts
        out["counts"] = self.verdict_counts()
        out["insns"] = self.insns.tolist()
        out["faults"] = [fault_json(f) for f in self.faults]
        out["skipped"] = [skipped_json(s) for s in self.skipped]
        out["trace"] = [trace_json(t) for t in self.trace]
        if self.redirects:
            out["redirect"] = [redirect_json(i, t) for i, t in sorted(self.redirects.items())]
        if dump_maps:
            out["maps"] = self.dump_maps()
        out["warnings"] = [str(p) for p in self.problems]
        out["engine"] = self.engine
        out["handed_to_interp"] = dict(self.handed)
        return out


ENGINES = ("vector", "interp")


# the --json items, shared by RunResult.to_json and the streamed runreport.RunReport
def fault_json(f: PacketFault) -> dict:
    return {"packet": f.packet, "pc": f.pc, "kind": f.kind, "detail": f.detail}


def skipped_json(s: SkippedPacket) -> dict:
    return {"packet": s.packet, "reason": s.reason}


def trace_json(t: TraceLine) -> dict:
    return {"packet": t.packet, "text": t.text.decode("utf-8", "replace")}


def redirect_json(i: int, target: tuple) -> dict:
    return {"packet": i, "target": [str(x) for x in target]}


def add_verdict_counts(counts: dict[str, int], retval: np.ndarray) -> dict[str, int]:
    """Add the XDP verdicts of `retval` to `counts` (verdict name -> packets); names
    not in it yet (values without a name) are added in the order they first appear."""
    vals, first, n = np.unique(np.asarray(retval), return_index=True, return_counts=True)
    for k in np.argsort(first, kind="stable").tolist():
        name = verdict_name(int(vals[k]))
        counts[name] = counts.get(name, 0) + int(n[k])
    return counts


def engine_summary(engine: str, handed: Mapping[str, int], packets: int) -> str:
    """RunResult.engine_summary: `engine` with the packets handed to the interpreter."""
    if not handed:
        return engine
    n = sum(handed.values())
    why = ", ".join(f"{r} ({c})" for r, c in sorted(handed.items()))
    return f"{engine} ({n} of {packets} packets on the reference interpreter: {why})"


@dataclass(eq=False)
class BatchResult:
    """The results of one batch of a run (stream_capture): packets `first` ..
    `first + packets - 1` of the capture, in order.  Arrays and `output` as in RunResult,
    for this batch only; packet numbers in faults, skipped, trace, meta and redirects
    are capture-wide."""
    first: int
    retval: np.ndarray                     # uint32
    insns: np.ndarray                      # uint64
    output: PacketBatch
    faults: list[PacketFault] = field(default_factory=list)
    skipped: list[SkippedPacket] = field(default_factory=list)
    trace: list[TraceLine] = field(default_factory=list)
    meta: dict[int, bytes] = field(default_factory=dict)
    redirects: dict[int, tuple] = field(default_factory=dict)
    handed: dict[str, int] = field(default_factory=dict)   # RunResult.handed, this batch

    @property
    def packets(self) -> int:
        return len(self.retval)


class _Collector:
    """Runs batches through the chosen engine, one BatchResult per batch; the maps and
    the packet count carry over.  engine "vector": the vector engine
    (bpfkit.ebpf.vector) when it runs the program, else the reference interpreter, with
    the reason kept in `engine_note`.  It also follows what the file header of the
    whole output must say (output_header).  keep: also keep every BatchResult, for
    result() (a streamed run does not)."""

    def __init__(self, runner: Runner, engine: str = "vector", *, keep: bool = True):
        if engine not in ENGINES:
            raise BpfError(f"unknown engine {engine!r} (use one of {', '.join(ENGINES)})")
        self.runner = runner
        self.ts_nanos = False
        self.vprog = None
        self.batches = 0
        self.parts: list[BatchResult] | None = [] if keep else None
        self._first_linktype: int | None = None
        self._out_snaplen = 0        # the largest snaplen of a batch, or output packet
        self.engine_note = "interp"
        self.handed: dict[str, int] = {}
        if engine == "vector":
            from .vector import VectorProgram
            vp = VectorProgram(runner.interp, runner.program.prog_type)
            if vp.unsupported_reason is None:
                self.vprog = vp
                self.engine_note = "vector"
            else:
                self.engine_note = f"interp (the vector engine does not run " \
                                   f"{vp.unsupported_reason})"

    def output_header(self) -> tuple[int, int, bool]:
        """(linktype, snaplen, ts_nanos) of the whole output so far, as RunResult.output
        has them: the first batch's link type, the largest snaplen of a batch or length
        of an output packet (bpf_xdp_adjust_tail may grow a packet past the capture's
        snaplen), nanoseconds if any batch has them.  None of it depends on how the
        capture is cut into batches."""
        if not self.batches:
            return LINKTYPE_ETHERNET, 262144, False
        return self._first_linktype, self._out_snaplen, self.ts_nanos

    def batch(self, batch: PacketBatch) -> BatchResult:
        res = self._batch(batch)
        if self.parts is not None:
            self.parts.append(res)
        return res

    def _batch(self, batch: PacketBatch) -> BatchResult:
        _check_linktype(batch.linktype, self.runner.program.prog_type)
        self.ts_nanos = self.ts_nanos or batch.ts_nanos
        if self._first_linktype is None:
            self._first_linktype = batch.linktype
        self.batches += 1
        if self.vprog is not None:
            res = self._vector_batch(batch)
            self._out_snaplen = max(self._out_snaplen, res.output.snaplen)
            return res
        first = self.runner.next_index
        n = len(batch)
        retval = np.zeros(n, np.uint32)
        insns = np.zeros(n, np.uint64)
        out: list[bytes] = []
        wirelen: list[int] = []
        res = BatchResult(first, retval, insns, None)
        for i in range(n):
            ts = int(batch.ts_ns[i])
            o = self.runner.run_packet(batch[i], ts)
            retval[i] = o.retval
            insns[i] = o.insns
            out.append(o.packet)
            wirelen.append(len(o.packet) + max(int(batch.wirelen[i]) - int(batch.caplen[i]), 0))
            if o.fault:
                res.faults.append(o.fault)
            if o.skipped:
                res.skipped.append(o.skipped)
            if o.meta:
                res.meta[o.index] = o.meta
            if o.redirect is not None:
                res.redirects[o.index] = o.redirect
            res.trace.extend(o.trace)
        self._out_snaplen = max([self._out_snaplen, batch.snaplen] + [len(p) for p in out])
        res.output = PacketBatch.from_packets(out, ts_ns=np.asarray(batch.ts_ns, np.int64),
                                              wirelen=wirelen, linktype=batch.linktype,
                                              snaplen=batch.snaplen,
                                              ts_nanos=batch.ts_nanos)
        return res

    def _vector_batch(self, batch: PacketBatch) -> BatchResult:
        from .progtypes import ETH_HLEN, XDP_MAX_LINEAR
        runner = self.runner
        n = len(batch)
        first = runner.next_index
        runner.next_index += n
        caplen = np.asarray(batch.caplen, dtype=np.int64)
        xdp = runner.program.prog_type == BPF_PROG_TYPE_XDP
        # the packets the kernel's test run refuses or bpfkit does not model (see
        # progtypes.run_xdp / run_socket_filter) are skipped, as run_packet does
        run = caplen >= ETH_HLEN
        if xdp:
            run &= caplen <= XDP_MAX_LINEAR
        lanes = np.flatnonzero(run)
        from .vector import batch_input
        inp = batch_input(batch, lanes, first)
        inp["ingress_ifindex"] = runner._xdp_args["ingress_ifindex"]
        inp["rx_queue_index"] = runner._xdp_args["rx_queue_index"]
        res = self.vprog.run(inp, seed=runner.seed)
        retval = np.zeros(n, np.uint32)
        retval[lanes] = res.retval & np.uint64(0xFFFFFFFF)
        insns = np.zeros(n, np.uint64)
        insns[lanes] = res.insns
        changed = {}
        if xdp and res.packets.count(None) != len(res.packets):     # None: unchanged
            changed = {i: res.packets[j] for j, i in enumerate(lanes.tolist())
                       if res.packets[j] is not None}
        if not changed:
            # every packet leaves as it came: the output is the input batch (a reader's
            # memory map stays open while batches use it: reader.close)
            output = batch
        else:
            ts = np.asarray(batch.ts_ns, np.int64)
            cut = (np.asarray(batch.wirelen, np.int64) - caplen).tolist()
            out_now = [changed[i] if i in changed else bytes(batch[i]) for i in range(n)]
            wl = [len(out_now[i]) + max(cut[i], 0) for i in range(n)]
            snap = max([batch.snaplen] + [len(p) for p in changed.values()])
            output = PacketBatch.from_packets(out_now, ts_ns=ts, wirelen=wl,
                                              linktype=batch.linktype, snaplen=snap,
                                              ts_nanos=batch.ts_nanos)
        out = BatchResult(first, retval, insns, output, handed=dict(res.handed))
        for why, c in res.handed.items():
            self.handed[why] = self.handed.get(why, 0) + c
        for i in np.flatnonzero(~run).tolist():
            out.skipped.append(_skip(batch, i, first, xdp))
        for j, f in sorted(res.faults.items()):
            i = int(lanes[j])
            out.faults.append(PacketFault(first + i, f.pc, f.kind, f.detail, f.address,
                                          f.region))
        for j in sorted(res.trace):
            i = int(lanes[j])
            out.trace.extend(TraceLine(first + i, t) for t in res.trace[j])
        if xdp:
            for j, m in res.meta.items():
                out.meta[first + int(lanes[j])] = m
            for j, r in res.redirects.items():
                out.redirects[first + int(lanes[j])] = r
        return out

    def result(self, problems, parts: list[BatchResult] | None = None) -> RunResult:
        """The RunResult of a run whose batches gave `parts` (in order; default: the
        ones kept)."""
        if parts is None:
            parts = self.parts
        linktype, snaplen, nanos = self.output_header()
        outs = [p.output for p in parts]
        if not outs:
            output = PacketBatch.empty(linktype, snaplen, nanos)
        elif self.vprog is not None:
            if len(outs) == 1:
                output = outs[0]
            elif all(b.buf is outs[0].buf for b in outs):
                # batches of one memory-mapped file: one batch over it, nothing copied
                output = dataclasses.replace(
                    outs[0], offset=np.concatenate([b.offset for b in outs]),
                    caplen=np.concatenate([b.caplen for b in outs]),
                    wirelen=np.concatenate([b.wirelen for b in outs]),
                    ts_ns=np.concatenate([b.ts_ns for b in outs]),
                    snaplen=snaplen, ts_nanos=nanos)
            else:
                output = PacketBatch.concat(outs)
        else:
            output = outs[0] if len(outs) == 1 else PacketBatch.concat(
                [dataclasses.replace(b, linktype=linktype) for b in outs])
            output = dataclasses.replace(output, linktype=linktype, snaplen=snaplen,
                                         ts_nanos=nanos)
        faults = [f for p in parts for f in p.faults]
        skipped = [s for p in parts for s in p.skipped]
        trace = [t for p in parts for t in p.trace]
        meta = {i: m for p in parts for i, m in p.meta.items()}
        redirects = {i: r for p in parts for i, r in p.redirects.items()}
        handed: dict[str, int] = {}
        for p in parts:
            for why, c in p.handed.items():
                handed[why] = handed.get(why, 0) + c
        retval = np.concatenate([p.retval for p in parts]) if parts else np.zeros(0, np.uint32)
        insns = np.concatenate([p.insns for p in parts]) if parts else np.zeros(0, np.uint64)
        return RunResult(self.runner.program, len(retval), retval, insns, output,
                         self.runner.maps, faults, skipped, trace, meta, redirects,
                         list(problems), self.engine_note, handed)


def _skip(batch, i, first, xdp) -> SkippedPacket:
    from .progtypes import ETH_HLEN, XDP_MAX_LINEAR
    ln = int(batch.caplen[i])
    if ln < ETH_HLEN:
        kind = "XDP" if xdp else "socket-filter"
        reason = (f"{kind} input of {ln} bytes is shorter than the {ETH_HLEN}-byte "
                  "Ethernet header (the kernel says EINVAL)")
    else:
        reason = (f"unsupported: XDP multi-buffer packets ({ln} bytes > "
                  f"{XDP_MAX_LINEAR} linear bytes)")
    return SkippedPacket(first + i, reason)


def _check_linktype(linktype: int, prog_type: int) -> None:
    """Both modelled program types take Ethernet frames (the test run's eth_type_trans
    for socket filters; XDP's data starts at the mac header of an Ethernet driver)."""
    if linktypes.lt_linktype(linktype) != LINKTYPE_ETHERNET:
        raise ExecutionError(
            f"{PROG_TYPE_NAMES[prog_type]} programs run on Ethernet frames; this capture's "
            f"link type is {linktypes.name_of(linktype)} ({linktype})")


def run_batch(program: Program, batch: PacketBatch, *, maps: Mapping[str, BpfMap] | None = None,
              seed: int = 0, budget: int = 1_000_000, num_cpus: int = 1,
              engine: str = "vector") -> RunResult:
    """Run `program` over the packets of an in-memory batch, in order.  engine: "vector"
    (the vector engine, or the interpreter when it cannot run the program: see
    RunResult.engine) or "interp" (the reference interpreter)."""
    col = _Collector(Runner(program, maps=maps, seed=seed, budget=budget, num_cpus=num_cpus),
                     engine)
    col.batch(batch)
    return col.result(())


class CaptureRun:
    """A run over a capture, batch by batch: iterate it (once) for one BatchResult per
    batch read.  Nothing of a batch is kept after it is handed out, except what the
    maps hold, so memory does not grow with the capture.  Made by stream_capture; use
    it as a context manager (closes the capture).

    Attributes: ``program``, ``maps`` (their state after the batches handed out so far),
    ``engine`` (RunResult.engine), ``packets`` (packets run so far), ``problems``
    (capture problems met so far: complete after the last batch), and
    ``output_header()``: (linktype, snaplen, ts_nanos) that RunResult.output of the
    whole run has (final after the last batch)."""

    def __init__(self, program: Program, capture, *, count: Optional[int] = None,
                 maps: Mapping[str, BpfMap] | None = None, seed: int = 0,
                 budget: int = 1_000_000, num_cpus: int = 1, strict: bool = False,
                 progress: Optional[Progress] = None, engine: str = "vector",
                 batch_packets: int = DEFAULT_BATCH_PACKETS):
        self.program = program
        self._col = _Collector(Runner(program, maps=maps, seed=seed, budget=budget,
                                      num_cpus=num_cpus), engine, keep=False)
        self._reader = open_capture(capture, strict=strict, batch_packets=batch_packets)
        self._count = count
        self._progress = progress
        self.packets = 0
        self._started = False

    @property
    def maps(self) -> dict[str, BpfMap]:
        return self._col.runner.maps

    @property
    def engine(self) -> str:
        return self._col.engine_note

    @property
    def problems(self) -> list:
        return list(self._reader.problems)

    @property
    def handed(self) -> dict[str, int]:
        """RunResult.handed so far."""
        return dict(self._col.handed)

    def output_header(self) -> tuple[int, int, bool]:
        return self._col.output_header()

    def __iter__(self) -> Iterator[BatchResult]:
        if self._started:
            raise BpfError("a CaptureRun is iterated once")
        self._started = True
        count = self._count
        for batch in self._reader:
            if count is not None and self.packets + len(batch) > count:
                batch = batch[: count - self.packets]
            res = self._col.batch(batch)
            self.packets += len(batch)
            if self._progress:
                self._progress(self.packets)
            yield res
            if count is not None and self.packets >= count:
                break
        if self.packets == 0:
            _check_linktype(self._reader.linktype, self.program.prog_type)

    def result(self, parts: list[BatchResult]) -> RunResult:
        """The RunResult of the whole run, from every BatchResult it gave."""
        return self._col.result(self.problems, parts)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "CaptureRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_capture(program: Program, capture, *, count: Optional[int] = None,
                   maps: Mapping[str, BpfMap] | None = None, seed: int = 0,
                   budget: int = 1_000_000, num_cpus: int = 1, strict: bool = False,
                   progress: Optional[Progress] = None, engine: str = "vector",
                   batch_packets: int = DEFAULT_BATCH_PACKETS) -> CaptureRun:
    """run_capture, streamed: a CaptureRun that gives one BatchResult per batch of at
    most `batch_packets` packets, in bounded memory.  The results do not depend on
    `batch_packets` (the maps and packet numbers carry over).

        with stream_capture(prog, "big.pcap") as run:
            for part in run:
                ...                      # part.retval, part.output, part.faults ...
            maps = run.maps
    """
    return CaptureRun(program, capture, count=count, maps=maps, seed=seed, budget=budget,
                      num_cpus=num_cpus, strict=strict, progress=progress, engine=engine,
                      batch_packets=batch_packets)


def run_capture(program: Program, capture, *, count: Optional[int] = None,
                maps: Mapping[str, BpfMap] | None = None, seed: int = 0,
                budget: int = 1_000_000, num_cpus: int = 1, strict: bool = False,
                progress: Optional[Progress] = None, engine: str = "vector",
                batch_packets: int = DEFAULT_BATCH_PACKETS) -> RunResult:
    """Run `program` over the first `count` packets (all when None) of `capture` (a
    path, '-' for stdin, or bytes), sequentially in capture order, and keep every
    packet's result (stream_capture does the same in bounded memory).

    maps: BpfMaps by name to use instead of fresh ones (pre-filled maps); seed: the
    bpf_get_prandom_u32 generator's seed; budget: instructions per packet;
    num_cpus: CPUs the per-CPU maps hold values for (the run itself is on cpu 0);
    engine: "vector" (default; falls back to the interpreter for programs it does not
    run, see RunResult.engine) or "interp"; batch_packets: packets read at a time."""
    with stream_capture(program, capture, count=count, maps=maps, seed=seed, budget=budget,
                        num_cpus=num_cpus, strict=strict, progress=progress, engine=engine,
                        batch_packets=batch_packets) as run:
        parts = list(run)
        return run.result(parts)


def iter_outcomes(runner: Runner, batch: PacketBatch) -> Iterator[PacketOutcome]:
    """Stream one PacketOutcome per packet of `batch` (nothing is kept)."""
    _check_linktype(batch.linktype, runner.program.prog_type)
    for i in range(len(batch)):
        yield runner.run_packet(batch[i], int(batch.ts_ns[i]))
