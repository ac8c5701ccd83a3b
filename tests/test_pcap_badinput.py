"""Bad capture data: every complete record is read, then a CaptureError (strict) or a
CaptureWarning (default, also kept in reader.problems) says the byte offset and the
number of records read.  Never another exception, never a hang.  Where libpcap reads
the same file, it must stop after the same records (the oracle); the expected offsets
are derived next to each case."""
from __future__ import annotations

import random
import struct
import warnings

import pytest

import oracles
import pcap_craft as C
from bpfkit.errors import CaptureError, CaptureWarning
from bpfkit.pcap import chain, open_capture, read_capture

P20 = bytes(range(20))
P5 = b"abcde"
HDR = 24           # classic file header
REC = 16           # classic record header


def _pcap(records, **kw):
    return C.pcap(records, **kw)


# (name, file bytes, complete records, byte offset of the problem, words in the message)
CASES = [
    ("empty file", b"", 0, 0, "tried to read 4 file header bytes, only got 0"),
    ("truncated magic", b"\xd4\xc3", 0, 0, "only got 2"),
    ("truncated file header", C.pcap_header()[:10], 0, 0,
     "tried to read 24 file header bytes, only got 10"),
    ("wrong magic", b"\x00\x01\x02\x03" + bytes(40), 0, 0, "unknown file format"),
    ("text file", b"hello, this is not a capture\n", 0, 0, "unknown file format"),
    ("archaic version", C.pcap_header(version=(1, 0)), 0, 0, "archaic"),
    ("unsupported version", C.pcap_header(version=(2, 5)), 0, 0, "unsupported pcap"),
    # record 2 starts after the file header and record 1: 24 + 16 + 20 = 60
    ("truncated last record",
     _pcap([(1, 0, P20)]) + C.pcap_record(2, 0, P20)[:REC + 7], 1, HDR + REC + 20,
     "tried to read 20 captured bytes, only got 7"),
    ("truncated record header", _pcap([(1, 0, P20)]) + b"\x01" * 7, 1, HDR + REC + 20,
     "tried to read 16 header bytes, only got 7"),
    # 0xff.. garbage reads as caplen 0xffffffff: more than libpcap's 262144 maximum
    ("garbage after valid prefix", _pcap([(1, 0, P20), (2, 0, P5)]) + b"\xff" * 40, 2,
     HDR + 2 * REC + 20 + 5, "invalid packet capture length 4294967295"),
    ("caplen above the maximum", _pcap([(1, 0, bytes(300000))], snaplen=65535), 0, HDR,
     "invalid packet capture length 300000, bigger than snaplen of 65535"),
    ("caplen above the maximum and the snaplen",
     _pcap([(1, 0, bytes(262145))], snaplen=300000), 0, HDR, "bigger than maximum of 262144"),
    # caplen 20 > snaplen 10 is accepted (cut to 10), then record 2 is truncated: its
    # offset is 24 + 16 + 20
    ("truncated after an over-snaplen record",
     _pcap([(1, 0, P20)], snaplen=10) + C.pcap_record(2, 0, P20)[:30], 1, HDR + REC + 20,
     "tried to read 20 captured bytes, only got 14"),
    # pcapng: SHB (28) + IDB (20); the EPB at 48 is cut
    ("pcapng truncated block", C.shb() + C.idb() + C.epb(0, 1, P20)[:-5], 0, 48,
     "tried to read 44 bytes, only got 39"),
    ("pcapng bad trailer", C.shb() + C.idb() + C.epb(0, 1, P20) +
     C.block(6, struct.pack("<IIIII", 0, 0, 1, 5, 5) + P5, trailer=99), 1, 48 + 52,
     "don't match"),
    ("pcapng no IDB", C.shb(), 0, 28, "no Interface Description Blocks"),
    ("pcapng empty SHB", b"\x0a\x0d\x0d\x0a", 0, 0, "too short"),
]


@pytest.mark.parametrize("name,data,records,offset,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, name, data, records, offset, words):
    path = tmp_path / "bad.cap"
    path.write_bytes(data)
    # default: the good records, then a warning with offset and count
    with pytest.warns(CaptureWarning) as w:
        r = open_capture(path)
        got = sum(len(b) for b in r)
    assert got == records
    assert len(r.problems) == 1 and r.records == records
    err = r.problems[0]
    assert (err.offset, err.records) == (offset, records)
    assert words in str(err)
    assert f"byte offset {offset}" in str(w[0].message)
    assert f"({records} complete records read)" in str(w[0].message)
    with pytest.warns(CaptureWarning):
        b = read_capture(path)
    assert len(b) == records
    # strict: the good records are still delivered, then CaptureError
    seen = 0
    with pytest.raises(CaptureError) as e:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for b in open_capture(path, strict=True):
                seen += len(b)
    assert seen == records
    assert (e.value.offset, e.value.records) == (offset, records)
    with pytest.raises(CaptureError):
        read_capture(path, strict=True)


@pytest.mark.tcpdump
@pytest.mark.parametrize("name,data,records,offset,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_libpcap_agrees(tmp_path, name, data, records, offset, words):
    path = tmp_path / "bad.cap"
    path.write_bytes(data)
    lp = oracles.libpcap_read(str(path))
    assert len(lp.packets) == records
    assert lp.open_error is not None or lp.error is not None


def test_missing_file_raises(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "nope.pcap")


def test_header_only_is_fine(tmp_path):
    p = tmp_path / "h.pcap"
    p.write_bytes(C.pcap_header(snaplen=96, linktype=113))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = open_capture(p)
        assert list(r) == [] and r.problems == []
        assert (r.format, r.linktype, r.snaplen) == ("pcap", 113, 96)


def _mutants(seed: int, base: bytes, n: int):
    rnd = random.Random(seed)
    for _ in range(n):
        d = bytearray(base)
        op = rnd.randrange(4)
        if op == 0:                              # truncate anywhere
            d = d[:rnd.randrange(len(d) + 1)]
        elif op == 1:                            # flip bytes in headers and data
            for _ in range(rnd.randrange(1, 6)):
                d[rnd.randrange(len(d))] = rnd.randrange(256)
        elif op == 2:                            # append garbage
            d += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 64)))
        else:                                    # overwrite a 32-bit field
            if len(d) >= 4:
                i = rnd.randrange(len(d) - 3)
                d[i:i + 4] = struct.pack("<I", rnd.choice([0, 1, 0xFFFFFFFF, 262145,
                                                           rnd.randrange(1 << 32)]))
        yield bytes(d)


def _valid_files():
    pk = [(i, i * 1000, bytes(range(i % 50, i % 50 + 10 + i % 70))) for i in range(12)]
    yield C.pcap(pk)
    yield C.pcap(pk, nanos=True, big=True)
    ng = C.shb() + C.idb(1, 256, tsresol=9) + C.block(0x55, b"xyz!")
    for i, (_, _, d) in enumerate(pk):
        ng += C.epb(0, 10**9 * i + 7, d) if i % 3 else C.spb(d)
    yield ng


@pytest.mark.tcpdump
def test_fuzzed_files_match_libpcap(tmp_path, monkeypatch):
    """Mutated files: no exception but CaptureWarning, and the same packets as libpcap
    (for pcapng, libpcap's stops that bpfkit goes beyond by design excepted); read
    record by record and with the lockstep walker on tiny lanes."""
    path = tmp_path / "m.cap"
    n = agree = beyond = 0
    for k, base in enumerate(_valid_files()):
        for data in _mutants(1000 + k, base, 150):
            path.write_bytes(data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CaptureWarning)
                warnings.simplefilter("error", RuntimeWarning)    # no numpy overflow
                r = open_capture(path, batch_packets=3)
                ours = [(int(t), bytes(p)) for b in r for t, p in b]
                with monkeypatch.context() as m:
                    m.setattr(chain, "MIN_LANE_BYTES", 32)
                    m.setattr(chain, "PROBE", 1)
                    r2 = open_capture(path, batch_bytes=50)
                    assert [(int(t), bytes(p)) for b in r2 for t, p in b] == ours
                    assert [str(p) for p in r2.problems] == [str(p) for p in r.problems]
            lp = oracles.libpcap_read(str(path))
            theirs = [(C.int64(t), d) for t, _, _, d in lp.packets]
            n += 1
            msg = lp.open_error or lp.error or ""
            if any(s in msg for s in ("different from the type of the first",
                                      "different from the snapshot length",
                                      "different byte orders")) and \
                    ours[:len(theirs)] == theirs:
                beyond += 1
                continue
            assert ours == theirs, (k, data.hex())
            assert bool(r.problems) == bool(msg), (k, msg, r.problems)
            agree += 1
    print(f"\n{n} mutated captures: {agree} identical to libpcap, {beyond} read further "
          f"than libpcap by design")
    assert agree > 0.9 * n
