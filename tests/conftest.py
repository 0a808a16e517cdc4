"""Shared test fixtures: where the conformance fixtures and the real test images live.

`../shared` sits beside the checkout. Tests that need it skip when it is absent,
except under CI=true, where a missing fixture is a failure (CI always has it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RESTORECLI_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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
