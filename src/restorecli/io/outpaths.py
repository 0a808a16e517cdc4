"""Where a command may write: never onto an input, never outside the folder a name is joined to.

Every command that writes (a task, `degrade`, `convert`, `eval -o`, `train -o`, `--report`)
names its outputs first and asks these helpers before any work, so a mistyped argument
(`restore degrade rain in/ in/`, `convert ... -o net.pth`) is a usage error instead of a
lost input. Paths are compared after resolving links, and by device and inode when both
exist, so a symlink or a hard link to an input counts as that input.

`name_problem` judges a name part the user gives (`--suffix`): it is joined to a folder,
so a separator, `..` or a NUL would let it lead elsewhere.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import UsageError


def same_path(a: Path | str, b: Path | str) -> bool:
    """Whether `a` and `b` are one file or folder: equal once resolved, or the same inode."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def is_inside(folder: Path | str, path: Path | str) -> bool:
    """Whether `path` is `folder` or below it, judged on the absolute paths with `..` resolved (no I/O)."""
    root = Path(os.path.abspath(folder))
    target = Path(os.path.abspath(path))
    return target == root or root in target.parents


def first_input_at(output: Path | str, inputs: Iterable[Path | str]) -> Path | None:
    """The input that `output` is (a file or a folder), or None."""
    for item in inputs:
        if same_path(output, item):
            return Path(item)
    return None


def refuse_input_overwrite(output: Path | str, inputs: Iterable[Path | str], *, what: str, hint: str) -> None:
    """UsageError (exit 2) when `output` is one of `inputs`; `what` names the output ('-o', 'output')."""
    hit = first_input_at(output, inputs)
    if hit is not None:
        kind = "folder" if Path(hit).is_dir() else "file"
        raise UsageError(f"{what} {output} is the input {kind} {hit}; an input is never overwritten", hint)


def name_problem(value: str) -> str | None:
    """Why `value` cannot be part of a file name (a separator, `..`, a NUL), or None."""
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if "\x00" in value:
        return "contains a NUL character"
    if any(s in value for s in seps):
        return "contains a path separator"
    if ".." in value:
        return "contains '..'"
    return None


def check_name_part(value: str | None, option: str) -> None:
    """UsageError (exit 2) unless `value` (an option such as --suffix) is a plain name part."""
    if value is None:
        return
    problem = name_problem(value)
    if problem is not None:
        raise UsageError(
            f"{option} {value!r} {problem}; it is part of a file name, not a path",
            f"give {option} as plain characters (e.g. _clean), and the folder as OUTPUT",
        )


def not_a_folder(path: Path | str) -> Path | None:
    """The nearest existing ancestor of `path` (or `path` itself) that is not a folder, or None."""
    here = Path(os.path.abspath(path))
    for candidate in (here, *here.parents):
        if os.path.lexists(candidate):
            return None if candidate.is_dir() else candidate
    return None


def make_folder(folder: Path | str) -> None:
    """`mkdir -p`, but a file in the way is 'Not a directory' (ENOTDIR) rather than 'File exists'."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = not_a_folder(folder)
        if blocker is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker)) from None
