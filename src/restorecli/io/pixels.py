"""Between decoded pictures and engine tensors: channels, alpha and bit depth.

Engines see only RGB in [0, 1]. Grayscale is expanded to three equal channels
and turned back into one (ITU-R 601 luma, as Pillow does) on the way out.

Alpha never goes through the engine. The colour under fully transparent pixels
is arbitrary (often black or leftover paint), and a restorer mixes
neighbouring pixels, so that hidden colour would bleed into the visible edge as
a fringe. Before restoring, transparent pixels therefore get the colour of
their visible surroundings, averaged with premultiplied (alpha-weighted)
colours over an image pyramid ("push-pull"), and visible pixels are left
exactly as they are. The alpha channel itself is resized to the output size
with bicubic interpolation (clipped to [0, 1]): it is a smooth coverage map,
and a restorer trained on photos has nothing to add to it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .imageio import Picture

LUMA = (0.299, 0.587, 0.114)


def _top(dtype: np.dtype) -> float:
    return 65535.0 if dtype == np.uint16 else 255.0


def to_tensor(pic: Picture) -> Tensor:
    """(1, 3, H, W) float32 RGB in [0, 1], transparent pixels filled from their visible surroundings."""
    x = torch.from_numpy(pic.color.astype(np.float32) / _top(pic.color.dtype)).permute(2, 0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = x.contiguous()
    if pic.alpha is not None:
        a = torch.from_numpy(pic.alpha.astype(np.float32) / _top(pic.alpha.dtype))[None]
        x = fill_transparent(x, a)
    return x[None]


def fill_transparent(rgb: Tensor, alpha: Tensor) -> Tensor:
    """Replace the colour where alpha == 0 by an alpha-weighted average of nearby colours (push-pull).

    rgb (3, H, W), alpha (1, H, W) in [0, 1]. Pixels with alpha > 0 keep their colour.
    """
    if bool((alpha > 0).all()):
        return rgb
    levels: list[tuple[Tensor, Tensor]] = []
    premul, weight = (rgb * alpha)[None], alpha[None]
    while True:
        levels.append((premul, weight))
        if premul.shape[-1] <= 1 and premul.shape[-2] <= 1:
            break
        premul = F.avg_pool2d(premul, 2, ceil_mode=True)
        weight = F.avg_pool2d(weight, 2, ceil_mode=True)
    fill = levels[-1][0] / levels[-1][1].clamp_min(1e-12)
    for premul, weight in reversed(levels[:-1]):
        coarse = F.interpolate(fill, size=premul.shape[-2:], mode="bilinear", align_corners=False)
        fill = torch.where(weight > 0, premul / weight.clamp_min(1e-12), coarse)
    return torch.where(alpha > 0, rgb, fill[0])


def from_tensor(out: Tensor, pic: Picture) -> Picture:
    """An engine result (1, 3, H', W') back into a Picture like the input: gray, alpha, depth, profile."""
    y = out[0].float().clamp(0, 1)
    height, width = y.shape[-2:]
    if pic.gray:
        w = torch.tensor(LUMA, dtype=torch.float32)[:, None, None]
        y = (y * w).sum(0, keepdim=True)
    top = _top(pic.color.dtype)
    color = _quantize(y.permute(1, 2, 0).numpy(), top, pic.color.dtype)
    alpha = None
    if pic.alpha is not None:
        a = torch.from_numpy(pic.alpha.astype(np.float32) / top)[None, None]
        if a.shape[-2:] != (height, width):
            shrink = height < a.shape[-2] or width < a.shape[-1]
            a = F.interpolate(a, size=(height, width), mode="bicubic", align_corners=False, antialias=shrink)
        alpha = _quantize(a[0, 0].clamp(0, 1).numpy(), top, pic.alpha.dtype)
    return Picture(color, alpha, pic.format, pic.icc, pic.exif, list(pic.warnings))


def _quantize(x: np.ndarray, top: float, dtype: np.dtype) -> np.ndarray:
    return np.clip(np.rint(x * top), 0, top).astype(dtype)


def mask_tensor(mask: np.ndarray) -> Tensor:
    """(H, W) bool -> (1, 1, H, W) float32 in {0, 1}."""
    return torch.from_numpy(mask.astype(np.float32))[None, None]


def picture_from_array(image: object) -> tuple[Picture, str]:
    """A numpy array (H, W), (H, W, 1|2|3|4) uint8/uint16, or a PIL image -> Picture, plus its layout.

    The layout ('hw' or 'hwc') lets `array_from_picture` hand back the same shape.
    """
    from PIL import Image

    from .imageio import _decode_pillow

    if isinstance(image, Image.Image):
        color, alpha, icc = _decode_pillow(image, image.info.get("icc_profile"))
        return Picture(color, alpha, None, icc), "hwc"
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"images must be uint8 or uint16 arrays, not {arr.dtype}")
    if arr.ndim == 2:
        return Picture(arr[..., None].copy()), "hw"
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise TypeError(f"images must be (H, W) or (H, W, C) with C in 1..4, not {arr.shape}")
    channels = arr.shape[2]
    if channels in (2, 4):
        return Picture(arr[..., :-1].copy(), arr[..., -1].copy()), "hwc"
    return Picture(arr.copy()), "hwc"


def array_from_picture(pic: Picture, layout: str) -> np.ndarray:
    if layout == "hw" and pic.alpha is None:
        return pic.color[..., 0]
    if pic.alpha is None:
        return pic.color
    return np.concatenate([pic.color, pic.alpha[..., None]], axis=2)
