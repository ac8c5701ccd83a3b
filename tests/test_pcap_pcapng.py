"""pcapng reading: crafted files.  Where libpcap 1.10.3 reads the file, it is the oracle
(timestamps from if_tsresol/if_tsoffset, SPB and PB lengths, skipped blocks, both byte
orders).  Where bpfkit reads further than libpcap by design (sections of different byte
order, interfaces of different link types or snaplens), the expected values are derived
next to each case."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import oracles
import pcap_craft as C
from bpfkit.errors import CaptureError
from bpfkit.pcap import open_capture, read_capture

D1 = bytes(range(1, 21))
D2 = bytes(range(100, 140))
D3 = b"\xaa" * 7


def _ours(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # none of these files is damaged
        r = open_capture(path, **kw)
        batches = list(r)
    return r, batches


def _packets(batches):
    return [(int(t), int(c), int(w), bytes(b.packet(i)))
            for b in batches for i, (t, c, w) in enumerate(zip(b.ts_ns, b.caplen, b.wirelen))]


def _both_orders(make):
    return [pytest.param(make(False), id="little"), pytest.param(make(True), id="big")]


def _tsresol_file(big):
    o = dict(big=big)
    return (C.shb(**o) +
            C.idb(1, 65535, tsresol=9, **o) +                     # ns
            C.idb(1, 65535, tsresol=0x80 | 20, **o) +             # 2^-20 s
            C.idb(1, 65535, tsresol=3, tsoffset=1_000_000, **o) +  # ms, +1e6 s
            C.idb(1, 65535, tsoffset=-5, **o) +                   # default µs, -5 s
            C.idb(1, 65535, tsresol=0x80 | 40, **o) +             # 2^-40 s
            C.epb(0, 1_500_000_000_123, D1, **o) +
            C.epb(1, 3 * 2**20 + 2**19, D1, **o) +
            C.epb(1, 1, D2, **o) +
            C.epb(2, 1234, D3, **o) +
            C.epb(3, 7_000_001, D1, **o) +
            C.epb(4, (9 << 40) + 12345, D2, **o))


# ts_ns derived from the tick counts above (sec = t / res + offset, frac scaled to ns,
# truncating): 1500 s + 123 ns; 3.5 s; 1e9 / 2^20 = 953.67 -> 953 ns; 1.234 s + 1e6 s;
# 7.000001 s - 5 s; 9 s + 12345 * 1e9 / 2^40 = 11.23 -> 11 ns
TSRESOL_NS = [1_500_000_000_123, 3_500_000_000, 953, (1_000_001) * 10**9 + 234_000_000,
              2_000_001_000, 9 * 10**9 + 11]


@pytest.mark.parametrize("data", _both_orders(_tsresol_file))
def test_tsresol_and_tsoffset(tmp_path, data):
    p = tmp_path / "ts.pcapng"
    p.write_bytes(data)
    r, batches = _ours(p)
    got = _packets(batches)
    assert [g[0] for g in got] == TSRESOL_NS
    assert len(batches) == 1 and batches[0].ts_nanos        # ns and 2^-20 are finer than µs
    assert (r.format, r.linktype, r.snaplen, r.ts_nanos) == ("pcapng", 1, 65535, True)


@pytest.mark.tcpdump
@pytest.mark.parametrize("data", _both_orders(_tsresol_file))
def test_tsresol_and_tsoffset_libpcap(tmp_path, data):
    p = tmp_path / "ts.pcapng"
    p.write_bytes(data)
    lp = oracles.libpcap_read(str(p))
    assert lp.error is None and lp.open_error is None
    assert [t for t, *_ in lp.packets] == TSRESOL_NS
    assert [(c, w, d) for _, c, w, d in lp.packets] == [x[1:] for x in _packets(_ours(p)[1])]


def _blocks_file(big):
    o = dict(big=big)
    return (C.shb(opts=[(1, b"a comment")], **o) +
            C.block(0xBAD, b"custom block", **o) +               # unknown: skipped
            C.idb(1, 8, tsresol=6, opts=[(2, b"eth0")], **o) +   # snaplen 8
            C.block(4, b"\x00" * 8, **o) +                       # name resolution
            C.spb(D1[:8], wirelen=20, **o) +                     # caplen min(20, 8)
            C.spb(D3[:5], wirelen=5, **o) +                      # caplen 5
            C.block(5, b"\x00" * 20, **o) +                      # interface statistics
            C.pb(0, 2_000_000, D1[:6], wirelen=60, **o) +        # obsolete packet block
            C.block(10, b"secrets!", **o) +                      # decryption secrets
            C.epb(0, 3_000_000, D1[:8], **o))


@pytest.mark.parametrize("data", _both_orders(_blocks_file))
def test_spb_pb_and_skipped_blocks(tmp_path, data):
    p = tmp_path / "b.pcapng"
    p.write_bytes(data)
    r, batches = _ours(p)
    # SPBs carry no time stamp (0) and take interface 0's snaplen (8) as the limit
    assert _packets(batches) == [(0, 8, 20, D1[:8]), (0, 5, 5, D3[:5]),
                                 (2 * 10**9, 6, 60, D1[:6]), (3 * 10**9, 8, 8, D1[:8])]
    assert r.snaplen == 8 and not r.ts_nanos


@pytest.mark.tcpdump
@pytest.mark.parametrize("data", _both_orders(_blocks_file))
def test_spb_pb_and_skipped_blocks_libpcap(tmp_path, data):
    p = tmp_path / "b.pcapng"
    p.write_bytes(data)
    lp = oracles.libpcap_read(str(p))
    assert lp.error is None and lp.snapshot == 8
    assert [tuple(x) for x in lp.packets] == _packets(_ours(p)[1])


@pytest.mark.tcpdump
def test_several_sections_same_order_libpcap(tmp_path):
    p = tmp_path / "s.pcapng"
    p.write_bytes(C.shb() + C.idb(113, 100) + C.epb(0, 5, D1) +
                  C.shb() + C.idb(113, 100, tsresol=9) + C.epb(0, 5, D2) + C.epb(0, 6, D3))
    lp = oracles.libpcap_read(str(p))
    assert lp.error is None
    r, batches = _ours(p)
    assert [tuple(x) for x in lp.packets] == _packets(batches)
    assert [t for t, *_ in lp.packets] == [5000, 5, 6]      # µs, then ns in section 2


def test_sections_of_different_byte_order(tmp_path):
    """libpcap stops here ("sections with different byte orders"); bpfkit reads every
    section in its own order: each EPB's ticks are µs of the interface of its section."""
    p = tmp_path / "s.pcapng"
    p.write_bytes(C.shb() + C.idb(1, 100) + C.epb(0, 1_000_001, D1) +
                  C.shb(big=True) + C.idb(1, 100, big=True) + C.epb(0, 2_000_002, D2, big=True) +
                  C.pb(0, 3, D3, big=True) +
                  C.shb() + C.idb(1, 100, tsresol=9) + C.epb(0, 4, D1))
    r, batches = _ours(p)
    assert _packets(batches) == [(1_000_001_000, 20, 20, D1), (2_000_002_000, 40, 40, D2),
                                 (3000, 7, 7, D3), (4, 20, 20, D1)]
    assert len(batches) == 1
    assert read_capture(p).packets() == [D1, D2, D3, D1]


def _mixed_linktypes():
    return (C.shb() + C.idb(1, 1000) + C.idb(113, 2000, tsresol=9) +
            C.epb(0, 1, D1) + C.epb(1, 2, D2) + C.epb(0, 3, D3) + C.epb(0, 4, D1) +
            C.epb(1, 5, D3))


def test_interfaces_of_different_link_types_split_batches(tmp_path):
    p = tmp_path / "m.pcapng"
    p.write_bytes(_mixed_linktypes())
    r, batches = _ours(p)
    # one batch per run of one link type, in file order; each with its interface's
    # snaplen and precision (interface 0: µs, interface 1: ns)
    assert [(b.linktype, len(b), b.snaplen, b.ts_nanos) for b in batches] == \
        [(1, 1, 1000, False), (113, 1, 2000, True), (1, 2, 1000, False), (113, 1, 2000, True)]
    assert [b.packets() for b in batches] == [[D1], [D2], [D3, D1], [D3]]
    assert [int(t) for b in batches for t in b.ts_ns] == [1000, 2, 3000, 4000, 5]
    # streaming with tiny batches gives the same runs, cut further
    small = list(open_capture(p, batch_packets=1))
    assert [b.linktype for b in small] == [1, 113, 1, 1, 113]


def test_read_capture_of_mixed_link_types(tmp_path):
    p = tmp_path / "m.pcapng"
    p.write_bytes(_mixed_linktypes())
    with pytest.raises(CaptureError, match=r"EN10MB \(1\), LINUX_SLL \(113\)"):
        read_capture(p)
    sll = read_capture(p, linktype="LINUX_SLL")
    assert (sll.linktype, sll.packets(), sll.snaplen) == (113, [D2, D3], 2000)
    eth = read_capture(p, linktype=1)
    assert eth.packets() == [D1, D3, D1]
    assert len(read_capture(p, linktype=228)) == 0


@pytest.mark.tcpdump
def test_libpcap_stops_at_second_link_type(tmp_path):
    """The reason for the design: libpcap refuses the second interface."""
    p = tmp_path / "m.pcapng"
    p.write_bytes(_mixed_linktypes())
    lp = oracles.libpcap_read(str(p))
    assert "different from the type of the first interface" in (lp.error or "")


def test_interfaces_of_different_snaplen_share_a_batch(tmp_path):
    """Same link type, snaplens 10 and 20: one batch, the larger snaplen; each packet is
    checked against its own interface's snaplen (a 20-byte packet on interface 0 is an
    error, as libpcap's 'bigger than snaplen')."""
    p = tmp_path / "s.pcapng"
    p.write_bytes(C.shb() + C.idb(1, 10) + C.idb(1, 20) +
                  C.epb(0, 1, D1[:10]) + C.epb(1, 2, D1) + C.epb(0, 3, D1))
    with pytest.warns(Warning, match="invalid packet capture length 20, bigger than snaplen of 10"):
        r = open_capture(p)
        batches = list(r)
    assert [(len(b), b.snaplen) for b in batches] == [(2, 20)]
    assert r.problems[0].records == 2


def test_epb_options_and_padding(tmp_path):
    """An EPB with options after padded data: the data is caplen bytes, options ignored."""
    body = (np.array([0, 0, 77, 3, 3], "<u4").tobytes() + D3[:3] + b"\0" +
            C.options([(1, b"packet comment")]))
    p = tmp_path / "o.pcapng"
    p.write_bytes(C.shb() + C.idb() + C.block(6, body))
    r, batches = _ours(p)
    assert _packets(batches) == [(77_000, 3, 3, D3[:3])]


@pytest.mark.tcpdump
def test_fine_binary_resolution_is_exact_where_libpcap_overflows(tmp_path):
    """With if_tsresol 2^-40, half a second is 2^39 ticks.  libpcap computes
    frac * 10^9 in 64 bits, which overflows for fractions above 2^64 / 10^9 ticks;
    bpfkit computes it exactly: 0.5 s.  (A known libpcap bug; bpfkit does not copy it.)"""
    p = tmp_path / "f.pcapng"
    p.write_bytes(C.shb() + C.idb(1, 100, tsresol=0x80 | 40) + C.epb(0, (3 << 40) + (1 << 39), D1))
    r, batches = _ours(p)
    assert int(batches[0].ts_ns[0]) == 3_500_000_000
    lp = oracles.libpcap_read(str(p))
    wrapped = ((1 << 39) * 10**9 % (1 << 64)) >> 40           # libpcap's 64-bit product
    assert lp.packets[0][0] == 3 * 10**9 + wrapped != 3_500_000_000
