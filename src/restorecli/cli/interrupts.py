"""SIGTERM stops any command the way Ctrl-C does, with the documented exit codes (130 / 143).

A scheduler (SLURM, Kubernetes, systemd) stops a job with SIGTERM. Python's
default is to die at once, so a download in progress left its multi-GB `.part`
file behind and a held cache lock or temporary file was never cleaned up. With
`install_sigterm()` SIGTERM raises `Terminated` in the main thread instead:
`finally` blocks run (the `.part` file is removed, locks are released) and the
command exits 143 with one line. The batch pipeline still installs its own
handler while images are processed (finished outputs kept, exit 143).

Click turns a Ctrl-C outside a batch into `Abort`; `cli.main` maps that back to
130, as docs/cli.md says.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import signal
import threading

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt, so `except Exception` never swallows it)."""

    code = EXIT_TERMINATED


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def install_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
