"""bpfkit.translate.compare and `bpfkit compare`: every pair agrees on real captures;
disagreements (provoked by swapping in a wrong reference) are counted, listed and give
exit status 1; a missing translation is reported as unavailable."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bpfkit.cbpf.isa import SKF_AD_OFF
from bpfkit.cbpf.program import Program
from bpfkit.cli.main import main
from bpfkit.pcap import read_capture
from bpfkit.translate import compare
from bpfkit.translate.compare import compare_batch

from cbpf_gen import tcpdump_program

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pcaps" / "sample.pcap"
EXPRS = ["tcp port 80", "udp or icmp", "ip6 and tcp", "len > 100 and ether broadcast",
         "tcp[tcpflags] & tcp-syn != 0", "vlan and ip"]


@pytest.mark.tcpdump
@pytest.mark.parametrize("expr", EXPRS)
def test_all_pairs_agree_on_sample(expr):
    batch = read_capture(str(SAMPLE))
    rep = compare_batch(tcpdump_program(expr), batch)
    assert rep.ok and rep.packets == len(batch) > 1000
    for p in rep.pairs:
        assert p.unavailable is None
        assert p.compared + p.skipped == len(batch) and p.agreed == p.compared


@pytest.mark.tcpdump
def test_disagreements_listed(monkeypatch):
    batch = read_capture(str(SAMPLE))
    monkeypatch.setattr(compare, "run_socket", lambda *a: 12345)
    rep = compare_batch(tcpdump_program("tcp"), batch, max_listed=3)
    sock = rep.pairs[0]
    assert not rep.ok and sock.agreed == 0 and sock.compared == len(batch)
    assert [d.index for d in sock.disagreements] == [0, 1, 2]
    assert all(d.left == 12345 for d in sock.disagreements)
    assert rep.pairs[1].ok


def test_unavailable_translation():
    batch = read_capture(str(SAMPLE))
    # SKF_AD_HATYPE has no eBPF equivalent; libpcap semantics: an out-of-bounds load
    prog = Program([(0x20, 0, 0, (SKF_AD_OFF + 28) & 0xFFFFFFFF), (0x06, 0, 0, 1)])
    rep = compare_batch(prog, batch)
    assert "SKF_AD_HATYPE" in rep.pairs[0].unavailable and rep.pairs[0].compared == 0
    assert rep.pairs[1].ok and rep.pairs[1].compared > 0


def test_cli(capsys, tmp_path):
    assert main(["compare", "-r", str(SAMPLE), "--json", "tcp", "port", "80"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and [p["pair"] for p in out["pairs"]] == ["socket", "xdp"]
    assert main(["compare", "-r", str(SAMPLE), "udp"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["pair", "left", "right"]
