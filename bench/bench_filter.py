#!/usr/bin/env python3
"""Filter benchmark: bpfkit against tcpdump, dpkt and scapy on one capture, in one run.

    python3 bench/gen_capture.py /tmp/big.pcap --packets 1000000 --bytes-target 500M
    python3 bench/bench_filter.py /tmp/big.pcap [--runs 5] [--expr EXPR ...]

For each expression:
  * bpfkit   `bpfkit filter --prog PROG -r X -w Y`, PROG = `tcpdump -r X -ddd EXPR` (compiled
             against the file, so `ret` carries the file's snaplen, as tcpdump's own filter);
  * tcpdump  `tcpdump -r X -w Y EXPR`;
  * dpkt     a Python loop: dpkt.pcap.Reader, dpkt.ethernet.Ethernet, a hand-written
             predicate that follows libpcap's generated code, dpkt.pcap.Writer (which
             writes wirelen = caplen: its output differs on truncated records);
  * scapy    the same with scapy's PcapReader / Ether / PcapWriter.
The time of each is the median of --runs runs (tools interleaved within a run).  bpfkit and
tcpdump are timed as whole commands (process start included; bpfkit run as the console
script beside this Python, with bytecode caching on); the Python loops in-process from
opening the input to closing the output.  dpkt and scapy run on the first
--dpkt-subset / --scapy-subset packets (cut with `tcpdump -c`) and their time is scaled by
packets/subset; the table says so.  Kept packets are counted with `tcpdump --count` on each
output; bpfkit and tcpdump must keep the same number (a loud MISMATCH line otherwise), and
their output records (everything after the 24-byte file header) are compared byte for byte.
The Python loops' counts are compared with tcpdump's on the same (subset) file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

HOSTS50 = [f"198.18.0.{i}" for i in range(1, 41)] + [f"192.168.1.{i}" for i in range(10, 20)]


@dataclass(frozen=True)
class Case:
    label: str
    expr: str
    dpkt_pred: Optional[Callable] = None     # (buf: bytes) -> bool, None: no Python loop
    scapy_pred: Optional[Callable] = None


# --- Python predicates: each mirrors the code libpcap 1.10 generates (tcpdump -d) ----
# Outer link type only (offset 12): without a `vlan` keyword libpcap does not look inside
# 802.1Q tags, while dpkt and scapy decode them, so we read the type bytes ourselves.
# IPv4 non-first fragments never match a port or tcp[] test (gen_port/gen_load: jset 0x1fff).
# A packet the library cannot parse (e.g. truncated) counts as not matched: libpcap rejects a
# filter whose loads pass the captured length, which is close but not always the same.

def _dpkt():
    import dpkt
    return dpkt


def dpkt_tcp_port(port):
    dpkt = _dpkt()

    def pred(buf):
        et = buf[12:14]
        if et == b"\x08\x00":
            ip = dpkt.ethernet.Ethernet(buf).data
            if ip.p != 6 or ip.offset:
                return False
            t = ip.data
        elif et == b"\x86\xdd":
            ip = dpkt.ethernet.Ethernet(buf).data
            if ip.nxt != 6:
                return False
            t = ip.data
        else:
            return False
        return isinstance(t, dpkt.tcp.TCP) and (t.sport == port or t.dport == port)
    return pred


def dpkt_ip_udp_port(port):
    dpkt = _dpkt()

    def pred(buf):
        if buf[12:14] != b"\x08\x00":
            return False
        ip = dpkt.ethernet.Ethernet(buf).data
        if ip.p != 17 or ip.offset:
            return False
        u = ip.data
        return isinstance(u, dpkt.udp.UDP) and (u.sport == port or u.dport == port)
    return pred


def dpkt_tcp_syn():
    dpkt = _dpkt()

    def pred(buf):
        if buf[12:14] != b"\x08\x00":
            return False
        ip = dpkt.ethernet.Ethernet(buf).data
        if ip.p != 6 or ip.offset:
            return False
        t = ip.data
        return isinstance(t, dpkt.tcp.TCP) and bool(t.flags & dpkt.tcp.TH_SYN)
    return pred


def dpkt_hosts(hosts):
    """`host A or host B ...`: IPv4 src/dst, ARP and RARP sender/target protocol address
    (gen_host for Q_DEFAULT on an IPv4 address checks ip, arp and rarp)."""
    import socket
    dpkt = _dpkt()
    want = {socket.inet_aton(h) for h in hosts}

    def pred(buf):
        et = buf[12:14]
        if et == b"\x08\x00":
            ip = dpkt.ethernet.Ethernet(buf).data
            return ip.src in want or ip.dst in want
        if et in (b"\x08\x06", b"\x80\x35"):
            a = dpkt.ethernet.Ethernet(buf).data
            return a.spa in want or a.tpa in want
        return False
    return pred


def scapy_tcp_port(port):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    def pred(p):
        if p.type == 0x0800:
            ip = p.payload
            if not isinstance(ip, IP) or ip.proto != 6 or ip.frag:
                return False
        elif p.type == 0x86DD:
            ip = p.payload
            if not isinstance(ip, IPv6) or ip.nh != 6:
                return False
        else:
            return False
        t = ip.payload
        return isinstance(t, TCP) and (t.sport == port or t.dport == port)
    return pred


def scapy_ip_udp_port(port):
    from scapy.layers.inet import IP, UDP

    def pred(p):
        if p.type != 0x0800:
            return False
        ip = p.payload
        if not isinstance(ip, IP) or ip.proto != 17 or ip.frag:
            return False
        u = ip.payload
        return isinstance(u, UDP) and (u.sport == port or u.dport == port)
    return pred


def scapy_tcp_syn():
    from scapy.layers.inet import IP, TCP

    def pred(p):
        if p.type != 0x0800:
            return False
        ip = p.payload
        if not isinstance(ip, IP) or ip.proto != 6 or ip.frag:
            return False
        t = ip.payload
        return isinstance(t, TCP) and bool(int(t.flags) & 0x02)
    return pred


def scapy_hosts(hosts):
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP
    want = set(hosts)

    def pred(p):
        if p.type == 0x0800:
            ip = p.payload
            return isinstance(ip, IP) and (ip.src in want or ip.dst in want)
        if p.type in (0x0806, 0x8035):
            a = p.payload
            return isinstance(a, ARP) and (a.psrc in want or a.pdst in want)
        return False
    return pred


def default_cases() -> list[Case]:
    hosts = " or ".join(f"host {h}" for h in HOSTS50)
    return [
        Case("tcp port 80", "tcp port 80", dpkt_tcp_port(80), scapy_tcp_port(80)),
        Case("ip and udp port 53", "ip and udp port 53", dpkt_ip_udp_port(53),
             scapy_ip_udp_port(53)),
        Case("tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & tcp-syn != 0", dpkt_tcp_syn(),
             scapy_tcp_syn()),
        Case("50 x `host` (or)", hosts, dpkt_hosts(HOSTS50), scapy_hosts(HOSTS50)),
    ]


# --- the runners -------------------------------------------------------------------

def run_cmd(argv, env=None) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        lines = r.stderr.decode(errors="replace").strip().splitlines() or ["(no message)"]
        raise RuntimeError(f"{Path(argv[0]).name} exit {r.returncode}: {lines[-1][:200]}")
    return dt


def dpkt_loop(pred, src: Path, dst: Path) -> tuple[float, int]:
    dpkt = _dpkt()
    t = time.perf_counter()
    kept = 0
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        rd = dpkt.pcap.Reader(fi)
        wr = dpkt.pcap.Writer(fo, snaplen=rd.snaplen, linktype=rd.datalink())
        for ts, buf in rd:
            try:
                ok = pred(buf)
            except (dpkt.UnpackError, AttributeError, IndexError, ValueError):
                ok = False
            if ok:
                wr.writepkt(buf, ts)
                kept += 1
    return time.perf_counter() - t, kept


def scapy_loop(pred, src: Path, dst: Path) -> tuple[float, int]:
    from scapy.utils import PcapReader, PcapWriter
    t = time.perf_counter()
    kept = 0
    with PcapReader(str(src)) as rd, PcapWriter(str(dst), linktype=1, sync=False) as wr:
        for p in rd:
            try:
                ok = pred(p)
            except (AttributeError, IndexError, ValueError, TypeError):
                ok = False
            if ok:
                wr.write(p)
                kept += 1
    return time.perf_counter() - t, kept


def tcpdump_count(path: Path, expr: str = "") -> int:
    args = ["tcpdump", "-r", str(path), "--count"] + ([expr] if expr else [])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tcpdump --count failed: {r.stderr.strip()[-300:]}")
    return int(r.stdout.split()[0])


def records_digest(path: Path) -> str:
    """sha256 of a pcap file past its 24-byte header: the records only."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(24)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bpfkit_cmd() -> list[str]:
    """The console script installed beside this Python (not a version-manager shim such as
    pyenv's, whose bash wrapper adds ~0.5 s per call), else `python -m bpfkit.cli`."""
    exe = Path(sys.executable).parent / "bpfkit"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "bpfkit.cli"]


def bpfkit_env() -> dict:
    """Bytecode caching on (as for an installed package), whatever this shell says."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def versions() -> str:
    def out(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    parts = [out(["tcpdump", "--version"])]
    for mod in ("bpfkit", "numpy", "dpkt", "scapy"):
        try:
            m = __import__(mod)
            parts.append(f"{mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            parts.append(f"{mod} missing")
    parts.append(f"Python {platform.python_version()}")
    parts.append(f"{os.cpu_count()} CPUs, {platform.machine()}")
    return "; ".join(parts)


# --- main ----------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path)
    ap.add_argument("--runs", type=int, default=5, help="runs per tool (median reported)")
    ap.add_argument("--expr", action="append", default=None,
                    help="benchmark this expression instead of the defaults (repeatable; "
                         "no dpkt/scapy loop for these)")
    ap.add_argument("--tools", default="bpfkit,tcpdump,dpkt,scapy")
    ap.add_argument("--dpkt-subset", type=int, default=100_000,
                    help="packets for the dpkt loop, 0 = all (default 100000)")
    ap.add_argument("--scapy-subset", type=int, default=5_000,
                    help="packets for the scapy loop, 0 = all (default 5000)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where programs and outputs go (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    cases = default_cases() if not args.expr else [Case(e, e) for e in args.expr]
    src = args.capture.resolve()
    tmp = tempfile.TemporaryDirectory(prefix="bench_filter_") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        return bench(src, cases, tools, args, work)
    finally:
        if tmp:
            tmp.cleanup()


def bench(src: Path, cases, tools, args, work: Path) -> int:
    total = tcpdump_count(src)   # also brings the file into the page cache
    print(f"# Filter benchmark\n\ncapture: `{src}` — {total:,} packets, "
          f"{src.stat().st_size / 1e6:,.1f} MB\n\n{versions()}\n\nmedian of {args.runs} runs")
    if "bpfkit" in tools:
        try:
            start = [run_cmd(bpfkit_cmd() + ["filter", "--help"], env=bpfkit_env())
                     for _ in range(args.runs)]
            print(f"\nbpfkit start-up (`{' '.join(bpfkit_cmd())} filter --help`): "
                  f"{statistics.median(start):.3f} s, included in its times")
        except (RuntimeError, OSError) as e:
            print(f"\nbpfkit does not start: {e}")
    print()

    subsets = {}
    for tool, n in (("dpkt", args.dpkt_subset), ("scapy", args.scapy_subset)):
        if tool in tools and n and n < total:
            p = work / f"subset_{n}.pcap"
            if not p.exists():
                subprocess.run(["tcpdump", "-r", str(src), "-c", str(n), "-w", str(p)],
                               check=True, capture_output=True)
            subsets[tool] = (p, n)

    rows, mismatches = [], []
    for ci, case in enumerate(cases):
        prog = work / f"prog{ci}.ddd"
        r = subprocess.run(["tcpdump", "-r", str(src), "-ddd", case.expr],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"tcpdump cannot compile {case.expr!r}: {r.stderr.strip()}", file=sys.stderr)
            return 2
        prog.write_text(r.stdout)
        ninsn = int(r.stdout.split()[0])
        times: dict[str, list[float]] = {t: [] for t in tools}
        kept: dict[str, int] = {}
        errors: dict[str, str] = {}
        outs = {t: work / f"out{ci}_{t}.pcap" for t in tools}
        for _ in range(args.runs):
            for tool in tools:
                if tool in errors:
                    continue
                out = outs[tool]
                try:
                    if tool == "tcpdump":
                        times[tool].append(run_cmd(["tcpdump", "-r", str(src), "-w", str(out),
                                                    case.expr]))
                    elif tool == "bpfkit":
                        times[tool].append(run_cmd(bpfkit_cmd() + ["filter", "--prog", str(prog),
                                                                   "-r", str(src), "-w", str(out)],
                                                   env=bpfkit_env()))
                    elif tool in ("dpkt", "scapy"):
                        pred = case.dpkt_pred if tool == "dpkt" else case.scapy_pred
                        if pred is None:
                            errors[tool] = "no Python predicate for a custom expression"
                            continue
                        path, n = subsets.get(tool, (src, total))
                        loop = dpkt_loop if tool == "dpkt" else scapy_loop
                        dt, k = loop(pred, path, out)
                        times[tool].append(dt * total / n)
                        kept[tool] = k
                    else:
                        errors[tool] = "unknown tool"
                except (RuntimeError, OSError) as e:
                    errors[tool] = str(e).splitlines()[0][:200]
        for tool in ("tcpdump", "bpfkit"):
            if tool in tools and tool not in errors:
                kept[tool] = tcpdump_count(outs[tool])
        base = statistics.median(times["tcpdump"]) if times.get("tcpdump") else None
        same_records = None
        if "bpfkit" in kept and "tcpdump" in kept:
            if kept["bpfkit"] != kept["tcpdump"]:
                mismatches.append(f"!!! MISMATCH on {case.label!r}: bpfkit kept {kept['bpfkit']:,}, "
                                  f"tcpdump kept {kept['tcpdump']:,} !!!")
            same_records = records_digest(outs["bpfkit"]) == records_digest(outs["tcpdump"])
        for tool in tools:
            note = ""
            if tool in errors:
                rows.append((case.label, ninsn, tool, "—", "—", "—", errors[tool]))
                continue
            med = statistics.median(times[tool])
            if tool in subsets:
                path, n = subsets[tool]
                ref = tcpdump_count(path, case.expr)
                note = f"scaled from the first {n:,} packets"
                kshow = f"{kept[tool]:,} of {n:,}"
            else:
                ref = kept.get("tcpdump")
                kshow = f"{kept[tool]:,}"
            if tool in ("dpkt", "scapy") and ref is not None and kept[tool] != ref:
                note = (note + "; " if note else "") + f"tcpdump keeps {ref:,} here"
            if tool == "bpfkit" and same_records is not None:
                note = (note + "; " if note else "") + \
                    ("records identical to tcpdump's" if same_records else "RECORDS DIFFER from tcpdump's")
            ratio = f"{med / base:.2f}" if base else "—"
            rows.append((case.label, ninsn, tool, f"{med:.3f}", ratio, kshow, note))

    print("| expression | insns | tool | seconds | × tcpdump | kept | note |")
    print("|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print()
    for m in mismatches:
        print(m)
    ran = all(r[3] != "—" for r in rows if r[2] in ("bpfkit", "tcpdump"))
    if not mismatches and ran and "bpfkit" in tools and "tcpdump" in tools:
        print("bpfkit and tcpdump kept the same number of packets for every expression.")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
