"""One file lock per cache entry, so several processes can share one cache from its first use.

Without it, two processes that find a model missing both download its files to
the same `CACHE/downloads/KEY/FILE`, and the first to finish its bundle deletes
that file while the other is about to read it. With it, the first
process fetches and converts while the others wait; once they get the lock they
look again and find the finished bundle.

Locks are OS locks (flock) on `CACHE/.locks/NAME.lock`, released by the OS when a
process dies (kill -9 leaves no stale lock). As in huggingface_hub, lock files
are group-writable (0o664), so users sharing a cache can wait for each other.
A lock file is opened with O_NOFOLLOW and never truncated, and `.locks` must be
a real folder (weights.cachefs): a link planted there by another user of a shared
cache is refused, never followed. Where flock is missing (Windows, some network
file systems) `filelock` takes over.
Locks are taken in sorted order, so two processes never wait for each other in
a circle. A cache the process cannot write to is used without a lock (the
operation itself then fails with its own, clearer error).

No imports from other restorecli modules except `errors` and `weights.cachefs`.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import WeightsError
from .cachefs import cache_folder, open_lock_file

LOCK_FOLDER = ".locks"  # as huggingface_hub keeps HF_HUB_CACHE/.locks/
LOCK_MODE = 0o664
NOTE_AFTER_S = 2.0  # say that we wait once a lock has been busy this long
POLL_S = 0.05  # how often a busy lock is tried again


@contextmanager
def cache_entry_locks(
    root: Path, names: Iterable[str], *, note: Callable[[str], None] | None = None, timeout: float | None = None
) -> Iterator[None]:
    """Hold the locks `ROOT/.locks/NAME.lock` for every name (sorted, each once) while the block runs.

    timeout: give up after this many seconds in all (TimeoutError); None waits as long as it takes
    (an interrupt still stops the wait). A link at `.locks` or at a lock file is a WeightsError.
    """
    with ExitStack() as stack:
        try:
            folder = cache_folder(root, LOCK_FOLDER)
        except OSError:
            yield  # read-only or unusable cache: nothing can be written there, nothing to protect
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        for name in sorted(set(names)):
            release = _acquire(folder / f"{name}.lock", name, note, deadline)
            if release is not None:
                stack.callback(release)
        yield


def _acquire(
    path: Path, name: str, note: Callable[[str], None] | None, deadline: float | None
) -> Callable[[], None] | None:
    """Take the lock; return what releases it, or None when this lock cannot be had (go on unlocked)."""
    try:
        import fcntl
    except ImportError:
        return _acquire_filelock(path, name, note, deadline)
    try:
        fd = open_lock_file(path, LOCK_MODE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a link (EMLINK on some BSDs)
            raise WeightsError(
                f"lock file {path} is a symbolic link; restorecli never follows links inside its cache",
                f"remove the link ({path}); see docs/weights.md on shared caches",
            ) from None
        return None  # a lock file of another user we cannot open: go on unlocked
    try:
        os.fchmod(fd, LOCK_MODE)  # group-writable whatever the umask, so the team can wait on it
    except OSError:
        pass
    noted = False
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            except OSError:  # no flock on this file system
                os.close(fd)
                return _acquire_filelock(path, name, note, deadline)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"lock {path} is held by another process")
            if note is not None and not noted and now - start >= NOTE_AFTER_S:
                note(f"waiting for another restorecli process that is fetching the same weights ({name})")
                noted = True
            time.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise

    def release() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(fd)

    return release


def _acquire_filelock(
    path: Path, name: str, note: Callable[[str], None] | None, deadline: float | None
) -> Callable[[], None] | None:
    """Without flock: `filelock` (a SoftFileLock where the file system has no locking at all)."""
    from filelock import FileLock, SoftFileLock, Timeout

    if os.path.islink(path):
        raise WeightsError(f"lock file {path} is a symbolic link; restorecli never follows links inside its cache")
    lock = FileLock(str(path), mode=LOCK_MODE)
    noted = False
    while True:
        wait = NOTE_AFTER_S if deadline is None else max(0.0, min(NOTE_AFTER_S, deadline - time.monotonic()))
        try:
            lock.acquire(timeout=wait)
            return lambda: _release(lock)
        except Timeout:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"lock {path} is held by another process") from None
            if note is not None and not noted:
                note(f"waiting for another restorecli process that is fetching the same weights ({name})")
                noted = True
        except NotImplementedError:
            lock = SoftFileLock(str(path))
        except OSError:
            return None


def _release(lock) -> None:
    try:
        lock.release()
    except OSError:
        pass
