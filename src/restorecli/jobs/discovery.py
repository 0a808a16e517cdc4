"""Which files a job reads, which files it writes, and which part of them this process does.

Inputs are files, folders (optionally recursive), globs, `@list.txt` files of
any of those, or `-` for stdin. Each input keeps a path relative to its root
(the folder, or a glob's fixed leading part) so sub-folders are mirrored in
the output folder.

Output names are decided before any pixel is read, from names alone, so that
an existing output can be skipped without decoding anything (this is what
makes a rerun resume), and so that every shard of a split job agrees on them.
Files that are outputs of this very job (`photo_sr.png` next to `photo.png`)
are not taken as inputs on the next run.

`--shard i/n` keeps the files whose relative path hashes to i modulo n: the
split depends only on each file's own name, not on listing order or on which
other files exist, so processes started at different times still get disjoint
parts that together cover the folder exactly once.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..io.bounded import read_capped, read_text_file
from ..io.files import glob_once, is_image_name, list_images
from ..io.imageio import EXT_FORMAT, FORMAT_EXT, OUTPUT_FORMATS, max_image_bytes

if TYPE_CHECKING:
    from .options import JobOptions

STDIO = "-"


@dataclass
class Item:
    """One input image and where its result goes."""

    index: int
    display: str  # the path as the user sees it in messages and reports
    rel: PurePosixPath  # path below its root: mirrored in an output folder, hashed for --shard
    source: Path | None = None  # None: stdin (bytes in `data`)
    data: bytes | None = None
    scanned: bool = False  # found by a folder scan or glob (not named explicitly)
    output: Path | None = None  # None: stdout
    mask: Path | None = None
    error: str | None = None  # known to fail before any work (missing list entry, name clash)
    warning: str | None = None

    @property
    def key(self) -> str:
        return self.rel.as_posix()


# ---- discovery -----------------------------------------------------------------


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _rel(path: Path, root: Path | None) -> PurePosixPath:
    if root is not None:
        try:
            return PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            pass
    return PurePosixPath(path.name)


def discover(
    inputs: list[str],
    *,
    recursive: bool = False,
    relative_to: str | None = None,
    exclude: frozenset[Path] = frozenset(),
    stdin: bytes | None = None,
) -> tuple[list[Item], list[str]]:
    """Expand the raw INPUT arguments into items (in order, duplicates dropped) and warnings."""
    items: list[Item] = []
    notes: list[str] = []
    base = Path(relative_to) if relative_to else None
    seen: set[Path] = set()

    def add(path: Path, rel: PurePosixPath, scanned: bool) -> None:
        try:
            real = path.resolve()
        except (RuntimeError, OSError) as exc:  # issue #13: a symlink loop fails this file, not the run
            reason = "symbolic link loop" if "loop" in str(exc).lower() else str(exc)
            items.append(Item(len(items), str(path), rel, source=path, scanned=scanned, error=f"cannot read: {reason}"))
            return
        if real in seen:
            return
        seen.add(real)
        items.append(Item(len(items), str(path), rel, source=path, scanned=scanned))

    def expand(arg: str, *, top: bool) -> None:
        path = Path(arg)
        if path.is_dir():
            odd: list[Path] = []
            files = list_images(path, recursive=recursive, exclude=exclude, skipped=odd)
            notes.extend(f"skipped {f}: not a regular file" for f in odd)
            if not files:
                notes.append(f"no images in {arg}" + ("" if recursive else " (use --recursive for sub-folders)"))
            for f in files:
                add(f, PurePosixPath(f.relative_to(path).as_posix()), True)
        elif path.is_file():
            add(path, _rel(path, base), False)
        elif _has_magic(arg):
            root = _glob_root(arg)
            files = sorted(Path(p) for p in glob_once(arg) if Path(p).is_file() and is_image_name(p))
            if not files:
                notes.append(f"no images match {arg}")
            for f in files:
                add(f, _rel(f, root), True)
        elif top:
            raise UsageError(f"input not found: {arg}", "give an image file, a folder, a glob, @list.txt or -")
        else:
            items.append(Item(len(items), arg, PurePosixPath(Path(arg).name), source=path, error="file not found"))

    for arg in inputs:
        if arg == STDIO:
            if any(i.source is None and i.error is None for i in items):
                raise UsageError("stdin (-) given twice", "read at most one image from stdin")
            data = stdin if stdin is not None else read_capped(sys.stdin.buffer, max_image_bytes())
            if data is None:
                raise UsageError(
                    f"stdin holds more than {max_image_bytes():,} bytes, more than an image within the pixel limit",
                    "set RESTORECLI_MAX_PIXELS higher if the image is genuine",
                )
            items.append(Item(len(items), "<stdin>", PurePosixPath("stdin"), data=data))
        elif arg.startswith("@") and len(arg) > 1:
            listing = Path(arg[1:])
            lines = read_text_file(listing, "list file").splitlines()
            for line in lines:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    expand(entry, top=False)
        else:
            expand(arg, top=True)
    return items, notes


# ---- outputs -------------------------------------------------------------------


def normalize_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    dotted = ext if ext.startswith(".") else "." + ext
    if dotted.lower() not in EXT_FORMAT:
        raise UsageError(f"--ext {ext} is not a format restorecli writes", f"use one of {OUTPUT_FORMATS}")
    return dotted


def _stdin_ext(data: bytes | None) -> str:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data or b"")) as im:
            return FORMAT_EXT.get("JPEG" if im.format == "MPO" else (im.format or ""), ".png")
    except Exception:
        return ".png"


def output_ext(item: Item, ext: str | None) -> str:
    """--ext if given, else the input's own extension (case kept), else .png for formats we do not write."""
    if ext:
        return ext
    if item.source is None:
        return _stdin_ext(item.data)
    return item.source.suffix if is_image_name(item.source) else ".png"


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_output_folder_name(target: str) -> None:
    """An OUTPUT that is no image file name is a folder, unless it looks like a mistyped file name.

    `out.xyz` (an extension restorecli does not write) is refused, so a typo never
    silently becomes a folder; `out.xyz/` or an existing folder is taken as one.
    """
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if target.endswith(seps) or target.endswith("/") or Path(target).is_dir():
        return
    suffix = Path(target).suffix
    if suffix and not suffix[1:].isdigit():
        raise UsageError(
            f"output {target}: '{suffix}' is not an image format restorecli writes",
            f"name a .png, .jpg, .webp, .tif or .bmp file, or write {target}/ for a folder",
        )


def _earlier_outputs(items: list[Item], suffix: str) -> set[int]:
    """Scanned files that are outputs of an earlier run of the same task next to their input.

    `photo_derain.png` beside `photo.jpg` (any extension) was written by `restore derain`:
    when this run writes into another folder it must not restore that output again.
    Returns the ids of those items.
    """
    if not suffix:
        return set()
    stems = {(i.source.parent, i.source.stem) for i in items if i.scanned and i.source is not None}
    return {
        id(i)
        for i in items
        if i.scanned
        and i.source is not None
        and i.source.stem.endswith(suffix)
        and (i.source.parent, i.source.stem[: -len(suffix)]) in stems
    }


def plan_outputs(items: list[Item], opts: JobOptions) -> list[Item]:
    """Name every output; drop this job's own earlier outputs from the inputs; flag clashes."""
    ext = normalize_ext(opts.ext)
    target = opts.output
    default_suffix = f"_{opts.task}"
    live = [i for i in items if i.error is None]
    out_file = target not in (None, STDIO) and not Path(target).is_dir() and is_image_name(target)
    if target not in (None, STDIO) and not out_file:
        _check_output_folder_name(target)
    if target == STDIO or out_file:
        if len(live) > 1:
            raise UsageError(
                f"output {target} is one {'stream' if target == STDIO else 'file'} but {len(live)} images were given",
                "give an output folder",
            )
    if out_file and ext and Path(target).suffix.lower() != ext.lower():
        raise UsageError(f"--ext {opts.ext} contradicts the output name {target}", "drop --ext or rename the output")
    if opts.json and (target == STDIO or (target is None and any(i.source is None for i in live))):
        raise UsageError("--json and an image on stdout cannot share stdout", "write the image to a file")

    for item in live:
        suffix = default_suffix if opts.suffix is None else opts.suffix
        if target == STDIO or (target is None and item.source is None):
            item.output = None
        elif out_file:
            item.output = Path(target)
        elif target is None:
            item.output = item.source.with_name(f"{item.source.stem}{suffix}{output_ext(item, ext)}")
        else:
            folder = Path(target) / item.rel.parent
            if opts.suffix is None and (item.source is None or not _same_dir(folder, item.source.parent)):
                suffix = ""
            stem = item.rel.stem if item.source is not None else "stdin"
            item.output = folder / f"{stem}{suffix}{output_ext(item, ext)}"

    produced = {i.output.resolve(): i for i in live if i.output is not None}
    earlier = _earlier_outputs(live, default_suffix if opts.suffix is None else opts.suffix)
    kept = [
        i
        for i in items
        if not (
            i.scanned
            and i.error is None
            and i.source is not None
            and (produced.get(i.source.resolve(), i) is not i or id(i) in earlier)
        )
    ]
    inputs = {i.source.resolve() for i in kept if i.source is not None and i.error is None}
    claimed: dict[Path, Item] = {}
    for item in kept:
        if item.error is not None or item.output is None:
            continue
        real = item.output.resolve()
        if real in inputs:
            item.error = (
                f"output {item.output} is an input file; it is never overwritten (use --suffix or an output folder)"
            )
        elif real in claimed:
            item.error = f"same output name {item.output} as {claimed[real].display}"
        else:
            claimed[real] = item
    return kept


def shard_of(key: str, count: int) -> int:
    """Stable part number of a relative path (the same in every process and on every machine)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def take_shard(items: list[Item], shard: tuple[int, int] | None) -> list[Item]:
    if shard is None:
        return items
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {index}/{count}: need 0 <= I < N", "e.g. --shard 0/4 ... --shard 3/4")
    return [i for i in items if shard_of(i.key, count) == index]


# ---- masks ---------------------------------------------------------------------


class MaskFinder:
    """The mask of each image: one file for all, or a folder matched by relative path and file stem.

    In a folder, `sub/photo.jpg` takes `sub/photo.*` or `photo.*` (also `photo_mask.*`), any image format.
    """

    def __init__(self, mask: str) -> None:
        self.path = Path(mask)
        if not self.path.exists():
            raise UsageError(f"mask not found: {mask}", "give a mask image or a folder of masks")
        self.index: dict[tuple[str, str], Path] = {}
        if self.path.is_dir():
            for f in list_images(self.path, recursive=True):
                rel = PurePosixPath(f.relative_to(self.path).as_posix())
                self.index.setdefault((rel.parent.as_posix(), rel.stem), f)

    def find(self, item: Item) -> Path | None:
        if self.path.is_file():
            return self.path
        stem = item.rel.stem
        for folder in (item.rel.parent.as_posix(), "."):
            for name in (stem, f"{stem}_mask"):
                if (folder, name) in self.index:
                    return self.index[(folder, name)]
        return None

    def assign(self, items: list[Item]) -> None:
        for item in items:
            if item.error is None:
                item.mask = self.find(item)
                if item.mask is None:
                    item.error = (
                        f"no mask for it in {self.path} (looked for {item.rel.stem}.* and {item.rel.stem}_mask.*)"
                    )
