"""Held-out scoring during training, with the sampler the RDDM engine runs.

The trained networks are wrapped in a `predict(state, t)` callable and handed
to `restorecli.engines.rddm.schedule.sample`, the engine's own sampler, so the
validation numbers are those `restore TASK --weights BUNDLE` would give (per
image, one noise draw from a generator seeded with `seed + k`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..engines.rddm.schedule import Predict, Prediction, Schedule, gated_prediction, interpret
from ..engines.rddm.schedule import sample as rddm_sample
from ..errors import UsageError
from ..quality.evaluate import read_rgb8
from ..quality.metrics import all_metrics, psnr, to_255
from .config import TrainConfig
from .datasets import CropSampler, Pair, collect_images, fixed_pairs, is_held_out, load_pairs, split_files
from .degrade import DEGRADATIONS

GLOBAL_SIZE = 64  # the side of the lightnet's global view (nets.lightnet: global_size)


def predictor(
    nets: dict[str, nn.Module], objective: str, sched: Schedule, x_in: Tensor, *, use_gate: bool = True
) -> Predict:
    """The trained UNets as the sampler's `predict(state, t)`: state and input in, residual / noise / clean out.

    As the engine's predictor for these models: integer times, the state concatenated
    with the input, a fourth noise-head channel read as the gate logit.
    """

    def predict(img: Tensor, t: int) -> Prediction:
        tt = torch.full((img.shape[0],), t, dtype=torch.long, device=img.device)
        abar, bbar = sched.at("alphas_cumsum", tt, img.dim()), sched.at("betas_cumsum", tt, img.dim())
        inp = torch.cat((img, x_in), dim=1)
        out0 = nets["unet0"](inp, tt).float()
        out1 = nets["unet1"](inp, tt).float() if objective == "pred_res_noise" else None
        logit = None
        if out1 is not None and out1.shape[1] == img.shape[1] + 1:
            out1, logit = out1[:, :-1], out1[:, -1:]
        res, eps, x0 = interpret(
            objective, out0, out1, img, x_in, abar, bbar, sched.at("one_minus_alphas_cumsum", tt, img.dim())
        )
        if logit is not None and use_gate:
            x0, eps = gated_prediction(img, x_in, res, eps, logit, abar, bbar)
        return Prediction(res, eps, x0)

    return predict


@torch.no_grad()
def sample(
    nets: dict[str, nn.Module],
    objective: str,
    sched: Schedule,
    degraded: Tensor,
    *,
    steps: int,
    generator: torch.Generator,
    sum_scale: float = 1.0,
    use_gate: bool = True,
    global_only: bool = False,
) -> Tensor:
    """The engine's RDDM sampler on the trained networks, [0, 1] in and out.

    The start state is the input plus sqrt(sum_scale) * noise, one draw of the batch's
    shape from `generator`; with a gate, the clean estimate is the gated mix
    (`use_gate=False` runs the heads as plain RDDM). `global_only`: a lightnet's global
    mapping alone, the part a `--global-only` run trains.
    """
    if objective == "direct":  # the lightnet: one deterministic pass, no noise drawn
        net = nets["net"]
        if global_only:
            return net.global_mapping(degraded, net.global_params(degraded)).clamp(0, 1)
        return net(degraded).clamp(0, 1)
    x_in = degraded * 2 - 1
    noise = torch.randn(x_in.shape, generator=generator).to(x_in.device)
    x_t = x_in + math.sqrt(sum_scale) * noise

    def noise_fn(like: Tensor) -> Tensor:  # only the full-length (steps == T) chain draws again
        return torch.randn(like.shape, generator=generator).to(like.device)

    out = rddm_sample(predictor(nets, objective, sched, x_in, use_gate=use_gate), x_t, sched, steps, noise_fn=noise_fn)
    return ((out + 1) / 2).clamp(0, 1)


def build_data(cfg: TrainConfig) -> tuple[CropSampler, list[Pair]]:
    """The training crops (a CropSampler) and held-out validation pairs from the config's --clean and --pairs sources."""
    clean_imgs: list[np.ndarray] = []
    val_pairs: list[Pair] = []
    if cfg.clean:
        files = collect_images([Path(p) for p in cfg.clean])
        train_files, val_files = split_files(files, cfg.held_out)
        if not train_files:
            raise UsageError("every clean image was held out", "lower --held-out or add images")
        clean_imgs = [read_rgb8(f) for f in train_files]
        if val_files:
            val_pairs += fixed_pairs(
                val_files[: cfg.val_count],
                cfg.degradation or "rain",
                seed=cfg.seed + 1,
                size=cfg.val_size,
                degrade_params=cfg.degrade_params,
            )
    pairs: list[Pair] = []
    for degraded_dir, clean_dir in cfg.pairs:
        loaded = load_pairs(Path(degraded_dir), Path(clean_dir))
        pairs += [p for p in loaded if not is_held_out(p.name, cfg.held_out)]
        held = [p for p in loaded if is_held_out(p.name, cfg.held_out)]
        val_pairs += [_centre(p, cfg.val_size) for p in held[: cfg.val_count]]
    crops = CropSampler(
        clean=clean_imgs,
        pairs=pairs,
        degradation=cfg.degradation if cfg.clean else None,
        degrade_params=cfg.degrade_params,
        crop=cfg.crop,
        quarter_turns=not upright(cfg),
        pair_fraction=cfg.pair_fraction,
        context=GLOBAL_SIZE if cfg.whole_image_context else 0,
    )
    return crops, val_pairs


def upright(cfg: TrainConfig) -> bool:
    """Whether training crops must stay upright: deraining (its pairs and its synthetic rain fall down)."""
    return cfg.task == "derain" or (cfg.degradation is not None and DEGRADATIONS[cfg.degradation].upright)


def _centre(pair: Pair, size: int) -> Pair:
    h, w = pair.clean.shape[:2]
    s_h, s_w = (min(size, h), min(size, w)) if size else (h, w)
    y, x = (h - s_h) // 2, (w - s_w) // 2
    s_h, s_w = s_h - s_h % 8, s_w - s_w % 8
    return Pair(pair.name, pair.degraded[y : y + s_h, x : x + s_w].copy(), pair.clean[y : y + s_h, x : x + s_w].copy())


def is_identity(pair: Pair) -> bool:
    """A pair whose input is its target: a photo the model must leave alone, not one to restore."""
    return pair.degraded.shape == pair.clean.shape and bool(np.array_equal(pair.degraded, pair.clean))


def validate(
    nets: dict[str, nn.Module],
    cfg: TrainConfig,
    sched: Schedule,
    pairs: list[Pair],
    device: torch.device,
    steps: int | None = None,
    use_gate: bool = True,
) -> dict[str, float]:
    """Mean PSNR/SSIM (Y and RGB) of the sampler's output on the held-out pairs, seed fixed per image.

    Identity pairs (input == target, e.g. well-exposed photos a low-light model must not
    change) are scored apart: their PSNR is infinite for the input and tens of dB for any
    output, so folding them into the means would drown the restoration pairs.
    `identity_psnr_rgb` is the mean PSNR of output vs input over them (`identity_count` pairs).
    """
    scores: list[dict[str, float]] = []
    kept: list[float] = []
    for k, pair in enumerate(pairs):
        deg = torch.from_numpy(pair.degraded.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
        gen = torch.Generator().manual_seed(cfg.seed + k)
        out = sample(
            nets,
            cfg.objective,
            sched,
            deg,
            steps=steps or cfg.steps,
            generator=gen,
            sum_scale=cfg.sum_scale,
            use_gate=use_gate,
            global_only=cfg.global_only,
        )
        restored = to_255(out[0].permute(1, 2, 0).cpu().numpy())
        if is_identity(pair):
            kept.append(psnr(restored, pair.clean))
        else:
            scores.append(all_metrics(restored, pair.clean))
    result = _means(scores)
    if kept:
        result["identity_psnr_rgb"] = float(np.mean(kept))
        result["identity_count"] = float(len(kept))
    return result


def input_scores(pairs: list[Pair]) -> dict[str, float]:
    """The same metrics for the degraded inputs themselves: the baseline a model must beat (identity pairs left out)."""
    return _means([all_metrics(p.degraded, p.clean) for p in pairs if not is_identity(p)])


def _means(scores: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([s[m] for s in scores])) for m in scores[0]} if scores else {}


def describe_scores(metrics: dict[str, float]) -> str:
    """One log line for `validate`'s result: restoration scores, then how far identity pairs moved."""
    parts = []
    if "psnr_y" in metrics:
        parts.append(
            f"held-out PSNR-Y {metrics['psnr_y']:.2f} dB  SSIM-Y {metrics['ssim_y']:.4f}  PSNR {metrics['psnr_rgb']:.2f} dB"
        )
    if "identity_psnr_rgb" in metrics:
        parts.append(f"identity pairs kept at {metrics['identity_psnr_rgb']:.2f} dB")
    return "  ".join(parts)
