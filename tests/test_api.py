"""The top-level re-exports resolve to the real objects (a typo here is a broken API)."""
import importlib
from pathlib import Path

import bpfkit

ROOT = Path(__file__).resolve().parent.parent


def test_every_export_resolves():
    for name in bpfkit.__all__:
        obj = getattr(bpfkit, name)
        assert obj is not None, name


def test_exports_are_the_defining_objects():
    assert bpfkit.PacketBatch is importlib.import_module("bpfkit.pcap.batch").PacketBatch
    assert bpfkit.CbpfProgram is importlib.import_module("bpfkit.cbpf.program").Program
    assert bpfkit.run_batch is importlib.import_module("bpfkit.cbpf.vinterp").run_batch


def test_readme_api_example(tmp_path):
    prog = bpfkit.read_program(str(ROOT / "pcaps" / "tcp-port-80.bpf"))
    batch = bpfkit.read_capture(str(ROOT / "pcaps" / "sample.pcap"))
    retval = bpfkit.run_batch(prog, batch)
    out = tmp_path / "http.pcap"
    bpfkit.write_capture(str(out), batch[retval != 0])
    kept = bpfkit.read_capture(str(out))
    # 725 of 1527: `tcpdump -r pcaps/sample.pcap 'tcp port 80' | wc -l` (tcpdump 4.99.3,
    # 2026-11-22); test_filter.py checks the kept packets against tcpdump itself
    assert (len(batch), len(kept)) == (1527, 725)
