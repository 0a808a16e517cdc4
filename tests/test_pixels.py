"""io.pixels: a restored tensor goes back into a Picture at the input's depth and colour layout."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from restorecli.io.imageio import Picture
from restorecli.io.pixels import from_tensor, to_tensor


def test_white_stays_white_at_16_bits():
    pic = Picture(np.zeros((2, 3, 3), np.uint16))
    out = from_tensor(torch.ones(1, 3, 2, 3), pic)
    assert out.color.dtype == np.uint16 and (out.color == 65535).all()
    back = to_tensor(Picture(np.full((2, 3, 3), 65535, np.uint16)))
    assert torch.equal(back, torch.ones_like(back))


def test_grey_outputs_have_the_level_pillow_gives():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    rgb[0, :3] = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # pure primaries: the weights one by one
    pillow = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    tensor = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    ours = from_tensor(tensor, Picture(np.zeros((16, 16, 1), np.uint8))).color[..., 0].astype(int)
    assert np.abs(ours - pillow).max() <= 1
