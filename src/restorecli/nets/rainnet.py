"""A small deraining network: progressive full-resolution stages with shared weights around coarse context.

A rain streak is one or two pixels wide, so the stages that find and remove it
run at full resolution (no pixel fold). Which bright lines are rain and which
are edges of the scene depends on context (a streak is long, slanted and
repeated across the photo), which a context branch gathers once from the rainy
input on three coarser levels (average-pool down, bilinear up, so no 2x2
structure reaches the output). The stages share one set of weights: each reads
the input, the current estimate, the context and a recurrent state, and
predicts the rain layer, which is subtracted from the input. The first stage
removes the clear streaks, later ones what the first left behind, at the cost
of a few convolutions each.

No normalisation layer and no whole-image statistic: every output pixel depends
only on input pixels within `receptive_radius`, so tiles that overlap by that
much agree with the untiled result. Inputs and outputs are RGB in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .direct import DirectNet, ResBlock, whole_number_settings

PAD_MULTIPLE = 8  # three 2x average pools
# How far the context branch reaches: its convolutions at 1/2, 1/4 and 1/8 resolution (3, 5 and 5
# of them, 2, 4 and 8 px each), the three pools and bilinear upsamplings (1+2+4 and 2+4+8 px), and
# up to 7 px for where a tile's pooling grid falls.
CONTEXT_RADIUS = 2 * 3 + 4 * 5 + 8 * 5 + (1 + 2 + 4) + (2 + 4 + 8) + 7


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


class ContextBranch(nn.Module):
    """Features of the rainy input at 1/2, 1/4 and 1/8 resolution, brought back to full resolution."""

    def __init__(self, width: int) -> None:
        super().__init__()
        w2, w4, w8 = 2 * width, 3 * width, 4 * width
        self.in2 = nn.Conv2d(3, w2, 3, padding=1)
        self.level2 = ResBlock(w2)
        self.in4 = nn.Conv2d(w2, w4, 3, padding=1)
        self.level4 = nn.Sequential(ResBlock(w4), ResBlock(w4))
        self.in8 = nn.Conv2d(w4, w8, 3, padding=1)
        self.level8 = nn.Sequential(ResBlock(w8), ResBlock(w8))
        self.up8 = nn.Conv2d(w8, w4, 1)
        self.up4 = nn.Conv2d(w4, w2, 1)
        self.up2 = nn.Conv2d(w2, width, 1)

    @staticmethod
    def _up(x: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        f2 = self.level2(_act(self.in2(F.avg_pool2d(x, 2))))
        f4 = self.level4(_act(self.in4(F.avg_pool2d(f2, 2))))
        f8 = self.level8(_act(self.in8(F.avg_pool2d(f4, 2))))
        f4 = f4 + self._up(self.up8(f8), f4.shape[-2:])
        f2 = f2 + self._up(self.up4(f4), f2.shape[-2:])
        return self._up(self.up2(f2), x.shape[-2:])


class Stage(nn.Module):
    """One progressive step; every stage runs these same weights."""

    def __init__(self, width: int, blocks: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(6, width, 3, padding=1)
        self.state = nn.Conv2d(2 * width, width, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(width) for _ in range(blocks)))
        self.out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: Tensor, estimate: Tensor, context: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        f = _act(self.inp(torch.cat((x, estimate), dim=1)) + context)
        hidden = _act(self.state(torch.cat((f, hidden), dim=1)))
        return self.out(self.body(hidden)), hidden


class RainNet(DirectNet):
    """Context branch plus `stages` shared-weight full-resolution stages; predicts and subtracts the rain."""

    size_multiple = 1  # any size: the network pads by replication to its own multiple of 8

    def __init__(self, width: int = 16, stages: int = 3, blocks: int = 1) -> None:
        super().__init__()
        self.width, self.stages, self.blocks = width, stages, blocks
        self.context = ContextBranch(width)
        self.stage = Stage(width, blocks)
        self.receptive_radius = stages * (3 + 2 * blocks) + CONTEXT_RADIUS

    def config(self) -> dict[str, Any]:
        return {"width": self.width, "stages": self.stages, "blocks": self.blocks}

    def forward(self, image: Tensor, params: Any = None) -> Tensor:
        x = image.float()
        h, w = x.shape[-2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        context = self.context(x)
        estimate = x
        hidden = torch.zeros_like(context)
        for _ in range(self.stages):
            rain, hidden = self.stage(x, estimate, context, hidden)
            estimate = x - rain
        return estimate[:, :, :h, :w]

    def working_set_floats(self, height: int, width: int) -> float:
        """Floats alive at the peak of one forward pass: about seven full-resolution feature maps
        (context, state, block input and temporaries, the concatenation) plus the images."""
        return float(height * width * (8 * self.width + 32))


def build_rainnet(config: dict[str, Any]) -> RainNet:
    limits = {"width": (4, 128), "stages": (1, 12), "blocks": (1, 8)}
    return RainNet(**whole_number_settings(config, limits, "rainnet"))
