"""The RDDM UNet (Liu et al., CVPR 2024) with the official checkpoint key names.

One `RDDMUnet` is the denoising-diffusion-pytorch style UNet the RDDM code
trains: weight-standardised 3x3 convolutions with group norm, a sinusoidal
time embedding that scales and shifts the first block of every residual block,
linear attention at every resolution and full softmax attention only in the
middle, where the feature map is smallest. Its input is the diffusion state,
optionally followed by the degraded image (restoration) and a third condition
image such as a shadow mask: 3, 6 or 9 channels.

`RDDMUnetRes` is the official `UnetRes` wrapper: `unet0` predicts the residual
(or the clean image, or the noise for a noise-only model) and, in two-network
models, `unet1` predicts the noise. Its state dict is what the official
checkpoints hold under `ema_model.model.`.

Module attribute names are chosen so that `state_dict()` keys equal the
official ones (`downs.0.2.fn.fn.to_qkv.weight` and so on); the forward pass is
written independently.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention, is_reference
from .blocks import sinusoidal_embedding


def _eps_for(x: Tensor) -> float:
    # The official code loosens the epsilon for anything but float32. It is keyed on the
    # parameter here, not the input: under autocast the weights stay float32 and the
    # normalisation is computed in float32, so the fp32 epsilon keeps fp16 runs close to fp32.
    return 1e-5 if x.dtype == torch.float32 else 1e-3


class WSConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised per output channel (zero mean, unit variance) on every call.

    Frozen weights are standardised once and the result is reused until the
    weight changes (its version counter moves), which saves work per step
    without changing a single value.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: tuple[tuple[Any, ...], Tensor] | None = None

    def standardized(self, eps: float) -> Tensor:
        w = self.weight
        if w.requires_grad and torch.is_grad_enabled():
            return self._standardize(w, eps)
        key = (w._version, w.data_ptr(), w.dtype, w.device, eps)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._standardize(w, eps))
        return self._cache[1]

    @staticmethod
    def _standardize(w: Tensor, eps: float) -> Tensor:
        dims = tuple(range(1, w.dim()))
        mean = w.mean(dim=dims, keepdim=True)
        var = w.var(dim=dims, unbiased=False, keepdim=True)
        return (w - mean) * (var + eps).rsqrt()

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x,
            self.standardized(_eps_for(self.weight)),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._cache = None  # device or dtype moves invalidate the cached kernel
        return super()._apply(fn, *args, **kwargs)


class ChannelNorm(nn.Module):
    """Layer norm across channels at every pixel, with a gain `g` and no bias (official `LayerNorm`)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        if self.g.dtype == torch.float32:
            x = x.float()  # reduced-precision activations are normalised in float32
        # Two explicit passes: the same biased variance as torch.var, but torch's strided
        # reduction over dim 1 is ~5x slower on the CPU than these elementwise means.
        centred = x - x.mean(dim=1, keepdim=True)
        var = (centred * centred).mean(dim=1, keepdim=True)
        return (centred * (var + _eps_for(self.g)).rsqrt() * self.g).to(dtype)


class PreNormed(nn.Module):
    """Normalise, then apply `fn` (keys `norm.g`, `fn.*`)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.norm = ChannelNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class Skip(nn.Module):
    """x + fn(x) (keys `fn.*`)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x) + x


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the (integer or scaled float) time: sin half, then cos half (DDPM's)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        return sinusoidal_embedding(t, self.dim)


class ConvBlock(nn.Module):
    """WS conv 3x3 -> group norm -> optional (scale + 1, shift) -> SiLU."""

    def __init__(self, dim: int, dim_out: int, groups: int) -> None:
        super().__init__()
        self.proj = WSConv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, scale_shift: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResBlock(nn.Module):
    """Two conv blocks, the first modulated by the time embedding, plus a (1x1 projected) skip."""

    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out * 2))
        self.block1 = ConvBlock(dim, dim_out, groups)
        self.block2 = ConvBlock(dim_out, dim_out, groups)
        self.res_conv: nn.Module = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        scale, shift = self.mlp(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.block1(x, (scale, shift))
        return self.block2(h) + self.res_conv(x)


class LinearAttention(nn.Module):
    """Efficient attention (softmax over features for q, over positions for k), cost linear in pixels."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), ChannelNorm(dim))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q, k, v = (z.reshape(b, self.heads, -1, h * w) for z in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        v = v / (h * w)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w))


class FullAttention(nn.Module):
    """Multi-head softmax attention over all positions (used once, at the lowest resolution)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        # (b, heads, positions, dim_head) for q, k and v, made contiguous: on strided inputs the
        # CPU's scaled_dot_product_attention falls back to the math kernel, which materialises
        # heads * tokens^2 (measured, official width at 1024^2: 9.7 GB and 44 s; contiguous:
        # 0.3 GB and 12 s, the same result within 3e-8)
        q, k, v = (
            z.reshape(b, self.heads, self.dim_head, h * w).transpose(-2, -1).contiguous()
            for z in self.to_qkv(x).chunk(3, dim=1)
        )
        out = attention(q, k, v, scale=self.dim_head**-0.5)
        return self.to_out(out.transpose(-2, -1).reshape(b, -1, h, w))


def _linear_attn(dim: int, heads: int, dim_head: int) -> nn.Module:
    return Skip(PreNormed(dim, LinearAttention(dim, heads, dim_head)))


class RDDMUnet(nn.Module):
    """One official RDDM `Unet` (learned variance, self-conditioning and random Fourier features off)."""

    def __init__(
        self,
        dim: int,
        dim_mults: tuple[int, ...] | list[int] = (1, 2, 4, 8),
        channels: int = 3,
        resnet_block_groups: int = 8,
        condition: bool = False,
        input_condition: bool = False,
        out_dim: int | None = None,
        attn_heads: int = 4,
        attn_dim_head: int = 32,
        pixel_unshuffle: int = 1,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.in_channels = channels * (1 + int(bool(condition)) + int(bool(input_condition)))
        self.out_dim = out_dim or channels
        self.levels = len(dim_mults)
        # pixel_unshuffle r > 1 (a restorecli extension, never in official checkpoints): the UNet
        # runs at 1/r resolution on r*r times the channels, folded in and out losslessly. On a
        # CPU this is ~4x faster for the same width, since full-resolution, few-channel layers
        # are the least efficient ones.
        self.unshuffle = int(pixel_unshuffle)
        self.attn_heads, self.attn_hidden = attn_heads, attn_heads * attn_dim_head
        fold = self.unshuffle**2
        dims = [dim, *(dim * m for m in dim_mults)]
        pairs = list(zip(dims[:-1], dims[1:]))
        time_dim = dim * 4
        g = resnet_block_groups

        self.init_conv = nn.Conv2d(self.in_channels * fold, dim, 7, padding=3)
        self.time_mlp = nn.Sequential(
            TimeEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.downs = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.downs.append(
                nn.ModuleList(
                    [
                        ResBlock(d_in, d_in, time_dim, g),
                        ResBlock(d_in, d_in, time_dim, g),
                        _linear_attn(d_in, attn_heads, attn_dim_head),
                        nn.Conv2d(d_in, d_out, 3, padding=1) if last else nn.Conv2d(d_in, d_out, 4, 2, 1),
                    ]
                )
            )
        mid = dims[-1]
        self.mid_block1 = ResBlock(mid, mid, time_dim, g)
        self.mid_attn = Skip(PreNormed(mid, FullAttention(mid, attn_heads, attn_dim_head)))
        self.mid_block2 = ResBlock(mid, mid, time_dim, g)
        self.ups = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(pairs)):
            last = i == len(pairs) - 1
            up: nn.Module = (
                nn.Conv2d(d_out, d_in, 3, padding=1)
                if last
                else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(d_out, d_in, 3, padding=1))
            )
            self.ups.append(
                nn.ModuleList(
                    [
                        ResBlock(d_out + d_in, d_out, time_dim, g),
                        ResBlock(d_out + d_in, d_out, time_dim, g),
                        _linear_attn(d_out, attn_heads, attn_dim_head),
                        up,
                    ]
                )
            )
        self.final_res_block = ResBlock(dim * 2, dim, time_dim, g)
        self.final_conv = nn.Conv2d(dim, self.out_dim * fold, 1)

    @property
    def size_multiple(self) -> int:
        """Input sides must be a multiple of this (the fold, then one halving per level but the last)."""
        return self.unshuffle * 2 ** (self.levels - 1)

    def working_set_floats(self, height: int, width: int) -> float:
        """Peak activations (in elements, batch 1, inference) of one forward pass at this padded size.

        The skip connections (two per level, plus their concatenations on the way up)
        stay alive; on top of them the widest level's transient maps (the two conv
        blocks, group norm, the linear attention's q/k/v and their softmax copies) and the middle block's full
        attention: its q/k/v/output copies, plus the heads * tokens^2 matrix (twice) only
        on the reference path (`nets.attention.reference_mode`), since the fused kernels
        work in blocks. MEASURED_PEAKS in tests/test_rddm.py holds the checks.
        """
        fold = self.unshuffle
        pixels = height * width / (fold * fold)
        widths = [self.init_conv.out_channels] + [down[0].block1.proj.out_channels for down in self.downs]
        hidden = self.attn_hidden
        skips = sum(4 * widths[level] * pixels / 4**level for level in range(self.levels))
        transient = max((8 * widths[level] + 5 * hidden) * pixels / 4**level for level in range(self.levels))
        tokens = self.middle_tokens(height, width)
        attention = 4 * hidden * tokens
        if is_reference():
            attention += 2 * self.attn_heads * tokens * tokens
        return skips + transient + attention

    def conv_flops_per_pixel(self) -> float:
        """Multiply-adds x2 of every convolution per input pixel (each at its level's resolution).

        `downs.i` runs at level i, `ups.j` at level levels-1-j, the middle block at the
        lowest level; everything sits behind the pixel-unshuffle fold.
        """
        fold = self.unshuffle**2
        total = 0.0
        for name, module in self.named_modules():
            if not isinstance(module, nn.Conv2d):
                continue
            parts = name.split(".")
            if parts[0] == "downs":
                level = int(parts[1])
            elif parts[0] == "ups":
                level = self.levels - 1 - int(parts[1])
            elif parts[0].startswith("mid"):
                level = self.levels - 1
            else:
                level = 0
            total += 2 * module.weight.numel() / (fold * 4**level)
        return total

    def middle_tokens(self, height: int, width: int) -> float:
        """Positions the middle block's full attention sees for a height x width input."""
        side = self.size_multiple
        return (height / side) * (width / side)

    def attention_flops_per_pixel(self, height: int, width: int) -> float:
        """The middle block's full attention per input pixel: it grows with the tokens of the tile."""
        return 4 * self.attn_hidden * self.middle_tokens(height, width) / self.size_multiple**2

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        if self.unshuffle > 1:
            return F.pixel_shuffle(self._forward(F.pixel_unshuffle(x, self.unshuffle), time), self.unshuffle)
        return self._forward(x, time)

    def _forward(self, x: Tensor, time: Tensor) -> Tensor:
        x = self.init_conv(x)
        first = x
        temb = self.time_mlp(time)
        skips = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, temb)
            skips.append(x)
            x = attn(block2(x, temb))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        for block1, block2, attn, up in self.ups:
            x = block1(torch.cat((x, skips.pop()), dim=1), temb)
            x = attn(block2(torch.cat((x, skips.pop()), dim=1), temb))
            x = up(x)
        x = self.final_res_block(torch.cat((x, first), dim=1), temb)
        return self.final_conv(x)


# attn_heads / attn_dim_head are the later denoising-diffusion-pytorch names; the official RDDM
# code fixes them at 4 and 32 (the defaults). Project-trained models use narrower attention,
# which is most of the cost at full resolution on a CPU.
UNET_KEYS = (
    "dim",
    "dim_mults",
    "channels",
    "resnet_block_groups",
    "condition",
    "input_condition",
    "out_dim",
    "attn_heads",
    "attn_dim_head",
    "pixel_unshuffle",
)


def unet_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The RDDMUnet arguments in a registry config (other keys, e.g. num_unet, are the wrapper's)."""
    kwargs = {k: config[k] for k in UNET_KEYS if k in config}
    if "dim_mults" in kwargs:
        kwargs["dim_mults"] = tuple(int(m) for m in kwargs["dim_mults"])
    for flag in ("self_condition", "learned_variance", "learned_sinusoidal_cond", "random_fourier_features"):
        if config.get(flag):
            raise ValueError(f"RDDM UNet option {flag}=true is not supported")
    if config.get("init_dim") not in (None, config.get("dim")):
        raise ValueError("RDDM UNet init_dim different from dim is not supported")
    return kwargs


class RDDMUnetRes(nn.Module):
    """Official `UnetRes` with separate networks: `unet0` (residual head) and, if two, `unet1` (noise head)."""

    def __init__(self, num_unet: int = 2, **unet: Any) -> None:
        super().__init__()
        if num_unet not in (1, 2):
            raise ValueError(f"num_unet must be 1 or 2, not {num_unet}")
        self.num_unet = num_unet
        self.unet0 = RDDMUnet(**unet)
        if num_unet == 2:
            self.unet1 = RDDMUnet(**unet)

    def networks(self) -> tuple[RDDMUnet, RDDMUnet | None]:
        return self.unet0, getattr(self, "unet1", None)

    def forward(self, x: Tensor, time0: Tensor, time1: Tensor | None = None) -> list[Tensor]:
        outs = [self.unet0(x, time0)]
        if self.num_unet == 2:
            outs.append(self.unet1(x, time0 if time1 is None else time1))
        return outs


def build_unet(config: dict[str, Any]) -> RDDMUnet:
    return RDDMUnet(**unet_kwargs(config))


def build_unetres(config: dict[str, Any]) -> RDDMUnetRes:
    return RDDMUnetRes(num_unet=int(config.get("num_unet", 2)), **unet_kwargs(config))
