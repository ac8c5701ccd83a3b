"""Compare a classic program with its eBPF translations over a batch of packets: the API
behind ``bpfkit compare``.

Pairs compared (each packet is one frame, the mac header at skb->data / xdp data):

``socket``  the classic socket-filter interpreter (bpfkit.cbpf.interp.run_socket, Linux
            semantics) against the socket-mode translation on the eBPF interpreter
            (run_translation): the u32 return values must be equal.
``xdp``     the classic filter-mode vector interpreter (bpfkit.cbpf.vinterp.run_batch,
            libpcap semantics, wire length = captured length since XDP sees only the
            frame) against the XDP translation on the eBPF interpreter (run_xdp): the
            match decisions must be equal.  Frames under 14 bytes (the kernel refuses
            them) or over 3520 (multi-buffer XDP) are skipped and counted.

A pair whose translation does not exist (an UnsupportedError or a ValidationError of
the translator, e.g. an ancillary load or a backward jump) is reported with that reason
and no packet is compared for it.  The kernel is not called from here (bpf(2) needs
root; the tests compare with it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cbpf.interp import SkbMeta, run_socket
from ..cbpf.program import Program
from ..cbpf.vinterp import run_batch
from ..errors import BpfError, UsageError
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

    @property
    def ok(self) -> bool:
        return self.compared == self.agreed


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


def _pair(name, left, right, values, batch, skipped, max_listed) -> PairResult:
    agreed = 0
    listed = []
    for i, a, b in values:
        if a == b:
            agreed += 1
        elif len(listed) < max_listed:
            listed.append(Disagreement(i, a, b, summarize(bytes(batch[i]), batch.linktype)))
    return PairResult(name, left, right, len(values), agreed, skipped, tuple(listed))


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
              nomatch: int) -> PairResult:
    from ..ebpf import progtypes
    from .xdp import translate_xdp
    try:
        tr = translate_xdp(prog, match=match, nomatch=nomatch)
    except BpfError as e:
        return PairResult("xdp", "cbpf filter", "ebpf xdp", 0, 0, len(batch), (), str(e))
    # XDP sees the captured bytes only: the wire length is the captured length
    seen = PacketBatch(batch.buf, batch.offset, batch.caplen, batch.caplen.copy(),
                       batch.ts_ns, batch.linktype, batch.snaplen, batch.ts_nanos)
    want = run_batch(prog, seen) if len(batch) else np.zeros(0, np.uint32)
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    values, skipped = [], 0
    for i in range(len(batch)):
        pkt = bytes(batch[i])
        if not _XDP_MIN <= len(pkt) <= _XDP_MAX:
            skipped += 1
            continue
        got = progtypes.run_xdp(interp, pkt).retval
        values.append((i, int(want[i] != 0), int(got == tr.match)))
    return _pair("xdp", "cbpf filter", "ebpf xdp", values, batch, skipped, max_listed)


def compare_batch(prog: Program, batch: PacketBatch, *, max_listed: int = 10,
                  xdp_match: int | str = "pass", xdp_nomatch: int | str = "drop"
                  ) -> CompareReport:
    """Run every pair (see the module docstring) over `batch`."""
    from .xdp import _verdict
    if _verdict(xdp_match) == _verdict(xdp_nomatch):
        raise UsageError("the XDP match and no-match verdicts must differ")
    pairs = (_socket_pair(prog, batch, max_listed),
             _xdp_pair(prog, batch, max_listed, xdp_match, xdp_nomatch))
    return CompareReport(len(batch), pairs)
