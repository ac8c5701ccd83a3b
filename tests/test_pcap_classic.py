"""Classic pcap variants libpcap 1.10.3 reads (sf-pcap.c), crafted by hand, with libpcap
as the oracle: both byte orders and precisions, the old caplen/len order of versions
< 2.3 and the ambiguous 2.3, DG/UX 543.0, Kuznetzov's 24-byte record headers, records
longer than the snaplen (cut to it), snaplen 0, and the signedness of the time fields."""
from __future__ import annotations

import struct

import pytest

import oracles
import pcap_craft as C
from bpfkit.errors import BpfError
from bpfkit.pcap import open_capture, read_capture

pytestmark = pytest.mark.tcpdump

D = [bytes(range(k, k + n)) for k, n in ((0, 20), (50, 7), (3, 60), (9, 1))]


def _ours(path):
    b = read_capture(path)
    return [(int(t), int(c), int(w), bytes(b.packet(i)))
            for i, (t, c, w) in enumerate(zip(b.ts_ns, b.caplen, b.wirelen))], b


def _check(path):
    lp = oracles.libpcap_read(str(path))
    assert lp.open_error is None and lp.error is None, (lp.open_error, lp.error)
    ours, b = _ours(path)
    assert ours == [tuple(x) for x in lp.packets]
    r = open_capture(path)
    assert (r.snaplen, b.snaplen) == (lp.snapshot, lp.snapshot)
    return ours


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("version", [(2, 0), (2, 2), (2, 3), (2, 4), (543, 0)])
def test_length_order_by_version(tmp_path, big, version):
    """Before 2.3 (and in 543.0) the two length fields are (len, caplen); 2.3 files exist
    both ways and libpcap swaps them when the first is larger.  Each record holds as
    many data bytes as the version's rule makes its caplen."""
    o = ">" if big else "<"
    old_order = version[0] == 543 or version[1] < 3
    body = b""
    for k, d in enumerate(D):
        first, second = len(d), len(d) + 5
        if version == (2, 3) and k % 2:
            first, second = second, first        # stored the old way round
        cap = min(first, second) if version == (2, 3) else second if old_order else first
        body += struct.pack(o + "IIII", 100 + k, k, first, second) + bytes(range(cap))
    p = tmp_path / "v.pcap"
    p.write_bytes(C.pcap_header(big=big, version=version, snaplen=1000) + body)
    ours = _check(p)
    # old order: caplen is the second field (len + 5 here), len the first
    assert [(c, w) for _, c, w, _ in ours] == \
        [(len(d) + 5, len(d)) if old_order else (len(d), len(d) + 5) for d in D]


@pytest.mark.parametrize("big", [False, True])
def test_kuznetzov_24_byte_records(tmp_path, big):
    o = ">" if big else "<"
    body = b"".join(struct.pack(o + "IIIIIHBx", 7, k, len(d), len(d) + 1, 3, 0x800, 4) + d
                    for k, d in enumerate(D))
    for lt in (1, 113):
        p = tmp_path / f"k{lt}.pcap"
        p.write_bytes(C.pcap_header(big=big, magic=0xA1B2CD34, linktype=lt, snaplen=30) + body)
        ours = _check(p)      # EN10MB: libpcap allows snaplen + 14 (a cooked capture)
        assert [c for _, c, _, _ in ours] == [min(len(d), 30 + (14 if lt == 1 else 0))
                                              for d in D]


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_records_longer_than_snaplen_are_cut(tmp_path, big, nanos):
    p = tmp_path / "s.pcap"
    p.write_bytes(C.pcap([(1, 2, d) for d in D], big=big, nanos=nanos, snaplen=8))
    ours = _check(p)
    assert [c for _, c, _, _ in ours] == [8, 7, 8, 1]
    assert [w for _, _, w, _ in ours] == [20, 7, 60, 1]


@pytest.mark.parametrize("snaplen", [0, 0x80000000, 0x7FFFFFFF, 262145])
def test_snaplen_adjustment(tmp_path, snaplen):
    p = tmp_path / "z.pcap"
    p.write_bytes(C.pcap([(1, 2, d) for d in D], snaplen=snaplen))
    _check(p)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_time_field_signedness(tmp_path, big, nanos):
    """libpcap copies the fields of a native-order file as signed 32-bit values but a
    byte-swapped one through SWAPLONG, which gives unsigned values."""
    fracs = [0, 999_999, 1_000_000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    secs = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1_700_000_000]
    p = tmp_path / "t.pcap"
    p.write_bytes(C.pcap([(s, f, b"x") for s, f in zip(secs, fracs)], big=big, nanos=nanos))
    _check(p)


def test_read_capture_head_cache(shared_dir):
    """read_capture(head=N): PacketBatch.head row i starts with packet i's first
    min(N, caplen) bytes (what follows is unspecified), and the batch is otherwise the
    same as without the cache -- on real captures of several link types."""
    import numpy as np
    files = sorted((shared_dir / "pcaps").rglob("*.pcap"))[:40]
    assert files
    for path in files:
        try:
            plain = read_capture(path)
        except BpfError as e:        # a broken capture: the same error with the cache
            with pytest.raises(type(e)):
                read_capture(path, head=64)
            continue
        headed = read_capture(path, head=64)
        assert plain.head is None
        assert headed.head is not None and headed.head.shape == (len(plain), 64), path
        for col in ("offset", "caplen", "wirelen", "ts_ns"):
            assert np.array_equal(getattr(plain, col), getattr(headed, col)), (path, col)
        for i in range(len(plain)):
            n = min(64, int(plain.caplen[i]))
            assert bytes(headed.head[i, :n]) == bytes(plain.packet(i)[:n]), (path, i)
