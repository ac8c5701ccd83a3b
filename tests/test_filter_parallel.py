"""The fast paths of `bpfkit filter` (issue 7), each against the plain path it replaces:

- PacketBatch.head (each packet's first bytes, gathered by the reader): run_batch with
  a head of any width == run_batch without == the scalar interpreter;
- runs of `jeq #k` taken as one sorted lookup (vinterp._jeq_chains), lanes entering
  mid-run included;
- the reader's head, spans (_span) and stopped_at;
- filter_capture with several processes (the capture cut at guessed record boundaries):
  byte-identical output to one process and to tcpdump, wrong guesses, bad data in either
  part, strict mode, counting without output, an existing longer output file.
"""
from __future__ import annotations

import random
import subprocess
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfkit import filtering, parallel
from bpfkit.cbpf import vinterp
from bpfkit.cbpf.interp import run_filter
from bpfkit.cbpf.program import Program
from bpfkit.cbpf.vinterp import run_batch
from bpfkit.errors import CaptureError
from bpfkit.filtering import capture_expression_program, filter_capture
from bpfkit.pcap import read_capture, reader as reader_mod, write_capture
from bpfkit.pcap.batch import PacketBatch
from bpfkit.pcap.pcapfile import gather_rows
from bpfkit.pcap.reader import CaptureReader

from cbpf_gen import libpcap_programs, packets, synthetic_packet

EXPRS = ["tcp port 80", "host 10.0.0.1 and net 192.0.0.0/8", "vlan and tcp",
         "tcp[tcpflags] & tcp-syn != 0",
         " or ".join(f"host 10.0.0.{i}" for i in range(1, 3)) + " or " +
         " or ".join(f"host 192.0.0.{i}" for i in range(1, 30)), ""]


def _scalar(prog, batch):
    return [run_filter(prog, bytes(batch[i]), int(batch.wirelen[i])) for i in range(len(batch))]


def _with_head(batch: PacketBatch, width: int) -> PacketBatch:
    """The batch with a head as the reader makes it: past caplen, whatever follows."""
    head = gather_rows(batch.buf, batch.offset, width)
    return PacketBatch(batch.buf, batch.offset, batch.caplen, batch.wirelen, batch.ts_ns,
                       batch.linktype, batch.snaplen, batch.ts_nanos, head)


# --- PacketBatch.head in the engine ----------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=libpcap_programs(), pkts=st.lists(packets(), min_size=1, max_size=24),
       width=st.sampled_from([4, 5, 8, 16, 23, 64]))
def test_head_gives_the_same_answers(prog, pkts, width):
    batch = PacketBatch.from_packets([p for p, _ in pkts], wirelen=[w for _, w in pkts])
    want = _scalar(prog, batch)
    assert run_batch(prog, batch).tolist() == want
    assert run_batch(prog, _with_head(batch, width)).tolist() == want
    # a head of a strided view (the reader's: rows of header + head bytes)
    rows = gather_rows(batch.buf, batch.offset, width + 16)
    strided = PacketBatch(batch.buf, batch.offset, batch.caplen, batch.wirelen, batch.ts_ns,
                          head=rows[:, :width])
    assert run_batch(prog, strided).tolist() == want


def test_gather_rows_pads_at_the_end():
    buf = np.arange(10, dtype=np.uint8)
    out = gather_rows(buf, np.array([0, 6, 9]), 4)
    assert out.tolist() == [[0, 1, 2, 3], [6, 7, 8, 9], [9, 0, 0, 0]]
    assert gather_rows(buf, np.array([2]), 16).tolist() == [list(range(2, 10)) + [0] * 8]


# --- runs of jeq -------------------------------------------------------------------------

@st.composite
def jeq_run_programs(draw):
    """ldb [i]; a jgt sending lanes to two entry points of a run of jeq #k (distinct
    keys, small values so that packets match), true targets among a few rets after
    the run, the last test's false branch to its own ret.  Variants: a duplicated key
    or a true target inside the run (not a run to take as a lookup: still exact)."""
    m = draw(st.integers(vinterp.MIN_CHAIN, 12))
    keys = draw(st.lists(st.integers(0, 15), min_size=m, max_size=m, unique=True))
    if draw(st.booleans()) and m > 1:
        keys[draw(st.integers(1, m - 1))] = keys[0]          # duplicate key
    nret = draw(st.integers(1, 4))
    start = 2
    end = start + m - 1
    rets = end + 1                                          # first ret address
    e1, e2 = draw(st.integers(0, m - 1)), draw(st.integers(0, m - 1))
    insns = [(0x30, 0, 0, draw(st.integers(0, 3))),         # ldb [i]
             (0x25, e1, e2, draw(st.integers(0, 15)))]       # jgt #c  -> entries
    inside = draw(st.booleans())
    for j, k in enumerate(keys):
        pc = start + j
        t = rets + draw(st.integers(0, nret - 1))
        if inside and j + 2 < m and draw(st.booleans()):
            t = pc + 2                                      # a true target inside the run
        insns.append((0x15, t - pc - 1, 0, k))
    insns[-1] = (0x15, insns[-1][1], nret, insns[-1][3])     # last false -> last ret
    for r in range(nret + 1):
        insns.append((0x06, 0, 0, 100 + r))
    return Program(insns)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=jeq_run_programs(), data=st.lists(st.binary(min_size=0, max_size=5), min_size=1,
                                              max_size=40))
def test_jeq_runs_match_the_scalar_interpreter(prog, data):
    pkts = [bytes(b % 16 for b in d) for d in data]
    batch = PacketBatch.from_packets(pkts)
    assert run_batch(prog, batch).tolist() == _scalar(prog, batch)


def test_jeq_run_is_taken_as_a_lookup():
    hosts = " or ".join(f"host 10.0.0.{i}" for i in range(1, 20))
    from bpfkit.cbpf.compiler import compile_filter
    prog = compile_filter(hosts, 1, 262144, True, savefile=True)
    chains = vinterp._jeq_chains(prog.insns)
    assert chains and max(c.end - c.start + 1 for c in chains.values()) >= 19


# --- the reader: head, spans, stopped_at -------------------------------------------------

def _capture(tmp_path, n=3000, seed=1, name="c.pcap", tail_small=True):
    rng = random.Random(seed)
    pk = [synthetic_packet(rng) for _ in range(n)]
    if tail_small:
        pk += [(b"\x01\x02", 2), (b"\x03", 9)]             # records within 64 bytes of the end
    batch = PacketBatch.from_packets([p for p, _ in pk], wirelen=[w for _, w in pk],
                                     ts_ns=[1_700_000_000_000_000_000 + i * 1000
                                            for i in range(len(pk))])
    path = tmp_path / name
    write_capture(str(path), batch)
    return path


def test_reader_head_holds_the_packet_starts(tmp_path):
    path = _capture(tmp_path)
    r = CaptureReader(str(path), _head=64, batch_packets=700)
    for b in r:
        assert b.head is not None and b.head.shape == (len(b), 64)
        for i in range(len(b)):
            n = min(int(b.caplen[i]), 64)
            assert bytes(b.head[i, :n]) == bytes(b[i])[:n]
        sel = b[np.arange(len(b)) % 3 == 0]
        assert sel.head.shape == (len(sel), 64)


def test_span_reads_a_suffix_and_says_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "SEGMENT_BYTES", 1 << 16)
    path = _capture(tmp_path)
    whole = read_capture(str(path))
    offs = whole.offset - 16                 # record offsets
    for k in (1, 17, len(offs) // 2, len(offs) - 1):
        r = CaptureReader(str(path), _span=(int(offs[k]), None))
        got = list(r)
        assert sum(len(b) for b in got) == len(offs) - k
        assert bytes(got[0][0]) == bytes(whole[k])
        assert r.stopped_at == path.stat().st_size
        # and a span that ends there: the records before, stopping exactly at offs[k]
        r = CaptureReader(str(path), _span=(None, int(offs[k])))
        assert sum(len(b) for b in r) == k and r.stopped_at == int(offs[k])
    # a stop inside a record: the walk stops after it, not on the stop
    r = CaptureReader(str(path), _span=(None, int(offs[10]) + 3))
    assert sum(len(b) for b in r) == 11 and r.stopped_at == int(offs[11])


def test_boundaries_are_record_starts(tmp_path):
    path = _capture(tmp_path, n=5000)
    whole = read_capture(str(path))
    starts = set((whole.offset - 16).tolist())
    r = CaptureReader(str(path))
    size = path.stat().st_size
    got = r._recs.boundaries([size // 4, size // 2, 3 * size // 4])
    assert all(g in starts for g in got)


# --- several processes ----------------------------------------------------------------------

@pytest.fixture
def small_parts(monkeypatch):
    """Parallel filtering for small files: parts of 64-128 KB, segments of 64 KB."""
    monkeypatch.setattr(filtering, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "PART_BYTES", (1 << 16, 1 << 17))
    monkeypatch.setattr(reader_mod, "SEGMENT_BYTES", 1 << 16)
    monkeypatch.setattr(reader_mod, "AHEAD_BYTES", 1 << 17)


def _filter(path, out, expr, workers, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return filter_capture(capture_expression_program(expr, str(path)), str(path),
                              None if out is None else str(out), workers=workers, **kw)


@pytest.fixture
def spans(monkeypatch):
    """The spans this process's part readers were opened with (bpfkit.parallel)."""
    seen = []
    real = parallel.CaptureReader

    def spy(*a, **kw):
        seen.append(kw.get("_span"))
        return real(*a, **kw)
    monkeypatch.setattr(parallel, "CaptureReader", spy)
    return seen


@pytest.fixture
def runs(monkeypatch):
    """(parts, processes) of each parallel run."""
    seen = []
    real = parallel._Run.__init__

    def spy(self, *a):
        real(self, *a)
        seen.append((len(self.cuts), self.nworkers))
    monkeypatch.setattr(parallel._Run, "__init__", spy)
    return seen


@pytest.mark.parametrize("expr", EXPRS)
def test_parts_write_what_one_process_writes(tmp_path, small_parts, expr, runs):
    path = _capture(tmp_path, n=6000, seed=zlib.crc32(expr.encode()))
    one = _filter(path, tmp_path / "one.pcap", expr, 1)
    assert not runs
    for w in (2, 3):
        got = _filter(path, tmp_path / f"w{w}.pcap", expr, w)
        assert runs[-1][0] >= 4 and runs[-1][1] == w      # the work was split
        assert (got.packets, got.kept) == (one.packets, one.kept)
        assert (tmp_path / f"w{w}.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()
    counted = _filter(path, None, expr, 2)
    assert (counted.packets, counted.kept) == (one.packets, one.kept)


@pytest.mark.tcpdump
def test_parts_write_what_tcpdump_writes(tmp_path, small_parts):
    path = _capture(tmp_path, n=8000, seed=7)
    for expr in EXPRS[:3]:
        _filter(path, tmp_path / "ours.pcap", expr, 2)
        subprocess.run(["tcpdump", "-r", str(path), "-w", str(tmp_path / "td.pcap"), expr],
                       check=True, capture_output=True)
        assert (tmp_path / "ours.pcap").read_bytes() == (tmp_path / "td.pcap").read_bytes()


def test_wrong_guesses_change_nothing(tmp_path, small_parts, monkeypatch, spans):
    path = _capture(tmp_path, n=6000, seed=3)
    _filter(path, tmp_path / "one.pcap", "tcp", 1)
    real = reader_mod._PcapRecords.boundaries
    for shift in (1, 5, 17):
        def wrong(self, targets, window=1 << 16, shift=shift):
            return [c + shift for c in real(self, targets, window)]
        monkeypatch.setattr(reader_mod._PcapRecords, "boundaries", wrong)
        spans.clear()
        got = _filter(path, tmp_path / "w.pcap", "tcp", 3)
        # the parent read on by itself, from the end of the first part
        assert spans and spans[-1][1] is None and spans[-1][0] < path.stat().st_size // 2
        assert got.packets == 6002
        assert (tmp_path / "w.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()


def _damage(path, where: float, tmp_path, name):
    """A copy of the capture with a record length made impossible at about `where`."""
    data = bytearray(path.read_bytes())
    whole = read_capture(str(path))
    k = int(len(whole) * where)
    rec = int(whole.offset[k]) - 16
    data[rec + 8:rec + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out, k


@pytest.mark.parametrize("where", [0.1, 0.6, 0.95])
def test_bad_data_in_any_part(tmp_path, small_parts, where):
    path, k = _damage(_capture(tmp_path, n=6000, seed=5), where, tmp_path, "bad.pcap")
    one = _filter(path, tmp_path / "one.pcap", "udp or tcp", 1)
    got = _filter(path, tmp_path / "w.pcap", "udp or tcp", 3)
    assert one.packets == k and got.packets == k
    assert [str(p) for p in got.problems] == [str(p) for p in one.problems]
    assert got.problems[0].records == k
    assert (tmp_path / "w.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()
    with pytest.raises(CaptureError) as e1:
        _filter(path, tmp_path / "s1.pcap", "udp or tcp", 1, strict=True)
    with pytest.raises(CaptureError) as e2:
        _filter(path, tmp_path / "s2.pcap", "udp or tcp", 2, strict=True)
    assert str(e1.value) == str(e2.value)
    assert (tmp_path / "s1.pcap").read_bytes() == (tmp_path / "s2.pcap").read_bytes()


def test_truncated_last_record(tmp_path, small_parts):
    path = _capture(tmp_path, n=6000, seed=9)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-1])
    one = _filter(cut, tmp_path / "one.pcap", "", 1)
    got = _filter(cut, tmp_path / "w.pcap", "", 2)
    assert [str(p) for p in got.problems] == [str(p) for p in one.problems] != []
    assert (tmp_path / "w.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()


def test_longer_existing_output_is_replaced(tmp_path, small_parts):
    path = _capture(tmp_path, n=6000, seed=11)
    out = tmp_path / "out.pcap"
    out.write_bytes(b"\xff" * (path.stat().st_size * 2))
    _filter(path, out, "ip6", 2)
    _filter(path, tmp_path / "one.pcap", "ip6", 1)
    assert out.read_bytes() == (tmp_path / "one.pcap").read_bytes()


def test_compile_error_stops_the_workers(tmp_path, small_parts):
    path = _capture(tmp_path, n=6000, seed=13)
    from bpfkit.errors import CompileError
    with pytest.raises(CompileError):
        _filter(path, tmp_path / "x.pcap", "tcp port", 2)


def test_dev_null_output_is_split_too(tmp_path, small_parts, runs):
    import os
    path = _capture(tmp_path, n=6000, seed=17)
    one = _filter(path, None, "tcp", 1)
    got = _filter(path, os.devnull, "tcp", 2)
    assert runs and (got.packets, got.kept) == (one.packets, one.kept)


def test_no_fork_while_other_threads_run(tmp_path, small_parts, runs):
    import threading
    path = _capture(tmp_path, n=6000, seed=19)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        got = _filter(path, tmp_path / "t.pcap", "tcp", 2)
    finally:
        stop.set()
        t.join()
    assert not runs
    _filter(path, tmp_path / "one.pcap", "tcp", 1)
    assert (tmp_path / "t.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()
    assert got.packets == 6002


def test_random_damage_and_guesses(tmp_path, small_parts, monkeypatch):
    """Random captures, some damaged or cut short, with part boundaries guessed wrong
    at random -- differently in each process (each draws from its own copy of the
    generator after the fork): whatever the processes guess, the output, counts and
    warnings are those of one process."""
    real = reader_mod._PcapRecords.boundaries
    for it in range(12):
        rng = random.Random(1000 + it)
        pk = [synthetic_packet(rng) for _ in range(rng.randrange(2000, 7000))]
        b = PacketBatch.from_packets([p for p, _ in pk], wirelen=[w for _, w in pk],
                                     ts_ns=[1_700_000_000 * 10**9 + i for i in range(len(pk))])
        path = tmp_path / "r.pcap"
        write_capture(str(path), b)
        data = bytearray(path.read_bytes())
        mode = rng.choice(["ok", "damage", "cut"])
        if mode == "damage":
            k = rng.randrange(len(b))
            rec = 24 + 16 * k + int(b.offset[k])            # record k's header
            data[rec + 8:rec + 12] = (0x7FFFFFFF).to_bytes(4, "little")
        elif mode == "cut":
            data = data[:-rng.randrange(1, 40)]
        path.write_bytes(bytes(data))
        shift = rng.choice([0, 1, 3, 8])

        def guess(self, targets, window=1 << 16, shift=shift, rng=rng):
            return [c + shift if c >= 0 and rng.random() < 0.5 else c
                    for c in real(self, targets, window)]
        monkeypatch.setattr(reader_mod._PcapRecords, "boundaries", guess)
        expr = rng.choice(["tcp", "udp port 53", "", "ip6 or arp"])
        got = []
        for w in (1, 2, 3):
            s = _filter(path, tmp_path / f"o{w}.pcap", expr, w)
            got.append((s.packets, s.kept, [str(p) for p in s.problems],
                        (tmp_path / f"o{w}.pcap").read_bytes()))
        assert got[0] == got[1] == got[2], (it, mode, shift, expr)
