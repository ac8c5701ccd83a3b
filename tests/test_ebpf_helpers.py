"""Map helpers (map_lookup_elem 1, map_update_elem 2, map_delete_elem 3) and map
references (lddw map fd / map value) against the kernel: random socket-filter programs
update, look up (then write through the value pointer, plain and atomic) and delete
keys taken from the packet in an ARRAY and a HASH map; the same packets run one after
another in the kernel (BPF_PROG_TEST_RUN, maps from BPF_MAP_CREATE) and in the
interpreter (bpfkit.ebpf.maps); every retval and the final map contents must agree."""
from __future__ import annotations

import os
import random
import struct

import pytest

import oracles
from bpfkit.ebpf import assemble, isa
from bpfkit.ebpf.helpers import map_helpers
from bpfkit.ebpf.interp import Interpreter, Options
from bpfkit.ebpf.isa import Insn
from bpfkit.ebpf.maps import MapSpec, MapType, create_map
from bpfkit.ebpf.progtypes import run_socket_filter, run_xdp, socket_filter_helpers

MAPS = [("arr", MapType.ARRAY, 8), ("hsh", MapType.HASH, 6)]   # key 4, value 16 bytes


def _key(rng, n: int) -> list[str]:
    # key = packet byte & 7 (LD_ABS clobbers r1-r5 but not r6-r9), stored at fp-4
    return [f"r0 = *(u8 *)skb[{rng.randrange(0, 30)}]", "r0 &= 7", "*(u32 *)(r10 - 4) = r0"]


def random_map_program(rng: random.Random, n_ops: int, maps=MAPS) -> str:
    lines = ["r6 = r1", f"r9 = {rng.randrange(-2**31, 2**31)}"]
    for n in range(n_ops):
        name = rng.choice(maps)[0]
        lines += _key(rng, n)
        op = rng.random()
        if op < 0.45:
            flags = rng.choice([0, 0, 1, 2, 4])        # ANY, NOEXIST, EXIST, invalid
            lines += ["*(u64 *)(r10 - 24) = r9",
                      f"*(u64 *)(r10 - 16) = {rng.randrange(-2**31, 2**31)}",
                      f"r1 = {name} ll", "r2 = r10", "r2 += -4", "r3 = r10", "r3 += -24",
                      f"r4 = {flags}", "call 2", "r9 += r0"]
        elif op < 0.85:
            lines += [f"r1 = {name} ll", "r2 = r10", "r2 += -4", "call 1",
                      f"if r0 == 0 goto skip{n}",
                      "r1 = *(u64 *)(r0 + 0)", "r9 ^= r1", "r9 *= 31",
                      "r1 = *(u64 *)(r0 + 8)", "r9 += r1",
                      "*(u64 *)(r0 + 8) = r9", "r1 = 3", "lock *(u64 *)(r0 + 0) += r1",
                      f"skip{n}:"]
        else:
            lines += [f"r1 = {name} ll", "r2 = r10", "r2 += -4", "call 3", "r9 += r0"]
    lines += ["r0 = r9", "r1 = r0", "r1 >>= 32", "r0 ^= r1", "exit"]
    return "\n".join(lines)


def _with_fds(insns: list[Insn], fds: list[int]) -> list[Insn]:
    """MAP_IDX references (index into `maps`) rewritten to MAP_FD with the kernel fds."""
    out = []
    for i in insns:
        if i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX:
            i = isa.lddw(i.dst, fds[i.imm], src=isa.BPF_PSEUDO_MAP_FD)
        elif i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX_VALUE:
            i = isa.lddw(i.dst, fds[i.imm & 0xFFFFFFFF] | (i.imm >> 32) << 32,
                         src=isa.BPF_PSEUDO_MAP_VALUE)
        out.append(i)
    return out


PERCPU = {MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH}


@pytest.fixture
def on_cpu0():
    """BPF_PROG_TEST_RUN runs on the calling CPU: pin to CPU 0 so per-CPU maps are
    compared with the interpreter's cpu=0."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, old)


@pytest.mark.kernel
@pytest.mark.parametrize("maps", [
    MAPS,
    # LRU maps far from full (8 keys, 64 entries): no eviction, where the kernel's
    # approximate LRU and bpfkit's exact one could differ
    [("lru", MapType.LRU_HASH, 64), ("pha", MapType.PERCPU_ARRAY, 8)],
    [("phs", MapType.PERCPU_HASH, 6), ("lph", MapType.LRU_PERCPU_HASH, 64)],
], ids=["array+hash", "lru+percpu_array", "percpu_hash+lru_percpu"])
def test_random_map_programs_match_kernel(maps, on_cpu0):
    rng = random.Random(11)
    names = [n for n, _, _ in maps]
    ncpu = oracles.possible_cpus()
    runs = 0
    for prog_no in range(40):
        src = random_map_program(rng, rng.randrange(1, 8), maps)
        insns = assemble(src, maps=names)
        kmaps = [oracles.KernelMap.create(int(t), 4, 16, n, percpu=t in PERCPU)
                 for _, t, n in maps]
        try:
            ours = [create_map(MapSpec(t, 4, 16, n, name=name), num_cpus=ncpu)
                    for name, t, n in maps]
            try:
                fd = oracles.bpf_prog_load(isa.encode(_with_fds(insns, [k.fd for k in kmaps])))
            except oracles.BpfLoadError as e:
                pytest.fail(f"verifier refused:\n{src}\n{e.log[-2000:]}")
            interp = Interpreter(insns, Options(helpers={**map_helpers(),
                                                         **socket_filter_helpers()},
                                                maps=ours))
            try:
                for _ in range(12):
                    pkt = bytes(rng.randrange(256) for _ in range(50))
                    kret = oracles.bpf_prog_test_run(fd, pkt)[0]
                    res = run_socket_filter(interp, pkt)
                    assert res.fault is None, res.fault
                    assert res.retval == kret, (prog_no, src)
                    runs += 1
            finally:
                os.close(fd)
            for km, m in zip(kmaps, ours):
                theirs = {k: km.lookup(k)[1] for k in km.keys()}
                mine = {k: m.sys_lookup(k)[1] for k in (m.keys() if hasattr(m, "keys")
                                                          else [])}
                assert mine == theirs, (prog_no, src)
        finally:
            for k in kmaps:
                k.close()
    assert runs == 40 * 12


def test_map_handle_is_not_memory():
    m = create_map(MapSpec(MapType.ARRAY, 4, 8, 1, name="a"))
    prog = assemble("r1 = a ll\nr0 = *(u64 *)(r1 + 0)\nexit", maps=["a"])
    res = Interpreter(prog, Options(maps=[m])).run()
    assert res.fault.kind == "memory"


def test_direct_value_access_and_value_bounds():
    # lddw map_value: a pointer into key 0's value (global data); 8 bytes, offset 4
    m = create_map(MapSpec(MapType.ARRAY, 4, 8, 1, name="g"))
    insns = [isa.lddw(1, 0 | 4 << 32, src=isa.BPF_PSEUDO_MAP_IDX_VALUE),
             Insn(0x62, 1, 0, 0, 0x11223344),          # *(u32 *)(r1 + 0) = 0x11223344
             Insn(0x61, 0, 1, 0, 0),                    # r0 = *(u32 *)(r1 + 0)
             Insn(0x95)]
    res = Interpreter(insns, Options(maps=[m])).run()
    assert res.retval == 0x11223344
    assert dict(m.items())[bytes(4)] == bytes(4) + (0x11223344).to_bytes(4, "little")
    over = insns[:1] + [Insn(0x61, 0, 1, 4, 0), Insn(0x95)]   # bytes 8..11: past the value
    assert Interpreter(over, Options(maps=[m])).run().fault.region == "map value"


def _load_and_run(insns, prog_type, packets, fds=()):
    raw = isa.encode(_with_fds(insns, list(fds)))
    try:
        fd = oracles.bpf_prog_load(raw, prog_type)
    except oracles.BpfLoadError as e:
        pytest.fail(f"verifier refused:\n{e.log[-2000:]}")
    try:
        return [oracles.bpf_prog_test_run(fd, p) for p in packets]
    finally:
        os.close(fd)


def _fill_stack(rng, nbytes: int) -> list[str]:
    return [f"r1 = {rng.randrange(1 << 64)} ll\n*(u64 *)(r10 - {off}) = r1"
            for off in range(8, nbytes + 1, 8)]


_FOLD_STACK = "\n".join(f"r1 = *(u64 *)(r10 - {o})\nr0 *= 1000003\nr0 ^= r1"
                        for o in range(8, 65, 8))
_FOLD = "r1 = r0\nr1 >>= 32\nr0 ^= r1\nexit"


@pytest.mark.kernel
def test_csum_diff_matches_kernel():
    from bpfkit.ebpf.helpers import basic_helpers
    rng = random.Random(5)
    for _ in range(120):
        fs = rng.choice([0, 4, 8, 12, 32, 256, 260, 3, 5, 1, 511, 512])
        ts = rng.choice([0, 4, 8, 20, 252, 256, 2, 7, 1])
        seed = rng.choice([0, 0xFFFFFFFF, rng.randrange(1 << 32)])
        src = "\n".join(_fill_stack(rng, 512)) + f"""
            r1 = r10
            r1 += -512
            r2 = {fs}
            r3 = r10
            r3 += -256
            r4 = {ts}
            r5 = {seed} ll
            call 28
            {_FOLD}"""
        insns = assemble(src)
        # socket filters may not call csum_diff; XDP may
        kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_XDP, [bytes(20)])
        ours = run_xdp(Interpreter(insns, Options(helpers=basic_helpers())), bytes(20))
        assert ours.retval == kernel[0][0], (fs, ts, seed)


@pytest.mark.kernel
def test_xdp_bytes_helpers_match_kernel():
    from bpfkit.ebpf.progtypes import xdp_helpers
    rng = random.Random(6)
    for _ in range(60):
        tail = rng.choice([0, 0, 20, -10])
        off1 = rng.choice([0, 1, 10, 40, 59, 60, 0xFFFF, 0x10000, 0xFFFFFFFF])
        len1 = rng.choice([1, 4, 16, 32])
        off2 = rng.choice([0, 3, 14, 30, 50, 70, 0x10000])
        len2 = rng.choice([1, 8, 32])
        src = "r6 = r1\n" + "\n".join(_fill_stack(rng, 64)) + f"""
            r1 = r6
            r2 = {tail}
            call 65
            r1 = r6
            r2 = {off1} ll
            r3 = r10
            r3 += -32
            r4 = {len1}
            call 189
            r7 = r0
            r1 = r6
            r2 = {off2} ll
            r3 = r10
            r3 += -64
            r4 = {len2}
            call 190
            r8 = r0
            r1 = r6
            call 188
            r0 <<= 16
            r0 ^= r7
            r0 *= 1000003
            r0 ^= r8
            {_FOLD_STACK}
            {_FOLD}"""
        insns = assemble(src)
        pkts = [bytes(rng.randrange(256) for _ in range(n)) for n in (60, 100)]
        kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_XDP, pkts)
        interp = Interpreter(insns, Options(helpers=xdp_helpers()))
        for p, (kret, kout) in zip(pkts, kernel):
            r = run_xdp(interp, p)
            assert (r.retval, r.meta + r.packet) == (kret, kout), (tail, off1, len1, off2, len2)


@pytest.mark.kernel
@pytest.mark.parametrize("mtype", [MapType.QUEUE, MapType.STACK])
def test_queue_stack_helpers_match_kernel(mtype):
    from bpfkit.ebpf.helpers import basic_helpers
    rng = random.Random(int(mtype))
    for _ in range(15):
        lines = ["r6 = r1", "r9 = 1"]
        for _ in range(rng.randrange(1, 8)):
            c = rng.random()
            if c < 0.5:
                lines += [f"r1 = {rng.randrange(1 << 64)} ll", "*(u64 *)(r10 - 8) = r1",
                          "r1 = q ll", "r2 = r10", "r2 += -8",
                          f"r3 = {rng.choice([0, 0, 2, 1, 4])}", "call 87", "r9 += r0"]
            else:
                lines += ["r1 = -1", "*(u64 *)(r10 - 8) = r1", "r1 = q ll", "r2 = r10",
                          "r2 += -8", f"call {rng.choice([88, 89])}", "r9 *= 31", "r9 += r0",
                          "r1 = *(u64 *)(r10 - 8)", "r9 ^= r1"]
        lines += ["r0 = r9", _FOLD]
        insns = assemble("\n".join(lines), maps=["q"])
        km = oracles.KernelMap.create(int(mtype), 0, 8, 4)
        try:
            ours = create_map(MapSpec(mtype, 0, 8, 4, name="q"))
            pkts = [bytes(20)] * 6
            kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, pkts, [km.fd])
            interp = Interpreter(insns, Options(helpers=basic_helpers(), maps=[ours]))
            assert [run_socket_filter(interp, p).retval for p in pkts] == [k for k, _ in kernel]
            left_k = []
            while True:
                rc, v = km.lookup_and_delete(None)
                if rc:
                    break
                left_k.append(v)
            left_o = []
            while True:
                rc, v = ours.pop_raw()
                if rc:
                    break
                left_o.append(v)
            assert left_o == left_k
        finally:
            km.close()


@pytest.mark.kernel
def test_lookup_percpu_elem_matches_kernel():
    from bpfkit.ebpf.helpers import basic_helpers
    ncpu = oracles.possible_cpus()
    km = oracles.KernelMap.create(int(MapType.PERCPU_ARRAY), 4, 8, 2, percpu=True)
    try:
        ours = create_map(MapSpec(MapType.PERCPU_ARRAY, 4, 8, 2, name="pc"), num_cpus=ncpu)
        rng = random.Random(9)
        for key in (0, 1):
            vals = b"".join(rng.randrange(1 << 64).to_bytes(8, "little") for _ in range(ncpu))
            assert km.update(key.to_bytes(4, "little"), vals) == 0
            assert ours.sys_update(key.to_bytes(4, "little"), vals) == 0
        for key, cpu in [(0, 0), (1, ncpu - 1), (1, 0), (0, ncpu), (2, 0), (0, 0xFFFFFFFF)]:
            src = f"""
                r1 = {key}
                *(u32 *)(r10 - 4) = r1
                r1 = pc ll
                r2 = r10
                r2 += -4
                r3 = {cpu} ll
                call 195
                if r0 == 0 goto out
                r0 = *(u64 *)(r0 + 0)
            out:
                {_FOLD}"""
            insns = assemble(src, maps=["pc"])
            kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, [bytes(20)],
                                   [km.fd])
            res = run_socket_filter(Interpreter(insns, Options(helpers=basic_helpers(),
                                                               maps=[ours])), bytes(20))
            assert res.retval == kernel[0][0], (key, cpu)
    finally:
        km.close()


def test_time_random_cpu_helpers():
    from bpfkit.ebpf.helpers import basic_helpers
    prog = Interpreter(assemble("call 5\nr6 = r0\ncall 7\nr6 += r0\ncall 8\nr0 += r6\nexit"),
                       Options(helpers=basic_helpers()))
    vals = iter([1000, 2000])
    res = prog.run(ktime_ns=5 << 40, prandom=lambda: next(vals), cpu=3)
    assert res.retval == (5 << 40) + 1000 + 3
    assert prog.run().fault.kind == "helper"        # no generator given


@pytest.mark.kernel
def test_redirect_helpers_match_kernel():
    """bpf_redirect and bpf_redirect_map on a DEVMAP (slots 0 and 2 -> lo, ifindex 1)."""
    from bpfkit.ebpf.progtypes import xdp_helpers
    km = oracles.KernelMap.create(int(MapType.DEVMAP), 4, 4, 4)
    try:
        ours = create_map(MapSpec(MapType.DEVMAP, 4, 4, 4, name="dev"))
        for k in (0, 2):
            assert km.update(k.to_bytes(4, "little"), (1).to_bytes(4, "little")) == 0
            assert ours.sys_update(k.to_bytes(4, "little"), (1).to_bytes(4, "little")) == 0
        cases = [f"r1 = {i}\nr2 = {f}\ncall 23" for i in (1, 7) for f in (0, 1, 8)]
        cases += [f"r1 = dev ll\nr2 = {k} ll\nr3 = {f} ll\ncall 51"
                  for k in (0, 1, 2, 3, 4, 1 << 32) for f in (0, 1, 2, 3, 4, 16, 1 << 40)]
        for body in cases:
            insns = assemble(body + "\nexit", maps=["dev"])
            kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_XDP, [bytes(20)], [km.fd])
            res = run_xdp(Interpreter(insns, Options(helpers=xdp_helpers(), maps=[ours])),
                          bytes(20))
            assert res.retval == kernel[0][0], body
            assert (res.redirect is not None) == (res.retval == 4), body
    finally:
        km.close()


def _tail_prog(k: int, nxt: int) -> str:
    # count runs in cb[0], record the path in cb[1], tail call slot `nxt`, and on
    # fall-through return runs << 16 | (path & 0xffff)  (r0 is unreadable after the call)
    return f"""
        r6 = r1
        r2 = *(u32 *)(r6 + 48)
        r2 += 1
        *(u32 *)(r6 + 48) = r2
        r2 = *(u32 *)(r6 + 52)
        r2 *= 7
        r2 += {k + 1}
        *(u32 *)(r6 + 52) = r2
        r1 = r6
        r2 = pa ll
        r3 = {nxt}
        call 12
        r0 = *(u32 *)(r6 + 48)
        r0 <<= 16
        r1 = *(u32 *)(r6 + 52)
        r1 &= 0xffff
        r0 |= r1
        exit
    """


@pytest.mark.kernel
@pytest.mark.parametrize("table,filled,runs", [
    ([1, 2, 0, 0], {0, 1, 2}, 34),    # a cycle: the entry run + 33 tail calls
    ([0, 0, 0, 0], {0}, 34),          # calls itself
    ([1, 3, 0, 0], {0, 1, 2}, 2),     # slot 3 empty: falls through in program 1
    ([1, 9, 0, 0], {0, 1}, 2),        # index 9 >= max_entries: falls through
    ([2, 0, 3, 1], {0, 1, 2, 3}, 34),
])
def test_tail_calls_match_kernel(table, filled, runs):
    from bpfkit.ebpf.helpers import basic_helpers
    from bpfkit.ebpf.interp import MAX_TAIL_CALL_CNT
    km = oracles.KernelMap.create(int(MapType.PROG_ARRAY), 4, 4, 4)
    fds = []
    try:
        ours = create_map(MapSpec(MapType.PROG_ARRAY, 4, 4, 4, name="pa"))
        progs = [assemble(_tail_prog(k, table[k]), maps=["pa"]) for k in range(4)]
        for p in progs:
            fds.append(oracles.bpf_prog_load(isa.encode(_with_fds(p, [km.fd]))))
        interps = [Interpreter(p, Options(helpers=basic_helpers(), maps=[ours])) for p in progs]
        for k in sorted(filled):
            assert km.update(k.to_bytes(4, "little"), fds[k].to_bytes(4, "little")) == 0
            ours.update(k, interps[k])
        kret = oracles.bpf_prog_test_run(fds[0], bytes(20))[0]
        res = run_socket_filter(interps[0], bytes(20))
        assert res.fault is None and res.retval == kret
        assert kret >> 16 == runs and MAX_TAIL_CALL_CNT == 33
    finally:
        for fd in fds:
            os.close(fd)
        km.close()


def _loop_prog(nr: int, stop: int, flags: int) -> str:
    # sum i*i+1 over the iterations into fp-8 via the callback; stop when i == stop
    return f"""
        r1 = 0
        *(u64 *)(r10 - 8) = r1
        r1 = {nr} ll
        r2 = cb ll
        r3 = r10
        r3 += -8
        r4 = {flags}
        call 181
        r0 <<= 32
        r1 = *(u64 *)(r10 - 8)
        r0 ^= r1
        r1 = r0
        r1 >>= 32
        r0 ^= r1
        r0 &= 0x7fffffff
        exit
    cb:
        r3 = r1
        r3 *= r1
        r3 += 1
        r4 = *(u64 *)(r2 + 0)
        r4 += r3
        *(u64 *)(r2 + 0) = r4
        r0 = 0
        if r1 != {stop} goto out
        r0 = 1
    out:
        exit
    """


@pytest.mark.kernel
@pytest.mark.parametrize("nr,stop,flags", [
    (0, 0, 0), (1, 5, 0), (10, 100, 0), (10, 3, 0), (10, 0, 0), (10, 9, 0),
    (1 << 23, 1000, 0),        # BPF_MAX_LOOPS itself is allowed; stops at 1000
    ((1 << 23) + 1, 5, 0),     # -E2BIG
    (5, 2, 1),                 # flags -> -EINVAL
])
def test_bpf_loop_matches_kernel(nr, stop, flags):
    from bpfkit.ebpf.helpers import basic_helpers
    insns = assemble(_loop_prog(nr, stop, flags))
    cb = isa.slot_indices(insns)[-10]           # the callback's first slot
    fd = oracles.bpf_prog_load(isa.encode(insns), func_starts=[0, cb])
    try:
        kernel = [oracles.bpf_prog_test_run(fd, bytes(20))]
    finally:
        os.close(fd)
    res = run_socket_filter(Interpreter(insns, Options(helpers=basic_helpers())), bytes(20))
    assert res.fault is None and res.retval == kernel[0][0]


def _ringbuf_prog(rng) -> str:
    lines = ["r6 = r1"] + _fill_stack(rng, 64) + ["r9 = 0"]
    for _ in range(rng.randrange(1, 5)):
        c = rng.random()
        if c < 0.35:
            size = rng.choice([1, 8, 13, 56, 64])
            flags = rng.choice([0, 0, 1, 2, 4])       # NO_WAKEUP, FORCE_WAKEUP, invalid
            lines += ["r1 = rb ll", "r2 = r10", "r2 += -64", f"r3 = {size}", f"r4 = {flags}",
                      "call 130", "r9 *= 31", "r9 += r0"]
        elif c < 0.7:
            size = rng.choice([8, 16, 500, 1000, 2000])
            flags = rng.choice([0, 0, 0, 1])
            n = len(lines)
            lines += ["r1 = rb ll", f"r2 = {size}", f"r3 = {flags}", "call 131",
                      f"if r0 == 0 goto s{n}", "*(u64 *)(r0 + 0) = r9", "r9 += 7",
                      "r1 = r0", "r2 = 0", f"call {rng.choice([132, 133])}", f"s{n}:"]
        else:
            lines += ["r1 = rb ll", f"r2 = {rng.choice([0, 1, 2, 3, 4])}", "call 134",
                      "r9 *= 31", "r9 ^= r0"]
    lines += ["r0 = r9", _FOLD]
    return "\n".join(lines)


@pytest.mark.kernel
def test_ringbuf_helpers_match_kernel():
    """Return values of ringbuf_output/reserve and ringbuf_query positions over repeated
    runs (nobody consumes in a test run, so the 4 KiB ring fills up)."""
    from bpfkit.ebpf.helpers import basic_helpers
    rng = random.Random(12)
    for _ in range(25):
        src = _ringbuf_prog(rng)
        insns = assemble(src, maps=["rb"])
        km = oracles.KernelMap.create(int(MapType.RINGBUF), 0, 0, 4096)
        try:
            ours = create_map(MapSpec(MapType.RINGBUF, 0, 0, 4096, name="rb"))
            pkts = [bytes(20)] * 8
            kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, pkts, [km.fd])
            interp = Interpreter(insns, Options(helpers=basic_helpers(), maps=[ours]))
            got = [run_socket_filter(interp, p).retval for p in pkts]
            assert got == [k for k, _ in kernel], src
        finally:
            km.close()


@pytest.mark.kernel
def test_perf_event_output_errors_match_kernel():
    """Without readers: -ENOENT; index past the array: -E2BIG; stray flags: -EINVAL;
    ctxlen beyond the packet: -EFAULT (checked before the map)."""
    from bpfkit.ebpf.helpers import basic_helpers
    km = oracles.KernelMap.create(int(MapType.PERF_EVENT_ARRAY), 4, 4, 2)
    try:
        ours = create_map(MapSpec(MapType.PERF_EVENT_ARRAY, 4, 4, 2, name="pe"))
        for flags in (0, 1, 2, 5, 0xFFFFFFFF, 1 << 32, 100 << 32, 1 << 52, 1 << 63):
            src = f"""
                r6 = r1
                r1 = 7
                *(u64 *)(r10 - 8) = r1
                r1 = r6
                r2 = pe ll
                r3 = {flags} ll
                r4 = r10
                r4 += -8
                r5 = 8
                call 25
                {_FOLD}"""
            insns = assemble(src, maps=["pe"])
            for ptype, run in ((oracles.BPF_PROG_TYPE_SOCKET_FILTER, run_socket_filter),
                               (oracles.BPF_PROG_TYPE_XDP, run_xdp)):
                kernel = _load_and_run(insns, ptype, [bytes(60)], [km.fd])
                res = run(Interpreter(insns, Options(helpers=basic_helpers(), maps=[ours])),
                          bytes(60))
                assert res.retval == kernel[0][0], (flags, ptype)
    finally:
        km.close()


@pytest.mark.kernel
def test_strncmp_matches_kernel():
    """s2 is a constant string in a frozen BPF_F_RDONLY_PROG array (as clang's .rodata)."""
    from bpfkit.ebpf.helpers import basic_helpers
    BPF_F_RDONLY_PROG, BPF_MAP_FREEZE = 1 << 7, 22
    s2 = b"hello\0world\0\0\0\0\0"
    km = oracles.KernelMap.create(int(MapType.ARRAY), 4, 16, 1, map_flags=BPF_F_RDONLY_PROG)
    try:
        assert km.update(bytes(4), s2) == 0
        attr = struct.pack("=I", km.fd) + bytes(16)
        assert oracles.bpf_syscall(BPF_MAP_FREEZE, attr) == 0
        ours = create_map(MapSpec(MapType.ARRAY, 4, 16, 1, flags=BPF_F_RDONLY_PROG, name="ro"))
        assert ours.sys_update(bytes(4), s2) == 0
        for s1 in (b"hello\0\0\0", b"help\0\0\0\0", b"hellz\0\0\0", b"hello!!!",
                   b"\0" * 8, b"world\0\0\0", b"hel\xffxxxx"):
            for n, off in ((8, 0), (3, 0), (5, 0), (6, 0), (1, 6), (8, 6), (0, 0)):
                if n == 0:
                    continue                       # the verifier wants s1_sz > 0
                src = f"""
                    r1 = {int.from_bytes(s1, "little")} ll
                    *(u64 *)(r10 - 8) = r1
                    r1 = r10
                    r1 += -8
                    r2 = {n}
                    ld_pseudo r3, {isa.BPF_PSEUDO_MAP_IDX_VALUE}, 0, {off}
                    call 182
                    {_FOLD}"""
                insns = assemble(src)
                kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER,
                                       [bytes(20)], [km.fd])
                res = run_socket_filter(Interpreter(insns, Options(helpers=basic_helpers(),
                                                                   maps=[ours])), bytes(20))
                assert res.fault is None and res.retval == kernel[0][0], (s1, n, off)
    finally:
        km.close()


def test_rdonly_prog_values_are_read_only():
    m = create_map(MapSpec(MapType.ARRAY, 4, 8, 1, flags=1 << 7, name="ro"))
    insns = [isa.lddw(1, 0, src=isa.BPF_PSEUDO_MAP_IDX_VALUE), Insn(0x62, 1, 0, 0, 1),
             Insn(0x95)]
    res = Interpreter(insns, Options(maps=[m])).run()
    assert res.fault.kind == "memory" and res.fault.region == "map value"


_PRINTK_SPECS = [b"%d", b"%5d", b"%-5d|", b"%05d", b"%+d", b"% d", b"%u", b"%x", b"%X",
                 b"%lx", b"%lld", b"%llu", b"%li", b"%c", b"%s ", b"%s", b"%-8s.", b"%%",
                 b"%+05x", b"%ld", b"%llX", b"%10lu"]
_PRINTK_BAD = [b"%f", b"%hd", b"%z", b"%sx", b"\x01", b"%lc", b"%5.2d"]


@pytest.mark.kernel
def test_trace_printk_return_matches_kernel():
    """The return value of bpf_trace_printk is the length of the formatted message, so
    the formatter is compared with the kernel without reading the trace buffer."""
    from bpfkit.ebpf.helpers import basic_helpers
    rng = random.Random(13)
    string = b"hello, world\0\0\0\0"
    for case in range(150):
        parts, specs = [], []
        for _ in range(rng.randrange(0, 4)):
            parts.append(rng.choice([b"ab", b" ", b"x=", b"-", b""]))
            s = rng.choice(_PRINTK_SPECS + (_PRINTK_BAD if rng.random() < 0.15 else []))
            parts.append(s)
            if s != b"%%":
                specs.append(s)
        fmt = b"".join(parts)[:40]
        nul = rng.random() < 0.9
        size = len(fmt) + 1 if nul else len(fmt)
        if size == 0:
            continue
        buf = fmt + b"\0" * (48 - len(fmt))
        lines = []
        for k in range(0, 48, 8):
            lines += [f"r1 = {int.from_bytes(buf[k:k + 8], 'little')} ll",
                      f"*(u64 *)(r10 - {48 - k}) = r1"]
        for k in range(0, 16, 8):
            lines += [f"r1 = {int.from_bytes(string[k:k + 8], 'little')} ll",
                      f"*(u64 *)(r10 - {64 - k}) = r1"]
        lines += ["r1 = r10", "r1 += -48", f"r2 = {size}"]
        for n, reg in enumerate(("r3", "r4", "r5")):
            if n < len(specs) and specs[n].startswith(b"%s") or \
                    n < len(specs) and b"s" in specs[n][-2:] and specs[n].startswith(b"%-"):
                lines += [f"{reg} = r10", f"{reg} += -64"]
            else:
                lines.append(f"{reg} = {rng.choice([0, 1, -1, 65, 1 << 40, -(1 << 35), 123456])} ll")
        lines += ["call 6", _FOLD]
        insns = assemble("\n".join(lines))
        kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, [bytes(20)])
        res = run_socket_filter(Interpreter(insns, Options(helpers=basic_helpers())), bytes(20))
        assert res.fault is None and res.retval == kernel[0][0], (fmt, size)


@pytest.mark.kernel
def test_bloom_filter_push_peek_match_kernel():
    """push (87) and peek (89) on a BPF_F_ZERO_SEED bloom filter: same answers as the
    kernel, false positives included (tiny filter: 4 entries, 2 hashes)."""
    from bpfkit.ebpf.helpers import basic_helpers
    from bpfkit.ebpf.maps import BPF_F_ZERO_SEED
    rng = random.Random(21)
    km = oracles.KernelMap.create(int(MapType.BLOOM_FILTER), 0, 4, 4, map_flags=BPF_F_ZERO_SEED,
                                  map_extra=2)
    try:
        ours = create_map(MapSpec(MapType.BLOOM_FILTER, 0, 4, 4, flags=BPF_F_ZERO_SEED,
                                  name="bf", map_extra=2))
        lines = ["r9 = 0"]
        for n in range(40):
            v = rng.randrange(1 << 32)
            lines += [f"r1 = {v} ll", "*(u32 *)(r10 - 4) = r1", "r1 = bf ll", "r2 = r10",
                      "r2 += -4"]
            if n < 6 or rng.random() < 0.2:
                lines += [f"r3 = {rng.choice([0, 0, 1, 2])}", "call 87"]
            else:
                lines += ["call 89"]
            lines += ["r9 *= 3", "r9 += r0"]                  # 0, -ENOENT or -EINVAL
        lines += ["r0 = r9", _FOLD]
        insns = assemble("\n".join(lines), maps=["bf"])
        kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, [bytes(20)] * 2,
                               [km.fd])
        interp = Interpreter(insns, Options(helpers=basic_helpers(), maps=[ours]))
        assert [run_socket_filter(interp, bytes(20)).retval for _ in range(2)] == \
            [k for k, _ in kernel]
    finally:
        km.close()


@pytest.mark.kernel
@pytest.mark.parametrize("outer_type", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map_lookup_matches_kernel(outer_type):
    """lookup in the outer map gives the inner map, a lookup/update in it follows."""
    from bpfkit.ebpf.helpers import basic_helpers
    kinner = [oracles.KernelMap.create(int(MapType.ARRAY), 4, 8, 4) for _ in range(2)]
    kouter = oracles.KernelMap.create(int(outer_type), 4, 4, 4, inner_map_fd=kinner[0].fd)
    try:
        spec = MapSpec(MapType.ARRAY, 4, 8, 4)
        inner = [create_map(spec) for _ in range(2)]
        outer = create_map(MapSpec(outer_type, 4, 4, 4, name="om", inner=spec))
        for slot, (km, m) in zip((1, 3), zip(kinner, inner)):
            assert kouter.update(slot.to_bytes(4, "little"), km.fd.to_bytes(4, "little")) == 0
            outer.update(slot, m)
        for k, m in zip(kinner, inner):
            for i in range(4):
                v = (i * 1000 + id(m) % 7).to_bytes(8, "little")
                assert k.update(i.to_bytes(4, "little"), v) == 0
                assert m.sys_update(i.to_bytes(4, "little"), v) == 0
        for okey in range(5):
            for ikey in (0, 2, 5):
                src = f"""
                    r1 = {okey}
                    *(u32 *)(r10 - 4) = r1
                    r1 = om ll
                    r2 = r10
                    r2 += -4
                    call 1
                    if r0 == 0 goto none
                    r1 = r0
                    r2 = {ikey}
                    *(u32 *)(r10 - 8) = r2
                    r2 = r10
                    r2 += -8
                    call 1
                    if r0 == 0 goto miss
                    r1 = *(u64 *)(r0 + 0)
                    r1 += 1
                    *(u64 *)(r0 + 0) = r1
                    r0 = r1
                    exit
                miss:
                    r0 = 7
                    exit
                none:
                    r0 = 9
                    exit"""
                insns = assemble(src, maps=["om"])
                kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, [bytes(20)],
                                       [kouter.fd])
                res = run_socket_filter(Interpreter(insns, Options(helpers=basic_helpers(),
                                                                   maps=[outer])), bytes(20))
                assert res.fault is None and res.retval == kernel[0][0], (okey, ikey)
        for k, m in zip(kinner, inner):
            assert {key: k.lookup(key)[1] for key in k.keys()} == dict(m.items())
    finally:
        kouter.close()
        for k in kinner:
            k.close()


@pytest.mark.kernel
def test_lpm_trie_lookup_matches_kernel():
    """Longest-prefix lookups from a program (key = prefixlen u32 + IPv4 address)."""
    from bpfkit.ebpf.helpers import basic_helpers
    BPF_F_NO_PREALLOC = 1
    km = oracles.KernelMap.create(int(MapType.LPM_TRIE), 8, 8, 16, map_flags=BPF_F_NO_PREALLOC)
    try:
        ours = create_map(MapSpec(MapType.LPM_TRIE, 8, 8, 16, flags=BPF_F_NO_PREALLOC,
                                  name="lpm"))
        prefixes = [(8, "10.0.0.0"), (16, "10.1.0.0"), (24, "10.1.2.0"), (32, "10.1.2.3"),
                    (0, "0.0.0.0"), (12, "192.160.0.0")]
        for n, (plen, addr) in enumerate(prefixes):
            key = plen.to_bytes(4, "little") + bytes(int(x) for x in addr.split("."))
            val = (n + 1).to_bytes(8, "little")
            assert km.update(key, val) == 0 and ours.sys_update(key, val) == 0
        for addr in ("10.1.2.3", "10.1.2.4", "10.1.3.3", "10.2.0.0", "11.0.0.0",
                     "192.168.1.1", "192.176.0.1"):
            for plen in (32, 24, 9, 0):
                key = plen.to_bytes(4, "little") + bytes(int(x) for x in addr.split("."))
                src = f"""
                    r1 = {int.from_bytes(key, "little")} ll
                    *(u64 *)(r10 - 8) = r1
                    r1 = lpm ll
                    r2 = r10
                    r2 += -8
                    call 1
                    if r0 == 0 goto miss
                    r0 = *(u64 *)(r0 + 0)
                    exit
                miss:
                    r0 = 99
                    exit"""
                insns = assemble(src, maps=["lpm"])
                kernel = _load_and_run(insns, oracles.BPF_PROG_TYPE_SOCKET_FILTER, [bytes(20)],
                                       [km.fd])
                res = run_socket_filter(Interpreter(insns, Options(helpers=basic_helpers(),
                                                                   maps=[ours])), bytes(20))
                assert res.retval == kernel[0][0], (addr, plen)
    finally:
        km.close()
