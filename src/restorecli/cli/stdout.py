"""Standard output that cannot be written (closed, full, a reader gone) is one line and exit 1.

Without this a `--json` report sent to `/dev/full` ended in a traceback, a closed
stdout (`>&-`) lost the report silently with exit 0 (Python sets `sys.stdout` to
None and Click's echo then prints nothing), and a reader that stopped early
(`| head -c1`) ended silently. `guard_stdout` puts a thin wrapper in front of
`sys.stdout`: a failed write or flush raises `StdoutFailed` (one line, exit 1),
after pointing the file descriptor at /dev/null so the interpreter's last flush
at exit is quiet.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

from ..errors import RestoreError


class StdoutFailed(RestoreError):
    """Standard output could not be written (exit 1)."""


class _Closed:
    """Stands in for a closed standard output: every write fails (StdoutFailed)."""

    encoding = "utf-8"
    errors = "strict"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        raise _failed(OSError(errno.EBADF, "standard output is closed"))

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Guarded:
    """`sys.stdout` whose failed writes are StdoutFailed, not OSError (Click would swallow EPIPE).

    Text goes straight to the file descriptor, unbuffered: a buffered stream that
    failed once (Click probes it with an empty write) may report later writes to a
    full disk as done, so the failure would never be seen.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        try:
            self._fd: int | None = inner.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # not a real file (a test's capture): write through it

    @property
    def encoding(self) -> str:
        return getattr(self._inner, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        return getattr(self._inner, "errors", None) or "strict"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        try:
            if self._fd is None:
                return self._inner.write(text)
            self._inner.flush()  # whatever was written through the buffer goes first
            view = memoryview(text.encode(self.encoding, self.errors))
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise _failed(exc) from None
        return len(text)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except OSError as exc:
            raise _failed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _failed(exc: OSError) -> StdoutFailed:
    _quiet_exit()
    reason = "the reader closed the pipe" if exc.errno == errno.EPIPE else exc.strerror or str(exc)
    return StdoutFailed(
        f"cannot write to standard output: {reason}",
        "send the output to a file or a program that reads all of it",
    )


def _quiet_exit() -> None:
    """Point fd 1 at /dev/null, so what is still buffered is dropped at exit instead of raising again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass


def guard_stdout() -> None:
    """Install the wrapper (once); a closed stdout becomes a stream whose writes fail."""
    current = sys.stdout
    if isinstance(current, _Guarded):
        return
    if current is None:  # fd 1 is closed: hold it, so no file opened later becomes "standard output"
        _quiet_exit()
        sys.stdout = _Closed()  # type: ignore[assignment]
        return
    sys.stdout = _Guarded(current)  # type: ignore[assignment]
