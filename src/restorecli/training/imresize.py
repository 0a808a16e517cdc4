"""MATLAB-compatible bicubic resize (`imresize`), the one the standard SR test sets were made with.

The standard SR test sets (Set5, Set14, ... LR_bicubic) were made with MATLAB, so
matching it is what makes synthetic x4 inputs comparable; OpenCV's bicubic uses
another kernel (a = -0.75) and no antialiasing.
"""

from __future__ import annotations

import math

import numpy as np

Array = np.ndarray


def _cubic(x: Array) -> Array:
    """Keys cubic kernel with a = -0.5 (the one MATLAB's imresize uses)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _resize_matrix(in_len: int, out_len: int, scale: float) -> Array:
    """Dense (out_len, in_len) matrix of MATLAB imresize bicubic weights, antialiased when shrinking.

    A dense matrix is simple and exact; the sizes used here (a few hundred pixels
    per side) keep it cheap.
    """
    shrink = scale < 1
    width = 4.0 / scale if shrink else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    centre = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(centre - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = centre[:, None] - idx
    weights = scale * _cubic(scale * dist) if shrink else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    # symmetric (mirror) padding, 1-based indices as in MATLAB
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, cols.ravel()), weights.ravel())
    return mat


def imresize(img: Array, scale: float | None = None, size: tuple[int, int] | None = None) -> Array:
    """MATLAB `imresize(img, scale, 'bicubic')` on a float image (H, W, C); `size` is (H, W)."""
    h, w = img.shape[:2]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
    out_h, out_w = size
    sh = scale if scale is not None else out_h / h
    sw = scale if scale is not None else out_w / w
    mh = _resize_matrix(h, out_h, sh)
    mw = _resize_matrix(w, out_w, sw)
    data = img.astype(np.float64)
    out = np.einsum("oh,hwc->owc", mh, data)
    out = np.einsum("pw,owc->opc", mw, out)
    return out.astype(np.float32)
