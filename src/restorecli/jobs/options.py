"""What a restore job is asked to do: the options every task command (and `restorecli.restore`) shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JobOptions:
    """Everything a task command's options say about the files and the sampling."""

    task: str  # "sr", "inpaint", "face", "deblur", "derain", "lowlight", "shadow"
    inputs: list[str]  # raw INPUT args: file, folder, glob, @list.txt, or "-"
    output: str | None = None  # file, folder, "-" or None (None: next to each input, never over it)
    mask: str | None = None  # mask file, or folder matched by relative path / file stem
    recursive: bool = False
    suffix: str | None = None  # default f"_{task}" when writing next to the input, "" in another folder
    ext: str | None = None  # output format override ("png", "jpg", "webp", "tif", "bmp")
    quality: int = 95
    overwrite: bool = False
    shard: tuple[int, int] | None = None  # (i, n)
    steps: int = 1
    seed: int = 0
    batch_size: int = 1
    tile: int | None = 0  # None = engine.auto_tile(h, w); 0 = whole image; >0 = tile size in input px
    tile_overlap: int = 32
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    devices: list[str] | None = None  # e.g. ["cuda:0", "cuda:1"]: one worker per device
    # Optional extensions (not on the CLI yet):
    relative_to: str | None = None  # files named explicitly keep their path below this folder in the output
    max_pixels: int | None = None  # decompression-bomb limit; None = RESTORECLI_MAX_PIXELS or ~89 MP
    io_threads: int | None = None  # decode/encode threads; None = min(8, CPUs)
    stdin: bytes | None = field(default=None, repr=False)  # bytes to use for "-" instead of reading stdin


@dataclass
class RestoreRequest:
    """Which model runs a job and how (JobOptions says which files and how they are written):
    what the task commands and `restorecli.restore` hand to `api.run_restore`."""

    task: str = "sr"
    model: str | None = None  # a registered model; None = the task's default
    steps: int | None = None  # None = the model's default
    seed: int | None = None  # None = the model's default seed
    device: str = "auto"
    precision: str = "auto"
    weights: Sequence[str] | None = None  # --weights: a bundle, or COMPONENT=PATH official files
    registry_files: Sequence[Path | str] = ()  # --registry overlays
    offline: bool = False
    cache_dir: Path | None = None
    resize: int | None = None  # --resize (RDDM's paper protocol)
    report_path: Path | str | None = None  # --report: an HTML page of the run
    exposure: float | None = None  # --exposure: stops relative to a low-light model's own choice
