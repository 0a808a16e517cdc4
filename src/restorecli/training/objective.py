"""The RDDM training objective (plus DDO's gate term in dual-output mode).

RDDM (Liu et al., CVPR 2024) writes the forward process as
    x_t = x_0 + abar_t * (I_in - x_0) + bbar_t * eps
with the residual I_in - x_0 and the noise diffused by separate schedules, and
trains one network for the residual and one for the noise (objective
`pred_res_noise`), or a single network for the residual with the noise derived
from it (`pred_res`). The loss is L1 (or L2) on both heads. The optional
dual-output objective transplants DDO's gated mixing (Benny & Wolf, CVPR 2022)
onto residual diffusion; see `restorecli.engines.rddm.schedule.gated_x0`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engines.rddm.schedule import Schedule, gated_x0
from .config import TrainConfig


def _ssim_luma(a: Tensor, b: Tensor) -> Tensor:
    """Mean SSIM of the luma of two [0, 1] batches (Gaussian window 11, sigma 1.5, valid region)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=a.device).view(1, 3, 1, 1)
    ya, yb = (a * weights).sum(1, keepdim=True), (b * weights).sum(1, keepdim=True)
    g = torch.exp(-((torch.arange(11, device=a.device) - 5.0) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).view(1, 1, 11, 11)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, win)

    mu_a, mu_b = blur(ya), blur(yb)
    var_a, var_b = blur(ya * ya) - mu_a**2, blur(yb * yb) - mu_b**2
    cov = blur(ya * yb) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean()


def jitter_gains(degraded: Tensor, cfg: TrainConfig, generator: torch.Generator) -> Tensor | None:
    """Per-image exposure (in stops) and per-channel colour gains (B, 3, 1, 1) for the inputs only: the
    target stays put, so the global branch learns to undo both rather than copy them. None: no jitter."""
    b = degraded.shape[0]
    gains = torch.ones(b, 3, 1, 1)
    if cfg.exposure_jitter:
        gains = gains * torch.exp2((torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * cfg.exposure_jitter)
    if cfg.color_jitter:
        gains = gains * (1 + (torch.rand(b, 3, 1, 1, generator=generator) * 2 - 1) * cfg.color_jitter)
    return gains.to(degraded.device) if (cfg.exposure_jitter or cfg.color_jitter) else None


def _quantised(x: Tensor) -> Tensor:
    return (torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255).float()


def direct_loss(
    net: nn.Module,
    cfg: TrainConfig,
    degraded: Tensor,
    clean: Tensor,
    generator: torch.Generator,
    context: Tensor | None = None,
    clean_context: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The lightnet's loss: its global branch sees the whole image (`context`, its thumbnail) or else
    the whole training crop, its local branch a random part of the crop (as a tile of a larger photo),
    scored by L1 (or L2) plus SSIM on luma. With `clean_context` and `global_weight`, the global
    mapping alone is also scored on the whole thumbnail: a crop's pixels say little about how bright
    the whole photo should be, and the whole photo is cheap at thumbnail size."""
    lossf: Callable[[Tensor, Tensor], Tensor] = F.l1_loss if cfg.loss == "l1" else F.mse_loss
    gains = jitter_gains(degraded, cfg, generator)
    if gains is not None:
        degraded = _quantised(degraded * gains)
        context = None if context is None else (context * gains).clamp(0, 1)
    params = net.global_params(context if context is not None else degraded)
    whole_photo = context is not None and clean_context is not None
    if cfg.global_only and whole_photo:
        whole = _global_mapping_loss(net, params, context, clean_context)
        return whole, {"global": float(whole.detach())}
    size = degraded.shape[-1]
    local = min(cfg.local_crop, size) if cfg.local_crop else max(size // 2, min(size, 96))
    y0, x0 = (int(v) for v in torch.randint(0, size - local + 1, (2,), generator=generator))
    part = (slice(None), slice(None), slice(y0, y0 + local), slice(x0, x0 + local))
    out = net(degraded[part], params)
    target = clean[part]
    parts = {"pixel": lossf(out, target)}
    if cfg.ssim_weight:
        parts["ssim"] = cfg.ssim_weight * (1 - _ssim_luma(out.clamp(0, 1), target))
    if cfg.global_weight and whole_photo:
        parts["global"] = cfg.global_weight * _global_mapping_loss(net, params, context, clean_context)
    loss = sum(parts.values())
    return loss, {k: float(v.detach()) for k, v in parts.items()}  # type: ignore[return-value]


def _global_mapping_loss(net: nn.Module, params: object, context: Tensor, clean_context: Tensor) -> Tensor:
    """L1 of the global mapping alone on the whole degraded thumbnail against the whole clean one."""
    return F.l1_loss(net.global_mapping(context, params), clean_context)


def training_loss(
    nets: dict[str, nn.Module],
    cfg: TrainConfig,
    sched: Schedule,
    degraded: Tensor,
    clean: Tensor,
    generator: torch.Generator,
    context: Tensor | None = None,
    clean_context: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """One batch of the RDDM objective (plus the gate term in dual-output mode). Inputs are [0, 1]."""
    if cfg.objective == "direct":
        return direct_loss(nets["net"], cfg, degraded, clean, generator, context, clean_context)
    device = clean.device
    x0 = clean * 2 - 1
    x_in = degraded * 2 - 1
    res = x_in - x0
    b = x0.shape[0]
    t = torch.randint(cfg.t_min, cfg.timesteps, (b,), generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    abar, bbar = sched.at("alphas_cumsum", t), sched.at("betas_cumsum", t)
    x_t = x0 + abar * res + bbar * noise
    lossf: Callable[[Tensor, Tensor], Tensor] = F.l1_loss if cfg.loss == "l1" else F.mse_loss
    inp = torch.cat((x_t, x_in), dim=1)
    parts: dict[str, Tensor] = {}
    out0 = nets["unet0"](inp, t).float()
    parts["res"] = lossf(out0, res)
    if cfg.objective == "pred_res_noise":
        out1 = nets["unet1"](inp, t).float()
        parts["eps"] = lossf(out1[:, :3], noise)
        if cfg.dual_output:
            # As in DDO, the gate learns from the mixed estimate with the heads detached,
            # so it cannot pull the heads away from their own targets.
            x0_mix = gated_x0(x_t, x_in, out0.detach(), out1[:, :3].detach(), out1[:, 3:4], abar, bbar)
            parts["gate"] = lossf(x0_mix, x0)
    loss = sum(parts.values())
    return loss, {k: float(v.detach()) for k, v in parts.items()}
