"""Name databases the compiler consults, as libpcap does through the C library:
services (pcap_nametoport), protocols (pcap_nametoproto), networks (pcap_nametonetaddr)
and ethers (pcap_ether_hostton).  The system's files are used, like tcpdump on the same
machine; when /etc/services or /etc/protocols is missing, a built-in table of the common
entries (IANA numbers, as Debian's netbase ships them) stands in."""
from __future__ import annotations

import os
import re

PROTO_UNDEF = -1
IPPROTO_TCP, IPPROTO_UDP = 6, 17
U32 = 0xFFFFFFFF

# name -> (tcp port or None, udp port or None); used only without /etc/services
_BUILTIN_SERVICES = {
    "ftp-data": (20, None), "ftp": (21, None), "ssh": (22, None), "telnet": (23, None),
    "smtp": (25, None), "time": (37, 37), "whois": (43, None), "tacacs": (49, 49),
    "domain": (53, 53), "bootps": (None, 67), "bootpc": (None, 68), "tftp": (None, 69),
    "gopher": (70, None), "finger": (79, None), "http": (80, None), "kerberos": (88, 88),
    "pop3": (110, None), "sunrpc": (111, 111), "auth": (113, None), "nntp": (119, None),
    "ntp": (None, 123), "epmap": (135, None), "netbios-ns": (None, 137),
    "netbios-dgm": (None, 138), "netbios-ssn": (139, None), "imap2": (143, None),
    "snmp": (161, 161), "snmp-trap": (162, 162), "bgp": (179, None), "ldap": (389, 389),
    "https": (443, 443), "microsoft-ds": (445, None), "isakmp": (None, 500),
    "syslog": (514, 514), "printer": (515, None), "ldaps": (636, 636),
    "rsync": (873, None), "imaps": (993, None), "pop3s": (995, None),
    "openvpn": (1194, 1194), "radius": (1812, 1812), "nfs": (2049, 2049),
    "mysql": (3306, None), "sip": (5060, 5060), "postgresql": (5432, None),
}
_BUILTIN_PROTOCOLS = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6,
    "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27,
    "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
    "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94,
    "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115,
    "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136,
    "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142,
    "ethernet": 143,
}


def _service(name: str, proto: str) -> int | None:
    if not os.path.exists("/etc/services"):
        tcp, udp = _BUILTIN_SERVICES.get(name, (None, None))
        return tcp if proto == "tcp" else udp
    import socket       # (imported when a name is looked up: ~5 ms)
    try:
        return socket.getservbyname(name, proto)
    except OSError:
        return None


def nametoport(name: str) -> tuple[int, int] | None:
    """pcap_nametoport: (port, proto) from the services database; proto PROTO_UNDEF when
    the name is both a tcp and a udp service with the same number."""
    if name.isdigit():
        return int(name), PROTO_UNDEF
    tcp = _service(name, "tcp")
    udp = _service(name, "udp")
    if tcp is not None:
        if udp is not None and udp == tcp:
            return tcp, PROTO_UNDEF
        return tcp, IPPROTO_TCP
    if udp is not None:
        return udp, IPPROTO_UDP
    return None


def nametoportrange(name: str) -> tuple[int, int, int] | None:
    """pcap_nametoportrange: 'N-M' numerically (sscanf "%d-%d"), else split at the first
    '-' and look both halves up with nametoport."""
    a, sep, b = name.partition("-")
    if not sep:
        return None
    if a.isdigit() and b.isdigit():
        return int(a), int(b), PROTO_UNDEF
    r1 = nametoport(a)
    if r1 is None:
        return None
    r2 = nametoport(b)
    if r2 is None:
        return None
    proto = r2[1] if r1[1] == r2[1] else PROTO_UNDEF
    return r1[0], r2[0], proto


def getprotobyname(name: str) -> int | None:
    """pcap_nametoproto: the protocol number of `name`, or None."""
    if not os.path.exists("/etc/protocols"):
        return _BUILTIN_PROTOCOLS.get(name)
    import socket
    try:
        return socket.getprotobyname(name)
    except OSError:
        return None


def getnetbyname(name: str) -> int:
    """pcap_nametonetaddr via getnetbyname(): /etc/networks, 0 when unknown."""
    try:
        with open("/etc/networks") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and name in (fields[0], *fields[2:]):
                    v = 0
                    for p in fields[1].split("."):
                        v = (v << 8) | (int(p, 0) & 0xFF)
                    return v & U32
    except (OSError, ValueError):
        pass
    return 0


def ether_hostton(name: str) -> bytes | None:
    """pcap_ether_hostton via glibc ether_hostton(): the /etc/ethers entry for `name`."""
    try:
        with open("/etc/ethers") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and fields[1] == name:
                    parts = fields[0].split(":")
                    if len(parts) == 6 and all(1 <= len(p) <= 2 for p in parts):
                        return bytes(int(p, 16) for p in parts)
    except (OSError, ValueError):
        pass
    return None
