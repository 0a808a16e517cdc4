"""Paths below the cache folder, used without following symbolic links.

A cache shared by a team is writable by every member, so anyone could plant a link at
`CACHE/downloads/KEY`, `CACHE/.locks` or `CACHE/bundles` and make another member's
`restore fetch` write, lock or delete files elsewhere. So every folder below the cache
root is checked to be a real folder (a link is refused with one line), files there are
created with O_NOFOLLOW | O_EXCL, and a link where a file is expected counts as absent
(it is never read, and a finished download or bundle is renamed over the link itself).
The root itself may be a link: the user chose it with --cache-dir or $RESTORECLI_CACHE.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import WeightsError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def cache_folder(root: Path | str, rel: str, *, create: bool = True) -> Path:
    """`root / rel` ('bundles', 'downloads/KEY'), each level a real folder, made when missing and `create`.

    A symbolic link or a file at any level below the root is a WeightsError (exit 3), one line.
    """
    here = Path(root)
    if create:
        here.mkdir(parents=True, exist_ok=True)
    for part in Path(rel).parts:
        here = here / part
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):  # missing, or a file above it: nothing cached here
            if not create:
                return Path(root) / rel
            try:
                os.mkdir(here)
            except FileExistsError:
                pass  # another process made it: judged below like any existing entry
            st = os.lstat(here)
        if stat.S_ISLNK(st.st_mode):
            raise WeightsError(
                f"cache folder {here} is a symbolic link; restorecli never follows links inside its cache",
                f"remove the link ({here}) or use another --cache-dir; see docs/weights.md on shared caches",
            )
        if not stat.S_ISDIR(st.st_mode):
            raise WeightsError(f"cache folder {here} is not a folder", f"remove {here} or use another --cache-dir")
    return here


def is_real_file(path: Path | str) -> bool:
    """Whether `path` is a regular file itself, not a link to one (no link is followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def create_new(path: Path | str, mode: int = 0o644) -> int:
    """A write-only descriptor of a new file at `path`; a link or any file already there is FileExistsError."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, mode)


def open_lock_file(path: Path | str, mode: int = 0o664) -> int:
    """A read-write descriptor of the lock file at `path`, created if missing, never through a link
    (ELOOP then) and never truncated (a lock file's bytes do not matter; another user's file stays intact)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, mode)
