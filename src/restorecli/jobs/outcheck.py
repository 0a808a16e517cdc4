"""Can the outputs be written? Asked once per output folder, before any model is loaded.

Without this, a read-only (or missing and uncreatable) output folder was found
out only when the first restored image was written, after the model had been
loaded and every image computed. `OutputFolders.problem` creates the folder if
needed and writes (and removes) a hidden probe file in it; the answer is kept
per folder, so a batch of thousands of files costs one probe per folder.

`check_output_file` asks the same, and more, of a command writing one named file
(`convert -o`, `eval -o`): the right extension, not an input, not a folder.
`write_error` turns the failure to write one output file (a bundle from
`restore convert -o`) into a one-line WeightsError.

No imports from other restorecli modules except `errors` and `io.outpaths`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from ..errors import RestoreError, UsageError, WeightsError
from ..io.outpaths import make_folder, refuse_input_overwrite


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
    reason = write_problem(folder)
    return None if reason is None else f"cannot write to {folder}: {reason}"


def write_problem(folder: Path) -> str | None:
    """Why no file can be created in `folder` (made if missing): 'Not a directory', 'Permission denied', or None."""
    try:
        make_folder(folder)
        probe = folder / f".restorecli-write-test-{os.getpid()}-{secrets.token_hex(3)}.tmp"
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        probe.unlink()
    except FileExistsError:  # mkdir met a file where the folder (or one above it) would be
        return f"cannot write to {folder}: Not a directory (a file is in the way)"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_output_file(
    path: Path, inputs: Iterable[Path | str], *, option: str, suffix: str, what: str, error: type[RestoreError]
) -> None:
    """Before any work, for a command writing one named file (`convert -o`, `eval -o`).

    A wrong extension, an input (or the file behind a link to one), or a folder at `path` is a
    UsageError (exit 2); a folder that cannot hold the file is `error` ('cannot write PATH: REASON').
    """
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise UsageError(f"{option} {path}: {what} is a {suffix} file", f"name it e.g. {path.with_suffix(suffix)}")
    refuse_input_overwrite(path, inputs, what=option, hint=f"name a new {suffix} file")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder", f"name a {suffix} file, e.g. {path / ('out' + suffix)}")
    reason = write_problem(path.parent)
    if reason is not None:
        raise error(f"cannot write {path}: {reason}", f"write to a folder you can write to (another {option})")


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
