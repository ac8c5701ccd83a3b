"""Run a socket-mode translation on bpfkit's eBPF interpreter, on the same skb that
``bpfkit.cbpf.interp.run_socket`` models (linear data, paged data, ``SkbMeta``).

The ``struct __sk_buff`` context is built from ``SkbMeta`` with the values the kernel's
bpf_convert_ctx_access would load from the sk_buff:

- len = skb->len (linear + paged), pkt_type, mark, queue_mapping, hash, vlan_tci;
- protocol and vlan_proto hold the __be16 as stored, i.e. a 32-bit load on this
  little-endian model sees the byte-swapped number;
- vlan_present = (skb->vlan_all != 0), i.e. SkbMeta.vlan_present;
- ifindex = skb->dev->ifindex, or 0 when skb->dev is NULL (SkbMeta.ifindex None).

The eBPF interpreter's LD_ABS/LD_IND see one buffer starting at the mac header.  That
models the skb exactly when the mac header is at skb->data (``mac_offset`` 0), or is
unset and the program cannot reach the SKF_LL_OFF window, and when the paged data is
empty or no load can use a negative offset (those must stay in the linear area).
Anything else raises UnsupportedError rather than risk a different answer.
"""
from __future__ import annotations

import random

from ..cbpf.interp import SkbMeta
from ..ebpf import isa as e
from ..ebpf.interp import Interpreter, MemoryFault, Options, Region
from ..errors import ExecutionError, UnsupportedError
from .socket import SKB_FIELD_OFFSETS, SocketTranslation

__all__ = ["skb_context_values", "run_translation", "interpreter_for", "load_windows"]

SKB_CTX_SIZE = 192
_SKF_NET_OFF, _SKF_LL_OFF = -0x100000, -0x200000


def _be16_as_loaded(v: int) -> int:
    """A __be16 field read by a little-endian load."""
    return int.from_bytes((v & 0xFFFF).to_bytes(2, "big"), "little")


def skb_context_values(meta: SkbMeta, skb_len: int) -> dict[int, int]:
    """__sk_buff offset -> the u32 a 4-byte load at that offset returns."""
    f = SKB_FIELD_OFFSETS
    return {
        f["len"]: skb_len & 0xFFFFFFFF,
        f["pkt_type"]: meta.pkttype & 7,
        f["mark"]: meta.mark & 0xFFFFFFFF,
        f["queue_mapping"]: meta.queue_mapping & 0xFFFF,
        f["protocol"]: _be16_as_loaded(meta.protocol),
        f["vlan_present"]: 1 if meta.vlan_present else 0,
        f["vlan_tci"]: meta.vlan_tci & 0xFFFF,
        f["vlan_proto"]: _be16_as_loaded(meta.vlan_proto),
        f["ifindex"]: 0 if meta.ifindex is None else meta.ifindex & 0xFFFFFFFF,
        f["hash"]: meta.rxhash & 0xFFFFFFFF,
    }


def interpreter_for(tr: SocketTranslation, budget: int = 1_000_000) -> Interpreter:
    """An Interpreter for the translation with the two helpers it may call."""
    from ..ebpf.helpers import basic_helpers
    h = basic_helpers()
    return Interpreter(tr.insns, Options(budget=budget, helpers={7: h[7], 8: h[8]}))


def load_windows(tr: SocketTranslation) -> tuple[bool, bool]:
    """(may use a negative offset, may reach the SKF_LL_OFF window)."""
    neg = ll = False
    for i in tr.insns:
        if i.opcode & 0x07 != e.BPF_LD:
            continue
        mode = i.opcode & 0xE0
        if mode == e.BPF_IND:
            neg = ll = True                   # X + k can be anything
        elif mode == e.BPF_ABS and i.imm < 0:
            neg = True
            ll = ll or _SKF_LL_OFF <= i.imm < _SKF_NET_OFF
    return neg, ll


def run_translation(tr: SocketTranslation, packet: bytes, meta: SkbMeta | None = None,
                    frag: bytes = b"", *, interp: Interpreter | None = None) -> int:
    """The u32 the translation returns on the skb (linear data ``packet``, paged data
    ``frag``, metadata ``meta``): comparable with run_socket(tr.source, packet, meta,
    frag)."""
    meta = meta or SkbMeta()
    packet, frag = bytes(packet), bytes(frag)
    neg, ll = load_windows(tr)
    if meta.mac_offset not in (None, 0):
        raise UnsupportedError("mac header after skb->data",
                               "the eBPF interpreter's packet starts at the mac header")
    if meta.mac_offset is None and ll:
        raise UnsupportedError("unset mac header",
                               "a load may use the SKF_LL_OFF window, which the eBPF "
                               "interpreter always maps to the packet start")
    if frag and neg:
        raise UnsupportedError("paged skb data with negative-offset loads",
                               "the eBPF interpreter has one packet buffer; negative "
                               "offsets must stay in the linear area")
    values = skb_context_values(meta, len(packet) + len(frag))

    def ctx_load(off: int, size: int) -> int:
        if size != 4 or off not in values:
            raise MemoryFault("memory", f"__sk_buff load off={off} size={size} is not one "
                              f"the translation emits", None, size, "ctx")
        return values[off]

    ctx = Region("ctx", bytearray(SKB_CTX_SIZE), writable=False, load_hook=ctx_load)
    rng = random.Random(meta.random_seed)      # the same stream run_socket draws from
    interp = interp or interpreter_for(tr)
    res = interp.run(regions=[ctx], args=["ctx"], packet=packet + frag, data_offset=0,
                     network_offset=meta.network_offset, cpu=meta.cpu,
                     prandom=lambda: rng.getrandbits(32))
    if res.fault is not None:
        raise ExecutionError(f"translation faulted at eBPF instruction {res.fault.pc}: "
                             f"{res.fault.detail}")
    return res.retval & 0xFFFFFFFF
