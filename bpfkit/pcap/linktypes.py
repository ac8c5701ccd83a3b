"""Link-layer header types: the LINKTYPE_* values stored in capture files, the DLT_*
values libpcap uses at run time (and that `tcpdump -y NAME` names), and the FCS bits
libpcap keeps in the upper bits of a classic pcap header's link-type field.

Everything here is a fact of libpcap 1.10.3 as built on Linux; tests/test_pcap_linktypes.py
checks the names and the LINKTYPE -> DLT mapping against the installed libpcap itself.

Vocabulary:
* *linktype*: the raw 32-bit value of a file (``PacketBatch.linktype``), FCS bits kept.
* *DLT*: what libpcap's ``linktype_to_dlt`` (pcap-common.c) makes of its low 26 bits;
  the compiler chooses its code by DLT.
* *name*: libpcap's ``pcap_datalink_val_to_name`` of the DLT, e.g. ``'EN10MB'``.
"""
from __future__ import annotations

from ..errors import UsageError

# --- the upper bits of a classic pcap link-type field (pcap-common.h / sf-pcap.c) ---
LT_LINKTYPE_MASK = 0x03FFFFFF      # LT_LINKTYPE(x): the link-layer type proper
LT_EXT_MASK = 0xFC000000           # LT_LINKTYPE_EXT(x): kept by libpcap and written back
LT_FCS_LENGTH_PRESENT = 0x04000000


def lt_linktype(value: int) -> int:
    """The link-layer type without the extension bits (libpcap's LT_LINKTYPE)."""
    return value & LT_LINKTYPE_MASK


def lt_ext(value: int) -> int:
    """The extension bits (libpcap's LT_LINKTYPE_EXT): FCS length and reserved bits."""
    return value & LT_EXT_MASK


def fcs_length_present(value: int) -> bool:
    """True when the header says how many FCS bytes end each packet (LT_FCS_LENGTH_PRESENT)."""
    return bool(value & LT_FCS_LENGTH_PRESENT)


def fcs_length(value: int) -> int | None:
    """FCS bytes at the end of each packet in 16-bit units as libpcap defines them
    (LT_FCS_LENGTH: bits 28..31), or None when the present bit is clear."""
    if not fcs_length_present(value):
        return None
    return (value >> 28) & 0xF


def with_fcs_length(linktype: int, fcs_units: int) -> int:
    """`linktype` with the FCS length bits set (LT_FCS_DATALINK_EXT)."""
    if not 0 <= fcs_units <= 15:
        raise UsageError(f"FCS length must be 0..15 (units of 16 bits), found {fcs_units}")
    return (linktype & LT_LINKTYPE_MASK) | ((fcs_units & 0xF) << 28) | LT_FCS_LENGTH_PRESENT


# --- DLT names and values (pcap.c dlt_choices, pcap/dlt.h on Linux) ----------------
# (DLT value, name).  Checked against pcap_datalink_val_to_name() of libpcap 1.10.3.
_DLT_NAMES: tuple[tuple[int, str], ...] = (
    (0, "NULL"), (1, "EN10MB"), (6, "IEEE802"), (7, "ARCNET"), (8, "SLIP"), (9, "PPP"),
    (10, "FDDI"), (11, "ATM_RFC1483"), (12, "RAW"), (15, "SLIP_BSDOS"), (16, "PPP_BSDOS"),
    (19, "ATM_CLIP"), (50, "PPP_SERIAL"), (51, "PPP_ETHER"), (99, "SYMANTEC_FIREWALL"),
    (104, "C_HDLC"), (105, "IEEE802_11"), (107, "FRELAY"), (108, "LOOP"), (109, "ENC"),
    (113, "LINUX_SLL"), (114, "LTALK"), (117, "PFLOG"), (119, "PRISM_HEADER"),
    (122, "IP_OVER_FC"), (123, "SUNATM"), (127, "IEEE802_11_RADIO"), (129, "ARCNET_LINUX"),
    (130, "JUNIPER_MLPPP"), (131, "JUNIPER_MLFR"), (132, "JUNIPER_ES"), (133, "JUNIPER_GGSN"),
    (134, "JUNIPER_MFR"), (135, "JUNIPER_ATM2"), (136, "JUNIPER_SERVICES"),
    (137, "JUNIPER_ATM1"), (138, "APPLE_IP_OVER_IEEE1394"), (139, "MTP2_WITH_PHDR"),
    (140, "MTP2"), (141, "MTP3"), (142, "SCCP"), (143, "DOCSIS"), (144, "LINUX_IRDA"),
    (163, "IEEE802_11_RADIO_AVS"), (164, "JUNIPER_MONITOR"), (165, "BACNET_MS_TP"),
    (166, "PPP_PPPD"), (167, "JUNIPER_PPPOE"), (168, "JUNIPER_PPPOE_ATM"), (169, "GPRS_LLC"),
    (170, "GPF_T"), (171, "GPF_F"), (174, "JUNIPER_PIC_PEER"), (175, "ERF_ETH"),
    (176, "ERF_POS"), (177, "LINUX_LAPD"), (178, "JUNIPER_ETHER"), (179, "JUNIPER_PPP"),
    (180, "JUNIPER_FRELAY"), (181, "JUNIPER_CHDLC"), (182, "MFR"), (183, "JUNIPER_VP"),
    (184, "A429"), (185, "A653_ICM"), (186, "USB_FREEBSD"), (187, "BLUETOOTH_HCI_H4"),
    (188, "IEEE802_16_MAC_CPS"), (189, "USB_LINUX"), (190, "CAN20B"),
    (191, "IEEE802_15_4_LINUX"), (192, "PPI"), (193, "IEEE802_16_MAC_CPS_RADIO"),
    (194, "JUNIPER_ISM"), (195, "IEEE802_15_4"), (196, "SITA"), (197, "ERF"), (198, "RAIF1"),
    (199, "IPMB_KONTRON"), (200, "JUNIPER_ST"), (201, "BLUETOOTH_HCI_H4_WITH_PHDR"),
    (202, "AX25_KISS"), (209, "IPMB_LINUX"), (215, "IEEE802_15_4_NONASK_PHY"),
    (216, "LINUX_EVDEV"), (219, "MPLS"), (220, "USB_LINUX_MMAPPED"), (221, "DECT"),
    (222, "AOS"), (223, "WIHART"), (224, "FC_2"), (225, "FC_2_WITH_FRAME_DELIMS"),
    (226, "IPNET"), (227, "CAN_SOCKETCAN"), (228, "IPV4"), (229, "IPV6"),
    (230, "IEEE802_15_4_NOFCS"), (231, "DBUS"), (232, "JUNIPER_VS"), (233, "JUNIPER_SRX_E2E"),
    (234, "JUNIPER_FIBRECHANNEL"), (235, "DVB_CI"), (236, "MUX27010"),
    (237, "STANAG_5066_D_PDU"), (238, "JUNIPER_ATM_CEMIC"), (239, "NFLOG"),
    (240, "NETANALYZER"), (241, "NETANALYZER_TRANSPARENT"), (242, "IPOIB"),
    (243, "MPEG_2_TS"), (244, "NG40"), (245, "NFC_LLCP"), (246, "PFSYNC"),
    (247, "INFINIBAND"), (248, "SCTP"), (249, "USBPCAP"), (250, "RTAC_SERIAL"),
    (251, "BLUETOOTH_LE_LL"), (253, "NETLINK"), (254, "BLUETOOTH_LINUX_MONITOR"),
    (255, "BLUETOOTH_BREDR_BB"), (256, "BLUETOOTH_LE_LL_WITH_PHDR"), (257, "PROFIBUS_DL"),
    (258, "PKTAP"), (259, "EPON"), (260, "IPMI_HPM_2"), (261, "ZWAVE_R1_R2"),
    (262, "ZWAVE_R3"), (263, "WATTSTOPPER_DLM"), (264, "ISO_14443"), (265, "RDS"),
    (266, "USB_DARWIN"), (267, "OPENFLOW"), (268, "SDLC"), (269, "TI_LLN_SNIFFER"),
    (271, "VSOCK"), (272, "NORDIC_BLE"), (273, "DOCSIS31_XRA31"), (274, "ETHERNET_MPACKET"),
    (275, "DISPLAYPORT_AUX"), (276, "LINUX_SLL2"), (278, "OPENVIZSLA"), (279, "EBHSCR"),
    (280, "VPP_DISPATCH"), (281, "DSA_TAG_BRCM"), (282, "DSA_TAG_BRCM_PREPEND"),
    (283, "IEEE802_15_4_TAP"), (284, "DSA_TAG_DSA"), (285, "DSA_TAG_EDSA"), (286, "ELEE"),
    (287, "Z_WAVE_SERIAL"), (288, "USB_2_0"), (289, "ATSC_ALP"),
)
_NAME_OF_DLT = dict(_DLT_NAMES)
_DLT_OF_NAME = {name: dlt for dlt, name in _DLT_NAMES}

# LINKTYPE values that differ from their DLT on Linux (pcap-common.c's map[] table, with
# the DLT values of pcap/dlt.h for Linux).  Every other LINKTYPE is its own DLT.
_LINKTYPE_TO_DLT = {100: 11, 101: 12, 102: 15, 103: 16, 106: 19}
_DLT_TO_LINKTYPE_SPECIAL = {v: k for k, v in _LINKTYPE_TO_DLT.items()}
# DLTs below the "matching range" that have a LINKTYPE of the same value (map[] in
# pcap-common.c: NULL, EN10MB, IEEE802, ARCNET, SLIP, PPP, FDDI, PPP_SERIAL -> PPP_HDLC 50,
# PPP_ETHER 51, SYMANTEC_FIREWALL 99).  1.10.3 cannot write DLTs 2..5 (measured with
# tcpdump -w; tests/test_pcap_linktypes.py).
_DLT_SAME_BELOW_MATCHING = frozenset({0, 1, 6, 7, 8, 9, 10, 50, 51, 99})
LINKTYPE_MATCHING_MIN = 104
# DLT_MATCHING_MAX of libpcap 1.10.3: the last DLT it can write to a savefile.
LINKTYPE_MATCHING_MAX = 289


def dlt_of(linktype: int) -> int:
    """The DLT libpcap uses for a file's link type (linktype_to_dlt of LT_LINKTYPE),
    e.g. LINKTYPE_RAW 101 -> DLT_RAW 12."""
    lt = int(linktype) & LT_LINKTYPE_MASK
    return _LINKTYPE_TO_DLT.get(lt, lt)


def linktype_of_dlt(dlt: int) -> int | None:
    """The LINKTYPE libpcap writes for a DLT (dlt_to_linktype), or None when libpcap
    cannot write that DLT to a savefile.  E.g. DLT_RAW 12 -> 101."""
    dlt = int(dlt)
    if dlt in _DLT_TO_LINKTYPE_SPECIAL:
        return _DLT_TO_LINKTYPE_SPECIAL[dlt]
    if LINKTYPE_MATCHING_MIN <= dlt <= LINKTYPE_MATCHING_MAX:
        return dlt
    if dlt in _DLT_SAME_BELOW_MATCHING:
        return dlt
    return None


def name_of(linktype: int) -> str:
    """libpcap's name of a file's link type, e.g. 1 -> 'EN10MB', 101 -> 'RAW';
    the decimal value when libpcap has no name for it (value_of() reads that back)."""
    name = _NAME_OF_DLT.get(dlt_of(linktype))
    return name if name is not None else str(int(linktype) & 0xFFFFFFFF)


def value_of(name: str | int) -> int:
    """The LINKTYPE value (what a file stores) for a libpcap DLT name, case-insensitive
    as pcap_datalink_name_to_val, e.g. 'EN10MB' -> 1, 'RAW' -> 101, 'LINUX_SLL' -> 113;
    a decimal or 0x number is taken as a LINKTYPE value as is."""
    if isinstance(name, int):
        return _check_value(name, str(name))
    text = str(name).strip()
    dlt = _DLT_OF_NAME.get(text.upper())
    if dlt is not None:
        lt = linktype_of_dlt(dlt)
        return lt if lt is not None else dlt
    try:
        v = int(text, 0)
    except ValueError:
        raise UsageError(f"unknown link type {name!r} (expected a libpcap name such as "
                         f"EN10MB, LINUX_SLL, RAW, or a number)") from None
    return _check_value(v, text)


def _check_value(v: int, text: str) -> int:
    if not 0 <= v <= 0xFFFFFFFF:
        raise UsageError(f"link type {text} does not fit 32 bits")
    return v


def names() -> list[str]:
    """Every DLT name libpcap 1.10.3 knows, in DLT order."""
    return [n for _, n in _DLT_NAMES]


# --- snapshot lengths (pcap-common.c max_snaplen_for_dlt, pcap.c pcap_adjust_snapshot) ---
MAXIMUM_SNAPLEN = 262144
_MAX_SNAPLEN = {231: 128 * 1024 * 1024,   # DLT_DBUS
                279: 8 * 1024 * 1024,     # DLT_EBHSCR
                249: 1024 * 1024}         # DLT_USBPCAP


def max_snaplen_for_dlt(dlt: int) -> int:
    """Largest captured length libpcap accepts for a DLT (max_snaplen_for_dlt)."""
    return _MAX_SNAPLEN.get(int(dlt), MAXIMUM_SNAPLEN)


def adjust_snapshot(dlt: int, snaplen: int) -> int:
    """libpcap 1.10.3's pcap_adjust_snapshot: 0 or more than INT_MAX means the DLT's
    maximum; other values stay, even above that maximum (libpcap's own XXX comment)."""
    if snaplen == 0 or snaplen > 0x7FFFFFFF:
        return max_snaplen_for_dlt(dlt)
    return int(snaplen)


def _constants() -> dict[str, int]:
    # LINKTYPE_<name> for every DLT name, valued as the file stores it; plus the
    # LINKTYPE_* names that differ from their DLT names (pcap-common.c).
    out = {}
    for dlt, name in _DLT_NAMES:
        lt = linktype_of_dlt(dlt)
        out["LINKTYPE_" + name] = lt if lt is not None else dlt
    out.update(LINKTYPE_ETHERNET=1, LINKTYPE_IEEE802_5=6, LINKTYPE_ARCNET_BSD=7,
               LINKTYPE_PPP_HDLC=50, LINKTYPE_IEEE802_11_PRISM=119,
               LINKTYPE_IEEE802_11_RADIOTAP=127, LINKTYPE_IEEE802_11_AVS=163,
               LINKTYPE_CAN20B=190, LINKTYPE_EXP_ETHERNET=2, LINKTYPE_AX25=3,
               LINKTYPE_PRONET=4, LINKTYPE_CHAOS=5)
    return out


globals().update(_constants())
# The common ones spelled out, for readers and linters.
LINKTYPE_NULL = 0
LINKTYPE_EN10MB = LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIO = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_USB_LINUX = 189
LINKTYPE_USB_LINUX_MMAPPED = 220
LINKTYPE_LINUX_SLL2 = 276
