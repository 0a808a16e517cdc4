"""PSNR and SSIM as the restoration literature reports them.

The definitions follow the common BasicSR evaluation code, so numbers are
comparable with published tables:

- images are compared on the 8-bit scale [0, 255] in float64;
- `crop_border` pixels are dropped on every side first (SR papers crop `scale`);
- `y_channel=True` compares only luma: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
  for R, G, B in [0, 255] (ITU-R BT.601, studio range), kept as a float (not rounded);
- SSIM uses an 11x11 Gaussian window with sigma 1.5, constants (0.01*255)^2 and
  (0.03*255)^2, statistics only where the window fits inside the image ("valid"),
  and the mean over channels for RGB.

Inputs are (H, W, 3) RGB arrays in [0, 255] (uint8 or float) or (H, W) greyscale.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Array = np.ndarray

BT601_Y = np.array([65.481, 128.553, 24.966], dtype=np.float64)  # for R, G, B in [0, 1], result in [16, 235]


def rgb_to_y(img: Array) -> Array:
    """Luma (BT.601, [16, 235] for 8-bit RGB) of an (H, W, 3) RGB array in [0, 255], as float64 (H, W)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {img.shape}")
    return (img / 255.0) @ BT601_Y + 16.0


def _prepare(img1: Array, img2: Array, crop_border: int, y_channel: bool) -> tuple[Array, Array]:
    a = np.asarray(img1)
    b = np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if y_channel and a.ndim == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if crop_border:
        c = int(crop_border)
        a = a[c:-c, c:-c, ...]
        b = b[c:-c, c:-c, ...]
    if a.size == 0:
        raise ValueError(f"nothing left to compare after cropping {crop_border} pixels")
    return a, b


def psnr(img1: Array, img2: Array, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit-scale images; inf when they are identical."""
    a, b = _prepare(img1, img2, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 * 255.0 / mse)


_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def _gaussian_window() -> Array:
    k = cv2.getGaussianKernel(11, 1.5).astype(np.float64)
    return k @ k.T


def _ssim_plane(a: Array, b: Array) -> float:
    """SSIM of one channel: Gaussian-weighted local statistics, averaged over the valid region."""
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels, got {a.shape[1]}x{a.shape[0]}")
    win = _gaussian_window()

    def blur(x: Array) -> Array:
        return cv2.filter2D(x, -1, win)[5:-5, 5:-5]

    mu1, mu2 = blur(a), blur(b)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = blur(a * a) - mu1_sq
    s2 = blur(b * b) - mu2_sq
    s12 = blur(a * b) - mu12
    ssim_map = ((2 * mu12 + _C1) * (2 * s12 + _C2)) / ((mu1_sq + mu2_sq + _C1) * (s1 + s2 + _C2))
    return float(ssim_map.mean())


def ssim(img1: Array, img2: Array, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al. 2004) for 8-bit-scale images; the mean over channels for RGB."""
    a, b = _prepare(img1, img2, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def to_255(img01: Array) -> Array:
    """Float image in [0, 1] -> the uint8 values a PNG writer stores (round half up, clipped)."""
    return np.clip(np.floor(np.asarray(img01, dtype=np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def all_metrics(restored: Array, reference: Array, *, crop_border: int = 0) -> dict[str, float]:
    """PSNR and SSIM on the Y channel and in RGB, the four numbers `restore eval` reports per image."""
    return {
        "psnr_y": psnr(restored, reference, crop_border=crop_border, y_channel=True),
        "ssim_y": ssim(restored, reference, crop_border=crop_border, y_channel=True),
        "psnr_rgb": psnr(restored, reference, crop_border=crop_border),
        "ssim_rgb": ssim(restored, reference, crop_border=crop_border),
    }
