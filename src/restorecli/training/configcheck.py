"""The ranges of a training run's numbers, checked before any network is built or image read.

A value outside them either crashes deep inside torch (a crop the UNet cannot halve down to its
deepest level), silently trains nothing (an EMA decay of 2 diverges, a NaN learning rate), or
allocates without bound (thousands of levels, a batch of a billion crops). Each is a usage error
(exit 2) naming the option.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError

MAX_LEVELS = 8  # UNet depth: 2**7 = 128 x downsampling already needs 128-pixel crops
MAX_MULT = 64
MAX_DIM = 1024
MAX_CROP = 4096
MAX_CROP_PIXELS = 64 * 1024 * 1024  # crops of one batch together (batch x crop x crop)
MAX_TIMESTEPS = 100_000


def _finite(name: str, value: float, low: float, high: float, *, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (low < value if open_low else low <= value)
    if not ok or not value <= high:
        lo = f"above {low:g}" if open_low else f"at least {low:g}"
        raise UsageError(f"{name} {value!r} is out of range", f"use a finite number {lo} and at most {high:g}")


def _whole(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} {value!r} is out of range", f"use a whole number from {low} to {high}")


def check_ranges(cfg: Any) -> None:
    """Refuse (UsageError) any number of a TrainConfig outside what a run can use."""
    _whole("--dim", cfg.dim, 8, MAX_DIM)
    if not 1 <= len(cfg.dim_mults) <= MAX_LEVELS:
        raise UsageError(
            f"--dim-mults has {len(cfg.dim_mults)} levels", f"give 1 to {MAX_LEVELS} multipliers, e.g. 1,2,4,8"
        )
    for m in cfg.dim_mults:
        _whole("a --dim-mults multiplier", m, 1, MAX_MULT)
    _whole("--attn-heads", cfg.attn_heads, 1, 64)
    _whole("--attn-dim-head", cfg.attn_dim_head, 1, 1024)
    _whole("--pixel-unshuffle", cfg.pixel_unshuffle, 1, 16)
    _whole("--stages", cfg.stages, 1, 12)  # rainnet
    _whole("--blocks", cfg.blocks, 1, 8)
    if cfg.network == "rainnet":
        _whole("--width", cfg.width, 4, 128)
    _whole("timesteps", cfg.timesteps, 1, MAX_TIMESTEPS)
    _whole("--crop", cfg.crop, 16, MAX_CROP)
    multiple = 2 ** (len(cfg.dim_mults) - 1) * cfg.pixel_unshuffle
    if cfg.crop % multiple:
        raise UsageError(
            f"--crop {cfg.crop} is not a multiple of {multiple}",
            f"the UNet halves the crop {len(cfg.dim_mults) - 1} times"
            + (f" after a pixel-unshuffle by {cfg.pixel_unshuffle}" if cfg.pixel_unshuffle > 1 else "")
            + f"; use e.g. --crop {max(multiple, cfg.crop // multiple * multiple)}",
        )
    _whole("--batch-size", cfg.batch_size, 1, MAX_CROP_PIXELS)
    if cfg.batch_size * cfg.crop * cfg.crop > MAX_CROP_PIXELS:
        raise UsageError(
            f"--batch-size {cfg.batch_size} of {cfg.crop}-pixel crops is over {MAX_CROP_PIXELS:,} pixels a step",
            "use a smaller --batch-size or --crop",
        )
    _finite("--lr", cfg.lr, 0.0, math.inf, open_low=True)  # too high for the data stops the run (exit 1)
    _finite("the final learning rate", cfg.lr_min, 0.0, math.inf)
    _finite("--sum-scale", cfg.sum_scale, 0.0, 1e6, open_low=True)
    _finite("--ema-decay", cfg.ema_decay, 0.0, 1.0)
    _finite("gradient clipping", cfg.grad_clip, 0.0, 1e12)
    for beta in cfg.adam_betas:
        _finite("an Adam beta", beta, 0.0, 1.0)
    _finite("--held-out", cfg.held_out, 0.0, 0.9)
    _finite("--pair-fraction", cfg.pair_fraction, 0.0, 1.0)
    _finite("--time-limit", cfg.time_limit, 0.0, 1e9)
    _whole("--seed", cfg.seed, 0, 2**64 - 1)
    for name, value in (("--val-every", cfg.val_every), ("--save-every", cfg.save_every), ("--val-size", cfg.val_size)):
        _whole(name, value, 0, 2**62)
    _whole("validation images", cfg.val_count, 0, 1_000_000)
    if cfg.degradation is not None:
        from .degrade import DEGRADATIONS, check_params

        if cfg.degradation not in DEGRADATIONS:
            raise UsageError(f"unknown degradation '{cfg.degradation}'", f"use one of: {', '.join(DEGRADATIONS)}")
        problem = check_params(cfg.degradation, cfg.degrade_params)
        if problem is not None:
            raise UsageError(f"-P: {problem}", "see 'restore degrade --help' for each degradation's parameters")
