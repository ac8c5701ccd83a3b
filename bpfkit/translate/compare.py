"""Compare a classic program with its eBPF translations over a batch of packets: the API
behind ``bpfkit compare``.

Pairs compared (each packet is one frame, the mac header at skb->data / xdp data):

``socket``  the classic socket-filter interpreter (bpfkit.cbpf.interp.run_socket, Linux
            semantics) against the socket-mode translation on the eBPF interpreter
            (run_translation): the u32 return values must be equal.
``xdp``     the classic filter-mode vector interpreter (bpfkit.cbpf.vinterp.run_batch,
            libpcap semantics, wire length = captured length since XDP sees only the
            frame) against the XDP translation on the vector engine (engine="vector",
            the default) or the eBPF interpreter (run_xdp; engine="interp"): the
            match decisions must be equal.  Frames under 14 bytes (the kernel refuses
            them) or over 3520 (multi-buffer XDP) are skipped and counted, and so are
            frames on which the classic program never returns (libpcap 1.10.3's
            protochain loops forever on some AH chains; bpfkit's cBPF interpreters give
            up after 65,536 backward jumps) -- the translation answers "no match" there
            once may_goto's counter is spent, see bpfkit.translate.xdp.

``vector-socket``  the socket-mode translation on the eBPF interpreter as a test run
                   (progtypes.run_socket_filter: the frame's first 14 bytes are the
                   Ethernet header) against the same program on the vector engine
                   (bpfkit.ebpf.vector) over the whole batch: equal u32 return values.
``vector-xdp``     the XDP translation on the eBPF interpreter against the vector
                   engine: equal return values.  Frames the test run refuses are
                   skipped as in ``xdp``.

With ``kernel=True`` or ``"auto"`` the running Linux kernel (bpfkit.kernel) joins:

``kernel-cbpf``    the classic program attached with SO_ATTACH_FILTER to an AF_UNIX
                   datagram socket against run_socket with SkbMeta() (that skb: no
                   device, protocol 0, no mac header, network header at the data; the
                   CPU the comparison is pinned to).  The value is the length the
                   receiver gets (sk_filter_trim_cap trims to the return value), -1
                   when the filter drops the datagram.
``kernel-socket``  the socket-mode translation run by BPF_PROG_TEST_RUN against the
                   same translation on bpfkit's eBPF interpreter as a test run
                   (progtypes.run_socket_filter).  Each packet goes in behind a dummy
                   14-byte Ethernet header of type 0x88b5 (IEEE local experimental),
                   which eth_type_trans pulls, so skb->data is the packet's first byte
                   as in the ``socket`` pair; not ETH_P_IP/IPV6 so that
                   bpf_prog_test_run_skb does not refuse frames without a full IP
                   header (EINVAL).  Equal u32 return values.
``kernel-xdp``     the XDP translation run by BPF_PROG_TEST_RUN against it on the eBPF
                   interpreter (progtypes.run_xdp): equal verdicts.  Frames under 14
                   or over 3520 bytes are skipped as in ``xdp``.

In the pairs that run bpfkit's eBPF interpreter, a run that exhausts its instruction
budget (1M; a translated loop that libpcap never leaves gets there long before the
kernel's 8M-iteration may_goto counter) is skipped with that reason: the kernel has
no such budget, so there is nothing to compare.

Packets the kernel refuses (a test-run EINVAL, a datagram it cannot send) are
skipped with the kernel's reason, counted per reason in ``skip_reasons``.  Programs
reading SKF_AD_RANDOM make the kernel pairs unavailable (the kernel's draw cannot be
predicted).  When the kernel cannot take part, ``"auto"`` lists the kernel pairs as
unavailable with the reason and ``True`` raises bpfkit.kernel.UnavailableError.

A pair whose translation does not exist (an UnsupportedError or a ValidationError of
the translator, e.g. an ancillary load or a backward jump) is reported with that reason
and no packet is compared for it.  A pair that could not run because one side failed
where it must not (the kernel refuses a translation, or the kernel and bpfkit's
validator disagree on accepting the classic program) carries ``error`` and is not ok.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cbpf.interp import SkbMeta, run_filter, run_socket
from ..cbpf.program import Program
from ..cbpf.vinterp import run_batch
from ..errors import BpfError, ExecutionError, UsageError
from ..pcap.batch import PacketBatch

__all__ = ["Disagreement", "PairResult", "CompareReport", "compare_batch", "summarize"]

_META = SkbMeta(mac_offset=0)
_XDP_MIN, _XDP_MAX = 14, 3520


@dataclass(frozen=True, slots=True)
class Disagreement:
    index: int          # packet index in the batch
    left: int
    right: int
    summary: str        # one-line decode of the packet


@dataclass(frozen=True, slots=True)
class PairResult:
    name: str
    left: str
    right: str
    compared: int
    agreed: int
    skipped: int
    disagreements: tuple[Disagreement, ...]   # the first ones, at most `max_listed`
    unavailable: str | None = None            # why nothing was compared
    skip_reasons: tuple[tuple[str, int], ...] = ()   # (reason, packets) for `skipped`
    error: str | None = None                  # a side failed where it must not

    @property
    def ok(self) -> bool:
        return self.compared == self.agreed and self.error is None


@dataclass(frozen=True, slots=True)
class CompareReport:
    packets: int
    pairs: tuple[PairResult, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pairs)


def summarize(pkt: bytes, linktype: int = 1) -> str:
    """A one-line decode: Ethernet type, IPv4/IPv6 addresses, protocol and ports."""
    n = len(pkt)
    if linktype != 1 or n < 14:
        return f"{n} bytes: {pkt[:24].hex()}"
    etype = int.from_bytes(pkt[12:14], "big")
    off = 14
    if etype == 0x8100 and n >= 18:
        etype, off = int.from_bytes(pkt[16:18], "big"), 18
    l3 = pkt[off:]
    if etype == 0x0800 and len(l3) >= 20:
        ihl = (l3[0] & 0xF) * 4
        src, dst = ".".join(map(str, l3[12:16])), ".".join(map(str, l3[16:20]))
        return f"{n} bytes IPv4 {src} > {dst} proto {l3[9]}" + _ports(l3[9], l3[ihl:])
    if etype == 0x86DD and len(l3) >= 40:
        import ipaddress
        src, dst = ipaddress.IPv6Address(l3[8:24]), ipaddress.IPv6Address(l3[24:40])
        return f"{n} bytes IPv6 {src} > {dst} next {l3[6]}" + _ports(l3[6], l3[40:])
    return f"{n} bytes ethertype 0x{etype:04x}"


def _ports(proto: int, l4: bytes) -> str:
    if proto in (6, 17, 132) and len(l4) >= 4:
        return f" ports {int.from_bytes(l4[0:2], 'big')} > {int.from_bytes(l4[2:4], 'big')}"
    return ""


def _pair(name, left, right, values, batch, skipped, max_listed,
          reasons: dict[str, int] | None = None) -> PairResult:
    agreed = 0
    listed = []
    for i, a, b in values:
        if a == b:
            agreed += 1
        elif len(listed) < max_listed:
            listed.append(Disagreement(i, a, b, summarize(bytes(batch[i]), batch.linktype)))
    return PairResult(name, left, right, len(values), agreed, skipped, tuple(listed),
                      skip_reasons=tuple(sorted((reasons or {}).items())))


def _socket_pair(prog: Program, batch: PacketBatch, max_listed: int) -> PairResult:
    from .skbrun import interpreter_for, run_translation
    from .socket import translate_socket
    try:
        tr = translate_socket(prog)
    except BpfError as e:
        return PairResult("socket", "cbpf socket", "ebpf socket", 0, 0, len(batch), (), str(e))
    interp = interpreter_for(tr)
    values = []
    for i in range(len(batch)):
        pkt = bytes(batch[i])
        values.append((i, run_socket(prog, pkt, _META),
                       run_translation(tr, pkt, _META, interp=interp)))
    return _pair("socket", "cbpf socket", "ebpf socket", values, batch, 0, max_listed)


def _xdp_pair(prog: Program, batch: PacketBatch, max_listed: int, match: int,
              nomatch: int, engine: str = "interp") -> PairResult:
    from ..ebpf import progtypes
    from .xdp import translate_xdp
    right = "vector xdp" if engine == "vector" else "ebpf xdp"
    try:
        tr = translate_xdp(prog, match=match, nomatch=nomatch)
    except BpfError as e:
        return PairResult("xdp", "cbpf filter", right, 0, 0, len(batch), (), str(e))
    # XDP sees the captured bytes only: the wire length is the captured length
    seen = PacketBatch(batch.buf, batch.offset, batch.caplen, batch.caplen.copy(),
                       batch.ts_ns, batch.linktype, batch.snaplen, batch.ts_nanos)
    want, failed = _filter_decisions(prog, seen)
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    values, reasons = [], {}
    if engine == "vector":
        vec, vfault = _vector_xdp_retvals(interp, batch)
    for i in range(len(batch)):
        why = _xdp_size_reason(int(batch.caplen[i])) or failed.get(i)
        if why:
            _count(reasons, why)
            continue
        try:
            if engine == "vector":
                if i in vfault:
                    raise ExecutionError(vfault[i])
                got = vec[i]
            else:
                got = _xdp_retval(interp, bytes(batch[i]))
        except BpfError as e:
            _count(reasons, f"bpfkit: {e}")
            continue
        values.append((i, int(want[i] != 0), int(got == tr.match)))
    return _pair("xdp", "cbpf filter", right, values, batch, sum(reasons.values()),
                 max_listed, reasons)


def _vector_pair(name: str, prog: Program, batch: PacketBatch, max_listed: int, match,
                 nomatch) -> PairResult:
    """The eBPF interpreter against the vector engine on one translation."""
    from ..ebpf import progtypes
    from ..ebpf.vector import VectorProgram, batch_input
    from .socket import translate_socket
    from .xdp import translate_xdp
    xdp = name == "vector-xdp"
    left, right = ("ebpf xdp", "vector xdp") if xdp else ("ebpf socket", "vector socket")
    if _reads_random(prog):
        return PairResult(name, left, right, 0, 0, len(batch), (),
                          "the program reads SKF_AD_RANDOM (a per-run random draw)")
    try:
        tr = translate_xdp(prog, match=match, nomatch=nomatch) if xdp else \
            translate_socket(prog)
    except BpfError as e:
        return PairResult(name, left, right, 0, 0, len(batch), (), str(e))
    ptype = progtypes.BPF_PROG_TYPE_XDP if xdp else progtypes.BPF_PROG_TYPE_SOCKET_FILTER
    interp = progtypes.load(tr.insns, ptype)
    reasons: dict[str, int] = {}
    lanes = []
    for i in range(len(batch)):
        n = int(batch.caplen[i])
        why = _xdp_size_reason(n) if xdp else (
            f"frame under {_XDP_MIN} bytes (test run: EINVAL)" if n < _XDP_MIN else None)
        if why:
            reasons[why] = reasons.get(why, 0) + 1
        else:
            lanes.append(i)
    idx = np.array(lanes, dtype=np.int64)
    got = VectorProgram(interp, ptype).run(batch_input(batch, idx)).retval \
        & np.uint64(0xFFFFFFFF) if len(idx) else np.zeros(0, np.uint64)
    run_one = progtypes.run_xdp if xdp else progtypes.run_socket_filter
    values = []
    for i, g in zip(lanes, got.tolist()):
        res = run_one(interp, bytes(batch[i]))
        if res.fault is not None and res.fault.kind == "budget":
            # as in the xdp pair: a run out of instructions has no answer to compare
            _count(reasons, f"bpfkit: {res.fault.detail}")
            continue
        values.append((i, res.retval, int(g)))
    return _pair(name, left, right, values, batch, sum(reasons.values()), max_listed,
                 reasons)


def _filter_decisions(prog: Program, seen: PacketBatch) -> tuple[np.ndarray, dict[int, str]]:
    """run_batch's return values, and {index: reason} for the frames on which the
    classic program has no answer (then run frame by frame: run_batch gives up on the
    whole batch)."""
    if not len(seen):
        return np.zeros(0, np.uint32), {}
    try:
        return run_batch(prog, seen), {}
    except ExecutionError:
        pass
    out, failed = np.zeros(len(seen), np.uint32), {}
    for i in range(len(seen)):
        try:
            out[i] = run_filter(prog, bytes(seen[i]))
        except ExecutionError as e:
            failed[i] = f"cbpf filter: {e}"
    return out, failed


def _vector_xdp_retvals(interp, batch: PacketBatch) -> tuple[dict, dict]:
    """The XDP verdicts of the frames a test run takes, on the vector engine over the
    whole batch: ({index: verdict}, {index: budget fault detail}) (as _xdp_retval)."""
    from ..ebpf import progtypes
    from ..ebpf.vector import VectorProgram, batch_input
    cap = np.asarray(batch.caplen, np.int64)
    idx = np.flatnonzero((cap >= _XDP_MIN) & (cap <= _XDP_MAX))
    if not len(idx):
        return {}, {}
    out = VectorProgram(interp, progtypes.BPF_PROG_TYPE_XDP).run(batch_input(batch, idx))
    got = dict(zip(idx.tolist(), (out.retval & np.uint64(0xFFFFFFFF)).tolist()))
    faults = {int(idx[j]): f.detail for j, f in out.faults.items() if f.kind == "budget"}
    return got, faults


def _xdp_retval(interp, pkt: bytes, **run_args) -> int:
    """The XDP verdict on bpfkit's interpreter; ExecutionError when the run ran out of
    instructions (the kernel has no such budget: nothing to compare)."""
    from ..ebpf import progtypes
    res = progtypes.run_xdp(interp, pkt, **run_args)
    if res.fault is not None and res.fault.kind == "budget":
        raise ExecutionError(res.fault.detail)
    return res.retval


def _xdp_size_reason(n: int) -> str | None:
    # bpf_prog_test_run_xdp: EINVAL under ETH_HLEN; a larger frame than the linear
    # area (4096 - 256 headroom - 320 skb_shared_info) becomes multi-buffer
    if n < _XDP_MIN:
        return f"frame under {_XDP_MIN} bytes (XDP test run: EINVAL)"
    if n > _XDP_MAX:
        return f"frame over {_XDP_MAX} bytes (multi-buffer XDP)"
    return None


# --- the kernel ----------------------------------------------------------------------

# dst 00:00:00:00:00:00 (the loopback device's address: PACKET_HOST), src 0, type
# 0x88b5; see the module docstring
_TESTRUN_ETH = bytes(12) + b"\x88\xb5"
_KERNEL_PAIRS = (("kernel-cbpf", "kernel cbpf", "cbpf socket"),
                 ("kernel-socket", "kernel socket", "ebpf socket"),
                 ("kernel-xdp", "kernel xdp", "ebpf xdp"))


def _reads_random(prog: Program) -> bool:
    from ..cbpf.isa import SKF_AD_RANDOM
    from ..cbpf.validate import kernel_ancillary
    return any(kernel_ancillary(i) == SKF_AD_RANDOM for i in prog.insns)


def _unavailable(name: str, n: int, why: str) -> PairResult:
    left, right = next((lft, rgt) for nm, lft, rgt in _KERNEL_PAIRS if nm == name)
    return PairResult(name, left, right, 0, 0, n, (), why)


def _failed(name: str, n: int, why: str) -> PairResult:
    left, right = next((lft, rgt) for nm, lft, rgt in _KERNEL_PAIRS if nm == name)
    return PairResult(name, left, right, 0, 0, n, (), error=why)


def _count(reasons: dict[str, int], why: str) -> None:
    reasons[why] = reasons.get(why, 0) + 1


def _kernel_cbpf_pair(prog: Program, batch: PacketBatch, max_listed: int,
                      cpu: int) -> PairResult:
    from .. import kernel
    from ..cbpf.validate import check
    name, n = "kernel-cbpf", len(batch)
    refused = check(prog, "kernel")
    try:
        sock = kernel.ClassicSocket(prog.insns)
    except kernel.AttachError as e:
        if refused:
            return _unavailable(name, n, f"{e}; bpfkit's validator refuses it too: "
                                         f"{refused[0]}")
        return _failed(name, n, f"{e}, but bpfkit's validator accepts the program")
    meta = SkbMeta(cpu=cpu)
    values, reasons = [], {}
    with sock:
        if refused:
            return _failed(name, n, f"the kernel accepts the program, but bpfkit's "
                                    f"validator refuses it: {refused[0]}")
        for i in range(n):
            pkt = bytes(batch[i])
            try:
                ret = run_socket(prog, pkt, meta)
            except BpfError as e:
                _count(reasons, f"bpfkit: {e}")
                continue
            try:
                got = sock.deliver(pkt)
            except kernel.KernelError as e:
                _count(reasons, str(e))
                continue
            # sk_filter_trim_cap: 0 drops, else the datagram is trimmed to the value
            values.append((i, -1 if got is None else got,
                           -1 if ret == 0 else min(len(pkt), ret)))
    return _pair(name, "kernel cbpf", "cbpf socket", values, batch,
                 sum(reasons.values()), max_listed, reasons)


def _kernel_testrun_pair(name: str, raw: bytes, prog_type: int, run_bpfkit, frame_of,
                         size_reason, batch: PacketBatch, max_listed: int) -> PairResult:
    """Load `raw`, and for every packet compare kernel.test_run(frame_of(pkt)) with
    run_bpfkit(frame_of(pkt))."""
    from .. import kernel
    left, right = next((lft, rgt) for nm, lft, rgt in _KERNEL_PAIRS if nm == name)
    try:
        kprog = kernel.KernelProgram(raw, prog_type)
    except kernel.KernelError as e:
        return _failed(name, len(batch), f"the kernel refuses the translation: {e}")
    values, reasons = [], {}
    with kprog:
        for i in range(len(batch)):
            frame = frame_of(bytes(batch[i]))
            why = size_reason(len(frame))
            if why:
                _count(reasons, why)
                continue
            try:
                got = kprog.test_run(frame)
            except kernel.KernelError as e:
                _count(reasons, str(e))
                continue
            try:
                want = run_bpfkit(frame)
            except BpfError as e:
                _count(reasons, f"bpfkit: {e}")
                continue
            values.append((i, got, want))
    return _pair(name, left, right, values, batch, sum(reasons.values()), max_listed,
                 reasons)


def _kernel_socket_pair(prog: Program, batch: PacketBatch, max_listed: int,
                        cpu: int) -> PairResult:
    from .. import kernel
    from ..ebpf import progtypes
    from .socket import translate_socket
    try:
        tr = translate_socket(prog)
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_SOCKET_FILTER)
    except BpfError as e:
        return _unavailable("kernel-socket", len(batch), str(e))
    return _kernel_testrun_pair(
        "kernel-socket", tr.to_bytes(), kernel.BPF_PROG_TYPE_SOCKET_FILTER,
        lambda f: progtypes.run_socket_filter(interp, f, cpu=cpu).retval,
        lambda p: _TESTRUN_ETH + p, lambda n: None, batch, max_listed)


def _kernel_xdp_pair(prog: Program, batch: PacketBatch, max_listed: int, match, nomatch,
                     cpu: int) -> PairResult:
    from .. import kernel
    from ..ebpf import progtypes
    from .xdp import translate_xdp
    try:
        tr = translate_xdp(prog, match=match, nomatch=nomatch)
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    except BpfError as e:
        return _unavailable("kernel-xdp", len(batch), str(e))
    return _kernel_testrun_pair(
        "kernel-xdp", tr.to_bytes(), kernel.BPF_PROG_TYPE_XDP,
        lambda f: _xdp_retval(interp, f, cpu=cpu),
        lambda p: p, _xdp_size_reason, batch, max_listed)


def _kernel_pairs(prog: Program, batch: PacketBatch, max_listed: int, mode, match,
                  nomatch) -> tuple[PairResult, ...]:
    from .. import kernel
    why = kernel.available()
    if why is not None:
        if mode is True:
            raise kernel.UnavailableError(f"the kernel cannot take part: {why}")
        return tuple(_unavailable(nm, len(batch), why) for nm, _, _ in _KERNEL_PAIRS)
    if _reads_random(prog):
        why = "the program reads SKF_AD_RANDOM, which the kernel draws unpredictably"
        return tuple(_unavailable(nm, len(batch), why) for nm, _, _ in _KERNEL_PAIRS)
    with kernel.pinned_cpu() as cpu:
        return (_kernel_cbpf_pair(prog, batch, max_listed, cpu),
                _kernel_socket_pair(prog, batch, max_listed, cpu),
                _kernel_xdp_pair(prog, batch, max_listed, match, nomatch, cpu))


def _kernel_mode(kernel):
    """True (must take part), "auto" (when available) or False."""
    modes = {True: True, "yes": True, "auto": "auto", False: False, "no": False}
    try:
        return modes[kernel]
    except (KeyError, TypeError):
        raise UsageError(f"kernel must be one of yes/auto/no (or True/False), "
                         f"not {kernel!r}") from None


def compare_batch(prog: Program, batch: PacketBatch, *, max_listed: int = 10,
                  xdp_match: int | str = "pass", xdp_nomatch: int | str = "drop",
                  kernel: bool | str = False, engine: str = "vector") -> CompareReport:
    """Run every pair (see the module docstring) over `batch`.  kernel: True/"yes"
    (the kernel pairs too; UnavailableError when the kernel cannot take part), "auto"
    (the kernel pairs, listed as unavailable with the reason when it cannot), or
    False/"no".  engine "vector" (default): the ``xdp`` pair's translation runs on the
    vector engine, and the vector-* pairs check that engine against the interpreter;
    "interp": the eBPF interpreter only (no vector-* pairs)."""
    from .xdp import _verdict
    mode = _kernel_mode(kernel)
    if engine not in ("vector", "interp"):
        raise UsageError(f"engine must be vector or interp, not {engine!r}")
    if _verdict(xdp_match) == _verdict(xdp_nomatch):
        raise UsageError("the XDP match and no-match verdicts must differ")
    pairs = (_socket_pair(prog, batch, max_listed),
             _xdp_pair(prog, batch, max_listed, xdp_match, xdp_nomatch, engine))
    if engine == "vector":
        pairs += (_vector_pair("vector-socket", prog, batch, max_listed, xdp_match,
                               xdp_nomatch),
                  _vector_pair("vector-xdp", prog, batch, max_listed, xdp_match,
                               xdp_nomatch))
    if mode:
        pairs += _kernel_pairs(prog, batch, max_listed, mode, xdp_match, xdp_nomatch)
    return CompareReport(len(batch), pairs)
