"""Files on disk: which ones are images, listing them, hashing them, and writing without ever leaving half a file.

Every write of a result (restored image, generated PNG, weights bundle,
training checkpoint) goes through a hidden temporary file in the target's
folder that is renamed over the target only when complete, so readers (and a
later resumed run) see either no file or the whole file. A temporary file left
by a hard kill (SIGKILL, power loss) is named `.NAME.PID.XXXXXX.tmp`, which folder
scans ignore (hidden, and not an image extension).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .imageio import IMAGE_EXTS
from .outpaths import make_folder


def is_image_name(path: Path | str) -> bool:
    """Whether the name has one of the extensions restorecli reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def list_images(
    folder: Path,
    *,
    recursive: bool = False,
    exclude: frozenset[Path] = frozenset(),
    skipped: list[Path] | None = None,
) -> list[Path]:
    """Image files in a folder, sorted by relative path; hidden files and folders (and temporary files) left out.

    `exclude`: resolved folders not to descend into (e.g. an output folder inside the scanned tree).
    Entries with an image name that are not regular files (a FIFO, a socket, a device) would block or
    never end when read: they are left out, and appended to `skipped` when given. Each real folder
    is visited once, however many symbolic links lead to it.
    """
    folder = Path(folder)
    found: list[Path] = []
    for here, dirs, files in _walk_real_folders(folder):
        dirs[:] = (
            sorted(d for d in dirs if not d.startswith(".") and (Path(here) / d).resolve() not in exclude)
            if recursive
            else []
        )
        for name in files:
            if name.startswith(".") or not is_image_name(name):
                continue
            path = Path(here) / name
            if _is_regular(path) or (path.is_symlink() and not path.exists()):
                found.append(path)  # a dangling or looping link fails as that file, where the user sees it
            elif skipped is not None and path.exists():
                skipped.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _walk_real_folders(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk` following symbolic links, each real folder once (a loop of links would never end).

    As with os.walk, the caller may prune `dirs` in place; a folder that cannot be read is passed over.
    """
    visited: set[tuple[int, int]] = set()
    for here, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(here)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        yield here, dirs, files


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def glob_once(pattern: str) -> list[Path]:
    """Regular files matching a glob (`**` = any depth), each real folder visited once.

    glob's own `**` follows symbolic links into themselves and walks every path through a
    loop of them (exponentially many); this walk keeps the set of real folders it has seen.
    Hidden names match only a pattern part that starts with '.', as in glob.
    """
    if "**" not in pattern:
        return sorted(Path(p) for p in glob.glob(pattern) if _is_regular(Path(p)))
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = parts[fixed:]
    regex = re.compile(
        "".join(
            ("(?:[^/]+/)*" if i < len(rest) - 1 else "(?:[^/]+/)*[^/]+")
            if p == "**"
            else _part_regex(p) + ("/" if i < len(rest) - 1 else "")
            for i, p in enumerate(rest)
        )
        + r"\Z",
        re.S,
    )
    found: list[Path] = []
    for here, dirs, files in _walk_real_folders(root):
        dirs.sort()
        for name in files:
            path = Path(here) / name
            rel = path.relative_to(root).as_posix()
            if regex.match(rel) and not _hidden(rel, rest) and _is_regular(path):
                found.append(path if fixed else Path(rel))
    return sorted(found)


def _part_regex(part: str) -> str:
    """One path part of a glob as a regex that never crosses a '/'."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        close = part.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif close > 0:
            body = part[i + 1 : close]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _hidden(rel: str, pattern: tuple[str, ...]) -> bool:
    """A hidden name anywhere in the path, unless the pattern asks for hidden names."""
    return any(n.startswith(".") for n in rel.split("/")) and not any(p.startswith(".") for p in pattern)


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
