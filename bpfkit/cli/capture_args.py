"""Options and reporting shared by the subcommands that read captures."""
from __future__ import annotations

import sys
import time

from .common import eprint


def add_read_options(p, *, count_help: str) -> None:
    p.add_argument("-r", dest="capture", metavar="FILE", required=True,
                   help="capture to read (pcap or pcapng; '-' for stdin)")
    p.add_argument("-c", dest="count", metavar="COUNT", type=positive_int,
                   help=count_help)
    p.add_argument("--strict", action="store_true",
                   help="treat a damaged capture (truncated record, garbage) as an error "
                        "instead of a warning after the good records")


def positive_int(text: str) -> int:
    import argparse
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, found {v}")
    return v


def report_problems(command: str, problems) -> None:
    """Print each capture problem (non-strict reading) as one warning line on stderr."""
    for p in problems:
        eprint(f"bpfkit {command}: warning: {p}")


class Progress:
    """Packets-read counter on stderr, only when stderr is a terminal; at most 5 updates/s."""

    def __init__(self, label: str):
        self.enabled = sys.stderr.isatty()
        self.label = label
        self.last = 0.0
        self.shown = False

    def __call__(self, packets: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.last = now
            self.shown = True
            sys.stderr.write(f"\r{self.label}: {packets:,} packets")
            sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
