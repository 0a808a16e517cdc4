"""The DiffIR stage-2 network: prior extractor (CPEN), prior denoiser, schedule buffers, and the DIRformer.

(The schedule the buffers hold is computed in `restorecli.engines.diffir.schedule`.)

DiffIR never diffuses images. A small CNN (the CPEN) squeezes the degraded
input into a 256-d condition c; a 4-step diffusion chain in that 256-d space
turns one Gaussian draw into the "IR prior representation" (IPR), with an
MLP denoiser that sees [c, t/40, state]; the DIRformer then restores the image
under the IPR's channel-wise modulation.

Key layout (an interface: the official S2 checkpoints use exactly these names):
  G.*          the DIRformer                     (restorecli.nets.dirformer)
  condition.*  the CPEN                           E.* convs and ResBlocks, mlp.*
  denoise.*    the denoiser MLP                   resmlp.0 (513->256), resmlp.2.resmlp.0 (256->256)
  diffusion.*  the 12 schedule buffers (betas ... posterior_mean_coef2)
The official files also hold `diffusion.model.*` and `diffusion.condition.*`,
second names of the same denoiser and CPEN tensors; the engine's loader checks
and drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .dirformer import DIRformer, dirformer_kwargs

IPR_DIM = 256
CPEN_FEATS = 64
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


class ScheduleBuffers(nn.Module):
    """`diffusion.*`: the chain's schedule as float32 buffers (the official names), overwritten by the file's.

    Built as zeros of the trained length; the engine fills them from the config
    (`restorecli.engines.diffir.schedule.trained_schedule`) before a checkpoint overwrites them.
    """

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        for name in SCHEDULE_BUFFERS:
            self.register_buffer(name, torch.zeros(timesteps, dtype=torch.float32))

    def set_values(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Store float64 schedule arrays as the float32 buffers (on the buffers' device)."""
        for name in SCHEDULE_BUFFERS:
            old = getattr(self, name)
            setattr(self, name, torch.as_tensor(arrays[name], dtype=torch.float32).to(old.device))

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])


# ---- CPEN and denoiser -------------------------------------------------------------


class _ResBlock(nn.Module):
    """conv3x3 -> LeakyReLU(0.1) -> conv3x3, plus the input (keys `body.0`, `body.2`)."""

    def __init__(self, feats: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(feats, feats, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(feats, feats, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + x


class CPEN(nn.Module):
    """Compact prior extraction: conv + ResBlocks + 3 convs, global average pool, 2-layer MLP -> c (B, 256).

    `unshuffle` > 1 pixel-unshuffles the input first (deblurring and inpainting
    checkpoints: 4); `in_channels` is counted after it. Every activation,
    including the MLP's last, is LeakyReLU(0.1).
    """

    def __init__(self, in_channels: int, n_encoder_res: int, unshuffle: int = 1, feats: int = CPEN_FEATS) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        layers: list[nn.Module] = [nn.Conv2d(in_channels, feats, 3, padding=1), act()]
        layers += [_ResBlock(feats) for _ in range(n_encoder_res)]
        layers += [
            nn.Conv2d(feats, feats * 2, 3, padding=1),
            act(),
            nn.Conv2d(feats * 2, feats * 2, 3, padding=1),
            act(),
            nn.Conv2d(feats * 2, feats * 4, 3, padding=1),
            act(),
            nn.AdaptiveAvgPool2d(1),
        ]
        self.E = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(feats * 4, feats * 4), act(), nn.Linear(feats * 4, feats * 4), act())

    def forward(self, x: Tensor) -> Tensor:
        if self.unshuffle > 1:
            x = nn.functional.pixel_unshuffle(x, self.unshuffle)
        return self.mlp(self.E(x).flatten(1))


class _DenseAct(nn.Module):
    """Linear + LeakyReLU(0.1) (keys `resmlp.0.*`); the official 'ResMLP' has no residual."""

    def __init__(self, feats: int) -> None:
        super().__init__()
        self.resmlp = nn.Sequential(nn.Linear(feats, feats), nn.LeakyReLU(0.1))

    def forward(self, x: Tensor) -> Tensor:
        return self.resmlp(x)


class PriorDenoiser(nn.Module):
    """x0 estimate of the IPR from [c (256), t / (10*T) (1), state (256)]; ends in a LeakyReLU, as trained."""

    def __init__(self, n_denoise_res: int = 1, timesteps: int = 4, feats: int = IPR_DIM) -> None:
        super().__init__()
        self.max_period = timesteps * 10
        layers: list[nn.Module] = [nn.Linear(2 * feats + 1, feats), nn.LeakyReLU(0.1)]
        layers += [_DenseAct(feats) for _ in range(n_denoise_res)]
        self.resmlp = nn.Sequential(*layers)

    def forward(self, state: Tensor, t: Tensor, c: Tensor) -> Tensor:
        """state, c: (B, 256); t: (B,) integer timesteps of the trained chain."""
        t = t.float().view(-1, 1) / self.max_period
        return self.resmlp(torch.cat([c, t.to(c.dtype), state], dim=1))


# ---- the whole stage-2 network -------------------------------------------------------


class DiffIRS2(nn.Module):
    """Container with the official key layout; the engine drives the prior chain and the residual."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        net_in_channels: int,
        cpen_in_channels: int,
        cpen_unshuffle: int,
        head: str,
    ) -> None:
        super().__init__()
        self.G = DIRformer(inp_channels=net_in_channels, head=head, **dirformer_kwargs(config))
        self.condition = CPEN(cpen_in_channels, int(config.get("n_encoder_res", 6)), unshuffle=cpen_unshuffle)
        self.denoise = PriorDenoiser(int(config.get("n_denoise_res", 1)), int(config.get("timesteps", 4)))
        self.diffusion = ScheduleBuffers(int(config.get("timesteps", 4)))


# How each task kind feeds the network (counted on the image channels c of the task input):
#   sr:      the padded LQ, pixel-unshuffled by 4/scale, goes to both CPEN and G; head = x4 tail.
#   deblur:  the image goes to G as is; the CPEN unshuffles it by 4 itself; head = output conv.
#   inpaint: cat[masked image, mask] (4 channels), as deblur otherwise.
KINDS = ("diffir.sr", "diffir.deblur", "diffir.inpaint")


def input_unshuffle(kind: str, config: dict[str, Any]) -> int:
    """Pixel-unshuffle factor applied to the network input before CPEN and G (SR x2: 2, x1: 4, else 1)."""
    if kind != "diffir.sr":
        return 1
    scale = int(config.get("scale", 4))
    if scale not in (1, 2, 4):
        raise ValueError(f"DiffIR SR supports scale 1, 2 or 4, not {scale}")
    return 4 // scale


def build_diffir(kind: str, config: dict[str, Any], device: torch.device | str = "cpu") -> DiffIRS2:
    """The S2 network of one registry component (device='meta' for key/shape checks)."""
    if kind not in KINDS:
        raise ValueError(f"unknown DiffIR component kind {kind!r} (known: {', '.join(KINDS)})")
    channels = int(config.get("inp_channels", 3))
    u = input_unshuffle(kind, config)
    if kind == "diffir.sr":
        net_in, cpen_in, cpen_u, head = channels * u * u, channels * u * u, 1, "tail"
    else:
        net_in, cpen_in, cpen_u, head = channels, channels * 16, 4, "output"
    with torch.device(device):
        return DiffIRS2(config, net_in_channels=net_in, cpen_in_channels=cpen_in, cpen_unshuffle=cpen_u, head=head)
