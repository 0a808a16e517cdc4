"""RDDM's memory model: estimates from each network's own config, automatic tiles, the tile really used."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import REPO, run_cli
from restorecli.engines.rddm.engine import RDDMEngine
from restorecli.nets.attention import reference_mode
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


# Peak memory of one network forward (CPU fp32, batch 1, torch 2.13, 1 thread), measured as the
# growth of the process's max RSS around the forward in a fresh process, 2026-12-01), in MiB.
MEASURED_PEAKS = [
    (SHIPPED_SHAPE, 1024, 312),
    (SHIPPED_SHAPE, 2048, 907),
    ({"dim": 16}, 1024, 3510),  # official attention width (4 x 32), no fold
    ({"dim": 16}, 2048, 13442),
    ({"dim": 32, "dim_mults": (1, 2)}, 512, 1034),  # a shallow user-trained shape: big middle attention
]


@pytest.mark.parametrize("config, size, measured", MEASURED_PEAKS)
def test_estimate_covers_the_measured_peak_without_wasting_much(config, size, measured):
    estimate = make_engine(**config).estimate_bytes(size, size) / 2**20
    assert measured <= estimate <= 2 * measured, (estimate, measured)


def test_estimate_follows_each_networks_config():
    small = make_engine(**SHIPPED_SHAPE)
    official = make_engine(dim=16)  # official attention width (4 x 32), no fold
    two = make_engine(objective="pred_res_noise", dim=16)
    assert official.estimate_bytes(1024, 1024) > 5 * small.estimate_bytes(1024, 1024)
    # quadrupling the pixels at least quadruples the estimate
    assert official.estimate_bytes(2048, 2048) >= 3.9 * official.estimate_bytes(1024, 1024)
    # two UNets run one after the other: the larger one counts, not the sum
    assert two.estimate_bytes(512, 512) == official.estimate_bytes(512, 512)
    wider = make_engine(dim=32, dim_mults=(1, 2, 4))
    assert wider.estimate_bytes(512, 512) != official.estimate_bytes(512, 512)
    # the textbook attention path materialises heads * tokens^2 (twice): the estimate says so
    with reference_mode():
        assert official.estimate_bytes(1024, 1024) > 8 << 30


def test_full_attention_never_materialises_the_token_matrix():
    """16384 tokens x 4 heads: a materialised matrix would be 4 GiB (twice); the fused kernel works in blocks."""
    code = (
        "import resource, torch; from restorecli.nets.rddm_unet import FullAttention; torch.set_num_threads(1);"
        "m = FullAttention(32, 4, 32).eval(); x = torch.randn(1, 32, 128, 128);"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with torch.no_grad(): m(x)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    grown_mib = int(res.stdout.decode().split()[-1])
    assert grown_mib < 512, grown_mib  # measured 52 MiB; the strided (math-kernel) path: over 8 GiB


@pytest.mark.parametrize("config", [SHIPPED_SHAPE, {"dim": 16}, {"dim": 8, "dim_mults": (1, 2)}])
def test_small_budget_picks_a_fitting_tile(monkeypatch, config):
    engine = make_engine(**config)
    budget = 200 << 20
    monkeypatch.setattr(engine, "_memory_budget", lambda: budget)
    tile = engine.auto_tile(3000, 4000)
    assert 0 < tile < 3000
    assert engine.estimate_bytes(tile, tile) <= budget or tile == engine.min_tile
    # the next larger candidate would not have fitted
    cap = engine.largest_efficient_tile() or max(engine.tile_sizes)  # tiles above it are slower
    bigger = [t for t in engine.tile_sizes if tile < t <= cap]
    if bigger:
        assert engine.estimate_bytes(min(bigger), min(bigger)) > budget
    monkeypatch.setattr(engine, "_memory_budget", lambda: engine.estimate_bytes(3000, 4000))
    # the whole image when it fits, unless full attention makes big tiles slow (below)
    assert engine.auto_tile(3000, 4000) == (engine.largest_efficient_tile() or 0)


def test_wide_attention_at_high_resolution_gets_small_tiles_for_speed():
    """A shallow user-trained net (attention at half resolution): work per pixel grows with the tile,
    so it is tiled small even when memory would take the whole image; shipped nets are not capped."""
    shallow = make_engine(dim=32, dim_mults=(1, 2))
    assert shallow.estimate_bytes(400, 600) < shallow._memory_budget()
    tile = shallow.auto_tile(400, 600)
    assert 0 < tile <= 256
    net = shallow.unet0 or shallow.unet1
    assert net.attention_flops_per_pixel(tile, tile) <= net.conv_flops_per_pixel()
    assert net.attention_flops_per_pixel(2 * tile, 2 * tile) > net.conv_flops_per_pixel()
    shipped = make_engine(**SHIPPED_SHAPE)
    assert shipped.largest_efficient_tile() is None and shipped.auto_tile(700, 1000) == 0


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
    tiles = [line for line in err.splitlines() if line.strip().startswith("tiles ")]
    assert 1 <= len(tiles) <= 4 and tiles[-1].split()[-1].split("/")[0] == tiles[-1].split("/")[-1], err
