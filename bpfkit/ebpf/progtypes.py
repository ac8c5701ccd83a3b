"""Program types: the XDP context and buffer as the kernel's BPF_PROG_TEST_RUN builds
them (net/bpf/test_run.c bpf_prog_test_run_xdp), with the resize helpers.

XDP buffer (one 4096-byte page, measured on this machine's kernel, FACTS.md):
  [0, 256)        headroom (XDP_PACKET_HEADROOM); the first 40 bytes hold the
                  struct xdp_frame, so data may move down to offset 40 at most
  [256, 256+len)  the packet; data_meta == data at start
  ... 3776        data_hard_end = 4096 - 320 (SKB_DATA_ALIGN(skb_shared_info))
A packet longer than 3520 bytes goes partly into fragments (multi-buffer XDP), which is
not modelled: UnsupportedError.  Inputs shorter than 14 bytes are refused (EINVAL).

Context `struct xdp_md` (u32 fields, only 4-byte loads, read-only; xdp_is_valid_access
and xdp_convert_ctx_access): data, data_end, data_meta load as packet pointers;
ingress_ifindex is 1 and rx_queue_index 0 in a test run (the loopback device's queue);
egress_ifindex needs a devmap attach type and is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExecutionError, UnsupportedError
from .interp import Fault, Helper, Interpreter, Memory, MemoryFault, Region

__all__ = ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT", "XDP_VERDICTS",
           "SkBuff", "SkbResult", "run_socket_filter", "socket_filter_helpers", "eth_type_trans",
           "ALLOWED_HELPERS", "implemented_helpers", "load", "BPF_PROG_TYPE_SOCKET_FILTER",
           "BPF_PROG_TYPE_XDP",
           "XdpBuff", "XdpResult", "run_xdp", "xdp_helpers", "verdict_name"]

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
XDP_VERDICTS = {XDP_ABORTED: "ABORTED", XDP_DROP: "DROP", XDP_PASS: "PASS", XDP_TX: "TX",
                XDP_REDIRECT: "REDIRECT"}

PAGE_SIZE = 4096
XDP_PACKET_HEADROOM = 256
XDP_FRAME_SIZE = 40            # sizeof(struct xdp_frame): adjust_head's lower limit
SKB_SHARED_INFO_SIZE = 320     # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
XDP_DATA_HARD_END = PAGE_SIZE - SKB_SHARED_INFO_SIZE
XDP_MAX_LINEAR = XDP_DATA_HARD_END - XDP_PACKET_HEADROOM      # 3520
ETH_HLEN = 14
META_MAX = 255                 # type_max(skb_shared_info.meta_len), xdp_metalen_invalid

EINVAL, EACCES = 22, 13

_XDP_MD_FIELDS = {0: "data", 4: "data_end", 8: "data_meta", 12: "ingress_ifindex",
                  16: "rx_queue_index", 20: "egress_ifindex"}


def verdict_name(retval: int) -> str:
    """XDP_* name of a return value; other values (the kernel passes them through in a
    test run, a real driver treats them as ABORTED) are shown as a number."""
    return XDP_VERDICTS.get(retval, str(retval))


class XdpBuff:
    """Per-run XDP state (struct xdp_buff): offsets into the page `frame`."""

    def __init__(self, packet: bytes, ingress_ifindex: int, rx_queue_index: int):
        self.frame = bytearray(PAGE_SIZE)
        self.data = XDP_PACKET_HEADROOM
        self.data_meta = self.data
        self.data_end = self.data + len(packet)
        self.frame[self.data:self.data_end] = packet
        self.ingress_ifindex = ingress_ifindex
        self.rx_queue_index = rx_queue_index
        # the last successful bpf_redirect/bpf_redirect_map target (ri->tgt_*)
        self.redirect: tuple | None = None
        self.pkt = Region("packet", self.frame)
        self.ctx = Region("ctx", bytearray(24), writable=False, load_hook=self._ctx_load)
        self._sync()

    def _sync(self) -> None:
        # the program may touch exactly [data_meta, data_end)
        self.pkt.lo, self.pkt.hi = self.data_meta, self.data_end

    def _ctx_load(self, off: int, size: int) -> int:
        name = _XDP_MD_FIELDS.get(off)
        if size != 4 or name is None or name == "egress_ifindex":
            raise MemoryFault("memory", f"invalid xdp_md access off={off} size={size} "
                              "(xdp_is_valid_access)", self.ctx.base + off, size, "ctx")
        if name in ("data", "data_end", "data_meta"):
            return self.pkt.base + getattr(self, name)
        return getattr(self, name)

    # --- helpers (net/core/filter.c) -----------------------------------------------------

    def adjust_head(self, offset: int) -> int:
        """bpf_xdp_adjust_head: move data by offset, keeping the metadata in front."""
        metalen = self.data - self.data_meta
        data = self.data + offset
        if data < XDP_FRAME_SIZE + metalen or data > self.data_end - ETH_HLEN:
            return -EINVAL
        if metalen:
            m = bytes(self.frame[self.data_meta:self.data])
            self.frame[self.data_meta + offset:self.data_meta + offset + metalen] = m
        self.data_meta += offset
        self.data = data
        self._sync()
        return 0

    def adjust_meta(self, offset: int) -> int:
        """bpf_xdp_adjust_meta: move data_meta; metadata length 4-aligned and <= 255."""
        meta = self.data_meta + offset
        if meta < XDP_FRAME_SIZE or meta > self.data:
            return -EINVAL
        metalen = self.data - meta
        if metalen % 4 or metalen > META_MAX:
            return -EACCES
        self.data_meta = meta
        self._sync()
        return 0

    def adjust_tail(self, offset: int) -> int:
        """bpf_xdp_adjust_tail (linear buffer): grown bytes are zeroed."""
        end = self.data_end + offset
        if end > XDP_DATA_HARD_END or end < self.data + ETH_HLEN:
            return -EINVAL
        if offset > 0:
            self.frame[self.data_end:end] = bytes(offset)
        self.data_end = end
        self._sync()
        return 0


def _xdp_buff(memory: Memory, r1: int, name: str) -> "XdpBuff":
    buff = memory.context
    if not isinstance(buff, XdpBuff) or r1 != buff.ctx.base:
        raise MemoryFault("helper", f"bpf_{name} needs the XDP context in r1")
    return buff


def _xdp_get_buff_len(memory: Memory, r1: int, *_) -> int:
    """bpf_xdp_get_buff_len: linear length (no fragments here)."""
    b = _xdp_buff(memory, r1, "xdp_get_buff_len")
    return b.data_end - b.data


def _xdp_bytes(memory: Memory, r1: int, r2: int, r3: int, r4: int, store: bool) -> int:
    """bpf_xdp_load_bytes / bpf_xdp_store_bytes (bpf_xdp_pointer): offset or len above
    0xffff is -EFAULT, past the buffer -EINVAL; nothing is copied on error."""
    b = _xdp_buff(memory, r1, "xdp_store_bytes" if store else "xdp_load_bytes")
    offset, length = r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF
    if offset > 0xFFFF or length > 0xFFFF:
        return -14 & ((1 << 64) - 1)
    if offset + length > b.data_end - b.data:
        return -EINVAL & ((1 << 64) - 1)
    start = b.data + offset
    if store:
        b.frame[start:start + length] = memory.read(r3, length)
    else:
        memory.write(r3, bytes(b.frame[start:start + length]))
    return 0


def _xdp_load_bytes(memory: Memory, r1: int, r2: int, r3: int, r4: int, *_) -> int:
    return _xdp_bytes(memory, r1, r2, r3, r4, False)


def _xdp_store_bytes(memory: Memory, r1: int, r2: int, r3: int, r4: int, *_) -> int:
    return _xdp_bytes(memory, r1, r2, r3, r4, True)


BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1 << 3, 1 << 4
_ACTION_MASK = XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX


def _xdp_redirect(memory: Memory, r1: int, r2: int, *_) -> int:
    """bpf_redirect(u32 ifindex, u64 flags) in XDP (bpf_xdp_redirect): any flag ->
    XDP_ABORTED, else XDP_REDIRECT with the target remembered."""
    b = _xdp_buff(memory, memory.context.ctx.base if isinstance(memory.context, XdpBuff)
                  else -1, "redirect")
    if r2:
        return XDP_ABORTED
    b.redirect = ("ifindex", r1 & 0xFFFFFFFF)
    return XDP_REDIRECT


def _xdp_redirect_map(memory: Memory, r1: int, r2: int, r3: int, *_) -> int:
    """bpf_redirect_map(map, u64 key, u64 flags) (__bpf_xdp_redirect_map): flags beyond
    the action bits (and, for devmaps, BPF_F_BROADCAST/EXCLUDE_INGRESS) -> ABORTED; a
    missing key returns the low two bits of flags; else XDP_REDIRECT."""
    b = _xdp_buff(memory, memory.context.ctx.base if isinstance(memory.context, XdpBuff)
                  else -1, "redirect_map")
    m = memory.map_at(r1)
    if not hasattr(m, "redirect_target"):
        raise MemoryFault("helper", f"bpf_redirect_map on a map without redirect targets "
                          f"({type(m).__name__})")
    from .maps import MapType
    devmap = getattr(m, "type", None) in (MapType.DEVMAP, MapType.DEVMAP_HASH)
    flag_mask = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS if devmap else 0
    if r3 & ~(_ACTION_MASK | flag_mask):
        return XDP_ABORTED
    if r3 & BPF_F_BROADCAST:
        raise MemoryFault("unsupported", "bpf_redirect_map with BPF_F_BROADCAST")
    key = r2 & 0xFFFFFFFF
    target = m.redirect_target(key)
    if target is None:
        b.redirect = None
        return r3 & _ACTION_MASK
    b.redirect = ("map", getattr(m, "name", ""), key, target)
    return XDP_REDIRECT


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _xdp_helper(method: str) -> Helper:
    def helper(memory: Memory, r1: int, r2: int, *_):
        buff = memory.context
        if not isinstance(buff, XdpBuff) or r1 != buff.ctx.base:
            raise MemoryFault("helper", f"bpf_xdp_{method} needs the XDP context in r1")
        return getattr(buff, method)(_s32(r2)) & ((1 << 64) - 1)
    helper.__name__ = f"bpf_xdp_{method}"
    return helper


def xdp_helpers() -> dict[int, Helper]:
    """The XDP buffer helpers by id (include/uapi/linux/bpf.h): adjust_head 44,
    adjust_meta 54, adjust_tail 65, xdp_get_buff_len 188, xdp_load_bytes 189,
    xdp_store_bytes 190, redirect 23, redirect_map 51."""
    return {44: _xdp_helper("adjust_head"), 54: _xdp_helper("adjust_meta"),
            65: _xdp_helper("adjust_tail"), 188: _xdp_get_buff_len, 189: _xdp_load_bytes,
            190: _xdp_store_bytes, 23: _xdp_redirect, 51: _xdp_redirect_map}


@dataclass(frozen=True, slots=True)
class XdpResult:
    """retval: r0 as u32 (what BPF_PROG_TEST_RUN reports).  packet: bytes from data to
    data_end after the run; meta: bytes from data_meta to data.  redirect: the target of
    the last successful bpf_redirect ("ifindex", n) or bpf_redirect_map ("map", name,
    key, target).  trace: bpf_trace_printk messages."""
    retval: int
    packet: bytes
    meta: bytes
    insns: int
    fault: Fault | None = None
    redirect: tuple | None = None
    trace: tuple[bytes, ...] = ()

    @property
    def verdict(self) -> str:
        return verdict_name(self.retval)


def run_xdp(interp: Interpreter, packet: bytes, *, ingress_ifindex: int = 1,
            rx_queue_index: int = 0, **run_args) -> XdpResult:
    """Run an XDP program on one packet as BPF_PROG_TEST_RUN does.  Helpers come from
    interp.options.helpers (include xdp_helpers() to allow the resize helpers).
    A fault yields retval 0 and the packet as it was when the fault happened.
    run_args (cpu, ktime_ns, prandom, packet_index) go to Interpreter.run."""
    if len(packet) < ETH_HLEN:
        raise ExecutionError(f"XDP input of {len(packet)} bytes is shorter than the "
                             f"{ETH_HLEN}-byte Ethernet header (the kernel says EINVAL)")
    if len(packet) > XDP_MAX_LINEAR:
        raise UnsupportedError("XDP multi-buffer packets",
                               f"{len(packet)} bytes > {XDP_MAX_LINEAR} linear bytes")
    buff = XdpBuff(bytes(packet), ingress_ifindex, rx_queue_index)
    res = interp.run(regions=[buff.ctx, buff.pkt], args=["ctx"], context=buff, **run_args)
    return XdpResult(res.retval & 0xFFFFFFFF, bytes(buff.frame[buff.data:buff.data_end]),
                     bytes(buff.frame[buff.data_meta:buff.data]), res.insns, res.fault,
                     buff.redirect, res.trace)


# --- SOCKET_FILTER and struct __sk_buff ----------------------------------------------------

SKB_CTX_SIZE = 192             # sizeof(struct __sk_buff) in Linux 6.x
_CB = (48, 68)                 # cb[0..4]
# readable __sk_buff u32 slots for a socket filter (sk_filter_is_valid_access refuses
# tc_classid, data, data_meta, data_end, family..local_port, tstamp, wire_len, hwtstamp,
# sk), measured with BPF_PROG_LOAD on this machine's kernel: offsets 0..71, 84, 164, 176
# field offset -> (name, size of the sk_buff member the kernel loads, see
# bpf_convert_ctx_access; a narrower load is shifted and masked only when it is
# narrower than that member)
_SKB_FIELDS = {
    0: ("len", 4), 4: ("pkt_type", 1), 8: ("mark", 4), 12: ("queue_mapping", 2),
    16: ("protocol", 2), 20: ("vlan_present", 1), 24: ("vlan_tci", 2),
    28: ("vlan_proto", 2), 32: ("priority", 4), 36: ("ingress_ifindex", 4),
    40: ("ifindex", 4), 44: ("tc_index", 2), 68: ("hash", 4), 84: ("napi_id", 4),
    164: ("gso_segs", 2), 176: ("gso_size", 2),
}
PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 2, 3
ETH_P_802_3, ETH_P_802_2, ETH_P_802_3_MIN = 0x0001, 0x0004, 0x0600
EFAULT = 14


def eth_type_trans(frame: bytes) -> tuple[int, int]:
    """(protocol, pkt_type) as net/ethernet/eth.c eth_type_trans sets them on the test
    run's device, the loopback device (address and broadcast address all zero)."""
    dest = frame[0:6]
    if dest == bytes(6):
        pkt_type = PACKET_HOST
    elif dest[0] & 1:
        # multicast; never PACKET_BROADCAST, lo's broadcast address is 00:00:00:00:00:00
        pkt_type = PACKET_MULTICAST
    else:
        pkt_type = PACKET_OTHERHOST
    proto = int.from_bytes(frame[12:14], "big")
    if proto < ETH_P_802_3_MIN:
        # the IPX hack: 0xFFFF right after the header means raw 802.3, else 802.2 LLC
        proto = ETH_P_802_3 if frame[14:16] == b"\xff\xff" else ETH_P_802_2
    return proto, pkt_type


class SkBuff:
    """Per-run socket-filter state: the frame (mac header at 0, skb->data at 14, as
    bpf_prog_test_run_skb leaves it after eth_type_trans) and the __sk_buff view."""

    def __init__(self, frame: bytes):
        self.frame = frame
        proto, pkt_type = eth_type_trans(frame)
        self.values = {
            "len": len(frame) - ETH_HLEN,
            "pkt_type": pkt_type,
            # skb->protocol is __be16: a load yields it in network byte order
            "protocol": int.from_bytes(proto.to_bytes(2, "big"), "little"),
            "ifindex": 1,          # the loopback device
        }
        self.cb = bytearray(_CB[1] - _CB[0])
        self.ctx = Region("ctx", bytearray(SKB_CTX_SIZE), load_hook=self._load,
                          store_hook=self._store)

    def _bad(self, off: int, size: int, what: str) -> MemoryFault:
        return MemoryFault("memory", f"invalid __sk_buff {what} off={off} size={size} "
                           "(sk_filter_is_valid_access)", self.ctx.base + off, size, "ctx")

    def _load(self, off: int, size: int) -> int:
        if off % size:
            raise self._bad(off, size, "load")
        if _CB[0] <= off < _CB[1]:
            if off + size > _CB[1]:
                raise self._bad(off, size, "load")
            i = off - _CB[0]
            return int.from_bytes(self.cb[i:i + size], "little")
        field = _SKB_FIELDS.get(off & ~3)
        if field is None or size == 8:
            raise self._bad(off, size, "load")
        name, target = field
        v = self.values.get(name, 0) & ((1 << (8 * target)) - 1)
        if size < target:
            # convert_ctx_accesses: narrow load = full load >> (off & 3) * 8, masked
            v = (v >> (8 * (off & 3))) & ((1 << (8 * size)) - 1)
        return v

    def _store(self, off: int, data: bytes) -> None:
        size = len(data)
        if off % size or not (_CB[0] <= off and off + size <= _CB[1]):
            raise self._bad(off, size, "store (only cb[] is writable)")
        i = off - _CB[0]
        self.cb[i:i + size] = data

    def load_bytes(self, memory: Memory, offset: int, to: int, length: int) -> int:
        """bpf_skb_load_bytes: copy from skb->data + offset, or zero `to` and -EFAULT."""
        data = self.frame[ETH_HLEN:]
        if offset > 0x7FFFFFFF or offset + length > len(data):
            memory.write(to, bytes(length))
            return -EFAULT
        memory.write(to, data[offset:offset + length])
        return 0


def _skb_load_bytes(memory: Memory, r1: int, r2: int, r3: int, r4: int, *_):
    skb = memory.context
    if not isinstance(skb, SkBuff) or r1 != skb.ctx.base:
        raise MemoryFault("helper", "bpf_skb_load_bytes needs the __sk_buff context in r1")
    return skb.load_bytes(memory, r2 & 0xFFFFFFFF, r3, r4 & 0xFFFFFFFF) & ((1 << 64) - 1)


def socket_filter_helpers() -> dict[int, Helper]:
    """Helpers implemented for socket filters: skb_load_bytes 26."""
    return {26: _skb_load_bytes}


@dataclass(frozen=True, slots=True)
class SkbResult:
    """retval: r0 as u32 (BPF_PROG_TEST_RUN's retval; for a socket filter the number of
    bytes to keep).  cb: the 20 cb bytes after the run.  trace: bpf_trace_printk
    messages."""
    retval: int
    insns: int
    cb: bytes
    fault: Fault | None = None
    trace: tuple[bytes, ...] = ()


def run_socket_filter(interp: Interpreter, frame: bytes, **run_args) -> SkbResult:
    """Run a SOCKET_FILTER program on one Ethernet frame as BPF_PROG_TEST_RUN does:
    r1 = __sk_buff, skb->data after the 14-byte header (LD_ABS offset 0 = frame[14]).
    run_args (cpu, ktime_ns, prandom, packet_index) go to Interpreter.run."""
    if len(frame) < ETH_HLEN:
        raise ExecutionError(f"socket-filter input of {len(frame)} bytes is shorter than the "
                             f"{ETH_HLEN}-byte Ethernet header (the kernel says EINVAL)")
    skb = SkBuff(bytes(frame))
    res = interp.run(regions=[skb.ctx], args=["ctx"], context=skb, packet=skb.frame,
                     data_offset=ETH_HLEN, **run_args)
    return SkbResult(res.retval & 0xFFFFFFFF, res.insns, bytes(skb.cb), res.fault, res.trace)


# --- helpers per program type --------------------------------------------------------------

BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_XDP = 1, 6
PROG_TYPE_NAMES = {BPF_PROG_TYPE_SOCKET_FILTER: "socket_filter", BPF_PROG_TYPE_XDP: "xdp"}

# Helper ids a program of each type may call, as this machine's kernel (6.18, root)
# answers BPF_PROG_LOAD of "call N" (refused with "program of this type cannot use
# helper" otherwise); tests/test_ebpf_progtypes.py re-derives both lists.
ALLOWED_HELPERS = {
    BPF_PROG_TYPE_SOCKET_FILTER: frozenset((
        1, 2, 3, 5, 6, 7, 8, 12, 14, 15, 16, 17, 22, 25, 26, 35, 37, 42, 46, 47, 55, 68, 80,
        87, 88, 89, 93, 94, 105, 106, 109, 112, 113, 114, 115, 117, 118, 120, 122, 123, 125,
        130, 131, 132, 133, 134, 136, 137, 138, 139, 140, 141, 148, 149, 153, 154, 156, 157,
        158, 160, 164, 165, 169, 170, 171, 172, 175, 176, 177, 178, 180, 181, 182, 191, 194,
        195, 196, 197, 198, 199, 200, 201, 202, 203, 208, 209, 210, 211)),
    BPF_PROG_TYPE_XDP: frozenset((
        1, 2, 3, 5, 6, 7, 8, 12, 14, 15, 16, 17, 22, 23, 25, 28, 35, 37, 42, 44, 51, 54, 55,
        65, 69, 80, 84, 85, 86, 87, 88, 89, 93, 94, 99, 100, 105, 106, 109, 110, 112, 113,
        114, 115, 117, 118, 120, 123, 125, 130, 131, 132, 133, 134, 136, 137, 138, 139, 140,
        141, 148, 149, 153, 154, 156, 157, 158, 160, 163, 164, 165, 169, 170, 171, 172, 175,
        176, 177, 178, 180, 181, 182, 188, 189, 190, 191, 194, 195, 196, 197, 198, 199, 200,
        201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211)),
}


def implemented_helpers(prog_type: int) -> dict[int, Helper]:
    """The helpers bpfkit implements for `prog_type` (a subset of ALLOWED_HELPERS)."""
    from .helpers import basic_helpers
    extra = {BPF_PROG_TYPE_SOCKET_FILTER: socket_filter_helpers,
             BPF_PROG_TYPE_XDP: xdp_helpers}.get(prog_type)
    if extra is None:
        raise UnsupportedError(f"program type {prog_type}", "bpfkit models socket_filter (1) "
                               "and xdp (6)")
    allowed = ALLOWED_HELPERS[prog_type]
    h = {k: v for k, v in basic_helpers().items() if k in allowed}
    h.update(extra())
    return h


def load(insns, prog_type: int, *, maps=(), budget: int = 1_000_000,
         max_loops: int | None = None) -> Interpreter:
    """An Interpreter for a program of `prog_type`: a helper the kernel does not allow
    for the type is a ValidationError with the verifier's wording; an allowed one that
    bpfkit does not implement is an UnsupportedError naming it.  budget: instructions
    per run; max_loops: may_goto's counter per frame (default BPF_MAX_LOOPS, see
    bpfkit.ebpf.interp)."""
    from ..errors import ValidationError
    from . import isa
    from .helper_ids import helper_name
    from .interp import Options
    helpers = implemented_helpers(prog_type)
    allowed = ALLOWED_HELPERS[prog_type]
    for n, i in enumerate(insns):
        if i.opcode == isa.BPF_JMP | isa.BPF_CALL and i.src == 0 and i.imm not in allowed:
            raise ValidationError(f"program of this type cannot use helper "
                                  f"{helper_name(i.imm)}#{i.imm}", index=n, rule="helper",
                                  errno=22)
    if max_loops is None:
        max_loops = isa.BPF_MAX_LOOPS
    return Interpreter(insns, Options(budget=budget, max_loops=max_loops, helpers=helpers,
                                      maps=tuple(maps)))
