"""The ResShift / SinSR denoiser ("Swin UNet", official class `UNetModelSwin`).

A guided-diffusion UNet (ResBlocks with scale-shift timestep conditioning)
whose attention layers are Swin window-attention stages. The low-quality image
is concatenated to the latent input: as is when it already has the latent size
(super-resolution), else through a small strided conv stack that brings it down
to the latent size (inpainting: cat(lq, mask); face restoration: 512 px lq).

Module and attribute names follow the official code because checkpoint key
names are an interface (`input_blocks.1.1.blocks.0.attn.qkv.weight`, ...); the
code itself is written from scratch. Quirks of the official network that change
its numbers are reproduced on purpose and explained where they happen:

- Swin blocks normalise with GroupNorm(32) (computed in fp32), their MLP is two
  1x1 convolutions with exact GELU, and stages built at a resolution no larger
  than the window never shift;
- the stored `attn_mask` buffers are never read: the official block compares a
  list with a tuple, so it always rebuilds the mask for the current size, with
  an indexing slip that yields an unusual mask (see `shifted_window_mask`).
  The buffers are still registered so checkpoints load strictly.

Attention goes through `restorecli.nets.attention.attention` with one additive
float mask (relative position bias + window mask) for all windows at once:
`scaled_dot_product_attention` on GPU or in reduced precision, the explicit
softmax(QK^T + mask)V on CPU fp32 (see `WindowAttention.sdpa_on_cpu` for why).
Windows are cut and merged with reshapes only, never with Python loops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention, reference_mode

MASKED = -100.0  # the official code's "minus infinity" for masked pairs


# ---- small pieces ----------------------------------------------------------------


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding laid out [cos | sin] (cos first, as the official code), in fp32.

    The operation order matches the official one (frequencies computed on CPU,
    then moved) so the embedding is bit-identical on every device.
    """
    half = dim // 2
    steps = torch.arange(0, half, dtype=torch.float32, device="cpu")
    freqs = torch.exp(-math.log(max_period) * steps / half).to(timesteps.device)
    angles = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups computed in fp32, cast back to the input dtype (keeps fp16 runs stable)."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


class EmbeddingBlock(nn.Module):
    """Marker base: a block whose forward also takes the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class EmbedSequential(nn.Sequential):
    """nn.Sequential (for the `input_blocks.N.M` key layout) that hands `emb` to the blocks that take it."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, EmbeddingBlock) else layer(x)
        return x


class Downsample(nn.Module):
    """Halve the resolution: stride-2 3x3 conv (`op`), or 2x2 average pooling without conv_resample."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)
        else:
            if out_channels != channels:
                raise ValueError("average-pool downsampling cannot change the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution (nearest), then an optional 3x3 conv (`conv`)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(EmbeddingBlock):
    """guided-diffusion residual block; with scale-shift norm the embedding gives (scale, shift) of the second norm."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        scale_shift: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        cond = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = cond.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + cond)
        return self.skip_connection(x) + h


# ---- Swin window attention ----------------------------------------------------------


def to_windows(x: Tensor, window: int) -> Tensor:
    """(B, C, H, W) -> (B * nW, window*window, C); windows in row-major order, tokens row-major inside."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, c)


def from_windows(windows: Tensor, window: int, batch: int, height: int, width: int) -> Tensor:
    """Inverse of `to_windows`: (B * nW, window*window, C) -> (B, C, H, W)."""
    c = windows.shape[-1]
    x = windows.view(batch, height // window, width // window, window, window, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, c, height, width)


def relative_position_index(window: int) -> Tensor:
    """(N, N) index into the (2w-1)^2 bias table for every token pair of a window (the Swin layout)."""
    pos = torch.arange(window * window)
    rows, cols = pos // window, pos % window
    d_row = rows[:, None] - rows[None, :] + (window - 1)
    d_col = cols[:, None] - cols[None, :] + (window - 1)
    return d_row * (2 * window - 1) + d_col


def shifted_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device | str | None = None
) -> Tensor:
    """The additive (nW, N, N) mask the official shifted block really applies at size (height, width).

    Standard Swin labels the 3x3 regions created by the cyclic shift and masks
    token pairs from different regions. The official code writes the labels
    into a (1, 1, H, W) tensor with (1, H, W, 1)-style indexing, so the row
    slices land on the size-1 channel axis (only the last, `-shift:`, selects
    anything) and the column slices land on the image rows; it then reads each
    window's labels transposed. What survives: only windows in the last
    window-row are masked, and inside them token n = r*window + c belongs to
    group `c >= window - shift`; pairs across the two groups get -100, all else 0.
    With shift 0 (unshifted blocks) the result is all zeros.
    """
    n = window * window
    rows, cols = height // window, width // window
    mask = torch.zeros(rows, cols, n, n, device=device)
    if shift > 0:
        group = torch.arange(n, device=device) % window >= window - shift
        across = group[:, None] != group[None, :]
        mask[-1] = torch.where(across, MASKED, 0.0)
    return mask.view(rows * cols, n, n)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias.

    `sdpa_on_cpu` is off by default: on CPU fp32 the explicit softmax path is
    bit-identical to the official code, while SDPA differs by ~1e-6 per call
    (rounding order), which the network amplifies to ~1e-4 at t=0 and a 4-step
    chain to ~4e-4 -- over the conformance tolerance. For 64-token windows the
    explicit path costs little on CPU; GPU and reduced precision use SDPA.
    """

    sdpa_on_cpu = False

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window = window
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> Tensor:
        """(heads, N, N) bias gathered from the table."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.heads).permute(2, 0, 1)

    def forward(self, windows: Tensor, batch: int, window_mask: Tensor | None = None) -> Tensor:
        """windows: (B * nW, N, C); window_mask: (nW, N, N) additive, or None. Returns (B * nW, N, C).

        The bias and the window mask are folded into one additive mask, so the
        whole stage is one attention call over all windows. With a window mask
        the windows of an image are merged into the head axis, (B, nW*heads, N, d),
        so the (nW*heads, N, N) mask broadcasts over the batch without copies.
        """
        total, n, c = windows.shape
        qkv = self.qkv(windows).view(total, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.position_bias().to(qkv.dtype)
        if window_mask is None:
            q, k, v = qkv.unbind(0)
            out = self._attend(q, k, v, bias[None])
        else:
            num = window_mask.shape[0]
            mask = (bias[None] + window_mask[:, None].to(qkv.dtype)).reshape(1, num * self.heads, n, n)
            q, k, v = qkv.reshape(3, batch, num * self.heads, n, -1).unbind(0)
            out = self._attend(q, k, v, mask).view(total, self.heads, n, -1)
        out = out.transpose(1, 2).reshape(total, n, c)
        return self.proj(out)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        if q.device.type == "cpu" and q.dtype == torch.float32 and not self.sdpa_on_cpu:
            with reference_mode():
                return attention(q, k, v, mask, scale=self.scale)
        return attention(q, k, v, mask, scale=self.scale)


class ConvMlp(nn.Module):
    """Swin MLP as two 1x1 convolutions with exact (erf) GELU, on (B, C, H, W)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """One (shifted) window-attention block on (B, C, H, W) feature maps.

    `resolution` is the size the official model was built for; it decides the
    window (shrunk to the resolution when that is not larger than the window, and
    then never shifted) and the shape of the unused `attn_mask` buffer.
    """

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.window = window
        self.shift = shift
        # Registered for the key set only (its values come from the checkpoint); forward never reads it.
        stored = shifted_window_mask(resolution, resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", stored)
        self.norm1 = GroupNorm32(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = GroupNorm32(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple[int, int, str], Tensor] = {}

    def window_mask(self, height: int, width: int, device: torch.device) -> Tensor | None:
        """The recomputed shifted-window mask for this size (cached); None for unshifted blocks (all zeros)."""
        if not self.shift:
            return None
        key = (height, width, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(height, width, self.window, self.shift, device)
        return self._masks[key]

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if h % self.window or w % self.window:
            raise ValueError(f"Swin block input {h}x{w} is not a multiple of the window {self.window}")
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(2, 3))
        windows = self.attn(to_windows(y, self.window), b, self.window_mask(h, w, x.device))
        y = from_windows(windows, self.window, b, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchProjection(nn.Module):
    """1x1 conv between the UNet width and the Swin width (`proj`), optionally followed by GroupNorm (`norm`)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        self.norm: nn.Module = GroupNorm32(out_channels) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


class SwinStage(nn.Module):
    """Official `BasicLayer`: project in, `depth` blocks alternating unshifted/shifted, project out."""

    def __init__(
        self,
        channels: int,
        embed_dim: int,
        heads: int,
        window: int,
        depth: int,
        resolution: int,
        mlp_ratio: float,
        patch_norm: bool,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchProjection(channels, embed_dim, patch_norm)
        self.patch_unembed = PatchProjection(embed_dim, channels, patch_norm)
        self.blocks = nn.ModuleList(
            SwinBlock(embed_dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)


# ---- the UNet ----------------------------------------------------------------------


def lq_feature_extractor(lq_size: int, image_size: int, in_channels: int) -> tuple[nn.Module, int]:
    """Conv stack taking the lq (and mask) down to the latent size, and the channel count it yields.

    Each halving is conv3x3 -> SiLU -> stride-2 conv doubling the width
    (16 -> 32 -> 64 ...). With lq already at the latent size it is the identity.
    """
    layers: list[nn.Module] = []
    width, channels = 16, in_channels
    for _ in range(int(math.log(lq_size / image_size) / math.log(2))):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(), Downsample(width, True, 2 * width)]
        width *= 2
        channels = width
    return nn.Sequential(*layers), width


class ResShiftUNet(nn.Module):
    """The official `UNetModelSwin` (same constructor arguments, same state-dict keys).

    forward(x, timesteps, lq=None, mask=None) -> x0 estimate, (B, out_channels, h, w):
      x         (B, in_channels, h, w) latent, already divided by sqrt(kappa^2 eta_t + 1);
      timesteps (B,) int or float timestep numbers as the sampler feeds them (not rescaled);
      lq        the padded low-quality image in [-1, 1], (B, 3, h*lq_size/image_size, ...):
                same size as the latent for SR, 4x (inpainting) or 8x (face) larger otherwise;
      mask      inpainting only: (B, 1, H, W) mask*2-1 (1 = unknown), concatenated after lq.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int | Sequence[int],
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        swin_depth: int = 2,
        swin_embed_dim: int = 96,
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        patch_norm: bool = False,
        cond_lq: bool = True,
        cond_mask: bool = False,
        lq_size: int = 256,
    ) -> None:
        super().__init__()
        if dims != 2 or resblock_updown or use_fp16:
            raise ValueError(
                "ResShift UNet: only dims=2, resblock_updown=False, use_fp16=False are supported "
                "(every released checkpoint uses them)"
            )
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * len(channel_mult)
        if len(num_res_blocks) != len(channel_mult):
            raise ValueError("num_res_blocks needs one entry per channel_mult level")
        self.model_channels = model_channels
        self.cond_lq = cond_lq
        self.cond_mask = cond_mask
        emb_dim = 4 * model_channels
        heads = num_heads if num_head_channels == -1 else swin_embed_dim // num_head_channels

        def res(ch_in: int, ch_out: int | None = None) -> ResBlock:
            return ResBlock(ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm)

        def swin(ch: int, resolution: int) -> SwinStage:
            return SwinStage(ch, swin_embed_dim, heads, window_size, swin_depth, resolution, mlp_ratio, patch_norm)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Official rule: identity only when the lq is conditioned on and already latent-sized.
        if cond_lq and lq_size == image_size:
            self.feature_extractor: nn.Module = nn.Identity()
            lq_channels = 4 if cond_mask else 3
        else:
            self.feature_extractor, lq_channels = lq_feature_extractor(lq_size, image_size, 4 if cond_mask else 3)

        ch = first_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels + lq_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        res_now = image_size  # the official `ds`: current resolution, compared with attention_resolutions
        for level, mult in enumerate(channel_mult):
            for j in range(num_res_blocks[level]):
                width = int(mult * model_channels)
                layers: list[nn.Module] = [res(ch, width)]
                ch = width
                if res_now in attention_resolutions and j == 0:
                    layers.append(swin(ch, res_now))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(EmbedSequential(Downsample(ch, conv_resample, ch)))
                skip_channels.append(ch)
                res_now //= 2

        self.middle_block = EmbedSequential(res(ch), swin(ch, res_now), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks[level] + 1):
                width = int(model_channels * mult)
                layers = [res(ch + skip_channels.pop(), width)]
                ch = width
                if res_now in attention_resolutions and i == 0:
                    layers.append(swin(ch, res_now))
                if level and i == num_res_blocks[level]:
                    layers.append(Upsample(ch, conv_resample))
                    res_now *= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(first_ch, out_channels, 3, padding=1))

    def forward(self, x: Tensor, timesteps: Tensor, lq: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x0 estimate for latent `x` at `timesteps`, conditioned on `lq` (and `mask`); see the class docstring."""
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if lq is not None:
            if not self.cond_lq:
                raise ValueError("this ResShift UNet takes no lq image")
            if mask is not None:
                if not self.cond_mask:
                    raise ValueError("this ResShift UNet takes no mask")
                lq = torch.cat([lq, mask], dim=1)
            x = torch.cat([x, self.feature_extractor(lq)], dim=1)
        elif self.cond_lq:
            raise ValueError("this ResShift UNet needs the lq image")
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def build_resshift_unet(config: Mapping[str, Any], device: torch.device | str = "cpu") -> ResShiftUNet:
    """Build the UNet from its registry config (official `UNetModelSwin` argument names), in eval mode.

    Works on device="meta" (shapes only, for key checks). The forward signature
    is `net(x, timesteps, lq=None, mask=None)`, see `ResShiftUNet`.
    """
    with torch.device(device):
        net = ResShiftUNet(**dict(config))
    return net.eval()
