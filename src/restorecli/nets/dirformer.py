"""DIRformer: the Restormer-style U-shaped transformer of DiffIR, modulated by a 256-d prior (the IPR).

Every attention and feed-forward layer first maps the IPR through a bias-free
Linear(256 -> 2C) into a per-channel gain k1 and offset k2 and applies
x * k1 + k2 to its normalised input. Attention is Restormer's "transposed"
attention: a (C/heads x C/heads) matrix per head between L2-normalised
channel vectors, so its cost is linear in the number of pixels and its result
depends on the *whole* image (tiling changes results).

Module and parameter names follow the official checkpoints (`G.*` keys):
`norm1.body.weight`, `attn.kernel.0.weight`, `ffn.project_in.weight`, ...

Memory: at full resolution (deblurring a 1920x1080 photo) a plain forward
keeps about ten full-size copies of the widest feature map alive inside one
block. Above `chunk_bytes` the blocks compute the attention's q/k/v one at a
time and the feed-forward in (at most ~6) groups of hidden channels, with the
1x1 convolutions as GEMMs on the NCHW maps and project_out accumulated in
place, and the SR tail runs in bands of rows. These are the same per-element
operations in another order; only floating-point summation order changes
(measured on the conformance fixtures with every path forced: <= 2.4e-7).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_CHUNK_BYTES = 256 << 20  # largest temporary a block creates before it switches to chunks


def ffn_hidden(dim: int, factor: float) -> int:
    """Hidden width of the feed-forward: int(C * factor), truncated as the official code does (64*2.2 -> 140)."""
    return int(dim * factor)


class _NormParams(nn.Module):
    """Holds the gain (and bias) so the keys read `norm1.body.weight` / `norm1.body.bias`."""

    def __init__(self, dim: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None


class ChannelNorm(nn.Module):
    """Per-pixel LayerNorm over channels (biased variance, eps 1e-5).

    'BiasFree' divides by the standard deviation WITHOUT subtracting the mean
    (Restormer's quirk, kept because the weights were trained with it);
    'WithBias' is an ordinary LayerNorm with gain and bias.
    """

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        if kind not in ("BiasFree", "WithBias"):
            raise ValueError(f"LayerNorm_type must be 'BiasFree' or 'WithBias', not {kind!r}")
        self.subtract_mean = kind == "WithBias"
        self.body = _NormParams(dim, with_bias=self.subtract_mean)

    def forward(self, x: Tensor) -> Tensor:
        # Two explicit passes give torch.var's biased variance; torch's strided reduction
        # over dim 1 is several times slower on the CPU than these elementwise means.
        centred = x - x.mean(dim=1, keepdim=True)
        var = (centred * centred).mean(dim=1, keepdim=True)
        y = centred if self.subtract_mean else x.clone()
        y.div_(torch.sqrt(var + 1e-5))
        y.mul_(self.body.weight.view(1, -1, 1, 1).to(y.dtype))
        if self.body.bias is not None:
            y.add_(self.body.bias.view(1, -1, 1, 1).to(y.dtype))
        return y


def _modulate(x: Tensor, kernel: nn.Module, ipr: Tensor) -> Tensor:
    """x * k1 + k2 with [k1, k2] = kernel(ipr) split along channels (in place on the normalised input)."""
    c = x.shape[1]
    k = kernel(ipr).view(-1, 2 * c, 1, 1).to(x.dtype)
    return x.mul_(k[:, :c]).add_(k[:, c:])


def _pointwise(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 convolution as one batched GEMM on the NCHW map: (B, O, HW) = W (O, C) @ x (B, C, HW)."""
    b, c, h, w = x.shape
    out = torch.matmul(weight.reshape(weight.shape[0], c).to(x.dtype), x.reshape(b, c, h * w))
    if bias is not None:
        out.add_(bias.to(out.dtype).view(1, -1, 1))
    return out.view(b, -1, h, w)


def _l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """F.normalize(x, dim=-1) computed in place (the same division, without a second full-size tensor)."""
    return x.div_(x.norm(dim=-1, keepdim=True).clamp_min(eps))


class PriorAttention(nn.Module):
    """IPR-modulated multi-head transposed attention (channels attend to channels)."""

    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.kernel = nn.Sequential(nn.Linear(256, dim * 2, bias=False))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.chunk_bytes = DEFAULT_CHUNK_BYTES

    def _projection(self, x: Tensor, part: int | None) -> Tensor:
        """q, k or v (part 0, 1, 2) alone, or all three (None): 1x1 conv then depthwise 3x3.

        The single-part path multiplies the weight rows straight into the NCHW map
        (a GEMM; no reordered copy of `x` per call) and convolves only those channels.
        """
        if part is None:
            return self.qkv_dwconv(self.qkv(x))
        b, c, h, w = x.shape
        rows = slice(part * c, (part + 1) * c)
        y = _pointwise(x, self.qkv.weight[rows], None if self.qkv.bias is None else self.qkv.bias[rows])
        d_bias = None if self.qkv_dwconv.bias is None else self.qkv_dwconv.bias[rows]
        return F.conv2d(y, self.qkv_dwconv.weight[rows], d_bias, padding=1, groups=c)

    def forward(self, x: Tensor, ipr: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = _modulate(x, self.kernel, ipr)
        split = 6 * x.numel() * x.element_size() > self.chunk_bytes
        if split:
            q, k = self._projection(x, 0), self._projection(x, 1)
        else:
            q, k, v = self._projection(x, None).chunk(3, dim=1)
        q = q.reshape(b, self.heads, c // self.heads, h * w)
        k = k.reshape(b, self.heads, c // self.heads, h * w)
        q = _l2_normalize(q)
        k = _l2_normalize(k)
        attn = (q @ k.transpose(-2, -1)) * self.temperature.to(q.dtype)
        del q, k
        attn = attn.softmax(dim=-1)
        if split:
            v = self._projection(x, 2)
        del x
        out = attn @ v.reshape(b, self.heads, c // self.heads, h * w)
        del v
        return self.project_out(out.reshape(b, c, h, w))


class PriorFeedForward(nn.Module):
    """IPR-modulated gated depthwise feed-forward: gelu(x1) * x2 over int(C*factor) hidden channels."""

    def __init__(self, dim: int, factor: float, bias: bool) -> None:
        super().__init__()
        hidden = ffn_hidden(dim, factor)
        self.hidden = hidden
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)
        self.kernel = nn.Sequential(nn.Linear(256, dim * 2, bias=False))
        self.chunk_bytes = DEFAULT_CHUNK_BYTES

    def forward(self, x: Tensor, ipr: Tensor) -> Tensor:
        x = _modulate(x, self.kernel, ipr)
        b, _, h, w = x.shape
        per_channel = b * h * w * x.element_size()
        # A group's temporaries are ~4 maps of its width; let them reach 1.5 maps of the block
        # width, the level the attention peaks at anyway, so a group never gets tiny (<= 6 passes).
        room = max(self.chunk_bytes, int(1.5 * x.shape[1] * per_channel))
        group = max(1, min(self.hidden, room // max(1, 4 * per_channel)))
        if 4 * self.hidden * per_channel <= self.chunk_bytes:
            x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
            return self.project_out(F.gelu(x1) * x2)
        out: Tensor | None = None
        for start in range(0, self.hidden, group):
            out = self._group(x, start, min(start + group, self.hidden), out)
        assert out is not None
        if self.project_out.bias is not None:
            out.add_(self.project_out.bias.view(1, -1, 1, 1).to(out.dtype))
        return out

    def _group(self, x: Tensor, lo: int, hi: int, acc: Tensor | None) -> Tensor:
        """Hidden channels lo..hi: their gate pair, the gated product, and its share of project_out.

        GEMMs on the NCHW maps (no per-call reorder of `x`); the share is
        accumulated into `acc` in place instead of allocating a full-size map.
        """
        rows = torch.cat([torch.arange(lo, hi), torch.arange(self.hidden + lo, self.hidden + hi)]).to(x.device)
        w_in = self.project_in.weight.index_select(0, rows)
        b_in = None if self.project_in.bias is None else self.project_in.bias.index_select(0, rows)
        w_dw = self.dwconv.weight.index_select(0, rows)
        b_dw = None if self.dwconv.bias is None else self.dwconv.bias.index_select(0, rows)
        y = F.conv2d(_pointwise(x, w_in, b_in), w_dw, b_dw, padding=1, groups=2 * (hi - lo))
        x1, x2 = y.chunk(2, dim=1)
        gated = F.gelu(x1).mul_(x2)
        del y, x1, x2
        w_out = self.project_out.weight[:, lo:hi]
        if acc is None:
            return _pointwise(gated, w_out, None)
        b, c, h, w = acc.shape
        flat = acc.view(b, c, h * w)
        flat.baddbmm_(w_out.reshape(c, hi - lo).to(flat.dtype).expand(b, -1, -1), gated.reshape(b, hi - lo, h * w))
        return acc


class PriorTransformerBlock(nn.Module):
    """x + attn(norm1(x)), then + ffn(norm2(x)), both modulated by the IPR."""

    def __init__(self, dim: int, heads: int, factor: float, bias: bool, norm: str) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(dim, norm)
        self.attn = PriorAttention(dim, heads, bias)
        self.norm2 = ChannelNorm(dim, norm)
        self.ffn = PriorFeedForward(dim, factor, bias)

    def forward(self, x: Tensor, ipr: Tensor, inplace: bool = False) -> Tensor:
        """inplace=True adds the residuals into `x` itself (callers pass feature maps nobody else holds)."""
        y = self.attn(self.norm1(x), ipr)
        x = x.add_(y) if inplace else x + y
        del y
        y = self.ffn(self.norm2(x), ipr)
        return x.add_(y)


def _run(blocks: nn.ModuleList, x: Tensor, ipr: Tensor, inplace_first: bool) -> Tensor:
    """A stage: blocks in order; the first block adds in place only when the caller allows it."""
    for i, block in enumerate(blocks):
        x = block(x, ipr, inplace=inplace_first or i > 0)
    return x


class _Resample(nn.Module):
    """3x3 conv (no bias) then pixel (un)shuffle by 2; keys `down1_2.body.0.weight` etc."""

    def __init__(self, channels_in: int, channels_out: int, down: bool) -> None:
        super().__init__()
        shuffle = nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2)
        self.body = nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), shuffle)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class _PatchEmbed(nn.Module):
    def __init__(self, channels_in: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels_in, dim, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class UpsampleTail(nn.Sequential):
    """SR head: (conv 3x3 C->4C, PixelShuffle 2) twice (x4, `tail.0.*`), then conv 3x3 C->out (`tail.1`).

    Large inputs run in bands of rows with a 2-row halo: every output pixel
    sees exactly the inputs it would see unbanded (the head's reach is < 2 rows).
    """

    HALO = 2

    def __init__(self, channels: int, out_channels: int, scale: int = 4) -> None:
        if scale & (scale - 1) or scale < 2:
            raise ValueError(f"the DIRformer SR tail upsamples by a power of two, not {scale}")
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
        super().__init__(nn.Sequential(*layers), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.scale = scale
        self.chunk_bytes = DEFAULT_CHUNK_BYTES

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # The widest temporary: 4C channels at (scale/2)^2 times the pixels, twice (before/after shuffle).
        per_row = 2 * 4 * c * (self.scale // 2) ** 2 * w * b * x.element_size()
        band = max(1, self.chunk_bytes // max(1, per_row))
        if band >= h:
            return super().forward(x)
        s = self.scale
        out = x.new_empty(b, self[1].out_channels, h * s, w * s)
        for top in range(0, h, band):
            bottom = min(top + band, h)
            lo, hi = max(0, top - self.HALO), min(h, bottom + self.HALO)
            y = super().forward(x[:, :, lo:hi])
            out[:, :, top * s : bottom * s] = y[:, :, (top - lo) * s : (bottom - lo) * s]
        return out


class DIRformer(nn.Module):
    """The restoration transformer `G`.

    forward returns the head output BEFORE any residual: the SR tail (always x4
    on its input features) or the 3x3 `output` conv. The engine adds the
    task's residual (nearest-upsampled input, the input, or nothing).
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: tuple[int, int, int, int] | list[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, int, int, int] | list[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 (official config name)
        head: str = "output",
        tail_scale: int = 4,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads need 4 entries (3 levels + latent)")

        def stage(width: int, n_heads: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(
                PriorTransformerBlock(width, n_heads, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(count)
            )

        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        self.patch_embed = _PatchEmbed(inp_channels, d1)
        self.encoder_level1 = stage(d1, heads[0], num_blocks[0])
        self.down1_2 = _Resample(d1, d1 // 2, down=True)
        self.encoder_level2 = stage(d2, heads[1], num_blocks[1])
        self.down2_3 = _Resample(d2, d2 // 2, down=True)
        self.encoder_level3 = stage(d3, heads[2], num_blocks[2])
        self.down3_4 = _Resample(d3, d3 // 2, down=True)
        self.latent = stage(d4, heads[3], num_blocks[3])
        self.up4_3 = _Resample(d4, d4 * 2, down=False)
        self.reduce_chan_level3 = nn.Conv2d(d4, d3, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(d3, heads[2], num_blocks[2])
        self.up3_2 = _Resample(d3, d3 * 2, down=False)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(d2, heads[1], num_blocks[1])
        self.up2_1 = _Resample(d2, d2 * 2, down=False)
        # Level 1 of the decoder keeps the concatenated 2*dim channels (no 1x1 reduction).
        self.decoder_level1 = stage(d2, heads[0], num_blocks[0])
        self.refinement = stage(d2, heads[0], num_refinement_blocks)
        self.head = head
        if head == "tail":
            self.tail = UpsampleTail(d2, out_channels, tail_scale)
        elif head == "output":
            self.output = nn.Conv2d(d2, out_channels, kernel_size=3, padding=1, bias=bias)
        else:
            raise ValueError(f"DIRformer head must be 'tail' or 'output', not {head!r}")

    def set_chunk_bytes(self, limit: int) -> None:
        """Largest temporary (bytes) a block or the tail may create before it computes in pieces."""
        for module in self.modules():
            if hasattr(module, "chunk_bytes"):
                module.chunk_bytes = int(limit)

    def forward(self, x: Tensor, ipr: Tensor) -> Tensor:
        enc1 = _run(self.encoder_level1, self.patch_embed(x), ipr, inplace_first=True)
        enc2 = _run(self.encoder_level2, self.down1_2(enc1), ipr, inplace_first=True)
        enc3 = _run(self.encoder_level3, self.down2_3(enc2), ipr, inplace_first=True)
        y = _run(self.latent, self.down3_4(enc3), ipr, inplace_first=True)
        y = self.reduce_chan_level3(torch.cat([self.up4_3(y), enc3], 1))
        del enc3
        y = _run(self.decoder_level3, y, ipr, inplace_first=True)
        y = self.reduce_chan_level2(torch.cat([self.up3_2(y), enc2], 1))
        del enc2
        y = _run(self.decoder_level2, y, ipr, inplace_first=True)
        y = torch.cat([self.up2_1(y), enc1], 1)
        del enc1
        y = _run(self.decoder_level1, y, ipr, inplace_first=True)
        y = _run(self.refinement, y, ipr, inplace_first=True)
        return self.tail(y) if self.head == "tail" else self.output(y)


def dirformer_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The DIRformer arguments among a DiffIRS2 config's keys (official names)."""
    names = (
        "out_channels",
        "dim",
        "num_blocks",
        "num_refinement_blocks",
        "heads",
        "ffn_expansion_factor",
        "bias",
        "LayerNorm_type",
    )
    return {k: config[k] for k in names if k in config}
