"""Test support for the capture-file tests: build pcap and pcapng files byte by byte
(both byte orders, any option, deliberately broken ones), and parse classic pcap output
(what tcpdump -w writes) independently of bpfkit's reader."""
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
