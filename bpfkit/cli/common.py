"""Helpers shared by the CLI subcommands: exit codes, stderr, JSON output."""
from __future__ import annotations

import json
import sys

EXIT_OK = 0
EXIT_FOUND = 1      # the work found a problem (e.g. compare found disagreements)
EXIT_USAGE = 2      # bad usage or bad input


def eprint(*a) -> None:
    print(*a, file=sys.stderr)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
