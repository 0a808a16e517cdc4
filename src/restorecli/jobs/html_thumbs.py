"""Thumbnails for the HTML run report: open any input safely, convert to 8 bits, fit, save."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..io.imageio import max_pixels_default

JPEG_QUALITY = 85
_open_lock = threading.Lock()  # Pillow's bomb limit is a global: one raised limit at a time


@dataclass
class _Thumb:
    name: str | None = None  # file name inside the thumbnail folder; None = unavailable
    width: int = 0  # thumbnail size
    height: int = 0
    full: tuple[int, int] | None = None  # the original image's size
    error: str | None = None


def _preview_pixel_limit(side: str = "after") -> int:
    """Largest image previewed. An input ("before") over the run's decompression-bomb limit was
    refused by the guard and is never decoded here either; an output may be 16 x the limit (an x4
    sr output of the largest input)."""
    limit = max_pixels_default()
    return limit if side == "before" else 16 * limit


class PixelBudget:
    """Pixels decoded at once by the report's threads: a big image waits until the others are done."""

    def __init__(self, pixels: int) -> None:
        self.total = self.free = pixels
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        want = min(max(0, pixels), self.total)
        with self._cond:
            self._cond.wait_for(lambda: self.free >= want)
            self.free -= want
        try:
            yield
        finally:
            with self._cond:
                self.free += want
                self._cond.notify_all()


DECODE_BUDGET = PixelBudget(64_000_000)  # a few hundred MB of decoded pixels across the threads


def peek_pixels(path: str | None) -> int:
    """Width x height from the header only (0 when unreadable): what decoding `path` would hold."""
    if not path:
        return 0
    try:
        with Image.open(path) as im:
            return int(im.size[0]) * int(im.size[1])
    except Exception:  # noqa: BLE001 - an unreadable file is reported when it is opened for real
        return 0


def _open_picture(path: str, limit: int, side: str = "after") -> tuple[Image.Image, tuple[int, int]]:
    """(the image as a viewer shows it, EXIF orientation applied, in a mode JPEG/PNG store at 8 bits; its full size)."""
    max_pixels = _preview_pixel_limit(side)
    with _open_lock:  # Pillow's bomb check runs in open() against a global: raise it only for this call
        saved = Image.MAX_IMAGE_PIXELS
        if saved is not None and saved < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            opened = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with opened as im:
        w, h = im.size
        if w * h > max_pixels:
            guard = " (over the decompression-bomb limit)" if side == "before" else ""
            raise ValueError(f"{w}x{h} is too large to preview{guard}")
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees when shown
            w, h = h, w
        if im.format == "JPEG":
            im.draft("RGB", _fit(im.size, limit))  # decode at 1/2, 1/4 or 1/8 scale: big JPEGs stay fast
        im.load()
        im = ImageOps.exif_transpose(im) or im
        return _to_8bit(im), (w, h)


def _to_8bit(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("RGB", "RGBA", "L"):
        return im
    if mode == "LA":
        return im.convert("RGBA")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        return Image.fromarray(np.clip(np.floor(arr / scale + 0.5), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("PA", "RGBa", "La"):
        return im.convert("RGBA")
    return im.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV, ...


def _fit(size: tuple[int, int], limit: int) -> tuple[int, int]:
    w, h = size
    scale = min(1.0, limit / max(w, h, 1))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """True when b is a (possibly scaled) a, allowing one pixel of rounding at a's scale."""
    (aw, ah), (bw, bh) = a, b
    scale = bw / aw
    return abs(ah * scale - bh) <= max(1.0, scale) and abs(bh / ah * aw - bw) <= max(1.0, bh / ah)


def _save_thumb(im: Image.Image, size: tuple[int, int], folder: Path, stem: str) -> _Thumb:
    if im.size != size:
        resample = Image.Resampling.LANCZOS if size[0] < im.size[0] else Image.Resampling.BICUBIC
        im = im.resize(size, resample, reducing_gap=3.0 if size[0] < im.size[0] else None)
    if im.mode == "RGBA" and im.getextrema()[3][0] < 255:
        name = f"{stem}.png"
        im.save(folder / name, "PNG", optimize=False, compress_level=6)
    else:
        name = f"{stem}.jpg"
        im.convert("L" if im.mode == "L" else "RGB").save(folder / name, "JPEG", quality=JPEG_QUALITY)
    return _Thumb(name, size[0], size[1])
