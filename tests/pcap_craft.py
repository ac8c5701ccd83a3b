"""Test support for the capture-file tests: build pcap and pcapng files byte by byte
(both byte orders, any option, deliberately broken ones), and parse classic pcap output
(what tcpdump -w writes) independently of bpfkit's reader.  Also raw IPv4/IPv6 packets
with extension header chains for protochain (PROTOCHAIN_FRAMES)."""
from __future__ import annotations

import struct
from dataclasses import dataclass


def int64(ns: int) -> int:
    """A timestamp in ns as PacketBatch.ts_ns holds it: int64, wrapping (beyond the
    years 1677..2262 only absurd, usually fuzzed, timestamps)."""
    return (ns + (1 << 63)) % (1 << 64) - (1 << 63)


def _o(big: bool) -> str:
    return ">" if big else "<"


# --- classic pcap -----------------------------------------------------------------

def pcap_header(*, linktype: int = 1, snaplen: int = 65535, nanos: bool = False,
                big: bool = False, version=(2, 4), magic: int | None = None) -> bytes:
    if magic is None:
        magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    return struct.pack(_o(big) + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen,
                       linktype)


def pcap_record(sec: int, frac: int, data: bytes, *, wirelen: int | None = None,
                caplen: int | None = None, big: bool = False) -> bytes:
    """A record; `caplen` overrides the header field (the data is written as given)."""
    cap = len(data) if caplen is None else caplen
    wl = len(data) if wirelen is None else wirelen
    return struct.pack(_o(big) + "IIII", sec & 0xFFFFFFFF, frac & 0xFFFFFFFF, cap, wl) + data


def pcap(records, **kw) -> bytes:
    """records: (sec, frac, data) or (sec, frac, data, wirelen)."""
    big = kw.get("big", False)
    out = pcap_header(**kw)
    for r in records:
        out += pcap_record(r[0], r[1], r[2], wirelen=r[3] if len(r) > 3 else None, big=big)
    return out


@dataclass
class PcapFile:
    magic: int
    big: bool
    nanos: bool
    version: tuple
    snaplen: int
    linktype: int
    records: list          # (sec, frac, caplen, wirelen, data) as stored
    rest: bytes            # bytes after the last complete record


def parse_pcap(data: bytes) -> PcapFile:
    """An independent, minimal classic pcap parser (for tcpdump's output)."""
    magic_le = struct.unpack_from("<I", data, 0)[0]
    if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
        big = False
    else:
        big = True
    o = _o(big)
    magic, vmaj, vmin, _z, _s, snap, lt = struct.unpack_from(o + "IHHiIII", data, 0)
    recs = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, cap, wl = struct.unpack_from(o + "iiII", data, pos)
        if pos + 16 + cap > len(data):
            break
        recs.append((sec, frac, cap, wl, data[pos + 16:pos + 16 + cap]))
        pos += 16 + cap
    return PcapFile(magic, big, magic == 0xA1B23C4D, (vmaj, vmin), snap, lt, recs, data[pos:])


# --- pcapng ------------------------------------------------------------------------

def block(btype: int, body: bytes, *, big: bool = False, total: int | None = None,
          trailer: int | None = None) -> bytes:
    body = body + b"\0" * (-len(body) % 4)
    t = 12 + len(body) if total is None else total
    tr = t if trailer is None else trailer
    return struct.pack(_o(big) + "II", btype, t) + body + struct.pack(_o(big) + "I", tr)


def options(opts, *, big: bool = False, end: bool = True) -> bytes:
    out = b""
    for code, val in opts:
        out += struct.pack(_o(big) + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)
    if end and opts:
        out += struct.pack(_o(big) + "HH", 0, 0)
    return out


def shb(*, big: bool = False, version=(1, 0), opts=()) -> bytes:
    body = struct.pack(_o(big) + "IHHq", 0x1A2B3C4D, version[0], version[1], -1)
    return block(0x0A0D0D0A, body + options(opts, big=big), big=big)


def idb(linktype: int = 1, snaplen: int = 65535, *, big: bool = False,
        tsresol: int | None = None, tsoffset: int | None = None, opts=()) -> bytes:
    o = list(opts)
    if tsresol is not None:
        o.append((9, bytes([tsresol])))
    if tsoffset is not None:
        o.append((14, struct.pack(_o(big) + "q", tsoffset)))
    body = struct.pack(_o(big) + "HHI", linktype, 0, snaplen) + options(o, big=big)
    return block(1, body, big=big)


def epb(iface: int, ticks: int, data: bytes, *, wirelen: int | None = None,
        caplen: int | None = None, big: bool = False) -> bytes:
    cap = len(data) if caplen is None else caplen
    wl = len(data) if wirelen is None else wirelen
    body = struct.pack(_o(big) + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, cap, wl)
    return block(6, body + data, big=big)


def pb(iface: int, ticks: int, data: bytes, *, wirelen: int | None = None,
       big: bool = False) -> bytes:
    wl = len(data) if wirelen is None else wirelen
    body = struct.pack(_o(big) + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                       len(data), wl)
    return block(2, body + data, big=big)


def spb(data: bytes, *, wirelen: int | None = None, big: bool = False) -> bytes:
    wl = len(data) if wirelen is None else wirelen
    return block(3, struct.pack(_o(big) + "I", wl) + data, big=big)


# --- raw IP packets with extension header chains (libpcap's protochain) ------------------

HBH, ROUTING, FRAG, DSTOPT, AH, NONXT, TCP, UDP = 0, 43, 44, 60, 51, 59, 6, 17


def _ip6(nh: int, payload: bytes = b"") -> bytes:
    return (b"\x60\0\0\0" + len(payload).to_bytes(2, "big") + bytes([nh, 64])
            + bytes(range(0x01, 0x11)) + bytes(range(0x21, 0x31)) + payload)


def _ext(nh: int, units: int = 0) -> bytes:
    """hop-by-hop, routing or destination options: (units + 1) * 8 bytes"""
    return bytes([nh, units]) + bytes(6 + 8 * units)


def _frag(nh: int) -> bytes:
    return bytes([nh, 0, 0, 0, 0, 0, 0, 1])


def _ah(nh: int, plen: int) -> bytes:
    """AH: (plen + 2) * 4 bytes.  libpcap 1.10.3's protochain sets X = (plen + 2) * 4
    -- an offset from the start of the packet, not from the AH header."""
    return bytes([nh, plen]) + bytes((plen + 2) * 4 - 2)


def _ip4(proto: int, payload: bytes = b"", ihl: int = 5) -> bytes:
    return (bytes([0x40 | ihl, 0]) + (4 * ihl + len(payload)).to_bytes(2, "big") + bytes(4)
            + bytes([64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]) + bytes(4 * ihl - 20)
            + payload)


_UDP = bytes.fromhex("04d2003500100000") + bytes(8)

# name, frame, IP version, decision of `protochain 17` (None: libpcap 1.10.3 never
# returns), backward jumps libpcap takes before deciding
PROTOCHAIN_FRAMES = [
    ("v6 udp", _ip6(UDP, _UDP), 6, True, 0),
    ("v6 hbh dstopt routing frag udp",
     _ip6(HBH, _ext(DSTOPT, 1) + _ext(ROUTING) + _ext(FRAG, 2) + _frag(UDP) + _UDP), 6, True, 4),
    ("v6 hbh dstopt routing frag tcp",
     _ip6(HBH, _ext(DSTOPT, 1) + _ext(ROUTING) + _ext(FRAG, 2) + _frag(TCP) + bytes(20)),
     6, False, 4),
    ("v6 100 hop-by-hop", _ip6(HBH, _ext(HBH) * 99 + _ext(UDP) + _UDP), 6, True, 100),
    ("v6 400 routing", _ip6(ROUTING, _ext(ROUTING) * 399 + _ext(UDP) + _UDP), 6, True, 400),
    ("v6 no next header", _ip6(HBH, _ext(NONXT) + _UDP), 6, False, 1),
    # the chain names a header at offset 64, the frame ends at 63
    ("v6 chain past the end", _ip6(HBH, _ext(DSTOPT, 1) + _ext(ROUTING))[:-1], 6, False, 2),
    # the next header's length byte (offset 49) is missing
    ("v6 chain cut in a header", _ip6(HBH, _ext(DSTOPT)) + bytes([UDP]), 6, False, 1),
    ("v6 ah udp", _ip6(AH, _ah(UDP, 8) + _UDP), 6, True, 1),
    ("v6 hbh ah udp", _ip6(HBH, _ext(AH) + _ah(UDP, 10) + _UDP), 6, True, 2),
    # AH length 4 sends X to 24, inside the destination address: 0x21 there is no
    # header protochain knows
    ("v6 ah to offset 24", _ip6(AH, _ah(DSTOPT, 4) + _UDP), 6, False, 1),
    ("v6 ah loop", _ip6(AH, _ah(AH, 8) + _UDP), 6, None, None),
    ("v6 hbh ah loop", _ip6(HBH, _ext(AH) + _ah(AH, 10) + _UDP), 6, None, None),
    ("v4 udp", _ip4(UDP, _UDP), 4, True, 0),
    ("v4 tcp", _ip4(TCP, bytes(20)), 4, False, 0),
    ("v4 ah udp", _ip4(AH, _ah(UDP, 3) + _UDP), 4, True, 1),
    # the first AH sends X to 24, where a second AH (inside the first) names UDP
    ("v4 ah ah udp", _ip4(AH, bytes([AH, 4, 0, 0, UDP, 7]) + bytes(30)), 4, True, 2),
    ("v4 options ah udp", _ip4(AH, _ah(UDP, 4) + _UDP, ihl=6), 4, True, 1),
    ("v4 ah cut", _ip4(AH, bytes([UDP])), 4, False, 0),
    ("v4 ah loop", _ip4(AH, _ah(AH, 3) + _UDP), 4, None, None),
    ("not ip", bytes([0x50]) + bytes(30), 0, False, 0),
]
