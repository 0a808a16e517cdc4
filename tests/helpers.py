"""What several test files need: comparing tensors, reading conformance cases, writing small images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import shared_path


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, computed exactly (float64); the shapes must be equal."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.double() - b.double()).abs().max())


def case_dir(method: str, case: str) -> Path:
    """../shared/conformance/METHOD/CASE (skips, or fails under CI=true, when absent)."""
    return shared_path("conformance", method, case)


def load_case(method: str, case: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A conformance case: its case.json and its recorded tensors."""
    folder = case_dir(method, case)
    return json.loads((folder / "case.json").read_text()), load_file(str(folder / "tensors.safetensors"))


def solid_png(path: Path, size: tuple[int, int] = (16, 16), value: int = 128) -> Path:
    """A flat grey RGB PNG of (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def random_png(path: Path, size: tuple[int, int] = (16, 24), seed: int = 0, mode: str = "RGB") -> Path:
    """A random image of (height, width) in `mode` (RGB, RGBA or L)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (*size, channels)).astype(np.uint8)
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(path)
    return path
