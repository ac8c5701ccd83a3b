"""libpcap's per-packet post-processing (pcap-common.c pcap_post_process): pseudo-headers
written in the capturing host's byte order are swapped for big-endian files, and the
on-the-wire length of Linux USB isochronous completions is recomputed.  libpcap 1.10.3
is the oracle: every packet is cut at every possible caplen, so each "is this field
captured" condition is exercised."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import oracles
import pcap_craft as C
from bpfkit.pcap import read_capture

pytestmark = pytest.mark.tcpdump


def _sll(proto: int) -> bytes:
    return bytes(14) + struct.pack(">H", proto) + bytes(range(1, 13))


def _sll2(proto: int) -> bytes:
    return struct.pack(">H", proto) + bytes(18) + bytes(range(1, 13))


def _pflog(hlen: int) -> bytes:
    return bytes([hlen]) + bytes(range(1, 64)) + b"tail"


def _usb(header64: bool, iso: bool, ndesc: int = 2) -> bytes:
    h = bytearray(range(64 if header64 else 48))
    h[9] = 0 if iso else 2                       # transfer_type: isochronous or bulk
    if header64:
        h[60:64] = struct.pack(">I", ndesc)      # ndesc, in the (big-endian) writer's order
        descs = b"".join(struct.pack(">iIII", -k, 16 * k, 8, 0) for k in range(ndesc))
        return bytes(h) + descs + b"data"
    return bytes(h) + b"data"


def _nflog(tlv_lens) -> bytes:
    out = bytes([0, 0, 0, 1])                    # version 0
    for n in tlv_lens:
        out += struct.pack(">HH", n, 7) + bytes((n - 4 + 3) // 4 * 4) if n >= 4 else \
            struct.pack(">HH", n, 7)
    return out


PACKETS = {
    113: [_sll(0x000C), _sll(0x000D), _sll(0x0800)],
    276: [_sll2(0x000C), _sll2(0x000D), _sll2(0x86DD)],
    117: [_pflog(64), _pflog(50), _pflog(45), _pflog(0)],
    189: [_usb(False, True), _usb(False, False)],
    220: [_usb(True, True, 2), _usb(True, False, 1), _usb(True, True, 0)],
    239: [_nflog([8, 12, 5]), _nflog([2]), _nflog([8, 0]), bytes([1, 0, 0, 0]) + bytes(8)],
    1: [bytes(range(40))],                        # nothing to do for Ethernet
}


def _cuts(pkt: bytes):
    """(data, wirelen) for every caplen 0..len and a wirelen shorter than caplen."""
    for k in range(len(pkt) + 1):
        yield pkt[:k], len(pkt)
    yield pkt, 10


@pytest.mark.parametrize("dlt", sorted(PACKETS))
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_big_endian_pseudo_headers_equal_libpcap(tmp_path, dlt, fmt):
    recs = [(i, 0, d, wl) for i, (d, wl) in
            enumerate(x for pkt in PACKETS[dlt] for x in _cuts(pkt))]
    p = tmp_path / f"be.{fmt}"
    if fmt == "pcap":
        p.write_bytes(C.pcap(recs, big=True, linktype=dlt, snaplen=65535))
    else:
        p.write_bytes(C.shb(big=True) + C.idb(dlt, 65535, big=True) +
                      b"".join(C.epb(0, t, d, wirelen=wl, big=True) for t, _, d, wl in recs))
    lp = oracles.libpcap_read(str(p))
    assert lp.error is None
    b = read_capture(p)
    ours = [(int(t), int(c), int(w), bytes(b.packet(i)))
            for i, (t, c, w) in enumerate(zip(b.ts_ns, b.caplen, b.wirelen))]
    assert ours == [tuple(x) for x in lp.packets]
    if dlt != 1:
        # the file itself is never written: the batch has its own buffer
        assert not np.shares_memory(b.buf, np.frombuffer(p.read_bytes(), np.uint8))


def _iso_completion(ndesc: int, descs, urb_len: int, *, event=b"C", endpoint=0x81,
                    data_flag=0) -> tuple[bytes, int]:
    """A little-endian usbmon mmapped header of an isochronous completion, and the
    wire length the old libpcap computed for it (64 + ndesc*16 + urb_len)."""
    h = bytearray(64)
    h[8] = event[0]
    h[9] = 0                                     # URB_ISOCHRONOUS
    h[10] = endpoint
    h[15] = data_flag
    h[32:36] = struct.pack("<I", urb_len)
    h[60:64] = struct.pack("<I", ndesc)
    body = b"".join(struct.pack("<iIII", 0, off, ln, 0) for off, ln in descs)
    return bytes(h) + body, 64 + ndesc * 16 + urb_len


USB_ISO = [
    _iso_completion(3, [(0, 100), (100, 0), (200, 50)], 1000),       # data ends at 250
    _iso_completion(2, [(0, 10), (4000, 2000)], 100),                # ends past urb_len
    _iso_completion(2, [(0, 10), (20, 10)], 100, event=b"S"),        # not a completion
    _iso_completion(2, [(0, 10), (20, 10)], 100, endpoint=0x01),     # OUT endpoint
    _iso_completion(2, [(0, 10), (20, 10)], 100, data_flag=1),       # no data
    _iso_completion(1, [(0xFFFFFFF0, 0x20)], 10),                    # 32-bit wrap
]


@pytest.mark.parametrize("big", [False, True])
def test_usb_mmapped_length_fixup_equals_libpcap(tmp_path, big):
    recs = []
    for hdr, wl in USB_ISO:
        pkt = hdr + bytes(300)
        for k in (0, 63, 64, 64 + 15, 64 + 16, 64 + 40, len(hdr), len(pkt)):
            recs.append((len(recs), 0, pkt[:k], wl))
            recs.append((len(recs), 0, pkt[:k], wl + 1))           # length does not match
    if big:
        # a big-endian writer stores the header fields big-endian: swap them here so
        # that libpcap's swap gives back the values above
        def swap(d):
            d = bytearray(d)
            for at, w in ((0, 8), (12, 2), (16, 8), (24, 4), (28, 4), (32, 4), (36, 4),
                          (40, 4), (44, 4), (48, 4), (52, 4), (56, 4), (60, 4)):
                if len(d) >= at + w:
                    d[at:at + w] = d[at:at + w][::-1]
            if len(d) >= 64:
                n = struct.unpack_from(">I", d, 60)[0]
                for i in range(n):
                    for k in range(3):
                        at = 64 + 16 * i + 4 * k
                        if len(d) >= at + 4:
                            d[at:at + 4] = d[at:at + 4][::-1]
            return bytes(d)
        recs = [(t, f, swap(d), wl) for t, f, d, wl in recs]
    p = tmp_path / "usb.pcap"
    p.write_bytes(C.pcap(recs, big=big, linktype=220, snaplen=65535))
    lp = oracles.libpcap_read(str(p))
    b = read_capture(p)
    ours = [(int(c), int(w), bytes(b.packet(i)))
            for i, (c, w) in enumerate(zip(b.caplen, b.wirelen))]
    assert ours == [(c, w, d) for _, c, w, d in lp.packets]
    # the fix-up did change some lengths (the cases above are not all no-ops)
    assert any(w != r[3] for (_, w, _), r in zip(ours, recs))
