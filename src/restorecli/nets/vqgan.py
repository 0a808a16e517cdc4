"""The VQ-GAN autoencoder ResShift diffuses in (the official `VQModelTorch` key layout).

ResShift never quantizes on the way in: the encoder latent of the (upsampled)
low-quality image is the anchor of the diffusion chain, and only the final
latent is snapped to the codebook before decoding. So the model exposes
`encode` (encoder + quant_conv), `quantize` (nearest code) and `decode`
(quantize + post_quant_conv + decoder) separately.

Parameter names equal the official ones (`encoder.down.0.block.1.conv2.weight`,
`quantize.embedding.weight`, ...), so official files load without renaming.
The blocks are shared with the DDO U-Net (`nets.blocks`). The middle blocks'
single-head attention over every latent position goes through
`nets.attention.attention` (scaled_dot_product_attention), which computes the
same function as the official explicit softmax without holding the (HW x HW)
matrix that makes the official code run out of memory on large images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import Downsample, Level, Middle, ResnetBlock, SelfAttention, Upsample, conv3, group_norm

# Distances are computed for at most this many (position, code) pairs at a time,
# bounding the (positions x codes) matrix to 256 MiB in fp32.
_DISTANCE_CHUNK = 1 << 26


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x) evaluated as the official code does (F.silu differs in the last bits).

    Bit-equal intermediates keep the comparison with the official outputs tight; at
    inference the product is taken in place so it costs no extra activation.
    """
    gate = torch.sigmoid(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return x * gate
    return gate.mul_(x)


def _blocks_per_level(num_res_blocks: int | list[int], levels: int) -> list[int]:
    if isinstance(num_res_blocks, int):
        return [num_res_blocks] * levels
    counts = [int(n) for n in num_res_blocks]
    if len(counts) != levels:
        raise ValueError(f"num_res_blocks has {len(counts)} entries for {levels} levels")
    return counts


def _level(block_in: int, block_out: int, count: int, attention: bool) -> tuple[Level, int]:
    """One resolution of the encoder or decoder: `count` resnet blocks, each followed by self-attention
    where the resolution has it, built in the official order; and the channels that leave it."""
    blocks, attns = [], []
    for _ in range(count):
        blocks.append(ResnetBlock(block_in, block_out, act=swish))
        block_in = block_out
        if attention:
            attns.append(SelfAttention(block_in))
    return Level(blocks, attns), block_in


class Encoder(nn.Module):
    def __init__(
        self,
        *,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int | list[int],
        in_channels: int,
        resolution: int,
        z_channels: int,
        attn_resolutions: list[int] = (),
        **_: Any,
    ) -> None:
        super().__init__()
        levels = len(ch_mult)
        counts = _blocks_per_level(num_res_blocks, levels)
        self.conv_in = conv3(in_channels, ch)
        in_mult = (1, *ch_mult)
        res = resolution
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(levels):
            level, block_in = _level(ch * in_mult[i], ch * ch_mult[i], counts[i], res in attn_resolutions)
            if i != levels - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = Middle(block_in, act=swish)
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3(block_in, z_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(
        self,
        *,
        ch: int,
        out_ch: int,
        ch_mult: list[int],
        num_res_blocks: int | list[int],
        resolution: int,
        z_channels: int,
        attn_resolutions: list[int] = (),
        **_: Any,
    ) -> None:
        super().__init__()
        levels = len(ch_mult)
        counts = _blocks_per_level(num_res_blocks, levels)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.conv_in = conv3(z_channels, block_in)
        self.mid = Middle(block_in, act=swish)
        ups: list[nn.Module] = []
        for i in reversed(range(levels)):
            level, block_in = _level(block_in, ch * ch_mult[i], counts[i] + 1, res in attn_resolutions)
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            ups.insert(0, level)  # stored lowest index = highest resolution, as the official list
        self.up = nn.ModuleList(ups)
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3(block_in, out_ch)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook lookup; distances as |z|^2 + |e|^2 - 2 z.e in fp32, like the official code.

    The official expression is kept term for term (and the first minimum wins),
    so ties and near-ties pick the same code as the reference.
    """

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z: (B, C, H, W) -> (quantized (B, C, H, W) fp32, indices (B*H*W,) in (b, h, w) order)."""
        b, c, h, w = z.shape
        flat = z.float().permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight.float()
        codes_sq = torch.sum(codes**2, dim=1)
        n = flat.shape[0]
        rows = max(1, _DISTANCE_CHUNK // codes.shape[0])
        index = torch.empty(n, dtype=torch.long, device=flat.device)
        for start in range(0, n, rows):
            part = flat[start : start + rows]
            dist = torch.sum(part**2, dim=1, keepdim=True) + codes_sq - 2 * torch.einsum("bd,dn->bn", part, codes.t())
            index[start : start + rows] = torch.argmin(dist, dim=1)
        picked = F.embedding(index, codes)
        # The official straight-through form z + (e - z); in fp32 it can differ from e by one ulp.
        picked = flat + (picked - flat)
        return picked.view(b, h, w, c).permute(0, 3, 1, 2).contiguous(), index


class VQAutoencoder(nn.Module):
    """encoder + quant_conv (encode), quantize + post_quant_conv + decoder (decode)."""

    def __init__(self, ddconfig: dict[str, Any], n_embed: int, embed_dim: int) -> None:
        super().__init__()
        if ddconfig.get("double_z", False):
            raise ValueError("a VQ autoencoder needs ddconfig.double_z = false")
        if ddconfig.get("padding_mode", "zeros") != "zeros":
            raise ValueError(f"unsupported ddconfig.padding_mode {ddconfig['padding_mode']!r} (only 'zeros')")
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        z = int(ddconfig["z_channels"])
        self.quant_conv = nn.Conv2d(z, embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z, kernel_size=1)
        self.downscale = 2 ** (len(ddconfig["ch_mult"]) - 1)

    def encode(self, x: Tensor) -> Tensor:
        """Image in [-1, 1] -> continuous latent (no quantization, as ResShift uses it)."""
        return self.quant_conv(self.encoder(x))

    def decode_quantized(self, quantized: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(quantized.to(self.post_quant_conv.weight.dtype)))

    def decode(self, z: Tensor) -> Tensor:
        quantized, _ = self.quantize(z)
        return self.decode_quantized(quantized)


def build_vq(config: dict[str, Any], device: torch.device | str = "cpu") -> VQAutoencoder:
    """Build from a registry config {embed_dim, n_embed, ddconfig}; device='meta' allocates nothing."""
    with torch.device(device):
        return VQAutoencoder(dict(config["ddconfig"]), int(config["n_embed"]), int(config["embed_dim"]))
