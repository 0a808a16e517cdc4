"""16-bit PNG and TIFF writers, with the ICC profile (and, for PNG, EXIF) kept.

Pillow cannot write 16-bit RGB or RGBA, and OpenCV, which can, does not carry
an ICC profile in its older releases. Both formats are simple enough to write
directly: PNG as IHDR / iCCP / eXIf / IDAT with per-row Sub-or-Up filtering,
TIFF as one deflate-compressed strip with horizontal differencing
(predictor 2), the layout libtiff, OpenCV and image editors read.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

# channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(arr: np.ndarray, *, icc: bytes | None = None, exif: bytes | None = None, level: int = 6) -> bytes:
    """(H, W, C) uint16, C in 1..4 (gray, gray+alpha, RGB, RGBA) -> 16-bit PNG bytes."""
    height, width, channels = arr.shape
    rows = np.ascontiguousarray(arr, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    bpp = channels * 2
    sub = rows.copy()
    sub[:, bpp:] -= rows[:, :-bpp]
    up = rows.copy()
    up[1:] -= rows[:-1]
    # Per row, keep the filter with the smaller sum of absolute (signed) bytes: libpng's heuristic.
    cost_sub = np.abs(sub.view(np.int8).astype(np.int32)).sum(axis=1)
    cost_up = np.abs(up.view(np.int8).astype(np.int32)).sum(axis=1)
    use_up = cost_up < cost_sub
    filtered = np.where(use_up[:, None], up, sub)
    kinds = np.where(use_up, 2, 1).astype(np.uint8)[:, None]
    raw = np.concatenate([kinds, filtered], axis=1).tobytes()
    out = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOR_TYPE[channels], 0, 0, 0)),
    ]
    if icc:
        out.append(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    if exif:
        block = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        out.append(_chunk(b"eXIf", block))
    out.append(_chunk(b"IDAT", zlib.compress(raw, level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


_SHORT, _LONG, _UNDEFINED = 3, 4, 7


def encode_tiff16(arr: np.ndarray, *, icc: bytes | None = None, level: int = 6) -> bytes:
    """(H, W, C) uint16, C in 1..4 -> little-endian 16-bit TIFF bytes (unassociated alpha as extra sample)."""
    height, width, channels = arr.shape
    samples = np.ascontiguousarray(arr, dtype="<u2")
    diff = samples.copy()
    diff[:, 1:] -= samples[:, :-1]  # predictor 2: horizontal differences per channel (mod 2**16)
    strip = zlib.compress(diff.tobytes(), level)

    body = bytearray(b"II*\x00\x00\x00\x00\x00")

    def put(data: bytes) -> int:
        if len(body) % 2:
            body.append(0)
        offset = len(body)
        body.extend(data)
        return offset

    strip_at = put(strip)
    bits_at = put(struct.pack(f"<{channels}H", *([16] * channels))) if channels > 2 else None
    icc_at = put(icc) if icc else None

    def short_value(*values: int) -> bytes:
        return struct.pack(f"<{len(values)}H", *values).ljust(4, b"\x00")

    entries: list[tuple[int, int, int, bytes]] = [
        (256, _LONG, 1, struct.pack("<I", width)),
        (257, _LONG, 1, struct.pack("<I", height)),
        (258, _SHORT, channels, struct.pack("<I", bits_at) if bits_at is not None else short_value(*([16] * channels))),
        (259, _SHORT, 1, short_value(8)),  # Adobe deflate
        (262, _SHORT, 1, short_value(1 if channels <= 2 else 2)),  # BlackIsZero / RGB
        (273, _LONG, 1, struct.pack("<I", strip_at)),
        (277, _SHORT, 1, short_value(channels)),
        (278, _LONG, 1, struct.pack("<I", height)),
        (279, _LONG, 1, struct.pack("<I", len(strip))),
        (284, _SHORT, 1, short_value(1)),  # chunky
        (317, _SHORT, 1, short_value(2)),  # horizontal differencing
    ]
    if channels in (2, 4):
        entries.append((338, _SHORT, 1, short_value(2)))  # unassociated alpha
    if icc_at is not None:
        entries.append((34675, _UNDEFINED, len(icc), struct.pack("<I", icc_at)))
    if len(body) % 2:
        body.append(0)
    ifd_at = len(body)
    body[4:8] = struct.pack("<I", ifd_at)
    body.extend(struct.pack("<H", len(entries)))
    for tag, kind, count, value in sorted(entries):
        body.extend(struct.pack("<HHI", tag, kind, count) + value)
    body.extend(b"\x00\x00\x00\x00")
    return bytes(body)
