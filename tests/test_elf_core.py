"""CO-RE relocations (bpfkit.ebpf.core) against this machine's kernel BTF
(/sys/kernel/btf/vmlinux), differentially: tests/data/elf/core/xdp_core.c is built on a
vmlinux.h that bpftool generates from that BTF at test time; libbpf (bpftool prog
loadall) relocates it for the kernel, bpfkit with core_btf=<the same BTF>; the
verdicts, output packets and maps over sample.pcap must agree (test_elf_kernel's
comparison).  Without a target BTF the program is refused."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import oracles
from bpfkit.ebpf import isa
from bpfkit.ebpf.btf import parse_btf
from bpfkit.ebpf.elf import open_elf
from bpfkit.ebpf.runner import Runner
from bpfkit.errors import UnsupportedError
from test_elf_kernel import bpftool  # noqa: F401  (the fixture pytestmark uses)
from test_elf_kernel import Pinned, obj_get, run_and_compare
from test_elf_load import CACHE, CFLAGS, SRC_DIR

pytestmark = [pytest.mark.kernel, pytest.mark.clang, pytest.mark.usefixtures("bpftool")]

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def kernel_btf():
    raw = VMLINUX.read_bytes()
    return raw, parse_btf(raw, str(VMLINUX))


@pytest.fixture(scope="module")
def core_object(kernel_btf):
    raw, _ = kernel_btf
    src = SRC_DIR / "core" / "xdp_core.c"
    h = hashlib.sha256(raw + src.read_bytes() + repr(CFLAGS).encode()).hexdigest()[:16]
    d = CACHE / f"core-{h}"
    obj = d / "xdp_core.o"
    if not obj.exists():
        d.mkdir(parents=True, exist_ok=True)
        header = subprocess.run(["bpftool", "btf", "dump", "file", str(VMLINUX), "format",
                                 "c"], check=True, capture_output=True, timeout=120).stdout
        (d / "vmlinux.h").write_bytes(header)
        tmp = d / "xdp_core.tmp"
        subprocess.run(["clang", *CFLAGS, f"-I{d}", "-c", str(src), "-o", str(tmp)],
                       check=True, capture_output=True, timeout=300)
        tmp.rename(obj)
    return obj


def test_refused_without_target_btf(core_object):
    o = open_elf(core_object)
    with pytest.raises(UnsupportedError, match=r"CO-RE relocations without a target BTF "
                                                r"\(core_btf\) \(section 'xdp' offset \d+ "
                                                r"\(function 'xdp_core'\)\)"):
        o.program()


def test_swapped_context_view_is_relocated(core_object, kernel_btf):
    """struct xdp_md___swapped declares data_end first and data second; the kernel's
    struct xdp_md has data at 0 and data_end at 4 (include/uapi/linux/bpf.h), so the
    two context loads must come out at the kernel's offsets, swapped from the
    object's."""
    _, kbtf = kernel_btf
    before = open_elf(core_object)
    after = open_elf(core_object, core_btf=kbtf)
    raw = before.btf.find("xdp_md___swapped")
    assert [(m.name, m.offset // 8) for m in raw.members] == [("data_end", 0), ("data", 4)]
    kx = kbtf.find("xdp_md")
    assert [(m.name, m.offset // 8) for m in kx.members[:2]] == [("data", 0), ("data_end", 4)]
    # the ctx loads: LDX W from r1 in the first instructions (r1 = ctx on entry)
    prog = after.program()
    ctx_loads = [i.off for i in prog.insns[:4]
                 if i.opcode == isa.BPF_LDX | isa.BPF_MEM | isa.BPF_W and i.src == 1]
    assert sorted(ctx_loads) == [0, 4]


def test_core_against_libbpf_and_the_kernel(core_object, kernel_btf):
    _, kbtf = kernel_btf
    o = open_elf(core_object, core_btf=kbtf)
    program = o.program()
    ncpu = oracles.possible_cpus()
    runner = Runner(program, maps=o.create_maps(num_cpus=ncpu), num_cpus=ncpu)
    fds = []

    def map_fd(name):
        fds.append(obj_get(pins.map_pin(name)))
        return fds[-1]

    with Pinned(core_object, program.prog_type) as pins:
        fds.append(obj_get(pins.progs / program.name))
        try:
            rets = run_and_compare(program, runner, fds[0], map_fd)
        finally:
            for fd in fds:
                os.close(fd)
    assert len(rets) > 1000 and len(set(rets)) >= 2
