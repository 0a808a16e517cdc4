"""Multi-frame inputs (animated GIF/PNG/WebP, multi-page TIFF) are restored as their first frame only,
and say so: a warning on stderr and in the file's `--json` record, never a silent loss.

MPO files (JPEGs from cameras with a second, preview or depth, image) are read as
the photo they show and are not flagged.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

from typing import Any


def frame_warning(im: Any) -> str | None:
    """'only the first of N frames was restored (...)' for an open Pillow image with several frames, else None."""
    fmt = getattr(im, "format", None)
    if fmt == "MPO":
        return None
    try:
        count = int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # counting frames reads the file; a damaged later frame is not this check's business
        return None
    if count <= 1:
        return None
    kind = "pages" if fmt == "TIFF" else "frames"
    return (
        f"only the first of {count} {kind} was restored ({fmt} with {count} {kind}); "
        f"split it into single images to restore every one"
    )
