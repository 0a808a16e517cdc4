"""One file lock per cache entry, so several processes can share one cache from its first use.

Without it, two processes that find a model missing both download its files to
the same `CACHE/downloads/KEY/FILE`, and the first to finish its bundle deletes
that file while the other is about to read it. With it, the first
process fetches and converts while the others wait; once they get the lock they
look again and find the finished bundle.

Locks are `filelock.FileLock`s (the library huggingface_hub itself locks its
cache with): an OS lock on `CACHE/.locks/NAME.lock`, released by the OS when a
process dies (kill -9 leaves no stale lock). As in huggingface_hub, lock files
are group-writable (0o664, before the umask), so users sharing a cache can wait
for each other, and a file system without flock falls back to a `SoftFileLock`.
Locks are taken in sorted order, so two processes never wait for each other in
a circle. A cache the process cannot write to is used without a lock (the
operation itself then fails with its own, clearer error).

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

LOCK_FOLDER = ".locks"  # as huggingface_hub keeps HF_HUB_CACHE/.locks/
LOCK_MODE = 0o664
NOTE_AFTER_S = 2.0  # say that we wait once a lock has been busy this long


@contextmanager
def cache_entry_locks(
    root: Path, names: Iterable[str], *, note: Callable[[str], None] | None = None, timeout: float | None = None
) -> Iterator[None]:
    """Hold the locks `ROOT/.locks/NAME.lock` for every name (sorted, each once) while the block runs.

    timeout: give up after this many seconds in all (filelock.Timeout); None waits as long as it takes
    (an interrupt still stops the wait).
    """
    with ExitStack() as stack:
        folder = Path(root) / LOCK_FOLDER
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            yield  # read-only or unusable cache: nothing can be written there, nothing to protect
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        for name in sorted(set(names)):
            lock = _acquire(folder / f"{name}.lock", name, note, deadline)
            if lock is not None:
                stack.callback(_release, lock)
        yield


def _acquire(path: Path, name: str, note: Callable[[str], None] | None, deadline: float | None):
    from filelock import FileLock, SoftFileLock, Timeout

    lock = FileLock(str(path), mode=LOCK_MODE)
    noted = False
    while True:
        wait = NOTE_AFTER_S if deadline is None else max(0.0, min(NOTE_AFTER_S, deadline - time.monotonic()))
        try:
            lock.acquire(timeout=wait)
            return lock
        except Timeout:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if note is not None and not noted:
                note(f"waiting for another restorecli process that is fetching the same weights ({name})")
                noted = True
        except NotImplementedError:  # no flock on this file system
            lock = SoftFileLock(str(path))
        except PermissionError:
            return None  # a lock file of another user we cannot open: go on unlocked
        except OSError:
            return None


def _release(lock) -> None:
    try:
        lock.release()
    except OSError:
        pass
