"""Classic BPF against the running kernel: SO_ATTACH_FILTER on an AF_UNIX datagram
socketpair (no device, no link layer), and on an AF_PACKET socket on the loopback of a
private network namespace (real Ethernet frames, a device, VLAN offload; see the
second half of this file).

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
from bpfkit.errors import UnsupportedError

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


# --- AF_PACKET on a private loopback: Ethernet frames with real link-layer metadata ----
#
# A child process in a new network namespace (`unshare -n`, so no other traffic) sends
# each frame with an AF_PACKET socket on `lo` and reads what a filtered AF_PACKET
# socket receives; a second, unfiltered socket is the witness that delivery happened.
# packet_rcv() runs the filter with skb->data at the mac header and trims the copy to
# min(len, retval); retval 0 drops it.  The skb the filter sees on lo
# (eth_type_trans, then skb_vlan_untag in __netif_receive_skb_core): mac header 0,
# network header 14, dev = lo (ifindex 1 in a fresh namespace, type ARPHRD_LOOPBACK
# 772), protocol = the EtherType (ETH_P_802_3 / ETH_P_802_2 below 1536), pkt_type
# from the destination (lo's address and broadcast address are all zero: 00..00 is
# PACKET_HOST, any group address PACKET_MULTICAST, anything else PACKET_OTHERHOST),
# an 802.1Q/802.1ad tag taken out of the data into vlan_tci/vlan_proto; mark, hash
# and queue 0; the CPU the child is pinned to.

_AFPACKET_CHILD = r'''
import ctypes, json, os, select, socket, struct, subprocess, sys
# keep the namespace's own stack quiet: no IPv6, no IPv4 address (so nothing is local,
# and with forwarding off nothing answers), so the only frames on lo are ours
for knob in ("all", "default", "lo"):
    with open(f"/proc/sys/net/ipv6/conf/{knob}/disable_ipv6", "w") as f:
        f.write("1")
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "flush", "dev", "lo"], check=True)
os.sched_setaffinity(0, {int(sys.argv[1])})
def rxsock():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))   # ETH_P_ALL
    s.bind(("lo", 0))
    s.setsockopt(263, 23, 1)             # SOL_PACKET, PACKET_IGNORE_OUTGOING
    return s
rx, witness = rxsock(), rxsock()
rx.setblocking(False)
witness.settimeout(5.0)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind(("lo", 0))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)
def attach(insns):
    raw = b"".join(struct.pack("=HBBI", c, jt, jf, k) for c, jt, jf, k in insns)
    buf = ctypes.create_string_buffer(raw, max(len(raw), 1))
    prog = Fprog(len(insns), ctypes.cast(buf, ctypes.c_void_p).value)
    rc = libc.setsockopt(rx.fileno(), socket.SOL_SOCKET, 26, ctypes.byref(prog),
                         ctypes.sizeof(prog))
    return 0 if rc == 0 else -ctypes.get_errno()
def drain(s):
    while select.select([s], [], [], 0)[0]:
        s.recv(1 << 17)
print(json.dumps({"ifindex": socket.if_nametoindex("lo")}), flush=True)
out = []
for insns, frames in json.load(sys.stdin):
    rc = attach(insns)
    got = []
    if rc == 0:
        drain(rx)
        drain(witness)
        for fr in frames:
            tx.send(bytes.fromhex(fr))
            seen = witness.recv(1 << 17)     # delivery to the packet sockets has happened
            r = select.select([rx], [], [], 0.002)[0]
            got.append([len(rx.recv(1 << 17)) if r else None, seen.hex()])
    out.append([rc, got])
print(json.dumps(out))
'''


def _lo_skb(frame: bytes, ifindex: int, cpu: int) -> tuple[bytes, SkbMeta]:
    """(data the filter sees, skb metadata) for `frame` received on lo (see above)."""
    etype = int.from_bytes(frame[12:14], "big")
    dest = frame[:6]
    pkttype = 2 if dest[0] & 1 else (0 if dest == bytes(6) else 3)
    vlan = {}
    if etype in (0x8100, 0x88A8):
        vlan = dict(vlan_present=True, vlan_proto=etype,
                    vlan_tci=int.from_bytes(frame[14:16], "big"))
        frame = frame[:12] + frame[16:]
        etype = int.from_bytes(frame[12:14], "big")
    if etype < 1536:        # eth_type_trans: an 802.3 length field
        etype = 0x0001 if frame[14:16] == b"\xff\xff" else 0x0004
    return frame, SkbMeta(protocol=etype, pkttype=pkttype, ifindex=ifindex, hatype=772,
                          cpu=cpu, network_offset=14, mac_offset=0, **vlan)


def _ether_frame(rng) -> bytes:
    """An Ethernet frame for lo: host/multicast/other destination, IPv4/IPv6/ARP/other
    EtherType or an 802.3 length, sometimes one 802.1Q/802.1ad tag; 256..300 bytes
    (so `(A >> s) & 0xff` comes back whole as the length) or short (20..64)."""
    from cbpf_gen import synthetic_packet
    frame = bytearray(synthetic_packet(rng)[0])
    if len(frame) < 14 or int.from_bytes(frame[12:14], "big") in (0x8100, 0x88A8):
        frame = bytearray(bytes(12) + b"\x08\x00" + bytes(40))
    frame[0:6] = rng.choice([bytes(6), b"\xff" * 6, b"\x01\x00\x5e\x00\x00\x01",
                             b"\x02\x00\x00\x00\x00\x09"])
    if rng.random() < 0.1:
        frame[12:14] = rng.choice([b"\x00\x40", b"\x05\xdc"])
        frame[14:16] = rng.choice([b"\xff\xff", b"\xaa\xaa"])
    if rng.random() < 0.25:
        tpid = rng.choice([b"\x81\x00", b"\x88\xa8"])
        frame[12:12] = tpid + rng.randbytes(2)
    size = rng.choice([rng.randrange(256, 301), rng.randrange(20, 65)])
    frame = bytes(frame[:size]) + bytes(max(0, size - len(frame)))
    return frame


def test_afpacket_loopback_differential(tmp_path):
    import json as _json
    import random
    import subprocess
    import sys
    from cbpf_gen import _Draw
    child = tmp_path / "afpacket_child.py"
    child.write_text(_AFPACKET_CHILD)
    cpu = min(os.sched_getaffinity(0))
    rng = random.Random(7)
    jobs = []
    for seed in range(1500):
        prog = kernel_programs.build(_Draw(10_000 + seed))
        jobs.append((prog, [_ether_frame(rng) for _ in range(3)]))
    payload = _json.dumps([[p.as_tuples(), [f.hex() for f in frames]] for p, frames in jobs])
    r = subprocess.run(["unshare", "-n", sys.executable, str(child), str(cpu)],
                       input=payload, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    head, body = r.stdout.splitlines()[:2]
    ifindex = _json.loads(head)["ifindex"]
    results = _json.loads(body)
    programs = frames_compared = unsupported = 0
    for (prog, frames), (rc, got) in zip(jobs, results):
        errs = check(prog, "kernel")
        assert (rc == 0) == (not errs), (prog.as_tuples(), rc, errs)
        if errs:
            continue
        programs += 1
        for frame, (length, seen) in zip(frames, got):
            data, meta = _lo_skb(frame, ifindex, cpu)
            # the witness saw exactly this frame, as the model says the filter sees it
            assert bytes.fromhex(seen) == data, (frame.hex(), seen)
            try:
                want = run_socket(prog, data, meta)
            except UnsupportedError:         # SKF_AD_PAY_OFFSET through GRE etc.
                unsupported += 1
                continue
            assert length == _expected(want, data), (prog.as_tuples(), frame.hex(), meta)
            frames_compared += 1
    print(f"AF_PACKET lo differential: {programs} programs x {frames_compared} frames "
          f"({unsupported} runs refused as UnsupportedError)")
    assert programs >= 1000 and frames_compared >= 3000
