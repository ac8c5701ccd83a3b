"""Streaming: a file read in small batches gives exactly the one-batch result; batches
respect their packet and byte bounds and are zero-copy views of the file; the lockstep
walker (chain.py) gives the record-by-record result on adversarial data built to fool
its guesses; standard input and in-memory sources work."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import pcap_craft as C
from bpfkit.errors import CaptureError
from bpfkit.pcap import chain, open_capture, read_capture
from bpfkit.pcap.reader import CaptureReader


def _rows(b):
    return [(int(t), int(c), int(w), bytes(b.packet(i)))
            for i, (t, c, w) in enumerate(zip(b.ts_ns, b.caplen, b.wirelen))]


def adversarial_pcap(n: int, seed: int, *, nanos=False, big=False, snaplen=1600) -> bytes:
    """Records whose payloads hold copies of real record headers (at the real and at
    shifted positions), zero runs, empty records, caplen > len, records longer than
    the snaplen (libpcap cuts them), and runs of equal sizes."""
    rng = np.random.default_rng(seed)
    recs = []
    t = 1_600_000_000
    fake = b""
    for i in range(n):
        kind = rng.integers(0, 8)
        if kind == 0:
            data = bytes(int(rng.integers(0, 2000)))                  # zeros, may exceed snaplen
        elif kind == 1:
            data = b""
        elif kind == 2:
            data = (fake * 40)[: int(rng.integers(16, 600))]          # fake headers
        elif kind == 3:
            data = bytes(rng.integers(0, 4)) + fake * 3 + bytes(5)
        else:
            data = rng.integers(0, 256, int(rng.integers(1, 1514)), dtype=np.uint8).tobytes()
        wl = len(data) if rng.random() < 0.8 else int(rng.integers(0, 3000))
        frac = int(rng.integers(0, 10**9 if nanos else 10**6))
        t += int(rng.integers(0, 3))
        rec = C.pcap_record(t, frac, data, wirelen=wl, big=big)
        fake = rec[:16]
        recs.append(rec)
    return C.pcap_header(nanos=nanos, big=big, snaplen=snaplen) + b"".join(recs)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("stream") / "adv.pcap"
    p.write_bytes(adversarial_pcap(12000, 1))
    return p


def test_small_batches_equal_one_batch(big_file):
    whole = read_capture(big_file)
    assert len(whole) == 12000
    want = _rows(whole)
    for kw in ({"batch_packets": 1}, {"batch_packets": 777}, {"batch_bytes": 5000},
               {"batch_packets": 100, "batch_bytes": 1}, {"batch_bytes": 1 << 40}):
        r = open_capture(big_file, **kw)
        got = []
        for b in r:
            assert 1 <= len(b) <= kw.get("batch_packets", 65536)
            if len(b) > 1:
                assert int(b.caplen.sum()) <= kw.get("batch_bytes", 64 << 20)
            got += _rows(b)
        assert got == want, kw
        assert r.records == 12000 and r.problems == []


def test_batches_are_views_of_the_file(big_file):
    data = big_file.read_bytes()
    batches = list(open_capture(big_file, batch_packets=1000))
    for b in batches:
        assert len(b.buf) == len(data)                    # the whole file, mapped
        assert np.shares_memory(b.buf, batches[0].buf)    # one map, no copies
        for i in (0, len(b) // 2, len(b) - 1):
            o, c = int(b.offset[i]), int(b.caplen[i])
            assert bytes(b.packet(i)) == data[o:o + c]    # offset is the file offset


@pytest.mark.parametrize("seed,nanos,big", [(2, False, False), (3, True, False),
                                            (4, False, True), (5, True, True)])
def test_lockstep_walker_on_adversarial_data(tmp_path, monkeypatch, seed, nanos, big):
    p = tmp_path / "a.pcap"
    p.write_bytes(adversarial_pcap(3000, seed, nanos=nanos, big=big))
    ref = _rows(next(iter(CaptureReader(p, batch_packets=1 << 30, _vector=False))))
    # MAX_ROUNDS 1 and 2 force the give-up path (finish record by record)
    for lane_bytes, probe, rounds in ((256, 1, 8), (256, 1, 1), (2048, 4, 2), (32768, 64, 8)):
        with monkeypatch.context() as m:
            m.setattr(chain, "MIN_LANE_BYTES", lane_bytes)
            m.setattr(chain, "PROBE", probe)
            m.setattr(chain, "MAX_ROUNDS", rounds)
            assert _rows(read_capture(p)) == ref, (lane_bytes, probe, rounds)


def test_lockstep_walker_with_bad_record_mid_file(tmp_path, monkeypatch):
    """A bad record deep inside a lane ends the chain exactly there."""
    good = adversarial_pcap(2000, 6)
    cut = len(C.pcap_header()) + 70000
    # find the record boundary at or after `cut` by walking the reference
    ref = CaptureReader(good, batch_packets=1 << 30, _vector=False)
    offs = next(iter(ref)).offset - 16
    at = int(offs[np.searchsorted(offs, cut)])
    bad = good[:at] + b"\xff" * 16 + good[at + 16:]
    with monkeypatch.context() as m:
        m.setattr(chain, "MIN_LANE_BYTES", 512)
        with pytest.warns(Warning, match=f"byte offset {at}"):
            r = open_capture(bad)
            n = sum(len(b) for b in r)
    assert n == int(np.searchsorted(offs, cut)) == r.problems[0].records


def test_pcapng_lockstep_equals_scalar(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    blocks = [C.shb(), C.idb(1, 2000, tsresol=9)]
    for i in range(3000):
        d = rng.integers(0, 256, int(rng.integers(0, 1600)), dtype=np.uint8).tobytes()
        k = i % 5
        blocks.append(C.spb(d[:2000]) if k == 0 else C.block(0x77, d[:40]) if k == 1
                      else C.epb(0, i * 1000 + 3, d))
        if i == 1500:
            blocks += [C.shb(big=True), C.idb(1, 2000, big=True)]
        if i > 1500 and k == 2:
            blocks[-1] = C.epb(0, i, d, big=True)
        elif i > 1500 and k in (0, 1):
            blocks[-1] = C.spb(d, big=True) if k == 0 else C.block(0x77, d[:40], big=True)
        elif i > 1500:
            blocks[-1] = C.epb(0, i * 1000 + 3, d, big=True)
    p = tmp_path / "n.pcapng"
    p.write_bytes(b"".join(blocks))
    ref = _rows(next(iter(CaptureReader(p, batch_packets=1 << 30, _vector=False))))
    for lane_bytes in (128, 4096):
        with monkeypatch.context() as m:
            m.setattr(chain, "MIN_LANE_BYTES", lane_bytes)
            m.setattr(chain, "PROBE", 2)
            assert _rows(read_capture(p)) == ref


def test_stdin_and_memory_sources(big_file):
    data = big_file.read_bytes()
    want = _rows(read_capture(big_file))
    assert _rows(read_capture(data)) == want
    assert _rows(read_capture(memoryview(data))) == want
    code = ("import sys; from bpfkit.pcap import open_capture\n"
            "r = open_capture('-', batch_packets=1000)\n"
            "print(sum(len(b) for b in r), r.format, r.linktype, r.problems)")
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                         check=True, text=False).stdout.decode()
    assert out.split() == ["12000", "pcap", "1", "[]"]


def test_reader_is_a_context_manager_and_iterates_once(big_file):
    with open_capture(big_file, batch_packets=5000) as r:
        it = iter(r)
        first = next(it)
        assert len(first) == 5000
        rest = list(r)                 # the same iterator continues
    assert sum(map(len, rest)) == 7000


def test_batch_size_must_be_positive(big_file):
    from bpfkit.errors import UsageError
    with pytest.raises(UsageError):
        open_capture(big_file, batch_packets=0)


def test_no_warnings_on_good_files(big_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_capture(big_file)) == 12000


def _index_threads():
    import threading
    return [t for t in threading.enumerate() if t.name == "bpfkit-index" and t.is_alive()]


def _read_all(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = open_capture(path, **kw)
        rows = [_rows(b) for b in r]
        r.close()
    return rows, [(str(p), p.offset, p.records) for p in r.problems]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [None, 3_000_001])
def test_read_ahead_thread_gives_the_same_batches(big_file, tmp_path, monkeypatch, fmt, cut):
    """Files larger than reader.AHEAD_BYTES are indexed a segment ahead on a second
    thread: the same batches and the same problem (a record cut short), and the thread
    ends with the reader."""
    from bpfkit.pcap import reader as R
    from bpfkit.pcap import write_capture
    p = big_file
    if fmt == "pcapng":
        p = tmp_path / "a.pcapng"
        write_capture(p, read_capture(big_file), format="pcapng")
    if cut is not None:
        q = tmp_path / ("cut." + fmt)
        q.write_bytes(p.read_bytes()[:cut])
        p = q
    monkeypatch.setattr(R, "SEGMENT_BYTES", 256 << 10)
    monkeypatch.setattr(R, "AHEAD_BYTES", 1 << 62)
    want = _read_all(p, batch_packets=500)
    monkeypatch.setattr(R, "AHEAD_BYTES", 0)
    assert CaptureReader(p)._ahead
    assert _read_all(p, batch_packets=500) == want
    assert sum(map(len, want[0])) > 5000 and (cut is None) == (want[1] == [])
    assert not _index_threads()
    if cut is not None:
        with pytest.raises(CaptureError, match="truncated"):
            _read_all(p, strict=True)
        assert not _index_threads()


def test_closing_early_stops_the_read_ahead_thread(big_file, monkeypatch):
    from bpfkit.pcap import reader as R
    monkeypatch.setattr(R, "SEGMENT_BYTES", 256 << 10)
    monkeypatch.setattr(R, "AHEAD_BYTES", 0)
    r = open_capture(big_file, batch_packets=100)
    first = next(iter(r))
    assert len(first) == 100 and _index_threads()
    r.close()
    assert not _index_threads()
