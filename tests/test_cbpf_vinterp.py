"""The vectorised batch interpreter (bpfkit.cbpf.vinterp.run_batch).

Differential, three ways:
- against the scalar reference interpreter (run_filter) on hypothesis programs x
  packets (the scalar one is itself checked against libpcap's bpf_filter);
- on the 830 real captures of ../shared/pcaps/tcpdump-tests with the programs
  `tcpdump -r FILE -ddd EXPR` compiles for each file's link type and snaplen:
  run_batch == run_filter on every packet;
- against tcpdump itself: the packets on which run_batch != 0 are exactly the packets
  `tcpdump -r FILE -w OUT EXPR` writes.
"""
from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracles
from bpfkit.cbpf.interp import run_filter
from bpfkit.cbpf.program import Program
from bpfkit.cbpf.vinterp import MAX_BACKWARD_JUMPS, run_batch
from bpfkit.errors import CaptureError, ExecutionError, ValidationError
from bpfkit.pcap import read_capture
from bpfkit.pcap.batch import PacketBatch

from cbpf_gen import (libpcap_programs, looping_programs, packets, synthetic_packet,
                      tcpdump_program)


def _batch(pkts):
    return PacketBatch.from_packets([p for p, _ in pkts], wirelen=[w for _, w in pkts])


def _scalar(prog, batch):
    return np.array([run_filter(prog, bytes(batch[i]), int(batch.wirelen[i]))
                     for i in range(len(batch))], np.uint32)


# --- against the scalar interpreter ---------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=libpcap_programs(), pkts=st.lists(packets(), min_size=1, max_size=24))
def test_vs_scalar_random(prog, pkts):
    batch = _batch(pkts)
    assert run_batch(prog, batch).tolist() == _scalar(prog, batch).tolist()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=looping_programs(), pkts=st.lists(packets(), min_size=1, max_size=24))
def test_vs_scalar_loops(prog, pkts):
    """Backward jumps: lanes loop 0..3 times (by wire length) and leave the loop body
    at different places; the heap-ordered re-queueing must give the scalar result."""
    batch = _batch(pkts)
    assert run_batch(prog, batch).tolist() == _scalar(prog, batch).tolist()


@pytest.mark.tcpdump
@pytest.mark.parametrize("expr", [
    "tcp port 80", "ip6 and udp port 53", "vlan and tcp", "ip[6:2] & 0x1fff = 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn", "ip6 protochain 6", "ip protochain 17",
    "len > 60 and not arp", "ether broadcast or ether multicast", "icmp or icmp6",
    "net 10.0.0.0/8 and portrange 50-100", "ip and ip[0] & 0xf > 5",
    "udp[8:2] % 3 = 1 or ip[1] >> 2 = 4", "sctp or (ip6 and ip6[6] = 0)",
])
def test_vs_scalar_tcpdump_programs(expr):
    import random
    rng = random.Random(expr)
    batch = _batch([synthetic_packet(rng) for _ in range(400)])
    prog = tcpdump_program(expr)
    got = run_batch(prog, batch)
    assert got.tolist() == _scalar(prog, batch).tolist()


@pytest.mark.tcpdump
@pytest.mark.parametrize("hashed", [True, False])
def test_jeq_runs_and_heads(hashed, monkeypatch, tmp_path):
    """Runs of jeq tests (host and port lists) are one lookup: through a hash of the
    keys, or a sorted search when there is no hash.  Loads read the packet heads the
    reader gathers: a column for all or most lanes, a gather for few, no bounds check
    inside the shortest packet.  Both lookups equal the scalar interpreter on batches
    read with heads (truncated packets included)."""
    import random
    from bpfkit.cbpf import vinterp
    from bpfkit.pcap import CaptureReader, write_capture
    if not hashed:
        monkeypatch.setattr(vinterp, "_hash_slots", lambda keys: None)
    monkeypatch.setattr(vinterp, "_plans", {})
    rng = random.Random(7)
    pkts = [synthetic_packet(rng) for _ in range(600)]
    path = tmp_path / "in.pcap"
    write_capture(path, _batch(pkts))
    exprs = [" or ".join(f"host 10.0.0.{i}" for i in range(1, 13)),
             "port 53 or port 80 or port 443 or port 22 or port 8080 or port 1234",
             "vlan and (tcp port 80 or udp port 53)", "tcp[tcpflags] & tcp-syn != 0"]
    with CaptureReader(path, _head=64, batch_packets=256) as reader:
        batches = list(reader)
    assert batches and all(b.head is not None for b in batches)
    for expr in exprs:
        prog = tcpdump_program(expr)
        chains = vinterp._jeq_chains(prog.insns)
        if expr.startswith(("host", "port")):
            assert chains and all((c.slots is not None) == hashed for c in chains.values())
        for b in batches:
            assert run_batch(prog, b).tolist() == _scalar(prog, b).tolist(), expr


def test_empty_batch():
    assert run_batch([(0x06, 0, 0, 1)], PacketBatch.from_packets([])).tolist() == []


def test_backward_loop_per_lane():
    """Lanes loop a different number of times: A = first byte, count down to 0
    through a backward ja, return the number of iterations (= the first byte)."""
    prog = [(0x30, 0, 0, 0),            # 0: A = P[0]
            (0x01, 0, 0, 0),            # 1: X = 0
            (0x15, 7, 0, 0),            # 2: if A == 0 goto 10
            (0x14, 0, 0, 1),            # 3: A -= 1
            (0x02, 0, 0, 0),            # 4: M[0] = A
            (0x87, 0, 0, 0),            # 5: A = X
            (0x04, 0, 0, 1),            # 6: A += 1
            (0x07, 0, 0, 0),            # 7: X = A
            (0x60, 0, 0, 0),            # 8: A = M[0]
            (0x05, 0, 0, -8 & 0xFFFFFFFF),   # 9: goto 2
            (0x87, 0, 0, 0),            # 10: A = X
            (0x16, 0, 0, 0)]            # 11: return A
    pkts = [(bytes([v]), 1) for v in (0, 1, 5, 2, 9, 0)] + [(b"", 0)]
    batch = _batch(pkts)
    got = run_batch(prog, batch).tolist()
    assert got == [0, 1, 5, 2, 9, 0, 0]      # the first byte; 0 when there is none
    assert got == _scalar(prog, batch).tolist()
    assert got == [oracles.libpcap_filter(prog, p, w) for p, w in pkts]


def test_loop_guard():
    prog = [(0x05, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 1)]        # ja -1: libpcap spins
    with pytest.raises(ExecutionError, match=str(MAX_BACKWARD_JUMPS)):
        run_batch(prog, _batch([(b"x", 1)]))


def test_unimplemented_opcode_only_when_reached():
    # RET|X (0x0e) passes libpcap's validator but bpf_filter has no case for it
    prog = [(0x30, 0, 0, 0), (0x15, 0, 1, 7), (0x0E, 0, 0, 0), (0x06, 0, 0, 5)]
    assert run_batch(prog, _batch([(b"\x01", 1), (b"\x02", 1)])).tolist() == [5, 5]
    with pytest.raises(ExecutionError, match="0x0e"):
        run_batch(prog, _batch([(b"\x01", 1), (b"\x07", 1)]))


def test_validates_like_pcap_setfilter():
    with pytest.raises(ValidationError):
        run_batch([(0x00, 0, 0, 1)], _batch([(b"", 0)]))


def test_no_cross_packet_reads():
    """A load just past one packet's caplen fails even though the next packet's bytes
    follow it in the shared buffer."""
    batch = _batch([(b"\x01\x02", 2), (b"\x03\x04\x05\x06", 4)])
    prog = [(0x28, 0, 0, 1), (0x16, 0, 0, 0)]                  # ldh [1]; ret a
    assert run_batch(prog, batch).tolist() == [0, 0x0405]


# --- real captures ----------------------------------------------------------------------

EXPRS = ["tcp port 80", "ip or ip6", "udp and not port 53", "len > 100 and not arp",
         "ip6 protochain 17"]


def _captures(shared_dir):
    out, unreadable = [], []
    for path in sorted((shared_dir / "pcaps" / "tcpdump-tests").iterdir()):
        if path.name == "LICENSE":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append((path, read_capture(str(path))))
            except CaptureError as e:
                unreadable.append((path.name, str(e)))
    return out, unreadable


def _compile_for(path, expr):
    """`tcpdump -r FILE -ddd EXPR`: the program for this file's link type and snaplen
    (savefile semantics), or None when tcpdump rejects the expression for it."""
    r = subprocess.run(["tcpdump", "-r", str(path), "-ddd", expr], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        return None
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return Program([tuple(int(v) for v in ln.split()) for ln in lines[1:]])


@pytest.fixture(scope="module")
def captures(shared_dir):
    readable, unreadable = _captures(shared_dir)
    # files the reader refuses are the reader's business (tests/test_pcap*); they
    # are only left out of this comparison
    assert len(unreadable) < 20, unreadable
    return readable


@pytest.fixture(scope="module")
def programs(captures):
    """(linktype, expr) -> Program, compiled by `tcpdump -r` on the first capture of
    each link type.  The snaplen of that file only changes the accepting `ret #k`
    constant, which is neither 0 nor compared with tcpdump, so one program serves
    every file of the link type (and keeps the tcpdump calls few)."""
    progs = {}
    for path, batch in captures:
        for expr in EXPRS:
            key = (batch.linktype, expr)
            if key not in progs:
                progs[key] = _compile_for(path, expr)
    return progs


@pytest.mark.tcpdump
def test_real_captures_vs_scalar(captures, programs):
    files = packets_run = 0
    for path, batch in captures:
        for expr in EXPRS:
            prog = programs[(batch.linktype, expr)]
            if prog is None or not len(batch):
                continue
            got = run_batch(prog, batch)
            want = _scalar(prog, batch)
            assert got.tolist() == want.tolist(), f"{path.name}: {expr}"
            packets_run += len(batch)
        files += 1
    print(f"real captures vs scalar: {files} files, {packets_run} packet runs")
    assert files >= 800 and packets_run > 10000


def _kept_by_tcpdump(path, expr, tmp_path):
    out = tmp_path / "out.pcap"
    r = subprocess.run(["tcpdump", "-r", str(path), "-w", str(out), expr],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not out.exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = read_capture(str(out))
    # tcpdump -w writes microsecond pcap: nanosecond and post-2106 timestamps do not
    # survive it, so packets are compared by bytes and wire length, in order
    return [(bytes(kept[i]), int(kept.wirelen[i])) for i in range(len(kept))]


@pytest.mark.tcpdump
def test_real_captures_vs_tcpdump(captures, programs, tmp_path):
    """Every readable capture with `tcp port 80`, every sixth one also with two more
    expressions: run_batch's accepted packets are the packets tcpdump -r -w keeps
    (same bytes, same wire lengths, same order)."""
    compared = 0
    mismatches = []
    for n, (path, batch) in enumerate(captures):
        for expr in EXPRS[:3] if n % 6 == 0 else EXPRS[:1]:
            prog = programs[(batch.linktype, expr)]
            if prog is None:
                continue
            kept = _kept_by_tcpdump(path, expr, tmp_path)
            if kept is None:     # tcpdump compiled EXPR for this file, so it must run
                mismatches.append(f"{path.name} {expr!r}: tcpdump -r -w failed")
                continue
            sel = batch[run_batch(prog, batch) != 0]
            ours = [(bytes(sel[i]), int(sel.wirelen[i])) for i in range(len(sel))]
            if ours != kept:
                mismatches.append(f"{path.name} {expr!r}: ours {len(ours)}, tcpdump {len(kept)}")
            compared += 1
    assert not mismatches, "\n".join(mismatches)
    print(f"real captures vs tcpdump -r -w: {compared} (file, expression) pairs identical")
    assert compared >= 1000
