"""Files on disk: which ones are images, listing them, hashing them, and writing without ever leaving half a file.

Every write of a result (restored image, generated PNG, weights bundle,
training checkpoint) goes through a hidden temporary file in the target's
folder that is renamed over the target only when complete, so readers (and a
later resumed run) see either no file or the whole file. A temporary file left
by a hard kill (SIGKILL, power loss) is named `.NAME.PID.XXXXXX.tmp`, which folder
scans ignore (hidden, and not an image extension).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .imageio import IMAGE_EXTS
from .outpaths import make_folder


def is_image_name(path: Path | str) -> bool:
    """Whether the name has one of the extensions restorecli reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def list_images(folder: Path, *, recursive: bool = False, exclude: frozenset[Path] = frozenset()) -> list[Path]:
    """Image files in a folder, sorted by relative path; hidden files and folders (and temporary files) left out.

    `exclude`: resolved folders not to descend into (e.g. an output folder inside the scanned tree).
    """
    folder = Path(folder)
    found: list[Path] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = (
            sorted(d for d in dirs if not d.startswith(".") and (Path(here) / d).resolve() not in exclude)
            if recursive
            else []
        )
        found += [Path(here) / f for f in files if not f.startswith(".") and is_image_name(f)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_live_temps: set[Path] = set()
_temps_lock = threading.Lock()


@contextmanager
def atomic_target(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without error.

    The folder is created if needed. On any exception (Ctrl-C included) the temporary
    file is removed and `path` is left as it was.
    """
    path = Path(path)
    make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    with _temps_lock:
        _live_temps.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with _temps_lock:
            _live_temps.discard(tmp)


def write_atomic(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` through a hidden temporary file in the same folder, synced, then renamed."""
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def remove_temp_files() -> int:
    """Delete the temporary files of writes still in progress (called when a run is interrupted)."""
    with _temps_lock:
        temps = list(_live_temps)
        _live_temps.clear()
    for tmp in temps:
        tmp.unlink(missing_ok=True)
    return len(temps)
