"""The README's examples work as printed."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bpfkit.pcap import read_capture

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _bpfkit(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bpfkit.cli", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.tcpdump
def test_readme_xdp_example_counts_and_drops_icmp(tmp_path):
    m = re.search(r"cat > /tmp/count.s <<'ASM'\n(.*?)\nASM\n(bpfkit run [^\n]*)", README, re.S)
    assert m, "README lost its XDP example"
    src = tmp_path / "count.s"
    src.write_text(m.group(1) + "\n")
    args = m.group(2).split()[1:]
    args[args.index("/tmp/count.s")] = str(src)
    r = _bpfkit(*args)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    # The program drops exactly the packets tcpdump's `icmp` matches: ethertype 0x0800 at
    # offset 12 and protocol 1 at offset 23 (every such packet in the sample has >= 34 bytes).
    t = subprocess.run(["tcpdump", "-r", str(ROOT / "pcaps" / "sample.pcap"), "icmp"],
                       capture_output=True, text=True)
    icmp = len(t.stdout.splitlines())
    assert icmp > 0
    assert doc["counts"]["DROP"] == icmp
    assert doc["counts"]["PASS"] == doc["packets"] - icmp
    counts = {int.from_bytes(bytes.fromhex(e["key"]), "little"):
              int.from_bytes(bytes.fromhex(e["value"]), "little") for e in doc["maps"]["counts"]}
    assert counts[1] == icmp
    t = subprocess.run(["tcpdump", "-r", str(ROOT / "pcaps" / "sample.pcap"), "ip proto 6"],
                       capture_output=True, text=True)
    assert counts[6] == len(t.stdout.splitlines())


@pytest.mark.tcpdump
def test_readme_main_command_keeps_what_tcpdump_keeps(tmp_path):
    m = re.search(r"pip install -e \. && (bpfkit filter [^\n]*)", README)
    assert m, "README lost its main command"
    words = shlex.split(m.group(1))
    out = tmp_path / "http.pcap"
    words[words.index("/tmp/http.pcap")] = str(out)
    r = _bpfkit(*words[1:])
    assert r.returncode == 0, r.stderr
    expr = words[-1]
    theirs = tmp_path / "tcpdump.pcap"
    t = subprocess.run(["tcpdump", "-r", str(ROOT / "pcaps" / "sample.pcap"), "-w", str(theirs),
                        expr], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    ours = read_capture(str(out))
    assert 0 < len(ours) < 1527
    assert ours.packets() == read_capture(str(theirs)).packets()
    assert f"{len(ours)} of 1527 packets kept" in r.stderr
