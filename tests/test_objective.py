"""The lightnet's training objective: the whole-photo term for its global branch, and the global-only stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorecli.errors import UsageError
from restorecli.nets.lightnet import LightNet
from restorecli.training.config import TrainConfig
from restorecli.training.datasets import CropSampler, Pair
from restorecli.training.objective import direct_loss


def _pairs() -> list[Pair]:
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(3):
        clean = rng.integers(60, 250, (40, 56, 3)).astype(np.uint8)
        clean[:, :20] //= 3  # a dark side, so turns and flips show in the thumbnails
        pairs.append(Pair(name=f"p{k}", degraded=(clean // 4).astype(np.uint8), clean=clean))
    return pairs


def test_each_crop_comes_with_both_whole_thumbnails_turned_alike():
    sampler = CropSampler(pairs=_pairs(), crop=24, context=16)
    sampler.batch(np.random.default_rng(1), 6)
    low, clean = sampler.last_batch_context, sampler.last_batch_clean_context
    assert low.shape == clean.shape == (6, 3, 16, 16)
    # the degraded photo is the clean one divided by four, so the thumbnails agree to within rounding
    assert np.abs(low * 4 - clean).max() < 4 / 255


def _batch(cfg: TrainConfig) -> tuple[LightNet, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    net = LightNet(width=4, global_width=8, global_size=16)
    with torch.no_grad():  # a head away from zero, so both branches get gradients
        net.global_branch.head[-1].weight.normal_(0, 0.05)
        net.local_branch.tail.weight.normal_(0, 0.05)
    sampler = CropSampler(pairs=_pairs(), crop=24, context=16)
    deg, clean = sampler.batch(np.random.default_rng(2), 4)
    tensors = [torch.from_numpy(a) for a in (deg, clean, sampler.last_batch_context, sampler.last_batch_clean_context)]
    return net, tuple(tensors)


def test_global_weight_scores_the_global_mapping_on_the_whole_thumbnail():
    cfg = TrainConfig(task="lowlight", network="lightnet", whole_image_context=True, global_weight=0.5, local_crop=16)
    net, (deg, clean, ctx, clean_ctx) = _batch(cfg)
    loss, parts = direct_loss(net, cfg, deg, clean, torch.Generator().manual_seed(0), ctx, clean_ctx)
    with torch.no_grad():
        expected = 0.5 * float((net.global_mapping(ctx, net.global_params(ctx)) - clean_ctx).abs().mean())
    assert parts["global"] == pytest.approx(expected, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(sum(parts.values()), rel=1e-5)
    plain = TrainConfig(task="lowlight", network="lightnet", whole_image_context=True, local_crop=16)
    assert "global" not in direct_loss(net, plain, deg, clean, torch.Generator().manual_seed(0), ctx, clean_ctx)[1]


def test_global_only_trains_the_global_branch_and_leaves_the_local_one():
    cfg = TrainConfig(task="lowlight", network="lightnet", whole_image_context=True, global_only=True)
    net, (deg, clean, ctx, clean_ctx) = _batch(cfg)
    loss, parts = direct_loss(net, cfg, deg, clean, torch.Generator().manual_seed(0), ctx, clean_ctx)
    assert set(parts) == {"global"}
    loss.backward()
    assert all(p.grad is None for p in net.local_branch.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.global_branch.parameters())


def test_global_only_needs_a_lightnet_that_reads_the_whole_photo():
    with pytest.raises(UsageError, match="--global-only"):
        TrainConfig(task="lowlight", network="lightnet", global_only=True)
    with pytest.raises(UsageError, match="--global-only"):
        TrainConfig(task="derain", network="rainnet", whole_image_context=True, global_only=True)


def test_a_global_only_run_is_scored_on_the_global_mapping_alone():
    from restorecli.quality.metrics import psnr, to_255
    from restorecli.training.validate import validate

    cfg = TrainConfig(task="lowlight", network="lightnet", whole_image_context=True, global_only=True)
    net, _ = _batch(cfg)
    pair = _pairs()[0]
    x = torch.from_numpy(pair.degraded.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        mapped = to_255(net.global_mapping(x, net.global_params(x)).clamp(0, 1)[0].permute(1, 2, 0).numpy())
        whole = to_255(net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy())
    assert psnr(mapped, pair.clean) != pytest.approx(psnr(whole, pair.clean), abs=0.01)
    scores = validate({"net": net}, cfg, None, [pair], torch.device("cpu"))
    assert scores["psnr_rgb"] == pytest.approx(psnr(mapped, pair.clean), abs=1e-6)
    plain = TrainConfig(task="lowlight", network="lightnet", whole_image_context=True)
    assert validate({"net": net}, plain, None, [pair], torch.device("cpu"))["psnr_rgb"] == pytest.approx(
        psnr(whole, pair.clean), abs=1e-6
    )


def test_global_weight_needs_a_lightnet_that_reads_the_whole_photo():
    with pytest.raises(UsageError, match="--global-weight"):
        TrainConfig(task="lowlight", network="lightnet", global_weight=1.0)
    with pytest.raises(UsageError, match="--global-weight"):
        TrainConfig(task="derain", network="unet", whole_image_context=True, global_weight=1.0)
