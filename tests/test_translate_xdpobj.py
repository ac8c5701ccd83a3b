"""The XDP translation as an ELF object (bpfkit.translate.xdpobj): bpfkit's own ELF
loader reads back the same program, and libbpf-based loaders accept it: `bpftool prog
load` (with its BTF: the kernel reports a btf_id) and iproute2's `ip link set dev lo
xdpgeneric obj F sec xdp` (in a throw-away network namespace)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from bpfkit.cbpf.program import Program
from bpfkit.ebpf.elf import load_elf
from bpfkit.errors import UsageError
from bpfkit.translate.xdp import translate_xdp
from bpfkit.translate.xdpobj import xdp_object

# ldh [12]; jeq #0x800 -> ret #1 / ret #0  ("ip" on Ethernet)
IP = Program([(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (0x06, 0, 0, 1), (0x06, 0, 0, 0)])


@pytest.mark.parametrize("name", ["cbpf_filter", "only_ip"])
def test_bpfkit_loader_reads_it_back(name):
    tr = translate_xdp(IP, match="drop", nomatch="pass")
    obj = load_elf(xdp_object(tr, name=name))
    [prog] = obj.programs
    assert (prog.name, prog.section, prog.prog_type, prog.license) == (name, "xdp", 6, "GPL")
    assert prog.insns == tr.insns and prog.func_starts == (0,)


def test_bad_name():
    with pytest.raises(UsageError):
        xdp_object(translate_xdp(IP), name="not a name")


@pytest.fixture
def obj_path(tmp_path):
    p = tmp_path / "filter.o"
    p.write_bytes(xdp_object(translate_xdp(IP)))
    return p


@pytest.mark.kernel
def test_bpftool_loads_it_with_btf(obj_path):
    assert shutil.which("bpftool"), "bpftool is needed (apt-get install bpftool)"
    pin = f"/sys/fs/bpf/bpfkit-xdpobj-test-{os.getpid()}"
    r = subprocess.run(["bpftool", "prog", "load", str(obj_path), pin, "type", "xdp"],
                       capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        show = subprocess.run(["bpftool", "prog", "show", "pinned", pin],
                              capture_output=True, text=True, timeout=60).stdout
        assert "xdp" in show and "name cbpf_filter" in show and "btf_id" in show
    finally:
        if os.path.exists(pin):
            os.unlink(pin)


@pytest.mark.kernel
def test_iproute2_attaches_it(obj_path):
    assert shutil.which("ip") and shutil.which("unshare")
    r = subprocess.run(["unshare", "-n", "sh", "-c",
                        f"ip link set dev lo xdpgeneric obj {obj_path} sec xdp && "
                        f"ip link show lo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "prog/xdp" in r.stdout and "name cbpf_filter" in r.stdout
