"""What a fixed degradation parameter (`-P KEY=VALUE`) may be: its type and the range a physical
degradation allows, checked before any image is read.

The draw ranges in `degrade.PARAMS` are what training samples; a user may fix a value
outside them (a heavier rain, a darker scene), but not one that makes no sense (a negative
density, an infinite length) or that would allocate without bound (a kernel thousands of pixels
long). Each entry: (type, lowest, highest), both inclusive.
"""

from __future__ import annotations

import math
from typing import Any

LIMITS: dict[str, dict[str, tuple[type, float, float]]] = {
    "bicubic": {"scale": (int, 1, 16)},
    "realistic": {
        "scale": (int, 1, 16),
        "blur_sigma": (float, 0.0, 20.0),
        "blur_sigma2": (float, 0.0, 20.0),
        "blur_angle": (float, -360.0, 360.0),
        "noise_sigma": (float, 0.0, 255.0),
        "quality": (int, 1, 100),
    },
    "rain": {
        "density": (float, 0.0, 1.0),
        "length": (float, 1.0, 500.0),
        "angle": (float, -90.0, 90.0),
        "width": (float, 0.1, 50.0),
        "brightness": (float, 0.0, 1.0),
        "layers": (int, 1, 10),
        "haze": (float, 0.0, 1.0),
    },
    "lowlight": {
        "gamma": (float, 0.1, 10.0),
        "exposure": (float, 0.001, 1.0),
        "shot": (float, 0.0, 1.0),
        "read": (float, 0.0, 255.0),
    },
    "motion": {"length": (float, 1.0, 500.0), "angle": (float, -360.0, 360.0)},
    "defocus": {"radius": (float, 0.0, 200.0)},
    "noise": {"sigma": (float, 0.0, 255.0)},
    "jpeg": {"quality": (int, 1, 100)},
}


def param_problem(name: str, key: str, value: Any) -> str | None:
    """Why `value` cannot be degradation `name`'s parameter `key` (one phrase), or None when it can."""
    rule = LIMITS.get(name, {}).get(key)
    if rule is None:  # a choice (blend, interp) or an unknown key: degrade.sample_params judges those
        return None
    kind, low, high = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} {key}={value!r} is not a number"
    if kind is int and (isinstance(value, float) and not value.is_integer()):
        return f"{name} {key}={value!r} is not a whole number"
    if not math.isfinite(value) or not low <= value <= high:
        shown_low, shown_high = (int(low), int(high)) if kind is int else (low, high)
        return f"{name} {key}={value!r} is out of range ({shown_low}..{shown_high})"
    return None
