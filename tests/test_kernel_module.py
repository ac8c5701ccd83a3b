"""bpfkit.kernel (the product's bpf(2)/SO_ATTACH_FILTER access) against the tests'
own oracle, tests/oracles.py: the same programs and packets give the same received
lengths, test-run return values and errnos through both."""
from __future__ import annotations

import os
import socket

import pytest

import oracles
from bpfkit import kernel
from bpfkit.cbpf.isa import SKF_AD_OFF, SKF_NET_OFF
from bpfkit.cbpf.program import Program
from bpfkit.errors import BpfError
from bpfkit.translate.socket import translate_socket
from bpfkit.translate.xdp import translate_xdp

pytestmark = pytest.mark.kernel

U32 = 0xFFFFFFFF
ETH_OTHER = bytes(12) + b"\x88\xb5"
ETH_IP = bytes(12) + b"\x08\x00"

# classic programs: constant verdicts, a trim, the packet length, packet and
# ancillary loads, a negative-offset load, an indirect load (tcpdump-style port test)
CLASSIC = {
    "accept": [(0x06, 0, 0, U32)],
    "reject": [(0x06, 0, 0, 0)],
    "trim 10": [(0x06, 0, 0, 10)],
    "len": [(0x80, 0, 0, 0), (0x16, 0, 0, 0)],
    "byte 12 == 8": [(0x30, 0, 0, 12), (0x15, 0, 1, 8), (0x06, 0, 0, U32), (0x06, 0, 0, 0)],
    "protocol + 1": [(0x20, 0, 0, (SKF_AD_OFF + 0) & U32), (0x04, 0, 0, 1),
                     (0x16, 0, 0, 0)],
    "net[5] + 1": [(0x30, 0, 0, (SKF_NET_OFF + 5) & U32), (0x04, 0, 0, 1), (0x16, 0, 0, 0)],
    "ind": [(0xB1, 0, 0, 14), (0x48, 0, 0, 16), (0x15, 0, 1, 80), (0x06, 0, 0, U32),
            (0x06, 0, 0, 0)],
}
MESSAGES = [b"", bytes(5), bytes(range(60)), bytes(12) + b"\x08\x00" + bytes(50), bytes([0x45] * 14 + [0, 80] * 40),
            bytes(range(256)) * 6, bytes(70000)]


def test_available():
    assert kernel.available() is None


def _oracle_received(insns, msg: bytes):
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        rx.setblocking(False)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        oracles.attach_filter(rx, insns)
        tx.send(msg)
        try:
            return len(rx.recv(1 << 17))
        except BlockingIOError:
            return None
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_socket_matches_oracle(name):
    insns = CLASSIC[name]
    got, want = [], []
    with kernel.ClassicSocket(Program(insns).insns) as s:
        for m in MESSAGES:
            got.append(s.deliver(m))
            want.append(_oracle_received(insns, m))
    assert got == want


def test_classic_socket_verdicts_not_trivial():
    # the table above reaches both outcomes: some datagrams dropped, some trimmed
    outcomes = {(n, _oracle_received(CLASSIC[n], m) is None) for n in CLASSIC for m in MESSAGES}
    assert ("byte 12 == 8", True) in outcomes and ("byte 12 == 8", False) in outcomes
    assert _oracle_received(CLASSIC["trim 10"], bytes(60)) == 10


@pytest.mark.parametrize("insns", [
    [(0x04, 0, 0, 0)],                                   # does not end in ret
    [(0x34, 0, 0, 0), (0x06, 0, 0, 0)],                  # div by constant 0
    [(0x60, 0, 0, 16), (0x06, 0, 0, 0)],                 # M[16]
    [(0x05, 0, 0, 5), (0x06, 0, 0, 0)],                  # ja out of range
])
def test_attach_refused_like_oracle(insns):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError) as want:
            oracles.attach_filter(a, insns)
    finally:
        a.close()
        b.close()
    with pytest.raises(kernel.AttachError) as got:
        kernel.ClassicSocket(insns)
    assert isinstance(got.value, BpfError) and got.value.errno == want.value.errno


FRAMES = [ETH_OTHER, ETH_OTHER + bytes(range(100)), ETH_IP + bytes([0x45]) + bytes(39),
          ETH_IP + bytes(6), bytes(13), ETH_OTHER + bytes(3698), ETH_OTHER + bytes(3699),
          bytes(3520), bytes(12) + b"\x86\xdd" + bytes(60)]


def _oracle_run(fd, frame):
    try:
        return oracles.bpf_prog_test_run(fd, frame, out_size=8192)[0]
    except OSError as e:
        return -e.errno


def _module_run(prog, frame):
    try:
        return prog.test_run(frame)
    except kernel.TestRunError as e:
        return -e.errno


# XDP mode has libpcap semantics: ancillary and negative offsets are out of bounds
# (no match), so every program here has both translations
@pytest.mark.parametrize("name,mode", [(n, "socket") for n in CLASSIC]
                         + [(n, "xdp") for n in CLASSIC])
def test_test_run_matches_oracle(name, mode):
    prog = Program(CLASSIC[name])
    if mode == "socket":
        raw, ptype = translate_socket(prog).to_bytes(), oracles.BPF_PROG_TYPE_SOCKET_FILTER
    else:
        raw, ptype = translate_xdp(prog).to_bytes(), oracles.BPF_PROG_TYPE_XDP
    fd = oracles.bpf_prog_load(raw, ptype)
    try:
        want = [_oracle_run(fd, f) for f in FRAMES]
    finally:
        os.close(fd)
    with kernel.KernelProgram(raw, ptype) as kp:
        got = [_module_run(kp, f) for f in FRAMES]
    assert got == want
    # the refusals are there: EINVAL for 13 bytes; for the skb run also a short
    # IPv4 frame and a frame over 3712 bytes
    assert want[4] == -22
    if mode == "socket":
        assert want[3] == -22 and want[6] == -22 and want[5] >= 0


def test_load_refused_like_oracle():
    # exit without setting r0: the verifier says "R0 !read_ok"
    raw = bytes([0x95]) + bytes(7)
    with pytest.raises(oracles.BpfLoadError) as want:
        oracles.bpf_prog_load(raw)
    with pytest.raises(kernel.LoadError) as got:
        kernel.KernelProgram(raw, kernel.BPF_PROG_TYPE_SOCKET_FILTER)
    assert got.value.errno == want.value.errno
    assert "R0 !read_ok" in want.value.log and "R0 !read_ok" in got.value.log
    assert "R0 !read_ok" in str(got.value)


def test_bad_length_and_closed():
    with pytest.raises(kernel.KernelError):
        kernel.KernelProgram(bytes(7), kernel.BPF_PROG_TYPE_XDP)
    kp = kernel.KernelProgram(translate_xdp(Program([(0x06, 0, 0, 1)])).to_bytes(),
                              kernel.BPF_PROG_TYPE_XDP)
    kp.close()
    with pytest.raises(kernel.KernelError):
        kp.test_run(bytes(60))


def test_pinned_cpu_restores_affinity():
    before = os.sched_getaffinity(0)
    with kernel.pinned_cpu() as cpu:
        assert os.sched_getaffinity(0) == {cpu} and cpu in before
    assert os.sched_getaffinity(0) == before
