"""Draw the README's sample photo: a synthetic street scene with synthetic rain.

The project draws it itself (no dataset image), so it may be redistributed with the
code. Run from the repository root:

    PYTHONPATH=src python scripts/make_sample.py examples/rainy.png
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from restorecli.training.degrade import degrade


def scene(width: int = 384, height: int = 256, seed: int = 7) -> np.ndarray:
    """A float32 RGB street at dusk: sky, hills, houses with windows, trees, a road."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    sky = np.linspace(0.0, 1.0, height)[:, None, None]
    img[:] = (1 - sky) * np.array([0.55, 0.70, 0.90]) + sky * np.array([0.85, 0.80, 0.75])
    xs = np.arange(width)
    hills = (height * 0.55 + 18 * np.sin(xs / 37.0) + 9 * np.sin(xs / 11.0 + 1)).astype(int)
    for x, top in zip(xs, hills):
        img[top:, x] = (0.30, 0.45, 0.28)
    road_top = int(height * 0.78)
    img[road_top:] = (0.33, 0.33, 0.35)
    cv2.line(img, (0, road_top + 22), (width, road_top + 22), (0.9, 0.85, 0.4), 2)
    for i, x0 in enumerate(range(16, width - 60, 92)):
        w, h = int(rng.integers(56, 76)), int(rng.integers(60, 90))
        colour = tuple(float(c) for c in rng.uniform(0.35, 0.85, 3))
        cv2.rectangle(img, (x0, road_top - h), (x0 + w, road_top), colour, -1)
        roof = np.array([[x0 - 6, road_top - h], [x0 + w + 6, road_top - h], [x0 + w // 2, road_top - h - 26]])
        cv2.fillPoly(img, [roof], (0.45, 0.18, 0.15))
        for wy in range(road_top - h + 10, road_top - 22, 22):
            for wx in (x0 + 8, x0 + w - 22):
                cv2.rectangle(img, (wx, wy), (wx + 13, wy + 13), (0.95, 0.85, 0.55) if i % 2 else (0.2, 0.3, 0.45), -1)
        cv2.rectangle(img, (x0 + w // 2 - 7, road_top - 26), (x0 + w // 2 + 7, road_top), (0.3, 0.2, 0.12), -1)
    for x0 in range(70, width, 92):
        cv2.rectangle(img, (x0 - 2, road_top - 40), (x0 + 2, road_top), (0.30, 0.22, 0.14), -1)
        cv2.circle(img, (x0, road_top - 48), 15, (0.18, 0.40, 0.20), -1)
    texture = rng.normal(0, 0.015, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0.8) + texture
    return np.clip(img, 0, 1)


def main(path: str) -> None:
    clean = scene()
    rainy, _ = degrade(clean, "rain", np.random.default_rng(3), density=0.006, length=22, angle=12, haze=0.01)
    out = (np.clip(rainy, 0, 1) * 255 + 0.5).astype(np.uint8)
    cv2.imwrite(path, cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/rainy.png")
