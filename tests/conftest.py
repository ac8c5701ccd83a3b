"""Oracle markers: tests marked tcpdump / clang / kernel skip with a stated reason when
the oracle is missing, and FAIL instead when BPFKIT_REQUIRE_ORACLES=1 (set by .ci/run
after it installs the oracles)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import oracles  # noqa: E402

REQUIRE = os.environ.get("BPFKIT_REQUIRE_ORACLES") == "1"

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


ORACLES = ("tcpdump", "clang", "kernel")


def skip_or_fail(reason: str) -> None:
    """For a test that cannot run here: skip with the reason, or fail under
    BPFKIT_REQUIRE_ORACLES=1, where CI has installed everything the suite needs."""
    if REQUIRE:
        pytest.fail(f"BPFKIT_REQUIRE_ORACLES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    if REQUIRE:
        return          # pytest_runtest_setup fails them instead
    for item in items:
        for name in ORACLES:
            if item.get_closest_marker(name) is not None and oracles.missing(name):
                item.add_marker(pytest.mark.skip(
                    reason=f"oracle '{name}' missing: {oracles.missing(name)}"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # tryfirst: before any fixture is set up, module-scoped ones included, so a fixture
    # that would skip cannot turn a required oracle's absence into a skip
    if not REQUIRE:
        return
    for name in ORACLES:
        if item.get_closest_marker(name) is not None and oracles.missing(name):
            pytest.fail(f"BPFKIT_REQUIRE_ORACLES=1 but oracle '{name}' is missing: "
                        f"{oracles.missing(name)}", pytrace=False)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the project (corpora and real captures).  Tests that need it
    skip with a reason when it is absent (a clone elsewhere), or fail under
    BPFKIT_REQUIRE_ORACLES=1, where CI guarantees it."""
    if not SHARED.is_dir():
        skip_or_fail(f"{SHARED} is missing (corpora and captures live there)")
    return SHARED
