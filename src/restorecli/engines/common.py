"""What several engines do to their input the same way: pad at the bottom and right, and draw per-image noise.

Padding: every method pads the image to a multiple its network needs, always at
the bottom and right (so cropping the result back is `[:, :, :h, :w]`), but
with the value its official code uses: ResShift and DiffIR SR/deblur reflect
(`F.pad(mode="reflect")`), DiffIR inpainting mirrors with the edge repeated
(numpy `symmetric`, as LaMa), RDDM pads with zeros. `pad_end` does all three,
also when the pad is longer than the side (the official code would fail there).

Per-image draws: each image has its own CPU generator, and its noise is drawn
on the CPU in float32 (so the values equal the official CPU draws after
`torch.manual_seed`), then moved; a batch is the concatenation of its images'
draws, so an image's noise never depends on its neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PAD_MODES = ("reflect", "symmetric", "zeros")


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator, device: torch.device) -> Tensor:
    """A float32 standard-normal draw made on the CPU (so values match the official CPU draws), then moved."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)


def randn_per_image(shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device) -> Tensor:
    """One draw of `shape` (one image's, without the batch axis) per generator, stacked as a batch."""
    return torch.cat([randn((1, *shape), g, device) for g in generators], dim=0)


def padded_size(size: int, multiple: int, minimum: int = 0) -> int:
    """`size` (at least `minimum`) rounded up to a multiple of `multiple`."""
    size = max(size, minimum)
    return -(-size // multiple) * multiple


def _mirror_index(length: int, pad: int, with_edge: bool, device: torch.device) -> Tensor:
    """Source indices for padding one axis at its end: numpy 'symmetric' (edge repeated) or 'reflect'."""
    i = torch.arange(length + pad, device=device)
    if length == 1:
        return torch.zeros_like(i)
    period = 2 * length if with_edge else 2 * length - 2
    j = i % period
    mirror = (period - 1 - j) if with_edge else (period - j)
    return torch.where(j < length, j, mirror)


def pad_end(x: Tensor, pad_h: int, pad_w: int, mode: str) -> Tensor:
    """Pad (..., H, W) by pad_h rows at the bottom and pad_w columns at the right.

    'reflect' = F.pad reflect (the edge not repeated), 'symmetric' = numpy symmetric (the
    edge repeated), 'zeros' = zero padding. Mirrored pads longer than the side keep
    mirroring; a side of one pixel repeats it.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r} (use {', '.join(PAD_MODES)})")
    if mode == "zeros":
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
    edge = mode == "symmetric"
    if pad_h:
        x = x.index_select(-2, _mirror_index(x.shape[-2], pad_h, edge, x.device))
    if pad_w:
        x = x.index_select(-1, _mirror_index(x.shape[-1], pad_w, edge, x.device))
    return x


def pad_to_multiple(x: Tensor, multiple: int, mode: str) -> Tensor:
    """Pad (..., H, W) at the bottom and right up to multiples of `multiple`."""
    return pad_end(x, -x.shape[-2] % multiple, -x.shape[-1] % multiple, mode)
