"""A measure of period-2 artefacts (a 2-pixel grid or checkerboard) in an image.

The luma, cropped to an even size with its mean removed and a Hann window in both
directions, gives a 2-D power spectrum. The mean power on the Nyquist row and column
(|f| = 1/2 cycle per pixel) is divided by the mean power in the band of 0.42-0.48 cycles
per pixel next to it. Photos and their noise fall off smoothly there and score about 1;
a pattern that repeats every two pixels piles its energy on the Nyquist lines and scores
far more.
"""

from __future__ import annotations

import numpy as np

BAND = (0.42, 0.48)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (H, W, 3) array (any scale), float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim == 2:
        return rgb
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def grid_score(image: np.ndarray) -> float:
    """Nyquist-line power over the power just below it; about 1 for photos, far more for a 2-pixel grid."""
    y = luma(image)
    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    if h < 16 or w < 16:
        raise ValueError("the grid measure needs an image of at least 16x16 pixels")
    y = y[:h, :w]
    y = (y - y.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(y)) ** 2
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.fftfreq(w))[None, :]
    nyquist = (fy == 0.5) | (fx == 0.5)
    band_y = (fy >= BAND[0]) & (fy <= BAND[1])
    band_x = (fx >= BAND[0]) & (fx <= BAND[1])
    band = (band_y | band_x) & ~nyquist
    return float(power[nyquist].mean() / max(power[band].mean(), 1e-30))
