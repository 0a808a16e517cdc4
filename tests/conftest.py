"""Shared test fixtures: the conformance fixtures and real test images, the fake engine's fresh state,
and one torch thread.

`../shared` sits beside the checkout (`helpers.shared_path`). Tests that need it skip when it is
absent, except under CI=true, where a missing fixture is a failure (CI always has it).
"""

from __future__ import annotations

import signal

import pytest
import torch

from helpers import shared_path

# A shell starts background jobs (`cmd &`, nohup, some CI runners) with Ctrl-C ignored, and
# children inherit that: the Ctrl-C tests (exit 130, a read interrupted mid-file) need it live.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture
def fresh_fake_engine():
    """The fake engine's class-level switches and record of calls (tests/fake_engine.py), reset around a test."""
    import fake_engine

    fake_engine.reset()
    yield
    fake_engine.reset()


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
