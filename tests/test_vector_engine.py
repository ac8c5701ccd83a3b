"""The vector engine (bpfkit.ebpf.vector) against the reference interpreter, bit for bit
(DESIGN.md "The vector engine", "Exactness contract"; issue 7 "Proof of equality").

The oracle is the reference interpreter (bpfkit.ebpf.interp) run one packet at a time
in capture order, i.e. the runner's engine="interp".  Every comparison covers return
values, instruction counts, faults (packet, pc, kind: detail texts and addresses are
not part of the contract), skipped packets, output bytes, XDP metadata and redirect
targets, trace lines and the maps after the run (dump_maps, hash iteration order
included).  The vector runs also assert that they really ran on the vector engine, so
that a silent fallback to the interpreter cannot make a test pass.

Parts: the bpf_conformance corpus in the "mem" convention; every clang-built object of
tests/data/elf; translated classic programs (socket and XDP mode) over real captures;
hypothesis-generated programs x packet batches; maps under adversarial traffic
(tests/test_vector_maps.py); lane isolation (no packet's bytes reach another packet's
result); the seeded bpf_get_prandom_u32."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bpfkit.errors import BpfError
from bpfkit.ebpf import asm
from bpfkit.ebpf.interp import Interpreter
from bpfkit.ebpf.maps import MapSpec, MapType, create_map
from bpfkit.ebpf.prandom import PacketRandom, draw
from bpfkit.ebpf.program import Program
from bpfkit.ebpf.runner import Runner, _Collector, run_batch, run_capture
from bpfkit.ebpf.vector import VectorProgram
from bpfkit.pcap import PacketBatch, read_capture

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pcaps" / "sample.pcap"


# --- comparison -------------------------------------------------------------------------------

def outcome(res, *, maps: bool = True) -> dict:
    """Everything the contract says the two engines agree on, as plain data."""
    out = {
        "packets": res.packets,
        "retval": res.retval.tolist(),
        "insns": res.insns.tolist(),
        "faults": [(f.packet, f.pc, f.kind) for f in res.faults],
        "skipped": [(s.packet, s.reason) for s in res.skipped],
        "trace": [(t.packet, t.text) for t in res.trace],
        "output": [(ts, bytes(d)) for ts, d in res.output],
        "wirelen": res.output.wirelen.tolist(),
        "meta": dict(res.meta),
        "redirects": dict(res.redirects),
    }
    if maps:
        out["maps"] = _identities_dropped(res.dump_maps())
    return out


def _identities_dropped(dump):
    """prog_array / map-in-map dumps show objects (repr with an address); each run has
    its own objects, so only which kind of object sits in which slot is compared."""
    if isinstance(dump, dict):
        return {k: _identities_dropped(v) for k, v in dump.items()}
    if isinstance(dump, list):
        return [_identities_dropped(v) for v in dump]
    if isinstance(dump, str):
        return re.sub(r" object at 0x[0-9a-f]+", " object", dump)
    return dump


def assert_same(vec, ref, *, maps: bool = True, vector: bool = True, what: str = "") -> None:
    """vec (engine="vector") equals ref (engine="interp"); with vector=True vec must
    really have run on the vector engine."""
    assert ref.engine == "interp"
    if vector:
        assert vec.engine == "vector", (what, vec.engine)
    a, b = outcome(vec, maps=maps), outcome(ref, maps=maps)
    for k in a:
        if a[k] != b[k]:
            if isinstance(a[k], list) and len(a[k]) == len(b[k]):
                i = next(j for j in range(len(a[k])) if a[k][j] != b[k][j])
                raise AssertionError(f"{what}: {k} differs first at element {i}: vector "
                                     f"{a[k][i]!r} != interp {b[k][i]!r}")
            raise AssertionError(f"{what}: {k} differs: vector {a[k]!r} != interp {b[k]!r}")


def compare_batch(program: Program, batch: PacketBatch, *, seed: int = 0,
                  budget: int = 1_000_000, maps=None, what: str = ""):
    vec = run_batch(program, batch, seed=seed, budget=budget, engine="vector",
                    maps=maps() if maps else None)
    ref = run_batch(program, batch, seed=seed, budget=budget, engine="interp",
                    maps=maps() if maps else None)
    assert_same(vec, ref, what=what)
    return vec, ref


def lanes_input(packets: list[bytes], *, index=None, ts=None) -> dict:
    """VectorProgram.run's input for `packets` stored back to back in one buffer (so a
    read past a lane's end would hit the next lane's bytes)."""
    buf = np.frombuffer(b"".join(packets), np.uint8) if any(packets) else np.zeros(0, np.uint8)
    lens = np.array([len(p) for p in packets], np.int64)
    off = np.zeros(len(packets), np.int64)
    off[1:] = np.cumsum(lens)[:-1]
    n = len(packets)
    return {"buf": buf, "offset": off, "caplen": lens,
            "ts_ns": np.arange(n, dtype=np.int64) * 1000 if ts is None else np.asarray(ts, np.int64),
            "index": np.arange(n, dtype=np.int64) if index is None else np.asarray(index, np.int64)}


def lane_bytes(res, j: int, given: bytes) -> bytes:
    """A lane's memory after the run (LaneOutcome.packets: None = as given)."""
    p = res.packets[j]
    return given if p is None else p


def _xdp(src: str, maps=()) -> Program:
    return Program.from_asm(src, prog_type="xdp", maps=maps)


def _sock(src: str, maps=()) -> Program:
    return Program.from_asm(src, prog_type="socket", maps=maps)


# --- 1. the bpf_conformance corpus on the "mem" convention --------------------------------------

def _conformance_cases(shared_dir):
    from test_ebpf_conformance import parse_data
    files = sorted((shared_dir / "corpus" / "bpf_conformance" / "tests").glob("*.data"))
    assert len(files) == 313
    return [(f.name, parse_data(f.read_text())) for f in files]


def test_conformance_corpus_on_lanes(shared_dir):
    """Every positive case on 4 lanes holding the same memory (plus a lane with that
    memory cut short and an empty lane, where the case has memory): r0 (64 bits),
    instruction count, fault (pc, kind) and the memory after the run equal the
    interpreter's on every lane.  The engine hands callx's lanes to the interpreter."""
    from test_ebpf_conformance import OPTIONS, _hex_bytes
    unsupported, ran, handed = {}, 0, {}
    for name, sec in _conformance_cases(shared_dir):
        insns = asm.assemble(sec["asm"], "conformance")
        mem = bytes(_hex_bytes(sec["mem"])) if "mem" in sec else b""
        interp = Interpreter(insns, OPTIONS)
        vp = VectorProgram(interp, None)
        if vp.unsupported_reason is not None:
            unsupported[name] = vp.unsupported_reason
            continue
        lanes = [mem] * 4 + ([mem[:len(mem) // 2], b""] if mem else [])
        res = vp.run(lanes_input(lanes))
        assert len(res.retval) == len(lanes)
        if res.handed:
            handed[name] = res.handed
        for j, m in enumerate(lanes):
            buf = bytearray(m)
            r = Interpreter(insns, OPTIONS).run(mem=buf)
            f = res.faults.get(j)
            got = (int(res.retval[j]), int(res.insns[j]), f and (f.pc, f.kind),
                   lane_bytes(res, j, m))
            want = (r.retval, r.insns, r.fault and (r.fault.pc, r.fault.kind), bytes(buf))
            assert got == want, (name, j)
            if j < 4:
                # the case's own expectation, on every identical lane
                assert f is None and int(res.retval[j]) == int(sec["result"].split()[0], 16), \
                    (name, j)
        ran += 1
    assert not unsupported, unsupported
    # callx.data has no memory: its 4 lanes reach the callx and are handed over
    assert handed == {"callx.data": {"callx": 4}}, handed
    assert ran == 313


# --- 2. every clang-built object of tests/data/elf ----------------------------------------------

# programs that run wholly on the vector engine (the others hand the packets that reach
# a tail call, a ring buffer, map-in-map, bpf_loop, ... to the interpreter)
VECTOR_OBJECTS = {"btf_kinds", "elf_map_iproute2", "legacy_maps", "printk", "socket_len",
                  "xdp_rewrite", "xdp_vlan"}


def _elf_objects():
    from test_elf_load import OBJECTS
    return OBJECTS


@pytest.mark.clang
@pytest.mark.parametrize("stem", _elf_objects())
def test_clang_objects_over_sample(stem):
    from bpfkit.ebpf.elf import open_elf
    from test_elf_load import build_object
    o = open_elf(build_object(stem))
    engines = {}
    for p in o.programs:
        prog = o.program(p.name)
        mv, mi = o.create_maps(), o.create_maps()
        vec = run_capture(prog, str(SAMPLE), maps=mv, engine="vector")
        ref = run_capture(prog, str(SAMPLE), maps=mi, engine="interp")
        engines[p.name] = (vec.engine, vec.handed)
        # prog_array / map-in-map slots are compared without the objects' addresses
        # (each run has its own objects): outcome() drops them
        assert_same(vec, ref, vector=False, what=f"{stem}:{p.name}")
        assert vec.packets > 1000
    assert all(e == "vector" for e, _ in engines.values()), engines
    if stem in VECTOR_OBJECTS:
        assert all(not h for _, h in engines.values()), engines


# --- 3. translated classic programs over real captures ------------------------------------------

def _corpus_programs(shared_dir):
    """EN10MB expressions of the libpcap corpus that compile (the compiler accepts
    exactly what tcpdump accepts: tests/test_compiler_corpus.py)."""
    from bpfkit.cbpf.compiler import compile_filter
    from bpfkit.errors import BpfError
    out = []
    with open(shared_dir / "corpus" / "libpcap-filter-exprs.jsonl") as f:
        for line in f:
            d = json.loads(line)
            if d["dlt"] != "EN10MB":
                continue
            try:
                out.append((d["expr"], compile_filter(d["expr"], "EN10MB")))
            except BpfError:
                continue
    return out


def _capture_packets(shared_dir, per_file: int) -> list[bytes]:
    """The first `per_file` packets of every Ethernet capture in tcpdump-tests."""
    from bpfkit.pcap import open_capture
    d = shared_dir / "pcaps" / "tcpdump-tests"
    out = []
    for name in sorted(os.listdir(d)):
        if not name.endswith((".pcap", ".pcapng", ".cap")):
            continue
        try:
            with open_capture(str(d / name)) as r:
                for b in r:
                    if b.linktype == 1:
                        out += [bytes(b[i]) for i in range(min(per_file, len(b)))]
                    break
        except BpfError:        # a deliberately broken capture of the test suite
            continue
    return out


@pytest.fixture(scope="module")
def classic_corpus(shared_dir):
    progs = _corpus_programs(shared_dir)
    assert len(progs) > 300
    caps = _capture_packets(shared_dir, 3)
    assert len(caps) > 600
    sample = read_capture(SAMPLE).packets()
    # a deterministic pool: every 6th capture packet, every 50th of sample.pcap, plus
    # frames shorter than the Ethernet header (skipped) and truncated IP headers
    pool = caps[::6] + sample[::50] + [b"", bytes(13), sample[0][:14], sample[0][:20],
                                        sample[0][:34], caps[0][:40]]
    return progs, caps, sample, pool


# a socket filter's skb->data is after the 14-byte Ethernet header of the test run, so
# the classic program (which expects the frame at offset 0) gets a dummy header in
# front, as tests/test_translate_corpus.py does (ethertype 0x88b5: not IP)
ETH_HDR = bytes(12) + b"\x88\xb5"


def _frames_for(mode: str, frames: list[bytes]) -> PacketBatch:
    return PacketBatch.from_packets([ETH_HDR + f for f in frames] if mode == "socket"
                                    else frames)


@pytest.mark.parametrize("mode", ["socket", "xdp"])
def test_translated_corpus_programs(classic_corpus, mode):
    """Every corpus program, translated (socket mode; XDP mode with both guard
    placements), over a pool of real frames: vector == interp on every packet."""
    from bpfkit.translate import translate_socket, translate_xdp
    from bpfkit.errors import ValidationError
    progs, _, _, pool = classic_corpus
    pool = _frames_for(mode, pool)
    ran, varied = 0, 0
    for n, (expr, cprog) in enumerate(progs):
        try:
            if mode == "socket":
                tr = translate_socket(cprog)
            else:
                tr = translate_xdp(cprog, guards=("widened", "per-load")[n % 2])
        except ValidationError:
            continue            # protochain's backward jumps (test_translate_corpus)
        prog = Program(tr.insns, prog_type=tr.prog_type)
        vec = run_batch(prog, pool, engine="vector")
        ref = run_batch(prog, pool, engine="interp")
        assert_same(vec, ref, what=f"{mode}: {expr}")
        ran += 1
        varied += len(set(ref.retval.tolist())) > 1
    assert ran > 300 and varied > 100


@pytest.mark.parametrize("mode", ["socket", "xdp"])
def test_translated_programs_over_whole_captures(classic_corpus, mode):
    """A few corpus programs over every sample.pcap packet and three packets of every
    Ethernet tcpdump-tests capture, in one batch (so many distinct paths per wave)."""
    from bpfkit.translate import translate_socket, translate_xdp
    progs, caps, sample, _ = classic_corpus
    batch = _frames_for(mode, caps + sample[::3])
    # the three longest programs and two common ones
    by = dict(progs)
    longest = sorted(progs, key=lambda ep: -len(ep[1].insns))[:3]
    picks = [e for e, _ in longest] + [e for e in ("tcp port 25", "udp port 53") if e in by]
    assert len(picks) == 5
    varied = 0
    for e in picks:
        tr = translate_socket(by[e]) if mode == "socket" else translate_xdp(by[e])
        prog = Program(tr.insns, prog_type=tr.prog_type)
        vec, ref = compare_batch(prog, batch, what=f"{mode}: {e}")
        varied += len(set(ref.retval.tolist())) > 1
    assert varied >= 2          # the traffic does exercise both outcomes


# --- 4. generated programs x generated batches --------------------------------------------------
#
# Registers: r6 = ctx; XDP: r7 = data, r8 = data_end; r9 = loop counter; r5 = scratch
# (may hold a pointer, never read by the epilogue); r0-r4 = values that depend on the
# lane (never pointers, so the returned value is comparable).  Every instruction group
# below is atomic (labels only fall between groups), so a jump cannot skip the reset
# of a register that briefly held a pointer.

VALS = ("r0", "r1", "r2", "r3", "r4")
ALU = ("+=", "-=", "*=", "/=", "s/=", "%=", "s%=", "|=", "&=", "^=", "<<=", ">>=", "s>>=", "=")
JMP = ("==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&")
SPECIAL = (0, 1, -1, 2, 3, 7, 8, 31, 32, 63, 64, 0xFF, 0xFFFF, 0x7FFFFFFF, -0x80000000, -2, 0x800)
imm32 = st.one_of(st.sampled_from(SPECIAL), st.integers(-(1 << 31), (1 << 31) - 1))
imm64 = st.one_of(st.sampled_from([0, -1, 1 << 63, (1 << 63) - 1, 0x8000_0000,
                                   0xFFFF_FFFF, 0x1_0000_0000]),
                  st.integers(-(1 << 63), (1 << 63) - 1))


@st.composite
def _alu(draw):
    w = draw(st.sampled_from("rw"))
    d, s = draw(st.sampled_from(VALS))[1:], draw(st.sampled_from(VALS))[1:]
    kind = draw(st.sampled_from(["reg", "imm", "imm", "movsx", "neg", "end", "lddw"]))
    if kind == "reg":
        return [f"{w}{d} {draw(st.sampled_from(ALU))} {w}{s}"]
    if kind == "imm":
        op = draw(st.sampled_from(ALU))
        if op in ("<<=", ">>=", "s>>="):
            k = draw(st.integers(0, 31 if w == "w" else 63))
        else:
            k = draw(imm32)
        return [f"{w}{d} {op} {k}"]
    if kind == "movsx":
        bits = draw(st.sampled_from([8, 16] if w == "w" else [8, 16, 32]))
        return [f"{w}{d} = (s{bits}){w}{s}"]
    if kind == "neg":
        return [f"{w}{d} = -{w}{d}"]
    if kind == "end":
        how = draw(st.sampled_from(["be", "le", "bswap"]))
        return [f"r{d} = {how}{draw(st.sampled_from([16, 32, 64]))} r{d}"]
    return [f"r{d} = {draw(imm64)} ll"]


@st.composite
def _stack(draw, wild: bool):
    """Stack stores/loads/atomics of every size; with `wild`, offsets may leave the
    512-byte frame (a fault at the same pc on both engines)."""
    sz = draw(st.sampled_from([1, 2, 4, 8]))
    if wild and draw(st.integers(0, 5)) == 0:
        off = draw(st.sampled_from([-520, -513, -512 - sz + 1, -sz + 1, 0, 4, 8, -1]))
    else:
        off = -draw(st.integers(sz, 512))
    loc = f"(r10 {'-' if off < 0 else '+'} {abs(off)})"
    r = draw(st.sampled_from(VALS))
    kind = draw(st.sampled_from(["st", "stx", "ldx", "ldxs", "atomic"]))
    if kind == "st":
        return [f"*(u{8 * sz} *){loc} = {draw(imm32)}"]
    if kind == "stx":
        return [f"*(u{8 * sz} *){loc} = {r}"]
    if kind == "ldx" or (kind == "ldxs" and sz == 8):
        return [f"{r} = *(u{8 * sz} *){loc}"]
    if kind == "ldxs":
        return [f"{r} = *(s{8 * sz} *){loc}"]
    # atomics: 4 or 8 bytes, aligned
    sz = draw(st.sampled_from([4, 8]))
    off = -sz * draw(st.integers(1, 512 // sz))
    bits, w = 8 * sz, ("w" if sz == 4 else "r")
    loc = f"(r10 - {-off})"
    a = draw(st.sampled_from(["lock", "fetch", "xchg", "cmpxchg"]))
    if a == "lock":
        return [f"lock *(u{bits} *){loc} {draw(st.sampled_from(['+=', '|=', '&=', '^=']))} {r}"]
    if a == "fetch":
        return [f"{r} = atomic_fetch_{draw(st.sampled_from(['add', 'or', 'and', 'xor']))}"
                f"((u{bits} *){loc}, {r})"]
    if a == "xchg":
        fn = "xchg_64" if sz == 8 else "xchg32_32"
        return [f"{w}{r[1:]} = {fn}(r10 - {-off}, {w}{r[1:]})"]
    fn = "cmpxchg_64" if sz == 8 else "cmpxchg32_32"
    return [f"{w}0 = {fn}(r10 - {-off}, {w}0, {w}{r[1:]})"]


@st.composite
def _xdp_mem(draw, n: int):
    """Packet loads/stores: checked against data_end, unchecked (faults on short
    lanes), at a lane-dependent offset; resize helpers; xdp_md fields."""
    d = draw(st.sampled_from(VALS))
    sz = draw(st.sampled_from([1, 2, 4, 8]))
    k = draw(st.one_of(st.sampled_from([20, 39, 0, 12, 13, 14, 33, 59, 60, 99, 1500]),
                       st.integers(0, 70)))
    kind = draw(st.sampled_from(["checked", "store", "unchecked", "checked", "var", "store",
                                 "adjust", "ctx", "meta"]))
    if kind == "checked":
        return ["r5 = r7", f"r5 += {k + sz}", f"if r5 > r8 goto skip{n}",
                f"{d} = *(u{8 * sz} *)(r7 + {k})", f"skip{n}:"]
    if kind == "unchecked":
        return [f"{d} = *(u{8 * sz} *)(r7 + {k})"]
    if kind == "var":
        s = draw(st.sampled_from(VALS))
        return ["r5 = " + s, f"r5 &= {draw(st.sampled_from([63, 127, 255, 1023]))}",
                "r5 += r7", f"{d} = *(u{8 * sz} *)(r5 + 0)"]
    if kind == "store":
        s = draw(st.sampled_from(VALS))
        return ["r5 = r7", f"r5 += {k + sz}", f"if r5 > r8 goto skip{n}",
                f"*(u{8 * sz} *)(r7 + {k}) = {s}", f"skip{n}:"]
    if kind == "adjust":
        hid, delta = draw(st.sampled_from([
            (44, st.integers(-300, 80)), (65, st.integers(-80, 300)),
            (54, st.sampled_from([-4, -8, -32, -3, 4, -256, -260]))]))
        return ["r1 = r6", f"r2 = {draw(delta)}", f"call {hid}", "r1 = r0",
                "r7 = *(u32 *)(r6 + 0)", "r8 = *(u32 *)(r6 + 4)"]
    if kind == "meta":
        # read the metadata area (data_meta .. data), checked
        return ["r5 = *(u32 *)(r6 + 8)", "r5 += 4", f"if r5 > r7 goto skip{n}",
                "r5 -= 4", f"{d} = *(u32 *)(r5 + 0)", f"skip{n}:"]
    off = draw(st.sampled_from([0, 4, 8, 12, 16, 20, 2, 24]))
    size = draw(st.sampled_from([4, 4, 4, 2, 8]))
    if off in (0, 4, 8) and size == 4:
        return [f"{d} = *(u32 *)(r6 + {off})", f"{d} -= r7"]     # a pointer difference
    return [f"{d} = *(u{8 * size} *)(r6 + {off})"]


SKB_OFFS = (0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 64, 68, 72, 76, 84, 88,
            164, 176, 188, 190, 192, -4)


@st.composite
def _socket_mem(draw, n: int):
    """LD_ABS / LD_IND (net and link-layer windows too), __sk_buff fields and cb[],
    bpf_skb_load_bytes."""
    kind = draw(st.sampled_from(["abs", "abs", "ind", "ctx", "cb", "load_bytes"]))
    sz = draw(st.sampled_from([8, 16, 32]))
    if kind == "abs":
        k = draw(st.one_of(st.integers(0, 80), st.sampled_from([-1, 1500, 0x7FFFFFFF]),
                           st.integers(0, 40).map(lambda x: x - 0x100000),
                           st.integers(0, 40).map(lambda x: x - 0x200000)))
        return [f"r0 = *(u{sz} *)skb[{k}]"]
    if kind == "ind":
        s = draw(st.sampled_from(VALS[1:]))
        k = draw(st.integers(0, 40))
        return [f"r5 = {s}", f"r5 &= {draw(st.sampled_from([15, 63, 255, -1]))}",
                f"r0 = *(u{sz} *)skb[r5 + {k}]"]
    d = draw(st.sampled_from(VALS))
    if kind == "ctx":
        off = draw(st.sampled_from(SKB_OFFS))
        size = draw(st.sampled_from([4, 4, 4, 1, 2, 8]))
        return [f"{d} = *(u{8 * size} *)(r6 {'-' if off < 0 else '+'} {abs(off) + draw(st.sampled_from([0, 0, 0, 1, 2]))})"]
    if kind == "cb":
        off = 48 + 4 * draw(st.integers(0, 5))
        s = draw(st.sampled_from(VALS))
        return [f"*(u32 *)(r6 + {off}) = {s}", f"{d} = *(u32 *)(r6 + {48 + 4 * draw(st.integers(0, 4))})"]
    ln = draw(st.sampled_from([1, 4, 8, 40]))
    return ["r1 = r6", f"r2 = {draw(st.integers(0, 80))}", "r3 = r10", "r3 += -64",
            f"r4 = {ln}", "call 26", "r3 = r0", f"{d} = *(u32 *)(r10 - 64)", "r1 = 0"]


@st.composite
def _loop(draw, n: int):
    """A bounded loop: 1..64 iterations of a few ALU instructions (exhausts a small
    budget on some lanes)."""
    src = draw(st.sampled_from(VALS))
    body = [ln for _ in range(draw(st.integers(1, 3))) for ln in draw(_alu())]
    return [f"r9 = {src}", "r9 &= 63", "r9 += 1", f"loop{n}:", *body, "r9 -= 1",
            f"if r9 s> 0 goto loop{n}"]


@st.composite
def _jump(draw):
    w = draw(st.sampled_from("rw"))
    d = draw(st.sampled_from(VALS))[1:]
    if draw(st.booleans()):
        rhs = w + draw(st.sampled_from(VALS))[1:]
    else:
        rhs = str(draw(imm32))
    return f"if {w}{d} {draw(st.sampled_from(JMP))} {rhs} goto"


@st.composite
def _print(draw):
    """bpf_trace_printk("%d %x\\n" or "%u %llx\\n", two value registers)."""
    fmt, size = draw(st.sampled_from([(0xA7825206425, 7), (0xA786C6C25207525, 9),
                                        (0xA786C6C25207525, 8)]))
    a, b = draw(st.sampled_from(VALS[2:])), draw(st.sampled_from(VALS[2:]))
    return [f"r5 = {fmt} ll", "*(u64 *)(r10 - 16) = r5", "r5 = 0", "*(u64 *)(r10 - 8) = r5",
            f"r5 = {b}", f"r3 = {a}", "r4 = r5", "r1 = r10", "r1 += -16", f"r2 = {size}",
            "call 6", "r1 = r0"]


PROLOGUE = {
    "xdp": ["r6 = r1", "r7 = *(u32 *)(r6 + 0)", "r8 = *(u32 *)(r6 + 4)", "r0 = r8", "r0 -= r7",
            "r1 = r0", "r1 *= -1640531535", "r2 = *(u64 *)(r7 + 0)", "r3 = *(u32 *)(r7 + 8)",
            "r4 = *(u16 *)(r7 + 12)", "r9 = 0"],
    "socket": ["r6 = r1", "r1 = *(u32 *)(r6 + 16)", "r2 = *(u32 *)(r6 + 4)",
               "r0 = *(u32 *)(r6 + 0)", "r3 = r0", "r3 *= -1640531535", "r4 = 0", "r9 = 0"],
}
EPILOGUE = ["r0 ^= r1", "r0 += r2", "r0 ^= r3", "r0 += r4", "exit"]


@st.composite
def generated_programs(draw, ptype: str):
    n_groups = draw(st.integers(1, 24))
    groups, jumps = [], []
    for n in range(n_groups):
        kind = draw(st.sampled_from(["alu", "mem", "jump", "alu", "mem", "stack", "jump",
                                     "mem", "loop", "call", "alu", "print"]))
        if kind == "alu":
            groups.append(draw(_alu()))
        elif kind == "jump":
            groups.append(None)
            jumps.append((n, draw(st.integers(n + 1, n_groups)), draw(_jump())))
        elif kind == "stack":
            groups.append(draw(_stack(wild=True)))
        elif kind == "mem":
            groups.append(draw(_xdp_mem(n) if ptype == "xdp" else _socket_mem(n)))
        elif kind == "loop":
            groups.append(draw(_loop(n)))
        elif kind == "print":
            groups.append(draw(_print()))
        else:
            groups.append([f"call {draw(st.sampled_from([7, 7, 5, 8]))}"])
    lines = list(PROLOGUE[ptype])
    for n in range(n_groups + 1):
        lines += [f"L{j}_{t}:" for j, t, _ in jumps if t == n]
        if n == n_groups:
            break
        if groups[n] is None:
            _, t, cond = next(x for x in jumps if x[0] == n)
            lines.append(f"{cond} L{n}_{t}")
        else:
            lines += groups[n]
    return "\n".join(lines + EPILOGUE)


LENGTHS = (40, 14, 60, 21, 34, 15, 100, 0, 13, 54, 300, 1514, 3520, 3521, 4000)


@st.composite
def packet_lists(draw, max_n: int = 20):
    """2..max_n frames of mixed lengths: under 14 bytes (skipped), 14..60, medium,
    long (XDP: over 3520 bytes is skipped too); bytes from a seeded generator, or all
    zero, or one repeated byte."""
    n = draw(st.integers(2, max_n))
    lens = draw(st.lists(st.one_of(st.sampled_from(LENGTHS), st.integers(14, 200)),
                         min_size=n, max_size=n))
    rng = random.Random(draw(st.integers(0, 1 << 30)))
    style = draw(st.sampled_from(["random", "random", "zero", "fill"]))
    out = []
    for i, ln in enumerate(lens):
        if style == "random":
            out.append(rng.randbytes(ln))
        else:
            out.append(bytes([0 if style == "zero" else (i * 29 + 1) & 0xFF]) * ln)
    return out


def run_both(program: Program, batches, *, wave_size: int = 1 << 14, maps=None,
             seed: int = 0, budget: int = 1_000_000, num_cpus: int = 1, what: str = "",
             vector: bool = True, calls: list | None = None):
    """Run consecutive `batches` of one capture through the runner's collector on each
    engine (fresh maps from `maps()` per engine) and compare.  The vector engine's wave
    size is forced to `wave_size` (many waves; the runner's default is 32768).  `calls`
    collects (lanes, LaneOutcome) of every VectorProgram.run."""
    results = []
    for engine in ("vector", "interp"):
        col = _Collector(Runner(program, maps=maps() if maps else None, seed=seed,
                                budget=budget, num_cpus=num_cpus), engine)
        if col.vprog is not None:
            run = col.vprog.run

            def forced(inp, seed=0, _run=run):
                out = _run(inp, seed=seed, wave_size=wave_size)
                if calls is not None:
                    calls.append((len(inp["offset"]), out))
                return out
            col.vprog.run = forced
        for b in batches:
            col.batch(b)
        results.append(col.result(()))
    assert_same(*results, what=what, vector=vector)
    return results


def with_head(batch: PacketBatch, width: int) -> PacketBatch:
    """The batch with PacketBatch.head filled as the capture reader fills it: each
    packet's first `width` bytes and, past its caplen, whatever follows it in the buffer
    (here: the next packets' bytes), then zeros.  A load must never return those."""
    if not width:
        return batch
    buf = np.concatenate([np.asarray(batch.buf, np.uint8), np.zeros(width, np.uint8)])
    off = np.asarray(batch.offset, np.int64)
    head = buf[off[:, None] + np.arange(width)] if len(off) else np.zeros((0, width), np.uint8)
    return dataclasses.replace(batch, head=head)


def _split(packets: list[bytes], parts: int) -> list[PacketBatch]:
    k = max(1, -(-len(packets) // parts))
    return [PacketBatch.from_packets(packets[i:i + k], ts_ns=[1_000_000 * (i + j) for j in
                                                             range(len(packets[i:i + k]))])
            for i in range(0, len(packets), k)]


# no shrinking by default (it can take minutes; the failing example is printed in
# full and derandomize makes it reproducible): BPFKIT_SHRINK=1 shrinks it
GEN = settings(max_examples=200, deadline=None, derandomize=True,
               suppress_health_check=list(HealthCheck),
               phases=[Phase.explicit, Phase.reuse, Phase.generate] +
               ([Phase.shrink] if os.environ.get("BPFKIT_SHRINK") == "1" else []))


@pytest.mark.parametrize("ptype", ["xdp", "socket"])
@GEN
@given(data=st.data())
def test_generated_programs(ptype, data):
    src = data.draw(generated_programs(ptype), label="program")
    pkts = data.draw(packet_lists(), label="packets")
    budget = data.draw(st.sampled_from([1_000_000, 1_000_000, 40, 90, 250]), label="budget")
    # waves of 8+ lanes (the engine hands runs of smaller waves to the interpreter)
    wave = data.draw(st.sampled_from([1 << 14, 8, 9, 13]), label="wave_size")
    parts = data.draw(st.sampled_from([1, 1, 2, 3]), label="batches")
    # the reader's head cache, of widths a load can straddle (the engine then reads the
    # capture buffer), or none
    head = data.draw(st.sampled_from([0, 0, 16, 64]), label="head")
    prog = Program.from_asm(src, prog_type=ptype)
    calls: list = []
    run_both(prog, [with_head(b, head) for b in _split(pkts, parts)], wave_size=wave,
             budget=budget, seed=len(pkts), what=src, calls=calls)
    # without maps no lane waits: every wave is full, none ran on the interpreter
    for n, out in calls:
        assert out.waves == -(-n // wave)


# --- 6. lane isolation ---------------------------------------------------------------------------
#
# A lane reads only its own bytes: every out-of-bounds access faults exactly where the
# interpreter's does, and nothing a lane returns, writes or prints depends on the
# packets next to it.  The packets are stored back to back in one buffer (a read past a
# lane's end would land in the next packet) and each is filled with its own byte value;
# short, truncated and long packets alternate and sit on both sides of wave boundaries
# (wave_size 8).

FILL_LENS = [40, 14, 41, 39, 1514, 20, 34, 33, 600, 512, 511, 513, 60, 13, 100, 3520, 3521,
             0, 15, 42, 4000, 26, 40, 40, 41, 16, 300, 18]


def isolation_packets() -> list[bytes]:
    out = []
    for i, n in enumerate(FILL_LENS):
        fill = (37 * i + 11) & 0xFF
        p = bytearray([fill]) * n
        if n > 2:
            p[0], p[1] = (i * 5) & 0xFF, (i * 13 + 3) & 0xFF    # lane-specific selectors
        out.append(bytes(p))
    return out


VALUE16 = MapSpec(MapType.ARRAY, 4, 16, 4, name="vals")

ISOLATION = {
    # XDP: a byte at a fixed offset, no bounds check (lanes of 40 bytes or fewer fault)
    "xdp u8 at 40": ("xdp", "r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 40)\nexit"),
    "xdp u64 at 33": ("xdp", "r2 = *(u32 *)(r1 + 0)\nr0 = *(u64 *)(r2 + 33)\nexit"),
    "xdp u8 before data": ("xdp", "r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 - 1)\nexit"),
    "xdp u32 straddling data": ("xdp", "r2 = *(u32 *)(r1 + 0)\nr0 = *(u32 *)(r2 - 2)\nexit"),
    "xdp u8 at data_end": ("xdp", "r2 = *(u32 *)(r1 + 4)\nr0 = *(u8 *)(r2 + 0)\nexit"),
    "xdp u64 straddling data_end": ("xdp", "r2 = *(u32 *)(r1 + 4)\nr0 = *(u64 *)(r2 - 4)\nexit"),
    "xdp u8 at data_end - 1": ("xdp", "r2 = *(u32 *)(r1 + 4)\nr0 = *(u8 *)(r2 - 1)\nexit"),
    "xdp far past data_end": ("xdp", "r2 = *(u32 *)(r1 + 4)\nr0 = *(u8 *)(r2 + 4096)\nexit"),
    # the offset comes from the packet (selector byte 1): in bounds or not per lane
    "xdp offset from packet": ("xdp", """
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 2
        if r4 > r3 goto out
        r4 = *(u8 *)(r2 + 1)
        r2 += r4
        r0 = *(u16 *)(r2 + 0)
        exit
    out:
        r0 = 77
        exit"""),
    # metadata area: 8 bytes made, then a read of 12 before data (4 too many)
    "xdp before data_meta": ("xdp", """
        r6 = r1
        r2 = -8
        call 54
        r2 = *(u32 *)(r6 + 0)
        r0 = *(u32 *)(r2 - 8)
        r0 = *(u32 *)(r2 - 12)
        exit"""),
    # a write past data_end must fault, never land in the next lane's page
    "xdp store past end": ("xdp", """
        r2 = *(u32 *)(r1 + 0)
        r3 = 0x5a
        *(u8 *)(r2 + 40) = r3
        r0 = 2
        exit"""),
    # shrink the tail below a neighbour's length, then read where the end was
    "xdp read after adjust_tail": ("xdp", """
        r6 = r1
        r2 = -10
        call 65
        r2 = *(u32 *)(r6 + 4)
        r0 = *(u8 *)(r2 + 5)
        exit"""),
    # the stack: each lane stores its length at fp-8, then reads at fp - length
    "stack at fp - len": ("xdp", """
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r3 -= r2
        *(u64 *)(r10 - 8) = r3
        r4 = r10
        r4 -= r3
        r0 = *(u8 *)(r4 + 0)
        exit"""),
    "stack above the frame": ("xdp", "*(u64 *)(r10 - 8) = r1\nr0 = *(u64 *)(r10 - 4)\nexit"),
    "stack below the frame": ("socket", "r0 = *(u8 *)(r10 - 513)\nexit"),
    "stack far below": ("socket", "r2 = r10\nr2 += -4096\nr0 = *(u64 *)(r2 + 0)\nexit"),
    # socket filters: LD_ABS/LD_IND past the end end the program with 0, no fault
    "ld_abs u8 at 26": ("socket", "r0 = *(u8 *)skb[26]\nexit"),
    "ld_abs u32 at 24": ("socket", "r0 = *(u32 *)skb[24]\nexit"),
    "ld_ind from packet": ("socket", """
        r6 = r1
        r0 = *(u8 *)skb[0]
        r7 = r0
        r0 = *(u16 *)skb[r7 + 0]
        exit"""),
    "ld_abs link layer": ("socket", "r0 = *(u32 *)skb[-2097112]\nexit"),
    "skb_load_bytes": ("socket", """
        r6 = r1
        r2 = 20
        r3 = r10
        r3 += -16
        r4 = 8
        call 26
        r0 = *(u64 *)(r10 - 16)
        exit"""),
    # map values: 16 bytes; the offset comes from the packet
    "map value at packet offset": ("xdp", """
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r6 = *(u8 *)(r2 + 1)
        r7 = *(u8 *)(r2 + 0)
        r7 &= 3
        *(u32 *)(r10 - 4) = r7
        r1 = vals ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r6 &= 31
        r0 += r6
        r0 = *(u8 *)(r0 + 0)
        exit
    out:
        r0 = 99
        exit"""),
    "map value u64 past the end": ("xdp", """
        r2 = *(u32 *)(r1 + 0)
        r6 = *(u8 *)(r2 + 1)
        r6 &= 15
        *(u32 *)(r10 - 4) = 1
        r1 = vals ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r0 += r6
        r0 = *(u64 *)(r0 + 0)
        exit
    out:
        r0 = 99
        exit"""),
    "map value before the start": ("xdp", """
        *(u32 *)(r10 - 4) = 2
        r1 = vals ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r0 = *(u8 *)(r0 - 1)
    out:
        exit"""),
}


def _vals():
    m = create_map(VALUE16)
    for k in range(4):
        m.update(k.to_bytes(4, "little"), bytes(range(16 * k + 1, 16 * k + 17)))
    return {"vals": m}


def _program(ptype, src):
    maps = [VALUE16] if "vals ll" in src else []
    return Program.from_asm(src, prog_type=ptype, maps=maps)


def _per_packet(res, i):
    f = next(((f.pc, f.kind) for f in res.faults if f.packet == i), None)
    return (int(res.retval[i]), int(res.insns[i]), f, bytes(res.output[i]),
            res.meta.get(i), [t.text for t in res.trace if t.packet == i])


@pytest.mark.parametrize("name", list(ISOLATION))
def test_lane_isolation(name):
    """vector == interp on the whole batch (two wave sizes), and every packet alone on
    the vector engine gives what it gives in the batch."""
    ptype, src = ISOLATION[name]
    prog = _program(ptype, src)
    maps = _vals if "vals ll" in src else None
    pkts = isolation_packets()
    batch = PacketBatch.from_packets(pkts, ts_ns=[7000 * i for i in range(len(pkts))])
    vec, ref = run_both(prog, [batch], maps=maps, what=name)
    run_both(prog, [batch], maps=maps, wave_size=8, what=name + " (waves of 8)")
    # with the head cache: its bytes past a short packet's end are the next packet's
    for width in (16, 64):
        headed, _ = run_both(prog, [with_head(batch, width)], maps=maps, wave_size=8,
                             what=f"{name} (head {width})")
        assert outcome(headed) == outcome(vec), (name, width)
    assert ref.faults or name in ("xdp u8 at data_end - 1", "ld_abs u8 at 26",
                                  "ld_abs u32 at 24", "ld_ind from packet",
                                  "ld_abs link layer", "skb_load_bytes",
                                  "xdp read after adjust_tail"), "no lane faults"
    for i, p in enumerate(pkts):
        alone = run_batch(prog, PacketBatch.from_packets([p], ts_ns=[7000 * i]),
                          maps=maps() if maps else None, engine="vector")
        assert alone.engine == "vector"
        got, want = _per_packet(alone, 0), _per_packet(vec, i)
        assert got == want, (name, i, len(p))


def test_fixed_offset_read_never_returns_a_neighbours_byte():
    """r0 = data[40] without a bounds check: a lane of 40 bytes or fewer faults at pc 1
    (r0 = 0); the others return their own byte 40 -- whatever sits next to them."""
    prog = _xdp("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 40)\nexit")
    pkts = isolation_packets()
    for wave in (1 << 14, 8, 9):
        vec, ref = run_both(prog, [PacketBatch.from_packets(pkts)], wave_size=wave)
        faulted = {f.packet: (f.pc, f.kind) for f in vec.faults}
        skipped = {s.packet for s in vec.skipped}
        for i, p in enumerate(pkts):
            if i in skipped:
                assert len(p) < 14 or len(p) > 3520
                assert vec.retval[i] == 0
            elif len(p) <= 40:
                assert faulted.get(i) == (1, "memory") and vec.retval[i] == 0, i
            else:
                assert i not in faulted and vec.retval[i] == p[40], i


@pytest.mark.parametrize("head", [0, 64])
def test_ld_abs_past_the_end_is_zero_not_the_next_packet(head):
    """Socket filter r0 = skb[26] (frame byte 40): 0 when the frame has 40 bytes or
    fewer (LD_ABS failure: the program ends with 0, no fault), else the lane's byte;
    also when the head cache holds the next packet's bytes at byte 40."""
    prog = _sock("r0 = *(u8 *)skb[26]\nexit")
    pkts = isolation_packets()
    vec, ref = run_both(prog, [with_head(PacketBatch.from_packets(pkts), head)], wave_size=8)
    assert not vec.faults
    skipped = {s.packet for s in vec.skipped}
    for i, p in enumerate(pkts):
        if i not in skipped:
            assert vec.retval[i] == (p[40] if len(p) > 40 else 0), i
            assert vec.insns[i] == (2 if len(p) > 40 else 1)


def test_mem_lanes_fault_at_their_own_end():
    """The conformance convention (r1 = the lane's bytes, r2 = their length): reading
    byte 40 and byte -1, on lanes of many lengths back to back in one buffer."""
    from test_ebpf_conformance import OPTIONS
    # lanes up to 3520 bytes (longer ones: test_long_mem_lane_cannot_write_into_the_next_lane)
    pkts = [p for p in isolation_packets() if len(p) <= 3520]
    for src in ("r0 = *(u8 *)(r1 + 40)\nexit", "r0 = *(u8 *)(r1 - 1)\nexit",
                "r3 = r1\nr3 += r2\nr0 = *(u32 *)(r3 - 3)\nexit",
                "r3 = r1\nr3 += r2\n*(u8 *)(r3 + 0) = 1\nexit",
                "r3 = r1\nr3 += r2\n*(u8 *)(r3 - 1) = 1\nr0 = *(u64 *)(r1 + 0)\nexit"):
        insns = asm.assemble(src, "llvm")
        vp = VectorProgram(Interpreter(insns, OPTIONS), None)
        assert vp.unsupported_reason is None
        for wave in (1 << 14, 8):
            res = vp.run(lanes_input(pkts), wave_size=wave)
            for j, p in enumerate(pkts):
                mem = bytearray(p)
                r = Interpreter(insns, OPTIONS).run(mem=mem)
                f = res.faults.get(j)
                assert (int(res.retval[j]), int(res.insns[j]), f and (f.pc, f.kind),
                        lane_bytes(res, j, p)) == \
                    (r.retval, r.insns, r.fault and (r.fault.pc, r.fault.kind), bytes(mem)), \
                    (src, j, len(p))


# --- the context: atomics and helpers given a context pointer -------------------------------------

CTX_CASES = {
    "atomic add to __sk_buff cb": ("socket", "r2 = 5\nlock *(u32 *)(r1 + 48) += r2\n"
                                             "r0 = *(u32 *)(r1 + 48)\nexit"),
    "atomic add to xdp_md": ("xdp", "r2 = 5\nlock *(u32 *)(r1 + 0) += r2\nr0 = 1\nexit"),
    "trace_printk with the format in the context": ("xdp", "r2 = 4\ncall 6\nexit"),
    "skb_load_bytes into cb": ("socket", "r6 = r1\nr3 = r1\nr3 += 48\nr2 = 0\nr4 = 4\n"
                                         "call 26\nr0 = *(u32 *)(r6 + 48)\nexit"),
    "csum_diff over the context": ("xdp", "r2 = 4\nr3 = 0\nr4 = 0\nr5 = 0\ncall 28\nexit"),
    "xdp_load_bytes into the context": ("xdp", "r3 = r1\nr2 = 0\nr4 = 4\ncall 189\nexit"),
    "map key in the context": ("xdp", "r2 = r1\nr1 = vals ll\ncall 1\nr0 = 3\nexit"),
}


@pytest.mark.parametrize("name", list(CTX_CASES))
def test_context_pointer_given_to_atomics_and_helpers(name):
    """Programs the kernel's verifier would refuse, but which both engines run: they
    must still agree (retval, fault pc and kind, trace, maps)."""
    ptype, src = CTX_CASES[name]
    prog = _program(ptype, src)
    batch = PacketBatch.from_packets([bytes(range(60)), bytes(20)])
    run_both(prog, [batch], maps=_vals if "vals ll" in src else None, what=name)


# --- 7. bpf_get_prandom_u32 ---------------------------------------------------------------------

PRANDOM = """
    r6 = r1
    {len}
    r7 &= 3
    r8 = 0
again:
    call 7
    r8 ^= r0
    r7 -= 1
    if r7 s>= 0 goto again
    r0 = r8
    exit
"""


@pytest.mark.parametrize("ptype", ["xdp", "socket"])
@pytest.mark.parametrize("seed", [0, 7, (1 << 64) - 1])
def test_prandom_draws(ptype, seed):
    """Packet i draws (len & 3) + 1 values: the result is their xor, draw(seed, i, k)
    for k = 0..; the same on both engines, with packet numbers running on across
    batches and skipped packets."""
    load = ("r7 = *(u32 *)(r6 + 4)\n    r1 = *(u32 *)(r6 + 0)\n    r7 -= r1" if ptype == "xdp"
            else "r7 = *(u32 *)(r6 + 0)")
    prog = Program.from_asm(PRANDOM.format(len=load), prog_type=ptype)
    pkts = isolation_packets() * 3
    vec, ref = run_both(prog, _split(pkts, 3), seed=seed, wave_size=8)
    skipped = {s.packet for s in ref.skipped}
    for i, p in enumerate(pkts):
        if i in skipped:
            continue
        n = ((len(p) if ptype == "xdp" else len(p) - 14) & 3) + 1
        want = 0
        for k in range(n):
            want ^= draw(seed, i, k)
        assert int(vec.retval[i]) == want, i


def test_prandom_in_mem_lanes():
    """The conformance convention with basic helpers: lane j draws with its packet
    number inp['index'][j]."""
    from bpfkit.ebpf.helpers import basic_helpers
    from bpfkit.ebpf.interp import Options
    insns = asm.assemble("call 7\nr6 = r0\ncall 7\nr0 <<= 32\nr0 |= r6\nexit", "llvm")
    opts = Options(helpers=basic_helpers())
    vp = VectorProgram(Interpreter(insns, opts), None)
    assert vp.unsupported_reason is None
    index = [5, 3, 1000, 0, 5]
    res = vp.run(lanes_input([b"ab"] * 5, index=index), seed=42)
    for j, i in enumerate(index):
        assert int(res.retval[j]) == draw(42, i, 0) | draw(42, i, 1) << 32
        r = Interpreter(insns, opts).run(mem=bytearray(b"ab"), prandom=PacketRandom(42, i))
        assert r.retval == int(res.retval[j])


def test_long_mem_lane_cannot_write_into_the_next_lane():
    """The conformance convention with a 5000-byte lane before a 1000-byte one: the
    long lane writes its last byte, the short lane reads its byte 903 (where the long
    lane's last byte would land if its frame were 4096 bytes)."""
    from test_ebpf_conformance import OPTIONS
    insns = asm.assemble("r3 = r1\nr3 += r2\nr4 = 0x77\n*(u8 *)(r3 - 1) = r4\n"
                         "r0 = *(u8 *)(r1 + 903)\nexit", "llvm")
    pkts = [b"\xaa" * 5000, b"\xbb" * 1000]
    res = VectorProgram(Interpreter(insns, OPTIONS), None).run(lanes_input(pkts))
    want = []
    for p in pkts:
        mem = bytearray(p)
        want.append((Interpreter(insns, OPTIONS).run(mem=mem).retval, bytes(mem)))
    assert res.retval.tolist() == [r for r, _ in want]          # 0xaa, 0xbb
    assert [lane_bytes(res, j, p) for j, p in enumerate(pkts)] == [m for _, m in want]


def test_xdp_write_on_some_lanes_then_read_on_all():
    """Lanes of 15+ bytes write byte 14 (checked against data_end), then every lane
    reads byte 0: the lanes that did not write must still read their own packet."""
    prog = _xdp("""
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 15
        if r4 > r3 goto skip
        *(u8 *)(r2 + 14) = 1
    skip:
        r0 = *(u8 *)(r2 + 0)
        exit
    """)
    pkts = [b"\x01" * 15, b"\x02" * 14, b"\x03" * 20, b"\x04" * 14]
    vec, ref = run_both(prog, [PacketBatch.from_packets(pkts)])
    assert ref.retval.tolist() == [1, 2, 3, 4] and not ref.faults


# --- bpf-to-bpf calls and helpers, directed ------------------------------------------------------

# r6 = ctx, r7 = data, r8 = data_end, r9 = length in every XDP case
_XDP_HEAD = """
    r6 = r1
    r7 = *(u32 *)(r6 + 0)
    r8 = *(u32 *)(r6 + 4)
    r9 = r8
    r9 -= r7
"""

DIRECTED = {
    # a subprogram with its own stack, given a pointer into the caller's
    "call: callee uses both stacks": ("xdp", _XDP_HEAD + """
        *(u64 *)(r10 - 8) = r9
        r1 = r10
        r1 += -8
        r2 = r9
        call sub
        r0 += *(u64 *)(r10 - 8)
        exit
    sub:
        *(u64 *)(r10 - 8) = r2
        r3 = *(u64 *)(r1 + 0)
        r3 *= 3
        *(u64 *)(r1 + 0) = r3
        r0 = *(u64 *)(r10 - 8)
        r0 &= 0xff
        exit
    """.replace("r0 += *(u64 *)(r10 - 8)", "r1 = *(u64 *)(r10 - 8)\n        r0 += r1")),
    # recursion as deep as the length says: past 8 frames the lane faults (call_depth)
    "call: recursion depth from the packet": ("xdp", _XDP_HEAD + """
        r1 = r9
        r1 &= 15
        call rec
        exit
    rec:
        *(u64 *)(r10 - 8) = r1
        if r1 == 0 goto base
        r1 -= 1
        call rec
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        exit
    base:
        r0 = 100
        exit
    """),
    # callee-saved registers survive the call; the callee branches per lane
    "call: callee-saved registers": ("xdp", _XDP_HEAD + """
        r6 = 11
        r1 = r9
        call f
        r0 += r6
        r0 += r9
        exit
    f:
        r6 = 1000
        r9 = 2000
        if r1 > 60 goto big
        r0 = 1
        exit
    big:
        r0 = 2
        exit
    """),
    # a loop calling a subprogram; a small budget (see test) stops long lanes
    "call: loop around a call": ("xdp", _XDP_HEAD + """
        r7 = r9
        r7 &= 31
        r8 = 0
    again:
        r1 = r7
        call g
        r8 += r0
        r7 -= 1
        if r7 s> 0 goto again
        r0 = r8
        exit
    g:
        r0 = r1
        r0 *= r1
        exit
    """),
    "redirect: ifindex and flags": ("xdp", _XDP_HEAD + """
        r1 = r9
        r2 = 0
        if r9 < 100 goto go
        r2 = 1
    go:
        call 23
        if r9 != 40 goto out
        r1 = 3
        r2 = 0
        call 23
        r0 = 2
    out:
        exit
    """),
    "xdp_get_buff_len after adjust_tail": ("xdp", _XDP_HEAD + """
        r1 = r6
        r2 = r9
        r2 &= 63
        r2 -= 20
        call 65
        r7 = r0
        r1 = r6
        call 188
        r0 <<= 8
        r0 |= r7
        exit
    """),
    "xdp_load_bytes / store_bytes": ("xdp", _XDP_HEAD + """
        r1 = r6
        r2 = 30
        r3 = r10
        r3 += -16
        r4 = 8
        call 189
        r7 = r0
        r1 = *(u64 *)(r10 - 16)
        r1 += 1
        *(u64 *)(r10 - 16) = r1
        r1 = r6
        r2 = 2
        r3 = r10
        r3 += -16
        r4 = 12
        call 190
        r0 += r7
        exit
    """),
    "adjust_meta then adjust_head keeps the metadata": ("xdp", _XDP_HEAD + """
        r1 = r6
        r2 = -8
        call 54
        r2 = *(u32 *)(r6 + 8)
        r3 = *(u32 *)(r6 + 0)
        r4 = r2
        r4 += 8
        if r4 > r3 goto skip
        *(u64 *)(r2 + 0) = r9
    skip:
        r1 = r6
        r2 = r9
        r2 &= 7
        r2 -= 3
        call 44
        r0 = 2
        exit
    """),
    "csum_diff over the packet": ("xdp", _XDP_HEAD + """
        r1 = r7
        r1 += 20
        if r1 > r8 goto out
        r1 = r7
        r2 = 20
        r3 = 0
        r4 = 0
        r5 = 0x1234
        call 28
        exit
    out:
        r0 = 0
        exit
    """),
    "ktime variants and smp_processor_id": ("socket", """
        call 5
        r6 = r0
        call 125
        r6 ^= r0
        call 160
        r6 += r0
        call 8
        r0 += r6
        exit
    """),
    "strncmp on the stack": ("xdp", _XDP_HEAD + """
        r1 = *(u64 *)(r7 + 0)
        *(u64 *)(r10 - 8) = r1
        r1 = 0x0000000000000000 ll
        *(u64 *)(r10 - 16) = r1
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = r10
        r3 += -16
        call 182
        exit
    """),
}


@pytest.mark.parametrize("name", list(DIRECTED))
def test_directed_programs(name):
    ptype, src = DIRECTED[name]
    prog = Program.from_asm(src, prog_type=ptype)
    pkts = isolation_packets()
    batches = _split(pkts, 2)
    run_both(prog, batches, what=name)
    run_both(prog, batches, wave_size=8, what=name + " (waves of 8)")
    if name.startswith("call"):
        run_both(prog, batches, wave_size=8, budget=60, what=name + " (budget 60)")


def test_gather_rows_equals_fancy_indexing():
    # helpers read keys and values as [lanes, nbytes] byte rows at arbitrary addresses
    from bpfkit.ebpf.vector.memory import gather_rows
    rng = np.random.default_rng(7)
    arena = rng.integers(0, 256, 4096, dtype=np.uint8)
    for nbytes in (1, 4, 13, 16, 64):
        addr = rng.integers(0, len(arena) - nbytes + 1, 300)
        addr[:2] = [0, len(arena) - nbytes]
        want = arena[addr[:, None] + np.arange(nbytes)]
        assert (gather_rows(arena, addr, nbytes) == want).all()
        strided = arena[::2]                    # not contiguous: the plain way
        a2 = addr % (len(strided) - nbytes + 1)
        assert (gather_rows(strided, a2, nbytes) == strided[a2[:, None] + np.arange(nbytes)]).all()
