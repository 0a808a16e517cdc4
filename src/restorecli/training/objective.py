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


def training_loss(
    nets: dict[str, nn.Module],
    cfg: TrainConfig,
    sched: Schedule,
    degraded: Tensor,
    clean: Tensor,
    generator: torch.Generator,
) -> tuple[Tensor, dict[str, float]]:
    """One batch of the RDDM objective (plus the gate term in dual-output mode). Inputs are [0, 1]."""
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
