"""The Python API (api): `--resize` is held to the pixel limit before anything is allocated
(api.run_restore), and --steps is checked against the spec of the bundle that runs."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import random_png, run_cli
from restorecli import api
from restorecli.errors import UsageError
from restorecli.training.config import TrainConfig, model_spec


@pytest.mark.parametrize(
    "resize, limit",
    [(128, "10000"), (101, "10200"), (300, "89999"), (1000, "999999")],  # cheap to run if not refused
)
def test_resize_over_the_pixel_limit_is_a_usage_error_before_any_work(tmp_path, monkeypatch, resize, limit):
    if limit is None:
        monkeypatch.delenv("RESTORECLI_MAX_PIXELS", raising=False)
    else:
        monkeypatch.setenv("RESTORECLI_MAX_PIXELS", limit)
    img = random_png(tmp_path / "in.png", size=(48, 40))
    with pytest.raises(UsageError) as info:
        api.restore(str(img), str(tmp_path / "out"), task="derain", resize=resize)
    assert "--resize" in str(info.value) and "RESTORECLI_MAX_PIXELS" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_resize_within_the_limit_still_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", "16384")
    img = random_png(tmp_path / "in.png", size=(48, 40))
    report = api.restore(str(img), str(tmp_path / "out"), task="derain", resize=128)
    assert report.exit_code == 0


def _cap_memory() -> None:
    """A command that tried to allocate the resized image would fail here, not take the machine down."""
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@pytest.mark.parametrize("resize", ["30000", "9460", str(2**40)])
def test_a_huge_resize_on_a_small_image_fails_fast_in_one_line(tmp_path, resize):
    img = random_png(tmp_path / "in.png", size=(48, 40))
    res = run_cli("derain", str(img), str(tmp_path / "out"), "--resize", resize, timeout=120, preexec=_cap_memory)
    err = res.stderr.decode().strip()
    assert res.returncode == 2, err
    assert len(err.splitlines()) == 1 and f"--resize {resize}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def tiny_bundle(path: Path, **kw) -> Path:
    """A `restore train` bundle of a tiny, untrained network (its spec travels in the metadata)."""
    from restorecli.training.loop import build_nets, save_bundle

    cfg = TrainConfig(name=path.stem, dim=8, dim_mults=(1, 2), **kw)
    torch.manual_seed(0)
    return save_bundle(path, cfg, build_nets(model_spec(cfg), torch.device("cpu")))


def test_api_checks_steps_against_the_trained_bundles_own_spec(tmp_path):
    """restore(weights=[bundle], steps=N) accepts what the bundle accepts, not what the registered model does."""
    import restorecli
    from restorecli.weights.registry import load_registry

    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(tmp_path / "photo.png")
    # the registered derain default samples 1 or 2 steps; this bundle was trained for 5 (and accepts 1..1000)
    assert load_registry().default_for("derain").max_steps == 2
    wide = tiny_bundle(tmp_path / "wide.safetensors", task="derain", steps=5)
    report = restorecli.restore(
        tmp_path / "photo.png", tmp_path / "out.png", task="derain", weights=[str(wide)], steps=5, device="cpu"
    )
    assert report.exit_code == 0 and (tmp_path / "out.png").is_file()
    # the registered RDDM deblurring model accepts up to 1000 steps; this bundle (t >= 499 only) accepts 1 or 2
    assert load_registry().get("rddm-deblur").max_steps == 1000
    narrow = tiny_bundle(tmp_path / "narrow.safetensors", task="deblur", steps=2, t_min=499)
    with pytest.raises(UsageError, match="--steps 5 is not accepted by model 'narrow'"):
        restorecli.restore(
            tmp_path / "photo.png",
            tmp_path / "out2.png",
            task="deblur",
            model="rddm-deblur",
            weights=[str(narrow)],
            steps=5,
            device="cpu",
        )
    assert not (tmp_path / "out2.png").exists()
