"""`restore eval`: score restored images against references, file by file and on average.

Pairs are made by file name without extension (so `1.png` restored matches a
`1.jpg` reference), optionally after stripping a suffix the restore command
added (`1_derain.png` -> `1`). Both sides may also be single files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError, UsageError
from ..io import jsontext as strict_json
from ..io.files import list_images
from ..io.imageio import max_pixels_default
from .metrics import all_metrics

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


def read_rgb8(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB: grey and palette expanded, alpha dropped, 16-bit scaled down."""
    limit = max_pixels_default()
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > limit:  # the decompression-bomb guard, before decoding
                raise InputError(
                    f"cannot read image {path}: {im.size[0]}x{im.size[1]} is over the {limit:,}-pixel limit "
                    "(decompression-bomb guard)",
                    "set RESTORECLI_MAX_PIXELS higher if the image is genuine",
                )
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = np.clip(np.floor(arr / 257.0 + 0.5), 0, 255).astype(np.uint8)
                return np.repeat(arr[..., None], 3, axis=2)
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(
            f"cannot read image {path}: over the pixel limit (decompression-bomb guard)",
            "set RESTORECLI_MAX_PIXELS higher if the image is genuine",
        ) from None
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error... on bad data
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"cannot read image {path}: {first}", "check that it is an image file") from None


def read_rgb01(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) float32 RGB in [0, 1]."""
    return read_rgb8(path).astype(np.float32) / 255.0


def pair_files(
    restored: Path, reference: Path, strip_suffix: str = ""
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(name, restored file, reference file) for every match, and the names found on one side only."""
    restored, reference = Path(restored), Path(reference)
    if restored.is_file() and reference.is_file():
        return [(restored.stem, restored, reference)], []
    if not restored.is_dir() or not reference.is_dir():
        missing = restored if not restored.exists() else reference
        if not missing.exists():
            raise UsageError(f"{missing} does not exist", "give two folders (or two files) of images")
        raise UsageError("give two folders or two files, not one of each", f"got {restored} and {reference}")

    def key(p: Path) -> str:
        stem = p.stem
        if strip_suffix and stem.endswith(strip_suffix):
            stem = stem[: -len(strip_suffix)]
        return stem

    ours = {key(p): p for p in list_images(restored)}
    refs = {p.stem: p for p in list_images(reference)}
    pairs = [(name, ours[name], refs[name]) for name in sorted(ours) if name in refs]
    unmatched = sorted(set(ours) ^ set(refs))
    if not pairs:
        raise UsageError(
            f"no file names in {restored} match those in {reference}",
            "names must be equal apart from the extension; use --strip-suffix for added suffixes",
        )
    return pairs, unmatched


@dataclass
class EvalReport:
    """Per-file scores and their means; `to_json` writes non-finite PSNR (identical images) as "inf"."""

    restored: str
    reference: str
    crop_border: int
    files: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def mean(self) -> dict[str, float]:
        return {m: float(np.mean([f[m] for f in self.files])) for m in METRICS} if self.files else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "reference": self.reference,
            "crop_border": self.crop_border,
            "count": len(self.files),
            "mean": self.mean,
            "files": self.files,
            "unmatched": self.unmatched,
        }

    def to_json(self) -> str:
        return strict_json.dumps(self.as_dict(), indent=1)


def evaluate_pairs(
    restored: Path,
    reference: Path,
    *,
    crop_border: int = 0,
    strip_suffix: str = "",
    resize_reference: bool = False,
) -> EvalReport:
    """Score every matched pair. Sizes must agree unless `resize_reference` (reference -> restored size,
    PIL bicubic; the RDDM paper protocol scores at 256x256)."""
    pairs, unmatched = pair_files(restored, reference, strip_suffix)
    report = EvalReport(str(restored), str(reference), crop_border, unmatched=unmatched)
    for name, ours_path, ref_path in pairs:
        ours = read_rgb8(ours_path)
        ref = read_rgb8(ref_path)
        if ours.shape != ref.shape:
            if not resize_reference:
                raise UsageError(
                    f"{ours_path.name} is {ours.shape[1]}x{ours.shape[0]} but its reference "
                    f"{ref_path.name} is {ref.shape[1]}x{ref.shape[0]}",
                    "pass --resize-reference to score at the restored size",
                )
            ref = np.asarray(Image.fromarray(ref).resize((ours.shape[1], ours.shape[0]), Image.BICUBIC), dtype=np.uint8)
        scores = all_metrics(ours, ref, crop_border=crop_border)
        report.files.append({"name": name, "restored": str(ours_path), "reference": str(ref_path), **scores})
    return report


def format_table(report: EvalReport) -> str:
    """A plain-text table: one row per file and the mean; names are never shortened."""
    width = max([24, *(len(f["name"]) for f in report.files)])
    lines = [f"{'file':<{width}} {'PSNR-Y':>8} {'SSIM-Y':>7} {'PSNR':>8} {'SSIM':>7}"]

    def row(name: str, s: dict[str, float]) -> str:
        return f"{name:<{width}} {s['psnr_y']:8.3f} {s['ssim_y']:7.4f} {s['psnr_rgb']:8.3f} {s['ssim_rgb']:7.4f}"

    lines += [row(f["name"], f) for f in report.files]
    if len(report.files) > 1:
        lines.append(row(f"mean ({len(report.files)})", report.mean))
    return "\n".join(lines)
