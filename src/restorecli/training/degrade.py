"""Synthetic degradations: turn clean images into training and test inputs.

Every function is pure: it takes an RGB float32 array (H, W, 3) in [0, 1] and a
`numpy.random.Generator`, and returns a new float32 array in [0, 1] without
touching its input. Parameters left as `None` are drawn from the generator
within documented ranges, so one seed fixes both the parameters and the noise;
`degrade()` returns the parameters it used, so a pair can be recreated exactly
(`restore degrade` writes them to a JSON sidecar).

Why numpy and OpenCV rather than torch: degradations run in data-loader
workers and in the CLI on single images, where a numpy pipeline is simpler and
its random stream does not depend on the torch version or device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .imresize import imresize
from .paramlimits import param_problem

Array = np.ndarray
Rng = np.random.Generator


def as_rng(seed: int | Rng | None) -> Rng:
    """A generator from a seed (or the generator itself), so callers can pass either."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _check(img: Array) -> Array:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


# Parameter table: degradation -> parameter -> how to draw it when not given.
#   ("float", low, high) uniform; ("int", low, high) inclusive; ("choice", options, probabilities); ("fixed", value);
#   ("sometimes", probability, low, high): uniform in [low, high] with that probability, else 0.0
PARAMS: dict[str, dict[str, tuple]] = {
    "bicubic": {"scale": ("fixed", 4)},
    "realistic": {
        "scale": ("fixed", 4),
        "blur_sigma": ("float", 0.2, 3.0),
        "blur_sigma2": ("float", 0.2, 3.0),
        "blur_angle": ("float", 0.0, 180.0),
        "interp": ("choice", ("area", "bilinear", "bicubic"), (1 / 3, 1 / 3, 1 / 3)),
        "noise_sigma": ("float", 1.0, 25.0),
        "quality": ("int", 30, 95),
    },
    "rain": {
        "density": ("float", 0.001, 0.012),
        "length": ("float", 8.0, 60.0),
        "angle": ("float", -30.0, 30.0),
        "width": ("float", 1.0, 2.8),
        "brightness": ("float", 0.25, 0.85),
        "layers": ("int", 1, 3),
        "blend": ("choice", ("screen", "add", "max", "refract"), (0.6, 0.15, 0.05, 0.2)),
        # Mist on a minority of draws only: a veil present on every draw teaches the model to
        # darken any photo by the expected veil, including clear ones (see docs/training.md).
        "haze": ("sometimes", 0.3, 0.02, 0.1),
    },
    "lowlight": {
        "gamma": ("float", 1.5, 3.0),
        "exposure": ("float", 0.1, 0.5),
        "shot": ("float", 0.0, 0.03),
        "read": ("float", 0.0, 4.0),
    },
    "motion": {"length": ("float", 5.0, 25.0), "angle": ("float", -90.0, 90.0)},
    "defocus": {"radius": ("float", 1.0, 6.0)},
    "noise": {"sigma": ("float", 5.0, 50.0)},
    "jpeg": {"quality": ("int", 30, 95)},
}


def sample_params(name: str, rng: Rng, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every parameter of degradation `name`: the given value, else a draw from its range.

    Each parameter is drawn even when it is given (and the draw discarded), so
    the noise that follows comes from the same point of the stream whichever
    parameters the caller fixed: a seed plus recorded parameters reproduces an image.
    """
    table = PARAMS[name]
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise ValueError(f"degradation '{name}' has no parameter '{unknown[0]}'; it takes {', '.join(table)}")
    for key, value in given.items():
        problem = param_problem(name, key, value)
        if problem is not None:
            raise ValueError(problem)
    out: dict[str, Any] = {}
    for key, rule in table.items():
        kind = rule[0]
        if kind == "float":
            drawn: Any = float(rng.uniform(rule[1], rule[2]))
        elif kind == "sometimes":
            on, value = rng.uniform() < rule[1], float(rng.uniform(rule[2], rule[3]))
            drawn = value if on else 0.0
        elif kind == "int":
            drawn = int(rng.integers(rule[1], rule[2] + 1))
        elif kind == "choice":
            drawn = str(rule[1][int(rng.choice(len(rule[1]), p=rule[2]))])
        else:
            drawn = rule[1]
        value = given.get(key, drawn)
        if kind in ("float", "sometimes"):
            value = float(value)
        elif kind == "int" or (kind == "fixed" and isinstance(rule[1], int)):
            value = int(value)
        elif kind == "choice" and value not in rule[1]:
            raise ValueError(f"{name} {key}='{value}' is not one of {', '.join(rule[1])}")
        out[key] = value
    return out


# ---- MATLAB-compatible bicubic downscaling --------------------------------------


def bicubic_down(img: Array, rng: Rng | None = None, *, scale: int | None = None) -> Array:
    """Bicubic x`scale` (default 4) downscaling, MATLAB definition, after cropping to a multiple of `scale`."""
    img = _check(img)
    scale = sample_params("bicubic", rng if rng is not None else as_rng(0), {"scale": scale})["scale"]
    h, w = img.shape[:2]
    img = img[: h - h % scale, : w - w % scale]
    return np.clip(imresize(img, 1.0 / scale), 0.0, 1.0)


# ---- kernels ---------------------------------------------------------------------


def line_kernel(length: float, angle: float, width: float = 1.0) -> Array:
    """Anti-aliased straight line of `length` pixels at `angle` degrees from vertical (clockwise), sum 1.

    Drawn at 4x resolution and box-reduced, so short and slanted lines keep
    their energy instead of aliasing into dotted pixels.
    """
    length = max(float(length), 1.0)
    size = int(math.ceil(length + 2 * width)) | 1
    up = 4
    canvas = np.zeros((size * up, size * up), np.float32)
    c = (size * up - 1) / 2.0
    rad = math.radians(angle)
    dx, dy = math.sin(rad) * (length - 1) * up / 2.0, math.cos(rad) * (length - 1) * up / 2.0
    p0 = (int(round((c - dx) * 16)), int(round((c - dy) * 16)))
    p1 = (int(round((c + dx) * 16)), int(round((c + dy) * 16)))
    cv2.line(canvas, p0, p1, 1.0, thickness=max(1, int(round(width * up))), lineType=cv2.LINE_AA, shift=4)
    kernel = canvas.reshape(size, up, size, up).mean(axis=(1, 3))
    return kernel / max(kernel.sum(), 1e-12)


def disk_kernel(radius: float) -> Array:
    """Anti-aliased uniform disk (defocus point-spread function), sum 1."""
    radius = max(float(radius), 0.5)
    half = int(math.ceil(radius))
    up = 8
    coords = (np.arange((2 * half + 1) * up) + 0.5) / up - (half + 0.5)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    inside = (yy * yy + xx * xx <= radius * radius).astype(np.float32)
    kernel = inside.reshape(2 * half + 1, up, 2 * half + 1, up).mean(axis=(1, 3))
    return kernel / kernel.sum()


def gaussian_kernel(sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> Array:
    """Anisotropic Gaussian blur kernel (sigmas in pixels, rotation in degrees), sum 1."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    half = int(math.ceil(3 * max(sigma_x, sigma_y, 0.3)))
    ax = np.arange(-half, half + 1, dtype=np.float64)
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    t = math.radians(theta)
    u = math.cos(t) * xx + math.sin(t) * yy
    v = -math.sin(t) * xx + math.cos(t) * yy
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def convolve(img: Array, kernel: Array) -> Array:
    """Same-size filtering with reflected borders (the kernel is flipped, so this is a true convolution)."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    return cv2.filter2D(img.astype(np.float32), -1, flipped, borderType=cv2.BORDER_REFLECT_101)


# ---- degradations ----------------------------------------------------------------
# Each takes (img, rng, **params); a parameter left as None is drawn from PARAMS.


def gaussian_noise(img: Array, rng: Rng, *, sigma: float | None = None, clip: bool = True) -> Array:
    """Additive white Gaussian noise; `sigma` in 8-bit levels (15, 25, 50 as in the denoising literature)."""
    img = _check(img)
    p = sample_params("noise", rng, {"sigma": sigma})
    out = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(p["sigma"] / 255.0)
    return np.clip(out, 0.0, 1.0) if clip else out


def _jpeg_roundtrip(img: Array, quality: int) -> Array:
    u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8[..., ::-1]), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]).astype(np.float32) / 255.0


def jpeg(img: Array, rng: Rng | None = None, *, quality: int | None = None) -> Array:
    """JPEG round trip through 8 bits, as a saved and reloaded file would be."""
    img = _check(img)
    p = sample_params("jpeg", rng if rng is not None else as_rng(0), {"quality": quality})
    return _jpeg_roundtrip(img, p["quality"])


def motion_blur(img: Array, rng: Rng, *, length: float | None = None, angle: float | None = None) -> Array:
    """Linear motion blur: `length` pixels at `angle` degrees from vertical."""
    img = _check(img)
    p = sample_params("motion", rng, {"length": length, "angle": angle})
    return np.clip(convolve(img, line_kernel(p["length"], p["angle"])), 0.0, 1.0)


def defocus_blur(img: Array, rng: Rng, *, radius: float | None = None) -> Array:
    """Out-of-focus blur with a uniform disk of `radius` pixels."""
    img = _check(img)
    p = sample_params("defocus", rng, {"radius": radius})
    return np.clip(convolve(img, disk_kernel(p["radius"])), 0.0, 1.0)


def rain_layer(
    shape: tuple[int, int],
    rng: Rng,
    *,
    density: float,
    length: float,
    angle: float,
    width: float,
    brightness: float,
) -> Array:
    """One grey layer of rain streaks in [0, 1]: sparse drops smeared along a line.

    Drops get random brightness so streaks are not uniform; the line kernel is
    scaled so an isolated streak peaks near `brightness`, and overlapping
    streaks saturate at 1 as dense real rain does.
    """
    h, w = shape
    drops = (rng.random((h, w), dtype=np.float32) < density).astype(np.float32)
    drops *= rng.uniform(0.5, 1.0, size=(h, w)).astype(np.float32)
    kernel = line_kernel(length, angle, width)
    kernel = kernel / max(float(kernel.max()), 1e-12)
    streaks = convolve(drops, kernel)
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=0.35 * width + 0.3)
    return np.clip(streaks * brightness, 0.0, 1.0)


MAX_RAIN_COVER = 0.35


def _refracted(img: Array, length: float, angle: float, rng: Rng) -> Array:
    """The scene as seen through falling drops: shifted a few pixels across the fall and smeared along it."""
    shift = float(rng.uniform(2.0, 6.0)) * (1.0 if rng.random() < 0.5 else -1.0)
    rad = math.radians(angle)
    matrix = np.float32([[1.0, 0.0, shift * math.cos(rad)], [0.0, 1.0, -shift * math.sin(rad)]])
    moved = cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT_101)
    return convolve(moved, line_kernel(max(3.0, length / 3.0), angle))


def rain(
    img: Array,
    rng: Rng,
    *,
    density: float | None = None,
    length: float | None = None,
    angle: float | None = None,
    width: float | None = None,
    brightness: float | None = None,
    layers: int | None = None,
    blend: str | None = None,
    haze: float | None = None,
) -> Array:
    """Synthetic rain streaks.

    density: fraction of pixels that start a streak; length: streak length in
    pixels; angle: degrees from vertical; width: stroke width in pixels;
    brightness: peak value of an isolated streak; layers: 1-3 layers, each
    later one sparser, shorter and fainter with its angle jittered by up to 5
    degrees (rain at several depths); blend: "screen" (light adds without
    clipping hard), "add", "max" or "refract" (each drop shows the scene behind
    it displaced and smeared along the fall, plus a little light: streaks that
    are darker than the background in some places and brighter in others, as in
    heavy real rain); haze: uniform veil mixed in (rain mist).
    """
    img = _check(img)
    p = sample_params(
        "rain",
        rng,
        dict(
            density=density,
            length=length,
            angle=angle,
            width=width,
            brightness=brightness,
            layers=layers,
            blend=blend,
            haze=haze,
        ),
    )
    h, w = img.shape[:2]
    # Long, wide streaks at a high seed density would cover the whole image: cap the first layer's
    # coverage (seeds x length x width) at MAX_RAIN_COVER, as the densest real rain leaves the scene visible.
    density = min(p["density"], MAX_RAIN_COVER / (p["length"] * p["width"]))
    total = np.zeros((h, w), np.float32)
    for k in range(p["layers"]):
        f = 1.0 / (1.0 + 0.6 * k)
        jitter = float(rng.uniform(-5.0, 5.0))
        layer = rain_layer(
            (h, w),
            rng,
            density=density * f,
            length=max(3.0, p["length"] * f),
            angle=p["angle"] + (jitter if k else 0.0),
            width=max(1.0, p["width"] * f),
            brightness=p["brightness"] * f,
        )
        total = 1.0 - (1.0 - total) * (1.0 - layer)
    streak = total[..., None]
    if p["blend"] == "screen":
        out = 1.0 - (1.0 - img) * (1.0 - streak)
    elif p["blend"] == "add":
        out = img + streak
    elif p["blend"] == "max":
        out = np.maximum(img, streak)
    else:
        out = img * (1.0 - streak) + (_refracted(img, p["length"], p["angle"], rng) + 0.2 * p["brightness"]) * streak
    out = out * (1.0 - p["haze"]) + p["haze"]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def low_light(
    img: Array,
    rng: Rng,
    *,
    gamma: float | None = None,
    exposure: float | None = None,
    shot: float | None = None,
    read: float | None = None,
    quantize: bool = True,
) -> Array:
    """Under-exposure: exposure * img ** gamma, sensor noise, 8-bit quantisation.

    gamma > 1 crushes shadows more than highlights, as a short exposure seen
    through a camera tone curve does; `shot` scales noise with the square root
    of the signal (photon noise), `read` (8-bit levels) is signal-independent.
    Quantising after darkening loses the shadow detail a real dark JPEG loses.
    """
    img = _check(img)
    p = sample_params("lowlight", rng, dict(gamma=gamma, exposure=exposure, shot=shot, read=read))
    dark = p["exposure"] * np.power(np.clip(img, 0.0, 1.0), p["gamma"])
    std = np.sqrt(p["shot"] ** 2 * dark + (p["read"] / 255.0) ** 2).astype(np.float32)
    out = np.clip(dark + rng.standard_normal(img.shape, dtype=np.float32) * std, 0.0, 1.0)
    if quantize:
        out = np.floor(out * 255.0 + 0.5) / 255.0
    return out.astype(np.float32)


_INTERP = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def realistic_down(
    img: Array,
    rng: Rng,
    *,
    scale: int | None = None,
    blur_sigma: float | None = None,
    blur_sigma2: float | None = None,
    blur_angle: float | None = None,
    interp: str | None = None,
    noise_sigma: float | None = None,
    quality: int | None = None,
) -> Array:
    """Blur, downscale, noise and JPEG, in the order a camera and a web upload apply them.

    blur_sigma / blur_sigma2 / blur_angle: anisotropic Gaussian blur in HR
    pixels (blur_sigma2 defaults to a draw; pass the same value for isotropic
    blur); interp: area, bilinear or bicubic; noise_sigma in 8-bit levels.
    """
    img = _check(img)
    p = sample_params(
        "realistic",
        rng,
        dict(
            scale=scale,
            blur_sigma=blur_sigma,
            blur_sigma2=blur_sigma2,
            blur_angle=blur_angle,
            interp=interp,
            noise_sigma=noise_sigma,
            quality=quality,
        ),
    )
    s = p["scale"]
    h, w = img.shape[:2]
    img = img[: h - h % s, : w - w % s]
    out = convolve(img, gaussian_kernel(p["blur_sigma"], p["blur_sigma2"], p["blur_angle"]))
    out = cv2.resize(out, (out.shape[1] // s, out.shape[0] // s), interpolation=_INTERP[p["interp"]])
    out = np.clip(out, 0.0, 1.0)
    out = np.clip(out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(p["noise_sigma"] / 255.0), 0, 1)
    return _jpeg_roundtrip(out, p["quality"])


# ---- named access ------------------------------------------------------------------


@dataclass(frozen=True)
class Degradation:
    """A named degradation: its function, a one-line summary, whether it shrinks the image, and
    whether it is upright (has a direction relative to the ground, like falling rain, so training
    crops must not be turned on their side)."""

    name: str
    func: Callable[..., Array]
    summary: str
    shrinks: bool = False
    upright: bool = False


DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("bicubic", bicubic_down, "MATLAB bicubic downscaling (scale)", True),
        Degradation("realistic", realistic_down, "blur, downscale, noise, JPEG (scale, ...)", True),
        Degradation(
            "rain", rain, "rain streaks (density, length, angle, width, brightness, layers, blend, haze)", upright=True
        ),
        Degradation("lowlight", low_light, "under-exposure and sensor noise (gamma, exposure, shot, read)"),
        Degradation("motion", motion_blur, "linear motion blur (length, angle)"),
        Degradation("defocus", defocus_blur, "defocus disk blur (radius)"),
        Degradation("noise", gaussian_noise, "additive Gaussian noise (sigma, 8-bit levels)"),
        Degradation("jpeg", jpeg, "JPEG compression (quality)"),
    )
}


def check_params(name: str, params: dict[str, Any] | None) -> str | None:
    """Why the fixed parameters cannot be used with degradation `name` (one phrase), or None; no image needed."""
    try:
        sample_params(name, as_rng(0), params)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def degrade(img: Array, name: str, seed: int | Rng | None = 0, **params: Any) -> tuple[Array, dict[str, Any]]:
    """Apply degradation `name`; parameters not given are drawn from `seed`.

    Returns the degraded image and every parameter used, so the result can be
    recorded and recreated with `degrade(img, name, seed, **params)`.
    """
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation '{name}'; known: {', '.join(DEGRADATIONS)}")
    rng = as_rng(seed)
    state = rng.bit_generator.state
    used = sample_params(name, rng, params)
    rng.bit_generator.state = state  # the function draws the same parameters again, then its noise
    return DEGRADATIONS[name].func(img, rng, **used), used
