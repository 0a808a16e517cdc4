"""The Dynamic Dual-Output diffusion (DDO) U-Net: the DDIM/DDPM CIFAR-10 U-Net with 7 output channels.

The official code (yanivbenny/dual_diffusion, src/unet.py) reuses the U-Net of
the DDIM paper's PyTorch port. DDO only changes the number of output channels:
0:3 are the x0 estimate, 3:6 the noise estimate and 6 the logit of the per-pixel
gate that mixes them. The attribute names below reproduce the checkpoint key
names (`temb.dense.0`, `down.1.attn.0.q`, `mid.block_1`, `up.3.upsample.conv`,
...), which are the interface to the official files; the blocks are shared
with the VQ-GAN autoencoder (`nets.blocks`).

Config names are the official ones (`conf.model.*`) plus `resolution`
(`conf.dataset.resolution`): attention runs at the resolutions
`resolution // s` for `s in attn_strides`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import Downsample, Level, Middle, ResnetBlock, SelfAttention, Upsample, group_norm, sinusoidal_embedding


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
                    down.attn.append(SelfAttention(block_in))
            if level != len(mult) - 1:
                down.downsample = Downsample(block_in)
                res //= 2
            self.down.append(down)

        self.mid = Middle(block_in, temb_ch, dropout)

        ups: list[Level] = []
        for level in reversed(range(len(mult))):
            up = Level()
            block_out = channels * mult[level]
            for i in range(n_res_blocks + 1):
                skip = channels * (in_mult[level] if i == n_res_blocks else mult[level])
                up.block.append(ResnetBlock(block_in + skip, block_out, temb_ch, dropout))
                block_in = block_out
                if res in attn_resolutions:
                    up.attn.append(SelfAttention(block_in))
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
        temb = sinusoidal_embedding(t, self.channels).to(x.dtype)
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

        h = self.mid(hs[-1], temb)

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
