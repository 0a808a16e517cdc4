"""RDDM's memory model: estimates from each network's own config, automatic tiles, the tile really used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli
from restorecli.engines.rddm.engine import RDDMEngine
from restorecli.runtime.restorer import Restorer
from restorecli.training.config import TrainConfig, model_spec
from restorecli.training.loop import build_nets


def make_engine(**config) -> RDDMEngine:
    """An RDDM engine with random weights for a training config (any width, levels, attention, fold)."""
    cfg = TrainConfig(**{"objective": "pred_res", "steps": 1, **config})
    spec = model_spec(cfg)
    nets = build_nets(spec, torch.device("cpu"))
    return RDDMEngine(spec, {name: net.state_dict() for name, net in nets.items()})


SHIPPED_SHAPE = {"dim": 16, "attn_heads": 1, "attn_dim_head": 16, "pixel_unshuffle": 2}


def test_estimate_follows_each_networks_config():
    small = make_engine(**SHIPPED_SHAPE)
    official = make_engine(dim=16)  # official attention width (4 x 32), no fold
    two = make_engine(objective="pred_res_noise", dim=16)
    # the official attention's quadratic middle block dominates at 1024^2 (measured peak: 9.6 GiB)
    assert official.estimate_bytes(1024, 1024) > 8 << 30
    assert small.estimate_bytes(1024, 1024) < 1 << 30  # measured 339 MiB
    # quadrupling the pixels more than quadruples the estimate (attention), never less
    assert official.estimate_bytes(2048, 2048) > 4 * official.estimate_bytes(1024, 1024)
    # two UNets run one after the other: the larger one counts, not the sum
    assert two.estimate_bytes(512, 512) == official.estimate_bytes(512, 512)
    wider = make_engine(dim=32, dim_mults=(1, 2, 4))
    assert wider.estimate_bytes(512, 512) != official.estimate_bytes(512, 512)


@pytest.mark.parametrize("config", [SHIPPED_SHAPE, {"dim": 16}, {"dim": 8, "dim_mults": (1, 2)}])
def test_small_budget_picks_a_fitting_tile(monkeypatch, config):
    engine = make_engine(**config)
    budget = 200 << 20
    monkeypatch.setattr(engine, "_memory_budget", lambda: budget)
    tile = engine.auto_tile(3000, 4000)
    assert 0 < tile < 3000
    assert engine.estimate_bytes(tile, tile) <= budget or tile == engine.min_tile
    # the next larger candidate would not have fitted
    bigger = [t for t in engine.tile_sizes if t > tile]
    if bigger:
        assert engine.estimate_bytes(min(bigger), min(bigger)) > budget
    monkeypatch.setattr(engine, "_memory_budget", lambda: engine.estimate_bytes(3000, 4000))
    assert engine.auto_tile(3000, 4000) == 0  # the whole image when it fits


def test_cpu_budget_is_capped_for_a_twelve_megapixel_photo():
    engine = make_engine(**SHIPPED_SHAPE)
    tile = engine.auto_tile(3000, 4000)
    assert tile > 0  # never the whole 12 MP photo at once on a CPU
    assert engine.estimate_bytes(tile, tile) <= RDDMEngine.CPU_CAP


def test_automatic_tiles_run_with_per_tile_progress(monkeypatch):
    engine = make_engine(dim=8, dim_mults=(1, 2))
    monkeypatch.setattr(engine, "_memory_budget", lambda: engine.estimate_bytes(64, 64))
    seen: list[tuple[int, int]] = []
    restorer = Restorer(engine, steps=1, tile=None, overlap=16, on_tile=lambda d, n: seen.append((d, n)))
    assert restorer.tile_for(96, 160) == 64
    out = restorer.run([torch.rand(1, 3, 96, 160)], [None])[0]
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 96, 160)
    assert seen and seen[-1][0] == seen[-1][1] == len(seen) > 1


def test_requested_tile_below_the_minimum_reports_what_runs():
    engine = make_engine(dim=8, dim_mults=(1, 2))
    assert Restorer(engine, steps=1, tile=16).tile_for(200, 300) == engine.min_tile
    assert Restorer(engine, steps=1, tile=0).tile_for(200, 300) == 0


def test_verbose_run_prints_the_clamped_tile_and_tile_progress(tmp_path):
    Image.fromarray(np.full((120, 200, 3), 100, np.uint8)).save(tmp_path / "a.png")
    r = run_cli("--offline", "derain", "a.png", "out.png", "--tile", "16", "-v", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "64-pixel tiles" in err and "16-pixel" not in err
    assert "tile 1/" in err
