"""Socket-mode translation of what tcpdump compiles, on real captures.

Programs: `tcpdump -y DLT -ddd EXPR` for every expression of the libpcap corpus
(all eight link types) that tcpdump accepts.  Packets: the first three packets of every
Ethernet capture in ../shared/pcaps/tcpdump-tests (a deterministic sample; every
expression on every packet of 830 files would take hours here).  A program is a
program and bytes are bytes: programs of the other link types run on the same frames
(on every 2nd one, to bound the time).

Per program:
- the translation exists, except for protochain's backward jumps, which the kernel's
  classic validator refuses too (ValidationError kernel.jump_range);
- kernel vs kernel, on every sample packet the test run accepts, for programs without
  ancillary loads (an AF_UNIX skb has no device, the test run's has lo): the classic
  program attached with SO_ATTACH_FILTER to an AF_UNIX socket (skb->data = the frame)
  keeps exactly what BPF_PROG_TEST_RUN of the translation returns for the same bytes
  after a dummy 14-byte Ethernet header (skb->data = the frame again);
- on every 8th sample packet (and every packet too big for the test run): run_socket
  (classic) == run_translation (eBPF interpreter), and the kernel's test-run value ==
  bpfkit's eBPF interpreter on the same test-run skb (progtypes.run_socket_filter).
"""
from __future__ import annotations

import json
import os
import socket

import pytest

import oracles
from bpfkit.cbpf.interp import SkbMeta, run_socket
from bpfkit.cbpf.program import Program
from bpfkit.cbpf.validate import kernel_ancillary
from bpfkit.ebpf import progtypes
from bpfkit.errors import ValidationError
from bpfkit.translate import interpreter_for, run_translation, translate_socket

pytestmark = [pytest.mark.tcpdump]

ETH_HDR = bytes(12) + b"\x88\xb5"   # see test_translate_socket: not IP, so no EINVAL
TESTRUN_MAX = 3712                  # largest frame this kernel's skb test run takes
                                    # (measured: 4096 - headroom - skb_shared_info)
INTERP_EVERY = 8
# Ethernet capture: the mac header is at skb->data (run_translation needs it set)
META = SkbMeta(mac_offset=0)


def _programs(shared_dir):
    out, rejected = [], 0
    with open(shared_dir / "corpus" / "libpcap-filter-exprs.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rc, text, _ = oracles.tcpdump_compile(d["expr"], d["dlt"], "-ddd")
            if rc != 0:
                rejected += 1
                continue
            lines = text.split("\n")
            n = int(lines[0])
            out.append((f'{d["dlt"]}: {d["expr"]}',
                        Program([tuple(int(v) for v in ln.split()) for ln in lines[1:1 + n]])))
    return out, rejected


def _translations(progs):
    """(name, program, translation) for every translatable program; protochain is
    refused with the kernel validator's reason."""
    out = []
    for name, prog in progs:
        try:
            out.append((name, prog, translate_socket(prog)))
        except ValidationError as e:
            assert "protochain" in name and e.rule == "kernel.jump_range", name
    return out


def _packets(shared_dir):
    d = shared_dir / "pcaps" / "tcpdump-tests"
    out = []
    for name in sorted(os.listdir(d)):
        r = oracles.libpcap_read(str(d / name), max_packets=3)
        if r.dlt == 1:
            out += [p[3] for p in r.packets]
    return out


@pytest.fixture(scope="module")
def corpus(shared_dir):
    progs, rejected = _programs(shared_dir)
    return progs, rejected, _packets(shared_dir)


def test_every_program_translates(corpus):
    progs, rejected, _ = corpus
    assert len(progs) + rejected == 3380
    # most corpus entries are libpcap's rejection tests; 1.10.3 accepts 656 here
    assert len(progs) > 600
    trs = _translations(progs)
    assert len(progs) - len(trs) == sum("protochain" in name for name, _ in progs) < 20
    for name, _, tr in trs:
        # tcpdump's programs have no dead code, so nothing is left out
        assert all(s is not None for s in tr.starts), name


def test_sample_is_diverse(corpus):
    _, _, pkts = corpus
    assert len(pkts) > 850
    assert sum(len(p) + 14 > TESTRUN_MAX for p in pkts) > 10   # big ones: interps only


@pytest.mark.kernel
def test_kernel_classic_vs_translation_and_interpreters(corpus):
    progs, _, pkts = corpus
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.setblocking(False)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    small = [p for p in pkts if len(p) + 14 <= TESTRUN_MAX]
    kernel_compared = interp_compared = anc = 0
    try:
        for expr, prog, tr in _translations(progs):
            has_anc = any(kernel_ancillary(i) is not None for i in prog.insns)
            anc += has_anc
            step = 1 if expr.startswith("EN10MB:") else 2
            if not has_anc:
                oracles.attach_filter(rx, prog.as_tuples())
            fd = oracles.bpf_prog_load(tr.to_bytes())
            try:
                kret = {}
                for i in range(0, len(small), step):
                    p = small[i]
                    kret[i], _ = oracles.bpf_prog_test_run(fd, ETH_HDR + p)
                    if has_anc:
                        continue
                    tx.send(p)
                    try:
                        got = len(rx.recv(1 << 17))
                    except BlockingIOError:
                        got = None
                    want = None if kret[i] == 0 else min(len(p), kret[i])
                    assert got == want, (expr, i, p[:64].hex())
                    kernel_compared += 1
            finally:
                os.close(fd)
            interp = interpreter_for(tr)
            einterp = progtypes.load(tr.insns, progtypes.BPF_PROG_TYPE_SOCKET_FILTER)
            for i in range(0, len(small), INTERP_EVERY):
                p = small[i]
                assert run_translation(tr, p, META, interp=interp) == \
                    run_socket(prog, p, META), (expr, i)
                assert progtypes.run_socket_filter(einterp, ETH_HDR + p).retval == kret[i], \
                    (expr, i)
                interp_compared += 1
            for p in pkts[::step]:
                if len(p) + 14 > TESTRUN_MAX:
                    assert run_translation(tr, p, META, interp=interp) == \
                        run_socket(prog, p, META), expr
                    interp_compared += 1
    finally:
        tx.close()
        rx.close()
    print(f"kernel pairs {kernel_compared}, interpreter checks {interp_compared}, "
          f"programs with ancillary loads {anc}")
    assert kernel_compared > 350_000 and interp_compared > 50_000
