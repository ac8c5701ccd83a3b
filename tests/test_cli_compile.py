"""`bpfkit compile` and `bpfkit filter EXPR` against tcpdump (the compiler's own corpus
tests are in test_compiler_*.py; these check the command-line plumbing end to end)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import oracles
from bpfkit.cli.main import main
from bpfkit.pcap import read_capture

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "bpfkit.cli", *args], capture_output=True,
                          text=True, input=stdin)


# --- compile prints what tcpdump -d / -dd / -ddd / -O prints ------------------------------

LISTINGS = [
    ("EN10MB", "tcp port 80"), ("EN10MB", "vlan and host 10.0.0.1"),
    ("EN10MB", "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0"), ("EN10MB", ""),
    ("RAW", "ip6 and udp portrange 1000-2000"), ("LINUX_SLL", "arp or icmp"),
    ("LINUX_SLL2", "ip and len > 100"), ("NULL", "ip6"), ("LOOP", "ip6"),
    ("IPV4", "src net 10.0.0.0/8"), ("IPV6", "icmp6"),
]


@pytest.mark.tcpdump
@pytest.mark.parametrize("flag", ["-d", "-dd", "-ddd"])
@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("dlt,expr", LISTINGS)
def test_compile_prints_what_tcpdump_prints(dlt, expr, flag, optimize, capsys):
    rc, out, err = oracles.tcpdump_compile(expr, dlt, flag, optimize)
    assert rc == 0, err
    argv = ["compile", flag, "-y", dlt] + ([] if optimize else ["-O"]) + expr.split()
    assert main(argv) == 0
    assert capsys.readouterr().out == out


@pytest.mark.tcpdump
def test_compile_snaplen_with_default_format(capsys):
    r = subprocess.run(["tcpdump", "-y", "LINUX_SLL2", "-s", "128", "-d", "udp"],
                       capture_output=True, text=True)
    assert main(["compile", "-y", "LINUX_SLL2", "-s", "128", "udp"]) == 0
    assert capsys.readouterr().out == r.stdout


@pytest.mark.tcpdump
@pytest.mark.parametrize("capture,expr", [("null.pcap", "ip6"), ("linux_sll2.pcap", "tcp"),
                                          ("sample.pcap", "udp port 53")])
def test_compile_r_uses_the_captures_savefile_code(capture, expr, capsys):
    r = subprocess.run(["tcpdump", "-r", str(PCAPS / capture), "-d", expr],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert main(["compile", "-r", str(PCAPS / capture), expr]) == 0
    assert capsys.readouterr().out == r.stdout


def test_compile_expression_file_strips_comments(tmp_path, capsys):
    f = tmp_path / "expr.txt"
    f.write_text("# web traffic\ntcp port 80   # plain http\nor tcp port 443\n")
    assert main(["compile", "-ddd", "-F", str(f)]) == 0
    from_file = capsys.readouterr().out
    assert main(["compile", "-ddd", "tcp port 80 or tcp port 443"]) == 0
    assert from_file == capsys.readouterr().out


# --- filter EXPR keeps what tcpdump -r IN -w OUT EXPR keeps -------------------------------

FILTERS = {
    "sample.pcap": ["tcp port 80 and not host 10.0.0.1", "udp port 53", "vlan and tcp",
                    "ip[6:2] & 0x1fff != 0", "icmp or icmp6", "greater 1000", "arp",
                    "tcp[tcpflags] & tcp-syn != 0"],
    "en10mb.pcap": ["ip6", "vlan 10 or vlan 20", "net 192.168.0.0/16", "less 100"],
    "raw.pcap": ["ip6 and tcp", "udp", "src host 10.0.0.1"],
    "linux_sll.pcap": ["tcp port 443", "arp", "ip6"],
    "linux_sll2.pcap": ["tcp", "udp port 53", "icmp6"],
    "null.pcap": ["ip6", "ip", "tcp port 80"],
    "sample.pcapng": ["tcp", "udp port 53 or icmp"],
}


def _tcpdump_keep(src: Path, dst: Path, expr: str, nano: bool):
    args = ["tcpdump", "-r", str(src), "-w", str(dst), expr]
    if nano:
        args.insert(1, "--time-stamp-precision=nano")
    return subprocess.run(args, capture_output=True, text=True)


@pytest.mark.tcpdump
@pytest.mark.parametrize("capture,expr", [(c, e) for c, es in FILTERS.items() for e in es])
def test_filter_expression_keeps_what_tcpdump_keeps(capture, expr, tmp_path):
    src = PCAPS / capture
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "theirs.pcap"
    assert main(["filter", "-r", str(src), "-w", str(ours), expr]) == 0
    original = read_capture(str(src))
    r = _tcpdump_keep(src, theirs, expr, nano=original.ts_nanos)
    assert r.returncode == 0, r.stderr
    a, b = read_capture(str(ours)), read_capture(str(theirs))
    assert len(a) == len(b)
    assert np.array_equal(a.ts_ns, b.ts_ns) and np.array_equal(a.wirelen, b.wirelen)
    assert a.packets() == b.packets()
    assert (a.linktype, a.snaplen) == (b.linktype, b.snaplen)


@pytest.mark.tcpdump
def test_filter_without_w_prints_the_count():
    expr = "tcp port 80"
    r = _cli("filter", "-r", str(PCAPS / "sample.pcap"), expr)
    t = subprocess.run(["tcpdump", "-r", str(PCAPS / "sample.pcap"), expr],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{len(t.stdout.splitlines())} packets match (of 1527)")


@pytest.mark.tcpdump
def test_filter_O_keeps_what_tcpdump_O_keeps(tmp_path):
    # the unoptimized code can differ from the optimized one on truncated packets
    src, ours, theirs = PCAPS / "sample.pcap", tmp_path / "o.pcap", tmp_path / "t.pcap"
    expr = "tcp port 80 and tcp[tcpflags] & tcp-fin != 0"
    assert main(["filter", "-O", "-r", str(src), "-w", str(ours), expr]) == 0
    r = subprocess.run(["tcpdump", "-O", "-r", str(src), "-w", str(theirs), expr],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert read_capture(str(ours)).packets() == read_capture(str(theirs)).packets()


def test_filter_without_expression_keeps_everything(tmp_path):
    out = tmp_path / "all.pcap"
    assert main(["filter", "-r", str(PCAPS / "raw.pcap"), "-w", str(out)]) == 0
    assert read_capture(str(out)).packets() == read_capture(str(PCAPS / "raw.pcap")).packets()


# --- bad input: one line with the position marked, exit 2 ---------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["compile", "tcp port 80 and ("], "syntax error (at column 18): tcp port 80 and (>>>"),
    (["compile", "tcp", "port", "99999999999"], "overflows 32 bits (at column 10)"),
    (["compile", "net 10.0.0.1/8"], 'non-network bits set in "10.0.0.1/8"'),
    (["compile", "-y", "LINUX_SLL", "vlan"], "no VLAN support for Linux cooked v1"),
    (["compile", "-y", "FDDI", "ip"], "link type 'FDDI' is not supported"),
    (["filter", "-r", str(PCAPS / "linux_sll.pcap"), "vlan"], "no VLAN support"),
    (["filter", "-r", str(PCAPS / "sample.pcap"), "--prog", "x.bpf", "tcp"], "give one"),
    (["filter", "-r", str(PCAPS / "sample.pcap"), "-F", "/nonexistent", "tcp"], "give one"),
    (["filter", "-r", str(PCAPS / "sample.pcap"), "-F", "/nonexistent"], "cannot read"),
])
def test_bad_input_is_one_line_exit_2(argv, needle):
    r = _cli(*argv)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.mark.tcpdump
def test_error_messages_are_libpcaps():
    for expr in ["tcp port 80 and (", "net 10.0.0.1/8", "ip proto nosuchproto"]:
        t = subprocess.run(["tcpdump", "-y", "EN10MB", "-d", expr], capture_output=True,
                           text=True)
        assert t.returncode != 0
        libpcap_msg = t.stderr.strip().splitlines()[-1].removeprefix("tcpdump: ")
        r = _cli("compile", expr)
        assert r.returncode == 2 and libpcap_msg in r.stderr, (libpcap_msg, r.stderr)
