"""RDDM's paper protocol for restoration inputs (`--resize`): pad, then PIL-bicubic resize.

The official test loader zero-pads an image bottom/right to a multiple of 8 (and at
least the target size), then resizes it to SIZE x SIZE in uint8 with PIL; results
are reported at that size. Kept apart from the engine, which only calls it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..common import padded_size

PAPER_BLOCK = 8  # the official test loader pads to a multiple of 8 before resizing


def paper_resize_uint8(image: np.ndarray, size: int = 256, block: int = PAPER_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """The official restoration test input: (padded, resized) uint8 HWC arrays.

    Zero-pad bottom/right so both sides are >= size and multiples of `block`,
    then PIL-bicubic resize to size x size (aspect ratio not kept, no crop).
    """
    h, w = image.shape[:2]
    ph, pw = padded_size(h, block, size), padded_size(w, block, size)
    padded = np.zeros((ph, pw) + image.shape[2:], dtype=np.uint8)
    padded[:h, :w] = image
    resized = np.asarray(Image.fromarray(padded).resize((size, size), Image.BICUBIC))
    return padded, resized


def paper_resize(x: Tensor, size: int) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B, C, size, size) through the official uint8 PIL pipeline."""
    out = []
    for img in x:
        arr = (img.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        _, resized = paper_resize_uint8(arr, size)
        t = torch.from_numpy(resized.astype(np.float32) / 255.0)
        out.append(t[None] if t.dim() == 2 else t.permute(2, 0, 1))
    return torch.stack(out)
