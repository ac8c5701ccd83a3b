"""ELF objects through the CLI: `bpfkit run --ebpf prog.o` and `bpfkit disasm --ebpf prog.o`
(the loader itself is tested against libbpf and the kernel in test_elf_*.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpfkit.ebpf.elf import open_elf
from bpfkit.ebpf.elfinfo import source_listing
from bpfkit.ebpf.runner import run_capture
from bpfkit.pcap import read_capture
from test_elf_load import build_object

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pcaps" / "sample.pcap"
pytestmark = pytest.mark.clang


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "bpfkit.cli", *args], capture_output=True,
                          input=stdin)


def test_run_elf_with_set_matches_api_and_the_capture():
    obj_path = build_object("xdp_flows")
    r = _cli("run", "--ebpf", str(obj_path), "--section", "xdp", "-r", str(SAMPLE),
             "--set", "max_len=100", "--json", "--dump-maps")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)

    obj = open_elf(obj_path)
    maps = obj.create_maps(config={"max_len": 100})
    api = run_capture(obj.program(section="xdp"), str(SAMPLE), maps=maps)
    assert doc["retval"] == api.retval.tolist()
    assert doc["maps"] == json.loads(json.dumps(api.dump_maps()))

    # Independent of bpfkit's interpreter: xdp_flows.c returns XDP_ABORTED exactly when
    # the frame is longer than max_len (checked after the 14-byte Ethernet bound), and
    # counts every packet it runs on in `seen` (.bss).
    batch = read_capture(str(SAMPLE))
    ran = batch.caplen >= 14
    assert doc["verdict"].count("ABORTED") == int(np.count_nonzero(batch.caplen[ran] > 100))
    seen = int.from_bytes(bytes.fromhex(doc["maps"][".bss"][0]["value"])[:8], "little")
    assert seen == int(np.count_nonzero(ran))


def test_run_elf_without_set_uses_the_objects_rodata():
    obj_path = build_object("xdp_flows")
    r = _cli("run", "--ebpf", str(obj_path), "-r", str(SAMPLE), "--json")
    assert r.returncode == 0, r.stderr.decode()
    verdicts = json.loads(r.stdout)["verdict"]
    batch = read_capture(str(SAMPLE))
    # max_len defaults to 1500 in the source; sample.pcap has frames up to 1514 bytes
    assert verdicts.count("ABORTED") == int(np.count_nonzero(batch.caplen > 1500))


def test_disasm_elf_shows_source_lines_and_map_names():
    obj_path = build_object("xdp_flows")
    r = _cli("disasm", "--ebpf", str(obj_path), "--section", "xdp")
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert text == source_listing(open_elf(obj_path), section="xdp")
    assert "; " in text and "xdp_flows.c" in text          # BTF line info
    assert "flows ll" in text                               # map reference by name
    raw = _cli("disasm", "--ebpf", str(obj_path), "--section", "xdp", "--raw", "-o", "-")
    assert raw.returncode == 0
    assert raw.stdout == open_elf(obj_path).program(section="xdp").to_bytes("little")


def test_elf_from_stdin():
    obj_path = build_object("socket_len")
    r = _cli("disasm", "--ebpf", "-", stdin=obj_path.read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    assert "exit" in r.stdout.decode()


@pytest.mark.parametrize("argv,needle", [
    (["run", "--ebpf", "{obj}", "-r", str(SAMPLE), "--set", "max_len"], "NAME=VALUE"),
    (["run", "--ebpf", "{obj}", "-r", str(SAMPLE), "--set", "max_len=x"], "must be a number"),
    (["run", "--ebpf", "{obj}", "-r", str(SAMPLE), "--map", "m:array:4:4:1"], "own maps"),
    (["run", "--ebpf", "{obj}", "-r", str(SAMPLE), "--section", "nope"], "nope"),
    (["run", "--ebpf", "--type", "xdp", str(ROOT / "README.md"), "-r", str(SAMPLE),
      "--set", "a=1"], "--set is for ELF objects"),
])
def test_bad_elf_usage_is_one_line(argv, needle):
    obj_path = build_object("xdp_flows")
    r = _cli(*[a.replace("{obj}", str(obj_path)) for a in argv])
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err
