"""`restore generate`: unconditional sampling to a folder of PNGs (and an optional grid)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .runtime import load_engine


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
        grid[y:y + height, x:x + width] = img
    return grid


def save_png(array: np.ndarray, path: Path) -> None:
    """Atomic PNG write: temporary file in the same folder, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_images(
    model: str,
    output: Path,
    *,
    count: int,
    weights: Sequence[str] | None,
    steps: int | None,
    seed: int | None,
    device: str,
    precision: str,
    batch_size: int = 0,
    grid: bool = False,
    registry_files: Sequence[Path] = (),
    offline: bool = False,
    cache_dir: Path | None = None,
) -> list[Path]:
    engine = load_engine(
        model, "generate", weights=weights, device=device, precision=precision,
        registry_files=registry_files, offline=offline, cache_dir=cache_dir,
    )
    spec = engine.spec
    steps = spec.check_steps(steps)
    seed = spec.extra.get("default_seed", 0) if seed is None else seed
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
