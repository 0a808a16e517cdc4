"""PSNR / SSIM: known values, an independent SSIM reference, and published bicubic numbers on Set5."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from restorecli.quality.evaluate import EvalReport, evaluate_pairs, read_rgb8
from restorecli.quality.metrics import all_metrics, psnr, rgb_to_y, ssim, to_255
from restorecli.training.degrade import imresize


def rand_img(seed: int, h: int = 24, w: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3)).astype(np.uint8)


def test_identical_images_give_inf_psnr_and_ssim_one():
    img = rand_img(0)
    assert psnr(img, img) == math.inf
    assert psnr(img, img, y_channel=True) == math.inf
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, y_channel=True) == pytest.approx(1.0, abs=1e-12)


def test_psnr_matches_hand_computation():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 10  # error 10 on one channel of three: mse = 100 / 3
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 3)), abs=1e-9)
    # Y channel: the R error of 10 becomes 10 * 65.481 / 255 in luma
    dy = 10 * 65.481 / 255
    assert psnr(a, b, y_channel=True) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-9)


def test_y_channel_is_bt601_studio_range():
    white = np.full((2, 2, 3), 255, np.uint8)
    black = np.zeros((2, 2, 3), np.uint8)
    assert rgb_to_y(white)[0, 0] == pytest.approx(235.0, abs=1e-9)
    assert rgb_to_y(black)[0, 0] == pytest.approx(16.0, abs=1e-9)
    pure_green = np.zeros((1, 1, 3))
    pure_green[..., 1] = 255
    assert rgb_to_y(pure_green)[0, 0] == pytest.approx(16 + 128.553, abs=1e-9)


def test_crop_border_ignores_the_frame():
    a = rand_img(1, 30, 30)
    b = a.copy()
    b[:3] = 0
    b[:, -3:] = 255
    assert psnr(a, b) < 30
    assert psnr(a, b, crop_border=3) == math.inf
    assert ssim(a, b, crop_border=3) == pytest.approx(1.0, abs=1e-12)


def reference_ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 written out window by window (no library filter), for checking the fast version."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_windowed_reference(seed):
    a = rand_img(seed, 23, 19).astype(np.float64)
    # a correlated, noisy version, so SSIM is well inside (0, 1)
    b = np.clip(0.7 * a + 0.3 * rand_img(seed + 10, 23, 19) + 5, 0, 255)
    want_rgb = np.mean([reference_ssim_plane(a[..., c], b[..., c]) for c in range(3)])
    assert 0.2 < want_rgb < 0.95
    assert ssim(a, b) == pytest.approx(want_rgb, abs=1e-10)
    want_y = reference_ssim_plane(rgb_to_y(a), rgb_to_y(b))
    assert ssim(a, b, y_channel=True) == pytest.approx(want_y, abs=1e-10)
    assert ssim(b, a) == pytest.approx(ssim(a, b), abs=1e-12)


def test_shape_mismatch_and_tiny_images_are_refused():
    with pytest.raises(ValueError):
        psnr(rand_img(0, 10, 10), rand_img(0, 10, 11))
    with pytest.raises(ValueError):
        ssim(rand_img(0, 10, 10), rand_img(1, 10, 10))


def test_set5_bicubic_matches_published_numbers(shared):
    """Bicubic upscaling on Set5 is 33.66 / 0.9299 (x2) and 28.42 / 0.8104 (x4) PSNR/SSIM on Y, border = scale,
    in the standard tables (e.g. EDSR, RCAN). MATLAB rounds Y to 8 bits first, which moves the numbers by ~0.01."""
    root = shared("data", "sr", "Set5")
    published = {2: (33.66, 0.9299), 4: (28.42, 0.8104)}
    for scale, (want_psnr, want_ssim) in published.items():
        ps, ss = [], []
        for hr_path in sorted((root / "HR").glob("*.png")):
            hr = read_rgb8(hr_path)
            lr = read_rgb8(root / f"LR_bicubic_x{scale}" / f"{hr_path.stem}x{scale}.png")
            up = to_255(np.clip(imresize(lr / 255.0, scale), 0, 1))
            hr = hr[: up.shape[0], : up.shape[1]]
            ps.append(psnr(up, hr, crop_border=scale, y_channel=True))
            ss.append(ssim(up, hr, crop_border=scale, y_channel=True))
        assert np.mean(ps) == pytest.approx(want_psnr, abs=0.05)
        assert np.mean(ss) == pytest.approx(want_ssim, abs=0.002)


def test_evaluate_pairs_folder_and_json(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    ref.mkdir()
    out.mkdir()
    a, b = rand_img(3, 32, 32), rand_img(4, 32, 32)
    Image.fromarray(a).save(ref / "x.png")
    Image.fromarray(b).save(ref / "y.png")
    Image.fromarray(a).save(out / "x_derain.png")  # identical
    noisy = np.clip(b.astype(int) + 3, 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(out / "y_derain.png")
    Image.fromarray(a).save(out / "z_derain.png")  # no reference
    report = evaluate_pairs(out, ref, strip_suffix="_derain")
    assert [f["name"] for f in report.files] == ["x", "y"]
    assert report.unmatched == ["z"]
    assert report.files[0]["psnr_rgb"] == math.inf
    assert report.files[1] == pytest.approx({**report.files[1], **all_metrics(noisy, b)})
    data = json.loads(report.to_json())
    assert data["files"][0]["psnr_y"] == "inf" and data["count"] == 2
    assert isinstance(report, EvalReport)


def test_evaluate_size_mismatch(tmp_path):
    from restorecli.errors import UsageError

    ref, out = tmp_path / "ref", tmp_path / "out"
    ref.mkdir()
    out.mkdir()
    Image.fromarray(rand_img(0, 40, 40)).save(ref / "a.png")
    Image.fromarray(rand_img(0, 32, 32)).save(out / "a.png")
    with pytest.raises(UsageError):
        evaluate_pairs(out, ref)
    report = evaluate_pairs(out, ref, resize_reference=True)
    assert report.files[0]["psnr_rgb"] < 20
