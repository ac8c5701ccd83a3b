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
from bpfkit.translate.xdp import packet_need, translate_xdp

from cbpf_gen import libpcap_programs, looping_programs, wild_programs
from pcap_craft import PROTOCHAIN_FRAMES

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
    with pytest.raises(UsageError):
        translate_xdp(Program([(0x06, 0, 0, 1)]), match="maybe")
    # packet_need is a forward-jump analysis
    with pytest.raises(UnsupportedError):
        packet_need(Program([(0x05, 0, 0, 0), (0x05, 0, 0, 0xFFFFFFFE),
                             (0x06, 0, 0, 1)]).insns)


# --- loops: backward ja -> may_goto + goto ----------------------------------------------

# a classic loop walking bytes 14, 15, ... until a zero byte (match) or the end of
# the frame (the load fails: no match); one backward jump per non-zero byte:
#   0 ldx #14   1 ldb [x + 0]   2 jeq #0 jt 7 jf 3   3 txa   4 add #1   5 tax
#   6 ja 1      7 ret #1
_WALK = Program([(0x01, 0, 0, 14), (0x50, 0, 0, 0), (0x15, 4, 0, 0), (0x87, 0, 0, 0),
                 (0x04, 0, 0, 1), (0x07, 0, 0, 0), (0x05, 0, 0, (-6) & 0xFFFFFFFF),
                 (0x06, 0, 0, 1)])


@pytest.mark.parametrize("guards", GUARDS)
def test_backward_jump_becomes_may_goto(guards):
    tr = translate_xdp(_WALK, guards=guards)
    assert tr.loops and tr.guards == "per-load"
    text = tr.listing()
    # the back-edge: may_goto to the shared "no match" block, then the goto back
    lines = [ln.split("\t", 1)[1] for ln in text.splitlines()]
    mg = [n for n, ln in enumerate(lines) if ln.startswith("may_goto")]
    assert len(mg) == 1 and lines[mg[0] + 1].startswith("goto -")
    assert mg[0] + 1 + int(lines[mg[0]].split()[1]) == len(lines) - 2   # w0 = nomatch; exit
    assert lines[-2:] == [f"w0 = {tr.nomatch}", "exit"]


@pytest.mark.parametrize("frame,want,iterations", [
    (bytes(14) + b"\0", True, 0),
    (bytes(14) + b"\1\1\1\0", True, 3),
    (bytes(14) + b"\1" * 40 + b"\0", True, 40),
    (bytes(14) + b"\1" * 40, False, 40),          # runs off the end: the load fails
])
def test_loop_counter_on_a_translation(frame, want, iterations):
    """The translated loop takes one may_goto per classic backward jump: with the
    counter set to exactly that many the answer is libpcap's; one fewer and the last
    back-edge is refused, so the answer is "no match"."""
    assert (run_filter(_WALK, frame) != 0) == want
    tr = translate_xdp(_WALK)
    for max_loops, expect in ((iterations, want), (iterations - 1, False)):
        if max_loops < 0:
            continue
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP, max_loops=max_loops)
        got = progtypes.run_xdp(interp, frame)
        assert got.fault is None
        assert got.retval == (tr.match if expect else tr.nomatch), (max_loops, frame)


@SETTINGS
@given(prog=looping_programs(), pkts=st.lists(frames, min_size=1, max_size=4))
def test_looping_programs_interpreter_agrees(prog, pkts):
    tr = translate_xdp(prog)
    interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
    for f in pkts:
        assert progtypes.run_xdp(interp, f).retval == _expect(prog, f, tr), prog.as_tuples()


@pytest.mark.kernel
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(prog=looping_programs(), pkts=st.lists(frames, min_size=1, max_size=4))
def test_looping_programs_kernel_loads_and_agrees(prog, pkts):
    tr = translate_xdp(prog)
    fd = oracles.bpf_prog_load(tr.to_bytes(), prog_type=oracles.BPF_PROG_TYPE_XDP)
    try:
        for f in pkts:
            assert oracles.bpf_prog_test_run(fd, f)[0] == _expect(prog, f, tr), prog.as_tuples()
    finally:
        os.close(fd)


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


def _decisions(prog, frames_) -> list[bool | None]:
    """libpcap's decision per frame (run_batch; frame by frame with run_filter when a
    frame makes the batch give up), None where bpf_filter would never return."""
    try:
        return [bool(v) for v in run_batch(prog, PacketBatch.from_packets(frames_))]
    except ExecutionError:
        out = []
        for f in frames_:
            try:
                out.append(run_filter(prog, f) != 0)
            except ExecutionError:
                out.append(None)
        return out


def _verdict_for(tr, decision: bool | None) -> int:
    # where libpcap never returns, the translation's loop ends in "no match"
    return tr.match if decision else tr.nomatch


@pytest.mark.tcpdump
@pytest.mark.kernel
def test_corpus_verifier_clean_and_agrees(shared_dir):
    """Every corpus program of every link type (tcpdump -ddd), protochain's loops
    included: BPF_PROG_LOAD as XDP succeeds, and the test run's verdict is the classic
    filter's decision on the first three frames of every Ethernet capture (programs of
    other link types on every 2nd frame; bytes are bytes); the eBPF interpreter agrees
    on every 16th frame."""
    progs = _programs(shared_dir)
    all_frames = _frames(shared_dir)
    loaded = looping = compared = interp_compared = 0
    for expr, prog in progs:
        tr = translate_xdp(prog)
        assert tr.loops == ("protochain" in expr), expr
        looping += tr.loops
        frames_ = all_frames if expr.startswith("EN10MB:") else all_frames[::2]
        decisions = _decisions(prog, frames_)
        want = [_verdict_for(tr, d) for d in decisions]
        fd = oracles.bpf_prog_load(tr.to_bytes(), prog_type=oracles.BPF_PROG_TYPE_XDP)
        loaded += 1
        try:
            for i, f in enumerate(frames_):
                assert oracles.bpf_prog_test_run(fd, f)[0] == want[i], (expr, i)
                compared += 1
        finally:
            os.close(fd)
        if not tr.loops:
            # the per-load baseline: verifier-clean too, and agrees on every 8th frame
            fd = oracles.bpf_prog_load(translate_xdp(prog, guards="per-load").to_bytes(),
                                       prog_type=oracles.BPF_PROG_TYPE_XDP)
            try:
                for i in range(0, len(frames_), 8):
                    assert oracles.bpf_prog_test_run(fd, frames_[i])[0] == want[i], (expr, i)
            finally:
                os.close(fd)
        # a small may_goto counter only shortens runs that never end in libpcap
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP, max_loops=10_000)
        for i in range(0, len(frames_), 16):
            assert progtypes.run_xdp(interp, frames_[i]).retval == want[i], (expr, i)
            if decisions[i] is not None:
                # the vector interpreter's reference agrees with the scalar one
                assert (run_filter(prog, frames_[i]) != 0) == decisions[i], (expr, i)
            interp_compared += 1
    print(f"loaded {loaded} (with loops {looping}), kernel {compared}, interp {interp_compared}")
    assert loaded == len(progs) > 600 and compared > 400_000 and looping == 9


# --- protochain on crafted frames: IPv6 extension header chains, AH, truncation --------

# the frames and their decisions: pcap_craft.PROTOCHAIN_FRAMES


def _protochain_programs(shared_dir):
    progs = [(e, p) for e, p in _programs(shared_dir) if "protochain" in e]
    assert len(progs) == 9 and all(e.startswith("RAW:") for e, _ in progs)
    return progs


def _protochain_decision(expr: str, version: int, d17: bool | None) -> bool | None:
    qualifier = expr.split(":", 1)[1].split()[0]
    if {"ip": 4, "ip6": 6}.get(qualifier, version) != version or version == 0:
        return False
    if d17 is None:
        return None
    return d17 and not expr.endswith(" 256")


def test_protochain_frames_fit_an_xdp_test_run():
    assert all(XDP_MIN <= len(f) <= XDP_MAX for _, f, *_ in PROTOCHAIN_FRAMES)
    assert len({f for _, f, *_ in PROTOCHAIN_FRAMES}) == len(PROTOCHAIN_FRAMES)


@pytest.mark.tcpdump
@pytest.mark.kernel
def test_protochain_crafted_frames(shared_dir):
    """The 9 corpus protochain programs on the crafted frames: the decision is the one
    the table states and libpcap's own bpf_filter returns (not called where it never
    returns); the XDP translation makes it in the kernel and in bpfkit's interpreter;
    where libpcap loops forever bpfkit's cBPF interpreter raises, and the translation
    says "no match" once may_goto's counter is spent (the kernel's timed counter after
    about 250 ms here, bpfkit's after max_loops back-edges)."""
    checked = looped = 0
    for expr, prog in _protochain_programs(shared_dir):
        tr = translate_xdp(prog)
        fd = oracles.bpf_prog_load(tr.to_bytes(), prog_type=oracles.BPF_PROG_TYPE_XDP)
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP)
        short = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP, max_loops=1000)
        try:
            for name, f, version, d17, _ in PROTOCHAIN_FRAMES:
                want = _protochain_decision(expr, version, d17)
                verdict = _verdict_for(tr, want)
                if want is None:
                    with pytest.raises(ExecutionError, match="backward jumps"):
                        run_filter(prog, f)
                    assert progtypes.run_xdp(short, f).retval == tr.nomatch, (expr, name)
                    looped += 1
                else:
                    assert (run_filter(prog, f) != 0) == want, (expr, name)
                    assert (oracles.libpcap_filter(prog.as_tuples(), f) != 0) == want, \
                        (expr, name)
                    res = progtypes.run_xdp(interp, f)
                    assert res.fault is None and res.retval == verdict, (expr, name)
                assert oracles.bpf_prog_test_run(fd, f)[0] == verdict, (expr, name)
                checked += 1
        finally:
            os.close(fd)
    # looping frames: 1 IPv4 (ip ..., and the plain programs), 2 IPv6 (ip6 ..., plain)
    assert checked == 9 * len(PROTOCHAIN_FRAMES) and looped == 3 * (1 + 2 + 3)


@pytest.mark.tcpdump
@pytest.mark.parametrize("name", ["v4 ah loop", "v6 ah loop"])
def test_libpcap_itself_never_returns_on_the_looping_frames(shared_dir, name):
    """The frames the table marks None really spin libpcap 1.10.3's own bpf_filter
    (run in a child process, killed after 2 s); a terminating one returns at once."""
    import subprocess
    import sys
    frames_ = {c[0]: c[1] for c in PROTOCHAIN_FRAMES}
    prog = dict(_protochain_programs(shared_dir))["RAW: protochain 17"]
    code = ("import sys, oracles; print(oracles.libpcap_filter(eval(sys.argv[1]), "
            "bytes.fromhex(sys.argv[2])))")
    tests_dir = os.path.dirname(os.path.abspath(__file__))

    def run(frame):
        return subprocess.run([sys.executable, "-c", code, repr(prog.as_tuples()),
                               frame.hex()], cwd=tests_dir, capture_output=True, text=True,
                              timeout=2, env={**os.environ, "PYTHONPATH": tests_dir})
    assert run(frames_["v6 ah udp"]).stdout.strip() == "262144"
    with pytest.raises(subprocess.TimeoutExpired):
        run(frames_[name])


@pytest.mark.tcpdump
@pytest.mark.parametrize("name,frame,version,d17,jumps",
                         [c for c in PROTOCHAIN_FRAMES if c[3] is not None],
                         ids=[c[0] for c in PROTOCHAIN_FRAMES if c[3] is not None])
def test_protochain_may_goto_counter(shared_dir, name, frame, version, d17, jumps):
    """One may_goto per backward jump libpcap takes: with the counter at exactly that
    many the translation decides as libpcap does; with one fewer the last back-edge
    is refused and the answer is "no match"."""
    progs = dict(_protochain_programs(shared_dir))
    prog = progs["RAW: protochain 17"]
    tr = translate_xdp(prog)
    for max_loops, want in ((jumps, d17), (jumps - 1, False)):
        if max_loops < 0:
            continue
        interp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP, max_loops=max_loops)
        assert progtypes.run_xdp(interp, frame).retval == _verdict_for(tr, want), max_loops
    # the default counter (8M) is never what ends a looping run within the default
    # instruction budget: the budget runs out first
    if name == "v6 100 hop-by-hop":
        looping = dict((c[0], c[1]) for c in PROTOCHAIN_FRAMES)["v6 ah loop"]
        res = progtypes.run_xdp(progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_XDP),
                                looping)
        assert res.fault is not None and res.fault.kind == "budget"


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
