"""Images read for scoring and training honour the decompression-bomb guard before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restorecli.errors import InputError
from restorecli.quality.evaluate import read_rgb8


def test_an_image_over_the_pixel_limit_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", "100")
    with pytest.raises(InputError, match="decompression-bomb guard"):
        read_rgb8(path)
