#!/usr/bin/env python3
"""Filter benchmark: bpfkit against tcpdump, dpkt and scapy on one capture, in one run.

    python3 bench/gen_capture.py /tmp/big.pcap --packets 1000000 --bytes-target 500M
    python3 bench/bench_filter.py /tmp/big.pcap [--runs 5] [--expr EXPR ...]
    python3 bench/bench_filter.py /tmp/big.pcap --rss /tmp/2g.pcap    # + peak memory

For each expression (by default the five of issue 7):
  * bpfkit   `bpfkit filter -r X -w Y EXPR` (with --prog: `bpfkit filter --prog PROG -r X
             -w Y`, PROG = `tcpdump -r X -ddd EXPR`, i.e. without bpfkit's compiler), the
             code of the checkout this script is in (its root goes first on PYTHONPATH);
  * tcpdump  `tcpdump -r X -w Y EXPR`;
  * dpkt     a Python loop: dpkt.pcap.Reader, dpkt.ethernet.Ethernet, a hand-written
             predicate that follows libpcap's generated code, dpkt.pcap.Writer (which
             writes wirelen = caplen: its output differs on truncated records);
  * scapy    the same with scapy's PcapReader / Ether / PcapWriter.
The time of each is the median of --runs runs (tools interleaved within a run); "CPU s" is
the median user + system time of the command and the processes it waited for.  bpfkit and
tcpdump are timed as whole commands (process start included; bpfkit run as the console
script beside this Python, with bytecode caching on); the Python loops in-process from
opening the input to closing the output.  dpkt and scapy run on the first
--dpkt-subset / --scapy-subset packets (cut with `tcpdump -c`) and their time is scaled by
packets/subset; the table says so.  Kept packets are counted with `tcpdump --count` on each
output; bpfkit and tcpdump must keep the same number (a loud MISMATCH line otherwise), and
their output records (everything after the 24-byte file header) are compared byte for byte.
The Python loops' counts are compared with tcpdump's on the same (subset) file.
The load average (/proc/loadavg, 1 minute) is printed before and after each expression:
the machine may be shared, and the ratios are only as good as the load was steady.
Before each timed command the script calls sync(2) (untimed; --no-sync: not): without it,
each run pays for writing back the output of the runs before it.

--rss FILE: run bpfkit and tcpdump once more each on FILE (e.g. a 2 GB capture) with the
first expression and report peak memory: the largest peak RSS of any one process
(getrusage RUSAGE_CHILDREN ru_maxrss: bpfkit filter may run a worker process per CPU) and
the peak of the sum over the process tree (sampled from /proc every 10 ms).
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


def raw_host_and_net(host, net, bits):
    """`host H and net N/bits` on raw Ethernet bytes (IPv4 and ARP/RARP, as libpcap)."""
    import socket
    h = socket.inet_aton(host)
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    n = int.from_bytes(socket.inet_aton(net), "big") & mask

    def pred(buf):
        et = buf[12:14]
        if et == b"\x08\x00":
            a, b = buf[26:30], buf[30:34]
        elif et in (b"\x08\x06", b"\x80\x35"):
            a, b = buf[28:32], buf[38:42]
        else:
            return False
        if len(a) < 4 or len(b) < 4 or (a != h and b != h):
            return False
        return (int.from_bytes(a, "big") & mask) == n or (int.from_bytes(b, "big") & mask) == n
    return pred


def raw_vlan_tcp(buf):
    """`vlan and tcp` on raw Ethernet bytes: an 802.1Q/802.1ad/9100 tag, then IPv4 protocol 6,
    or IPv6 next header 6 (or a fragment header followed by 6), as libpcap 1.10 tests it."""
    if buf[12:14] not in (b"\x81\x00", b"\x88\xa8", b"\x91\x00") or len(buf) < 18:
        return False
    et = buf[16:18]
    if et == b"\x08\x00":
        return len(buf) > 27 and buf[27] == 6
    if et == b"\x86\xdd" and len(buf) > 24:
        if buf[24] == 6:
            return True
        return buf[24] == 44 and len(buf) > 58 and buf[58] == 6
    return False


def scapy_raw(pred):
    return lambda p: pred(bytes(p))


def default_cases() -> list[Case]:
    """The five expressions of issue 7."""
    hosts = " or ".join(f"host {h}" for h in HOSTS50)
    hn = raw_host_and_net("198.18.0.1", "192.168.0.0", 16)
    return [
        Case("tcp port 80", "tcp port 80", dpkt_tcp_port(80), scapy_tcp_port(80)),
        Case("host 198.18.0.1 and net 192.168.0.0/16",
             "host 198.18.0.1 and net 192.168.0.0/16", hn, scapy_raw(hn)),
        Case("vlan and tcp", "vlan and tcp", raw_vlan_tcp, scapy_raw(raw_vlan_tcp)),
        Case("tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & tcp-syn != 0", dpkt_tcp_syn(),
             scapy_tcp_syn()),
        Case("50 x `host` (or)", hosts, dpkt_hosts(HOSTS50), scapy_hosts(HOSTS50)),
    ]


# --- the runners -------------------------------------------------------------------

SYNC = True
CPU: list[float] = []      # run_cmd appends the CPU seconds of each command it ran


def run_cmd(argv, env=None) -> float:
    if SYNC:
        # the previous runs' output is written back to disk before this one starts (not
        # timed): otherwise every run pays for the write-back of the ones before it, the
        # more so after an expression that keeps 200 MB a run
        os.sync()
    import resource
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the command and every process it waited for (its workers)
    CPU.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
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


ROOT = Path(__file__).resolve().parent.parent


def bpfkit_env(workers: Optional[int] = None, root: Path = ROOT) -> dict:
    """This checkout's bpfkit (or `root`'s) first on the path (so a worktree benchmarks
    its own code, whichever checkout is pip-installed), bytecode caching on (as for an
    installed package) whatever this shell says; BPFKIT_WORKERS when `workers` is given."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in
                                                        env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if workers is not None:
        env["BPFKIT_WORKERS"] = str(workers)
    return env


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def _tree_rss(pid: int) -> int:
    """Sum of VmRSS (kB) of pid and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return total


def peak_rss(argv, env=None) -> tuple[float, int, int]:
    """Run argv; (seconds, largest peak RSS of one process in kB, peak of the sampled
    process-tree RSS sum in kB)."""
    import threading
    # a fresh Python runs argv and reports its RUSAGE_CHILDREN ru_maxrss: the largest
    # peak RSS of any process of the run (this process's own figure is a running maximum
    # over every child it ever had)
    wrap = [sys.executable, "-c",
            "import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "sys.stderr.write('\\nMAXRSS %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(r.returncode)"]
    t = time.perf_counter()
    proc = subprocess.Popen(wrap + list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.01)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    dt = time.perf_counter() - t
    done.set()
    th.join()
    text = err.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} exit {proc.returncode}: {text.strip()[-200:]}")
    one = max((int(line.split()[1]) for line in text.splitlines() if line.startswith("MAXRSS ")),
              default=-1)
    return dt, one, peak[0]


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
    ap.add_argument("--prog", action="store_true",
                    help="bpfkit runs tcpdump's compiled program (--prog PROG) instead of "
                         "compiling the expression itself")
    ap.add_argument("--workers", type=int, default=None,
                    help="BPFKIT_WORKERS for bpfkit (default: bpfkit's own choice)")
    ap.add_argument("--base", type=Path, default=None, metavar="DIR",
                    help="also time the bpfkit of another source tree (e.g. `git archive "
                         "main | tar -x -C DIR`), as the tool 'base', interleaved with the "
                         "others")
    ap.add_argument("--rss", type=Path, default=None, metavar="FILE",
                    help="also report the peak memory of bpfkit and tcpdump on FILE "
                         "(first expression)")
    ap.add_argument("--no-sync", action="store_true",
                    help="do not sync(2) before each timed command (see run_cmd)")
    args = ap.parse_args(argv)
    global SYNC
    SYNC = not args.no_sync
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.base is not None and "base" not in tools:
        tools.insert(tools.index("bpfkit") + 1 if "bpfkit" in tools else 0, "base")
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
    env = bpfkit_env(args.workers)
    print(f"\nbpfkit: `{' '.join(bpfkit_cmd())}` with PYTHONPATH={env['PYTHONPATH']}"
          + (f", BPFKIT_WORKERS={args.workers}" if args.workers else "")
          + ("; runs tcpdump's program (--prog)" if args.prog else
             "; compiles the expression itself"))
    base_env = bpfkit_env(args.workers, args.base.resolve()) if args.base else None
    if base_env:
        print(f"\nbase: the same with PYTHONPATH={base_env['PYTHONPATH']}")
    if "bpfkit" in tools:
        try:
            start = [run_cmd(bpfkit_cmd() + ["filter", "--help"], env=env)
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
    loads: dict[str, tuple[str, str]] = {}
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
        cpus: dict[str, list[float]] = {t: [] for t in tools}
        kept: dict[str, int] = {}
        errors: dict[str, str] = {}
        outs = {t: work / f"out{ci}_{t}.pcap" for t in tools}
        load0 = loadavg()
        for _ in range(args.runs):
            for tool in tools:
                if tool in errors:
                    continue
                out = outs[tool]
                try:
                    if tool == "tcpdump":
                        times[tool].append(run_cmd(["tcpdump", "-r", str(src), "-w", str(out),
                                                    case.expr]))
                        cpus[tool].append(CPU[-1])
                    elif tool in ("bpfkit", "base"):
                        what = ["--prog", str(prog)] if args.prog else ["--", case.expr]
                        times[tool].append(run_cmd(bpfkit_cmd() + ["filter", "-r", str(src),
                                                                   "-w", str(out)] + what,
                                                   env=env if tool == "bpfkit" else base_env))
                        cpus[tool].append(CPU[-1])
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
        loads[case.label] = (load0, loadavg())
        for tool in ("tcpdump", "bpfkit", "base"):
            if tool in tools and tool not in errors:
                kept[tool] = tcpdump_count(outs[tool])
        base = statistics.median(times["tcpdump"]) if times.get("tcpdump") else None
        same_records = {}
        for tool in ("bpfkit", "base"):
            if tool in kept and "tcpdump" in kept:
                if kept[tool] != kept["tcpdump"]:
                    mismatches.append(f"!!! MISMATCH on {case.label!r}: {tool} kept "
                                      f"{kept[tool]:,}, tcpdump kept {kept['tcpdump']:,} !!!")
                same_records[tool] = records_digest(outs[tool]) == records_digest(outs["tcpdump"])
        for tool in tools:
            note = ""
            if tool in errors:
                rows.append((case.label, ninsn, tool, "—", "—", "—", "—", errors[tool]))
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
            if tool in same_records:
                note = (note + "; " if note else "") + \
                    ("records identical to tcpdump's" if same_records[tool]
                     else "RECORDS DIFFER from tcpdump's")
                if not same_records[tool]:
                    mismatches.append(f"!!! {tool}'s records differ from tcpdump's on "
                                      f"{case.label!r} !!!")
            ratio = f"{med / base:.2f}" if base else "—"
            cpu = f"{statistics.median(cpus[tool]):.3f}" if cpus.get(tool) else "—"
            rows.append((case.label, ninsn, tool, f"{med:.3f}", ratio, cpu, kshow, note))

    print("| expression | insns | tool | seconds | × tcpdump | CPU s | kept | note |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print()
    print("load average (1 min) before -> after each expression: " +
          "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in loads.items()))
    print()
    if args.rss is not None and cases:
        rss_report(args.rss.resolve(), cases[0], tools, env, work)
    for m in mismatches:
        print(m)
    ran = all(r[3] != "—" for r in rows if r[2] in ("bpfkit", "tcpdump"))
    if not mismatches and ran and "bpfkit" in tools and "tcpdump" in tools:
        print("bpfkit and tcpdump kept the same number of packets for every expression.")
    return 1 if mismatches else 0


def rss_report(path: Path, case: Case, tools, env, work: Path) -> None:
    total = tcpdump_count(path)
    print(f"peak memory on `{path}` ({total:,} packets, {path.stat().st_size / 1e9:.2f} GB), "
          f"`{case.expr}`, load {loadavg()}:\n")
    print("| tool | seconds | largest process peak RSS (MiB) | process tree peak RSS, sampled (MiB) |")
    print("|---|---:|---:|---:|")
    for tool in ("bpfkit", "tcpdump"):
        if tool not in tools:
            continue
        out = work / f"rss_{tool}.pcap"
        argv = (bpfkit_cmd() + ["filter", "-r", str(path), "-w", str(out), "--", case.expr]
                if tool == "bpfkit" else ["tcpdump", "-r", str(path), "-w", str(out), case.expr])
        try:
            dt, one, tree = peak_rss(argv, env=env if tool == "bpfkit" else None)
        except (RuntimeError, OSError) as e:
            print(f"| {tool} | — | — | {e} |")
            continue
        one_s = f"{one / 1024:.0f}" if one >= 0 else "?"
        print(f"| {tool} | {dt:.2f} | {one_s} | {tree / 1024:.0f} |")
        out.unlink(missing_ok=True)
    print(f"\nload after: {loadavg()}")


if __name__ == "__main__":
    sys.exit(main())
