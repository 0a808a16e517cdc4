"""Guards around downloads: is this a weights file at all (before it enters the cache)?

A download whose registry entry pins no size or sha256 can only be judged by
its content. `weights_file_problem` looks at the file's structure, cheaply and
without torch or unpickling: a safetensors file (its JSON header and data size
agree), a PyTorch zip checkpoint (a readable zip with a `data.pkl`), a legacy
`torch.save` or plain pickle stream (a pickle opcode stream that ends), and
recognises what is most often served instead (a web page, a short body).

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from pathlib import Path

MAX_HEADER = 100_000_000  # safetensors' own limit on its JSON header


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
