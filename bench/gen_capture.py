#!/usr/bin/env python3
"""Synthetic big Ethernet capture for benchmarks, fast and in bounded memory.

    python3 bench/gen_capture.py OUT.pcap --packets 1000000 [--seed N] [--bytes-target 500M]

The traffic mix (per packet, roughly):
  * one elephant TCP flow (an HTTP download, server port 80): --elephant of all packets
    (default 30%), two full 1514-byte segments for every 54-byte ACK, sequence numbers
    that advance like a real transfer;
  * many mouse flows (--flows, default 100k) whose popularity follows a Zipf law
    (Zipf-Mandelbrot 1/(k+10)^1.1: top flow ~1.5% of mouse packets, top 1000 ~60%): TCP to 443/80/22/25/8080/3306/high ports with SYN/FIN/RST/ACK/PSH mixes,
    DNS queries and answers over UDP 53, other UDP, ICMP echo, ARP, and IPv4 fragments
    of large UDP datagrams (first fragment with the UDP header, later ones without);
  * about 15% of mouse flows over IPv6 and 6% VLAN-tagged (802.1Q, VLAN 10/20/30/40);
  * about 1% of records truncated as by a 64/96/128-byte snaplen (caplen < wirelen).
Addresses: clients in 192.168.0-3.x and 10.0.x.x, v4 servers in 198.18.0.0/15 (the
benchmarking range, RFC 2544) with the popular ones at low numbers (198.18.0.1 ...),
v6 in 2001:db8::/32; the elephant is 192.168.1.100:45000 <-> 198.18.0.80:80.

How: scapy builds one header template per packet kind once; numpy then stamps every chunk
of packets at a time: copies the templates, writes addresses, ports, lengths, flags and
sequence numbers, and computes the IPv4 header checksum and the TCP/UDP/ICMP checksums
(payload bytes come from a fixed random block, whose word sums are precomputed, so the
checksums cost nothing per payload byte).  Chunks are written as they are made with
bpfkit.pcap.CaptureWriter, so memory does not grow with the file.

--bytes-target picks the share of full-size packets so that the file is about that big
(e.g. 1M packets, 500M -> ~500 MB); without it the mix averages ~600 bytes a record.
The output is a function of (--packets, --seed, --bytes-target, --flows, --elephant) only.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 65536                    # packets per chunk: part of the output's definition
T0_NS = 1_717_200_000 * 10**9    # 2024-06-01 00:00:00 UTC
MTU_FRAME = 1514                 # Ethernet frame without FCS at MTU 1500
BLOCK = 8192                     # payload source block (random bytes), repeated
SNAPS = np.array([64, 96, 128])

ELEPHANT_CLIENT = (192, 168, 1, 100)
ELEPHANT_SERVER = (198, 18, 0, 80)
ELEPHANT_PORTS = (45000, 80)
GATEWAY_MAC = bytes.fromhex("00005e000101")


# --- templates ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Template:
    """Header bytes of one packet kind and where its fields are."""
    name: str
    hdr: np.ndarray          # uint8 template bytes (Ethernet header .. end of fixed part)
    l3off: int               # offset of the IP / ARP header
    ipver: int               # 4, 6 or 0 (ARP)
    l4off: int               # offset of the TCP/UDP/ICMP header (-1: none)
    l4: str                  # "tcp", "udp", "icmp", "icmp6" or ""
    fixed: bool              # length is len(hdr) (DNS, ARP); else payload is appended
    frag: str = ""           # "first" / "later" IPv4 fragments

    @property
    def hlen(self) -> int:
        return len(self.hdr)


def build_templates() -> list[Template]:
    """One scapy-built template per kind.  Field values here are placeholders that the
    stamping code overwrites; what matters is the layout, which scapy gets right."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import Raw

    def eth(vlan, et):
        if vlan:
            return Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02", type=0x8100) / \
                Dot1Q(vlan=1, type=et)
        return Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02", type=et)

    v4 = lambda: IP(src="0.0.0.0", dst="0.0.0.0", ttl=64, flags="DF")  # noqa: E731
    v6 = lambda: IPv6(src="::", dst="::", hlim=64)  # noqa: E731
    out = []

    def add(name, pkt, ipver, l4, fixed=False, frag=""):
        b = np.frombuffer(bytes(pkt), np.uint8).copy()
        l2 = 18 if name.startswith("vlan") else 14
        l4off = -1
        if l4:
            l4off = l2 + (20 if ipver == 4 else 40)
        out.append(Template(name, b, l2, ipver, l4off, l4, fixed, frag))

    for vlan in (False, True):
        p = "vlan_" if vlan else ""
        add(p + "v4_tcp", eth(vlan, 0x0800) / v4() / TCP(flags="A", window=64240), 4, "tcp")
        add(p + "v6_tcp", eth(vlan, 0x86DD) / v6() / TCP(flags="A", window=64240), 6, "tcp")
        add(p + "v4_udp", eth(vlan, 0x0800) / v4() / UDP(), 4, "udp")
        add(p + "v6_udp", eth(vlan, 0x86DD) / v6() / UDP(), 6, "udp")
        names = ("www.example.com", "cdn-edge-42.example.net", "a.root-servers.net")
        for i, name in enumerate(names):
            q = DNS(id=0, rd=1, qd=DNSQR(qname=name, qtype="A"))
            r = DNS(id=0, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="A"),
                    an=DNSRR(rrname=name, type="A", ttl=300, rdata="198.18.0.53"))
            for kind, d in (("q", q), ("r", r)):
                add(f"{p}v4_dns{kind}{i}", eth(vlan, 0x0800) / v4() / UDP(sport=0, dport=53) / d,
                    4, "udp", fixed=True)
                add(f"{p}v6_dns{kind}{i}", eth(vlan, 0x86DD) / v6() / UDP(sport=0, dport=53) / d,
                    6, "udp", fixed=True)
        add(p + "v4_icmp", eth(vlan, 0x0800) / v4() / ICMP(type=8), 4, "icmp")
        add(p + "v6_icmp6", eth(vlan, 0x86DD) / v6() / ICMPv6EchoRequest(), 6, "icmp6")
        add(p + "v4_frag_first", eth(vlan, 0x0800) / IP(src="0.0.0.0", dst="0.0.0.0", flags="MF")
            / UDP(), 4, "udp", frag="first")
        add(p + "v4_frag_later", eth(vlan, 0x0800) / IP(src="0.0.0.0", dst="0.0.0.0", proto=17),
            4, "", frag="later")
        # ARP padded to the 60-byte Ethernet minimum, as received frames are.
        arp = eth(vlan, 0x0806) / ARP(op=1, hwsrc="02:00:00:00:00:02", psrc="0.0.0.0",
                                      pdst="0.0.0.0")
        add(p + "arp", arp / Raw(b"\0" * max(0, 60 + (4 if vlan else 0) - len(arp))), 0, "",
            fixed=True)
    return out


# --- small vector helpers ------------------------------------------------------------

def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a stateless hash of flow numbers to flow attributes."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def bits(h: np.ndarray, shift: int, nbits: int) -> np.ndarray:
    return ((h >> np.uint64(shift)) & np.uint64((1 << nbits) - 1)).astype(np.int64)


def put_be(H: np.ndarray, off: int, width: int, values) -> None:
    """Write unsigned big-endian integers of `width` bytes into columns off.. of H."""
    v = np.asarray(values, dtype=np.uint64)
    for i in range(width):
        H[:, off + i] = (v >> np.uint64(8 * (width - 1 - i))) & np.uint64(0xFF)


def word_sum(H: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Sum of the big-endian 16-bit words of H[:, start:stop] (an odd tail byte is padded)."""
    seg = H[:, start:stop].astype(np.uint64)
    if seg.shape[1] % 2:
        seg = np.concatenate([seg, np.zeros((len(seg), 1), np.uint64)], axis=1)
    return (seg[:, 0::2] << np.uint64(8)).sum(axis=1) + seg[:, 1::2].sum(axis=1)


def fold(s: np.ndarray) -> np.ndarray:
    """One's-complement checksum of a 64-bit sum of 16-bit words (RFC 1071)."""
    s = s.astype(np.uint64)
    for _ in range(4):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return (~s) & np.uint64(0xFFFF)


class Payload:
    """The payload source: BLOCK random bytes repeated through every chunk's buffer, with
    prefix sums of its bytes weighted as high/low halves of 16-bit words, so the word sum
    of any stretch is two look-ups."""

    def __init__(self, rng: np.random.Generator):
        self.block = rng.integers(0, 256, BLOCK, dtype=np.uint8)
        twice = np.concatenate([self.block, self.block]).astype(np.uint64)
        even = (np.arange(2 * BLOCK) % 2 == 0)
        self.p_even_high = np.concatenate([[0], np.cumsum(np.where(even, twice << np.uint64(8), twice))])
        self.p_odd_high = np.concatenate([[0], np.cumsum(np.where(even, twice, twice << np.uint64(8)))])

    def fill(self, total: int) -> np.ndarray:
        return np.resize(self.block, total)

    def word_sum(self, start: np.ndarray, length: np.ndarray, high_parity: np.ndarray) -> np.ndarray:
        """Word sum of the `length` bytes at buffer positions start.. (buffer position p holds
        block[p % BLOCK]); bytes at positions p with p % 2 == high_parity are the high half
        of a word.  BLOCK is even, so a position's parity is its block index's parity."""
        s = (start % BLOCK).astype(np.int64)
        e = s + length.astype(np.int64)          # length <= 1518 < BLOCK: no double wrap
        return np.where(high_parity == 0, self.p_even_high[e] - self.p_even_high[s],
                        self.p_odd_high[e] - self.p_odd_high[s]).astype(np.uint64)


# --- the traffic model -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Model:
    flows: int = 100_000
    elephant: float = 0.30
    zipf_s: float = 1.1           # p(rank k) ~ 1 / (k + zipf_q) ** zipf_s, k = 1..flows
    zipf_q: float = 10.0          # (Zipf-Mandelbrot: the top mouse carries ~1.5%, not 20%)
    full_share: float = 0.35      # share of variable-size mouse packets that are MTU-sized
    trunc_p: float = 0.01
    mean_gap_ns: int = 20_000     # 50k packets/s on average


TCP_PORTS = np.array([443] * 50 + [80] * 25 + [22] * 4 + [25] * 3 + [8080] * 6 + [3306] * 2
                     + [0] * 10)   # 0 = a random high port
UDP_PORTS = np.array([123, 5353, 4789, 1194, 443, 0, 0, 0])


def flow_cdf(model: Model) -> np.ndarray:
    k = np.arange(1, model.flows + 1, dtype=np.float64)
    p = 1.0 / (k + model.zipf_q) ** model.zipf_s
    c = np.cumsum(p)
    c /= c[-1]
    c[-1] = 2.0      # random() < 1 always lands inside
    return c


def template_index(templates):
    return {t.name: i for i, t in enumerate(templates)}


def draw_chunk(rng: np.random.Generator, n: int, model: Model, tix: dict, state: dict):
    """Per-packet attributes of n packets: template id, lengths, addresses, ports, flags..."""
    a = {}
    ele = rng.random(n) < model.elephant
    rank = np.searchsorted(state["cdf"], rng.random(n), side="right")
    h = mix64(rank.astype(np.uint64) + np.uint64(state["salt"]))
    h2 = mix64(h)
    cls = bits(h, 0, 10) % 1000
    v6 = bits(h, 10, 8) < 38             # ~15%
    vlan = bits(h, 18, 8) < 15           # ~6%
    to_server = rng.random(n) < 0.5

    # kind of each mouse packet
    kind = np.select([cls < 650, cls < 850, cls < 930, cls < 960, cls < 980],
                     ["tcp", "dns", "udp", "icmp", "frag"], "arp").astype("U4")
    kind[v6 & (kind == "frag")] = "udp"   # fragments here are IPv4's
    kind[v6 & (kind == "arp")] = "icmp"   # no ARP over IPv6
    kind[ele] = "tcp"
    v6[ele] = False
    vlan[ele] = False

    names = np.empty(n, dtype="U24")
    pre = np.where(vlan, "vlan_", "")
    fam = np.where(v6, "v6", "v4")
    names[:] = np.char.add(np.char.add(pre, fam), "_tcp")
    m = kind == "udp"
    names[m] = np.char.add(np.char.add(pre[m], fam[m]), "_udp")
    m = kind == "dns"
    which = bits(h2, 0, 8) % 3
    qr = np.where(to_server, "q", "r")
    names[m] = np.char.add(np.char.add(np.char.add(np.char.add(pre[m], fam[m]), "_dns"), qr[m]),
                           which[m].astype("U1"))
    m = kind == "icmp"
    names[m] = np.char.add(pre[m], np.where(v6[m], "v6_icmp6", "v4_icmp"))
    m = kind == "frag"
    first = rng.random(n) < 0.4
    names[m] = np.char.add(pre[m], np.where(first[m], "v4_frag_first", "v4_frag_later"))
    m = kind == "arp"
    names[m] = np.char.add(pre[m], "arp")
    lut = np.array(list(tix.keys()))
    order = np.argsort(lut)
    tid = order[np.searchsorted(lut[order], names)]
    a["tid"], a["ele"], a["kind"], a["v6"], a["vlan"] = tid, ele, kind, v6, vlan
    a["to_server"] = np.where(ele, rng.random(n) < 1 / 3, to_server)   # ele: 1 ACK per 2 data

    # addresses (v4 as u32, v6 as the low 64 bits under a fixed /64)
    cl_net = np.where(bits(h, 26, 3) == 0, (10 << 24) | (0 << 16), (192 << 24) | (168 << 16))
    client4 = cl_net | (bits(h, 29, 2) << 8) | (bits(h, 31, 8) % 250 + 2)
    u = (bits(h2, 8, 20) / float(1 << 20))
    srv_idx = (u ** 3 * 4000).astype(np.int64) + 1     # popular servers at low numbers
    server4 = (198 << 24) | (18 << 16) | srv_idx
    a["client4"] = np.where(ele, int.from_bytes(bytes(ELEPHANT_CLIENT), "big"), client4)
    a["server4"] = np.where(ele, int.from_bytes(bytes(ELEPHANT_SERVER), "big"), server4)
    a["client6"] = bits(h, 39, 16) + 0x10
    a["server6"] = srv_idx
    sport = 1024 + bits(h, 40, 16) % 64000
    dport = TCP_PORTS[bits(h2, 28, 8) % len(TCP_PORTS)]
    udp_d = UDP_PORTS[bits(h2, 36, 8) % len(UDP_PORTS)]
    dport = np.where(kind == "udp", udp_d, dport)
    dport = np.where(dport == 0, 1024 + bits(h2, 44, 16) % 64000, dport)
    dport = np.where(kind == "dns", 53, dport)
    a["cport"] = np.where(ele, ELEPHANT_PORTS[0], sport)
    a["sport_srv"] = np.where(ele, ELEPHANT_PORTS[1], dport)
    a["vlan_id"] = 10 * (1 + bits(h2, 60, 2))
    a["flow"] = h2

    # TCP flags and lengths
    r = rng.random(n)
    flags = np.select([r < 0.03, r < 0.06, r < 0.09, r < 0.095, r < 0.40],
                      [0x02, 0x12, 0x11, 0x04, 0x18], 0x10)
    a["flags"] = np.where(ele, np.where(a["to_server"], 0x10, 0x18), flags)
    # handshakes go the right way: SYN to the server, SYN-ACK from it
    tcp_mouse = (kind == "tcp") & ~ele
    a["to_server"] = np.where(tcp_mouse & (a["flags"] == 0x02), True,
                              np.where(tcp_mouse & (a["flags"] == 0x12), False, a["to_server"]))
    return a


def mouse_lengths(rng, n, hlen, fixed, bare, full_share):
    """Wire length of each packet: fixed kinds keep their template length; bare TCP
    (SYN/FIN/RST, pure ACKs) has no payload; the others are MTU-sized with probability
    full_share, else small (3/4: header + 0..40 bytes) or uniform up to the MTU (1/4).
    The mean is linear in full_share, which `calibrate` relies on."""
    r = rng.random(n)
    small = hlen + rng.integers(0, 41, n)
    uni = hlen + (rng.random(n) * (MTU_FRAME - hlen + 1)).astype(np.int64)
    rest = (r - full_share) / max(1e-12, 1 - full_share)
    wl = np.where(r < full_share, MTU_FRAME, np.where(rest < 0.75, small, uni))
    return np.where(fixed | bare, hlen, wl)


def chunk_lengths(rng, n, model: Model, templates, tix, state: dict):
    """Attributes, wire lengths and captured lengths of the next n packets."""
    a = draw_chunk(rng, n, model, tix, state)
    tid = a["tid"]
    hlen = np.array([t.hlen for t in templates])[tid]
    fixed = np.array([t.fixed for t in templates])[tid]
    frag = np.array([t.frag for t in templates])[tid]
    tcp = a["kind"] == "tcp"
    bare = tcp & (np.isin(a["flags"], (0x02, 0x12, 0x11, 0x04)) |
                  (a["flags"] == 0x10) & (rng.random(n) < 0.5))
    wl = mouse_lengths(rng, n, hlen, fixed, bare, model.full_share)
    wl = np.where(a["ele"], np.where(a["to_server"], hlen, MTU_FRAME), wl)
    wl = np.where(frag == "first", MTU_FRAME, wl)    # a first fragment is a full one
    wl = np.where(frag == "later", hlen + 8 * rng.integers(1, 186, n), wl)  # 8..1480 bytes
    wl = np.minimum(wl, MTU_FRAME + np.where(a["vlan"], 4, 0))
    wl = np.maximum(wl, hlen)
    cap = wl.copy()
    tr = rng.random(n) < model.trunc_p
    cap[tr] = np.minimum(cap[tr], SNAPS[rng.integers(0, len(SNAPS), int(tr.sum()))])
    return a, hlen, wl, cap


def make_chunk(rng, n, model: Model, templates, tix, payload: Payload, state: dict):
    """One chunk as (buf, offset, caplen, wirelen, ts_ns)."""
    a, hlen, wl, cap = chunk_lengths(rng, n, model, templates, tix, state)
    tid = a["tid"]
    ele = a["ele"]
    # elephant sequence numbers advance by the data carried
    data = ele & ~a["to_server"]
    seg = np.where(data, wl - hlen, 0)
    sent_before = state["ele_sent"] + np.cumsum(seg) - seg
    state["ele_sent"] += int(seg.sum())
    a["ele_seq"] = (state["ele_isn_s"] + sent_before) & 0xFFFFFFFF
    a["ele_ack_c"] = (state["ele_isn_s"] + sent_before + seg) & 0xFFFFFFFF

    gaps = rng.exponential(model.mean_gap_ns, n).astype(np.int64) // 1000 * 1000 + 1000
    ts = state["t"] + np.cumsum(gaps)
    state["t"] = int(ts[-1])

    offset = np.zeros(n, np.int64)
    offset[1:] = np.cumsum(cap[:-1])
    total = int(cap.sum())
    buf = payload.fill(total)
    for t_i in np.unique(tid):
        idx = np.nonzero(tid == t_i)[0]
        stamp(templates[t_i], idx, a, wl, offset, cap, buf, payload, rng)
    return buf, offset, cap.astype(np.uint32), wl.astype(np.uint32), ts


def stamp(t: Template, idx, a, wl, offset, cap, buf, payload: Payload, rng) -> None:
    """Write the packets idx of template t into buf (headers patched, checksums right)."""
    m = len(idx)
    H = np.tile(t.hdr, (m, 1))
    to_srv = a["to_server"][idx]
    w = wl[idx].astype(np.int64)
    # Ethernet: the capturing host's LAN side talks to the gateway
    cmac = np.zeros((m, 6), np.uint8)
    cmac[:, 0] = 2
    cl4 = a["client4"][idx]
    put_be(cmac, 2, 4, cl4)
    gw = np.tile(np.frombuffer(GATEWAY_MAC, np.uint8), (m, 1))
    H[:, 0:6] = np.where(to_srv[:, None], gw, cmac)
    H[:, 6:12] = np.where(to_srv[:, None], cmac, gw)
    if t.l3off == 18:
        put_be(H, 14, 2, a["vlan_id"][idx])
    L3 = t.l3off
    if t.ipver == 4:
        src = np.where(to_srv, cl4, a["server4"][idx])
        dst = np.where(to_srv, a["server4"][idx], cl4)
        put_be(H, L3 + 2, 2, w - L3)
        put_be(H, L3 + 4, 2, rng.integers(0, 65536, m))
        put_be(H, L3 + 12, 4, src)
        put_be(H, L3 + 16, 4, dst)
        H[:, L3 + 8] = np.where(to_srv, 64, 64 - (a["flow"][idx] % np.uint64(20)).astype(np.int64))
        if t.frag == "first":
            put_be(H, L3 + 6, 2, 0x2000)              # MF, offset 0
        elif t.frag == "later":
            off8 = 185 * (1 + rng.integers(0, 4, m))  # 1480-byte steps, in 8-byte units
            more = rng.random(m) < 0.5
            put_be(H, L3 + 6, 2, off8 | np.where(more, 0x2000, 0))
        H[:, L3 + 10:L3 + 12] = 0
        put_be(H, L3 + 10, 2, fold(word_sum(H, L3, L3 + 20)))
        pseudo = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
    elif t.ipver == 6:
        put_be(H, L3 + 4, 2, w - L3 - 40)
        put_be(H, L3 + 1, 3, (a["flow"][idx] >> np.uint64(20)) & np.uint64(0xFFFFF))
        c6 = np.zeros((m, 16), np.uint8)
        put_be(c6, 0, 8, 0x20010DB800010000)
        put_be(c6, 8, 8, a["client6"][idx])
        s6 = np.zeros((m, 16), np.uint8)
        put_be(s6, 0, 8, 0x20010DB8FF000000)
        put_be(s6, 8, 8, a["server6"][idx])
        H[:, L3 + 8:L3 + 24] = np.where(to_srv[:, None], c6, s6)
        H[:, L3 + 24:L3 + 40] = np.where(to_srv[:, None], s6, c6)
        pseudo = word_sum(H, L3 + 8, L3 + 40)
    else:  # ARP: who-has from the client for the gateway (or the reply)
        put_be(H, L3 + 6, 2, np.where(to_srv, 1, 2))
        H[:, L3 + 8:L3 + 14] = cmac
        put_be(H, L3 + 14, 4, cl4)
        put_be(H, L3 + 24, 4, (cl4 & 0xFFFFFF00) | 1)

    L4 = t.l4off
    if t.l4 in ("tcp", "udp"):
        cport, sport = a["cport"][idx], a["sport_srv"][idx]
        put_be(H, L4, 2, np.where(to_srv, cport, sport))
        put_be(H, L4 + 2, 2, np.where(to_srv, sport, cport))
    if t.l4 == "tcp":
        ele = a["ele"][idx]
        seq = np.where(ele, np.where(to_srv, 1000, a["ele_seq"][idx]),
                       rng.integers(0, 1 << 32, m, dtype=np.int64))
        ack = np.where(ele, np.where(to_srv, a["ele_ack_c"][idx], 1000),
                       rng.integers(0, 1 << 32, m, dtype=np.int64))
        fl = a["flags"][idx]
        ack = np.where(fl == 0x02, 0, ack)
        put_be(H, L4 + 4, 4, seq)
        put_be(H, L4 + 8, 4, ack)
        H[:, L4 + 13] = fl
        ckoff = L4 + 16
    elif t.l4 == "udp":
        if t.fixed:      # DNS: a fresh transaction id
            put_be(H, L4 + 8, 2, rng.integers(0, 65536, m))
        ulen = w - L4
        if t.frag == "first":   # the datagram's length, not the fragment's: 2-5 fragments
            ulen = ulen + 1480 * rng.integers(1, 5, m)
        put_be(H, L4 + 4, 2, ulen)
        ckoff = L4 + 6
    elif t.l4 == "icmp":
        put_be(H, L4, 1, np.where(to_srv, 8, 0))
        put_be(H, L4 + 4, 4, a["flow"][idx] & np.uint64(0xFFFF0000) | rng.integers(0, 1 << 16, m).astype(np.uint64))
        ckoff = L4 + 2
    elif t.l4 == "icmp6":
        put_be(H, L4, 1, np.where(to_srv, 128, 129))
        put_be(H, L4 + 4, 4, a["flow"][idx] & np.uint64(0xFFFF0000) | rng.integers(0, 1 << 16, m).astype(np.uint64))
        ckoff = L4 + 2

    if t.frag == "first":
        H[:, ckoff:ckoff + 2] = 0     # IPv4 UDP checksum 0 = none (RFC 768)
    elif t.l4:
        # checksum = ~(pseudo header + L4 bytes in the template + payload from the block)
        H[:, ckoff:ckoff + 2] = 0
        s = word_sum(H, L4, t.hlen)
        proto = {"tcp": 6, "udp": 17, "icmp6": 58}.get(t.l4)
        if proto is not None:
            s = s + pseudo.astype(np.uint64) + np.uint64(proto) + (w - L4).astype(np.uint64)
        plen = w - t.hlen
        pstart = offset[idx] + t.hlen
        # high bytes are those at an even distance from the L4 header start
        high_parity = (offset[idx] + L4) % 2
        s = s + payload.word_sum(pstart, plen, high_parity)
        ck = fold(s)
        if t.l4 == "udp":
            ck = np.where(ck == 0, 0xFFFF, ck)     # 0 means "no checksum" for UDP
        put_be(H, ckoff, 2, ck)
    # scatter the headers, clipped to each record's captured length
    cols = np.arange(t.hlen)
    keep = cols[None, :] < np.minimum(cap[idx], t.hlen)[:, None]
    buf[(offset[idx][:, None] + cols[None, :])[keep]] = H[keep]


# --- driver ----------------------------------------------------------------------

def parse_size(text: str) -> int:
    mult = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}
    t = text.strip().upper().rstrip("B")
    unit = t[-1] if t and t[-1] in "KMG" else ""
    try:
        return int(float(t[:-1] if unit else t) * mult[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 500M, found {text!r}")


def calibrate(model: Model, packets: int, target: int, templates, tix, seed: int) -> Model:
    """Pick full_share so that the expected file size is `target`: the mean record size is
    linear in full_share, so measure it at 0 and 1 on a sample drawn with its own seed."""
    need = (target - 24) / packets - 16           # mean caplen per record
    means = []
    for fs in (0.0, 1.0):
        rng = np.random.default_rng([seed, 99])
        st = dict(salt=seed, cdf=flow_cdf(model))
        m = dataclasses.replace(model, full_share=fs)
        caps = [chunk_lengths(rng, CHUNK, m, templates, tix, st)[3] for _ in range(4)]
        means.append(float(np.concatenate(caps).mean()))
    lo, hi = means
    fs = (need - lo) / (hi - lo)
    if not 0 <= fs <= 1:
        print(f"gen_capture: warning: --bytes-target {target} is out of reach for "
              f"{packets} packets (mean record {need:.0f} bytes; this mix gives "
              f"{lo:.0f}..{hi:.0f}); using the nearest", file=sys.stderr)
        fs = min(1.0, max(0.0, fs))
    return dataclasses.replace(model, full_share=fs)


def generate(out: Path, packets: int, *, seed: int = 1, bytes_target: int | None = None,
             flows: int = 100_000, elephant: float = 0.30, progress: bool = False) -> dict:
    from bpfkit.pcap import CaptureWriter, PacketBatch

    templates = build_templates()
    tix = template_index(templates)
    model = Model(flows=flows, elephant=elephant)
    if bytes_target:
        model = calibrate(model, packets, bytes_target, templates, tix, seed)
    rng = np.random.default_rng(seed)
    payload = Payload(rng)
    state = dict(salt=seed, cdf=flow_cdf(model), ele_sent=0, ele_isn_s=int(rng.integers(0, 1 << 32)), t=T0_NS)
    done = 0
    stats = dict(packets=0, truncated=0, bytes_captured=0)
    writer = CaptureWriter(out, format="pcap", linktype=1, snaplen=262144, nanos=False)
    try:
        while done < packets:
            n = min(CHUNK, packets - done)
            buf, off, cap, wl, ts = make_chunk(rng, n, model, templates, tix, payload, state)
            writer.write(PacketBatch(buf, off, cap, wl, ts, 1, 262144, False))
            done += n
            stats["truncated"] += int((cap < wl).sum())
            stats["bytes_captured"] += int(cap.sum(dtype=np.int64))
            if progress:
                print(f"\r{done:,} packets", end="", file=sys.stderr, flush=True)
    finally:
        writer.close()
    if progress:
        print(file=sys.stderr)
    stats["packets"] = done
    stats["full_share"] = round(model.full_share, 4)
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="pcap file to write")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bytes-target", type=parse_size, default=None, metavar="SIZE",
                    help="aim for a file of about SIZE bytes (e.g. 500M, 2G)")
    ap.add_argument("--flows", type=int, default=100_000, help="mouse flows (Zipf ranks)")
    ap.add_argument("--elephant", type=float, default=0.30,
                    help="share of packets in the one elephant flow")
    args = ap.parse_args(argv)
    if args.packets <= 0 or args.flows <= 0 or not 0 <= args.elephant <= 1:
        ap.error("--packets and --flows must be positive, --elephant in [0, 1]")
    t = time.perf_counter()
    st = generate(args.out, args.packets, seed=args.seed, bytes_target=args.bytes_target,
                  flows=args.flows, elephant=args.elephant, progress=sys.stderr.isatty())
    dt = time.perf_counter() - t
    size = args.out.stat().st_size
    print(f"{args.out}: {st['packets']:,} packets, {size:,} bytes, {st['truncated']:,} truncated, "
          f"full-size share {st['full_share']}, {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
