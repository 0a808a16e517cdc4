"""The Dynamic Dual-Output diffusion (DDO) U-Net: the DDIM/DDPM CIFAR-10 U-Net with 7 output channels.

The official code (yanivbenny/dual_diffusion, src/unet.py) reuses the U-Net of
the DDIM paper's PyTorch port. DDO only changes the number of output channels:
0:3 are the x0 estimate, 3:6 the noise estimate and 6 the logit of the per-pixel
gate that mixes them. The attribute names below reproduce the checkpoint key
names (`temb.dense.0`, `down.1.attn.0.q`, `mid.block_1`, `up.3.upsample.conv`,
...), which are the interface to the official files.

Config names are the official ones (`conf.model.*`) plus `resolution`
(`conf.dataset.resolution`): attention runs at the resolutions
`resolution // s` for `s in attn_strides`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups, eps 1e-6 (not torch's default 1e-5), as the official network."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding [sin | cos] with frequencies exp(-k log(1e4) / (dim/2 - 1)), in float32.

    The frequencies are built in float32 like the official module's `inv_freq`
    (it is a plain attribute there, so it is not part of the checkpoint).
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(10000) / (half - 1)))
    args = t.reshape(-1).to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv twice, timestep added in between; 1x1 shortcut when channels change."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, 1x1 convolutions for q, k, v and the output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        # (B, HW, C) sequences; scale C^-1/2 as the official bmm version.
        q, k, v = (conv(h).reshape(b, c, hh * ww).transpose(1, 2) for conv in (self.q, self.k, self.v))
        out = attention(q, k, v, scale=c ** -0.5)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, hh, ww))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one zero row/column at the bottom/right (asymmetric, as official)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder or decoder: `block`, `attn` (maybe empty), and a resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class DDOUNet(nn.Module):
    """x_t (B, 3, R, R), integer timesteps (B,) -> (B, out_channels, R, R)."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: int,
        channel_multiplier: Sequence[int],
        n_res_blocks: int,
        resolution: int,
        attn_resolutions: Sequence[int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.resolution = resolution
        self.n_res_blocks = n_res_blocks
        mult = tuple(channel_multiplier)
        in_mult = (1, *mult)
        temb_ch = channels * 4

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(channels, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)

        res = resolution
        self.down = nn.ModuleList()
        block_in = channels
        for level, m in enumerate(mult):
            down = Level()
            block_in, block_out = channels * in_mult[level], channels * m
            for _ in range(n_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, temb_ch, dropout))
                block_in = block_out
                if res in attn_resolutions:
                    down.attn.append(AttnBlock(block_in))
            if level != len(mult) - 1:
                down.downsample = Downsample(block_in)
                res //= 2
            self.down.append(down)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, temb_ch, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, temb_ch, dropout)

        ups: list[Level] = []
        for level in reversed(range(len(mult))):
            up = Level()
            block_out = channels * mult[level]
            for i in range(n_res_blocks + 1):
                skip = channels * (in_mult[level] if i == n_res_blocks else mult[level])
                up.block.append(ResnetBlock(block_in + skip, block_out, temb_ch, dropout))
                block_in = block_out
                if res in attn_resolutions:
                    up.attn.append(AttnBlock(block_in))
            if level != 0:
                up.upsample = Upsample(block_in)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)

        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"the DDO U-Net takes {self.resolution}x{self.resolution} inputs, got {tuple(x.shape)}")
        temb = timestep_embedding(t, self.channels).to(x.dtype)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](temb)))

        hs = [self.conv_in(x)]
        for down in self.down:
            for i, block in enumerate(down.block):
                h = block(hs[-1], temb)
                if len(down.attn):
                    h = down.attn[i](h)
                hs.append(h)
            if hasattr(down, "downsample"):
                hs.append(down.downsample(hs[-1]))

        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)

        for up in reversed(self.up):
            for i, block in enumerate(up.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(up.attn):
                    h = up.attn[i](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)

        return self.conv_out(F.silu(self.norm_out(h)))


def build_ddo_unet(config: Mapping[str, Any], device: torch.device | str = "cpu") -> DDOUNet:
    """Build from the official config names (`channels`, `channel_multiplier`, `n_res_blocks`, `attn_strides`, ...)."""
    resolution = int(config.get("resolution", 32))
    with torch.device(device):
        return DDOUNet(
            in_channels=int(config.get("in_channels", 3)),
            out_channels=int(config.get("out_channels", 7)),
            channels=int(config["channels"]),
            channel_multiplier=[int(m) for m in config["channel_multiplier"]],
            n_res_blocks=int(config["n_res_blocks"]),
            resolution=resolution,
            attn_resolutions=[resolution // int(s) for s in config.get("attn_strides", [2])],
            dropout=float(config.get("dropout", 0.0)),
        )
