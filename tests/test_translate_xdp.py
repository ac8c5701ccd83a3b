"""XDP-mode translation (bpfkit.translate.xdp): the XDP program's verdict is `match`
exactly when libpcap's bpf_filter (run_filter, wire length = captured length, as XDP
sees only the frame) returns non-zero -- on bpfkit's eBPF interpreter (run_xdp) and in
the kernel (BPF_PROG_LOAD as XDP must pass the verifier; BPF_PROG_TEST_RUN)."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracles
from bpfkit.cbpf.interp import run_filter
from bpfkit.cbpf.program import Program
from bpfkit.cbpf.vinterp import run_batch
from bpfkit.ebpf import progtypes
from bpfkit.cbpf.validate import check
from bpfkit.errors import ExecutionError, UnsupportedError, UsageError, ValidationError
from bpfkit.pcap.batch import PacketBatch
from bpfkit.translate.xdp import translate_xdp

from cbpf_gen import libpcap_programs, wild_programs

XDP_MIN, XDP_MAX = 14, 3520      # the test run's limits (FACTS.md, progtypes)
SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
frames = st.binary(min_size=XDP_MIN, max_size=120)


def _expect(prog, frame, tr) -> int:
    return tr.match if run_filter(prog, frame) else tr.nomatch


GUARDS = ["widened", "per-load"]


@pytest.mark.parametrize("guards", GUARDS)
@SETTINGS
@given(prog=libpcap_programs(), pkts=st.lists(frames, min_size=1, max_size=4),
       verdicts=st.sampled_from([("pass", "drop"), ("drop", "pass"), (3, 0)]))
def test_interpreter_agrees(guards, prog, pkts, verdicts):
    tr = translate_xdp(prog, match=verdicts[0], nomatch=verdicts[1], guards=guards)
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    for f in pkts:
        assert progtypes.run_xdp(interp, f).retval == _expect(prog, f, tr), prog.as_tuples()


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(prog=libpcap_programs(max_len=60), pkts=st.lists(st.binary(min_size=XDP_MIN,
                                                                  max_size=90),
                                                        min_size=3, max_size=6))
def test_widened_long_programs(prog, pkts):
    # longer programs: more joins and more loads per path for the guard placement
    tr = translate_xdp(prog)
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    for f in pkts:
        assert progtypes.run_xdp(interp, f).retval == _expect(prog, f, tr), prog.as_tuples()


@pytest.mark.kernel
@pytest.mark.parametrize("guards", GUARDS)
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(prog=libpcap_programs(), pkts=st.lists(frames, min_size=1, max_size=4))
def test_kernel_loads_and_agrees(guards, prog, pkts):
    tr = translate_xdp(prog, guards=guards)
    fd = oracles.bpf_prog_load(tr.to_bytes(), prog_type=oracles.BPF_PROG_TYPE_XDP)
    try:
        for f in pkts:
            assert oracles.bpf_prog_test_run(fd, f)[0] == _expect(prog, f, tr), prog.as_tuples()
    finally:
        os.close(fd)


@pytest.mark.parametrize("name,insns,frame,why", [
    # shift by X >= 32 is 0 in bpf_filter; eBPF would shift by X & 31
    ("lsh x 32", [(0x00, 0, 0, 1), (0x01, 0, 0, 32), (0x6c, 0, 0, 0), (0x16, 0, 0, 0)],
     bytes(14), "0 -> nomatch"),
    # division by X == 0: bpf_filter returns 0
    ("div x 0", [(0x00, 0, 0, 7), (0x3c, 0, 0, 0), (0x06, 0, 0, 1)], bytes(14), "nomatch"),
    # ld [x + k] with X + k past 2^32 does not wrap in libpcap: out of bounds
    ("ind no wrap", [(0x01, 0, 0, 0xFFFFFFFF), (0x50, 0, 0, 2), (0x06, 0, 0, 1)],
     bytes(20), "nomatch"),
    # an offset no packet reaches: the load always fails (and the code after it is
    # unreachable for the verifier, so it is left out)
    ("abs far", [(0x20, 0, 0, 0x10000), (0x06, 0, 0, 1)], bytes(14), "nomatch"),
    # len is the frame length
    ("len", [(0x80, 0, 0, 0), (0x15, 0, 1, 60), (0x06, 0, 0, 1), (0x06, 0, 0, 0)],
     bytes(60), "match"),
])
@pytest.mark.parametrize("guards", GUARDS)
def test_edge_cases(name, insns, frame, why, guards):
    prog = Program(insns)
    tr = translate_xdp(prog, guards=guards)
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    want = _expect(prog, frame, tr)
    assert progtypes.run_xdp(interp, frame).retval == want
    assert (want == tr.match) == (why == "match")


def test_widened_guard_gives_up_early():
    # ldb [20]; jeq #6 -> ldh [40] ... ret #1 / ret #0: every matching path loads
    # [40..42), so one guard for 42 bytes comes first (need[0] = 42) and the second load
    # needs none
    prog = Program([(0x30, 0, 0, 20), (0x15, 0, 3, 6), (0x28, 0, 0, 40),
                    (0x15, 0, 1, 80), (0x06, 0, 0, 1), (0x06, 0, 0, 0)])
    tr = translate_xdp(prog)
    text = tr.listing()
    assert text.count("> r9 goto") == 1 and "r2 += 42" in text
    per_load = translate_xdp(prog, guards="per-load")
    assert per_load.listing().count("> r9 goto") == 2


def test_refusals():
    with pytest.raises(ValidationError):
        translate_xdp(Program([(0x06, 0, 0, 1), (0x15, 0, 0, 0)]))     # last not ret
    with pytest.raises(UnsupportedError):
        translate_xdp(Program([(0x05, 0, 0, 0), (0x05, 0, 0, 0xFFFFFFFE), (0x06, 0, 0, 1)]))
    with pytest.raises(UsageError):
        translate_xdp(Program([(0x06, 0, 0, 1)]), match="maybe")


# --- corpus expressions on real captures ------------------------------------------------

def _programs(shared_dir):
    out = []
    with open(shared_dir / "corpus" / "libpcap-filter-exprs.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rc, text, _ = oracles.tcpdump_compile(d["expr"], d["dlt"], "-ddd")
            if rc == 0:
                lines = text.split("\n")
                out.append((f'{d["dlt"]}: {d["expr"]}', Program([tuple(int(v) for v in ln.split())
                                                for ln in lines[1:1 + int(lines[0])]])))
    return out


def _frames(shared_dir):
    d = shared_dir / "pcaps" / "tcpdump-tests"
    out = []
    for name in sorted(os.listdir(d)):
        r = oracles.libpcap_read(str(d / name), max_packets=3)
        if r.dlt == 1:
            out += [p[3] for p in r.packets if XDP_MIN <= len(p[3]) <= XDP_MAX]
    return out


@pytest.mark.tcpdump
@pytest.mark.kernel
def test_corpus_verifier_clean_and_agrees(shared_dir):
    """Every corpus program of every link type (tcpdump -ddd) except protochain's loop:
    BPF_PROG_LOAD as XDP succeeds, and the test run's verdict is the classic filter's
    decision on the first three frames of every Ethernet capture (programs of other
    link types on every 2nd frame; bytes are bytes); the eBPF interpreter agrees on
    every 16th frame."""
    progs = _programs(shared_dir)
    all_frames = _frames(shared_dir)
    loaded = protochain = compared = interp_compared = 0
    for expr, prog in progs:
        try:
            tr = translate_xdp(prog)
        except UnsupportedError as e:
            assert "backward" in str(e) and "protochain" in expr, expr
            protochain += 1
            continue
        frames_ = all_frames if expr.startswith("EN10MB:") else all_frames[::2]
        batch = PacketBatch.from_packets(frames_)
        want = [tr.match if v else tr.nomatch for v in run_batch(prog, batch)]
        fd = oracles.bpf_prog_load(tr.to_bytes(), prog_type=oracles.BPF_PROG_TYPE_XDP)
        loaded += 1
        try:
            for i, f in enumerate(frames_):
                assert oracles.bpf_prog_test_run(fd, f)[0] == want[i], (expr, i)
                compared += 1
        finally:
            os.close(fd)
        # the per-load baseline: verifier-clean too, and agrees on every 8th frame
        fd = oracles.bpf_prog_load(translate_xdp(prog, guards="per-load").to_bytes(),
                                   prog_type=oracles.BPF_PROG_TYPE_XDP)
        try:
            for i in range(0, len(frames_), 8):
                assert oracles.bpf_prog_test_run(fd, frames_[i])[0] == want[i], (expr, i)
        finally:
            os.close(fd)
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
        for i in range(0, len(frames_), 16):
            assert progtypes.run_xdp(interp, frames_[i]).retval == want[i], (expr, i)
            # the vector interpreter's reference agrees with the scalar one
            assert (run_filter(prog, frames_[i]) != 0) == (want[i] == tr.match), (expr, i)
            interp_compared += 1
    print(f"loaded {loaded}, protochain {protochain}, kernel {compared}, interp {interp_compared}")
    assert loaded > 600 and compared > 400_000 and 0 < protochain < 20


@pytest.mark.parametrize("guards", GUARDS)
def test_jump_offset_overflow_is_a_clear_error(guards):
    # jeq -> (jt) ja over 4092 `ldh [x + 14]`, each 10 eBPF instructions with its
    # indirect guard: the ja's offset exceeds the s16 range; the error names it
    body = [(0x48, 0, 0, 14)] * 4092
    prog = Program([(0x15, 0, 1, 5), (0x05, 0, 0, len(body))] + body + [(0x06, 0, 0, 1)])
    with pytest.raises(ValidationError) as ei:
        translate_xdp(prog, guards=guards)
    assert ei.value.rule == "translate.jump_range" and ei.value.index == 1


@SETTINGS
@given(prog=wild_programs(), f=frames)
def test_wild_programs_refused_or_exact(prog, f):
    """Anything: refused with libpcap's validator's reason, unsupported with a named
    feature, or translated and exact wherever libpcap's bpf_filter itself runs."""
    errors = check(prog, "libpcap")
    if errors:
        with pytest.raises(ValidationError) as ei:
            translate_xdp(prog)
        assert ei.value.rule == errors[0].rule
        return
    try:
        tr = translate_xdp(prog)
    except UnsupportedError as e:
        assert "XDP mode" in str(e)
        return
    try:
        want = _expect(prog, f, tr)
    except ExecutionError:
        return          # libpcap 1.10.3 would abort() or loop: no reference answer
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    assert progtypes.run_xdp(interp, f).retval == want, prog.as_tuples()


def test_unimplemented_opcode_behind_a_dead_path_is_still_refused():
    # ld [0]; (0x0e: "ret x", which bpf_filter has no case for); every path returns 0,
    # so the widened translation would answer "nomatch" at once -- but libpcap aborts
    # at instruction 1 on any packet of >= 4 bytes: no answer is the honest one
    prog = Program([(0x20, 0, 0, 0), (0x0e, 0, 0, 0), (0x06, 0, 0, 0)])
    for guards in GUARDS:
        with pytest.raises(UnsupportedError):
            translate_xdp(prog, guards=guards)


def _classic_cases(shared_dir):
    with open(shared_dir / "corpus" / "linux-test_bpf-classic.json") as f:
        return json.load(f)["tests"]


@pytest.mark.kernel
def test_test_bpf_cases(shared_dir):
    """lib/test_bpf.c's classic programs that need no skb metadata, on their test data
    (zero-padded to 128 bytes, cut to each subtest's size; XDP needs >= 14): where
    libpcap's validator accepts them and they are translatable, the XDP verdict (eBPF
    interpreter and kernel) is the filter-mode decision."""
    compared = 0
    for case in _classic_cases(shared_dir):
        if case["needs_skb_meta"] or case["expected_errcode"] is not None:
            continue
        prog = Program([(cd, jt & 0xFF, jf & 0xFF, k & 0xFFFFFFFF)
                        for cd, jt, jf, k in case["insns"]])
        if check(prog, "libpcap"):
            continue
        data = bytes(case["data"]) + bytes(128 - len(case["data"]))
        sizes = sorted({max(s, XDP_MIN) for s, _ in case["subtests"]})
        for guards in GUARDS:
            tr = translate_xdp(prog, guards=guards)
            interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
            fd = oracles.bpf_prog_load(tr.to_bytes(), prog_type=oracles.BPF_PROG_TYPE_XDP)
            try:
                for size in sizes:
                    want = _expect(prog, data[:size], tr)
                    assert progtypes.run_xdp(interp, data[:size]).retval == want, case["descr"]
                    assert oracles.bpf_prog_test_run(fd, data[:size])[0] == want, case["descr"]
                    compared += 1
            finally:
                os.close(fd)
    assert compared == 230      # 105 libpcap-valid cases, their distinct sizes, 2 modes
