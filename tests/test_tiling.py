"""Tiling: official start positions, and smooth blending that leaves a local model's output unchanged."""

from __future__ import annotations

import json

import torch
from torch import nn

from conftest import shared_path
from restorecli.engines.base import Engine
from restorecli.runtime.tiling import ramp, restore_tiled, tile_starts
from restorecli.weights.registry import ModelSpec


class LocalEngine(Engine):
    """A deterministic local 'model' (3x3 conv + nearest x2), to test tiling without a real network."""

    method = "test-local"
    min_tile = 8

    def __init__(self, scale: int = 2) -> None:  # no weights to load
        self.spec = ModelSpec("local", "test-local", "sr", scale, {}, {}, 1, 1, 1, 1)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate")
        self.calls = 0

    @classmethod
    def build_component(cls, comp, device="cpu"):
        raise NotImplementedError

    @torch.no_grad()
    def restore(self, images, *, steps, generators, masks=None):
        self.calls += 1
        y = self.conv(images)
        return torch.nn.functional.interpolate(y, scale_factor=self.scale, mode="nearest")


def test_tile_starts_match_official_splitter():
    cases = json.loads((shared_path("conformance", "resshift", "tiles.json")).read_text())["cases"]
    assert cases
    for case in cases:
        stride = case["stride"]
        assert tile_starts(case["h"], case["chop"], stride) == case["height_starts"], case
        assert tile_starts(case["w"], case["chop"], stride) == case["width_starts"], case


def test_ramps_of_neighbours_sum_to_one():
    a = ramp(32, 0, 8)
    b = ramp(32, 8, 0)
    assert torch.allclose(a[-8:] + b[:8], torch.ones(8), atol=1e-6)
    assert a[:24].eq(1).all() and b[8:].eq(1).all()
    assert a[-2:].eq(0).all() and b[:2].eq(0).all()  # a tile's own border never counts


def test_tiled_equals_whole_image_for_a_local_model():
    engine = LocalEngine()
    image = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(1))
    whole = engine.restore(image, steps=1, generators=[torch.Generator()])
    # The conv's 3x3 receptive field is far inside the overlap, and the borders that differ
    # (replicate padding at tile edges) are covered by a neighbour's interior where it counts.
    tiled = restore_tiled(engine, image, None, steps=1, generator=torch.Generator(), tile=24, overlap=8)
    assert engine.calls > 4
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-5


def test_uniform_average_would_leave_a_seam():
    """Blending matters: a model whose tile edges differ shows seams under uniform averaging, not under ramps."""

    class EdgeBiased(LocalEngine):
        def restore(self, images, *, steps, generators, masks=None):
            out = super().restore(images, steps=steps, generators=generators)
            out[..., :4] += 0.5  # a bad left border in every tile
            return out

    engine = EdgeBiased()
    image = torch.rand(1, 3, 24, 60, generator=torch.Generator().manual_seed(2))
    tiled = restore_tiled(engine, image, None, steps=1, generator=torch.Generator(), tile=24, overlap=8)
    reference = LocalEngine().restore(image, steps=1, generators=[torch.Generator()])
    # The bad borders fall in the zero-weight margin of each overlap, so only the image's own
    # left border (no neighbour there) keeps the bias.
    assert (tiled - reference)[..., 4:].abs().max() < 1e-5
    # Uniform averaging (the official rule) would keep half of the bias at every interior seam.
    assert (tiled - reference)[..., :4].abs().min() > 0.4


class NoiseEngine(LocalEngine):
    """Returns only noise drawn from the generator it is handed, so tiles show which draws they got."""

    def __init__(self) -> None:
        super().__init__(scale=1)

    def restore(self, images, *, steps, generators, masks=None):
        assert len(generators) == 1
        return torch.randn(images.shape, generator=generators[0])


def test_tiles_draw_in_row_major_order_from_the_images_one_generator():
    """As the official splitter with the global RNG: tile after tile, left to right, top to bottom, one stream."""
    engine = NoiseEngine()
    image = torch.zeros(1, 3, 48, 72)
    tiled = restore_tiled(engine, image, None, steps=1, generator=torch.Generator().manual_seed(7), tile=24, overlap=0)
    stream = torch.Generator().manual_seed(7)
    expected = torch.empty(1, 3, 48, 72)
    for top in (0, 24):
        for left in (0, 24, 48):
            expected[..., top : top + 24, left : left + 24] = torch.randn(1, 3, 24, 24, generator=stream)
    assert torch.equal(tiled, expected)


class TileMeanEngine:
    """Each tile comes back as its input's mean, upscaled: neighbouring tiles disagree, so the blend shows."""

    min_tile = 8

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def restore(self, images, *, steps, generators, masks=None):
        mean = images.mean(dim=(2, 3), keepdim=True)
        return mean.expand(-1, -1, images.shape[2] * self.scale, images.shape[3] * self.scale).clone()


def test_the_blend_runs_over_the_output_overlap_at_scale_4():
    """Two tiles 16 input pixels apart overlap by 64 output pixels at scale 4; their ramps span those 64."""
    scale, tile, overlap = 4, 32, 16
    grad = torch.arange(48, dtype=torch.float32) / 48
    means = torch.stack([grad[:32].mean(), grad[16:].mean()])  # the two tiles' values along the gradient
    w0 = torch.zeros(192)
    w1 = torch.zeros(192)
    w0[:128] = ramp(128, 0, scale * overlap)
    w1[64:] = ramp(128, scale * overlap, 0)
    expected = (w0 * means[0] + w1 * means[1]) / (w0 + w1)
    for image, line in (
        (grad[:, None].expand(48, 48), lambda out: out[0, 0, :, 0]),  # varies down: rows blend
        (grad[None, :].expand(48, 48), lambda out: out[0, 0, 0, :]),  # varies across: columns blend
    ):
        out = restore_tiled(
            TileMeanEngine(scale),
            image.expand(1, 3, 48, 48).contiguous(),
            None,
            steps=1,
            generator=torch.Generator(),
            tile=tile,
            overlap=overlap,
        )
        torch.testing.assert_close(line(out), expected, rtol=0, atol=1e-6)
