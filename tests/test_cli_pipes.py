"""A reader that stops reading our standard output (`bpfkit ... | head -c 100`) ends
the command quietly with exit status 0 and no message, as tcpdump does
(`tcpdump -r X -w - | head -c 100` exits 0: its SIGPIPE handler exits 0)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpfkit.pcap import PacketBatch, write_capture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """~4 MB of Ethernet/IPv4/TCP port 80 frames: far more than a pipe holds."""
    frame = (b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
             b"\x45\x00\x03\xd2\x00\x00\x00\x00\x40\x06\x00\x00\x0a\x00\x00\x01"
             b"\x0a\x00\x00\x02\x30\x39\x00\x50" + bytes(960))
    path = tmp_path_factory.mktemp("pipes") / "big.pcap"
    write_capture(path, PacketBatch.from_packets([frame] * 4000,
                                                 ts_ns=[i * 1000 for i in range(4000)]))
    return path


def _head(args: list[str], n: int = 100) -> tuple[int, bytes, str]:
    """Run bpfkit ARGS, read n bytes of its output, close the pipe, wait."""
    p = subprocess.Popen([sys.executable, "-m", "bpfkit.cli", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    got = p.stdout.read(n)
    p.stdout.close()
    err = p.stderr.read().decode()
    return p.wait(timeout=300), got, err


@pytest.mark.parametrize("args", [
    ["filter", "-r", "{big}", "-w", "-", "tcp port 80"],
    ["filter", "-r", "{big}", "-w", "-"],
    ["run", "--ebpf", "{prog}", "--type", "socket", "-r", "{big}", "-w", "-"],
    ["run", "--ebpf", "{prog}", "--type", "socket", "-r", "{big}", "--json"],
], ids=["filter", "filter-all", "run-ebpf-w", "run-ebpf-json"])
def test_closed_stdout_ends_quietly(args, big, tmp_path):
    prog = tmp_path / "http.bin"
    r = subprocess.run([sys.executable, "-m", "bpfkit.cli", "translate", "--socket",
                        "tcp port 80", "-o", str(prog)], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    args = [a.format(big=big, prog=prog) for a in args]
    rc, got, err = _head(args)
    assert len(got) == 100
    assert (rc, err) == (0, "")
