"""Shared test fixtures: where the conformance fixtures and the real test images live.

`../shared` sits beside the checkout. Tests that need it skip when it is absent,
except under CI=true, where a missing fixture is a failure (CI always has it).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RESTORECLI_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# A shell starts background jobs (`cmd &`, nohup, some CI runners) with Ctrl-C ignored, and
# children inherit that: the Ctrl-C tests (exit 130, a read interrupted mid-file) need it live.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def shared_path(*parts: str) -> Path:
    """A path under ../shared; skip the test if it is missing (fail under CI=true)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"required fixture missing under CI: {path}")
        pytest.skip(f"{path} not present (../shared is absent)")
    return path


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-network tests: fastest, and steady when the other core is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` first: with `-n 2` (the README's test command) the longest one then runs
    beside all the others instead of after them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
