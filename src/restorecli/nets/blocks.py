"""Pieces shared by the networks that come from the DDPM / taming-transformers family.

The DDO U-Net (the DDIM paper's CIFAR-10 network) and the VQ-GAN autoencoder
ResShift diffuses in share their building blocks: 32-group norms with eps 1e-6,
a GroupNorm-activation-conv residual block (with or without a timestep
embedding), single-head self-attention over all pixels, an asymmetrically
padded stride-2 downsampler, a nearest-neighbour upsampler, and a "level" of
blocks at one resolution. The attribute names are the official checkpoint key
names (`norm1`, `conv1`, `temb_proj`, `nin_shortcut`, `q`, `k`, `v`,
`proj_out`, `block_1`, `attn_1`, ...), so both networks load official files
unchanged. The sinusoidal timestep embedding is the DDPM one, used by DDO and RDDM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention

Activation = Callable[[Tensor], Tensor]


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups, eps 1e-6 (not torch's default 1e-5), as the official networks."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """DDPM timestep features [sin | cos] with frequencies exp(-k log(1e4) / (dim/2 - 1)), in float32.

    The frequencies are built in float32 like the official modules build them (a plain
    attribute or computed on the fly, so never part of a checkpoint). `t` may be integer
    timesteps or float times (RDDM's scaled generation times).
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(10000) / (half - 1)))
    args = t.reshape(-1).to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class ResnetBlock(nn.Module):
    """norm-act-conv twice, the timestep embedding (if any) added in between; 1x1 shortcut when the width changes.

    `act` is the activation the official network evaluates (F.silu, or the VQ-GAN's
    explicit x * sigmoid(x), which differs from F.silu in the last bits).
    """

    def __init__(
        self, cin: int, cout: int, temb_channels: int = 0, dropout: float = 0.0, act: Activation = F.silu
    ) -> None:
        super().__init__()
        self.act = act
        self.norm1 = group_norm(cin)
        self.conv1 = conv3(cin, cout)
        if temb_channels:
            self.temb_proj = nn.Linear(temb_channels, cout)
        self.norm2 = group_norm(cout)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = conv3(cout, cout)
        self.nin_shortcut = nn.Conv2d(cin, cout, kernel_size=1) if cin != cout else None

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        if temb is not None:
            h = h + self.temb_proj(self.act(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        skip = self.nin_shortcut(x) if self.nin_shortcut is not None else x
        return skip + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all positions of a feature map, 1x1-conv q, k, v and output, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)

        def tokens(t: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1, HW, C)
            # Contiguous channels: with strided inputs the CPU kernel falls back to the
            # plain path and materialises the (HW x HW) matrix.
            return t.reshape(b, c, h * w).transpose(1, 2).contiguous().unsqueeze(1)

        # scale C^-1/2, as the official explicit softmax(q k^T / sqrt(C)) v
        out = attention(tokens(self.q(y)), tokens(self.k(y)), tokens(self.v(y)), scale=c**-0.5)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one zero row and column at the bottom and right (asymmetric, as official)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of an encoder or decoder: `block.*`, `attn.*` (maybe empty), then an optional resampler."""

    def __init__(self, blocks: Sequence[nn.Module] = (), attns: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def run_blocks(self, h: Tensor, temb: Tensor | None = None) -> Tensor:
        for i, block in enumerate(self.block):
            h = block(h, temb)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        return h


class Middle(nn.Module):
    """block_1, attn_1, block_2 at the lowest resolution."""

    def __init__(self, channels: int, temb_channels: int = 0, dropout: float = 0.0, act: Activation = F.silu) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, temb_channels, dropout, act)
        self.attn_1 = SelfAttention(channels)
        self.block_2 = ResnetBlock(channels, channels, temb_channels, dropout, act)

    def forward(self, h: Tensor, temb: Tensor | None = None) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(h, temb)), temb)
