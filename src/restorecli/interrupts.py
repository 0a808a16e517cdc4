"""SIGTERM stops any command the way Ctrl-C does: the one signal handler the CLI and the batch pipeline share.

A scheduler (SLURM, Kubernetes, systemd) stops a job with SIGTERM. Python's
default is to die at once, so a download in progress left its multi-GB `.part`
file behind and a held cache lock or temporary file was never cleaned up. With
this handler SIGTERM raises `Terminated` in the main thread instead: `finally`
blocks run (the `.part` file is removed, locks are released, a batch finishes
writing the images already restored) and the command exits 143 with one line.

`cli.main` installs the handler for the whole command; `run_job` installs it
for the length of a batch (for Python callers who never went through the CLI).
Ctrl-C stays Python's KeyboardInterrupt; `exit_code_of` maps either to its code.

Imports nothing of restorecli but `errors`, so every layer may use it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ExitCode


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt, so `except Exception` never swallows it).

    Not a KeyboardInterrupt: Click would turn that into `Abort`, and the command would exit 130, not 143.
    """

    code = ExitCode.TERMINATED


STOPPED = (KeyboardInterrupt, Terminated)  # what `except` names to catch either way of stopping a run


def exit_code_of(stop: BaseException) -> ExitCode:
    """The exit code for a Ctrl-C (130) or a SIGTERM (143)."""
    return ExitCode.TERMINATED if isinstance(stop, Terminated) else ExitCode.INTERRUPTED


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def install_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere: only it may set handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """`install_sigterm` for the length of a `with` block; the previous handler comes back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
