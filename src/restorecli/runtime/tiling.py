"""Tiled restoration for images too large to run whole.

Tiles are cut in input pixels at the same start positions as the official
ResShift splitter (so a tiled run can be compared with it tile by tile), each
tile is restored on its own, and the results are blended with smooth weights:
a raised-cosine ramp across each overlap (zero at the tile's outer
border) instead of the official uniform
average, which leaves visible seams. Only one tile at a time goes to the
device; the accumulation buffers stay on the CPU.

Where the model is local (its output at a pixel depends only on input pixels
closer than the overlap), overlapping tiles agree and the weighted average
returns exactly the untiled result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor

from ..engines.base import Engine


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: [0] if it fits, else every `stride`, last one clamped to the end."""
    if length <= tile:
        return [0]
    starts: list[int] = []
    for start in range(0, length, stride):
        start = min(start, length - tile)
        if not starts or starts[-1] != start:
            starts.append(start)
        if start + tile >= length:
            break
    return starts


def ramp(length: int, overlap_before: int, overlap_after: int) -> Tensor:
    """1-D blending weight of one tile: 1 inside, rising over the leading overlap, falling over the trailing one.

    Across an overlap of n pixels the weight is exactly 0 over the outer n/4
    (where a tile's own border effects live), a raised cosine over the middle
    half, and 1 beyond; the two neighbours' weights sum to 1 at every pixel.
    """
    w = torch.ones(length, dtype=torch.float32)
    for n, reverse in ((overlap_before, False), (overlap_after, True)):
        n = min(n, length)
        if n <= 0:
            continue
        margin = n // 4
        t = ((torch.arange(n, dtype=torch.float64) + 0.5 - margin) / max(n - 2 * margin, 1)).clamp(0, 1)
        r = (0.5 - 0.5 * torch.cos(math.pi * t)).float()
        if reverse:
            w[length - n :] = torch.minimum(w[length - n :], r.flip(0))
        else:
            w[:n] = torch.minimum(w[:n], r)
    return w


def _overlaps(starts: list[int], tile: int, index: int) -> tuple[int, int]:
    before = starts[index - 1] + tile - starts[index] if index > 0 else 0
    after = starts[index] + tile - starts[index + 1] if index + 1 < len(starts) else 0
    return max(before, 0), max(after, 0)


def restore_tiled(
    engine: Engine,
    image: Tensor,
    mask: Tensor | None,
    *,
    steps: int,
    generator: torch.Generator,
    tile: int,
    overlap: int,
    on_tile: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Restore one image (1, 3, H, W) tile by tile; returns (1, 3, sH, sW) on the CPU.

    Tiles are processed row-major and all draw from the image's one generator,
    as the official splitter does with the global RNG. `on_tile(done, total)` is
    called after each tile (progress for one large image).
    """
    _, _, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return engine.restore(image, steps=steps, generators=[generator], masks=mask)
    tile = effective_tile(engine, tile)
    overlap = min(max(overlap, getattr(engine, "min_overlap", 0), 0), tile // 2)
    stride = tile - overlap
    scale = engine.scale
    hs = tile_starts(height, tile, stride)
    ws = tile_starts(width, tile, stride)
    out = torch.zeros(1, 3, height * scale, width * scale, dtype=torch.float32)
    weight = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32)
    total = len(hs) * len(ws)
    with engine.whole_image(image) if hasattr(engine, "whole_image") else nullcontext():
        for done, (top, left) in enumerate(((top, left) for top in hs for left in ws), start=1):
            th, tw = min(tile, height - top), min(tile, width - left)
            wy = ramp(th * scale, *(scale * o for o in _overlaps(hs, tile, hs.index(top))))
            wx = ramp(tw * scale, *(scale * o for o in _overlaps(ws, tile, ws.index(left))))
            crop = image[:, :, top : top + th, left : left + tw]
            mcrop = None if mask is None else mask[:, :, top : top + th, left : left + tw]
            result = engine.restore(crop, steps=steps, generators=[generator], masks=mcrop).float().cpu()
            w2 = (wy[:, None] * wx[None, :])[None, None]
            ys, xs = top * scale, left * scale
            out[:, :, ys : ys + th * scale, xs : xs + tw * scale] += result * w2
            weight[:, :, ys : ys + th * scale, xs : xs + tw * scale] += w2
            if on_tile is not None:
                on_tile(done, total)
    return out / weight


def effective_tile(engine: Engine, tile: int) -> int:
    """The tile size a run really uses for a requested one (never below the engine's minimum)."""
    return max(tile, engine.min_tile) if tile > 0 else 0
