"""Guards around downloads: how much may come, how often a transfer may restart, what is left over,
and whether the result is a weights file at all (before it enters the cache).

Size: a download is bounded by the registry's `size` when it pins one, else by
a ceiling, `RESTORECLI_MAX_DOWNLOAD` (bytes, or with a unit: 500M, 20G, 2GiB).
Without that setting the ceiling follows the registry: CEILING_FACTOR times its
largest pinned file (an unpinned file of a kind the registry knows is no larger
than those), or FALLBACK_MAX_DOWNLOAD when it pins no size at all. A
`Content-Length` over the bound is refused before the body, a body that grows
past it is stopped there (WeightsError, exit 3).

Restarts: a transfer that breaks off is resumed with Range; when the server
ignores Range the download restarts from zero. Only bytes never received
before count as progress (a restart that brings the same bytes again does
not), and a download restarts from zero at most MAX_RESTARTS times.

Leftovers: a download in progress is `.FILE.PID.part`; one left by a hard kill
is removed by the next download of the same entry (which holds its cache lock).

Content: a download whose registry entry pins no size or sha256 can only be judged by
its content. `weights_file_problem` looks at the file's structure, cheaply and
without torch or unpickling: a safetensors file (its JSON header and data size
agree), a PyTorch zip checkpoint (a readable zip with a `data.pkl`), a legacy
`torch.save` or plain pickle stream (a pickle opcode stream that ends), and
recognises what is most often served instead (a web page, a short body).

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import json
import os
import pickletools
import re
import struct
import zipfile
from pathlib import Path

from ..errors import UsageError, WeightsError

MAX_HEADER = 100_000_000  # safetensors' own limit on its JSON header
MAX_DOWNLOAD_ENV = "RESTORECLI_MAX_DOWNLOAD"
CEILING_FACTOR = 2  # an unpinned file may be this many times the largest pinned one
FALLBACK_MAX_DOWNLOAD = 2 * 1000**3  # a registry that pins no size at all
MAX_RESTARTS = 3  # restarts from byte 0 (server ignoring Range) before giving up
_UNITS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_size(text: str) -> int:
    """'4M' -> 4000000, '2GiB' -> 2147483648, '1500' -> 1500; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if not m:
        raise ValueError(text)
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def human(n: int) -> str:
    for unit, size in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def default_ceiling(largest_pinned: int | None) -> int:
    """The ceiling without a setting: relative to the registry's largest pinned file."""
    if not largest_pinned or largest_pinned <= 0:
        return FALLBACK_MAX_DOWNLOAD
    return CEILING_FACTOR * largest_pinned


def download_ceiling(largest_pinned: int | None = None) -> int:
    """The bound on a download whose size the registry does not pin (UsageError for a bad setting)."""
    raw = os.environ.get(MAX_DOWNLOAD_ENV, "").strip()
    if not raw:
        return default_ceiling(largest_pinned)
    try:
        value = parse_size(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{MAX_DOWNLOAD_ENV}={raw} is not a size", "write bytes or a size such as 500M, 20G or 2GiB")
    return value


class DownloadGuard:
    """The size bound and the restart count of one download (see the module docstring)."""

    def __init__(self, url: str, label: str, expected_size: int | None, ceiling: int | None = None) -> None:
        """`ceiling`: the bound for an unpinned download (default: `download_ceiling()`)."""
        self.url, self.label, self.expected = url, label, expected_size
        if expected_size is not None:
            self.limit = expected_size
        else:
            self.limit = ceiling if ceiling is not None else download_ceiling()
        self.best = 0  # most bytes ever held at once
        self.restarts = 0

    def _refuse(self, what: str) -> WeightsError:
        if self.expected is not None:
            return WeightsError(
                f"{self.url} {what} but the registry expects {self.expected} bytes for {self.label}",
                "the source serves a different file: report it, or correct size/sources in a registry overlay "
                "(docs/weights.md)",
            )
        return WeightsError(
            f"{self.url} {what}, over the download ceiling of {human(self.limit)} for {self.label} "
            f"({MAX_DOWNLOAD_ENV}, else {CEILING_FACTOR}x the largest registered file; the registry gives "
            "no size for this one); nothing was kept",
            f"if the file is genuinely that large set {MAX_DOWNLOAD_ENV} higher (e.g. {MAX_DOWNLOAD_ENV}=50G), "
            "else the source serves something else: report it, or give its size in a registry overlay",
        )

    def check_declared(self, total: int | None) -> None:
        """Refuse an announced size over the bound before reading the body."""
        if total is not None and total > self.limit:
            raise self._refuse(f"announces {total} bytes")

    def check_received(self, received: int) -> None:
        if received > self.limit:
            raise self._refuse(f"sends more than {received - 1} bytes")

    def progressed(self, received: int) -> bool:
        """Whether this transfer brought bytes never held before (only that renews the tries)."""
        if received > self.best:
            self.best = received
            return True
        return False

    def restarted(self) -> bool:
        """Count a restart from byte 0; True once there were too many."""
        self.restarts += 1
        return self.restarts > MAX_RESTARTS


PART_NAME = re.compile(r"\..+\.\d+\.part")


def remove_stale_parts(folder: Path, keep: Path | None = None) -> int:
    """Delete `.NAME.PID.part` files in `folder` except `keep` (call while holding the entry's lock)."""
    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for path in entries:
        if PART_NAME.fullmatch(path.name) and path != keep and path.is_file():
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def weights_file_problem(path: Path | str) -> str | None:
    """Why the file cannot be a weights file (a short phrase), or None when its structure is sound."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04"):
        return _zip_problem(path)
    if size >= 10 and head[8:9] == b"{":
        return _safetensors_problem(path, size)
    if head[:1] == b"\x80":
        return _pickle_problem(path)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "it is a web page (HTML), not a weights file"
    if text.startswith((b"{", b"[")):
        return "it is JSON text, not a weights file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"it is text ({_quote(head)}), not a weights file"
    return f"it is neither a safetensors nor a PyTorch file (it starts with {head[:8].hex()})"


def _quote(head: bytes) -> str:
    line = head.decode("ascii", "replace").strip().splitlines()
    first = line[0] if line else ""
    return repr(first[:40] + ("..." if len(first) > 40 else ""))


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"it is a damaged or truncated zip archive ({exc})"
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "it is a zip archive but not a PyTorch checkpoint (no data.pkl)"
    return None


def _pickle_problem(path: Path) -> str | None:
    """A legacy torch.save file or a plain pickle: the first pickle stream must be complete."""
    try:
        with open(path, "rb") as fh:
            for opcode, _arg, _pos in pickletools.genops(fh):
                if opcode.name == "STOP":
                    return None
    except Exception as exc:  # genops raises ValueError and others on bad data; it never runs anything
        return f"it is a damaged or truncated pickle stream ({str(exc)[:80] or type(exc).__name__})"
    return "it is a truncated pickle stream"


def _safetensors_problem(path: Path, size: int) -> str | None:
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > MAX_HEADER or 8 + length > size:
            return "it is a truncated safetensors file (its header runs past the end)"
        try:
            header = json.loads(fh.read(length))
        except ValueError:
            return "it is a damaged safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "it is a damaged safetensors file (its header is not a table)"
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            return f"it is a damaged safetensors file (tensor {key!r} has no data offsets)"
    if 8 + length + end != size:
        return f"it is a truncated safetensors file ({size} bytes, its header describes {8 + length + end})"
    return None
