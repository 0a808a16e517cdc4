"""The interface of one-pass restoration networks that the RDDM engine runs without diffusion.

Such a network maps a degraded RGB image in [0, 1] to the restored one in a single
deterministic pass (objective "direct": no noise is drawn, one step). Decisions about
the whole image (an exposure, a colour cast) live in `global_params`, which the engine
computes once from the whole photo and hands to every tile, so tiling cannot change them.
"""

from __future__ import annotations

from typing import Any

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
