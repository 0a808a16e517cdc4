"""`--resize` is held to the pixel limit before anything is allocated (api.run_restore)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from cli_helpers import REPO
from helpers import random_png
from restorecli import api
from restorecli.errors import UsageError


@pytest.mark.parametrize(
    "resize, limit",
    [(128, "10000"), (101, "10200"), (300, "89999"), (1000, "999999")],  # cheap to run if not refused
)
def test_resize_over_the_pixel_limit_is_a_usage_error_before_any_work(tmp_path, monkeypatch, resize, limit):
    if limit is None:
        monkeypatch.delenv("RESTORECLI_MAX_PIXELS", raising=False)
    else:
        monkeypatch.setenv("RESTORECLI_MAX_PIXELS", limit)
    img = random_png(tmp_path / "in.png", size=(48, 40))
    with pytest.raises(UsageError) as info:
        api.restore(str(img), str(tmp_path / "out"), task="derain", resize=resize)
    assert "--resize" in str(info.value) and "RESTORECLI_MAX_PIXELS" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_resize_within_the_limit_still_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", "16384")
    img = random_png(tmp_path / "in.png", size=(48, 40))
    report = api.restore(str(img), str(tmp_path / "out"), task="derain", resize=128)
    assert report.exit_code == 0


def _cap_memory() -> None:
    """A command that tried to allocate the resized image would fail here, not take the machine down."""
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@pytest.mark.parametrize("resize", ["30000", "9460", str(2**40)])
def test_a_huge_resize_on_a_small_image_fails_fast_in_one_line(tmp_path, resize):
    img = random_png(tmp_path / "in.png", size=(48, 40))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "NO_COLOR": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "restorecli", "derain", str(img), str(tmp_path / "out"), "--resize", resize],
        capture_output=True,
        env=env,
        timeout=120,
        preexec_fn=_cap_memory,
    )
    err = res.stderr.decode().strip()
    assert res.returncode == 2, err
    assert len(err.splitlines()) == 1 and f"--resize {resize}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
