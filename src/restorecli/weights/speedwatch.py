"""A low-speed limit for one download: too few bytes over a window ends the transfer.

A socket timeout bounds the wait for ONE read, so a server that sends a byte every
few seconds (in its headers or its body) would keep a download alive forever. Here
a watchdog thread judges the transfer over successive windows of
`RESTORECLI_LOW_SPEED_TIME` seconds (default 30): a window that brought fewer than
`LOW_SPEED_BYTES` bytes per second shuts the connection's socket down, which wakes
the blocked read; the caller then asks `tripped` and reports the host in one line.
Waiting for headers counts as zero bytes, so slow headers trip it the same way.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

from ..errors import UsageError

LOW_SPEED_TIME_ENV = "RESTORECLI_LOW_SPEED_TIME"
DEFAULT_LOW_SPEED_TIME = 30.0  # seconds: the window over which a transfer is judged
LOW_SPEED_BYTES = 1024  # bytes per second a window must average
MAX_LOW_SPEED_TIME = 86_400.0


def low_speed_time() -> float:
    """The window in seconds (UsageError for a setting that is not a positive number of seconds)."""
    raw = os.environ.get(LOW_SPEED_TIME_ENV, "").strip()
    if not raw:
        return DEFAULT_LOW_SPEED_TIME
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_LOW_SPEED_TIME):
        raise UsageError(
            f"{LOW_SPEED_TIME_ENV}={raw} is not a number of seconds",
            f"give seconds above 0 and at most {MAX_LOW_SPEED_TIME:.0f}, e.g. {LOW_SPEED_TIME_ENV}=60",
        )
    return value


class SpeedWatch:
    """Counts a download's bytes and cuts its socket when a window brings too few (see the module docstring)."""

    def __init__(self, window_s: float | None = None, min_rate: int = LOW_SPEED_BYTES) -> None:
        self.window = low_speed_time() if window_s is None else window_s
        self.min_bytes = min_rate * self.window
        self.tripped = False
        self.last_bytes = 0  # bytes in the window that tripped
        self._lock = threading.Lock()
        self._sock: Any = None
        self._active = False
        self._received = 0
        self._mark = 0
        self._since = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="restorecli-speedwatch", daemon=True)

    def __enter__(self) -> SpeedWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def start(self) -> None:
        """A request begins: judge from now on (waiting between tries is not judged)."""
        with self._lock:
            self._active, self._mark, self._since, self._sock = True, self._received, time.monotonic(), None

    def idle(self) -> None:
        with self._lock:
            self._active, self._sock = False, None

    def attach(self, sock: Any) -> Any:
        """The socket of the current connection (the one to cut); returned unchanged."""
        with self._lock:
            self._sock = sock
            late = self.tripped
        if late:
            _cut(sock)
        return sock

    def count(self, n: int) -> None:
        with self._lock:
            self._received += n

    def _watch(self) -> None:
        tick = min(1.0, self.window / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if not self._active or self.tripped:
                    continue
                now = time.monotonic()
                if now - self._since < self.window:
                    continue
                got = self._received - self._mark
                if got >= self.min_bytes:
                    self._mark, self._since = self._received, now
                    continue
                self.tripped, self.last_bytes, sock = True, got, self._sock
            _cut(sock)

    def reason(self, host: str) -> str:
        return (
            f"{host} sent {self.last_bytes} bytes in {self.window:g} s, under the low-speed limit of "
            f"{LOW_SPEED_BYTES} bytes/s ({LOW_SPEED_TIME_ENV}); gave up"
        )


def _cut(sock: Any) -> None:
    """Shut the socket down under any TLS layer: a read blocked on it returns at once."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError, ValueError):
        pass
