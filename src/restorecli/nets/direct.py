"""The interface of one-pass restoration networks that the RDDM engine runs without diffusion.

Such a network maps a degraded RGB image in [0, 1] to the restored one in a single
deterministic pass (objective "direct": no noise is drawn, one step). Decisions about
the whole image (an exposure, a colour cast) live in `global_params`, which the engine
computes once from the whole photo and hands to every tile, so tiling cannot change them.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


class DirectNet(nn.Module):
    """Base of one-pass networks; subclasses set the class attributes and implement `forward`."""

    size_multiple = 1  # input sides the network accepts (it pads internally to its own needs)
    receptive_radius = 0  # pixels of context on each side that tiles must overlap by
    exposure_control = False  # whether `global_params(...).shifted(stops)` moves the output's exposure

    def global_params(self, image: Tensor) -> Any:
        """Whole-image decisions, computed once per photo (None: the network has none)."""
        return None

    def forward(self, image: Tensor, params: Any = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def working_set_floats(self, height: int, width: int) -> float:
        """Floats alive at the peak of one forward pass over an image of this size."""
        raise NotImplementedError


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a leaky ReLU between them, added to the input (no normalisation,
    so a tile's output does not depend on what lies beyond the block's reach)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


def whole_number_settings(config: dict[str, Any], limits: dict[str, tuple[int, int]], what: str) -> dict[str, int]:
    """The settings of a network config, each a whole number within its (low, high); ValueError otherwise."""
    unknown = set(config) - set(limits)
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(sorted(unknown))}")
    values = {}
    for key in limits.keys() & set(config):
        value = config[key]
        lo, hi = limits[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{key} must be a whole number from {lo} to {hi}, not {value!r}")
        values[key] = value
    return values
