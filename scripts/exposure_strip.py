"""Draw the picture of `restore lowlight --exposure` in docs/training.md.

A synthetic dusk street (the README sample's scene, drawn by the project, no dataset
image) is darkened with the `lowlight` degradation and restored by the shipped low-light
model at --exposure -1, 0 (the model's choice) and +1, side by side with the dark input.
Run from the repository root:

    PYTHONPATH=src python scripts/exposure_strip.py docs/exposure.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from restorecli.runtime.load import load_engine
from restorecli.training.degrade import degrade

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample import scene  # noqa: E402


def main(out: str) -> None:
    clean = scene()
    dark, _ = degrade(clean, "lowlight", np.random.default_rng(3), gamma=2.0, exposure=0.25, shot=0.01, read=2.0)
    engine = load_engine(None, "lowlight", device="cpu", offline=True)
    x = torch.from_numpy(np.ascontiguousarray(dark.transpose(2, 0, 1)))[None].float()
    panels = [("dark input", dark)]
    for stops in (-1.0, 0.0, 1.0):
        engine.exposure = stops
        y = engine.restore(x, steps=1, generators=[torch.Generator()])[0].permute(1, 2, 0).numpy()
        panels.append((f"--exposure {stops:+g}" if stops else "default (model's choice)", y))
    tiles = []
    for label, img in panels:
        u8 = np.ascontiguousarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        cv2.rectangle(u8, (0, 0), (u8.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(u8, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(u8)
    strip = np.concatenate(tiles, axis=1)
    cv2.imwrite(out, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out} ({strip.shape[1]}x{strip.shape[0]})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/exposure.png")
