"""Training and evaluation data: paired folders, clean folders with a synthetic degradation, and writing pairs.

Images are kept in memory as uint8 (the clean sets used here are tens of MB),
and training crops are cut and degraded on the fly with a numpy generator owned
by the caller, so a run is reproducible from its seed and can be resumed by
restoring that generator's state.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..io.files import is_image_name, list_images, write_atomic
from ..io.outpaths import first_input_at, refuse_input_overwrite, same_path
from ..quality.evaluate import read_rgb8
from .degrade import DEGRADATIONS, degrade


def name_seed(seed: int, name: str) -> np.random.Generator:
    """A generator for one file that depends on the run seed and the file name, not on list order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))]))


def is_held_out(name: str, fraction: float) -> bool:
    """Stable split by file name: the same files are held out whatever else is in the folder."""
    if fraction <= 0:
        return False
    return (zlib.crc32(name.encode("utf-8")) % 10_000) < fraction * 10_000


def collect_images(folders: Iterable[Path]) -> list[Path]:
    """Every image directly inside each folder (sorted), for building a clean-image pool."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        if not folder.is_dir():
            raise UsageError(f"data folder not found: {folder}", "check the --clean / --pairs paths")
        files += list_images(folder)
    if not files:
        raise UsageError("no images found in the data folders", "give folders of .png/.jpg images")
    return files


def file_key(path: Path) -> str:
    """Name used for the held-out split: parent folder + stem, so equal names in different sets differ."""
    return f"{path.parent.name}/{path.stem}"


def split_files(files: Sequence[Path], held_out: float) -> tuple[list[Path], list[Path]]:
    train = [f for f in files if not is_held_out(file_key(f), held_out)]
    val = [f for f in files if is_held_out(file_key(f), held_out)]
    return train, val


@dataclass
class Pair:
    """One degraded/clean pair in memory, uint8 (H, W, 3)."""

    name: str
    degraded: np.ndarray
    clean: np.ndarray


def paired_folder(degraded: Path, clean: Path) -> list[tuple[str, Path, Path]]:
    """Match degraded and clean files by name without extension; refuse unmatched folders."""
    ours = {p.stem: p for p in list_images(Path(degraded))}
    refs = {p.stem: p for p in list_images(Path(clean))}
    names = sorted(set(ours) & set(refs))
    if not names:
        raise UsageError(f"no file names in {degraded} match those in {clean}", "pairs need equal names")
    return [(n, ours[n], refs[n]) for n in names]


class CropSampler:
    """Random aligned training crops (with flips and 90-degree turns) from pairs or from clean images.

    Clean images get a fresh synthetic degradation for every crop, so a small
    pool of photos yields an unlimited stream of distinct pairs. quarter_turns=False
    keeps crops upright (half turns and flips only) for rain: streaks turned on their
    side teach a model to erase horizontal bright lines (wave crests, wires) that rain never makes.
    """

    def __init__(
        self,
        *,
        clean: Sequence[np.ndarray] = (),
        pairs: Sequence[Pair] = (),
        degradation: str | None = None,
        degrade_params: dict[str, Any] | None = None,
        crop: int = 64,
        augment: bool = True,
        quarter_turns: bool = True,
        pair_fraction: float = 0.0,
        context: int = 0,
    ) -> None:
        if not clean and not pairs:
            raise UsageError("no training images", "give --clean folders or --pairs DEGRADED CLEAN")
        if clean and degradation is None:
            raise UsageError("clean images need a synthetic degradation", "pass --degradation (e.g. rain)")
        if degradation is not None and degradation not in DEGRADATIONS:
            raise UsageError(f"unknown degradation '{degradation}'", f"known: {', '.join(DEGRADATIONS)}")
        if degradation is not None and DEGRADATIONS[degradation].shrinks:
            raise UsageError(f"training on '{degradation}' pairs is not supported", "RDDM restores same-size images")
        self.clean = [c for c in clean if min(c.shape[:2]) >= crop]
        self.pairs = [p for p in pairs if min(p.clean.shape[:2]) >= crop]
        if not self.clean and not self.pairs:
            raise UsageError(f"every training image is smaller than the crop size {crop}", "use a smaller --crop")
        self.degradation = degradation
        self.degrade_params = dict(degrade_params or {})
        self.crop = crop
        self.augment = augment
        self.quarter_turns = quarter_turns
        if not 0.0 <= pair_fraction <= 1.0:
            raise UsageError(f"--pair-fraction {pair_fraction} is not between 0 and 1")
        # 0 keeps the plain draw (uniform over all images), so earlier runs replay exactly
        self.pair_fraction = pair_fraction if (self.clean and self.pairs) else 0.0
        # context > 0: each pair's whole degraded image, area-resized to context x context, goes with its
        # crops (turned and flipped as they are), for networks that decide something about the whole photo
        self.context = context
        self.thumbs = [_thumbnail(p.degraded, context) for p in self.pairs] if context else []
        self.clean_thumbs = [_thumbnail(p.clean, context) for p in self.pairs] if context else []
        self.last_context: list[np.ndarray] = []
        self.last_clean_context: list[np.ndarray] = []

    def _cut(
        self, rng: np.random.Generator, *images: np.ndarray, wholes: Sequence[np.ndarray] = ()
    ) -> list[np.ndarray]:
        """A random crop of each image, and `wholes` uncropped; all turned and flipped alike."""
        h, w = images[0].shape[:2]
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(0, w - self.crop + 1))
        out = [im[y : y + self.crop, x : x + self.crop] for im in images]
        out += list(wholes)
        if self.augment:
            k = int(rng.integers(0, 4))
            if not self.quarter_turns:
                k = 2 * (k % 2)  # 0 or 180 degrees; the same draws either way, so the stream stays aligned
            flip = bool(rng.integers(0, 2))
            out = [np.rot90(im, k) for im in out]
            if flip:
                out = [im[:, ::-1] for im in out]
        return [np.ascontiguousarray(im) for im in out]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One (degraded, clean) float32 pair in [0, 1], (crop, crop, 3)."""
        n_clean, n_pairs = len(self.clean), len(self.pairs)
        if self.pair_fraction:
            from_pairs = rng.random() < self.pair_fraction
            k = n_clean + int(rng.integers(0, n_pairs)) if from_pairs else int(rng.integers(0, n_clean))
        else:
            k = int(rng.integers(0, n_clean + n_pairs))
        if k < n_clean:
            (clean,) = self._cut(rng, self.clean[k])
            clean01 = clean.astype(np.float32) / 255.0
            degraded, _ = degrade(clean01, self.degradation, rng, **self.degrade_params)
            # quantise like a saved file, so the network never relies on sub-8-bit detail
            degraded = np.floor(degraded * 255.0 + 0.5) / 255.0
            if self.context:  # a synthetic draw exists only for the crop: the crop is its own context
                self.last_context.append(_thumbnail(np.round(degraded * 255).astype(np.uint8), self.context))
                self.last_clean_context.append(_thumbnail(clean, self.context))
            return degraded.astype(np.float32), clean01
        pair = self.pairs[k - n_clean]
        if self.context:
            wholes = (self.thumbs[k - n_clean], self.clean_thumbs[k - n_clean])
            deg, clean, thumb, clean_thumb = self._cut(rng, pair.degraded, pair.clean, wholes=wholes)
            self.last_context.append(thumb)
            self.last_clean_context.append(clean_thumb)
        else:
            deg, clean = self._cut(rng, pair.degraded, pair.clean)
        return deg.astype(np.float32) / 255.0, clean.astype(np.float32) / 255.0

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(degraded, clean) float32 arrays (B, 3, crop, crop); with `context`, the batch's whole-image
        thumbnails (B, 3, context, context) are left in `last_batch_context` (degraded) and
        `last_batch_clean_context` (clean)."""
        self.last_context, self.last_clean_context = [], []
        items = [self.sample(rng) for _ in range(size)]
        if self.context:
            self.last_batch_context = _stacked(self.last_context)
            self.last_batch_clean_context = _stacked(self.last_clean_context)
        deg = np.stack([d for d, _ in items]).transpose(0, 3, 1, 2)
        clean = np.stack([c for _, c in items]).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(deg), np.ascontiguousarray(clean)


def _stacked(images: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32))


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """The whole uint8 image average-pooled to size x size, float32 in [0, 1], (size, size, 3): what a
    global branch reads of a photo (the same pooling as `nets.lightnet.GlobalBranch`)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    return F.adaptive_avg_pool2d(x, size)[0].permute(1, 2, 0).numpy()


def fixed_pairs(
    clean_files: Sequence[Path],
    degradation: str,
    *,
    seed: int,
    size: int,
    degrade_params: dict[str, Any] | None = None,
) -> list[Pair]:
    """Held-out validation pairs: a centre crop of each file (`size`, 0 = whole image, cut to a multiple
    of 8), degraded with a generator seeded by the file name, so every run scores the same pairs."""
    out = []
    for path in clean_files:
        img = read_rgb8(path)
        h, w = img.shape[:2]
        if size:
            s = min(size, h, w)
            y, x = (h - s) // 2, (w - s) // 2
            img = img[y : y + s, x : x + s]
        h, w = img.shape[:2]
        img = np.ascontiguousarray(img[: h - h % 8, : w - w % 8])
        deg, _ = degrade(
            img.astype(np.float32) / 255.0, degradation, name_seed(seed, file_key(path)), **(degrade_params or {})
        )
        out.append(Pair(file_key(path), np.floor(deg * 255.0 + 0.5).astype(np.uint8), img))
    return out


def load_pairs(degraded: Path, clean: Path) -> list[Pair]:
    out = []
    for name, dp, cp in paired_folder(degraded, clean):
        d, c = read_rgb8(dp), read_rgb8(cp)
        if d.shape != c.shape:
            raise UsageError(f"pair '{name}': {dp.name} and {cp.name} differ in size", "pairs must be the same size")
        out.append(Pair(name, d, c))
    return out


def degrade_files(
    inputs: Sequence[Path],
    output: Path,
    name: str,
    *,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Degrade each input image to a PNG in `output` (a folder, or a file for one input).

    Each image's generator is seeded from (seed, file name), so adding files to
    a folder does not change the others; a `degrade.json` sidecar records the
    seed and the parameters of every file. Every target is named before any work:
    one that is an input, an output folder that holds inputs, or two inputs that
    would write one file is a UsageError, so no clean image is ever written over.
    """
    records = []
    output = Path(output)
    single_file = len(inputs) == 1 and is_image_name(output)
    targets = plan_degrade_targets(inputs, output, single_file=single_file)
    for path, target in zip(inputs, targets):
        clean = read_rgb8(path).astype(np.float32) / 255.0
        rng = name_seed(seed, path.stem)
        out, used = degrade(clean, name, rng, **(params or {}))
        u8 = np.clip(np.floor(out * 255.0 + 0.5), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="PNG")
        write_atomic(target, buf.getvalue())  # a hard link to another file is replaced, never written through
        records.append({"input": str(path), "output": str(target), "degradation": name, "seed": seed, "params": used})
    sidecar = (output.parent if single_file else output) / "degrade.json"
    previous = []
    if sidecar.is_file():
        try:
            previous = [
                r for r in json.loads(sidecar.read_text()) if r.get("output") not in {x["output"] for x in records}
            ]
        except (ValueError, AttributeError):
            previous = []
    write_atomic(sidecar, json.dumps(previous + records, indent=1).encode())
    return records


def plan_degrade_targets(inputs: Sequence[Path], output: Path, *, single_file: bool) -> list[Path]:
    """The PNG each input becomes; UsageError (exit 2) before any work for a target that is an input,
    an output folder that is an input's folder, or two inputs with one stem (`a.jpg`, `a.png`)."""
    if single_file:
        targets = [output]
    else:
        home = next((p.parent for p in inputs if same_path(p.parent, output)), None)
        if home is not None:
            raise UsageError(
                f"output folder {output} is the input folder {home}; its clean images would be mixed with, "
                "or written over by, their degraded copies",
                "give another output folder",
            )
        targets = [output / f"{p.stem}.png" for p in inputs]
    known = {os.path.realpath(p): p for p in inputs}
    inodes = {(st.st_dev, st.st_ino): p for p in inputs if (st := _stat(p)) is not None}  # hard links
    for target in targets:
        st = _stat(target)
        hit = known.get(os.path.realpath(target)) or (inodes.get((st.st_dev, st.st_ino)) if st else None)
        if hit is not None:
            refuse_input_overwrite(target, [hit], what="output", hint="give another output file or folder")
    claimed: dict[str, Path] = {}
    for path, target in zip(inputs, targets):
        key = os.path.normcase(os.path.abspath(target))
        if key in claimed:
            raise UsageError(
                f"{claimed[key]} and {path} would both be written to {target} (one name, two images)",
                "rename one of them, or degrade them into separate folders",
            )
        claimed[key] = path
    if (sidecar := (output.parent if single_file else output) / "degrade.json") and first_input_at(sidecar, inputs):
        raise UsageError(f"the record {sidecar} would overwrite an input", "give another output folder")
    return targets


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None
