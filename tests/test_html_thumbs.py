"""Report thumbnails never decode an input the decompression-bomb guard refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restorecli.jobs.html_thumbs import PixelBudget, _open_picture


def test_an_input_over_the_limit_is_not_previewed(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", "1000")  # 1600 pixels: refused as an input, fine as an output
    with pytest.raises(ValueError, match="too large"):
        _open_picture(str(path), 64, "before")
    _open_picture(str(path), 64, "after")


def test_the_budget_holds_a_big_image_alone():
    budget = PixelBudget(100)
    with budget.hold(60):
        assert budget.free == 40
    with budget.hold(10**9):  # larger than the whole budget: waits for all of it, then takes it
        assert budget.free == 0
    assert budget.free == 100
