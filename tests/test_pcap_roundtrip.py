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


# --- the gather writer (writev of buffer slices) and extra pcapng interfaces -------

def _crafted(b: PacketBatch, fmt: str, nanos: bool, snaplen: int, ifaces=None,
             idbs=((1, 1514),)) -> bytes:
    """The file the writer must produce, built one packet at a time by pcap_craft."""
    if fmt == "pcap":
        out = C.pcap_header(linktype=b.linktype, snaplen=snaplen, nanos=nanos)
        for t, _c, w, d in _rows(b):
            sec, frac = divmod(t, NS)                   # floor, as the writer splits
            out += C.pcap_record(sec, frac if nanos else frac // 1000, d, wirelen=w)
        return out
    out = C.shb() + b"".join(C.idb(lt, sl, tsresol=9 if nanos else None) for lt, sl in idbs)
    for i, (t, _c, w, d) in enumerate(_rows(b)):
        out += C.epb(ifaces[i] if ifaces else 0, t if nanos else t // 1000, d, wirelen=w)
    return out


def _short_libc_writev(fd, ptr, count):
    """Stands in for libc writev: takes only the first third of the bytes (at least 1),
    as a pipe or a signal may, so that the writer has to resume mid-buffer."""
    import ctypes
    iov = np.ctypeslib.as_array((ctypes.c_uint64 * (2 * count)).from_address(ptr))
    data = b"".join(ctypes.string_at(int(a), int(n)) for a, n in iov.reshape(count, 2))
    return os.write(fd, data[:max(1, len(data) // 3)])


def _short_os_writev(fd, parts):
    data = b"".join(bytes(p) for p in parts)
    return os.write(fd, data[:max(1, len(data) // 3)])


@pytest.mark.parametrize("sink", ["path", "stream", "os.writev", "short libc", "short os"])
@pytest.mark.parametrize("source", ["memory", "file, same precision", "file, other precision"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gather_writer_writes_the_crafted_bytes(tmp_path, monkeypatch, fmt, source, sink):
    """Every way of handing the pieces over gives the bytes pcap_craft builds packet by
    packet: records copied whole from an input file of the same byte order and
    precision (runs broken where packets were dropped), headers made anew where the
    precision differs, and batches built in memory."""
    from bpfkit.pcap import writer as W
    nanos = True
    b = _batch(nanos)
    b = b[b.ts_ns >= 0]
    if source != "memory":
        fnanos = nanos if source == "file, same precision" else not nanos
        src = tmp_path / "in.pcap"
        write_capture(src, b, nanos=fnanos)
        b = read_capture(src)
        keep = np.array([True, True, False, True, True, False, False, True][:len(b)])
        b = b[keep]
    if sink == "os.writev":
        monkeypatch.setattr(W, "_writev", None)
    elif sink == "short libc":
        monkeypatch.setattr(W, "_writev", _short_libc_writev)
    elif sink == "short os":
        monkeypatch.setattr(W, "_writev", None)
        monkeypatch.setattr(os, "writev", _short_os_writev)
    want = _crafted(b, fmt, nanos, 1514)
    if sink == "stream":
        f = io.BytesIO()
        write_capture(f, [b[:2], b[2:]], format=fmt, nanos=nanos, snaplen=1514)
        got = f.getvalue()
    else:
        out = tmp_path / "out"
        out.write_bytes(b"\xee" * 5000)         # an old, longer file: truncated first
        write_capture(out, [b[:2], b[2:]], format=fmt, nanos=nanos, snaplen=1514)
        got = out.read_bytes()
    assert got == want


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_an_existing_file_is_replaced_even_without_packets(tmp_path, fmt):
    """The truncation of an existing file waits for the first write; closing without
    one, or dropping the writer unclosed, still leaves just the file header."""
    import gc
    empty = PacketBatch.empty()
    want = _crafted(empty, fmt, False, 262144, idbs=((1, 262144),))
    for close in (True, False):
        p = tmp_path / f"old.{fmt}"
        p.write_bytes(b"\xee" * 100)
        w = CaptureWriter(p, format=fmt)
        if close:
            w.close()
        else:
            del w
            gc.collect()
        assert p.read_bytes() == want, close


def test_pcapng_interfaces_of_one_link_type(tmp_path):
    """add_interface adds IDBs (any link type, several of one); write(interface=) puts
    packets on one; without it a batch goes to the first interface of its link type."""
    a = _batch()
    a = a[a.ts_ns >= 0]
    sll = _batch(linktype=113, snaplen=200)
    sll = sll[sll.ts_ns >= 0]
    p = tmp_path / "two.pcapng"
    with CaptureWriter(p, format="pcapng", linktype=1, snaplen=1514, nanos=True) as w:
        assert w.add_interface(1, 65535) == 1
        assert w.add_interface("LINUX_SLL", 200) == 2
        w.write(a[:2], interface=1)
        w.write(a[2:4])                     # the first EN10MB interface: 0
        w.write(sll[:3])                    # the first LINUX_SLL one: 2
        w.write(a[4:], interface=1)
    rows = _rows(a[:2]) + _rows(a[2:4]) + _rows(sll[:3]) + _rows(a[4:])
    ifaces = [1, 1, 0, 0, 2, 2, 2] + [1] * (len(a) - 4)
    body = b"".join(C.epb(i, t, d, wirelen=wl) for i, (t, _c, wl, d) in zip(ifaces, rows))
    want = C.shb() + C.idb(1, 1514, tsresol=9) + C.idb(1, 65535, tsresol=9) + \
        C.idb(113, 200, tsresol=9) + body
    assert p.read_bytes() == want
    back = list(open_capture(p))
    assert [(x.linktype, len(x)) for x in back] == [(1, 4), (113, 3), (1, len(a) - 4)]


def test_interface_usage_errors(tmp_path):
    b = _batch()
    b = b[b.ts_ns >= 0]
    with CaptureWriter(tmp_path / "x.pcap") as w:
        with pytest.raises(UsageError, match="add_interface needs format='pcapng'"):
            w.add_interface(1, 100)
        with pytest.raises(UsageError, match="one interface"):
            w.write(b, interface=1)
        w.write(b, interface=0)
    with CaptureWriter(tmp_path / "x.pcapng", format="pcapng") as w:
        with pytest.raises(UsageError, match="no interface 1"):
            w.write(b, interface=1)
        with pytest.raises(UsageError, match="does not fit a pcapng interface"):
            w.add_interface(0x24000001, 100)
        with pytest.raises(UsageError, match="32 bits"):
            w.add_interface(1, 1 << 32)
        with pytest.raises(CaptureError, match="interface 0 has link type EN10MB"):
            w.write(_batch(linktype=113)[2:4], interface=0)
    with pytest.raises(UsageError, match="closed"):
        w.add_interface(1, 100)
