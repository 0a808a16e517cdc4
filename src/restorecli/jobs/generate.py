"""`restore generate`: unconditional sampling to a folder of PNGs (and an optional grid)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..engines.base import Engine
from ..io.files import write_atomic
from ..io.outpaths import check_name_part


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8, rounding as the official writers do."""
    arr = (images.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()


def make_grid(images: np.ndarray, padding: int = 2) -> np.ndarray:
    """Tile (B, H, W, 3) into a grid of ceil(sqrt(B)) columns with black padding, as the official scripts save it."""
    count, height, width, _ = images.shape
    if count == 1:
        return images[0]
    ncol = int(math.sqrt(count)) or 1
    nrow = math.ceil(count / ncol)
    grid = np.zeros((padding + nrow * (height + padding), padding + ncol * (width + padding), 3), np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, ncol)
        y, x = padding + r * (height + padding), padding + c * (width + padding)
        grid[y : y + height, x : x + width] = img
    return grid


def save_png(array: np.ndarray, path: Path) -> None:
    """Encode as PNG and write atomically (temporary file in the same folder, then rename)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    write_atomic(path, buf.getvalue())


def write_generated(
    engine: Engine,
    output: Path,
    *,
    count: int,
    steps: int,
    seed: int,
    batch_size: int = 0,
    grid: bool = False,
) -> list[Path]:
    """Generate `count` images with `engine` (one generator seeded with `seed`) into `output` as PNGs."""
    spec = engine.spec
    # the model name becomes part of every file name; a bundle's stored name is outside input
    check_name_part(spec.name, "the model name")
    generator = torch.Generator().manual_seed(seed)
    images = to_uint8(engine.generate(count, steps=steps, generator=generator, batch_size=batch_size))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(count - 1)))
    paths = []
    for k, img in enumerate(images):
        path = output / f"{spec.name}_s{seed}_{k:0{width}d}.png"
        save_png(img, path)
        paths.append(path)
    if grid:
        path = output / "grid.png"
        save_png(make_grid(images), path)
        paths.append(path)
    return paths
