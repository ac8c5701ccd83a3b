"""The scalar reference interpreter (bpfkit.cbpf.interp).

- socket-filter mode: every one of the 134 classic cases of the Linux kernel's own
  test suite (lib/test_bpf.c, ../shared/corpus/linux-test_bpf-classic.json), skb set
  up as the corpus notes describe (populate_skb);
- filter mode: differential against libpcap 1.10.3's own bpf_filter() (the installed
  libpcap, through ctypes: tests/oracles.libpcap_filter) on hypothesis programs and
  packets, and on tcpdump-compiled programs.
"""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracles
from bpfkit.cbpf.interp import SkbMeta, run_filter, run_socket
from bpfkit.cbpf.program import Program
from bpfkit.cbpf.validate import check
from bpfkit.errors import ExecutionError, UnsupportedError, UsageError, ValidationError

from cbpf_gen import libpcap_programs, looping_programs, packets, tcpdump_program

# --- the kernel's test_bpf classic cases ---------------------------------------------


def _corpus(shared_dir):
    return json.loads((shared_dir / "corpus" / "linux-test_bpf-classic.json").read_text())


def _skb(case: dict, size: int):
    """populate_skb() of lib/test_bpf.c as the corpus notes describe it: linear data is
    the test data zero-padded to 128 bytes, cut to the subtest's size; mac header at
    0, network header at min(size, 14); fixed metadata; a 128-byte page fragment
    holding frag_data for FLAG_SKB_FRAG (its tail is never read by those tests)."""
    data = bytes(case["data"]) + bytes(128 - len(case["data"]))
    meta = SkbMeta(protocol=0x0800, pkttype=3, mark=0x1234AAAA, rxhash=0x1234AAAB,
                   queue_mapping=123, vlan_tci=0xFFFF, vlan_present=True, vlan_proto=0x0800,
                   ifindex=577, hatype=588, cpu=0, mac_offset=0,
                   network_offset=min(size, 14))
    frag = b""
    if "FLAG_SKB_FRAG" in case["flags"]:
        frag = bytes(case["frag_data"]) + bytes(128 - len(case["frag_data"]))
    return data[:size], meta, frag


def test_kernel_corpus_all_134(shared_dir):
    """134/134: FLAG_EXPECTED_FAIL cases must be rejected by the kernel validator
    with -22; every other subtest must return the kernel's value."""
    corpus = _corpus(shared_dir)
    cases = corpus["tests"]
    assert len(cases) == 134
    passed, failures = 0, []
    for case in cases:
        # struct sock_filter's jt/jf are __u8: C truncates what test_bpf.c's fill
        # helpers compute (bpf_fill_maxinsns8 writes jt = 4093, 4092, ...); the corpus
        # keeps the untruncated ints, so truncate as the kernel test's C code does.
        prog = Program([(c, jt & 0xFF, jf & 0xFF, k & 0xFFFFFFFF)
                        for c, jt, jf, k in case["insns"]])
        name = f'{case["index"]} {case["descr"]}'
        if "FLAG_EXPECTED_FAIL" in case["flags"]:
            errs = check(prog, "kernel")
            if errs and errs[0].errno == case["expected_errcode"] == -22:
                passed += 1
            else:
                failures.append(f"{name}: expected rejection, got {errs}")
            continue
        ok = True
        for size, expected in case["subtests"]:
            pkt, meta, frag = _skb(case, size)
            got = run_socket(prog, pkt, meta, frag)
            if got != expected:
                ok = False
                failures.append(f"{name}: size {size}: got {got}, kernel {expected}")
        passed += ok
    assert not failures, "\n".join(failures)
    assert passed == 134


# --- reasoned socket-mode cases (each expected value is argued next to it) ----------

_BYTES = bytes(range(64))


@pytest.mark.parametrize("name,insns,pkt,meta,frag,expected", [
    # ancillary loads ignore the size: ldb/ldh of SKF_AD_MARK read the whole u32
    ("anc ignores size", [(0x30, 0, 0, -0x1000 + 20), (0x16, 0, 0, 0)], b"",
     SkbMeta(mark=0x12345678), b"", 0x12345678),
    # no device: IFINDEX ends the program returning the current A (here 7)
    ("ifindex no dev", [(0x00, 0, 0, 7), (0x20, 0, 0, -0x1000 + 8), (0x06, 0, 0, 99)], b"",
     SkbMeta(), b"", 7),
    # shift by X uses X & 31 in the kernel: 1 << 33 == 1 << 1 == 2
    ("lsh x masks", [(0x00, 0, 0, 1), (0x01, 0, 0, 33), (0x6C, 0, 0, 0), (0x16, 0, 0, 0)],
     b"", SkbMeta(), b"", 2),
    # division by X == 0 returns 0
    ("div x 0", [(0x00, 0, 0, 9), (0x3C, 0, 0, 0), (0x06, 0, 0, 5)], b"", SkbMeta(), b"", 0),
    # LL offsets fail when the mac header is unset (the default AF_UNIX skb)
    ("ll unset", [(0x30, 0, 0, -0x200000), (0x06, 0, 0, 5)], b"ab", SkbMeta(), b"", 0),
    # NET offsets relative to the network header (default 0): byte 1 is 0x01
    ("net off", [(0x30, 0, 0, -0x100000 + 1), (0x16, 0, 0, 0)], _BYTES, SkbMeta(), b"", 1),
    # negative-offset loads must be in the linear area, not the fragment
    ("net off frag", [(0x30, 0, 0, -0x100000 + 2), (0x06, 0, 0, 5)], b"ab", SkbMeta(),
     b"cd", 0),
    # positive loads read across linear data into the fragment (skb_copy_bits)
    ("abs frag", [(0x28, 0, 0, 1), (0x16, 0, 0, 0)], b"ab", SkbMeta(), b"cd", 0x6263),
    # len is headlen + frag
    ("len", [(0x80, 0, 0, 0), (0x16, 0, 0, 0)], b"ab", SkbMeta(), b"cde", 5),
    # IND: X + k wraps in 32 bits: X = 0xffffffff, k = 2 -> offset 1
    ("ind wraps", [(0x01, 0, 0, 0xFFFFFFFF), (0x50, 0, 0, 2), (0x16, 0, 0, 0)], _BYTES,
     SkbMeta(), b"", 1),
    # vlan/protocol are host-order numbers
    ("tpid", [(0x20, 0, 0, -0x1000 + 60), (0x16, 0, 0, 0)], b"", SkbMeta(vlan_proto=0x88A8),
     b"", 0x88A8),
])
def test_socket_cases(name, insns, pkt, meta, frag, expected):
    assert run_socket(insns, pkt, meta, frag) == expected


def test_socket_random_is_seeded():
    prog = [(0x20, 0, 0, -0x1000 + 56), (0x16, 0, 0, 0)]
    a = [run_socket(prog, b"", SkbMeta(random_seed=s)) for s in range(5)]
    assert a == [run_socket(prog, b"", SkbMeta(random_seed=s)) for s in range(5)]
    assert len(set(a)) > 1


def test_socket_pay_offset():
    """__skb_get_poff on an Ethernet/IPv4/TCP frame with doff 8 (32-byte header):
    network header at 14, IHL 5 -> transport at 34, payload at 34 + 32 = 66."""
    ip = bytes([0x45, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0]) + bytes(8)
    tcp = bytes(12) + bytes([0x80]) + bytes(19)
    pkt = bytes(14) + ip + tcp
    prog = [(0x20, 0, 0, -0x1000 + 52), (0x16, 0, 0, 0)]
    meta = SkbMeta(protocol=0x0800, network_offset=14, mac_offset=0)
    assert run_socket(prog, pkt, meta) == 66
    # a later IPv4 fragment: only the network header is skipped
    frag_ip = ip[:6] + b"\x00\x10" + ip[8:]
    assert run_socket(prog, bytes(14) + frag_ip + tcp, meta) == 34
    # an unknown protocol: the dissector fails, poff is 0
    assert run_socket(prog, pkt, SkbMeta(protocol=0x1234)) == 0
    with pytest.raises(UnsupportedError):
        run_socket(prog, pkt, SkbMeta(protocol=0x8847))
    # an offloaded 802.1Q tag: the dissector continues with skb->protocol
    vmeta = SkbMeta(protocol=0x0800, vlan_present=True, vlan_proto=0x8100, vlan_tci=5,
                    network_offset=14, mac_offset=0)
    assert run_socket(prog, pkt, vmeta) == 66
    # an in-band tag (not offloaded): the 4-byte header is skipped in the data
    tagged = bytes(14) + b"\x00\x05\x08\x00" + ip + tcp
    assert run_socket(prog, tagged, SkbMeta(protocol=0x8100, network_offset=14)) == 70


def test_socket_rejects_invalid():
    with pytest.raises(ValidationError) as e:
        run_socket([(0x06, 0, 0, 0), (0x1E, 0, 0, 0)], b"")
    assert e.value.errno == -22


def test_skbmeta_checks():
    with pytest.raises(UsageError):
        SkbMeta(ifindex=3)
    with pytest.raises(UsageError):
        SkbMeta(network_offset=-1)


# --- filter mode against libpcap's own bpf_filter --------------------------------------

@pytest.mark.parametrize("name,insns,pkt,wirelen", [
    ("lsh x 33", [(0x00, 0, 0, 1), (0x01, 0, 0, 33), (0x6C, 0, 0, 0), (0x16, 0, 0, 0)], b"abc", 3),
    ("rsh x 32", [(0x00, 0, 0, 0xFFFFFFFF), (0x01, 0, 0, 32), (0x7C, 0, 0, 0), (0x16, 0, 0, 0)],
     b"abc", 3),
    ("lsh k 33", [(0x00, 0, 0, 1), (0x64, 0, 0, 33), (0x16, 0, 0, 0)], b"abc", 3),
    ("rsh k 40", [(0x00, 0, 0, 0x80000000), (0x74, 0, 0, 40), (0x16, 0, 0, 0)], b"abc", 3),
    ("ancillary oob", [(0x30, 0, 0, -0x1000 + 44), (0x16, 0, 0, 0)], b"abc", 3),
    ("div x 0", [(0x00, 0, 0, 5), (0x3C, 0, 0, 0), (0x06, 0, 0, 7)], b"abc", 3),
    ("mod x 0", [(0x00, 0, 0, 5), (0x9C, 0, 0, 0), (0x06, 0, 0, 7)], b"abc", 3),
    ("len is wirelen", [(0x80, 0, 0, 0), (0x16, 0, 0, 0)], b"abc", 1500),
    ("ldx len", [(0x81, 0, 0, 0), (0x87, 0, 0, 0), (0x16, 0, 0, 0)], b"abc", 77),
    ("ind no wrap", [(0x01, 0, 0, 0xFFFFFFFF), (0x50, 0, 0, 2), (0x16, 0, 0, 0)], b"abcd", 4),
    ("caplen edge", [(0x20, 0, 0, 0), (0x16, 0, 0, 0)], b"abcd", 4),
    ("caplen edge+1", [(0x20, 0, 0, 1), (0x16, 0, 0, 0)], b"abcd", 4),
    ("msh", [(0xB1, 0, 0, 0), (0x87, 0, 0, 0), (0x16, 0, 0, 0)], b"\x4f", 1),
    # a counting loop through a backward ja (ja k is signed in bpf_filter)
    ("backward ja", [(0x00, 0, 0, 0), (0x04, 0, 0, 1), (0x15, 1, 0, 3),
                     (0x05, 0, 0, -3 & 0xFFFFFFFF), (0x16, 0, 0, 0)], b"", 0),
])
def test_filter_cases_vs_libpcap(name, insns, pkt, wirelen):
    expected = oracles.libpcap_filter(insns, pkt, wirelen)
    assert run_filter(insns, pkt, wirelen) == expected


def test_filter_loop_guard():
    # `ja -1` passes libpcap 1.10.3's validator and spins forever in bpf_filter
    prog = [(0x05, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 1)]
    assert oracles.libpcap_validate(prog)
    with pytest.raises(ExecutionError):
        run_filter(prog, b"")


def test_filter_unimplemented_opcode():
    # RET|X passes libpcap's validator; bpf_filter would abort()
    prog = [(0x1E, 0, 0, 0), (0x06, 0, 0, 1)]
    assert oracles.libpcap_validate(prog)
    with pytest.raises(ExecutionError):
        run_filter(prog, b"")


def test_filter_validates():
    with pytest.raises(ValidationError):
        run_filter([(0x00, 0, 0, 1)], b"")


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=libpcap_programs(), pkts=st.lists(packets(), min_size=1, max_size=8))
def test_filter_vs_libpcap_random(prog, pkts):
    for pkt, wirelen in pkts:
        assert run_filter(prog, pkt, wirelen) == oracles.libpcap_filter(prog, pkt, wirelen)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(prog=looping_programs(), pkts=st.lists(packets(), min_size=1, max_size=8))
def test_filter_loops_vs_libpcap(prog, pkts):
    for pkt, wirelen in pkts:
        assert run_filter(prog, pkt, wirelen) == oracles.libpcap_filter(prog, pkt, wirelen)


@pytest.mark.tcpdump
@pytest.mark.parametrize("expr", [
    "tcp port 80", "ip6 and udp port 53", "vlan and tcp", "ip[6:2] & 0x1fff = 0",
    "tcp[tcpflags] & tcp-syn != 0", "ip6 protochain 6", "ip protochain 17", "len > 60",
    "ether[0] & 1 = 0 and ip[2:2] > 100", "udp[8:2] % 3 = 1 or ip[1] >> 2 = 4",
])
def test_filter_tcpdump_programs_vs_libpcap(expr):
    prog = tcpdump_program(expr)
    rng = random.Random(expr)
    from cbpf_gen import synthetic_packet
    for _ in range(300):
        pkt, wirelen = synthetic_packet(rng)
        assert run_filter(prog, pkt, wirelen) == oracles.libpcap_filter(prog, pkt, wirelen)
