"""Synthetic degradations: reproducible from a seed, pure, of the documented kind and size."""

from __future__ import annotations

import numpy as np
import pytest

from restorecli.quality.metrics import psnr, to_255
from restorecli.training import degrade as D


def clean(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth colour image with an edge: enough structure for blur to show."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5)], axis=2)
    img[:, w // 2 :] *= 0.5
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", sorted(D.DEGRADATIONS))
def test_same_seed_same_output_and_input_untouched(name):
    img = clean()
    before = img.copy()
    a, pa = D.degrade(img, name, 7)
    b, pb = D.degrade(img, name, 7)
    c, _ = D.degrade(img, name, 8)
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    if name != "bicubic":  # the only deterministic one
        assert not np.array_equal(a, c)
    # recorded parameters plus the seed recreate the image exactly
    again, _ = D.degrade(img, name, 7, **pa)
    np.testing.assert_array_equal(again, a)
    shrink = D.DEGRADATIONS[name].shrinks
    assert a.shape == ((12, 16, 3) if shrink else img.shape)


def test_given_parameters_are_used_and_unknown_ones_refused():
    img = clean()
    _, p = D.degrade(img, "rain", 1, angle=10.0, blend="add", layers=1)
    assert p["angle"] == 10.0 and p["blend"] == "add" and p["layers"] == 1
    with pytest.raises(ValueError):
        D.degrade(img, "rain", 1, colour=3)
    with pytest.raises(ValueError):
        D.degrade(img, "rain", 1, blend="multiply")
    with pytest.raises(ValueError):
        D.degrade(img, "snow", 1)


def test_generator_and_seed_agree():
    img = clean()
    a, _ = D.degrade(img, "noise", 5)
    b, _ = D.degrade(img, "noise", np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_noise_sigma_in_8bit_levels():
    img = np.full((200, 200, 3), 0.5, np.float32)
    out = D.gaussian_noise(img, np.random.default_rng(0), sigma=25)
    assert np.std(out - img) * 255 == pytest.approx(25, rel=0.02)


def test_rain_only_brightens_and_density_matters():
    img = clean(96, 96)
    light, _ = D.degrade(img, "rain", 0, density=0.002, haze=0.0, layers=1, blend="screen")
    heavy, _ = D.degrade(img, "rain", 0, density=0.02, haze=0.0, layers=1, blend="screen")
    assert (light >= img - 1e-6).all() and (heavy >= img - 1e-6).all()
    assert psnr(to_255(heavy), to_255(img)) < psnr(to_255(light), to_255(img)) - 3


def test_rain_streaks_follow_the_angle():
    """Vertical streaks vary much less along columns than along rows."""
    img = np.zeros((128, 128, 3), np.float32)
    out, _ = D.degrade(img, "rain", 3, angle=0.0, length=30.0, density=0.01, layers=1, blend="add", haze=0.0)
    g = out[..., 0]
    along = np.abs(np.diff(g, axis=0)).mean()
    across = np.abs(np.diff(g, axis=1)).mean()
    assert across > 2 * along


def test_lowlight_darkens():
    img = clean()
    out, p = D.degrade(img, "lowlight", 2, shot=0.0, read=0.0)
    want = np.floor(p["exposure"] * img ** p["gamma"] * 255 + 0.5) / 255
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert out.mean() < 0.5 * img.mean()


def test_blurs_preserve_mean_and_smooth():
    img = clean()
    for name in ("motion", "defocus"):
        out, _ = D.degrade(img, name, 4)
        assert out.mean() == pytest.approx(img.mean(), abs=0.01)
        assert np.abs(np.diff(out, axis=1)).max() < np.abs(np.diff(img, axis=1)).max()


def test_kernels_sum_to_one():
    for k in (D.line_kernel(7, 30), D.line_kernel(1, 0), D.disk_kernel(2.5), D.gaussian_kernel(1.0, 2.0, 45)):
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        assert (k >= 0).all()


def test_jpeg_quality_controls_error():
    img = clean(64, 64)
    noisy = D.gaussian_noise(img, np.random.default_rng(0), sigma=10)
    lo = D.jpeg(noisy, quality=20)
    hi = D.jpeg(noisy, quality=95)
    assert psnr(to_255(hi), to_255(noisy)) > psnr(to_255(lo), to_255(noisy)) + 2


def test_imresize_constant_and_ramp():
    const = np.full((20, 24, 3), 0.3, np.float32)
    np.testing.assert_allclose(D.imresize(const, 0.25), 0.3, atol=1e-6)
    np.testing.assert_allclose(D.imresize(const, 3), 0.3, atol=1e-6)
    # bicubic reproduces a linear ramp exactly away from the mirrored border
    ramp = np.tile(np.arange(32, dtype=np.float32)[None, :, None], (8, 1, 3)) / 32
    up = D.imresize(ramp, 2)
    x = (np.arange(64) + 0.5) / 2 - 0.5  # output pixel centres in input coordinates
    np.testing.assert_allclose(up[4, 4:-4, 0], (x / 32)[4:-4], atol=1e-6)


def test_bicubic_down_matches_matlab_set5(shared):
    """Set5 LR_bicubic_x4 was made with MATLAB imresize; ours agrees within one 8-bit level almost everywhere."""
    from restorecli.quality.evaluate import read_rgb8

    root = shared("data", "sr", "Set5")
    hr = read_rgb8(root / "HR" / "butterfly.png")
    lr = read_rgb8(root / "LR_bicubic_x4" / "butterflyx4.png").astype(int)
    ours = to_255(D.degrade(hr / 255.0, "bicubic", 0, scale=4)[0]).astype(int)
    diff = np.abs(ours - lr)
    assert diff.max() <= 2 and diff.mean() < 0.15


def test_refracting_rain_shows_the_scene_behind_it_darker_and_brighter():
    """Heavy real rain: a drop shows the displaced, smeared scene, so on texture a streak is darker in places."""
    stripes = np.zeros((128, 128, 3), np.float32)
    stripes[:, ::8] = 1.0  # thin vertical lines: the scene shifted across the fall moves them
    out, p = D.degrade(stripes, "rain", 2, blend="refract", angle=0.0, density=0.01, layers=1, haze=0.0)
    assert p["blend"] == "refract"
    changed = out - stripes
    assert (changed < -0.1).mean() > 0.01 and (changed > 0.1).mean() > 0.01
    flat = np.full((64, 64, 3), 0.4, np.float32)
    lit, _ = D.degrade(flat, "rain", 2, blend="refract", density=0.01, layers=1, haze=0.0, brightness=0.5)
    assert (lit >= flat - 1e-6).all() and lit.max() <= 0.4 + 0.2 * 0.5 + 1e-4  # on flat ground only a little light


def test_long_wide_dense_rain_leaves_the_scene_visible():
    img = np.zeros((256, 256, 3), np.float32)
    out, _ = D.degrade(img, "rain", 0, density=0.012, length=60.0, width=2.8, layers=1, blend="max", haze=0.0)
    assert 0.05 < (out[..., 0] > 0.05).mean() < 0.6


def test_rain_mist_on_a_minority_of_draws_so_clear_photos_stay_clear():
    # A veil on every draw taught the derain model to darken every photo by the expected veil
    # (a rain-free Kodak photo lost 9 levels); most draws must carry no mist at all.
    rng = np.random.default_rng(5)
    haze = np.array([D.sample_params("rain", rng)["haze"] for _ in range(2000)])
    assert 0.2 < (haze > 0).mean() < 0.4
    assert haze[haze > 0].min() >= 0.02 and haze.max() <= 0.1
    # a given value is used as is, zero included
    assert D.sample_params("rain", rng, {"haze": 0.07})["haze"] == 0.07
    assert D.sample_params("rain", rng, {"haze": 0.0})["haze"] == 0.0
    img = clean()
    misty, _ = D.degrade(img, "rain", 0, density=0.001, haze=0.1)
    clear, _ = D.degrade(img, "rain", 0, density=0.001, haze=0.0)
    assert misty.mean() > clear.mean() + 0.02


def test_rain_training_crops_stay_upright():
    # Streaks turned on their side taught the derain model to erase horizontal bright lines (the wave
    # crests of Kodak's kodim14); rain training keeps crops upright: half turns and flips only.
    from restorecli.training.config import TrainConfig
    from restorecli.training.datasets import CropSampler
    from restorecli.training.validate import upright

    bar = np.zeros((32, 32, 3), np.uint8)
    bar[:, 14:18] = 255  # a vertical bar; a quarter turn makes it horizontal

    def horizontal_share(quarter_turns: bool) -> float:
        sampler = CropSampler(clean=[bar], degradation="noise", crop=32, quarter_turns=quarter_turns)
        rng = np.random.default_rng(0)
        crops = [sampler._cut(rng, bar)[0] for _ in range(200)]
        return float(np.mean([c[14:18, :].min() == 255 for c in crops]))

    assert horizontal_share(False) == 0.0
    assert 0.3 < horizontal_share(True) < 0.7
    assert upright(TrainConfig(task="derain", degradation="rain"))
    assert upright(TrainConfig(task="derain", degradation=None))
    assert not upright(TrainConfig(task="lowlight", degradation="lowlight"))
