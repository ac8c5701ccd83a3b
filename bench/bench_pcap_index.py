"""Benchmark: index a large classic pcap (bpfkit.pcap.read_capture) next to
`tcpdump -r FILE -w /dev/null` on the same file in the same run, and the peak RSS of
streaming a larger file with open_capture().

    python3 bench/bench_pcap_index.py [--file BIG.pcap] [--packets 1000000]
        [--stream-gb 2] [--repeat 5] [--workdir /tmp/bpfkit-bench]

Without --file it writes a synthetic capture (Ethernet/IPv4 headers, random payloads, a mix of
60..1514-byte frames, ~565 bytes on average) and a ~2 GB one for the RSS run; the
pcapng rows use the same packets written by bpfkit as pcapng.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bpfkit.pcap import read_capture, write_capture  # noqa: E402


def make_pcap(path: str, packets: int, seed: int = 1) -> None:
    """A synthetic capture: frame sizes 60..1514 (~500 bytes mean), random payloads
    behind plausible Ethernet/IPv4 headers, monotonic microsecond timestamps."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(np.array([0xA1B2C3D4, 0x00040002, 0, 0, 262144, 1], "<u4").tobytes())
        t = 1_700_000_000 * 1_000_000
        left = packets
        while left:
            n = min(left, 100_000)
            kind = rng.random(n)
            cap = np.where(kind < 0.45, rng.integers(60, 120, n),
                           np.where(kind < 0.65, rng.integers(120, 900, n),
                                    rng.integers(900, 1515, n))).astype(np.int64)
            gaps = rng.integers(1, 200, n)
            ts = t + np.cumsum(gaps)
            t = int(ts[-1])
            rec = 16 + cap
            starts = np.concatenate(([0], np.cumsum(rec)[:-1]))
            out = rng.integers(0, 256, int(rec.sum()), dtype=np.uint8)
            hdr = np.empty((n, 4), "<u4")
            hdr[:, 0] = ts // 1_000_000
            hdr[:, 1] = ts % 1_000_000
            hdr[:, 2] = cap
            hdr[:, 3] = cap
            hb = hdr.view(np.uint8).reshape(n, 16)
            idx = starts[:, None] + np.arange(16)[None, :]
            out[idx] = hb
            # Ethernet type IPv4, IPv4 version/IHL, some zero bytes as in real headers
            eth = starts + 16
            out[eth + 12] = 0x08
            out[eth + 13] = 0x00
            out[eth + 14] = 0x45
            out[eth + 15] = 0
            out[eth + 20] = 0x40
            out[eth + 21] = 0
            f.write(out.tobytes())
            left -= n


def time_index(path: str, repeat: int) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        b = read_capture(path)
        times.append(time.perf_counter() - t0)
        n = len(b)
        del b
    return statistics.median(times), n


def time_tcpdump(path: str, repeat: int) -> float | None:
    if not shutil.which("tcpdump"):
        return None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(["tcpdump", "-r", path, "-w", "/dev/null"], check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# Peak RSS from VmHWM (/proc/self/status): getrusage's ru_maxrss survives execve on Linux,
# so a child forked from this (large) process would report the parent's size.
STREAM_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
from bpfkit.pcap import open_capture
n = 0
byt = 0
with open_capture(sys.argv[1]) as r:
    for b in r:
        n += len(b)
        byt += int(b.caplen.sum())
        b.buf[b.offset[-1]]          # touch the batch
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(n, byt, hwm)
"""


def stream_rss(path: str) -> tuple[int, int, float, float]:
    """(packets, bytes, peak RSS MiB, seconds) of streaming `path` in a fresh process
    (the high-water mark of its resident set, VmHWM)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", STREAM_CHILD, path, os.path.dirname(HERE)],
                       check=True, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    n, byt, rss_kb = map(int, r.stdout.split())
    return n, byt, rss_kb / 1024, dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", help="an existing classic pcap to index")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--stream-gb", type=float, default=2.0,
                    help="size of the synthetic file for the RSS run (0: skip)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/bpfkit-bench")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    path = a.file
    if path is None:
        path = os.path.join(a.workdir, f"synthetic-{a.packets}.pcap")
        if not os.path.exists(path):
            make_pcap(path, a.packets)
    size = os.path.getsize(path)
    # warm the page cache
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    t_idx, n = time_index(path, a.repeat)
    t_tcp = time_tcpdump(path, a.repeat)
    rows = [("bpfkit read_capture (index), pcap", n, size, t_idx)]
    if t_tcp is not None:
        rows.append(("tcpdump -r FILE -w /dev/null, pcap", n, size, t_tcp))
    ng = os.path.join(a.workdir, os.path.basename(path) + ".pcapng")
    if not os.path.exists(ng):
        write_capture(ng, read_capture(path), format="pcapng")
    t_ng, n_ng = time_index(ng, a.repeat)
    rows.append(("bpfkit read_capture (index), pcapng", n_ng, os.path.getsize(ng), t_ng))
    t_tcp_ng = time_tcpdump(ng, a.repeat)
    if t_tcp_ng is not None:
        rows.append(("tcpdump -r FILE -w /dev/null, pcapng", n_ng, os.path.getsize(ng),
                     t_tcp_ng))
    print(f"\nfile: {path} ({size / 1e6:.0f} MB, {n:,} packets), median of {a.repeat}\n")
    print("| what | packets | MB | seconds | packets/s |")
    print("|---|---:|---:|---:|---:|")
    for what, pk, sz, t in rows:
        print(f"| {what} | {pk:,} | {sz / 1e6:.0f} | {t:.3f} | {pk / t:,.0f} |")
    if t_tcp is not None:
        print(f"\nratio tcpdump / bpfkit: pcap {t_tcp / t_idx:.1f}x, "
              f"pcapng {t_tcp_ng / t_ng:.1f}x")
    if a.stream_gb > 0:
        big = os.path.join(a.workdir, f"synthetic-{a.stream_gb:g}GB.pcap")
        if not os.path.exists(big):
            make_pcap(big, int(a.stream_gb * 1e9 / 532))
        n2, byt, rss, dt = stream_rss(big)
        print("\n| streaming open_capture() | packets | file MB | peak RSS MiB | seconds |")
        print("|---|---:|---:|---:|---:|")
        print(f"| {os.path.basename(big)} | {n2:,} | {os.path.getsize(big) / 1e6:.0f} | "
              f"{rss:.0f} | {dt:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
