"""Can the outputs be written? Asked once per output folder, before any model is loaded.

Without this, a read-only (or missing and uncreatable) output folder was found
out only when the first restored image was written, after the model had been
loaded and every image computed. `OutputFolders.problem` creates the folder if
needed and writes (and removes) a hidden probe file in it; the answer is kept
per folder, so a batch of thousands of files costs one probe per folder.

`write_error` turns the failure to write one output file (a bundle from
`restore convert -o`) into a one-line WeightsError.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import WeightsError


class OutputFolders:
    """Remembers, per folder, whether files can be written there."""

    def __init__(self) -> None:
        self._seen: dict[Path, str | None] = {}

    def problem(self, output: Path | None) -> str | None:
        """Why `output` cannot be written ('cannot write to FOLDER: REASON'), or None; None for stdout."""
        if output is None:
            return None
        folder = Path(output).parent
        if folder not in self._seen:
            self._seen[folder] = folder_problem(folder)
        return self._seen[folder]


def folder_problem(folder: Path) -> str | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".restorecli-write-test-{os.getpid()}-{secrets.token_hex(3)}.tmp"
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        probe.unlink()
    except FileExistsError:  # mkdir met a file where the folder (or one above it) would be
        return f"cannot write to {folder}: Not a directory (a file is in the way)"
    except OSError as exc:
        return f"cannot write to {folder}: {exc.strerror or exc}"
    return None


def write_error(path: Path | str, exc: BaseException) -> BaseException:
    """The one-line error for a failed write of `path` (a full disk, a read-only or missing folder);
    any other exception is returned as it is, to be raised unchanged."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    elif type(exc).__name__ == "SafetensorError" and "error" in str(exc).lower():
        reason = str(exc).rsplit("I/O error: ", 1)[-1]
    else:
        return exc
    return WeightsError(
        f"cannot write {path}: {reason}",
        "free some disk space, or write to a folder you can write to (another -o)",
    )
