"""Errors a user can act on, each with its own exit code.

Every error is printed as one line (what went wrong, then what to do) and the
process exits with the code of its class, so scripts can tell a usage mistake
from a missing checkpoint from a failed image.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status the `restore` command has; `meaning` is what `--help` and docs/cli.md say of it."""

    meaning: str

    def __new__(cls, code: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    OK = 0, "every image was restored, or skipped because its output already exists"
    FAILED = (
        1,
        (
            "some images failed (unreadable, a mask of the wrong size or none for it, out of memory, not writable); "
            "each is reported with its path and reason, the others were written"
        ),
    )
    USAGE = (
        2,
        (
            "usage error: bad option or value, unknown model, steps out of range, missing --mask, "
            "an input that does not exist, an output name of an unknown format"
        ),
    )
    WEIGHTS = (
        3,
        (
            "weights error: a checkpoint is corrupt, fails its checksum, pickles code, does not fit the model "
            "or is a bundle for another task (also: a download past its ceiling, a bundle that cannot be written)"
        ),
    )
    WEIGHTS_UNAVAILABLE = (
        4,
        (
            "weights unavailable: not cached and cannot be downloaded now "
            "(offline, no network, HTTP error, manual download needed)"
        ),
    )
    DEVICE = 5, "device error: the requested device or precision is not available"
    INTERRUPTED = 130, "interrupted (Ctrl-C); finished outputs are kept, no partial or .part file is left"
    TERMINATED = (
        143,
        (
            "terminated (SIGTERM, e.g. by a scheduler, also during a download); "
            "finished outputs are kept, no partial or .part file is left"
        ),
    )


class RestoreError(Exception):
    """Base class: `str(err)` is the one line shown to the user."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class ImageFailed(RestoreError):
    """One or more images could not be processed (exit 1)."""

    exit_code: int = ExitCode.FAILED


class UsageError(RestoreError):
    """Bad arguments: unknown model, steps out of range, missing mask, unknown output format (exit 2)."""

    exit_code: int = ExitCode.USAGE


class InputError(RestoreError):
    """An input file is missing, unreadable or not an image (exit 1 after the batch)."""

    exit_code: int = ExitCode.FAILED


class TrainingDiverged(RestoreError):
    """A training run whose weights stopped being finite; the last finite checkpoint is kept (exit 1)."""

    exit_code: int = ExitCode.FAILED


class WeightsError(RestoreError):
    """A checkpoint is missing, unreadable or does not fit the model (exit 3)."""

    exit_code: int = ExitCode.WEIGHTS


class WeightsUnavailable(WeightsError):
    """Weights are not cached and cannot be fetched now (offline, no network) (exit 4)."""

    exit_code: int = ExitCode.WEIGHTS_UNAVAILABLE


class DeviceError(RestoreError):
    """The requested device or precision is not available (exit 5)."""

    exit_code: int = ExitCode.DEVICE


# `restore --help`, docs/cli.md and docs/batch.md show this table
EXIT_CODES = {int(code): code.meaning for code in ExitCode}
