"""A small low-light enhancer: one global exposure and colour decision, then a full-resolution local pass.

How bright a dark photo should become and which colour cast to remove are
decisions about the whole image, so a global branch reads a fixed-size
downscaled copy of it and predicts, per image, an exposure gain (in stops), a
monotone tone curve and a 3x3 colour matrix. Applying them is pointwise: every
pixel, and every tile of a large photo, gets the same mapping. A local branch
then works on the globally corrected image at full resolution (no pixel
fold, no transposed convolution, no normalisation layer) and predicts a
per-pixel gain and offset that remove the amplified noise and fix what one
curve cannot. Its receptive field is bounded, so tiles that overlap by more
than it agree with the untiled result.

Inputs and outputs are RGB in [0, 1]. `GlobalParams` can be computed once from
the whole image (`global_params`) and passed to `forward` for each tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .direct import DirectNet, ResBlock, whole_number_settings

KNOTS = 16  # tone-curve segments
FEATURES = 6  # hand-made global statistics fed to the global head beside the learned features


@dataclass
class GlobalParams:
    """One image's global mapping: gain in stops (B,), tone-curve values (B, KNOTS+1), colour matrix (B, 3, 3)."""

    stops: Tensor
    curve: Tensor
    matrix: Tensor

    def shifted(self, stops: float) -> GlobalParams:
        """The same mapping with the exposure moved by `stops` (the user's --exposure)."""
        return GlobalParams(self.stops + float(stops), self.curve, self.matrix)


def _luma(x: Tensor) -> Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


class GlobalBranch(nn.Module):
    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.size = size
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
        )
        # the 4x4 layout of the last map is kept beside its mean and maximum: where the bright and
        # dark parts of a scene are says more about its intended exposure than their average
        self.layout = nn.Conv2d(2 * w, w // 2, 1)
        self.head = nn.Sequential(
            nn.Linear(4 * w + 16 * (w // 2) + FEATURES, 2 * w),
            nn.LeakyReLU(0.1),
            nn.Linear(2 * w, 1 + KNOTS + 9),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @staticmethod
    def statistics(small: Tensor) -> Tensor:
        """log2 of the mean and of luma percentiles, and the mean chroma: the cues exposure depends on."""
        y = _luma(small).flatten(1)
        qs = torch.quantile(y, torch.tensor([0.5, 0.9, 0.99], device=y.device, dtype=y.dtype), dim=1).T
        stats = torch.cat((y.mean(1, keepdim=True), qs), dim=1)
        chroma = small.flatten(2).mean(2)
        chroma = chroma / chroma.sum(1, keepdim=True).clamp_min(1e-6)
        return torch.cat((torch.log2(stats.clamp_min(1e-4)), chroma[:, :2] - 1 / 3), dim=1)

    def forward(self, image: Tensor) -> GlobalParams:
        small = F.adaptive_avg_pool2d(image.float(), self.size)
        f = self.features(small)
        stats = self.statistics(small)
        layout = F.adaptive_avg_pool2d(self.layout(f), 4).flatten(1)
        raw = self.head(torch.cat((f.mean((2, 3)), f.amax((2, 3)), layout, stats), dim=1))
        # start from the gain that brings the mean luma to 0.4 (zero head = that gain, straight curve, identity)
        base = (torch.log2(torch.tensor(0.4)) - stats[:, 0]).clamp(0.0, 8.0)
        stops = base + raw[:, 0]
        steps = F.softmax(raw[:, 1 : 1 + KNOTS], dim=1)
        curve = torch.cat((torch.zeros_like(steps[:, :1]), steps.cumsum(1)), dim=1)
        matrix = torch.eye(3, device=image.device) + 0.1 * raw[:, 1 + KNOTS :].view(-1, 3, 3)
        return GlobalParams(stops, curve, matrix)


def apply_global(x: Tensor, p: GlobalParams) -> Tensor:
    """Gain, a highlight-compressing curve through the learned knots, and the colour matrix; pointwise."""
    b = x * torch.exp2(p.stops)[:, None, None, None]
    # b / (1 + b) keeps every gain in range; the learned curve then shapes contrast over it
    u = (b / (1 + b)).clamp(0, 1) * KNOTS
    idx = u.floor().clamp(max=KNOTS - 1)
    frac = u - idx
    n, c, h, w = x.shape
    curve = p.curve
    flat_idx = idx.long().reshape(n, -1)
    lo = torch.gather(curve, 1, flat_idx).view(n, c, h, w)
    hi = torch.gather(curve, 1, flat_idx + 1).view(n, c, h, w)
    t = lo + frac * (hi - lo)
    return torch.einsum("bij,bjhw->bihw", p.matrix, t)


class LocalBranch(nn.Module):
    """A thin full-resolution stem and tail around three coarser levels (average-pool down, bilinear up).

    The coarse levels carry the context that separates amplified sensor noise from texture;
    the full-resolution convolutions keep single-pixel detail. Upsampling is bilinear and
    the last convolutions run at full resolution, so no 2x2 structure reaches the output.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        w1, w2, w3, w4 = width, 2 * width, 3 * width, 4 * width
        self.stem = nn.Conv2d(6, w1, 3, padding=1)
        self.down1 = nn.Conv2d(w1, w2, 3, padding=1)
        self.level1 = ResBlock(w2)
        self.down2 = nn.Conv2d(w2, w3, 3, padding=1)
        self.level2 = nn.Sequential(ResBlock(w3), ResBlock(w3))
        self.down3 = nn.Conv2d(w3, w4, 3, padding=1)
        self.level3 = nn.Sequential(ResBlock(w4), ResBlock(w4))
        self.up3 = nn.Conv2d(w4, w3, 1)
        self.up2 = nn.Conv2d(w3, w2, 1)
        self.up1 = nn.Conv2d(w2, w1, 1)
        self.refine = nn.Conv2d(w1, w1, 3, padding=1)
        self.tail = nn.Conv2d(w1, 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @staticmethod
    def _up(x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        f0 = F.leaky_relu(self.stem(x), 0.1)
        f1 = self.level1(F.leaky_relu(self.down1(F.avg_pool2d(f0, 2)), 0.1))
        f2 = self.level2(F.leaky_relu(self.down2(F.avg_pool2d(f1, 2)), 0.1))
        f3 = self.level3(F.leaky_relu(self.down3(F.avg_pool2d(f2, 2)), 0.1))
        f2 = f2 + self._up(self.up3(f3), f2)
        f1 = f1 + self._up(self.up2(f2), f1)
        f0 = f0 + self._up(self.up1(f1), f0)
        return self.tail(F.leaky_relu(self.refine(f0), 0.1))


class LightNet(DirectNet):
    """Global exposure/colour branch plus full-resolution local branch; [0, 1] RGB in and out."""

    size_multiple = 1  # any size: the local branch pads by replication to its own multiple of 8
    receptive_radius = 96  # pixels beyond which the local branch's output barely depends on the input
    exposure_control = True

    def __init__(self, width: int = 12, global_width: int = 32, global_size: int = 64) -> None:
        super().__init__()
        self.width, self.global_width, self.global_size = width, global_width, global_size
        self.global_branch = GlobalBranch(global_width, global_size)
        self.local_branch = LocalBranch(width)

    def config(self) -> dict[str, Any]:
        return {"width": self.width, "global_width": self.global_width, "global_size": self.global_size}

    def global_params(self, image: Tensor) -> GlobalParams:
        """The global branch's mapping, averaged with that of the mirrored photo: a scene and its
        mirror image deserve the same exposure and colour, and the average is a steadier guess."""
        small = F.adaptive_avg_pool2d(image.float(), self.global_size)  # mirror-symmetric bins: pool, then flip
        both = self.global_branch(torch.cat((small, small.flip(-1)), dim=0))
        n = image.shape[0]
        return GlobalParams(
            (both.stops[:n] + both.stops[n:]) / 2,
            (both.curve[:n] + both.curve[n:]) / 2,
            (both.matrix[:n] + both.matrix[n:]) / 2,
        )

    def global_mapping(self, image: Tensor, params: GlobalParams) -> Tensor:
        """The global part's picture alone, before the local pass (training scores it on thumbnails)."""
        return apply_global(image.float(), params)

    def forward(self, image: Tensor, params: GlobalParams | None = None) -> Tensor:
        if params is None:
            params = self.global_params(image)
        x = image.float()
        g = apply_global(x, params)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        inp = torch.cat((g, x), dim=1)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="replicate")
        # channels-last runs these thin convolutions faster on the CPU (same arithmetic, other memory order)
        out = self.local_branch(inp.contiguous(memory_format=torch.channels_last))[:, :, :h, :w]
        gain = torch.exp(torch.tanh(out[:, :1]))  # per-pixel, within e^-1..e^1
        return g * gain + 0.25 * torch.tanh(out[:, 1:])

    # ---- cost, for the engine's memory and tile planning ----------------------------------
    def working_set_floats(self, height: int, width: int) -> float:
        """Floats alive at the peak of one forward pass (full-resolution maps dominate)."""
        return float(height * width * (4 * self.width + 30))


def build_lightnet(config: dict[str, Any]) -> LightNet:
    limits = {"width": (4, 256), "global_width": (4, 256), "global_size": (4, 256)}
    return LightNet(**whole_number_settings(config, limits, "lightnet"))
