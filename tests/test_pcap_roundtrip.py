"""Writing captures: bpfkit reads back what it writes (pcap and pcapng, µs and ns), keeps
link type, snaplen and precision, tcpdump reads what bpfkit writes (and writes it back
byte-identical in packets and timestamps), and every corpus capture survives
read -> write -> read unchanged.  Big-endian files are crafted by hand (bpfkit writes
little-endian, as libpcap does on this host)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import oracles
import pcap_craft as C
from bpfkit.errors import CaptureError, UsageError
from bpfkit.pcap import CaptureWriter, PacketBatch, open_capture, read_capture, write_capture

NS = 10**9


def _batch(nanos=True, linktype=1, snaplen=1514):
    rng = np.random.default_rng(7)
    sizes = [60, 1, 0, 1514, 300, 61, 62, 63, 64]
    pk = [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes]
    ts = [1_700_000_000 * NS + 123_456_789, 0, 5, 1_700_000_001 * NS, 2**31 * NS - 1,
          -NS, -1, 1_234_567, 999]
    wl = [max(s, 1) + k for k, s in enumerate(sizes)]
    return PacketBatch.from_packets(pk, ts_ns=ts, wirelen=wl, linktype=linktype,
                                    snaplen=snaplen, ts_nanos=nanos)


def _rows(b: PacketBatch):
    return [(int(t), int(c), int(w), bytes(b.packet(i)))
            for i, (t, c, w) in enumerate(zip(b.ts_ns, b.caplen, b.wirelen))]


def _us(ts):
    return ts // 1000 * 1000          # floor to µs, as the writer does


@pytest.mark.parametrize("nanos", [True, False])
def test_pcap_round_trip(tmp_path, nanos):
    b = _batch(nanos)
    p = tmp_path / "o.pcap"
    assert write_capture(p, b) == len(b)
    back = read_capture(p)
    want = [(t if nanos else _us(t), c, w, d) for t, c, w, d in _rows(b)]
    assert _rows(back) == want
    assert (back.linktype, back.snaplen, back.ts_nanos) == (1, 1514, nanos)
    f = C.parse_pcap(p.read_bytes())
    assert (f.magic, f.version, f.snaplen, f.linktype, f.big) == \
        (0xA1B23C4D if nanos else 0xA1B2C3D4, (2, 4), 1514, 1, False)


@pytest.mark.parametrize("nanos", [True, False])
def test_pcapng_round_trip(tmp_path, nanos):
    b = _batch(nanos)
    keep = b.ts_ns >= 0                  # pcapng time stamps are unsigned
    b = b[keep]
    p = tmp_path / "o.pcapng"
    write_capture(p, b, format="pcapng")
    r = open_capture(p)
    back = list(r)
    assert r.format == "pcapng" and len(back) == 1
    want = [(t if nanos else _us(t), c, w, d) for t, c, w, d in _rows(b)]
    assert _rows(back[0]) == want
    assert (back[0].linktype, back[0].snaplen, back[0].ts_nanos) == (1, 1514, nanos)


def test_writer_keeps_fcs_bits_and_snaplen(tmp_path):
    p = tmp_path / "f.pcap"
    b = _batch(linktype=0x24000001, snaplen=96)
    write_capture(p, b)
    f = C.parse_pcap(p.read_bytes())
    assert (f.linktype, f.snaplen) == (0x24000001, 96)
    assert read_capture(p).linktype == 0x24000001


def test_write_iterable_and_explicit_options(tmp_path):
    b = _batch()
    p = tmp_path / "i.pcap"
    n = write_capture(p, [b[:3], b[3:5], b[5:]], linktype="EN10MB", snaplen=65535, nanos=True)
    assert n == len(b)
    back = read_capture(p)
    assert _rows(back) == _rows(b) and back.snaplen == 65535
    empty = tmp_path / "e.pcap"
    assert write_capture(empty, []) == 0
    f = C.parse_pcap(empty.read_bytes())
    assert (f.linktype, f.snaplen, f.records) == (1, 262144, [])


def test_pcap_writer_refuses_a_second_link_type(tmp_path):
    with CaptureWriter(tmp_path / "x.pcap", linktype=1) as w:
        w.write(_batch())
        with pytest.raises(CaptureError, match="one link type"):
            w.write(_batch(linktype=113))


def test_pcapng_writer_adds_interfaces(tmp_path):
    p = tmp_path / "x.pcapng"
    with CaptureWriter(p, format="pcapng", linktype=1, nanos=True) as w:
        a, b = _batch(), _batch(linktype=113, snaplen=200)
        a, b = a[a.ts_ns >= 0], b[b.ts_ns >= 0]
        w.write(a[:2])
        w.write(b[:3])
        w.write(a[2:])
    batches = list(open_capture(p))
    assert [(x.linktype, len(x)) for x in batches] == [(1, 2), (113, 3), (1, len(a) - 2)]
    assert batches[1].snaplen == 200


def test_timestamps_a_format_cannot_hold(tmp_path):
    b = PacketBatch.from_packets([b"x"], ts_ns=[2**31 * NS])        # 2038-01-19
    with pytest.raises(CaptureError, match="32-bit seconds"):
        write_capture(tmp_path / "t.pcap", b)
    write_capture(tmp_path / "t.pcapng", b, format="pcapng")        # pcapng holds it
    assert int(read_capture(tmp_path / "t.pcapng").ts_ns[0]) == 2**31 * NS
    neg = PacketBatch.from_packets([b"x"], ts_ns=[-1])
    with pytest.raises(CaptureError, match="negative"):
        write_capture(tmp_path / "n.pcapng", neg, format="pcapng")


def test_writer_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        CaptureWriter(tmp_path / "x", format="erf")
    with pytest.raises(UsageError):
        CaptureWriter(tmp_path / "x", format="pcapng", linktype=0x24000001)
    with pytest.raises(CaptureError, match="cannot create"):
        CaptureWriter(tmp_path / "no" / "such" / "dir.pcap")


def test_file_objects_and_stdout(tmp_path):
    buf = io.BytesIO()
    with CaptureWriter(buf, nanos=True) as w:
        w.write(_batch())
    assert _rows(read_capture(buf.getvalue())) == _rows(_batch())
    src = tmp_path / "s.pcap"
    write_capture(src, _batch())
    code = ("import sys; from bpfkit.pcap import read_capture, write_capture; "
            "write_capture('-', read_capture('-'))")
    out = subprocess.run([sys.executable, "-c", code], input=src.read_bytes(),
                         capture_output=True, check=True).stdout
    assert out == src.read_bytes()


@pytest.mark.parametrize("nanos", [False, True])
def test_big_endian_classic_files(tmp_path, nanos):
    """Hand-made big-endian files: µs and ns, linktype and snaplen from the header."""
    recs = [(1_700_000_000, 999_999, b"abc"), (1_700_000_001, 5, b"", 60), (7, 1, bytes(70))]
    p = tmp_path / "be.pcap"
    p.write_bytes(C.pcap(recs, big=True, nanos=nanos, linktype=113, snaplen=70))
    b = read_capture(p)
    k = 1 if nanos else 1000
    assert _rows(b) == [(1_700_000_000 * NS + 999_999 * k, 3, 3, b"abc"),
                        (1_700_000_001 * NS + 5 * k, 0, 60, b""),
                        (7 * NS + k, 70, 70, bytes(70))]
    assert (b.linktype, b.snaplen, b.ts_nanos) == (113, 70, nanos)


@pytest.mark.tcpdump
@pytest.mark.parametrize("nanos", [False, True])
def test_big_endian_classic_files_libpcap(tmp_path, nanos):
    recs = [(1_700_000_000, 999_999, b"abc"), (1_700_000_001, 5, b"", 60), (7, 1, bytes(70))]
    p = tmp_path / "be.pcap"
    p.write_bytes(C.pcap(recs, big=True, nanos=nanos, linktype=1, snaplen=70))
    lp = oracles.libpcap_read(str(p))
    assert [tuple(x) for x in lp.packets] == _rows(read_capture(p))


def _tcpdump_rewrite(src, dst):
    return subprocess.run(["tcpdump", "--time-stamp-precision=nano", "-r", str(src), "-w",
                           str(dst)], capture_output=True, text=True)


@pytest.mark.tcpdump
@pytest.mark.parametrize("fmt,nanos", [("pcap", False), ("pcap", True), ("pcapng", False),
                                       ("pcapng", True)])
def test_tcpdump_reads_what_bpfkit_writes(tmp_path, fmt, nanos):
    b = _batch(nanos, snaplen=65535)
    b = b[b.ts_ns >= 0]
    ours = tmp_path / f"ours.{fmt}"
    theirs = tmp_path / "theirs.pcap"
    write_capture(ours, b, format=fmt)
    run = _tcpdump_rewrite(ours, theirs)
    assert run.returncode == 0, run.stderr
    f = C.parse_pcap(theirs.read_bytes())
    want = [(t if nanos else _us(t), c, w, d) for t, c, w, d in _rows(b)]
    assert [(s * NS + fr, c, w, d) for s, fr, c, w, d in f.records] == want
    assert (f.linktype, f.snaplen) == (1, 65535)
    if fmt == "pcap":
        # and what tcpdump writes back is what bpfkit wrote, once both are nanosecond
        assert _rows(read_capture(theirs)) == _rows(read_capture(ours))


def test_every_corpus_capture_round_trips(shared_dir, tmp_path):
    """read -> write (pcap, and pcapng where the file was one) -> read: same packets,
    link type, snaplen and precision."""
    d = shared_dir / "pcaps" / "tcpdump-tests"
    out = tmp_path / "rt"
    n = 0
    for name in sorted(os.listdir(d)):
        if not name.endswith((".pcap", ".pcapng")):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = open_capture(d / name)
            batches = list(r)
        if not batches:
            continue
        fmt = r.format
        write_capture(out, batches, format=fmt)
        again = list(open_capture(out))
        assert [_rows(x) for x in again] == [_rows(x) for x in batches], name
        assert [(x.linktype, x.snaplen, x.ts_nanos) for x in again] == \
            [(x.linktype, x.snaplen, x.ts_nanos) for x in batches], name
        n += 1
    assert n > 800
