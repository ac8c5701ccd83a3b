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

Memory: the per-packet results (and the output packets) are kept, so memory grows with
the capture; the capture itself is read in bounded batches.
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
           "run_capture", "run_batch", "iter_outcomes", "LINKTYPE_ETHERNET"]

LINKTYPE_ETHERNET = 1
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
        counts = {name: 0 for name in XDP_VERDICTS.values()}
        for v in self.verdicts:
            counts[v] = counts.get(v, 0) + 1
        return counts

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
        out["faults"] = [{"packet": f.packet, "pc": f.pc, "kind": f.kind, "detail": f.detail}
                         for f in self.faults]
        out["skipped"] = [{"packet": s.packet, "reason": s.reason} for s in self.skipped]
        out["trace"] = [{"packet": t.packet, "text": t.text.decode("utf-8", "replace")}
                        for t in self.trace]
        if self.redirects:
            out["redirect"] = [{"packet": i, "target": [str(x) for x in t]}
                               for i, t in sorted(self.redirects.items())]
        if dump_maps:
            out["maps"] = self.dump_maps()
        out["warnings"] = [str(p) for p in self.problems]
        out["engine"] = self.engine
        return out


ENGINES = ("vector", "interp")


class _Collector:
    """Runs batches through the chosen engine and keeps the per-packet results.
    engine "vector": the vector engine (bpfkit.ebpf.vector) when it runs the program,
    else the reference interpreter, with the reason kept in `engine_note`."""

    def __init__(self, runner: Runner, engine: str = "vector"):
        if engine not in ENGINES:
            raise BpfError(f"unknown engine {engine!r} (use one of {', '.join(ENGINES)})")
        self.runner = runner
        self.retval: list[int] = []
        self.insns: list[int] = []
        self.out: list[bytes] = []
        self.ts: list[int] = []
        self.wirelen: list[int] = []
        # the vector engine's batches: retval and insns as arrays (no per-packet lists)
        self.vec_retval: list[np.ndarray] = []
        self.vec_insns: list[np.ndarray] = []
        self.faults: list[PacketFault] = []
        self.skipped: list[SkippedPacket] = []
        self.trace: list[TraceLine] = []
        self.meta: dict[int, bytes] = {}
        self.redirects: dict[int, tuple] = {}
        self.linktype = LINKTYPE_ETHERNET
        self.snaplen = 262144
        self.ts_nanos = False
        self.vprog = None
        self.out_batches: list[PacketBatch] = []      # the vector path's output
        self.engine_note = "interp"
        if engine == "vector":
            from .vector import VectorProgram
            vp = VectorProgram(runner.interp, runner.program.prog_type)
            if vp.unsupported_reason is None:
                self.vprog = vp
                self.engine_note = "vector"
            else:
                self.engine_note = f"interp (the vector engine does not run " \
                                   f"{vp.unsupported_reason})"

    def batch(self, batch: PacketBatch) -> None:
        _check_linktype(batch.linktype, self.runner.program.prog_type)
        self.linktype, self.snaplen = batch.linktype, batch.snaplen
        self.ts_nanos = self.ts_nanos or batch.ts_nanos
        if self.vprog is not None:
            self._vector_batch(batch)
            return
        for i in range(len(batch)):
            ts = int(batch.ts_ns[i])
            o = self.runner.run_packet(batch[i], ts)
            self._keep(o, ts, int(batch.wirelen[i]) - int(batch.caplen[i]))

    def _keep(self, o: PacketOutcome, ts: int, cut: int) -> None:
        self.retval.append(o.retval)
        self.insns.append(o.insns)
        self.out.append(o.packet)
        self.ts.append(ts)
        self.wirelen.append(len(o.packet) + max(cut, 0))
        if o.fault:
            self.faults.append(o.fault)
        if o.skipped:
            self.skipped.append(o.skipped)
        if o.meta:
            self.meta[o.index] = o.meta
        if o.redirect is not None:
            self.redirects[o.index] = o.redirect
        self.trace.extend(o.trace)

    def _vector_batch(self, batch: PacketBatch) -> None:
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
        inp = {"buf": batch.buf, "offset": np.asarray(batch.offset, np.int64)[lanes],
               "caplen": caplen[lanes], "ts_ns": np.asarray(batch.ts_ns, np.int64)[lanes],
               "index": first + lanes,
               "ingress_ifindex": runner._xdp_args["ingress_ifindex"],
               "rx_queue_index": runner._xdp_args["rx_queue_index"]}
        res = self.vprog.run(inp, seed=runner.seed)
        retval = np.zeros(n, np.uint64)
        retval[lanes] = res.retval & np.uint64(0xFFFFFFFF)
        insns = np.zeros(n, np.int64)
        insns[lanes] = res.insns
        self.vec_retval.append(retval)
        self.vec_insns.append(insns)
        changed = {}
        if xdp and res.packets.count(None) != len(res.packets):     # None: unchanged
            changed = {i: res.packets[j] for j, i in enumerate(lanes.tolist())
                       if res.packets[j] is not None}
        if not changed:
            # every packet leaves as it came: the output is the input batch (a reader's
            # memory map stays open while batches use it: reader.close)
            self.out_batches.append(batch)
        else:
            ts = np.asarray(batch.ts_ns, np.int64).tolist()
            cut = (np.asarray(batch.wirelen, np.int64) - caplen).tolist()
            out_now = [changed[i] if i in changed else bytes(batch[i]) for i in range(n)]
            wl = [len(out_now[i]) + max(cut[i], 0) for i in range(n)]
            snap = max([batch.snaplen] + [len(p) for p in changed.values()])
            self.out_batches.append(PacketBatch.from_packets(
                out_now, ts_ns=ts, wirelen=wl, linktype=batch.linktype, snaplen=snap,
                ts_nanos=batch.ts_nanos))
        for i in np.flatnonzero(~run).tolist():
            self._skip(batch, i, first, xdp)
        for j, f in sorted(res.faults.items()):
            i = int(lanes[j])
            self.faults.append(PacketFault(first + i, f.pc, f.kind, f.detail, f.address,
                                           f.region))
        for j in sorted(res.trace):
            i = int(lanes[j])
            self.trace.extend(TraceLine(first + i, t) for t in res.trace[j])
        if xdp:
            for j, m in res.meta.items():
                self.meta[first + int(lanes[j])] = m
            for j, r in res.redirects.items():
                self.redirects[first + int(lanes[j])] = r

    def _skip(self, batch, i, first, xdp) -> None:
        from .progtypes import ETH_HLEN, XDP_MAX_LINEAR
        ln = int(batch.caplen[i])
        if ln < ETH_HLEN:
            kind = "XDP" if xdp else "socket-filter"
            reason = (f"{kind} input of {ln} bytes is shorter than the {ETH_HLEN}-byte "
                      "Ethernet header (the kernel says EINVAL)")
        else:
            reason = (f"unsupported: XDP multi-buffer packets ({ln} bytes > "
                      f"{XDP_MAX_LINEAR} linear bytes)")
        self.skipped.append(SkippedPacket(first + i, reason))

    def result(self, problems) -> RunResult:
        if self.vec_retval:          # a vector collector: every batch went that way
            retval = np.concatenate(self.vec_retval).astype(np.uint32)
            insns = np.concatenate(self.vec_insns).astype(np.uint64)
        else:
            retval = np.array(self.retval, dtype=np.uint32)
            insns = np.array(self.insns, dtype=np.uint64)
        n = len(retval)
        if self.out_batches:
            ob = self.out_batches
            if len(ob) == 1:
                output = ob[0]
            elif all(b.buf is ob[0].buf for b in ob):
                # batches of one memory-mapped file: one batch over it, nothing copied
                output = dataclasses.replace(
                    ob[0], offset=np.concatenate([b.offset for b in ob]),
                    caplen=np.concatenate([b.caplen for b in ob]),
                    wirelen=np.concatenate([b.wirelen for b in ob]),
                    ts_ns=np.concatenate([b.ts_ns for b in ob]),
                    snaplen=max(b.snaplen for b in ob),
                    ts_nanos=any(b.ts_nanos for b in ob))
            else:
                output = PacketBatch.concat(ob)
        else:
            # bpf_xdp_adjust_tail may grow a packet past the capture's snaplen
            snaplen = max([self.snaplen] + [len(p) for p in self.out])
            output = PacketBatch.from_packets(self.out, ts_ns=self.ts, wirelen=self.wirelen,
                                              linktype=self.linktype, snaplen=snaplen,
                                              ts_nanos=self.ts_nanos)
        return RunResult(self.runner.program, n, retval, insns, output, self.runner.maps,
                         self.faults, self.skipped, self.trace, self.meta, self.redirects,
                         list(problems), self.engine_note)


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


def run_capture(program: Program, capture, *, count: Optional[int] = None,
                maps: Mapping[str, BpfMap] | None = None, seed: int = 0,
                budget: int = 1_000_000, num_cpus: int = 1, strict: bool = False,
                progress: Optional[Progress] = None, engine: str = "vector") -> RunResult:
    """Run `program` over the first `count` packets (all when None) of `capture` (a
    path, '-' for stdin, or bytes), sequentially in capture order.

    maps: BpfMaps by name to use instead of fresh ones (pre-filled maps); seed: the
    bpf_get_prandom_u32 generator's seed; budget: instructions per packet;
    num_cpus: CPUs the per-CPU maps hold values for (the run itself is on cpu 0);
    engine: "vector" (default; falls back to the interpreter for programs it does not
    run, see RunResult.engine) or "interp"."""
    col = _Collector(Runner(program, maps=maps, seed=seed, budget=budget, num_cpus=num_cpus),
                     engine)
    n = 0
    with open_capture(capture, strict=strict) as reader:
        for batch in reader:
            if count is not None and n + len(batch) > count:
                batch = batch[: count - n]
            col.batch(batch)
            n += len(batch)
            if progress:
                progress(n)
            if count is not None and n >= count:
                break
        if n == 0:
            _check_linktype(reader.linktype, program.prog_type)
        problems = list(reader.problems)
    return col.result(problems)


def iter_outcomes(runner: Runner, batch: PacketBatch) -> Iterator[PacketOutcome]:
    """Stream one PacketOutcome per packet of `batch` (nothing is kept)."""
    _check_linktype(batch.linktype, runner.program.prog_type)
    for i in range(len(batch)):
        yield runner.run_packet(batch[i], int(batch.ts_ns[i]))
