"""Files restorecli writes through a private temporary file get the mode a new file would get.

`tempfile.mkstemp` creates files with mode 0600 whatever the umask, so a bundle
written that way and renamed into a shared `RESTORECLI_CACHE` could be read by
its owner only. As huggingface_hub does for its cache, the mode a plain new file
gets in the same folder (0666 less the umask, or what a default ACL says) is
found by creating one, and applied before the rename.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def new_file_mode(folder: Path | str) -> int:
    """The permission bits a newly created file gets in `folder` (umask and default ACLs applied)."""
    probe = Path(folder) / f".restorecli-mode-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def follow_umask(path: Path | str) -> None:
    """Give `path` the mode a new file in its folder would have (best effort: never fails the write)."""
    path = Path(path)
    try:
        os.chmod(path, new_file_mode(path.parent))
    except OSError:
        pass
