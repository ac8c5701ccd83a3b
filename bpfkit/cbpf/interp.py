"""The scalar reference interpreter for classic BPF, in two modes.

``run_filter(prog, packet, wirelen=None)`` -- **filter mode**: libpcap 1.10.3's
userland ``bpf_filter()`` (bpf_filter.c), what ``tcpdump -r FILE EXPR`` runs on each
packet of a savefile:

- loads are checked against the captured length (``packet``); an out-of-bounds load
  makes the whole program return 0.  ``ld [x + k]`` checks X and k separately against
  the buffer length, so the sum never wraps.  Negative offsets and Linux ancillary
  offsets are just huge u32 offsets there: out of bounds, return 0 (libpcap's
  SKF_AD_VLAN_TAG* cases need aux data that pcap_offline_filter never passes).
- ``len`` is the wire length (``wirelen``, default ``len(packet)``).
- u32 arithmetic; division or modulo by X == 0 returns 0; shifts by X >= 32 give 0;
  a constant shift k >= 32 (which 1.10.3 neither rejects nor checks) shifts by
  k & 31, the x86-64 hardware behaviour libpcap's C shift compiles to here (measured
  with the installed libpcap's bpf_filter).  ``neg`` is 0 - A.
- ``ja`` k is signed (libpcap sign-extends it for ``protochain``'s backward jumps).
  1.10.3 has no guard against a backward-jump loop; after ``MAX_BACKWARD_JUMPS`` we
  raise ExecutionError instead of spinning forever.
- scratch memory M[] starts zeroed.  1.10.x leaves it uninitialised (stack contents),
  which only a program that reads M[k] before writing it can observe (libpcap's
  compiler never emits one); zero is what libpcap master and the kernel give.
- an opcode bpf_filter() has no case for makes 1.10.3 abort(): ExecutionError here.
- the program is first checked with libpcap's validator (pcap_setfilter does that),
  raising ValidationError.

``run_socket(prog, packet, meta=None, frag=b'')`` -- **socket-filter mode**: Linux
(net/core/filter.c, 6.x) running a classic program attached with SO_ATTACH_FILTER,
i.e. bpf_convert_filter's translation and the skb load helpers:

- ``packet`` is the linear area of the skb (skb->data, headlen bytes), ``frag`` the
  paged data after it; ``len`` is skb->len = headlen + len(frag).
- LD ABS/IND with offset >= 0 (as s32; IND computes X + k in 32 bits) read from the
  linear area or, via skb_copy_bits, across into the fragment; a load past skb->len
  makes the program return 0.
- negative offsets (bpf_internal_load_pointer_neg_helper): [SKF_NET_OFF, 0) is
  relative to the network header, [SKF_LL_OFF, SKF_NET_OFF) to the mac header (fails
  when no mac header is set), below SKF_LL_OFF fails; the bytes must lie in the
  linear area.
- LD ABS at SKF_AD_OFF + SKF_AD_* (any size) reads ``SkbMeta`` (convert_bpf_extensions).
  IFINDEX / HATYPE with no device end the program returning the current A.
- division / modulo by X == 0 return 0; shifts by X use X & 31 (the eBPF ALU32 shift
  the conversion emits); A, X and M[] start at 0.
- the program is first checked with the kernel's validator (bpf_check_classic etc.),
  raising ValidationError(errno=-22) exactly when SO_ATTACH_FILTER would fail.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Iterable

from ..errors import ExecutionError, UnsupportedError, UsageError
from .isa import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM,
                  BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K,
                  BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MEMWORDS, BPF_MISC,
                  BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET, BPF_RSH, BPF_ST,
                  BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR, SKF_AD_ALU_XOR_X,
                  SKF_AD_CPU, SKF_AD_HATYPE, SKF_AD_IFINDEX, SKF_AD_MARK, SKF_AD_NLATTR,
                  SKF_AD_NLATTR_NEST, SKF_AD_PAY_OFFSET, SKF_AD_PKTTYPE, SKF_AD_PROTOCOL,
                  SKF_AD_QUEUE, SKF_AD_RANDOM, SKF_AD_RXHASH, SKF_AD_VLAN_TAG,
                  SKF_AD_VLAN_TAG_PRESENT, SKF_AD_VLAN_TPID, SKF_LL_OFF, SKF_NET_OFF)
from .program import Insn, Program
from .validate import kernel_ancillary, validate

MAX_BACKWARD_JUMPS = 1 << 16
_M32 = 0xFFFFFFFF
_SIZE = {BPF_W: 4, BPF_H: 2, BPF_B: 1}


def _s32(v: int) -> int:
    v &= _M32
    return v - (1 << 32) if v & 0x80000000 else v


def _prog(prog) -> Program:
    return prog if isinstance(prog, Program) else Program(prog)


# --- the shared core ---------------------------------------------------------------

class _Stop(Exception):
    """Ends the program early with a return value (a failed load, div by 0, ...)."""

    def __init__(self, value: int):
        self.value = value


def _alu(op: int, a: int, v: int, shift_x_rule) -> int:
    if op == BPF_ADD:
        return (a + v) & _M32
    if op == BPF_SUB:
        return (a - v) & _M32
    if op == BPF_MUL:
        return (a * v) & _M32
    if op == BPF_DIV:
        if v == 0:
            raise _Stop(0)
        return a // v
    if op == BPF_MOD:
        if v == 0:
            raise _Stop(0)
        return a % v
    if op == BPF_AND:
        return a & v
    if op == BPF_OR:
        return a | v
    if op == BPF_XOR:
        return a ^ v
    if op in (BPF_LSH, BPF_RSH):
        v = shift_x_rule(v)
        if v is None:
            return 0
        return ((a << v) & _M32) if op == BPF_LSH else (a >> v)
    raise AssertionError(op)


def _execute(insns: tuple[Insn, ...], env) -> int:
    """The fetch/execute loop common to both modes; ``env`` supplies the loads, the
    packet length, ancillary data and the mode's shift rules."""
    a = x = 0
    mem = [0] * BPF_MEMWORDS
    pc = 0
    n = len(insns)
    back = 0
    try:
        while True:
            if not 0 <= pc < n:
                raise ExecutionError(f"execution reached instruction {pc}, outside the "
                                     f"program (0..{n - 1})")
            ins = insns[pc]
            code, k = ins.code, ins.k
            pc += 1
            cls = code & 0x07
            if cls == BPF_RET:
                if code == BPF_RET | BPF_K:
                    return k
                if code == BPF_RET | 0x10:
                    return a
            elif cls == BPF_LD:
                mode, size = code & 0xE0, code & 0x18
                if mode == BPF_ABS and size in _SIZE:
                    a = env.load_abs(k, _SIZE[size], a, x)
                    continue
                if mode == BPF_IND and size in _SIZE:
                    a = env.load_ind(x, k, _SIZE[size])
                    continue
                if code == BPF_LD | BPF_W | BPF_LEN:
                    a = env.wirelen
                    continue
                if code == BPF_LD | BPF_IMM:
                    a = k
                    continue
                if code == BPF_LD | BPF_MEM:
                    a = mem[k]
                    continue
            elif cls == BPF_LDX:
                if code == BPF_LDX | BPF_W | BPF_LEN:
                    x = env.wirelen
                    continue
                if code == BPF_LDX | BPF_IMM:
                    x = k
                    continue
                if code == BPF_LDX | BPF_MEM:
                    x = mem[k]
                    continue
                if code == BPF_LDX | BPF_MSH | BPF_B:
                    x = (env.load_abs(k, 1, None, None) & 0xF) << 2
                    continue
            elif code == BPF_ST:
                mem[k] = a
                continue
            elif code == BPF_STX:
                mem[k] = x
                continue
            elif cls == BPF_ALU:
                op = code & 0xF0
                if code == BPF_ALU | BPF_NEG:
                    a = (-a) & _M32
                    continue
                if op in (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR,
                          BPF_XOR, BPF_LSH, BPF_RSH):
                    if code & BPF_X:
                        a = _alu(op, a, x, env.shift_x)
                    else:
                        a = _alu(op, a, k, env.shift_k)
                    continue
            elif cls == BPF_JMP:
                op = code & 0xF0
                if code == BPF_JMP | BPF_JA:
                    off = _s32(k)
                    if off < 0:
                        back += 1
                        if back > MAX_BACKWARD_JUMPS:
                            raise ExecutionError(
                                f"instruction {pc - 1}: more than {MAX_BACKWARD_JUMPS} "
                                f"backward jumps; libpcap 1.10.3 would not terminate")
                    pc += off
                    continue
                if op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET):
                    v = x if code & BPF_X else k
                    if op == BPF_JEQ:
                        c = a == v
                    elif op == BPF_JGT:
                        c = a > v
                    elif op == BPF_JGE:
                        c = a >= v
                    else:
                        c = (a & v) != 0
                    pc += ins.jt if c else ins.jf
                    continue
            elif cls == BPF_MISC:
                if code == BPF_MISC | BPF_TAX:
                    x = a
                    continue
                if code == BPF_MISC | BPF_TXA:
                    a = x
                    continue
            raise ExecutionError(env.bad_opcode(pc - 1, code))
    except _Stop as stop:
        return stop.value


# --- filter mode: libpcap 1.10.3 bpf_filter ----------------------------------------

class _FilterEnv:
    __slots__ = ("p", "buflen", "wirelen")

    def __init__(self, packet: bytes, wirelen: int):
        self.p = packet
        self.buflen = len(packet)
        self.wirelen = wirelen & _M32

    def _get(self, k: int, size: int) -> int:
        # k is u32 here (never wraps): `k > buflen || size > buflen - k` in bpf_filter
        if k + size > self.buflen:
            raise _Stop(0)
        return int.from_bytes(self.p[k:k + size], "big")

    def load_abs(self, k: int, size: int, a, x) -> int:
        return self._get(k, size)

    def load_ind(self, x: int, k: int, size: int) -> int:
        return self._get(x + k, size)     # X and k are checked separately: no wrap

    @staticmethod
    def shift_x(v: int):
        return v if v < 32 else None       # bpf_filter: X >= 32 gives 0

    @staticmethod
    def shift_k(v: int):
        return v & 31                       # unchecked in 1.10.3; x86-64 masks the count

    @staticmethod
    def bad_opcode(pc: int, code: int) -> str:
        return (f"instruction {pc}: opcode 0x{code:02x} is not implemented by libpcap "
                f"1.10.3's bpf_filter (it would abort())")


def run_filter(prog: Program | Iterable, packet: bytes, wirelen: int | None = None) -> int:
    """Run ``prog`` on one captured packet as libpcap 1.10.3's bpf_filter does
    (``packet`` = the captured bytes, ``wirelen`` = the original length, default
    len(packet)).  Returns the u32 return value."""
    prog = _prog(prog)
    validate(prog, "libpcap")
    packet = bytes(packet)
    return _execute(prog.insns, _FilterEnv(packet, len(packet) if wirelen is None else wirelen))


# --- socket-filter mode: Linux --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SkbMeta:
    """The socket-buffer fields a classic socket filter can see (the SKF_AD_* loads
    and the header offsets the negative-offset loads use).  Values are host-order
    numbers: ``protocol=0x0800`` means skb->protocol == htons(ETH_P_IP).

    The defaults describe the skb of an AF_UNIX datagram (what the kernel
    differential test sends): no device, protocol 0, no mac header, network header
    at the start of the data.

    ``ifindex``/``hatype``: the device's; None for both means skb->dev is NULL.
    ``network_offset``/``mac_offset``: header positions relative to skb->data
    (>= 0); ``mac_offset=None`` means the mac header was never set.
    ``random_seed``: SKF_AD_RANDOM draws from random.Random(seed), fresh per run.
    ``vlan_present``: what SKF_AD_VLAN_TAG_PRESENT returns (6.x: skb->vlan_all != 0).
    """
    protocol: int = 0
    pkttype: int = 0
    ifindex: int | None = None
    hatype: int | None = None
    mark: int = 0
    queue_mapping: int = 0
    rxhash: int = 0
    cpu: int = 0
    vlan_tci: int = 0
    vlan_present: bool = False
    vlan_proto: int = 0
    random_seed: int = 0
    network_offset: int = 0
    mac_offset: int | None = None

    def __post_init__(self):
        if (self.ifindex is None) != (self.hatype is None):
            raise UsageError("SkbMeta: ifindex and hatype come from one device: give "
                             "both or neither (None = skb->dev is NULL)")
        if self.network_offset < 0 or (self.mac_offset is not None and self.mac_offset < 0):
            raise UsageError("SkbMeta: header offsets are relative to skb->data and must "
                             "be >= 0 (bytes before skb->data are not modelled)")


_NLA_HDR = 4


def _nla_find(data: bytes, start: int, length: int, attrtype: int) -> int | None:
    """nla_find(): walk the attributes in data[start:start+length] (host-endian
    struct nlattr {u16 nla_len; u16 nla_type}); position of the first of type
    ``attrtype`` (nla_type & NLA_TYPE_MASK), else None."""
    pos, rem = start, length
    while rem >= _NLA_HDR:
        nla_len, nla_type = struct.unpack_from("<HH", data, pos)
        if nla_len < _NLA_HDR or nla_len > rem:
            return None
        if (nla_type & 0x3FFF) == attrtype:
            return pos
        total = (nla_len + 3) & ~3           # NLA_ALIGN
        pos += total
        rem -= total
    return None


# skb->protocol values the flow dissector knows but SkbMeta does not model
_DISSECT_UNMODELLED = {0x8864: "PPPoE session",
                       0x8847: "MPLS", 0x8848: "MPLS multicast", 0x8906: "FCoE",
                       0x88CA: "TIPC", 0x4305: "B.A.T.M.A.N.", 0x88F7: "PTP (1588)",
                       0x001B: "DSA", 0x88FB: "PRP", 0x892F: "HSR", 0x8902: "CFM"}
_IPPROTO_UNMODELLED = {47: "GRE", 4: "IPIP", 41: "IPv6-in-IP", 137: "MPLS-in-IP",
                       143: "Ethernet-in-IP"}
# __skb_get_poff: transport header sizes
_L4_LEN = {17: 8, 136: 8, 1: 8, 58: 8, 2: 8, 33: 16, 132: 12}


class _SocketEnv:
    __slots__ = ("lin", "data", "headlen", "wirelen", "meta", "_rng")

    def __init__(self, packet: bytes, frag: bytes, meta: SkbMeta):
        self.lin = packet
        self.data = packet + frag          # what skb_copy_bits can reach
        self.headlen = len(packet)
        self.wirelen = len(self.data)      # skb->len
        self.meta = meta
        self._rng = None

    # bpf_skb_load_helper_{8,16,32}
    def _get(self, offset: int, size: int) -> int:
        if offset >= 0:
            if offset + size <= self.wirelen:      # linear fast path or skb_copy_bits
                return int.from_bytes(self.data[offset:offset + size], "big")
            raise _Stop(0)
        # bpf_internal_load_pointer_neg_helper
        m = self.meta
        if offset >= SKF_NET_OFF:
            pos = m.network_offset + offset - SKF_NET_OFF
        elif offset >= SKF_LL_OFF:
            if m.mac_offset is None:
                raise _Stop(0)
            pos = m.mac_offset + offset - SKF_LL_OFF
        else:
            raise _Stop(0)
        if pos + size <= self.headlen:             # must be in the linear area
            return int.from_bytes(self.lin[pos:pos + size], "big")
        raise _Stop(0)

    def load_abs(self, k: int, size: int, a, x) -> int:
        if a is not None:                          # LD ABS (not the MSH byte load)
            ad = kernel_ancillary(Insn(BPF_LD | BPF_ABS | BPF_W, 0, 0, k))
            if ad is not None:
                return self._ancillary(ad, a, x)
        return self._get(_s32(k), size)

    def load_ind(self, x: int, k: int, size: int) -> int:
        return self._get(_s32(x + k), size)        # 32-bit add, then an int offset

    @staticmethod
    def shift_x(v: int):
        return v & 31                              # eBPF ALU32 shift by register

    @staticmethod
    def shift_k(v: int):
        return v                                   # the validator rejects k >= 32

    @staticmethod
    def bad_opcode(pc: int, code: int) -> str:
        return f"instruction {pc}: opcode 0x{code:02x} is not a kernel classic BPF opcode"

    # convert_bpf_extensions
    def _ancillary(self, ad: int, a: int, x: int) -> int:
        m = self.meta
        if ad == SKF_AD_PROTOCOL:
            return m.protocol & 0xFFFF
        if ad == SKF_AD_PKTTYPE:
            return m.pkttype & 7
        if ad == SKF_AD_IFINDEX or ad == SKF_AD_HATYPE:
            if m.ifindex is None:
                raise _Stop(a)                     # no device: BPF_EXIT with r0 = A
            return (m.ifindex & _M32) if ad == SKF_AD_IFINDEX else (m.hatype & 0xFFFF)
        if ad == SKF_AD_MARK:
            return m.mark & _M32
        if ad == SKF_AD_RXHASH:
            return m.rxhash & _M32
        if ad == SKF_AD_QUEUE:
            return m.queue_mapping & 0xFFFF
        if ad == SKF_AD_VLAN_TAG:
            return m.vlan_tci & 0xFFFF
        if ad == SKF_AD_VLAN_TAG_PRESENT:
            return 1 if m.vlan_present else 0
        if ad == SKF_AD_VLAN_TPID:
            return m.vlan_proto & 0xFFFF
        if ad == SKF_AD_CPU:
            return m.cpu & _M32
        if ad == SKF_AD_RANDOM:
            if self._rng is None:
                self._rng = random.Random(m.random_seed)
            return self._rng.getrandbits(32)
        if ad == SKF_AD_ALU_XOR_X:
            return a ^ x
        if ad == SKF_AD_NLATTR:
            return self._nlattr(a, x, nested=False)
        if ad == SKF_AD_NLATTR_NEST:
            return self._nlattr(a, x, nested=True)
        if ad == SKF_AD_PAY_OFFSET:
            return self._poff()
        raise AssertionError(ad)

    def _nlattr(self, a: int, x: int, nested: bool) -> int:
        """__skb_get_nlattr / __skb_get_nlattr_nest."""
        skb_len = self.wirelen
        if self.headlen != skb_len or skb_len < _NLA_HDR or a > skb_len - _NLA_HDR:
            return 0
        data = self.lin
        if nested:
            nla_len = struct.unpack_from("<H", data, a)[0]
            if nla_len > skb_len - a:
                return 0
            pos = _nla_find(data, a + _NLA_HDR, nla_len - _NLA_HDR, x)
        else:
            pos = _nla_find(data, a, skb_len - a, x)
        return 0 if pos is None else pos

    def _hdr(self, off: int, size: int) -> bytes | None:
        """__skb_header_pointer: linear data or skb_copy_bits, else NULL."""
        if 0 <= off and off + size <= self.wirelen:
            return self.data[off:off + size]
        return None

    def _poff(self) -> int:
        """skb_get_poff(): the basic flow dissector, then __skb_get_poff."""
        m = self.meta
        proto = (m.vlan_proto if m.vlan_present else m.protocol) & 0xFFFF
        nhoff = m.network_offset
        ip_proto = 0
        first_frag_only = False           # IS_FRAGMENT without FIRST_FRAG
        vlan_seen = False
        while proto in (0x8100, 0x88A8):
            # ETH_P_8021Q/8021AD: the first level comes from the skb's offloaded tag
            # when one is present (proto = skb->protocol), deeper ones from the data
            if not vlan_seen and m.vlan_present:
                proto = m.protocol & 0xFFFF
            else:
                hdr = self._hdr(nhoff, 4)
                if hdr is None:
                    return 0
                proto = int.from_bytes(hdr[2:4], "big")
                nhoff += 4
            vlan_seen = True
        if proto in _DISSECT_UNMODELLED:
            raise UnsupportedError("SKF_AD_PAY_OFFSET",
                                   f"flow dissection of {_DISSECT_UNMODELLED[proto]} frames")
        if proto == 0x0800:
            iph = self._hdr(nhoff, 20)
            if iph is None or (iph[0] & 0xF) < 5:
                return 0
            nhoff += (iph[0] & 0xF) * 4
            ip_proto = iph[9]
            frag_off = int.from_bytes(iph[6:8], "big")
            if frag_off & 0x3FFF:                       # ip_is_fragment
                first_frag_only = bool(frag_off & 0x1FFF)
                return self._poff_finish(nhoff, ip_proto, first_frag_only)
        elif proto == 0x86DD:
            ip6 = self._hdr(nhoff, 40)
            if ip6 is None:
                return 0
            ip_proto = ip6[6]
            nhoff += 40
            while ip_proto in (0, 43, 60, 44):          # hop-by-hop, routing, dest, frag
                if ip_proto == 44:
                    fh = self._hdr(nhoff, 8)
                    if fh is None:
                        return 0
                    nhoff += 8
                    ip_proto = fh[0]
                    first_frag_only = bool(int.from_bytes(fh[2:4], "big") & 0xFFF8)
                    return self._poff_finish(nhoff, ip_proto, first_frag_only)
                opt = self._hdr(nhoff, 2)
                if opt is None:
                    return 0
                ip_proto = opt[0]
                nhoff += (opt[1] + 1) << 3
        elif proto in (0x0806, 0x8035):                 # ARP/RARP: OUT_GOOD at once
            return self._poff_finish(nhoff, 0, False)
        else:
            return 0                                    # FLOW_DISSECT_RET_OUT_BAD
        if ip_proto in _IPPROTO_UNMODELLED:
            raise UnsupportedError("SKF_AD_PAY_OFFSET",
                                   f"flow dissection through {_IPPROTO_UNMODELLED[ip_proto]}")
        return self._poff_finish(nhoff, ip_proto, first_frag_only)

    def _poff_finish(self, nhoff: int, ip_proto: int, later_frag: bool) -> int:
        poff = min(nhoff & 0xFFFF, self.wirelen & 0xFFFF)   # key_control->thoff
        if later_frag:
            return poff
        if ip_proto == 6:
            doff = self._hdr(poff + 12, 1)
            if doff is None:
                return poff
            return poff + max(20, (doff[0] & 0xF0) >> 2)
        return poff + _L4_LEN.get(ip_proto, 0)


def run_socket(prog: Program | Iterable, packet: bytes, meta: SkbMeta | None = None,
               frag: bytes = b"") -> int:
    """Run ``prog`` as a Linux socket filter on an skb whose linear data is ``packet``
    and whose paged data is ``frag``.  Returns the u32 return value (the number of
    bytes the socket keeps; 0 drops)."""
    prog = _prog(prog)
    validate(prog, "kernel")
    return _execute(prog.insns, _SocketEnv(bytes(packet), bytes(frag), meta or SkbMeta()))
