"""Helpers shared by the CLI subcommands: exit codes, stderr, JSON output."""
from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FOUND = 1      # the work found a problem (e.g. compare found disagreements)
EXIT_USAGE = 2      # bad usage or bad input


def eprint(*a) -> None:
    print(*a, file=sys.stderr)


def print_json(obj) -> None:
    import json         # (only here: most runs print no JSON, and it costs ~1.5 ms)
    json.dump(obj, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
