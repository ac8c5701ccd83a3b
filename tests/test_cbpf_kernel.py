"""Classic BPF against the running kernel (SO_ATTACH_FILTER on an AF_UNIX datagram
socketpair).

How the kernel's answer is read: unix_dgram_sendmsg runs the receiving socket's
filter (sk_filter -> sk_filter_trim_cap(sk, skb, 1)); return value 0 drops the
datagram silently, otherwise the skb is trimmed to max(1, retval) bytes.  So the
receiver gets nothing when run_socket says 0, else min(len, retval) bytes.

What the skb of an AF_UNIX datagram carries (sock_alloc_send_pskb, no device, no
link layer): skb->dev NULL, protocol 0, pkt_type 0, mark 0, hash 0, queue_mapping 0,
no VLAN; all data linear for datagrams this small; the network header offset is 0
(left at skb->head == skb->data) and the mac header is unset.  That is
SkbMeta()'s default, which the probes below confirm against the kernel.  CPU: the
filter runs in the sender's context, so the test pins itself to one CPU and says
so in SkbMeta(cpu=...).  SKF_AD_RANDOM is the only ancillary load left out (its
value cannot be predicted); it is covered by test_cbpf_interp's seeded tests.
"""
from __future__ import annotations

import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracles
from bpfkit.cbpf.interp import SkbMeta, run_socket
from bpfkit.cbpf.isa import SKF_AD_OFF, SKF_LL_OFF, SKF_NET_OFF
from bpfkit.cbpf.program import Program
from bpfkit.cbpf.validate import check

from cbpf_gen import kernel_programs, wild_programs

pytestmark = pytest.mark.kernel

U32 = 0xFFFFFFFF


class _Kernel:
    """One socketpair; attach() replaces the receiver's filter each time."""

    def __init__(self):
        self.tx, self.rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.setblocking(False)

    def attach(self, prog: Program) -> int:
        """0 when the kernel accepts the program, else -errno."""
        try:
            oracles.attach_filter(self.rx, prog.as_tuples())
            return 0
        except OSError as e:
            return -e.errno

    def received(self, msg: bytes) -> int | None:
        """Length the receiver gets for datagram `msg`, None when dropped."""
        self.tx.send(msg)
        try:
            return len(self.rx.recv(1 << 17))
        except BlockingIOError:
            return None

    def close(self):
        self.tx.close()
        self.rx.close()


@pytest.fixture(scope="module")
def kernel():
    old = os.sched_getaffinity(0)
    cpu = min(old)
    os.sched_setaffinity(0, {cpu})
    k = _Kernel()
    k.meta = SkbMeta(cpu=cpu)
    yield k
    k.close()
    os.sched_setaffinity(0, old)


def _expected(ret: int, msg: bytes) -> int | None:
    return None if ret == 0 else min(len(msg), ret)


# --- the AF_UNIX skb model ----------------------------------------------------------

@pytest.mark.parametrize("name,insns", [
    ("protocol", [(0x20, 0, 0, SKF_AD_OFF + 0)]),
    ("pkttype", [(0x20, 0, 0, SKF_AD_OFF + 4)]),
    ("mark", [(0x20, 0, 0, SKF_AD_OFF + 20)]),
    ("queue", [(0x20, 0, 0, SKF_AD_OFF + 24)]),
    ("rxhash", [(0x20, 0, 0, SKF_AD_OFF + 32)]),
    ("cpu", [(0x20, 0, 0, SKF_AD_OFF + 36)]),
    ("vlan_tci", [(0x20, 0, 0, SKF_AD_OFF + 44)]),
    ("vlan_present", [(0x20, 0, 0, SKF_AD_OFF + 48)]),
    ("poff", [(0x20, 0, 0, SKF_AD_OFF + 52)]),
    ("vlan_tpid", [(0x20, 0, 0, SKF_AD_OFF + 60)]),
    ("net header at 0", [(0x30, 0, 0, SKF_NET_OFF + 5)]),
    ("mac header unset", [(0x30, 0, 0, SKF_LL_OFF + 5)]),
])
def test_afunix_skb_model(kernel, name, insns):
    """Each load's value + 1 comes back as the received length (message of 300 bytes)."""
    prog = Program([(0x00, 0, 0, 0)] + [tuple(i[:3]) + (i[3] & U32,) for i in insns]
                   + [(0x04, 0, 0, 1), (0x16, 0, 0, 0)])
    msg = bytes(range(256)) + bytes(44)
    assert kernel.attach(prog) == 0
    assert kernel.received(msg) == _expected(run_socket(prog, msg, kernel.meta), msg)


def test_ifindex_no_device(kernel):
    # skb->dev is NULL: the program stops and returns the current A (here 77)
    prog = Program([(0x00, 0, 0, 77), (0x20, 0, 0, (SKF_AD_OFF + 8) & U32), (0x06, 0, 0, 5)])
    msg = bytes(100)
    assert kernel.attach(prog) == 0
    assert kernel.received(msg) == 77 == run_socket(prog, msg, kernel.meta)


# --- hypothesis programs x messages ---------------------------------------------------

MESSAGES = st.one_of(st.binary(min_size=256, max_size=300), st.binary(min_size=0, max_size=64))


def _differential(kernel, prog, msgs) -> int:
    """Attach, compare accept/reject with our validator, then every message's
    received length with run_socket.  Returns the number of messages compared."""
    errs = check(prog, "kernel")
    rc = kernel.attach(prog)
    # the validator decides exactly as the kernel does
    assert (rc == 0) == (not errs), (prog.as_tuples(), rc, errs)
    if errs:
        assert rc == errs[0].errno == -22
        return 0
    for msg in msgs:
        assert kernel.received(msg) == _expected(run_socket(prog, msg, kernel.meta), msg), \
            (prog.as_tuples(), msg)
    return len(msgs)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=kernel_programs(), msgs=st.lists(MESSAGES, min_size=2, max_size=4))
def test_kernel_differential(kernel, prog, msgs):
    _differential(kernel, prog, msgs)


def test_kernel_differential_seeded(kernel):
    """The same generator driven by seeds 0..3999, with a volume check: at least
    3000 kernel-valid programs and 9000 messages compared."""
    import random
    from cbpf_gen import _Draw
    programs = messages = 0
    for seed in range(4000):
        prog = kernel_programs.build(_Draw(seed))
        rng = random.Random(seed)
        msgs = [rng.randbytes(rng.choice([rng.randrange(256, 301), rng.randrange(0, 65)]))
                for _ in range(rng.randrange(2, 5))]
        n = _differential(kernel, prog, msgs)
        programs += n > 0
        messages += n
    print(f"kernel differential (seeded): {programs} programs x {messages} messages")
    assert programs >= 3000 and messages >= 9000


# --- the validator against the kernel on anything ----------------------------------------

@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=st.one_of(wild_programs(), kernel_programs(epilogue=False)))
def test_validator_agrees_with_kernel(kernel, prog):
    errs = check(prog, "kernel")
    rc = kernel.attach(prog)
    assert (rc == 0) == (not errs), (prog.as_tuples(), rc, errs)
    if errs:
        assert rc == -22 and all(e.errno == -22 for e in errs)
