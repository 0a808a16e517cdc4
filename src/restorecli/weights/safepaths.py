"""Names from a registry are names, never paths: nothing they spell may leave its folder.

A registry overlay is user input, and its `file`, `filename`, `path`, model and
component names end up joined to cache folders (`CACHE/downloads/KEY/FILE`,
`CACHE/bundles/MODEL-KEY.safetensors`, the Hub cache). An absolute path or a
`..` there would make a download overwrite, or a failed check delete, any file
the user can write. These helpers say whether a value is a plain relative name
and join one to a folder only when the result stays inside it.

No imports from other restorecli modules except `errors` and `io.outpaths` (`is_inside`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError
from ..io.outpaths import is_inside

__all__ = ["inside", "is_inside", "relative_name_problem"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def relative_name_problem(value: object, *, folders: bool = False) -> str | None:
    """Why `value` is not a plain relative name (None when it is one).

    folders=False: one name (`model.pth`); folders=True: `a/b/model.pth` is allowed,
    still without `..`, `.`, empty parts, a leading `/`, `~`, a drive or a backslash.
    """
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if _CONTROL.search(value):
        return "contains a control character"
    if "\\" in value:
        return "contains a backslash"
    if value.startswith("/") or _DRIVE.match(value):
        return "is an absolute path"
    if value.startswith("~"):
        return "starts with ~"
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "contains '..', '.' or an empty folder name"
    if len(parts) > 1 and not folders:
        return "names a folder (use a file name alone)"
    return None


def inside(folder: Path, name: str, *, folders: bool = False) -> Path:
    """`folder / name`, refused (UsageError, exit 2) unless `name` is a plain relative name that stays inside."""
    problem = relative_name_problem(name, folders=folders)
    path = Path(folder) / name
    if problem is None and not is_inside(folder, path):
        problem = "leaves its folder"
    if problem is not None:
        raise UsageError(
            f"refusing {name!r} under {folder}: it {problem}",
            "a registry file name must be a plain relative name inside its cache folder (docs/weights.md)",
        )
    return path
