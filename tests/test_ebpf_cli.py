"""`bpfkit asm --ebpf`, `bpfkit disasm --ebpf`, `bpfkit run --ebpf`: outputs, round
trips, errors (one line, exit 2), llvm-objdump for the listing, and the kernel's
BPF_PROG_TEST_RUN for `run` (verdict per packet, output bytes, final maps)."""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

import oracles
from bpfkit.cli import main as cli_main
from bpfkit.ebpf import isa
from bpfkit.ebpf.program import Program, parse_map_spec
from bpfkit.pcap import read_capture

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pcaps" / "sample.pcap"
RAW = ROOT / "pcaps" / "raw.pcap"

# XDP: count IPv4 packets per IP protocol (array `proto`) and all packets per
# ethertype (hash `etype`, created with BPF_NOEXIST on first sight); decrement the
# IPv4 TTL (a rewritten byte); ICMP -> DROP, UDP -> TX, everything else PASS.
XDP_SRC = """\
        r6 = *(u32 *)(r1 + 0)           # data
        r7 = *(u32 *)(r1 + 4)           # data_end
        r2 = r6
        r2 += 34                        # Ethernet + minimal IPv4 header
        r0 = 2
        if r2 > r7 goto out
        r8 = *(u8 *)(r6 + 12)
        r1 = *(u8 *)(r6 + 13)
        r8 <<= 8
        r8 |= r1                        # ethertype, host order
        *(u32 *)(r10 - 8) = r8
        r1 = etype ll
        r2 = r10
        r2 += -8
        call 1
        if r0 == 0 goto new
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        goto ip
new:
        r1 = 1
        *(u64 *)(r10 - 16) = r1
        r1 = etype ll
        r2 = r10
        r2 += -8
        r3 = r10
        r3 += -16
        r4 = 1                          # BPF_NOEXIST
        call 2
ip:
        r0 = 2
        if r8 != 0x800 goto out
        r9 = *(u8 *)(r6 + 23)           # IPv4 protocol
        *(u32 *)(r10 - 4) = r9
        r1 = proto ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto pass
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r1 = *(u8 *)(r6 + 22)
        r1 += -1
        *(u8 *)(r6 + 22) = r1           # TTL - 1
        r0 = 1
        if r9 == 1 goto out
        r0 = 3
        if r9 == 17 goto out
pass:
        r0 = 2
out:
        exit
"""
XDP_MAPS = ["proto:array:4:8:256", "etype:hash:4:8:64"]

# SOCKET_FILTER: count packets per skb->protocol (hash) and per byte 9 after the
# Ethernet header (LD_ABS, the IPv4 protocol for IPv4; array); keep IPv4 whole
# (return skb->len), drop the rest.
SOCKET_SRC = """\
        r6 = r1
        r7 = *(u32 *)(r6 + 16)          # skb->protocol (__be16)
        *(u32 *)(r10 - 4) = r7
        r1 = eproto ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto new
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        goto abs
new:
        r1 = 1
        *(u64 *)(r10 - 16) = r1
        r1 = eproto ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call 2
abs:
        r0 = *(u8 *)skb[9]
        *(u32 *)(r10 - 8) = r0
        r1 = byte9 ll
        r2 = r10
        r2 += -8
        call 1
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
out:
        r0 = 0
        if r7 != 0x8 goto done
        r0 = *(u32 *)(r6 + 0)           # skb->len
done:
        exit
"""
SOCKET_MAPS = ["eproto:hash:4:8:64", "byte9:array:4:8:256"]

# include/uapi/linux/bpf.h enum xdp_action
XDP_NAMES = {0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}


@pytest.fixture
def bpfkit(monkeypatch):
    """main() in-process with replaceable binary stdin."""

    def run(*argv, stdin: bytes | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        return cli_main.main([str(a) for a in argv])
    return run


@pytest.fixture
def xdp_file(tmp_path):
    p = tmp_path / "xdp.s"
    p.write_text(XDP_SRC)
    return p


def _map_args(specs):
    return [x for s in specs for x in ("--map", s)]


def _program(src, specs, ptype="xdp"):
    return Program.from_asm(src, prog_type=ptype, maps=[parse_map_spec(s) for s in specs])


# --- asm / disasm -----------------------------------------------------------------------------

def test_asm_outputs_and_round_trips(bpfkit, capsys, xdp_file, tmp_path):
    prog = _program(XDP_SRC, XDP_MAPS)
    names = ["--map", "proto", "--map", "etype"]
    assert bpfkit("asm", "--ebpf", xdp_file, *names) == 0
    listing = capsys.readouterr().out
    assert listing == prog.listing()
    assert bpfkit("asm", "--ebpf", xdp_file, *names, "--hex") == 0
    assert capsys.readouterr().out == prog.to_hex()
    for order in ("little", "big"):
        out = tmp_path / f"p.{order}"
        assert bpfkit("asm", "--ebpf", xdp_file, *names, "--raw", "--byteorder", order,
                      "-o", out) == 0
        assert out.read_bytes() == prog.to_bytes(order)
        # disasm reads either byte order back to the same listing
        assert bpfkit("disasm", "--ebpf", out, "--byteorder", order, *names) == 0
        assert capsys.readouterr().out == listing
    # --text assembles back to the same bytes; hex on stdin disassembles the same
    assert bpfkit("asm", "--ebpf", xdp_file, *names, "--text") == 0
    text = capsys.readouterr().out
    assert bpfkit("asm", "--ebpf", "-", *names, "--raw", "-o", tmp_path / "t.bin",
                  stdin=text.encode()) == 0
    assert (tmp_path / "t.bin").read_bytes() == prog.to_bytes()
    assert bpfkit("disasm", "--ebpf", "-", *names, stdin=prog.to_hex().encode()) == 0
    assert capsys.readouterr().out == listing


@pytest.mark.parametrize("syntax", ["llvm", "kernel", "conformance"])
def test_disasm_syntaxes_read_back(bpfkit, capsys, tmp_path, syntax):
    # a program without maps: every syntax (the conformance one has no map names)
    # assembles its own listing back to the same bytes
    src = "r0 = *(u32 *)(r1 + 4)\nr0 += -1\nif r0 s> 3 goto +1\nr0 = 7 ll\nw0 <<= 3\nexit\n"
    prog = Program.from_asm(src)
    raw = tmp_path / "p.bin"
    raw.write_bytes(prog.to_bytes())
    assert bpfkit("disasm", "--ebpf", raw, "--syntax", syntax) == 0
    out = capsys.readouterr().out
    if syntax == "llvm":
        out = "".join(line.split(":\t", 1)[1] + "\n" for line in out.splitlines())
    assert bpfkit("asm", "--ebpf", "--syntax", syntax, "-", "--hex", stdin=out.encode()) == 0
    assert capsys.readouterr().out == prog.to_hex()


# looks for a byte 0xff among bytes 14..45 (XDP_TX), else XDP_PASS; a may_goto at the
# back-edge (its exit, XDP_DROP, is never taken: 32 iterations at most)
MAY_GOTO_SRC = """\
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r2 += 14
        r6 = 32
next:
        r0 = 2
        if r6 == 0 goto done
        r6 -= 1
        r4 = r2
        r4 += 1
        if r4 > r3 goto done
        r5 = *(u8 *)(r2 + 0)
        r0 = 3
        if r5 == 0xff goto done
        r2 += 1
        may_goto spent
        goto next
spent:
        r0 = 1
done:
        exit
"""


@pytest.mark.parametrize("syntax", ["llvm", "kernel", "conformance"])
def test_may_goto_round_trips_and_runs(bpfkit, capsys, tmp_path, syntax):
    prog = Program.from_asm(MAY_GOTO_SRC)
    assert isa.Insn(0xE5, 0, 0, 1, 0) in prog.insns
    raw = tmp_path / "p.bin"
    raw.write_bytes(prog.to_bytes())
    assert bpfkit("disasm", "--ebpf", raw, "--syntax", syntax) == 0
    out = capsys.readouterr().out
    assert ("may_goto pc+1" if syntax == "kernel" else "may_goto +1") in out
    if syntax == "llvm":
        out = "".join(line.split(":\t", 1)[1] + "\n" for line in out.splitlines())
    assert bpfkit("asm", "--ebpf", "--syntax", syntax, "-", "--hex", stdin=out.encode()) == 0
    assert capsys.readouterr().out == prog.to_hex()
    src = tmp_path / "walk.s"
    src.write_text(MAY_GOTO_SRC)
    assert bpfkit("run", "--ebpf", "--type", "xdp", src, "-r", SAMPLE, "-c", 50,
                  "--json") == 0
    got = json.loads(capsys.readouterr().out)["verdict"]
    batch = read_capture(SAMPLE)
    want = ["TX" if 0xFF in bytes(batch[i])[14:46] else "PASS" for i in range(50)]
    assert got == want and "TX" in want and "PASS" in want


@pytest.mark.kernel
def test_may_goto_program_matches_kernel(bpfkit, capsys, tmp_path):
    src = tmp_path / "walk.s"
    src.write_text(MAY_GOTO_SRC)
    assert bpfkit("run", "--ebpf", "--type", "xdp", src, "-r", SAMPLE, "-c", 50,
                  "--json") == 0
    got = json.loads(capsys.readouterr().out)["retval"]
    fd = oracles.bpf_prog_load(Program.from_asm(MAY_GOTO_SRC).to_bytes(),
                               prog_type=oracles.BPF_PROG_TYPE_XDP)
    try:
        batch = read_capture(SAMPLE)
        assert got == [oracles.bpf_prog_test_run(fd, bytes(batch[i]))[0] for i in range(50)]
    finally:
        os.close(fd)


@pytest.mark.clang
def test_disasm_listing_matches_llvm_objdump(bpfkit, capsys, tmp_path):
    # llvm-objdump knows no map names: compare on the program with its map lddws made
    # plain `r1 = 0 ll`
    prog = _program(XDP_SRC, XDP_MAPS)
    plain = [isa.lddw(i.dst, 0) if i.opcode == isa.LDDW else i for i in prog.insns]
    raw = tmp_path / "p.bin"
    raw.write_bytes(isa.encode(plain))
    assert bpfkit("disasm", "--ebpf", raw) == 0
    ours = [line.split(":\t", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert ours == oracles.llvm_objdump_raw(raw.read_bytes())
    assert len(ours) == len(plain) == 48


# --- run ------------------------------------------------------------------------------------

def test_run_summary_and_json(bpfkit, capsys, xdp_file):
    argv = ["run", "--ebpf", "--type", "xdp", xdp_file, *_map_args(XDP_MAPS), "-r", SAMPLE]
    assert bpfkit(*argv) == 0
    text = capsys.readouterr().out.splitlines()
    assert bpfkit(*argv, "--json", "--dump-maps") == 0
    j = json.loads(capsys.readouterr().out)
    assert j["packets"] == len(j["retval"]) == len(j["verdict"]) == 1527
    assert j["verdict"] == [XDP_NAMES[r] for r in j["retval"]]
    counts = {v: j["verdict"].count(v) for v in XDP_NAMES.values()}
    assert text[:6] == ["packets: 1527"] + [f"{v}: {counts[v]}" for v in
                                            ("ABORTED", "DROP", "PASS", "TX", "REDIRECT")]
    assert text[6:] == ["faults: 0", "skipped: 0", "engine: vector"]
    # the array counts IPv4 packets per protocol, the hash every packet long enough
    proto = {int.from_bytes(bytes.fromhex(d["key"]), "little"):
             int.from_bytes(bytes.fromhex(d["value"]), "little") for d in j["maps"]["proto"]}
    assert len(proto) == 256
    assert proto[1] == counts["DROP"] and proto[17] == counts["TX"]
    etype = {d["key"]: int.from_bytes(bytes.fromhex(d["value"]), "little")
             for d in j["maps"]["etype"]}
    assert etype["00080000"] == sum(proto.values())


def test_run_faults_are_listed_with_packet_and_pc(bpfkit, capsys, tmp_path):
    # an unchecked load at data + 99: a fault on every packet shorter than 100 bytes
    src = tmp_path / "f.s"
    src.write_text("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 99)\nr0 = 2\nexit\n")
    assert bpfkit("run", "--ebpf", "--type", "xdp", src, "-r", SAMPLE, "-c", 40, "--json") == 0
    j = json.loads(capsys.readouterr().out)
    caplen = read_capture(SAMPLE).caplen[:40]
    assert [f["packet"] for f in j["faults"]] == [i for i in range(40) if caplen[i] < 100]
    assert {f["pc"] for f in j["faults"]} == {1}
    assert bpfkit("run", "--ebpf", "--type", "xdp", src, "-r", SAMPLE, "-c", 40) == 0
    out = capsys.readouterr().out
    assert f"faults: {len(j['faults'])}" in out
    assert f"  packet {j['faults'][0]['packet']}: pc 1: memory:" in out


def test_run_raw_program_and_percpu_dump(bpfkit, capsys, tmp_path):
    # raw bytes in; a per-CPU map dumps "value" as a list (one CPU simulated)
    prog = Program.from_asm("*(u32 *)(r10 - 4) = 0\nr1 = c ll\nr2 = r10\nr2 += -4\ncall 1\n"
                            "if r0 == 0 goto +2\nr1 = 1\nlock *(u64 *)(r0 + 0) += r1\n"
                            "r0 = 2\nexit\n", maps=[parse_map_spec("c:percpu_array:4:8:1")])
    raw = tmp_path / "p.bin"
    raw.write_bytes(prog.to_bytes())
    assert bpfkit("run", "--ebpf", "--type", "xdp", raw, "--map", "c:percpu_array:4:8:1",
                  "-r", SAMPLE, "-c", 7, "--json", "--dump-maps") == 0
    j = json.loads(capsys.readouterr().out)
    assert j["maps"] == {"c": [{"key": "00000000", "value": ["0700000000000000"]}]}
    assert j["verdict"] == ["PASS"] * 7


def test_run_trace_and_seed(bpfkit, capsys, tmp_path):
    # bpf_trace_printk("%d\\n", skb->len) per packet, r0 = bpf_get_prandom_u32(): the
    # lines carry their packet; the values are prandom.draw(seed, packet, 0)
    from bpfkit.ebpf.prandom import draw
    src = tmp_path / "t.s"
    src.write_text("r6 = r1\nr1 = 0x000000000a6425 ll\n*(u64 *)(r10 - 8) = r1\n"
                   "r3 = *(u32 *)(r6 + 0)\nr1 = r10\nr1 += -8\nr2 = 8\ncall 6\n"
                   "call 7\nexit\n")
    argv = ["run", "--ebpf", "--type", "socket", src, "-r", SAMPLE, "-c", 3, "--seed", 42]
    assert bpfkit(*argv, "--trace") == 0
    out = capsys.readouterr().out.splitlines()
    lens = [int(n) - 14 for n in read_capture(SAMPLE).caplen[:3]]
    assert [x for x in out if x.startswith("trace:")] == \
        [f"trace: packet {i}: {n}" for i, n in enumerate(lens)]
    assert bpfkit(*argv, "--json") == 0
    j = json.loads(capsys.readouterr().out)
    assert j["retval"] == [draw(42, i, 0) for i in range(3)]
    assert j["trace"] == [{"packet": i, "text": f"{n}\n"} for i, n in enumerate(lens)]


@pytest.mark.parametrize("argv,stdin,msg", [
    (["asm", "--ebpf", "-"], b"r1 = m ll\nexit\n", "<stdin>: 1:6: unknown map 'm'"),
    (["asm", "--ebpf", "-"], b"r0 = \nexit\n", "<stdin>: 1:1:"),
    (["asm", "--ebpf", "-", "-dd"], b"exit\n", "-dd is a classic BPF output"),
    (["asm", "--ebpf", "--syntax", "bpf_asm", "-"], b"exit\n", "is classic BPF"),
    (["asm", "--syntax", "llvm", "-"], b"exit\n", "add --ebpf"),
    (["asm", "--hex", "-"], b"ret #0\n", "--hex is an eBPF output"),
    (["disasm", "--ebpf", "-"], b"\x95\x00\x00\x00", "not a multiple of 8"),
    (["disasm", "--ebpf", "-"], b"b7 0\n", "hex byte pairs"),
    (["disasm", "--ebpf", "--format", "ddd", "-"], b"1\n6 0 0 0\n", "is classic BPF"),
    (["disasm", "--format", "hex", "-"], b"95 00", "add --ebpf"),
    (["disasm", "--syntax", "kernel", "-"], b"ret #0\n", "add --ebpf"),
    (["run", "--ebpf", "-", "-r", SAMPLE], b"r0 = 2\nexit\n", "needs --type"),
    (["run", "--type", "xdp", "-", "-r", SAMPLE], b"ret #0\n", "--type is for eBPF"),
    (["run", "--ebpf", "--type", "xdp", "-", "-r", RAW], b"r0 = 2\nexit\n",
     "link type is RAW (101)"),
    (["run", "--ebpf", "--type", "socket", "-", "-r", RAW], b"r0 = 2\nexit\n",
     "socket_filter programs run on Ethernet frames"),
    (["run", "--ebpf", "--type", "xdp", "--map", "m:array:8:8:1", "-", "-r", SAMPLE],
     b"r1 = m ll\nr0 = 2\nexit\n", "EINVAL"),
    (["run", "--ebpf", "--type", "xdp", "--map", "m", "-", "-r", SAMPLE],
     b"r0 = 2\nexit\n", "expected NAME:TYPE"),
    (["run", "--ebpf", "--type", "xdp", "-", "-r", SAMPLE], b"call 9\nexit\n",
     "cannot use helper"),
    (["run", "--ebpf", "--type", "xdp", "-", "-r", SAMPLE], b"r0 = 2\n",
     "last instruction is not an exit"),
    (["run", "--ebpf", "--type", "xdp", "-", "-r", "/nonexistent.pcap"], b"r0 = 2\nexit\n",
     "/nonexistent.pcap"),
])
def test_errors_are_one_line_exit_2(bpfkit, capsys, argv, stdin, msg):
    assert bpfkit(*argv, stdin=stdin) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert msg in err[0], err[0]


@pytest.mark.parametrize("cmd", ["asm", "disasm", "run"])
def test_help_teaches_ebpf(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main.main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--ebpf" in out and f"bpfkit {cmd} --ebpf" in out.replace("  ", " ")


# --- the kernel differential -------------------------------------------------------------------

def _kernel_run(src, specs, prog_type, packets):
    """Load `src` in the kernel with fresh maps, BPF_PROG_TEST_RUN every packet in
    order; returns ([(retval, data_out)], {map name: {key hex: value hex}})."""
    prog = _program(src, specs, "xdp" if prog_type == oracles.BPF_PROG_TYPE_XDP else "socket")
    kmaps = [oracles.KernelMap.create(int(m.type), m.key_size, m.value_size, m.max_entries,
                                      m.flags) for m in prog.maps]
    try:
        insns = [isa.lddw(i.dst, kmaps[i.imm].fd, src=isa.BPF_PSEUDO_MAP_FD)
                 if i.opcode == isa.LDDW and i.src == isa.BPF_PSEUDO_MAP_IDX else i
                 for i in prog.insns]
        fd = oracles.bpf_prog_load(isa.encode(insns), prog_type)
        try:
            runs = [oracles.bpf_prog_test_run(fd, p) for p in packets]
        finally:
            os.close(fd)
        maps = {m.name: {k.hex(): km.lookup(k)[1].hex() for k in km.keys()}
                for m, km in zip(prog.maps, kmaps)}
    finally:
        for km in kmaps:
            km.close()
    return runs, maps


@pytest.mark.kernel
def test_run_xdp_matches_kernel_test_run(bpfkit, capsys, xdp_file, tmp_path):
    out_pcap = tmp_path / "out.pcap"
    assert bpfkit("run", "--ebpf", "--type", "xdp", xdp_file, *_map_args(XDP_MAPS), "-r", SAMPLE,
                  "--json", "--dump-maps", "-w", out_pcap) == 0
    j = json.loads(capsys.readouterr().out)
    packets = read_capture(SAMPLE).packets()
    runs, kmaps = _kernel_run(XDP_SRC, XDP_MAPS, oracles.BPF_PROG_TYPE_XDP, packets)
    assert j["packets"] == len(packets) == 1527
    assert j["retval"] == [r for r, _ in runs]
    assert j["verdict"] == [XDP_NAMES[r] for r, _ in runs]
    ours = read_capture(out_pcap).packets()
    diffs = [i for i, (o, (_, k)) in enumerate(zip(ours, runs)) if o != k]
    assert not diffs, diffs[:10]
    # the program really rewrote bytes and used every verdict it has
    assert sum(o != p for o, p in zip(ours, packets)) > 100
    assert {"DROP", "PASS", "TX"} <= set(j["verdict"])
    assert {n: {d["key"]: d["value"] for d in v} for n, v in j["maps"].items()} == kmaps
    assert j["faults"] == [] and j["skipped"] == []


@pytest.mark.kernel
def test_run_socket_filter_matches_kernel_test_run(bpfkit, capsys, tmp_path):
    src = tmp_path / "sock.s"
    src.write_text(SOCKET_SRC)
    assert bpfkit("run", "--ebpf", "--type", "socket", src, *_map_args(SOCKET_MAPS),
                  "-r", SAMPLE, "--json", "--dump-maps") == 0
    j = json.loads(capsys.readouterr().out)
    packets = read_capture(SAMPLE).packets()
    runs, kmaps = _kernel_run(SOCKET_SRC, SOCKET_MAPS, oracles.BPF_PROG_TYPE_SOCKET_FILTER,
                              packets)
    assert j["retval"] == [r for r, _ in runs]
    assert 0 < j["counts"]["accepted"] < 1527
    assert {n: {d["key"]: d["value"] for d in v} for n, v in j["maps"].items()} == kmaps
