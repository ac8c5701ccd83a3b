"""Tokenizer for pcap-filter expressions, matching libpcap 1.10's scanner.l.

flex picks the longest match at each position and, between equally long matches, the rule
listed first.  We reproduce that literally: every rule is a separate anchored regex tried in
scanner.l's order, and the longest wins (ties: the earlier rule).  Keywords are
case-sensitive; `\\name` is an identifier (how a keyword is used as a name).
"""
from __future__ import annotations

import re
from typing import Iterator

from .ast import Token

# scanner.l keyword rules, in order (all precede the generic rules below).
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("dst", "DST"), ("src", "SRC"),
    ("link", "LINK"), ("ether", "LINK"), ("ppp", "LINK"), ("slip", "LINK"),
    ("fddi", "LINK"), ("tr", "LINK"), ("wlan", "LINK"),
    ("arp", "ARP"), ("rarp", "RARP"), ("ip", "IP"), ("sctp", "SCTP"), ("tcp", "TCP"),
    ("udp", "UDP"), ("icmp", "ICMP"), ("igmp", "IGMP"), ("igrp", "IGRP"), ("pim", "PIM"),
    ("vrrp", "VRRP"), ("carp", "CARP"), ("radio", "RADIO"),
    ("ip6", "IPV6"), ("icmp6", "ICMPV6"), ("ah", "AH"), ("esp", "ESP"),
    ("atalk", "ATALK"), ("aarp", "AARP"), ("decnet", "DECNET"), ("lat", "LAT"),
    ("sca", "SCA"), ("moprc", "MOPRC"), ("mopdl", "MOPDL"),
    ("iso", "ISO"), ("esis", "ESIS"), ("es-is", "ESIS"), ("isis", "ISIS"), ("is-is", "ISIS"),
    ("l1", "L1"), ("l2", "L2"), ("iih", "IIH"), ("lsp", "LSP"), ("snp", "SNP"),
    ("csnp", "CSNP"), ("psnp", "PSNP"), ("clnp", "CLNP"), ("stp", "STP"), ("ipx", "IPX"),
    ("netbeui", "NETBEUI"),
    ("host", "HOST"), ("net", "NET"), ("mask", "NETMASK"), ("port", "PORT"),
    ("portrange", "PORTRANGE"), ("proto", "PROTO"), ("protochain", "PROTOCHAIN"),
    ("gateway", "GATEWAY"),
    ("type", "TYPE"), ("subtype", "SUBTYPE"), ("direction", "DIR"), ("dir", "DIR"),
    ("address1", "ADDR1"), ("addr1", "ADDR1"), ("address2", "ADDR2"), ("addr2", "ADDR2"),
    ("address3", "ADDR3"), ("addr3", "ADDR3"), ("address4", "ADDR4"), ("addr4", "ADDR4"),
    ("ra", "RA"), ("ta", "TA"),
    ("less", "LESS"), ("greater", "GREATER"), ("byte", "CBYTE"),
    ("broadcast", "TK_BROADCAST"), ("multicast", "TK_MULTICAST"),
    ("and", "AND"), ("&&", "AND"), ("or", "OR"), ("||", "OR"), ("not", "!"),
    ("len", "LEN"), ("length", "LEN"), ("inbound", "INBOUND"), ("outbound", "OUTBOUND"),
    ("ifindex", "IFINDEX"),
    ("vlan", "VLAN"), ("mpls", "MPLS"), ("pppoed", "PPPOED"), ("pppoes", "PPPOES"),
    ("geneve", "GENEVE"),
    ("lane", "LANE"), ("llc", "LLC"), ("metac", "METAC"), ("bcc", "BCC"), ("oam", "OAM"),
    ("oamf4", "OAMF4"), ("oamf4ec", "OAMF4EC"), ("oamf4sc", "OAMF4SC"), ("sc", "SC"),
    ("ilmic", "ILMIC"), ("vpi", "VPI"), ("vci", "VCI"), ("connectmsg", "CONNECTMSG"),
    ("metaconnect", "METACONNECT"),
    ("on", "PF_IFNAME"), ("ifname", "PF_IFNAME"), ("rset", "PF_RSET"),
    ("ruleset", "PF_RSET"), ("rnr", "PF_RNR"), ("rulenum", "PF_RNR"), ("srnr", "PF_SRNR"),
    ("subrulenum", "PF_SRNR"), ("reason", "PF_REASON"), ("action", "PF_ACTION"),
    ("fisu", "FISU"), ("lssu", "LSSU"), ("lsu", "LSSU"), ("msu", "MSU"), ("hfisu", "HFISU"),
    ("hlssu", "HLSSU"), ("hmsu", "HMSU"), ("sio", "SIO"), ("opc", "OPC"), ("dpc", "DPC"),
    ("sls", "SLS"), ("hsio", "HSIO"), ("hopc", "HOPC"), ("hdpc", "HDPC"), ("hsls", "HSLS"),
)

# Named constants that scanner.l returns as NUM (they come after the generic number,
# address and MAC rules, so e.g. "tcp-syn" beats ID only because it is listed earlier).
_NAMED_NUMS: tuple[tuple[str, int], ...] = (
    ("icmptype", 0), ("icmpcode", 1), ("icmp-echoreply", 0), ("icmp-unreach", 3),
    ("icmp-sourcequench", 4), ("icmp-redirect", 5), ("icmp-echo", 8),
    ("icmp-routeradvert", 9), ("icmp-routersolicit", 10), ("icmp-timxceed", 11),
    ("icmp-paramprob", 12), ("icmp-tstamp", 13), ("icmp-tstampreply", 14),
    ("icmp-ireq", 15), ("icmp-ireqreply", 16), ("icmp-maskreq", 17), ("icmp-maskreply", 18),
    ("icmp6type", 0), ("icmp6code", 1),
    ("icmp6-destinationunreach", 1), ("icmp6-packettoobig", 2), ("icmp6-timeexceeded", 3),
    ("icmp6-parameterproblem", 4), ("icmp6-echo", 128), ("icmp6-echoreply", 129),
    ("icmp6-multicastlistenerquery", 130), ("icmp6-multicastlistenerreportv1", 131),
    ("icmp6-multicastlistenerdone", 132), ("icmp6-routersolicit", 133),
    ("icmp6-routeradvert", 134), ("icmp6-neighborsolicit", 135),
    ("icmp6-neighboradvert", 136), ("icmp6-redirect", 137), ("icmp6-routerrenum", 138),
    ("icmp6-nodeinformationquery", 139), ("icmp6-nodeinformationresponse", 140),
    ("icmp6-ineighbordiscoverysolicit", 141), ("icmp6-ineighbordiscoveryadvert", 142),
    ("icmp6-multicastlistenerreportv2", 143), ("icmp6-homeagentdiscoveryrequest", 144),
    ("icmp6-homeagentdiscoveryreply", 145), ("icmp6-mobileprefixsolicit", 146),
    ("icmp6-mobileprefixadvert", 147), ("icmp6-certpathsolicit", 148),
    ("icmp6-certpathadvert", 149), ("icmp6-multicastrouteradvert", 151),
    ("icmp6-multicastroutersolicit", 152), ("icmp6-multicastrouterterm", 153),
    ("tcpflags", 13), ("tcp-fin", 0x01), ("tcp-syn", 0x02), ("tcp-rst", 0x04),
    ("tcp-push", 0x08), ("tcp-ack", 0x10), ("tcp-urg", 0x20), ("tcp-ece", 0x40),
    ("tcp-cwr", 0x80),
)

_N = r"(?:0[Xx][0-9A-Fa-f]+|[0-9]+)"
_B = r"[0-9A-Fa-f][0-9A-Fa-f]?"
_B2 = r"[0-9A-Fa-f]{4}"
_W = r"[0-9A-Fa-f]{1,4}"
_V4 = rf"{_N}\.{_N}\.{_N}\.{_N}"


def _v6_patterns() -> list[str]:
    """scanner.l's V6 alternatives: 8 groups, or '::' with n groups around it, optionally
    ending in a dotted IPv4 address (then 6 groups' worth of room)."""
    pats = [":".join([_W] * 8)]
    for total in range(7, -1, -1):           # groups present besides the '::'
        for left in range(total + 1):
            right = total - left
            pats.append(":".join([_W] * left) + "::" + ":".join([_W] * right))
    pats.append(":".join([_W] * 6) + ":" + _V4)
    for total in range(5, -1, -1):
        for left in range(total + 1):
            right = total - left
            tail = ":".join([_W] * right + [_V4]) if right else _V4
            pats.append(":".join([_W] * left) + "::" + tail)
    return pats


_KEYWORD = dict(_KEYWORDS)
_NAMED_NUM = dict(_NAMED_NUMS)
_MAC = re.compile(rf"(?:{_B}:{_B}:{_B}:{_B}:{_B}:{_B}|{_B}-{_B}-{_B}-{_B}-{_B}-{_B}|"
                  rf"{_B}\.{_B}\.{_B}\.{_B}\.{_B}\.{_B}|{_B2}\.{_B2}\.{_B2}|{_B2}{_B2}{_B2})")
_NUM = re.compile(_N)
_HID = re.compile(rf"{_N}\.{_N}(?:\.{_N}(?:\.{_N})?)?")
_V6_RX: list = []


def _v6() -> list:
    """The V6 rules, compiled at the first expression with a ':' in it (~70 regular
    expressions: compiling them at import took ~10 ms of every `bpfkit filter` run)."""
    if not _V6_RX:
        _V6_RX.extend(re.compile(p) for p in _v6_patterns())
    return _V6_RX


_BOGUS_MAC = re.compile(rf"{_B}:+(?:{_B}:+)+")
_ID = re.compile(r"[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?")
_ESC_ID = re.compile(r"\\[^ !()\n\t]+")
_AID = re.compile(r"\$" + _B)
_OPS2 = {"&&": "AND", "||": "OR", ">=": ">=", "<=": "<=", "!=": "!=", "==": "=",
         "<<": "<<", ">>": ">>"}
_PUNCT = set("+-*/%:[]!<>()&|^=")


def _longest(text: str, pos: int) -> tuple[int, str, object]:
    """flex's choice at `pos` for tokens starting with a letter or digit: the longest
    match; on a tie the rule listed first in scanner.l (keywords, MAC, number, dotted
    address, IPv6 address, bogus MAC, named constants, identifier)."""
    cands: list[tuple[int, int, str, object]] = []     # (length, -priority, kind, value)

    def add(m, prio, conv):
        if m:
            kind, value = conv(m.group(0))
            cands.append((m.end() - pos, -prio, kind, value))
    add(_MAC.match(text, pos), 1, lambda s: ("EID", s))
    add(_NUM.match(text, pos), 2, _stou)
    add(_HID.match(text, pos), 3, lambda s: ("HID", s))
    if ":" in text[pos:pos + 46]:
        for rx in _v6():
            add(rx.match(text, pos), 4, _hid6)
        add(_BOGUS_MAC.match(text, pos), 5,
            lambda s: ("ERROR", f"bogus ethernet address {s}"))
    m = _ID.match(text, pos)
    if m:
        word = m.group(0)
        if word in _KEYWORD:
            cands.append((len(word), 0, _KEYWORD[word], None))
        elif word in _NAMED_NUM:
            cands.append((len(word), -6, "NUM", _NAMED_NUM[word]))
        else:
            cands.append((len(word), -7, "ID", word))
    length, _p, kind, value = max(cands)
    return length, kind, value


def _stou(s: str) -> tuple[str, object]:
    """scanner.l stou(): decimal, 0x hex or leading-0 octal.  Digits are consumed left to
    right and each step checks for overflow first, so "003777777777778" overflows before
    its non-octal '8' is seen — the same error libpcap reports."""
    n = 0
    if s[0] == "0" and len(s) > 1 and s[1] in "xX":
        for c in s[2:]:
            if n > 0x0FFFFFFF:
                return "ERROR", f"number {s} overflows 32 bits"
            n = (n << 4) + int(c, 16)
    elif s[0] == "0":
        for c in s[1:]:
            if c not in "01234567":
                return "ERROR", f"number {s} contains non-octal digit"
            if n > 0o3777777777:
                return "ERROR", f"number {s} overflows 32 bits"
            n = (n << 3) + int(c)
    else:
        for c in s:
            d = int(c)
            if n > 0xFFFFFFFF // 10 or (n == 0xFFFFFFFF // 10 and d > 0xFFFFFFFF % 10):
                return "ERROR", f"number {s} overflows 32 bits"
            n = n * 10 + d
    return "NUM", n


def _hid6(s: str) -> tuple[str, object]:
    """scanner.l checks V6 tokens with getaddrinfo(AI_NUMERICHOST)."""
    import socket
    try:
        socket.inet_pton(socket.AF_INET6, s)
    except OSError:
        return "ERROR", f"bogus IPv6 address {s}"
    return "HID6", s


def tokens(text: str) -> Iterator[Token]:
    """Yield the tokens of `text`, then an EOF token.  A lexical error becomes an ERROR
    token (libpcap's LEX_ERROR): the parser raises it only if it gets that far, as bison
    does, so an earlier error is reported first."""
    pos = 0
    n = len(text)
    while pos < n:
        c = text[pos]
        if c in " \r\n\t":
            pos += 1
            continue
        two = text[pos:pos + 2]
        if two in _OPS2:
            yield Token(_OPS2[two], None, pos, two)
            pos += 2
            continue
        if c == ":":
            v6 = max(((m.end() - pos, m.group(0)) for m in (rx.match(text, pos) for rx in _v6())
                      if m), default=None)
            if v6 is not None:
                kind, value = _hid6(v6[1])
                yield Token(kind, value, pos, v6[1])
                pos += v6[0]
                continue
        if c in _PUNCT:
            yield Token(c, None, pos, c)
            pos += 1
            continue
        if c.isascii() and c.isalnum():
            length, kind, value = _longest(text, pos)
        elif c == "$" and _AID.match(text, pos):
            length = _AID.match(text, pos).end() - pos
            kind, value = "AID", text[pos:pos + length]
        elif c == "\\" and _ESC_ID.match(text, pos):
            length = _ESC_ID.match(text, pos).end() - pos
            kind, value = "ID", text[pos + 1:pos + length]
        else:
            length, kind, value = 1, "ERROR", None
        yield Token(kind, value, pos, text[pos:pos + length])
        pos += length
    yield Token("EOF", None, n, "")
