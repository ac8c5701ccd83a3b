"""Kernel differential for the ELF loader: libbpf (through `bpftool prog loadall ...
pinmaps`) loads the same clang object into the kernel -- creating its maps, filling
.data/.rodata, resolving relocations, linking subprograms -- and BPF_PROG_TEST_RUN runs
it over every packet of pcaps/sample.pcap in capture order.  bpfkit loads the object
with bpfkit.ebpf.elf and runs it on the reference interpreter.  Equal: the map
definitions (bpftool map show), every verdict/return value, every output packet (XDP)
and the final contents of every map (also .bss/.data/.rodata).

The test run happens with this process pinned to CPU 0, so per-CPU maps have their
values in CPU 0's slot, as the bpfkit run (cpu 0) has."""
from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import re
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import skip_or_fail

import oracles
from bpfkit.ebpf import isa
from bpfkit.ebpf.elf import open_elf
from bpfkit.ebpf.isa import Insn
from bpfkit.ebpf.maps import MapError
from bpfkit.ebpf.maps.consts import MapType
from bpfkit.ebpf.runner import Runner, run_capture
from bpfkit.pcap import open_capture
from test_elf_load import OBJECTS, SAMPLE, build_object

pytestmark = [pytest.mark.kernel, pytest.mark.clang, pytest.mark.usefixtures("bpftool")]


@pytest.fixture(scope="module")
def bpftool():
    """bpftool (Debian package `bpftool`) is part of the kernel oracle here: it runs
    libbpf on the objects.  Missing: skip with the reason, or fail under
    BPFKIT_REQUIRE_ORACLES=1 like the other oracles."""
    if shutil.which("bpftool") is None:
        skip_or_fail("oracle 'kernel' needs bpftool (apt-get install bpftool)")

BPF_OBJ_GET = 7
BPFFS = Path("/sys/fs/bpf")
LOADALL_TYPE = {6: "xdp", 1: "socket"}


def obj_get(path: Path) -> int:
    """BPF_OBJ_GET: an fd for a pinned program or map (attr: pathname u64, bpf_fd u32,
    file_flags u32)."""
    p = ctypes.create_string_buffer(str(path).encode())
    attr = struct.pack("=QII", ctypes.addressof(p), 0, 0) + bytes(120 - 16)
    fd = oracles.bpf_syscall(BPF_OBJ_GET, attr)
    if fd < 0:
        raise OSError(-fd, f"BPF_OBJ_GET {path}: {os.strerror(-fd)}")
    return fd


class Pinned:
    """bpftool prog loadall OBJ into fresh bpffs directories; removes the pins after."""

    def __init__(self, obj: Path, prog_type: int):
        tag = uuid.uuid4().hex[:12]
        self.progs = BPFFS / f"bpfkit_elf_p_{tag}"
        self.maps = BPFFS / f"bpfkit_elf_m_{tag}"
        self.obj, self.type = obj, LOADALL_TYPE[prog_type]

    def __enter__(self):
        r = subprocess.run(["bpftool", "prog", "loadall", str(self.obj), str(self.progs),
                            "type", self.type, "pinmaps", str(self.maps)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            self.__exit__()
            raise AssertionError(f"bpftool loadall failed: {r.stderr[-2000:]}")
        return self

    def __exit__(self, *exc):
        for d in (self.progs, self.maps):
            if d.exists():
                shutil.rmtree(d)

    def map_pin(self, name: str) -> Path:
        """bpftool pins maps under their libbpf names; global-data maps are named
        '<object name prefix>.<section>' with '.' turned into '_' in the pin."""
        pins = [p.name for p in self.maps.iterdir()]
        if name in pins:
            return self.maps / name
        suffix = name.replace(".", "_")
        hits = [self.maps / p for p in pins if p.endswith(suffix)]
        assert len(hits) == 1, (name, list(self.maps.iterdir()))
        return hits[0]


def kernel_map_info(pin: Path) -> dict:
    out = subprocess.run(["bpftool", "-j", "map", "show", "pinned", str(pin)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


BPF_OBJ_GET_INFO_BY_FD = 15


def kernel_map_id(fd: int) -> int:
    """The kernel's id of map `fd`: BPF_OBJ_GET_INFO_BY_FD (attr: bpf_fd u32, info_len
    u32, info u64) filling the first 8 bytes of struct bpf_map_info (type u32, id u32)."""
    info = ctypes.create_string_buffer(8)
    attr = struct.pack("=IIQ", fd, 8, ctypes.addressof(info)) + bytes(120 - 16)
    rc = oracles.bpf_syscall(BPF_OBJ_GET_INFO_BY_FD, attr)
    assert rc == 0, os.strerror(-rc)
    return struct.unpack_from("=I", info.raw, 4)[0]


def kernel_contents(fd: int, spec, ncpu: int) -> dict[bytes, object]:
    percpu = spec.type in (MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)
    km = oracles.KernelMap(fd, spec.key_size, spec.value_size, percpu)
    out = {}
    for k in km.keys():
        rc, v = km.lookup(k)
        assert rc == 0
        if percpu:
            step = (spec.value_size + 7) // 8 * 8
            v = [v[i * step:i * step + spec.value_size] for i in range(ncpu)]
        out[k] = v
    return out


def kernel_ringbuf_records(fd: int, size: int) -> list[bytes]:
    """The submitted records of a kernel ring buffer, read through its mmap as a
    consumer would (kernel/bpf/ringbuf.c: the consumer page, then the producer page
    followed by the data pages mapped twice), without consuming them."""
    page = mmap.PAGESIZE
    cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
    prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
    try:
        pos = struct.unpack_from("<Q", cons, 0)[0]
        end = struct.unpack_from("<Q", prod, 0)[0]
        out = []
        while pos < end:
            hdr = struct.unpack_from("<I", prod, page + pos % size)[0]
            if hdr & BUSY_BIT:
                break
            n = hdr & ~(BUSY_BIT | DISCARD_BIT)
            if not hdr & DISCARD_BIT:
                start = page + (pos + 8) % size
                out.append(bytes(prod[start:start + n]))
            pos += (n + 8 + 7) // 8 * 8
        return out
    finally:
        cons.close()
        prod.close()


BUSY_BIT, DISCARD_BIT = 1 << 31, 1 << 30


def packets():
    with open_capture(str(SAMPLE)) as cap:
        for batch in cap:
            for _ts, data in batch:
                yield bytes(data)


def own_kernel_load(program, maps) -> tuple[int, dict[str, int]]:
    """Load `program` into the kernel the way bpfkit resolved it: one kernel map per
    MapSpec (filled from `maps`, bpfkit's BpfMaps, for the global-data maps), lddw
    map_idx -> map_fd and map_idx_value -> map_value with the kernel fds.  For objects
    libbpf >= 1.0 refuses (legacy SEC("maps")) and for .rodata set before load."""
    fds: dict[str, int] = {}
    try:
        for spec in program.maps:
            fd = oracles.kmap_create(spec.type, spec.key_size, spec.value_size,
                                     spec.max_entries, spec.flags)
            assert fd >= 0, (spec, fd)
            fds[spec.name] = fd
            if spec.name.startswith((".data", ".rodata", ".bss")):
                km = oracles.KernelMap(fd, spec.key_size, spec.value_size)
                assert km.update(bytes(4), maps[spec.name].lookup(0)) == 0
        insns = []
        for i in program.insns:
            if i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX:
                i = Insn(i.opcode, i.dst, isa.BPF_PSEUDO_MAP_FD, 0,
                         fds[program.maps[i.imm].name])
            elif i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX_VALUE:
                name = program.maps[i.imm & 0xFFFFFFFF].name
                i = Insn(i.opcode, i.dst, isa.BPF_PSEUDO_MAP_VALUE, 0,
                         fds[name] | (i.imm >> 32) << 32)
            insns.append(i)
        return oracles.bpf_prog_load(isa.encode(insns), program.prog_type,
                                     program.license), fds
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise


def run_and_compare(program, runner, pfd: int, map_fd) -> list[int]:
    """Every packet of sample.pcap through both, in order, on CPU 0; then every map.
    map_fd(name) -> an fd of the kernel's map.  Returns the return values."""
    ncpu = oracles.possible_cpus()
    old = os.sched_getaffinity(0)
    rets = []
    try:
        os.sched_setaffinity(0, {0})
        for i, data in enumerate(packets()):
            ours = runner.run_packet(data)
            assert ours.fault is None and ours.skipped is None, (i, ours)
            retval, out = oracles.bpf_prog_test_run(pfd, data, out_size=8192)
            assert ours.retval == retval, (i, ours.retval, retval)
            if program.prog_type == 6:
                assert bytes(ours.packet) == out, i
            rets.append(retval)
    finally:
        os.sched_setaffinity(0, old)
    for spec in program.maps:
        if spec.type == MapType.PROG_ARRAY:
            continue        # the kernel shows program ids, bpfkit the programs
        if spec.type == MapType.RINGBUF:
            mine = [r.data for r in runner.maps[spec.name].pending()]
            assert mine and mine == kernel_ringbuf_records(map_fd(spec.name),
                                                           spec.max_entries)
            continue
        if spec.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            # the kernel's slots hold inner map ids, bpfkit's the BpfMaps themselves:
            # equal when each slot names the same map of the object
            # (an array of maps lists every index as a key; empty slots are ENOENT)
            names = {kernel_map_id(map_fd(n)): n for n in program.map_names}
            km = oracles.KernelMap(map_fd(spec.name), spec.key_size, spec.value_size)
            theirs = {}
            for k in km.keys():
                rc, v = km.lookup(k)
                assert rc in (0, -errno.ENOENT), rc
                if rc == 0:
                    theirs[k] = names[struct.unpack("=I", v)[0]]
            mine = {k: v.name for k, v in runner.maps[spec.name].items()}
            assert mine == theirs and mine, spec.name
            continue
        theirs = kernel_contents(map_fd(spec.name), spec, ncpu)
        mine = dict(runner.maps[spec.name].items())
        assert mine == theirs, spec.name
    return rets


CASES = [(stem, p.name) for stem in OBJECTS for p in open_elf(build_object(stem)).programs]
# "legacy map definitions in 'maps' section are not supported by libbpf v1.0+"
LIBBPF_REFUSES = {"legacy_maps", "elf_map_iproute2"}


@pytest.mark.parametrize("stem, prog", CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_object_against_libbpf_and_the_kernel(stem, prog):
    obj = build_object(stem)
    o = open_elf(obj)
    program = o.program(prog)
    ncpu = oracles.possible_cpus()
    runner = Runner(program, maps=o.create_maps(num_cpus=ncpu), num_cpus=ncpu)
    if stem in LIBBPF_REFUSES:
        pfd, fds = own_kernel_load(program, runner.maps)
        try:
            assert len(run_and_compare(program, runner, pfd, fds.__getitem__)) > 1000
        finally:
            for fd in [pfd, *fds.values()]:
                os.close(fd)
        return
    fds = []

    def map_fd(name):
        fds.append(obj_get(pins.map_pin(name)))
        return fds[-1]

    with Pinned(obj, program.prog_type) as pins:
        # map definitions as libbpf created them
        for m in o.maps:
            info = kernel_map_info(pins.map_pin(m.name))
            assert (info["type"], info["bytes_key"], info["bytes_value"], info["max_entries"],
                    info["flags"]) == (MapType(m.spec.type).name.lower(), m.spec.key_size,
                                       m.spec.value_size, m.spec.max_entries, m.spec.flags), m
        fds.append(obj_get(pins.progs / prog))
        try:
            assert len(run_and_compare(program, runner, fds[0], map_fd)) > 1000
        finally:
            for fd in fds:
                os.close(fd)
        # map dumps decoded through BTF, as bpftool decodes the kernel's maps (the
        # contents are equal, see above): every entry's "formatted" member
        for m in o.maps:
            if m.spec.type in (MapType.PROG_ARRAY, MapType.RINGBUF):
                continue
            entries = json.loads(subprocess.run(
                ["bpftool", "-j", "map", "dump", "pinned", str(pins.map_pin(m.name))],
                check=True, capture_output=True, text=True, timeout=60).stdout)
            mine = dict(runner.maps[m.name].items())
            assert len(entries) == len(mine)
            for e in entries:
                key = bytes(int(x, 16) for x in e["key"])
                assert json.dumps(o.format_entry(m.name, key, mine[key])) == json.dumps(e.get("formatted")), \
                    (m.name, key)


def test_map_in_map_mismatched_initialiser():
    """tests/data/elf/bad/map_in_map_mismatch.c puts an 8-entry ARRAY in a slot whose
    inner definition has 4 entries: libbpf's load fails at that slot (the kernel's
    update gives EINVAL), and bpfkit's create_maps refuses the same slot with EINVAL
    (the object itself loads: the mismatch is found when the maps are made)."""
    obj = build_object("bad/map_in_map_mismatch")
    r = subprocess.run(["bpftool", "prog", "loadall", str(obj),
                        f"/sys/fs/bpf/bpfkit_elf_bad_{uuid.uuid4().hex[:12]}", "type", "xdp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    # libbpf: "map 'outer': failed to initialize slot [1] to map 'big' fd=N: -22"
    assert re.search(r"failed to initialize slot \[1\] to map 'big' fd=\d+: -22", r.stderr), \
        r.stderr[-2000:]
    o = open_elf(obj)
    with pytest.raises(MapError, match=r"map 'outer' slot 1: cannot hold map 'big'") as e:
        o.create_maps()
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("config", [{"blocked_port": 53}, {"blocked_port": 443},
                                    {"max_len": 100}, {"blocked_port": 80, "max_len": 60}])
def test_rodata_configuration(config):
    """`const volatile` settings in .rodata, set by name before the run (as a libbpf
    skeleton does before load), give the same results in the kernel."""
    o = open_elf(build_object("xdp_flows"))
    program = o.program()
    ncpu = oracles.possible_cpus()
    runner = Runner(program, maps=o.create_maps(num_cpus=ncpu, config=config), num_cpus=ncpu)
    pfd, fds = own_kernel_load(program, runner.maps)
    try:
        rets = run_and_compare(program, runner, pfd, fds.__getitem__)
    finally:
        for fd in [pfd, *fds.values()]:
            os.close(fd)
    # the setting reached the program: the default (no port blocked, max_len 1500)
    # gives other verdicts on this capture
    default = run_capture(program, str(SAMPLE), maps=o.create_maps())
    assert rets != default.retval.tolist()
