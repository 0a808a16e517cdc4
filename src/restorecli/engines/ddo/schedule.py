"""DDO's diffusion arithmetic as tensor functions: the beta schedules, (respaced) chains, the dual-output
mix, the implicit and ancestral updates, and the training objective.

Every table is computed in float64 and stored as float32, as the official
buffers are; respacing rebuilds the chain from the float32 base alphas_cumprod
(see `respace`). The engine (`engine.py`) runs these with its network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import UsageError

SAMPLERS = ("ddim", "ancestral")
RESPACINGS = ("ddim", "ddodm")
VAR_TYPES = ("fixedlarge", "fixedsmall")
DEFAULT_SCHEDULE = {"type": "linear", "beta_start": 1e-4, "beta_end": 2e-2, "n_timestep": 1000}


def base_betas(schedule: Mapping[str, Any]) -> Tensor:
    """The training betas in float64 for the official schedule types (linear, quad, const, cosine)."""
    kind = schedule.get("type", "linear")
    n = int(schedule.get("n_timestep", 1000))
    start, end = float(schedule.get("beta_start", 1e-4)), float(schedule.get("beta_end", 2e-2))
    if kind == "linear":
        return torch.linspace(start, end, n, dtype=torch.float64)
    if kind == "quad":
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    if kind == "const":
        return end * torch.ones(n, dtype=torch.float64)
    if kind == "cosine":
        # abar(t) = cos(((t + s) / (1 + s))^p1 * pi/2)^p2, normalised at t=0; betas capped at 0.999.
        s = 0.008
        t = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        f = torch.cos(((t + s) / (1 + s)) ** float(schedule.get("cosine_temp1", 1)) * math.pi / 2)
        abar = f ** float(schedule.get("cosine_temp2", 2))
        abar = abar / abar[0]
        return (1 - abar[1:] / abar[:-1]).clip(max=0.999)
    raise UsageError(f"unknown DDO beta schedule '{kind}'", "use linear, quad, const or cosine")


@dataclass(frozen=True, eq=False)
class Chain:
    """One (possibly respaced) diffusion chain: float32 tables indexed by chain position.

    `timesteps[i]` is the ORIGINAL timestep the network is given at chain index i.
    """

    timesteps: tuple[int, ...]
    betas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_alphas_cumprod_prev: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod_prev: Tensor
    sqrt_recip_alphas_cumprod: Tensor
    sqrt_recipm1_alphas_cumprod: Tensor
    posterior_log_variance_clipped: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor

    def __len__(self) -> int:
        return len(self.timesteps)

    def log_var(self, var_type: str) -> Tensor:
        """Per-index log variance of the ancestral step, computed in float32 from the float32 tables."""
        if var_type == "fixedlarge":
            return torch.log(torch.cat([self.betas[1:2], self.betas[1:]]))
        if var_type == "fixedsmall":
            return self.posterior_log_variance_clipped
        raise UsageError(f"unknown DDO variance type '{var_type}'", f"use one of {', '.join(VAR_TYPES)}")

    def to(self, device: torch.device) -> Chain:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if isinstance(value, Tensor):
                moved[key] = value.to(device)
        return Chain(**moved)


def build_chain(betas: Tensor, timesteps: list[int] | None = None) -> Chain:
    """All tables from float64 betas, computed in float64 and stored as float32 (the official buffers)."""
    b = betas.to(torch.float64)
    alphas = 1 - b
    ac = torch.cumprod(alphas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = b * (1 - ac_prev) / (1 - ac)
    f32 = lambda x: x.to(torch.float32)  # noqa: E731
    return Chain(
        timesteps=tuple(range(len(b))) if timesteps is None else tuple(timesteps),
        betas=f32(b),
        alphas_cumprod=f32(ac),
        alphas_cumprod_prev=f32(ac_prev),
        sqrt_alphas_cumprod=f32(ac.sqrt()),
        sqrt_alphas_cumprod_prev=f32(ac_prev.sqrt()),
        sqrt_one_minus_alphas_cumprod=f32((1 - ac).sqrt()),
        sqrt_one_minus_alphas_cumprod_prev=f32((1 - ac_prev).sqrt()),
        sqrt_recip_alphas_cumprod=f32(ac.rsqrt()),
        sqrt_recipm1_alphas_cumprod=f32((1 / ac - 1).sqrt()),
        posterior_log_variance_clipped=f32(torch.log(torch.cat([post_var[1:2], post_var[1:]]))),
        posterior_mean_coef1=f32(b * ac_prev.sqrt() / (1 - ac)),
        posterior_mean_coef2=f32((1 - ac_prev) * alphas.sqrt() / (1 - ac)),
    )


def respaced_timesteps(trained: int, steps: int, mode: str) -> list[int]:
    """The official `respace_timesteps`, kept timesteps in increasing order.

    'ddim' keeps range(0, T, T // K) (which gives more than K steps when K does
    not divide T, as the official code does); 'ddodm' keeps range(T-1, 0, -T // K)
    with Python's floor division of the negative -T, ending at T-1.
    """
    if not 1 <= steps <= trained:
        raise UsageError(f"{steps} sampling steps requested; DDO accepts 1 to {trained}")
    if mode == "ddim":
        return list(range(0, trained, trained // steps))
    if mode == "ddodm":
        return sorted(range(trained - 1, 0, -trained // steps))
    raise UsageError(f"unknown DDO respacing '{mode}'", f"use one of {', '.join(RESPACINGS)}")


def respace(base: Chain, keep: list[int]) -> Chain:
    """The official SpacedDiffusion: betas from the float32 base abar, then the whole chain rebuilt."""
    kept = set(keep)
    last = torch.tensor(1.0, dtype=torch.float32)
    new_betas: list[Tensor] = []
    timesteps: list[int] = []
    for i, abar in enumerate(base.alphas_cumprod):
        if i in kept:
            # float32 arithmetic, as the official loop over the float32 buffer does
            new_betas.append(1 - abar / last)
            last = abar
            timesteps.append(i)
    return build_chain(torch.stack(new_betas).to(torch.float64), timesteps)


# ---- the dual output -----------------------------------------------------------


def split_output(out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x0 head, eps head, gate logit) = channels 0:3, 3:6, 6:7."""
    return out[:, 0:3], out[:, 3:6], out[:, 6:7]


def _at(table: Tensor, index: Tensor | int, ndim: int) -> Tensor:
    """table[index] shaped to broadcast over (B, C, H, W): a per-sample index or one scalar index."""
    value = table[index]
    return value.reshape(-1, *([1] * (ndim - 1))) if value.ndim else value


def mix_x0(
    chain: Chain, index: Tensor | int, x_t: Tensor, out: Tensor, detach_heads: bool = False
) -> dict[str, Tensor]:
    """The gate's x0 estimate (unclipped) and the pieces it is made of."""
    x0_head, eps, logit = split_output(out)
    x0_eps = (
        _at(chain.sqrt_recip_alphas_cumprod, index, x_t.ndim) * x_t
        - _at(chain.sqrt_recipm1_alphas_cumprod, index, x_t.ndim) * eps
    )
    gate = logit.sigmoid()
    if detach_heads:  # training: the mix teaches the gate only
        mix = gate * x0_head.detach() + (1 - gate) * x0_eps.detach()
    else:
        mix = gate * x0_head + (1 - gate) * x0_eps
    return {"x0_head": x0_head, "eps_head": eps, "gate": gate, "x0_from_eps": x0_eps, "x0_mix_unclipped": mix}


def posterior_mean(chain: Chain, index: Tensor | int, x0: Tensor, x_t: Tensor) -> Tensor:
    """DDPM posterior mean coef1 * x0 + coef2 * x_t."""
    return (
        _at(chain.posterior_mean_coef1, index, x_t.ndim) * x0 + _at(chain.posterior_mean_coef2, index, x_t.ndim) * x_t
    )


def implicit_mean(chain: Chain, i: int, x_t: Tensor, x0_unclipped: Tensor, x0: Tensor) -> Tensor:
    """DDIM (eta 0) next state: the noise comes from the unclipped x0, the x0 term is the clipped one."""
    eps = (x_t - chain.sqrt_alphas_cumprod[i] * x0_unclipped) / chain.sqrt_one_minus_alphas_cumprod[i]
    return chain.sqrt_alphas_cumprod_prev[i] * x0 + chain.sqrt_one_minus_alphas_cumprod_prev[i] * eps


# ---- training objective --------------------------------------------------------


@dataclass(frozen=True)
class DualLoss:
    """The official per-sample terms (each a (B,) mean of squares over 3 channels) and the batch loss."""

    loss: Tensor  # scalar, what is backpropagated: mean of per_sample
    per_sample: Tensor  # (loss_x_0 + loss_noise + loss_mean) / 3 = MSE over the 9-channel concatenation
    loss_x_0: Tensor
    loss_noise: Tensor
    loss_mean: Tensor


def draw_training_inputs(x0: Tensor, chain: Chain, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """t ~ U{0..T-1} per image, then noise ~ N(0, I): the official order after torch.manual_seed."""
    t = torch.randint(0, len(chain), (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
    return t.to(x0.device), noise.to(x0.device)


def dual_output_loss(net: nn.Module, chain: Chain, x0: Tensor, t: Tensor, noise: Tensor) -> DualLoss:
    """The official DDO objective (`training_losses` with mean_type 'dualx') on the base chain.

    Targets: x0, the noise, and the DDPM posterior mean of (x0, x_t). Predictions:
    the x0 head, the eps head, and the posterior mean of the gate's x0 mix built
    from DETACHED heads (so the third term trains only the gate). No clipping,
    and the DDPM posterior even for models sampled implicitly.
    """
    chain = chain.to(x0.device)
    x_t = _at(chain.sqrt_alphas_cumprod, t, x0.ndim) * x0 + _at(chain.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
    out = net(x_t, t)
    parts = mix_x0(chain, t, x_t, out, detach_heads=True)
    target_mean = posterior_mean(chain, t, x0, x_t)
    pred_mean = posterior_mean(chain, t, parts["x0_mix_unclipped"], x_t)

    def mse(a: Tensor, b: Tensor) -> Tensor:
        return ((a - b) ** 2).reshape(a.shape[0], -1).mean(dim=1)

    target = torch.cat([x0, noise, target_mean], dim=1)
    pred = torch.cat([parts["x0_head"], parts["eps_head"], pred_mean], dim=1)
    per_sample = mse(target, pred)  # one mean over all 9 channels, as officially
    with torch.no_grad():
        lx, ln, lm = mse(x0, parts["x0_head"]), mse(noise, parts["eps_head"]), mse(target_mean, pred_mean)
    return DualLoss(loss=per_sample.mean(), per_sample=per_sample, loss_x_0=lx, loss_noise=ln, loss_mean=lm)
