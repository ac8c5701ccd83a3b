"""Whether a capture file was written in the other byte order than this host's.

libpcap compiles `ip`/`ip6` on DLT_NULL differently for such files (gencode.c: the
address family of a NULL header is in the writer's host byte order), so the filter
compiler needs to know.  Only the first section counts: pcapng files whose sections
change byte order are read by bpfkit but not by libpcap.
"""
from __future__ import annotations

import sys

_PCAP_MAGICS_LE = {b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"}   # us / ns, little-endian
_PCAP_MAGICS_BE = {b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


def file_is_big_endian(head: bytes) -> bool | None:
    """From the first 12 bytes of a capture: True/False, None when not recognisable."""
    if head[:4] in _PCAP_MAGICS_LE:
        return False
    if head[:4] in _PCAP_MAGICS_BE:
        return True
    if head[:4] == _PCAPNG_SHB and len(head) >= 12:
        if head[8:12] == b"\x4d\x3c\x2b\x1a":
            return False
        if head[8:12] == b"\x1a\x2b\x3c\x4d":
            return True
    return None


def capture_is_swapped(path: str) -> bool:
    """True when `path` (not '-': standard input cannot be peeked) is in the other byte
    order than this host.  Unreadable or unrecognised files give False; the reader
    reports them properly."""
    if path == "-":
        return False
    try:
        with open(path, "rb") as f:
            big = file_is_big_endian(f.read(12))
    except OSError:
        return False
    if big is None:
        return False
    return big != (sys.byteorder == "big")
