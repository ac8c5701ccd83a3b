#!/usr/bin/env python3
"""Make the small sample captures in pcaps/ (deterministic: fixed seed, fixed timestamps).

    python3 pcaps/make_samples.py [OUTDIR]      # default: the folder of this script

Packet bytes are built with scapy; the files are written by bpfkit.pcap.write_capture.
Running it twice gives byte-identical files (tests/test_samples.py checks this).

`build_samples()` returns, for every file, the records it holds and the number of packets
each of a few tcpdump filters must match, derived from how each packet was built (the
reasoning is next to `expected_counts`); the tests compare those numbers with tcpdump's.
"""
from __future__ import annotations

import argparse
import random
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NS,
                                IPv6, IPv6ExtHdrFragment, fragment6)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.packet import Raw

from bpfkit.pcap import CaptureWriter, PacketBatch, write_capture

SEED = 20240601
T0_NS = 1_717_200_000 * 10**9          # 2024-06-01 00:00:00 UTC, fixed

ETH_IP, ETH_IP6, ETH_ARP, ETH_VLAN = 0x0800, 0x86DD, 0x0806, 0x8100

# LINKTYPE_* values (pcap file header / pcapng IDB), see https://www.tcpdump.org/linktypes.html
LT_NULL, LT_EN10MB, LT_RAW, LT_LINUX_SLL, LT_LINUX_SLL2 = 0, 1, 101, 113, 276

# DLT_NULL's 4-byte header holds the sender's AF_ value in host byte order.  IPv6 has a
# different AF_INET6 on each BSD; libpcap's savefile code for `ip6` accepts all three
# (gen_linktype, DLT_NULL: BSD_AFNUM_INET6_BSD/FREEBSD/DARWIN).
AF_INET = 2
AF_INET6_VALUES = (24, 28, 30)

GATEWAY_MAC = "00:00:5e:00:01:01"      # VRRP-style router MAC: off-subnet traffic goes here


def host_mac(ip: str) -> str:
    """A stable locally-administered MAC for an address (02:00 + last 4 bytes of the IP)."""
    if ":" in ip:
        tail = ip.split(":")[-1] or "0"
        n = int(tail, 16)
        return "02:00:00:00:%02x:%02x" % (n >> 8 & 0xFF, n & 0xFF)
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def on_lan(ip: str) -> bool:
    return ip.startswith(("192.168.", "10.", "2001:db8:1:", "fe80:"))


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet before link-layer encapsulation."""
    ts_ns: int
    l3: bytes                 # the IPv4 / IPv6 / ARP packet
    ethertype: int            # ETH_IP, ETH_IP6 or ETH_ARP
    src_mac: str
    dst_mac: str
    outgoing: bool            # sent by the capturing host (SLL pkttype 4) or received (0)
    vlan: int | None = None   # 802.1Q VLAN id when tagged (Ethernet only)
    snap: int | None = None   # per-record capture limit: the record is truncated to it
    frag: str = ""            # IPv4 fragments: "first" (MF, offset 0) or "later" (offset > 0)
    seq: int = 0              # tie-breaker for equal timestamps (creation order)


@dataclass
class Traffic:
    """Builds flows of Frames with a seeded random generator; nothing here reads the clock."""
    rng: random.Random
    t0: int
    span_ns: int
    vlans: bool = True        # may tag some flows with 802.1Q
    truncate_p: float = 0.02  # chance that a large packet is recorded truncated
    nanos: bool = False       # timestamps with nanosecond digits (else whole microseconds)
    frames: list = field(default_factory=list)
    _ipid: int = 0x1000

    # --- helpers ---------------------------------------------------------
    def _start(self) -> int:
        return self.t0 + self.rng.randrange(0, self.span_ns // 1000) * 1000

    def _gap(self, lo_us: int, hi_us: int) -> int:
        return self.rng.randint(lo_us, hi_us) * 1000

    def _ts(self, t: int) -> int:
        t -= t % 1000     # whole microseconds, then nanosecond digits for pcapng
        return t + (self.rng.randrange(1000) if self.nanos else 0)

    def _next_id(self) -> int:
        self._ipid = (self._ipid + self.rng.randint(1, 40)) & 0xFFFF
        return self._ipid

    def _vlan(self, p: float) -> int | None:
        if self.vlans and self.rng.random() < p:
            return self.rng.choice((10, 20, 30))
        return None

    def add(self, t: int, pkt, *, src: str, dst: str, outgoing: bool, vlan=None,
            frag: str = "", allow_trunc: bool = True) -> None:
        raw = bytes(pkt)
        et = ETH_IP6 if ":" in src else ETH_IP
        if isinstance(pkt, ARP):
            et = ETH_ARP
        snap = None
        if allow_trunc and len(raw) > 200 and self.rng.random() < self.truncate_p:
            snap = self.rng.choice((64, 96, 128))
        smac = host_mac(src) if on_lan(src) else GATEWAY_MAC
        dmac = host_mac(dst) if on_lan(dst) else GATEWAY_MAC
        self.frames.append(Frame(self._ts(t), raw, et, smac, dmac, outgoing, vlan, snap, frag,
                                 len(self.frames)))

    def _ip(self, src, dst, **kw):
        if ":" in src:
            return IPv6(src=src, dst=dst, hlim=kw.get("ttl", 64))
        return IP(src=src, dst=dst, id=self._next_id(), ttl=kw.get("ttl", 64), flags="DF")

    # --- flows -----------------------------------------------------------
    def tcp_flow(self, client: str, server: str, dport: int, *, vlan_p: float = 0.1,
                 min_resp: int = 1, max_resp: int = 5) -> None:
        """A complete TCP connection: handshake, request, response segments with ACKs,
        FIN from each side.  Port 80 carries HTTP text, other ports TLS-looking bytes."""
        rng = self.rng
        vlan = self._vlan(vlan_p)
        sport = rng.randint(32768, 60999)
        cs, ss = rng.getrandbits(32), rng.getrandbits(32)
        t = self._start()
        rtt = self._gap(300, 40000)

        def seg(frm_client, flags, seq, ack, payload=b"", opts=()):
            src, dst = (client, server) if frm_client else (server, client)
            sp, dp = (sport, dport) if frm_client else (dport, sport)
            p = self._ip(src, dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq & 0xFFFFFFFF,
                                         ack=ack & 0xFFFFFFFF, window=64240, options=list(opts))
            if payload:
                p = p / Raw(payload)
            return p, src, dst, frm_client

        mss = [("MSS", 1460)]
        if dport == 80:
            req = (f"GET /page{rng.randrange(1000)}.html HTTP/1.1\r\nHost: www.example.com\r\n"
                   f"User-Agent: bpfkit-sample\r\nAccept: */*\r\n\r\n").encode()
        else:
            req = b"\x17\x03\x03" + struct.pack("!H", 200) + rng.randbytes(200)
        nresp = rng.randint(min_resp, max_resp)
        sizes = [1460] * (nresp - 1) + [rng.randint(100, 1460)]
        body = rng.randbytes(sum(sizes))
        if dport == 80:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
            body = head + body[len(head):]
        steps = [seg(True, "S", cs, 0, opts=mss), seg(False, "SA", ss, cs + 1, opts=mss),
                 seg(True, "A", cs + 1, ss + 1), seg(True, "PA", cs + 1, ss + 1, req)]
        c_next, s_next, off = cs + 1 + len(req), ss + 1, 0
        for i, n in enumerate(sizes):
            steps.append(seg(False, "PA" if i == len(sizes) - 1 else "A", s_next, c_next,
                             body[off:off + n]))
            s_next += n
            off += n
            if i % 2 == 1 or i == len(sizes) - 1:
                steps.append(seg(True, "A", c_next, s_next))
        steps += [seg(True, "FA", c_next, s_next), seg(False, "FA", s_next, c_next + 1),
                  seg(True, "A", c_next + 1, s_next + 1)]
        for p, src, dst, out in steps:
            self.add(t, p, src=src, dst=dst, outgoing=out, vlan=vlan)
            t += rtt // 2 + self._gap(0, 500)

    def dns(self, client: str, resolver: str, name: str, answer: str, *, vlan_p=0.1) -> None:
        rng = self.rng
        vlan = self._vlan(vlan_p)
        t = self._start()
        sport, qid = rng.randint(1024, 65535), rng.getrandbits(16)
        v6 = ":" in client
        qtype = "AAAA" if v6 else "A"
        q = self._ip(client, resolver) / UDP(sport=sport, dport=53) / DNS(
            id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
        r = self._ip(resolver, client) / UDP(sport=53, dport=sport) / DNS(
            id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype),
            an=DNSRR(rrname=name, type=qtype, ttl=300, rdata=answer))
        self.add(t, q, src=client, dst=resolver, outgoing=True, vlan=vlan)
        self.add(t + self._gap(500, 30000), r, src=resolver, dst=client, outgoing=False, vlan=vlan)

    def ping(self, src: str, dst: str, count: int = 2, *, size: int = 56, vlan_p=0.0) -> None:
        """ICMP / ICMPv6 echo request + reply pairs; large sizes become IPv4 fragments."""
        rng = self.rng
        vlan = self._vlan(vlan_p)
        t = self._start()
        ident = rng.getrandbits(16)
        for s in range(count):
            data = rng.randbytes(size)
            if ":" in src:
                req = self._ip(src, dst) / ICMPv6EchoRequest(id=ident, seq=s, data=data)
                rep = self._ip(dst, src) / ICMPv6EchoReply(id=ident, seq=s, data=data)
                pair = [(req, src, dst, True), (rep, dst, src, False)]
            else:
                req = self._ip(src, dst) / ICMP(type=8, id=ident, seq=s) / Raw(data)
                rep = self._ip(dst, src) / ICMP(type=0, id=ident, seq=s) / Raw(data)
                pair = [(req, src, dst, True), (rep, dst, src, False)]
            for p, a, b, out in pair:
                if isinstance(p, IP) and len(p) > 1500:
                    self._add_fragments(t, p, a, b, out, vlan)
                else:
                    self.add(t, p, src=a, dst=b, outgoing=out, vlan=vlan)
                t += self._gap(200, 20000)
            t += 1_000_000_000

    def _add_fragments(self, t, p, src, dst, out, vlan) -> None:
        p.flags = 0   # fragmentable: clear DF before scapy's fragment()
        for i, f in enumerate(fragment(p, fragsize=1480)):
            self.add(t, f, src=src, dst=dst, outgoing=out, vlan=vlan,
                     frag="first" if i == 0 else "later", allow_trunc=False)
            t += self._gap(5, 50)

    def big_dns_response(self, client: str, resolver: str, *, vlan_p=0.0) -> None:
        """An EDNS-sized DNS answer (~3 kB of TXT) that the resolver sends as IPv4 fragments:
        only the first fragment carries the UDP header, so `udp port 53` matches it alone."""
        rng = self.rng
        vlan = self._vlan(vlan_p)
        t = self._start()
        sport, qid = rng.randint(1024, 65535), rng.getrandbits(16)
        name = "big.example.com"
        q = self._ip(client, resolver) / UDP(sport=sport, dport=53) / DNS(
            id=qid, rd=1, qd=DNSQR(qname=name, qtype="TXT"))
        txt = [rng.randbytes(200).hex()[:250].encode() for _ in range(12)]
        r = IP(src=resolver, dst=client, id=self._next_id(), ttl=64) / UDP(sport=53, dport=sport) / DNS(
            id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="TXT"),
            an=DNSRR(rrname=name, type="TXT", ttl=60, rdata=txt))
        self.add(t, q, src=client, dst=resolver, outgoing=True, vlan=vlan)
        self._add_fragments(t + self._gap(1000, 20000), r, resolver, client, False, vlan)

    def ipv6_fragmented_udp(self, src: str, dst: str) -> None:
        """A 3 kB UDP datagram over IPv6 split with a Fragment extension header."""
        t = self._start()
        p = IPv6(src=src, dst=dst, hlim=64) / IPv6ExtHdrFragment(id=self.rng.getrandbits(32)) / \
            UDP(sport=self.rng.randint(1024, 65535), dport=5001) / Raw(self.rng.randbytes(3000))
        for f in fragment6(p, 1280):
            self.add(t, f, src=src, dst=dst, outgoing=True, allow_trunc=False)
            t += self._gap(5, 50)

    def neighbor_solicit(self, src: str, target: str) -> None:
        t = self._start()
        p = IPv6(src=src, dst="ff02::1:ff00:" + target.split(":")[-1], hlim=255) / \
            ICMPv6ND_NS(tgt=target)
        self.frames.append(Frame(self._ts(t), bytes(p), ETH_IP6, host_mac(src),
                                 "33:33:ff:00:00:" + "%02x" % (int(target.split(":")[-1], 16) & 0xFF),
                                 True, None, None, "", len(self.frames)))

    def arp(self, asker: str, target: str, *, vlan_p=0.0) -> None:
        vlan = self._vlan(vlan_p)
        t = self._start()
        req = ARP(op=1, hwsrc=host_mac(asker), psrc=asker, hwdst="00:00:00:00:00:00", pdst=target)
        rep = ARP(op=2, hwsrc=host_mac(target), psrc=target, hwdst=host_mac(asker), pdst=asker)
        self.frames.append(Frame(self._ts(t), bytes(req), ETH_ARP, host_mac(asker),
                                 "ff:ff:ff:ff:ff:ff", True, vlan, None, "", len(self.frames)))
        t += self._gap(50, 2000)
        self.frames.append(Frame(self._ts(t), bytes(rep), ETH_ARP, host_mac(target),
                                 host_mac(asker), False, vlan, None, "", len(self.frames)))

    def sorted_frames(self) -> list[Frame]:
        return sorted(self.frames, key=lambda f: (f.ts_ns, f.seq))


# --- the traffic mix ---------------------------------------------------------

V4_CLIENTS = [f"192.168.1.{i}" for i in range(10, 40)] + ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
V4_SERVERS = ["203.0.113.10", "203.0.113.80", "198.51.100.20", "198.51.100.53", "93.184.216.34"]
V6_CLIENTS = [f"2001:db8:1::{i:x}" for i in range(16, 32)]
V6_SERVERS = ["2001:db8:ffff::80", "2001:db8:ffff::443", "2606:2800:220:1::248"]
NAMES = ["www.example.com", "mail.example.org", "cdn.example.net", "api.example.com",
         "ntp.example.org", "tcpdump.org", "kernel.org"]


def mixed_traffic(seed: int, scale: float, *, vlans: bool, arp: bool, nanos: bool = False,
                  t0: int = T0_NS, span_s: int = 60, truncate_p: float = 0.02) -> list[Frame]:
    """The mixed sample: HTTP/HTTPS flows (some from 10.0.0.1), DNS, ICMP echo, ARP,
    IPv6 TCP/UDP/ICMPv6, IPv4 fragments (DNS and ping), an IPv6-fragmented datagram,
    a VLAN-tagged subset and a few truncated records.  `scale` multiplies the counts."""
    rng = random.Random(seed)
    tr = Traffic(rng, t0, span_s * 10**9, vlans=vlans, truncate_p=truncate_p, nanos=nanos)

    def n(k):
        return max(1, round(k * scale))

    for _ in range(n(90)):
        client = rng.choice(V4_CLIENTS)
        if rng.random() < 0.15:
            client = "10.0.0.1"
        tr.tcp_flow(client, rng.choice(V4_SERVERS), rng.choice((80, 80, 443)))
    for _ in range(n(12)):
        tr.tcp_flow(rng.choice(V6_CLIENTS), rng.choice(V6_SERVERS), rng.choice((80, 443)))
    for _ in range(n(70)):
        name = rng.choice(NAMES)
        tr.dns(rng.choice(V4_CLIENTS), "192.168.1.1", name, rng.choice(V4_SERVERS))
    for _ in range(n(20)):
        tr.dns(rng.choice(V6_CLIENTS), "2001:db8:1::1", rng.choice(NAMES), rng.choice(V6_SERVERS))
    for _ in range(n(10)):
        tr.ping(rng.choice(V4_CLIENTS), rng.choice(V4_SERVERS + ["192.168.1.1"]), 2, vlan_p=0.2)
    for _ in range(n(6)):
        tr.ping(rng.choice(V6_CLIENTS), rng.choice(V6_SERVERS), 2)
    for _ in range(n(3)):
        tr.ping(rng.choice(V4_CLIENTS), rng.choice(V4_SERVERS), 1, size=3000)
    for _ in range(n(4)):
        tr.big_dns_response(rng.choice(V4_CLIENTS), "192.168.1.1", vlan_p=0.25)
    tr.ipv6_fragmented_udp(V6_CLIENTS[0], V6_SERVERS[0])
    tr.neighbor_solicit(V6_CLIENTS[1], "2001:db8:1::1")
    if arp:
        for _ in range(n(15)):
            tr.arp(rng.choice(V4_CLIENTS), "192.168.1.1", vlan_p=0.2)
    return tr.sorted_frames()


# --- link-layer encapsulation ----------------------------------------------

def encapsulate(f: Frame, linktype: int, null_af6: int = 24) -> bytes:
    """The frame's bytes on the wire for `linktype` (header built with scapy)."""
    if linktype == LT_EN10MB:
        if f.vlan is not None:
            hdr = Ether(dst=f.dst_mac, src=f.src_mac, type=ETH_VLAN) / Dot1Q(vlan=f.vlan,
                                                                            type=f.ethertype)
        else:
            hdr = Ether(dst=f.dst_mac, src=f.src_mac, type=f.ethertype)
        return bytes(hdr) + f.l3
    if linktype == LT_RAW:
        return f.l3
    mac = bytes.fromhex(f.src_mac.replace(":", ""))
    if linktype == LT_LINUX_SLL:
        return bytes(CookedLinux(pkttype=4 if f.outgoing else 0, lladdrtype=1, lladdrlen=6,
                                 src=mac, proto=f.ethertype)) + f.l3
    if linktype == LT_LINUX_SLL2:
        return bytes(CookedLinuxV2(proto=f.ethertype, ifindex=2, lladdrtype=1,
                                   pkttype=4 if f.outgoing else 0, lladdrlen=6, src=mac)) + f.l3
    if linktype == LT_NULL:
        # Packed by hand, not with scapy's Loopback (host-order field): the AF value must be
        # in the *file's* byte order (little-endian, as bpfkit writes) whatever host runs this.
        af = AF_INET if f.ethertype == ETH_IP else null_af6
        return struct.pack("<I", af) + f.l3
    raise ValueError(f"no encapsulation for link type {linktype}")


def carried(f: Frame, linktype: int) -> bool:
    """RAW and NULL carry only IP; VLAN tags exist only on Ethernet here."""
    if f.ethertype == ETH_ARP and linktype in (LT_RAW, LT_NULL):
        return False
    return True


# --- the files ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    linktype: int
    fmt: str                       # "pcap" or "pcapng"
    nanos: bool
    snaplen: int
    frames: tuple                  # Frames actually written, in order
    records: tuple                 # (ts_ns, captured bytes, wirelen, interface)
    expected: dict                 # tcpdump filter -> number of packets it must match


def expected_counts(frames, records, linktype: int) -> dict:
    """How many packets each filter matches, from how the packets were built.

    - `vlan` (EN10MB): libpcap 1.10 tests the type field at offset 12 for 0x8100/0x88a8/
      0x9100 (gen_vlan, no VLAN offload in a savefile), so exactly the tagged frames.
    - `ip6`: the link-level type says IPv6 (EN10MB type at 12, SLL at 14, SLL2 at 0, NULL
      AF 24/28/30 for a savefile, RAW version nibble).  VLAN-tagged IPv6 does not count:
      without a `vlan` keyword first, libpcap looks at the outer type only.
    - `ip[6:2] & 0x1fff != 0`: untagged IPv4 whose fragment offset is non-zero, i.e. the
      "later" fragments we made; the load is inside every record (snaps are >= 64 bytes and
      fragments are never truncated).
    - `arp`: untagged ARP (EN10MB, SLL, SLL2).
    - `truncated` is not a filter: records with caplen < wirelen (checked with the reader).
    """
    untagged = [f for f in frames if f.vlan is None]
    exp = {
        "ip6": sum(f.ethertype == ETH_IP6 for f in untagged),
        "ip[6:2] & 0x1fff != 0": sum(f.ethertype == ETH_IP and f.frag == "later"
                                     for f in untagged),
        "truncated": sum(len(data) < wl for _, data, wl, _ in records),
    }
    if linktype == LT_EN10MB:
        exp["vlan"] = sum(f.vlan is not None for f in frames)
    if linktype in (LT_EN10MB, LT_LINUX_SLL, LT_LINUX_SLL2):
        exp["arp"] = sum(f.ethertype == ETH_ARP for f in untagged)
    return exp


def make_sample(name, linktype, frames, *, fmt="pcap", nanos=False, snaplen=262144,
                ifaces=None) -> Sample:
    frames = [f for f in frames if carried(f, linktype)]
    recs = []
    for i, f in enumerate(frames):
        wire = encapsulate(f, linktype, null_af6=AF_INET6_VALUES[i % 3])
        cap = len(wire)
        if f.snap is not None:
            cap = min(cap, f.snap)
        cap = min(cap, snaplen)
        recs.append((f.ts_ns, wire[:cap], len(wire), 0 if ifaces is None else ifaces[i]))
    return Sample(name, linktype, fmt, nanos, snaplen, tuple(frames), tuple(recs),
                  expected_counts(frames, recs, linktype))


def build_samples() -> list[Sample]:
    """Every sample file, in memory.  Deterministic: fixed seeds and timestamps only."""
    out = [make_sample("sample.pcap", LT_EN10MB,
                       mixed_traffic(SEED, 1.0, vlans=True, arp=True))]
    small = dict(scale=0.15, span_s=10, truncate_p=0.08)
    out.append(make_sample("en10mb.pcap", LT_EN10MB,
                           mixed_traffic(SEED + 1, vlans=True, arp=True, **small)))
    out.append(make_sample("raw.pcap", LT_RAW,
                           mixed_traffic(SEED + 2, vlans=False, arp=False, **small)))
    out.append(make_sample("linux_sll.pcap", LT_LINUX_SLL,
                           mixed_traffic(SEED + 3, vlans=False, arp=True, **small)))
    # SLL2 file captured with a 128-byte snaplen, as `tcpdump -s 128 -i any` would:
    # every longer packet is truncated, and `ret` in compiled filters says 128.
    out.append(make_sample("linux_sll2.pcap", LT_LINUX_SLL2,
                           mixed_traffic(SEED + 4, vlans=False, arp=True, **small), snaplen=128))
    out.append(make_sample("null.pcap", LT_NULL,
                           mixed_traffic(SEED + 5, vlans=False, arp=False, **small)))
    # pcapng: nanosecond timestamps, two Ethernet interfaces whose packets interleave.
    a = mixed_traffic(SEED + 6, vlans=True, arp=True, nanos=True, **small)
    b = mixed_traffic(SEED + 7, vlans=False, arp=True, nanos=True, **small)
    tagged = sorted([(f.ts_ns, 0, i, f) for i, f in enumerate(a)] +
                    [(f.ts_ns, 1, i, f) for i, f in enumerate(b)])
    out.append(make_sample("sample.pcapng", LT_EN10MB, [t[3] for t in tagged], fmt="pcapng",
                           nanos=True, ifaces=[t[1] for t in tagged]))
    return out


def to_batch(records, linktype: int, snaplen: int, nanos: bool) -> PacketBatch:
    return PacketBatch.from_packets([r[1] for r in records], ts_ns=[r[0] for r in records],
                                    wirelen=[r[2] for r in records], linktype=linktype,
                                    snaplen=snaplen, ts_nanos=nanos)


def write_sample(s: Sample, outdir: Path) -> Path:
    path = outdir / s.name
    if s.fmt == "pcapng":
        write_pcapng_two_ifaces(s, path)
    else:
        write_capture(path, to_batch(s.records, s.linktype, s.snaplen, s.nanos), format="pcap",
                      linktype=s.linktype, snaplen=s.snaplen, nanos=s.nanos)
    return path


def write_pcapng_two_ifaces(s: Sample, path: Path) -> None:
    """pcapng whose packets come from two interfaces of one link type: each run of
    same-interface packets is written with that interface's id."""
    with CaptureWriter(path, format="pcapng", linktype=s.linktype, snaplen=s.snaplen,
                       nanos=s.nanos) as w:
        ids = [0, w.add_interface(s.linktype, s.snaplen)]
        recs = s.records
        start = 0
        for i in range(1, len(recs) + 1):
            if i == len(recs) or recs[i][3] != recs[start][3]:
                w.write(to_batch(recs[start:i], s.linktype, s.snaplen, s.nanos),
                        interface=ids[recs[start][3]])
                start = i


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args(argv)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for s in build_samples():
        p = write_sample(s, outdir)
        print(f"{p}: {len(s.records)} packets, {p.stat().st_size} bytes, "
              + ", ".join(f"{k}={v}" for k, v in s.expected.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
