"""Reading and writing image files without losing what they carry.

A restorer that flattens 16-bit scans to 8 bits, drops alpha, ignores the
camera's orientation flag or throws away the ICC profile damages the photo
more than it restores it. So a file is decoded into a `Picture` that keeps
its bit depth, whether it is grayscale, its alpha channel, its ICC profile and
its EXIF (orientation already applied to the pixels), and is written back the
same way. Pillow does most of the work; 16-bit colour files, which Pillow
reduces to 8 bits, are decoded with OpenCV and written by `encode16`.

Writing the encoded bytes to disk (atomically) is `restorecli.io.files`.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from ..errors import InputError, UsageError
from .frames import frame_warning

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently padded with grey
# The pixel limit below is our decompression-bomb guard; Pillow's warning would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Decompression-bomb guard: Pillow's own default (about 89 megapixels, e.g. 9459 x 9459).
# RESTORECLI_MAX_PIXELS raises or lowers it for a whole run.
DEFAULT_MAX_PIXELS = 89_478_485
# zlib level of written PNGs. Level 6 (Pillow's default) spent about 0.5 s per megapixel of a
# photo, a sixth of a shipped model's whole time; level 3 is about 3x faster for files about
# 8% larger (OpenCV, and so most restoration scripts, write level 1).
PNG_COMPRESS_LEVEL = 3
ORIENTATION_TAG = 0x0112


def _no_options(quality: int) -> dict[str, object]:
    return {}


def _jpeg_options(quality: int) -> dict[str, object]:
    return {"quality": quality, "subsampling": 0 if quality >= 90 else 2}


def _webp_options(quality: int) -> dict[str, object]:
    return {"quality": quality, "lossless": quality >= 100, "method": 4}


def _tiff_options(quality: int) -> dict[str, object]:
    from PIL import features

    return {"compression": "tiff_adobe_deflate"} if features.check("libtiff") else {}


def _png_options(quality: int) -> dict[str, object]:
    return {"compress_level": PNG_COMPRESS_LEVEL}


def _png16(arr: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    from .encode16 import encode_png16

    return encode_png16(arr, icc=icc, exif=exif, level=PNG_COMPRESS_LEVEL)


def _tiff16(arr: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    from .encode16 import encode_tiff16

    return encode_tiff16(arr, icc=icc)


@dataclass(frozen=True)
class ImageFormat:
    """One format restorecli reads and writes: what it can carry, and how Pillow writes it."""

    name: str  # Pillow's format name
    exts: tuple[str, ...]  # file name endings; the first is the one written (`--ext`, output names)
    alpha: bool = False  # transparency
    icc: bool = False  # an ICC profile
    exif: bool = False  # an EXIF block
    options: Callable[[int], dict[str, object]] = _no_options  # quality -> Pillow's save options
    # (H, W, C) uint16, icc, exif -> the bytes of a 16-bit file (Pillow writes 8 bits only); None: no 16-bit mode
    encode16: Callable[[np.ndarray, bytes | None, bytes | None], bytes] | None = None

    @property
    def ext(self) -> str:
        return self.exts[0]

    @property
    def depth16(self) -> bool:
        return self.encode16 is not None


# The one table of formats: folder scans pick up exactly these endings, `--ext` takes these names.
FORMATS = {
    f.name: f
    for f in (
        ImageFormat("PNG", (".png",), alpha=True, icc=True, exif=True, options=_png_options, encode16=_png16),
        ImageFormat("JPEG", (".jpg", ".jpeg", ".jpe", ".jfif"), icc=True, exif=True, options=_jpeg_options),
        ImageFormat("WEBP", (".webp",), alpha=True, icc=True, exif=True, options=_webp_options),
        ImageFormat("TIFF", (".tif", ".tiff"), alpha=True, icc=True, options=_tiff_options, encode16=_tiff16),
        ImageFormat("BMP", (".bmp",)),
    )
}
EXT_FORMAT = {ext: f.name for f in FORMATS.values() for ext in f.exts}  # ".jpeg" -> "JPEG"
IMAGE_EXTS = frozenset(EXT_FORMAT)
FORMAT_EXT = {name: f.ext for name, f in FORMATS.items()}  # "JPEG" -> ".jpg"
OUTPUT_FORMATS = ", ".join(f.ext.lstrip(".") for f in FORMATS.values())  # for help texts: "png, jpg, ..."

MAX_PIXELS_ENV = "RESTORECLI_MAX_PIXELS"
MAX_PIXELS_CAP = 1 << 40  # past any real image; keeps the size arithmetic of the guards in range


def max_pixels_default() -> int:
    """The run's pixel limit: RESTORECLI_MAX_PIXELS, else the default; UsageError for a value that is not one."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or not 1 <= int(value) <= MAX_PIXELS_CAP:
        raise UsageError(
            f"{MAX_PIXELS_ENV}={value!r} is not a pixel count",
            f"give a whole number of pixels from 1 to {MAX_PIXELS_CAP} (default {DEFAULT_MAX_PIXELS})",
        )
    return int(value)


def max_image_bytes() -> int:
    """Most bytes an image file within the pixel limit can need: 8 bytes a pixel (16-bit RGBA stored
    raw) plus 64 MiB of metadata. A bigger file is refused before it is read."""
    return max_pixels_default() * 8 + (64 << 20)


def format_for_ext(ext: str) -> str | None:
    """'.JPG' -> 'JPEG'; None for an extension restorecli does not write."""
    return EXT_FORMAT.get(ext.lower() if ext.startswith(".") else "." + ext.lower())


@dataclass
class Picture:
    """Decoded pixels plus what must survive a round trip through a restorer.

    color: (H, W, 1) for grayscale or (H, W, 3) RGB, uint8 or uint16.
    alpha: (H, W) of the same dtype (straight, not premultiplied), or None.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def bits(self) -> int:
        return 16 if self.color.dtype == np.uint16 else 8

    @property
    def gray(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.color.shape[0], self.color.shape[1]


# ---- reading -------------------------------------------------------------------


def read_image(source: str | Path | bytes, *, max_pixels: int | None = None) -> Picture:
    """Decode a file (or the bytes of one) into a Picture; InputError with a one-line reason otherwise."""
    limit = max_pixels_default() if max_pixels is None else max_pixels
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # our check below is the guard; let Pillow decode what we allow
    try:
        data = source if isinstance(source, bytes) else _read_bounded(Path(source))
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > limit:
                raise InputError(
                    f"{width}x{height} is {width * height:,} pixels, over the {limit:,}-pixel limit "
                    "(decompression-bomb guard)",
                    "set RESTORECLI_MAX_PIXELS higher if the image is genuine",
                )
            frames = frame_warning(im)  # several frames or pages: say that only the first is kept
            pic = _decode(im, data)
            if frames:
                pic.warnings.append(frames)
            return pic
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise InputError(
            f"{size}, over the {limit:,}-pixel limit (decompression-bomb guard)",
            "set RESTORECLI_MAX_PIXELS higher if the image is genuine",
        ) from None
    except Image.UnidentifiedImageError:
        raise InputError("not an image, or a format restorecli cannot read") from None
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error... on bad data
        raise InputError(f"cannot decode: {_short(exc)}") from None


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing before reading one that is not a regular file or is larger than
    any image within the pixel limit (a huge sparse file would otherwise be read whole)."""
    with open(path, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError("not a regular file (a FIFO, socket or device)", "give an image file")
        cap = max_image_bytes()
        if st.st_size > cap:
            raise InputError(
                f"{st.st_size:,} bytes is more than an image within the {max_pixels_default():,}-pixel limit can take",
                "set RESTORECLI_MAX_PIXELS higher if the image is genuine",
            )
        data = fh.read(cap + 1)
        if len(data) > cap:
            raise InputError("the file grew past the size an image within the pixel limit can take")
        return data


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _decode(im: Image.Image, data: bytes) -> Picture:
    fmt = "JPEG" if im.format == "MPO" else im.format
    icc = im.info.get("icc_profile") or None
    orientation, exif = _exif(im, fmt)
    if _is_16bit(im, fmt, data):
        color, alpha = _decode_16bit(data, fmt, im)
    else:
        color, alpha, icc = _decode_pillow(im, icc)
    color = orient(color, orientation)
    alpha = None if alpha is None else orient(alpha[..., None], orientation)[..., 0]
    return Picture(np.ascontiguousarray(color), None if alpha is None else np.ascontiguousarray(alpha), fmt, icc, exif)


def _exif(im: Image.Image, fmt: str | None) -> tuple[int, bytes | None]:
    """The EXIF orientation and, for formats that carry EXIF blocks, the block with orientation reset to 1."""
    try:
        exif = im.getexif()
        orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
    except Exception:
        return 1, None
    if fmt not in FORMATS or not FORMATS[fmt].exif or not len(exif):
        return (orientation if 1 <= orientation <= 8 else 1), None
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1
    try:
        block = exif.tobytes()
    except Exception:
        block = None
    return (orientation if 1 <= orientation <= 8 else 1), block


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array, as a viewer would display it."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }
    return ops.get(orientation, ops[1])(arr)


def _is_16bit(im: Image.Image, fmt: str | None, data: bytes) -> bool:
    if fmt == "PNG":
        return len(data) > 25 and data[12:16] == b"IHDR" and data[24] == 16
    if fmt == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return any(b == 16 for b in bits) and im.mode not in ("I;16", "I;16B", "I;16L", "I;16N")
    return False


def _decode_16bit(data: bytes, fmt: str | None, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit PNG/TIFF through OpenCV, which (unlike Pillow) keeps all 16 bits of colour images."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError("cannot decode 16-bit image (truncated or corrupt file)")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr
        if arr.dtype != np.uint16:
            raise InputError(f"unsupported sample type {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    gray_source = im.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "La") or (fmt == "PNG" and data[25] in (0, 4))
    channels = arr.shape[2]
    if channels == 1:
        return arr, None
    if channels == 2:
        return arr[..., :1], arr[..., 1]
    alpha = arr[..., 3] if channels == 4 else None
    if gray_source:
        return arr[..., :1], alpha
    return arr[..., 2::-1], alpha  # BGR -> RGB


_GRAY_MODES = {"1", "L", "LA", "La"}


def _decode_pillow(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    im.load()  # raises on truncated data
    mode = im.mode
    palette_gray = False
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        palette_gray = True  # checked below: a palette of greys stays grayscale
        mode = im.mode
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
        mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise InputError(f"unsupported pixel values for mode {mode} (outside 0..65535)")
        return arr.astype(np.uint16)[..., None], None, icc
    if mode == "F":
        raise InputError("32-bit floating-point images are not supported", "convert to 16-bit PNG or TIFF")
    if mode in _GRAY_MODES:
        im = im.convert("LA" if mode in ("LA", "La") else "L")
    elif mode not in ("RGB", "RGBA"):
        # alpha is the last band (RGBA, RGBa); LAB's "A" is a colour axis, not alpha
        im = im.convert("RGBA" if mode.endswith(("A", "a")) else "RGB")
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    color, alpha = (arr[..., :-1], arr[..., -1]) if im.mode in ("LA", "RGBA") else (arr, None)
    if palette_gray and color.shape[2] == 3 and _all_gray(color):
        color = color[..., :1]
    return color, alpha, icc


def _all_gray(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> RGB through the embedded profile when there is one (then tagged sRGB), else Pillow's formula."""
    if icc:
        try:
            from PIL import ImageCms

            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, srgb, outputMode="RGB"), srgb.tobytes()
        except Exception:
            pass
    return im.convert("RGB"), None


def read_mask(source: str | Path | bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """A mask file as (H, W) bool: grayscale value above 127 (of 255) = area to fill."""
    pic = read_image(source, max_pixels=max_pixels)
    color = pic.color.astype(np.float32) / (65535.0 if pic.bits == 16 else 255.0)
    gray = color[..., 0] if pic.gray else color @ np.array([0.299, 0.587, 0.114], np.float32)
    return gray * 255.0 > 127.5


# ---- writing -------------------------------------------------------------------


def encode_image(pic: Picture, fmt: str, *, quality: int = 95) -> tuple[bytes, list[str]]:
    """Encode in `fmt` ('PNG', 'JPEG', ...); returns the bytes and what had to be given up, in words."""
    lost: list[str] = []
    color, alpha = pic.color, pic.alpha
    can = FORMATS[fmt]
    if alpha is not None and not can.alpha:
        color = _flatten_on_white(color, alpha)
        alpha = None
        lost.append(f"alpha dropped: {fmt} has no transparency, flattened over white (use --ext png to keep it)")
    if color.dtype == np.uint16 and not can.depth16:
        color = _to8(color)
        alpha = None if alpha is None else _to8(alpha)
        lost.append(f"written at 8 bits: {fmt} has no 16-bit mode (use --ext png or tif to keep 16 bits)")
    icc = _fitting_icc(pic.icc, gray=color.shape[2] == 1)
    if pic.icc and not can.icc:
        lost.append(f"ICC profile dropped: {fmt} cannot carry one")
    icc = icc if can.icc else None
    exif = pic.exif if can.exif else None
    if color.dtype == np.uint16 and can.encode16 is not None:
        if fmt == "TIFF" and alpha is not None and color.shape[2] == 1:
            color = np.repeat(color, 3, axis=2)  # 16-bit gray+alpha TIFF is unreadable by Pillow and others
            icc = None if icc and icc[16:20] == b"GRAY" else icc
        arr = color if alpha is None else np.concatenate([color, alpha[..., None]], axis=2)
        return can.encode16(arr, icc, exif), lost
    try:
        return _encode_pillow(color, alpha, fmt, quality, icc, exif), lost
    except (ValueError, OSError) as exc:  # e.g. an EXIF block too long for a JPEG segment
        if not (icc or exif):
            raise
        lost.append(f"metadata dropped: {fmt} refused it ({_short(exc)})")
        return _encode_pillow(color, alpha, fmt, quality, None, None), lost


def _to8(arr: np.ndarray) -> np.ndarray:
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _flatten_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    top = 65535.0 if color.dtype == np.uint16 else 255.0
    a = alpha.astype(np.float32)[..., None] / top
    out = color.astype(np.float32) * a + top * (1.0 - a)
    return np.clip(np.rint(out), 0, top).astype(color.dtype)


def _fitting_icc(icc: bytes | None, *, gray: bool) -> bytes | None:
    """Keep a profile only if its colour space fits the pixels (a GRAY profile on RGB data is invalid)."""
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    if space == b"GRAY" and not gray or space == b"RGB " and gray:
        return None
    return icc


def _encode_pillow(
    color: np.ndarray, alpha: np.ndarray | None, fmt: str, quality: int, icc: bytes | None, exif: bytes | None
) -> bytes:
    arr = color if alpha is None else np.concatenate([color, alpha[..., None]], axis=2)
    gray = color.shape[2] == 1
    mode = ("LA" if alpha is not None else "L") if gray else ("RGBA" if alpha is not None else "RGB")
    im = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    params = FORMATS[fmt].options(quality)
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def check_resize(resize: int | None, max_pixels: int | None = None) -> None:
    """Refuse a --resize whose square is over the pixel limit, before anything is allocated."""
    if resize is None:
        return
    limit = max_pixels or max_pixels_default()
    if resize * resize > limit:
        raise UsageError(
            f"--resize {resize} makes {resize}x{resize} = {resize * resize:,} pixels, over the limit of {limit:,}",
            "use a smaller --resize (the paper protocol is 256), or raise RESTORECLI_MAX_PIXELS",
        )
