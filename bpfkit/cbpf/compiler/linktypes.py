"""The link types the compiler supports and their layout (libpcap gencode.c init_linktype).

Offsets: `off_linktype` is where the next-protocol field is (None: OFFSET_NOT_SET, the
packet starts with IP), `off_linkpl` where the link-layer payload starts, `off_nl` and
`off_nl_nosnap` the network layer relative to the payload.  `description` is
pcap_datalink_val_to_description(), used in libpcap's error messages.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import UsageError


@dataclass(frozen=True, slots=True)
class LinkLayout:
    name: str
    dlt: int
    description: str
    off_linktype: int | None
    off_linkpl: int
    off_nl: int
    off_nl_nosnap: int


LAYOUTS: dict[str, LinkLayout] = {l.name: l for l in (
    LinkLayout("EN10MB", 1, "Ethernet", 12, 14, 0, 3),
    LinkLayout("NULL", 0, "BSD loopback", 0, 4, 0, 0),
    LinkLayout("LOOP", 108, "OpenBSD loopback", 0, 4, 0, 0),
    LinkLayout("RAW", 12, "Raw IP", None, 0, 0, 0),
    LinkLayout("IPV4", 228, "Raw IPv4", None, 0, 0, 0),
    LinkLayout("IPV6", 229, "Raw IPv6", None, 0, 0, 0),
    LinkLayout("LINUX_SLL", 113, "Linux cooked v1", 14, 16, 0, 0),
    LinkLayout("LINUX_SLL2", 276, "Linux cooked v2", 0, 20, 0, 0),
)}

# DLT_PPP: reached only through `pppoes`, which makes the rest of the expression look at
# a PPP header (gencode.c gen_pppoes PUSH_LINKHDR).
PPP = LinkLayout("PPP", 9, "PPP", 2, 4, 0, 0)

_BY_DLT = {l.dlt: l for l in LAYOUTS.values()}
# LINKTYPE_ values of capture files that differ from the DLT (pcap-common.c).
_LINKTYPE_TO_DLT = {101: 12, 107: 107}


def layout(linktype: str | int) -> LinkLayout:
    """The layout for a DLT name ('EN10MB') or number (a DLT or a file's LINKTYPE)."""
    if isinstance(linktype, str):
        key = linktype.upper()
        if key.startswith("DLT_"):
            key = key[4:]
        if key in LAYOUTS:
            return LAYOUTS[key]
        raise UsageError(f"link type {linktype!r} is not supported by the filter compiler "
                         f"(supported: {', '.join(sorted(LAYOUTS))})")
    dlt = _LINKTYPE_TO_DLT.get(linktype & 0x03FFFFFF, linktype & 0x03FFFFFF)
    if dlt in _BY_DLT:
        return _BY_DLT[dlt]
    raise UsageError(f"link type {linktype} is not supported by the filter compiler "
                     f"(supported: {', '.join(sorted(LAYOUTS))})")
