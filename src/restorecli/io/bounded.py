"""Reading what came from outside with a bound, before its format is known.

A path may name a 3 GiB sparse file, `/dev/zero` or a FIFO, and stdin may never end: reading
"the whole file" first and checking it after would cost that much memory or wait forever. Each
reader here stops at its bound and says so in one line (UsageError, exit 2), and text must be
UTF-8 without NUL bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import UsageError

TEXT_LIMIT = 16 * 1024 * 1024  # a list of inputs or a registry overlay: far more than any real one


def read_capped(fh: BinaryIO, limit: int) -> bytes | None:
    """Up to `limit` bytes of `fh`; None when there is more."""
    data = fh.read(limit + 1)
    return None if len(data) > limit else data


def read_text_file(path: Path | str, what: str, limit: int = TEXT_LIMIT) -> str:
    """A UTF-8 text file of at most `limit` bytes (`what` names it in the error: 'list file', ...)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"{what} {path} is not a regular file", f"give a text file ({what})")
        with open(path, "rb") as fh:
            data = read_capped(fh, limit)
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}", "check the path") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if data is None:
        raise UsageError(f"{what} {path} is larger than {limit // (1024 * 1024)} MiB", f"give a text file ({what})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None
    if "\0" in text:
        raise UsageError(f"{what} {path} holds NUL bytes: not a text file", f"give a text file ({what})")
    return text
