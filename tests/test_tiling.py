"""Tiling: official start positions, and smooth blending that leaves a local model's output unchanged.

The models are the fake engine's (tests/fake_engine.py): a seeded random 3x3 convolution and a
nearest x2 upscale, unclipped, is a deterministic local model; its variants return only the noise
they draw, bias the left border of every tile, or return each tile's mean."""

from __future__ import annotations

import json

import pytest
import torch

import fake_engine as fe
from helpers import shared_path
from restorecli.runtime.tiling import ramp, restore_tiled, tile_starts

pytestmark = pytest.mark.usefixtures("fresh_fake_engine")


def local_engine(**sampler) -> fe.FakeEngine:
    """A deterministic local model: a seeded random 3x3 convolution, then nearest x2, never clipped."""
    return fe.make_engine(conv="random", clamp=False, **sampler)


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
    engine = local_engine()
    image = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(1))
    whole = engine.restore(image, steps=1, generators=[torch.Generator()])
    # The conv's 3x3 receptive field is far inside the overlap, and the borders that differ
    # (replicate padding at tile edges) are covered by a neighbour's interior where it counts.
    tiled = restore_tiled(engine, image, None, steps=1, generator=torch.Generator(), tile=24, overlap=8)
    assert len(fe.FakeEngine.calls) > 4
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-5


def test_uniform_average_would_leave_a_seam():
    """Blending matters: a model whose tile edges differ shows seams under uniform averaging, not under ramps."""

    engine = local_engine(edge_bias=0.5)  # a bad left border in every tile
    image = torch.rand(1, 3, 24, 60, generator=torch.Generator().manual_seed(2))
    tiled = restore_tiled(engine, image, None, steps=1, generator=torch.Generator(), tile=24, overlap=8)
    reference = local_engine().restore(image, steps=1, generators=[torch.Generator()])
    # The bad borders fall in the zero-weight margin of each overlap, so only the image's own
    # left border (no neighbour there) keeps the bias.
    assert (tiled - reference)[..., 4:].abs().max() < 1e-5
    # Uniform averaging (the official rule) would keep half of the bias at every interior seam.
    assert (tiled - reference)[..., :4].abs().min() > 0.4


def test_tiles_draw_in_row_major_order_from_the_images_one_generator():
    """As the official splitter with the global RNG: tile after tile, left to right, top to bottom, one stream."""
    # only the noise drawn from the generator each tile is handed: tiles show which draws they got
    engine = fe.make_engine(1, noise=1.0, conv="zero", clamp=False)
    image = torch.zeros(1, 3, 48, 72)
    tiled = restore_tiled(engine, image, None, steps=1, generator=torch.Generator().manual_seed(7), tile=24, overlap=0)
    stream = torch.Generator().manual_seed(7)
    expected = torch.empty(1, 3, 48, 72)
    for top in (0, 24):
        for left in (0, 24, 48):
            expected[..., top : top + 24, left : left + 24] = torch.randn(1, 3, 24, 24, generator=stream)
    assert torch.equal(tiled, expected)


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
            fe.make_engine(scale, tile_mean=True),  # each tile its input's mean: neighbours disagree
            image.expand(1, 3, 48, 48).contiguous(),
            None,
            steps=1,
            generator=torch.Generator(),
            tile=tile,
            overlap=overlap,
        )
        torch.testing.assert_close(line(out), expected, rtol=0, atol=1e-6)
