"""The low-light network (nets/lightnet.py) and the shipped low-light model that runs on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from restorecli.nets.lightnet import LightNet, build_lightnet
from restorecli.quality.grid import grid_score
from restorecli.runtime.tiling import restore_tiled

FIVEK = ("data", "io", "low-light-FiveK-a4501-DSC_0354.jpg")
GRID_LIMIT = 1.5


@pytest.fixture(scope="module")
def shipped():
    from restorecli.runtime.load import load_engine

    engine = load_engine(None, "lowlight", device="cpu", offline=True)
    assert engine.direct is not None, "the shipped low-light model is the one-pass lightnet"
    return engine


def run(engine, image: np.ndarray, tile: int = 0, exposure: float = 0.0) -> np.ndarray:
    """uint8 RGB through the engine (whole, or in forced tiles of `tile` pixels), back to uint8."""
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    engine.exposure = exposure
    try:
        out = restore_tiled(engine, x, None, steps=1, generator=torch.Generator(), tile=tile, overlap=32)
    finally:
        engine.exposure = 0.0
    return (out[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def dim_gradient(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth dim colour gradient with mild noise: nothing in it repeats every two pixels."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack((10 + 40 * xx / width, 8 + 30 * yy / height, 20 + 20 * (xx + yy) / (width + height)), -1)
    noise = np.random.default_rng(seed).normal(0, 1.5, base.shape)
    return np.clip(base + noise, 0, 255).round().astype(np.uint8)


# ---- the grid measure ---------------------------------------------------------------------


def test_grid_measure_separates_a_two_pixel_pattern_from_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 5, (96, 128, 3))
    checker = noise + 6 * (np.indices((96, 128)).sum(0) % 2)[..., None]
    assert grid_score(noise) < 1.3
    assert grid_score(checker) > 20
    with pytest.raises(ValueError):
        grid_score(noise[:8, :8])


# ---- the network --------------------------------------------------------------------------


def randomised(width: int = 8) -> LightNet:
    """A lightnet whose zero-initialised heads are given random weights, so every part acts."""
    torch.manual_seed(0)
    net = LightNet(width=width).eval()
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    return net


def test_output_at_a_pixel_does_not_depend_on_far_pixels():
    """The local branch is local: a change beyond its receptive radius leaves a pixel as it was."""
    net = randomised()
    x = torch.rand(1, 3, 256, 256)
    params = net.global_params(x)
    y = x.clone()
    y[:, :, :, 200:] = torch.rand(1, 3, 256, 56)
    with torch.no_grad():
        a, b = net(x, params), net(y, params)
    assert torch.equal(a[:, :, :, : 200 - net.receptive_radius], b[:, :, :, : 200 - net.receptive_radius])
    assert not torch.equal(a, b)


def test_config_values_are_checked():
    assert build_lightnet({"width": 8}).width == 8
    for bad in ({"width": 0}, {"width": "12"}, {"width": True}, {"depth": 3}, {"width": 10_000}):
        with pytest.raises(ValueError):
            build_lightnet(bad)


# ---- the shipped model --------------------------------------------------------------------


def test_tiles_share_one_exposure_and_match_the_whole_image(shipped, shared):
    """A 2-megapixel photo in small forced tiles gives the untiled result (within 1 level on average)."""
    photo = np.asarray(Image.open(shared("data", "lowlight", "LOL-eval-low", "1.png")).convert("RGB"))
    big = np.asarray(Image.fromarray(photo).resize((1800, 1200), Image.BICUBIC))
    whole = run(shipped, big).astype(np.int16)
    tiled = run(shipped, big, tile=512).astype(np.int16)
    diff = np.abs(whole - tiled)
    assert diff.mean() < 1.0, diff.mean()
    # no seam: no row or column of tile borders stands out
    assert diff.mean(axis=(0, 2)).max() < 3 and diff.mean(axis=(1, 2)).max() < 3


def test_exposure_moves_brightness_and_zero_is_the_default(shipped, shared):
    photo = np.asarray(Image.open(shared("data", "lowlight", "LOL-eval-low", "22.png")).convert("RGB"))[:200, :300]
    default = run(shipped, photo)
    assert np.array_equal(run(shipped, photo, exposure=0.0), default)
    darker, brighter = run(shipped, photo, exposure=-1.0), run(shipped, photo, exposure=1.0)
    assert darker.mean() + 5 < default.mean() < brighter.mean() - 5


def test_outputs_show_no_two_pixel_grid(shipped, shared):
    fivek = np.asarray(Image.open(shared(*FIVEK)).convert("RGB"))
    for name, image in (("gradient", dim_gradient(256, 320)), ("FiveK", fivek)):
        score = grid_score(run(shipped, image))
        assert score <= GRID_LIMIT, (name, score)


def test_a_well_exposed_photo_stays_close(shipped, shared):
    from restorecli.quality.metrics import psnr

    photo = np.asarray(Image.open(shared("data", "denoise", "Kodak24", "kodim05.png")).convert("RGB"))[:256, :256]
    assert psnr(run(shipped, photo), photo) >= 30.0


# ---- training and the command line ----------------------------------------------------------


def test_a_trained_lightnet_bundle_runs_with_weights_and_exposure(tmp_path):
    from helpers import run_cli
    from restorecli.training.config import TrainConfig
    from restorecli.training.loop import train

    rng = np.random.default_rng(0)
    for sub in ("low", "normal"):
        (tmp_path / sub).mkdir()
    for k in range(3):
        clean = rng.integers(40, 220, (48, 64, 3)).astype(np.uint8)
        Image.fromarray(clean).save(tmp_path / "normal" / f"{k}.png")
        Image.fromarray((clean // 5).astype(np.uint8)).save(tmp_path / "low" / f"{k}.png")
    cfg = TrainConfig(
        task="lowlight", network="lightnet", width=4, iters=2, batch_size=2, crop=32, held_out=0.0,
        val_every=0, pairs=[[str(tmp_path / "low"), str(tmp_path / "normal")]], degradation=None,
        exposure_jitter=0.5, color_jitter=0.05, ssim_weight=0.3,
    )  # fmt: skip
    bundle = train(cfg, tmp_path / "run", log=lambda text: None).bundle
    r = run_cli("lowlight", "low/0.png", "out.png", "--weights", str(bundle), "--exposure", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (48, 64, 3)
    r = run_cli("derain", "low/0.png", "out2.png", "--exposure", "1", cwd=tmp_path)
    assert r.returncode == 2 and "restore lowlight" in r.stderr.decode() and not (tmp_path / "out2.png").exists()


def test_a_photo_and_its_mirror_image_get_the_same_exposure_and_colour():
    torch.manual_seed(0)
    net = LightNet(width=4, global_width=8)
    with torch.no_grad():
        net.global_branch.head[-1].weight.normal_(0, 0.5)
        photo = torch.rand(1, 3, 70, 90) * torch.linspace(0.05, 0.6, 90)  # darker on the left
        a, b = net.global_params(photo), net.global_params(photo.flip(-1))
        one_side = net.global_branch(photo)
    assert torch.allclose(a.stops, b.stops, atol=1e-6) and torch.allclose(a.matrix, b.matrix, atol=1e-6)
    assert torch.allclose(a.curve, b.curve, atol=1e-6)
    assert not torch.allclose(a.stops, one_side.stops, atol=1e-4)  # the average of both views, not one
