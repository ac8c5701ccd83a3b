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


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in ("tcpdump", "clang", "kernel"):
            if item.get_closest_marker(name) is None:
                continue
            missing = oracles.missing(name)
            if not missing:
                continue
            if REQUIRE:
                item.add_marker(pytest.mark.usefixtures("_oracle_required_" + name))
            else:
                item.add_marker(pytest.mark.skip(reason=f"oracle '{name}' missing: {missing}"))


def _fail_missing(name):
    pytest.fail(f"BPFKIT_REQUIRE_ORACLES=1 but oracle '{name}' is missing: "
                f"{oracles.missing(name)}", pytrace=False)


@pytest.fixture
def _oracle_required_tcpdump():
    _fail_missing("tcpdump")


@pytest.fixture
def _oracle_required_clang():
    _fail_missing("clang")


@pytest.fixture
def _oracle_required_kernel():
    _fail_missing("kernel")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the project (corpora and real captures).  Tests that need it
    skip with a reason when it is absent (a clone elsewhere), or fail under
    BPFKIT_REQUIRE_ORACLES=1, where CI guarantees it."""
    if not SHARED.is_dir():
        if REQUIRE:
            pytest.fail(f"{SHARED} is missing", pytrace=False)
        pytest.skip(f"{SHARED} is missing (corpora and captures live there)")
    return SHARED
