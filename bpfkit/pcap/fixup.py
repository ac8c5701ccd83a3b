"""libpcap's per-packet post-processing of savefile data (pcap-common.c:
pcap_post_process = swap_pseudo_headers when the file's byte order is not the host's,
then fixup_pcap_pkthdr).

Some link types carry a pseudo-header written in the *capturing host's* byte order.
libpcap 1.10.3 rewrites those fields into the reading host's order (checked against the
installed libpcap in tests/test_pcap_fixup.py), so filters and `tcpdump -w` see them in
host order.  A batch that needs this gets its own copy of the packet bytes; the file is
never written.

These link types are rare, so the work is a loop per packet, run only for them.
"""
from __future__ import annotations

import struct
import sys

import numpy as np

from .batch import PacketBatch

DLT_PFLOG = 117
DLT_LINUX_SLL = 113
DLT_USB_LINUX = 189
DLT_USB_LINUX_MMAPPED = 220
DLT_NFLOG = 239
DLT_LINUX_SLL2 = 276

SWAPPED_DLTS = frozenset({DLT_PFLOG, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_USB_LINUX,
                          DLT_USB_LINUX_MMAPPED, DLT_NFLOG})

LINUX_SLL_P_CAN = 0x000C
LINUX_SLL_P_CANFD = 0x000D
USB_MMAPPED_HDR = 64          # sizeof(pcap_usb_header_mmapped)
USB_ISODESC = 16              # sizeof(usb_isodesc)
URB_ISOCHRONOUS = 0
URB_COMPLETE = ord("C")
URB_TRANSFER_IN = 0x80
_HOST = "<" if sys.byteorder == "little" else ">"     # pseudo-header fields after the swap


def swapped(file_big_endian: bool) -> bool:
    """Is a file (or pcapng section) of this byte order "swapped" for this host?"""
    return file_big_endian != (sys.byteorder == "big")


def needed(dlt: int, swapped: bool) -> bool:
    return dlt == DLT_USB_LINUX_MMAPPED or (swapped and dlt in SWAPPED_DLTS)


def apply(batch: PacketBatch, dlt: int, swapped: bool) -> PacketBatch:
    """The batch as libpcap hands it over: pseudo-headers in host order, and the USB
    mmapped on-the-wire length fixed."""
    if not needed(dlt, swapped) or len(batch) == 0:
        return batch
    c = batch.compact()
    buf = bytearray(c.buf.tobytes())
    wirelen = c.wirelen.copy()
    offs = c.offset.tolist()
    caps = c.caplen.tolist()
    for i, (o, cap) in enumerate(zip(offs, caps)):
        pkt = memoryview(buf)[o:o + cap]
        wl = int(wirelen[i])
        if swapped:
            _swap(dlt, pkt, cap, wl)
        if dlt == DLT_USB_LINUX_MMAPPED:
            wirelen[i] = _usb_mmapped_len(pkt, cap, wl)
    return PacketBatch(np.frombuffer(bytes(buf), np.uint8), c.offset, c.caplen, wirelen,
                       c.ts_ns, c.linktype, c.snaplen, c.ts_nanos)


# --- swap_pseudo_headers ---------------------------------------------------------

def _swap32(p: memoryview, at: int) -> None:
    p[at:at + 4] = bytes(p[at:at + 4])[::-1]


def _swap16(p: memoryview, at: int) -> None:
    p[at:at + 2] = bytes(p[at:at + 2])[::-1]


def _swap(dlt: int, p: memoryview, cap: int, wl: int) -> None:
    if dlt == DLT_LINUX_SLL:
        _swap_sll(p, cap, wl, hdrlen=16, proto_at=14)
    elif dlt == DLT_LINUX_SLL2:
        _swap_sll(p, cap, wl, hdrlen=20, proto_at=0)
    elif dlt == DLT_PFLOG:
        _swap_pflog(p, cap, wl)
    elif dlt == DLT_USB_LINUX:
        _swap_usb(p, cap, header_64=False)
    elif dlt == DLT_USB_LINUX_MMAPPED:
        _swap_usb(p, cap, header_64=True)
    elif dlt == DLT_NFLOG:
        _swap_nflog(p, cap, wl)


def _swap_sll(p, cap, wl, hdrlen, proto_at):
    """swap_linux_sll_header / swap_linux_sll2_header: the SocketCAN CAN ID."""
    if cap < hdrlen or wl < hdrlen:
        return
    proto = struct.unpack_from(">H", p, proto_at)[0]
    if proto not in (LINUX_SLL_P_CAN, LINUX_SLL_P_CANFD):
        return
    if cap < hdrlen + 4 or wl < hdrlen + 4:
        return
    _swap32(p, hdrlen)


def _swap_pflog(p, cap, wl):
    """swap_pflog_header: uid, pid, rule_uid, rule_pid of struct pfloghdr, each only if
    captured and inside the header's own length byte."""
    hlen = p[0] if cap >= 1 else 0
    for field in (44, 48, 52, 56):          # offsetof(struct pfloghdr, uid/pid/rule_uid/rule_pid)
        need = field + 4
        if cap < need or wl < need or hlen < need:
            return
        _swap32(p, field)


def _swap_usb(p, cap, header_64):
    """swap_linux_usb_header: every field past which the captured data reaches."""
    # (offset just past the field, field offset, width): a field is swapped only when
    # the captured data reaches past it
    for past, at, width in ((8, 0, 8), (14, 12, 2), (24, 16, 8), (28, 24, 4), (32, 28, 4),
                            (36, 32, 4), (40, 36, 4)):
        if cap < past:
            return
        p[at:at + width] = bytes(p[at:at + width])[::-1]
    off = 40
    iso = p[9] == URB_ISOCHRONOUS            # transfer_type
    if iso:
        for at in (40, 44):                  # s.iso.error_count, s.iso.numdesc
            off += 4
            if cap < off:
                return
            _swap32(p, at)
    else:
        off += 8                             # setup header: bytes, nothing to swap
    if not header_64:
        return
    for at in (48, 52, 56, 60):              # interval, start_frame, xfer_flags, ndesc
        off += 4
        if cap < off:
            return
        _swap32(p, at)
    if iso:
        ndesc = struct.unpack_from(_HOST + "I", p, 60)[0]
        at = 64
        for _ in range(ndesc):
            for k in range(3):               # status, offset, len; then padding
                off += 4
                if cap < off:
                    return
                _swap32(p, at + 4 * k)
            off += 4
            at += USB_ISODESC


def _swap_nflog(p, cap, wl):
    """swap_nflog_header: length and type (nflog_tlv_t, in that order) of each TLV
    after the 4-byte header."""
    if cap < 4 or wl < 4 or p[0] != 0:      # nflog_version 0 only
        return
    caplen, length, at = cap - 4, wl - 4, 4
    while caplen >= 4:
        _swap16(p, at)
        _swap16(p, at + 2)
        size = struct.unpack_from(_HOST + "H", p, at)[0]
        if size % 4:
            size += 4 - size % 4
        size &= 0xFFFF                       # uint16_t in libpcap
        if size < 4:
            return
        if caplen < size or length < size:
            return
        caplen -= size
        length -= size
        at += size


# --- fixup_pcap_pkthdr -------------------------------------------------------------

def _usb_mmapped_len(p, cap: int, wl: int) -> int:
    """fixup_pcap_pkthdr + fix_linux_usb_mmapped_length: the on-the-wire length of a
    completion event of an incoming isochronous transfer, from its descriptors."""
    if cap < USB_MMAPPED_HDR:
        return wl
    event, ttype, endpoint = p[8], p[9], p[10]
    data_flag = p[15]
    urb_len = struct.unpack_from(_HOST + "I", p, 32)[0]
    ndesc = struct.unpack_from(_HOST + "I", p, 60)[0]
    if data_flag or wl != USB_MMAPPED_HDR + ndesc * USB_ISODESC + urb_len:
        return wl
    if not (ttype == URB_ISOCHRONOUS and event == URB_COMPLETE and endpoint & URB_TRANSFER_IN):
        return wl
    left = cap - USB_MMAPPED_HDR
    data_len = 0
    d, at = 0, USB_MMAPPED_HDR
    while d < ndesc and left >= USB_ISODESC:
        off, ln = struct.unpack_from(_HOST + "II", p, at + 4)
        if ln != 0:
            end = (off + ln) & 0xFFFFFFFF
            data_len = max(data_len, end)
        d += 1
        at += USB_ISODESC
        left -= USB_ISODESC
    pre = (USB_MMAPPED_HDR + ndesc * USB_ISODESC + data_len) & 0xFFFFFFFF
    if pre >= cap:
        wl = pre
    if cap > wl:
        wl = cap
    return wl
