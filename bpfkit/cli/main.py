"""bpfkit command line: argparse front end.  Each subcommand lives in its own module
`bpfkit.cli.cmd_<name>` with `register(subparsers)` (adds its parser and sets
`func=run`) and `run(args) -> int`.  No product logic lives here."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# numpy loads OpenBLAS, which starts a thread per CPU that spins for a while: CPU time
# taken from bpfkit's own work (which never calls BLAS).  One thread: none started.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .. import __version__
from ..errors import BpfError, CaptureWarning
from .common import EXIT_USAGE, eprint

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ["compile", "filter", "asm", "disasm", "validate", "run", "translate",
            "compare", "inspect"]

DESCRIPTION = """\
bpfkit runs Berkeley Packet Filter programs over packet captures, outside the kernel,
with the answers of the Linux kernel and libpcap.

examples:
  bpfkit filter -r in.pcap -w out.pcap 'tcp port 80 and not host 10.0.0.1'
  bpfkit compile -d 'tcp port 80'        the same listing as tcpdump -d
  bpfkit asm prog.bpf -d                 assemble, print a tcpdump -d listing
  bpfkit disasm -ddd prog.txt            any encoding in, another out
  bpfkit validate --rules kernel prog    check against bpf_check_classic
  bpfkit run prog.bpf -r in.pcap --json  return value of every packet
  bpfkit filter --prog prog.bpf -r in.pcap -w out.pcap
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as DESIGN.md asks
        self.print_usage(sys.stderr)
        eprint(f"bpfkit: error: {message}")
        sys.exit(EXIT_USAGE)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with `only` that one: importing a
    subcommand's module pulls in its part of bpfkit (compiler, eBPF, ELF loader ...),
    and a `bpfkit filter` run should not pay for the others (~0.1 s)."""
    p = _Parser(prog="bpfkit", description=DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"bpfkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in ([only] if only in COMMANDS else COMMANDS):
        importlib.import_module(f"bpfkit.cli.cmd_{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line.  argv None: this is the program (the console script, python -m
    bpfkit.cli), and a command that asks for it (`quick_exit`) ends the process itself
    once its output is flushed, without the interpreter's clean-up (freeing numpy's
    modules and every object one by one: a few tens of ms, more than some whole runs)."""
    program = argv is None
    rc = _main(sys.argv[1:] if program else list(argv))
    if program and _quick_exit:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            rc = rc or 0
        except (OSError, ValueError):
            pass
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(rc)
    return rc


_quick_exit = False


def _main(argv: list[str]) -> int:
    global _quick_exit
    # the subcommand is the first word; only --version/-h/--help may come before it
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _quick_exit = bool(getattr(args, "quick_exit", False))
    with warnings.catch_warnings():
        # capture-reading problems are reported as one line on stderr, not as a Python warning
        warnings.simplefilter("ignore", CaptureWarning)
        try:
            return int(args.func(args) or 0)
        except BpfError as e:
            # one line (DESIGN.md); the message's first line already says where and why,
            # further lines (an AsmError's source excerpt and caret) are for API users
            lines = str(e).splitlines() or [type(e).__name__]
            eprint(f"bpfkit {args.command}: error: {lines[0]}")
            return EXIT_USAGE
        except BrokenPipeError:
            # whoever read our output stopped reading (`| head`): end quietly with 0, as
            # tcpdump does (its SIGPIPE handler exits 0); what is still buffered for
            # stdout goes nowhere instead of failing again at exit
            _silence_stdout()
            return 0
        except KeyboardInterrupt:
            eprint("bpfkit: interrupted")
            return 130


def _silence_stdout() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
