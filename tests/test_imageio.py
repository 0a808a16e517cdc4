"""Image files in and out: depth, grayscale, alpha, orientation, ICC, broken files, atomic writes.

Uses the format fixtures in shared/data/io and files generated here (16-bit,
CMYK, EXIF-rotated, truncated, a bomb-sized header).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from helpers import bomb_png
from restorecli.errors import InputError
from restorecli.io import imageio
from restorecli.io.encode16 import encode_png16, encode_tiff16
from restorecli.io.files import write_atomic
from restorecli.io.imageio import Picture, encode_image, read_image, read_mask
from restorecli.io.pixels import fill_transparent, from_tensor, to_tensor

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def io_file(shared, name: str) -> Path:
    return shared("data", "io", name)


def ramp16(h: int = 24, w: int = 40, c: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536, (h, w, c)).astype(np.uint16)


# ---- the shared format fixtures --------------------------------------------------


def test_grayscale_fixtures_stay_gray(shared):
    for name in ("00017_gray.png", "wolf_gray.jpg", "einstein.png"):  # einstein: a palette of greys
        pic = read_image(io_file(shared, name))
        assert pic.gray and pic.color.shape[2] == 1, name
        data, _ = encode_image(pic, "PNG")
        assert Image.open(io.BytesIO(data)).mode == "L"


def test_palette_image_becomes_rgb(shared):
    pic = read_image(io_file(shared, "8x8.png"))
    ref = np.asarray(Image.open(io_file(shared, "8x8.png")).convert("RGB"))
    assert pic.color.shape == (8, 8, 3) and np.array_equal(pic.color, ref)


def test_rgba_fixture_keeps_alpha(shared):
    path = io_file(shared, "children-alpha.png")
    pic = read_image(path)
    ref = np.asarray(Image.open(path))
    assert pic.alpha is not None and np.array_equal(pic.alpha, ref[..., 3])
    assert 0 < (pic.alpha < 255).mean() < 1  # really has transparent areas


def test_16bit_rgba_fixture_keeps_all_16_bits(shared):
    path = io_file(shared, "tree_alpha_16bit.png")
    pic = read_image(path)
    ref = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pic.bits == 16 and pic.alpha is not None
    assert np.array_equal(pic.color, ref[..., 2::-1]) and np.array_equal(pic.alpha, ref[..., 3])
    assert (pic.color % 257 != 0).any()  # not 8-bit values scaled up
    assert pic.icc == Image.open(path).info["icc_profile"]


def test_icc_profiles_are_carried_into_every_format_that_holds_one(shared):
    pic = read_image(io_file(shared, "haze.jpg"))
    assert pic.icc and pic.icc[16:20] == b"RGB "
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        data, lost = encode_image(pic, fmt)
        assert Image.open(io.BytesIO(data)).info.get("icc_profile") == pic.icc, fmt
        assert not lost
    data, lost = encode_image(pic, "BMP")
    assert any("ICC" in w for w in lost)
    gray = read_image(io_file(shared, "wolf_gray.jpg"))  # a GRAY profile stays with gray pixels
    data, _ = encode_image(gray, "PNG")
    assert Image.open(io.BytesIO(data)).info.get("icc_profile") == gray.icc


# ---- generated files -------------------------------------------------------------


def _zlib_level(png: bytes) -> int:
    """FLEVEL of the zlib header that starts the first IDAT: 0 fastest (level 0-1), 1 fast (2-5), 2 default (6), 3 best."""
    pos = 8
    while png[pos + 4 : pos + 8] != b"IDAT":
        pos += 12 + struct.unpack(">I", png[pos : pos + 4])[0]
    return png[pos + 9] >> 6


@pytest.mark.parametrize("bits", [8, 16])
def test_png_is_written_with_fast_compression(bits):
    # level 6 took ~0.5 s per megapixel, a sixth of a shipped model's run; outputs use level 3
    rng = np.random.default_rng(0)
    arr = ramp16(c=3) if bits == 16 else rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data, _ = encode_image(Picture(arr, None, "PNG"), "PNG")
    assert _zlib_level(data) == 1
    assert np.array_equal(read_image(data).color, arr)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_round_trip_is_exact(channels):
    arr = ramp16(c=channels)
    pic = read_image(encode_png16(arr, icc=SRGB if channels >= 3 else None))
    got = pic.color if pic.alpha is None else np.concatenate([pic.color, pic.alpha[..., None]], axis=2)
    assert pic.bits == 16 and pic.gray == (channels <= 2)
    assert np.array_equal(got, arr)
    again, _ = encode_image(pic, "PNG")
    back = cv2.imdecode(np.frombuffer(again, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    if channels >= 3:
        assert Image.open(io.BytesIO(again)).info["icc_profile"] == SRGB


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_tiff_round_trip_is_exact(channels):
    arr = ramp16(c=channels)
    data = encode_tiff16(arr, icc=SRGB if channels >= 3 else None)
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # libtiff reads it
    ref = ref[..., None] if ref.ndim == 2 else np.concatenate([ref[..., 2::-1], ref[..., 3:]], axis=2)
    assert np.array_equal(ref, arr)
    pic = read_image(data)
    got = pic.color if pic.alpha is None else np.concatenate([pic.color, pic.alpha[..., None]], axis=2)
    assert np.array_equal(got, arr) and pic.bits == 16


def test_16bit_gray_from_pillow_stays_16bit(tmp_path):
    arr = (np.arange(30 * 20, dtype=np.uint32).reshape(30, 20) * 97 % 65536).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    pic = read_image(path)
    assert pic.gray and pic.bits == 16 and np.array_equal(pic.color[..., 0], arr)


def test_cmyk_is_converted_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=100)  # pure red in CMYK
    pic = read_image(path)
    assert pic.color.shape == (16, 16, 3) and not pic.gray
    assert np.abs(pic.color[8, 8].astype(int) - [255, 0, 0]).max() <= 3


def _with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[imageio.ORIENTATION_TAG] = orientation
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_a_viewer(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 9, 3)).astype(np.uint8)
    data = _with_orientation(pixels, orientation)
    pic = read_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(pic.color, expected)
    if pic.exif:  # the orientation flag is reset so viewers do not rotate again
        exif = Image.Exif()
        exif.load(pic.exif)
        assert exif.get(imageio.ORIENTATION_TAG, 1) == 1


def test_truncated_files_fail_with_a_reason(tmp_path, shared):
    for name in ("haze.jpg", "children-alpha.png"):
        data = io_file(shared, name).read_bytes()
        with pytest.raises(InputError, match="truncated|cannot decode"):
            read_image(data[: len(data) // 2])
    arr = ramp16(64, 64, 3)
    data = encode_png16(arr)
    with pytest.raises(InputError):
        read_image(data[: len(data) // 2])


def test_bomb_sized_header_is_refused_before_decoding():
    with pytest.raises(InputError, match="pixel limit"):
        read_image(bomb_png())
    with pytest.raises(InputError, match="pixel limit"):
        read_image(encode_png16(ramp16(20, 20, 3)), max_pixels=100)


def test_not_an_image_fails_with_a_reason(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        read_image(path)
    with pytest.raises(InputError, match="cannot read file"):
        read_image(tmp_path / "missing.png")


def test_mask_threshold_is_127(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(path)
    assert read_mask(path).tolist() == [[False, False, True, True]]


# ---- writing ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP"])
@pytest.mark.parametrize("gray", [False, True])
def test_every_format_round_trips(fmt, gray):
    rng = np.random.default_rng(0)
    color = np.repeat(np.linspace(0, 255, 24 * 32).reshape(24, 32, 1), 1 if gray else 3, axis=2)
    color = np.clip(color + rng.integers(0, 20, color.shape), 0, 255).astype(np.uint8)
    data, lost = encode_image(Picture(color, None, fmt), fmt, quality=100)
    pic = read_image(data)
    assert pic.format == fmt and pic.size == (24, 32) and not lost
    if fmt != "WEBP":  # WebP has no grayscale mode
        assert pic.gray == gray
    tolerance = 0 if fmt in ("PNG", "TIFF", "BMP") or (fmt == "WEBP" and not gray) else 8
    got = pic.color[..., :1] if gray else pic.color
    assert np.abs(got.astype(int) - color.astype(int)).max() <= tolerance


def test_alpha_is_never_dropped_silently():
    color = np.full((4, 4, 3), 10, np.uint8)
    alpha = np.zeros((4, 4), np.uint8)
    pic = Picture(color, alpha, "PNG")
    for fmt in ("PNG", "WEBP", "TIFF"):
        data, lost = encode_image(pic, fmt, quality=100)
        out = Image.open(io.BytesIO(data))
        assert "A" in out.mode and not lost, fmt
    for fmt in ("JPEG", "BMP"):
        data, lost = encode_image(pic, fmt)
        assert any("alpha dropped" in w for w in lost), fmt
        assert np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).min() > 240  # flattened over white


def test_16bit_to_an_8bit_format_says_so():
    pic = Picture(ramp16(c=3), None, "PNG")
    data, lost = encode_image(pic, "JPEG")
    assert any("8 bits" in w for w in lost)
    assert Image.open(io.BytesIO(data)).mode == "RGB"


def test_quality_applies_to_lossy_formats():
    rng = np.random.default_rng(0)
    pic = Picture(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), None, "JPEG")
    for fmt in ("JPEG", "WEBP"):
        low, _ = encode_image(pic, fmt, quality=20)
        high, _ = encode_image(pic, fmt, quality=95)
        assert len(low) < len(high), fmt


def test_metadata_a_format_refuses_does_not_lose_the_image():
    exif = Image.Exif()
    exif[0x010E] = "x" * 70000  # longer than a JPEG APP1 segment can hold
    data, lost = encode_image(Picture(np.zeros((4, 4, 3), np.uint8), exif=exif.tobytes()), "JPEG")
    assert Image.open(io.BytesIO(data)).size == (4, 4)
    assert any("metadata dropped" in w for w in lost)


def test_write_atomic_never_shows_partial_bytes_under_the_real_name(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.png"
    seen = []
    real_fsync = imageio.os.fsync

    def spy(fd):  # the moment the bytes are written but not yet renamed: a kill here must not hurt
        seen.append(target.read_bytes() if target.exists() else None)
        real_fsync(fd)

    monkeypatch.setattr(imageio.os, "fsync", spy)
    write_atomic(target, b"first version")
    write_atomic(target, b"second version")
    assert seen == [None, b"first version"]  # absent, or the previous complete file
    assert target.read_bytes() == b"second version"


def test_write_atomic_failure_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.png"

    def crash(src, dst):
        raise KeyboardInterrupt  # interrupted between writing the bytes and the rename

    monkeypatch.setattr(imageio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"x" * 1000)
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor the temporary file


# ---- pixels: alpha and gray through the engine tensors -----------------------------


def test_transparent_colour_does_not_reach_the_visible_edge():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 1] = 255  # hidden green under the transparent area
    rgb[4:12, 4:12] = (255, 0, 0)  # visible red square
    alpha = np.zeros((16, 16), np.uint8)
    alpha[4:12, 4:12] = 255
    x = to_tensor(Picture(rgb, alpha))
    assert x.shape == (1, 3, 16, 16)
    assert float(x[0, 1].max()) == 0.0  # no green anywhere: transparent pixels take the red of their neighbours
    assert np.array_equal((x[0].permute(1, 2, 0).numpy() * 255).round()[4:12, 4:12], rgb[4:12, 4:12])


def test_fill_transparent_keeps_visible_pixels_exactly():
    import torch

    rgb = torch.rand(3, 13, 17)
    alpha = (torch.rand(1, 13, 17) > 0.5).float() * torch.rand(1, 13, 17)
    out = fill_transparent(rgb, alpha)
    assert torch.equal(out[:, alpha[0] > 0], rgb[:, alpha[0] > 0])


def test_from_tensor_resizes_alpha_and_restores_gray_and_depth():
    import torch

    pic = Picture(ramp16(8, 8, 1), np.full((8, 8), 65535, np.uint16), "PNG")
    out = from_tensor(torch.full((1, 3, 16, 16), 0.5), pic)
    assert out.color.shape == (16, 16, 1) and out.color.dtype == np.uint16
    assert out.alpha.shape == (16, 16) and int(out.alpha.min()) == 65535
    assert int(out.color[0, 0, 0]) == round(0.5 * 65535)


@pytest.mark.parametrize("name", list(imageio.FORMATS))
def test_each_format_descriptor_says_what_its_files_keep(name):
    """Writing a 16-bit RGBA picture with a profile keeps exactly what the format's descriptor says it can."""
    fmt = imageio.FORMATS[name]
    rng = np.random.default_rng(3)
    color = rng.integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (8, 8), dtype=np.uint16)  # not all opaque: WebP would drop that
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data, lost = encode_image(Picture(color, alpha, icc=icc), name, quality=100)
    back = read_image(data)
    assert back.format == name and imageio.format_for_ext(fmt.ext) == name
    assert all(imageio.EXT_FORMAT[ext] == name for ext in fmt.exts)
    assert (back.alpha is not None) is fmt.alpha and any("alpha dropped" in w for w in lost) is not fmt.alpha
    assert (back.bits == 16) is fmt.depth16 and any("8 bits" in w for w in lost) is not fmt.depth16
    assert (back.icc is not None) is fmt.icc, lost
    assert fmt.ext.lstrip(".") in imageio.OUTPUT_FORMATS


def test_a_lab_tiff_decodes_to_rgb_without_alpha(tmp_path):
    """LAB's "A" band is a colour axis: the image is RGB, never RGBA."""
    from restorecli.io.imageio import read_image

    path = tmp_path / "lab.tif"
    Image.new("LAB", (6, 4), (128, 128, 128)).save(path)
    pic = read_image(path)
    assert pic.alpha is None and pic.color.shape == (4, 6, 3)


def test_a_huge_sparse_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from restorecli.io.imageio import max_image_bytes

    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", "100")
    path = tmp_path / "sparse.png"
    with open(path, "wb") as fh:
        fh.truncate(max_image_bytes() + 1)
    with pytest.raises(InputError, match="pixel limit"):
        read_image(path)


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1e9", str(2**70)])
def test_a_bad_pixel_limit_is_a_usage_error(monkeypatch, value):
    from restorecli.errors import UsageError
    from restorecli.io.imageio import max_pixels_default

    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", value)
    with pytest.raises(UsageError):
        max_pixels_default()
