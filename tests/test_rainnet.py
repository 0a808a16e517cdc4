"""The deraining network (nets/rainnet.py): locality, tiling, its settings, and a trained bundle through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from restorecli.errors import UsageError
from restorecli.nets.rainnet import RainNet, build_rainnet
from restorecli.runtime.tiling import restore_tiled
from restorecli.training.config import TrainConfig, model_spec


def randomised(**config) -> RainNet:
    """A small rainnet with weights far enough from their init that every path carries signal."""
    torch.manual_seed(0)
    net = build_rainnet({"width": 8, **config}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def test_output_at_a_pixel_does_not_depend_on_pixels_beyond_the_radius():
    """Tiles overlapping by `receptive_radius` see everything a pixel depends on."""
    net = randomised(stages=3, blocks=1)
    x = torch.rand(1, 3, 48, 320)
    for start in (200, 203, 205):  # the pooling grid falls differently relative to the change
        y = x.clone()
        y[..., start:] = torch.rand_like(y[..., start:])
        with torch.no_grad():
            a, b = net(x), net(y)
        far = start - net.receptive_radius
        assert far > 0
        assert torch.equal(a[..., :far], b[..., :far])
        assert not torch.equal(a, b)


def test_a_crop_on_the_pooling_grid_reproduces_the_whole_image_inside_its_radius():
    """What tiling relies on: a tile's output, away from its border by the radius, is the untiled output."""
    net = randomised(stages=3, blocks=1)
    r = net.receptive_radius
    x = torch.rand(1, 3, 448, 448)
    top = 64  # on the 8-pixel grid of the network's three average pools
    with torch.no_grad():
        whole = net(x)
        part = net(x[..., top : 448 - top, top : 448 - top])
    inner = slice(top + r, 448 - top - r)
    assert inner.stop - inner.start >= 64
    torch.testing.assert_close(part[..., r:-r, r:-r], whole[..., inner, inner], atol=1e-5, rtol=0)


def test_radius_grows_with_stages_and_blocks():
    assert RainNet(8, 4, 1).receptive_radius > RainNet(8, 3, 1).receptive_radius
    assert RainNet(8, 3, 2).receptive_radius > RainNet(8, 3, 1).receptive_radius


def test_any_image_size_comes_back_at_its_size():
    net = randomised()
    for h, w in ((17, 33), (8, 8), (41, 64)):
        with torch.no_grad():
            assert net(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


def test_settings_are_checked():
    assert build_rainnet({"width": 8, "stages": 2, "blocks": 3}).config() == {"width": 8, "stages": 2, "blocks": 3}
    for bad in ({"width": 0}, {"width": "16"}, {"stages": True}, {"stages": 0}, {"blocks": 9}, {"depth": 3}):
        with pytest.raises(ValueError):
            build_rainnet(bad)


def test_train_config_makes_a_one_pass_rainnet_spec():
    cfg = TrainConfig(network="rainnet", width=8, stages=2, blocks=1)
    assert cfg.objective == "direct" and cfg.steps == 1 and cfg.components == ("net",)
    comp = model_spec(cfg).components["net"]
    assert comp.kind == "rddm.rainnet" and comp.config == {"width": 8, "stages": 2, "blocks": 1}
    assert model_spec(TrainConfig(network="lightnet")).components["net"].config == {"width": 12, "global_width": 32}
    for bad in ({"stages": 0}, {"blocks": 9}, {"width": 200}, {"network": "prenet"}):
        with pytest.raises(UsageError):
            TrainConfig(network="rainnet", **bad) if "network" not in bad else TrainConfig(**bad)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A rainnet trained for a few steps on tiny streaked pairs, as a `restore train` bundle."""
    from restorecli.training.loop import train

    root = tmp_path_factory.mktemp("rainnet")
    rng = np.random.default_rng(0)
    for sub in ("input", "target"):
        (root / sub).mkdir()
    for k in range(3):
        clean = rng.integers(40, 200, (48, 64, 3)).astype(np.uint8)
        rainy = clean.copy()
        rainy[:, 5 + 9 * k :: 17] = 250  # vertical bright streaks
        Image.fromarray(clean).save(root / "target" / f"{k}.png")
        Image.fromarray(rainy).save(root / "input" / f"{k}.png")
    cfg = TrainConfig(
        task="derain", network="rainnet", width=4, stages=2, iters=2, batch_size=2, crop=32, held_out=0.0,
        val_every=0, pairs=[[str(root / "input"), str(root / "target")]], degradation=None, ssim_weight=0.3,
    )  # fmt: skip
    torch.set_num_threads(1)
    return root, train(cfg, root / "run", log=lambda text: None).bundle


def test_a_trained_rainnet_bundle_runs_with_weights(trained):
    from helpers import run_cli

    root, bundle = trained
    r = run_cli("derain", "input/0.png", "out.png", "--weights", str(bundle), cwd=root)
    assert r.returncode == 0, r.stderr.decode()
    assert np.asarray(Image.open(root / "out.png")).shape == (48, 64, 3)


def test_tiles_match_the_whole_image(trained):
    """Forced small tiles give the untiled result: the engine overlaps them by the network's radius."""
    from restorecli.runtime.load import load_engine

    root, bundle = trained
    engine = load_engine(None, "derain", weights=[str(bundle)], device="cpu", offline=True)
    assert engine.direct is not None and engine.min_overlap == engine.direct.receptive_radius
    torch.manual_seed(1)
    with torch.no_grad():  # weights far from init: the context reaches as far as the radius says
        for p in engine.direct.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(1, 3, 300, 420)
    whole = restore_tiled(engine, x, None, steps=1, generator=torch.Generator(), tile=0, overlap=0)
    tiled = restore_tiled(engine, x, None, steps=1, generator=torch.Generator(), tile=256, overlap=16)
    diff = (whole - tiled).abs() * 255
    assert diff.mean() < 0.5, diff.mean()


def test_init_from_a_rainnet_of_another_shape_names_the_options_that_fit(trained):
    from restorecli.training.loop import build_nets
    from restorecli.training.warmstart import load_init_weights

    _, bundle = trained
    spec = model_spec(TrainConfig(task="derain", network="rainnet", width=4, stages=3))
    with pytest.raises(UsageError) as err:
        load_init_weights(str(bundle), spec, build_nets(spec, torch.device("cpu")))
    assert "stages=2" in err.value.message
    assert "--network rainnet --width 4 --stages 2 --blocks 1" in (err.value.hint or "")
