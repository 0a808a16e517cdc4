"""Residual denoising diffusion (RDDM) as pure tensor functions: schedules, forward process, samplers.

RDDM writes the noisy state at time t as

    x_t = x_0 + abar_t * res + bbar_t * eps,    res = I_in - x_0,

so the residual (degradation) and the noise are diffused by two separate
schedules: abar (`alphas_cumsum`) grows from ~0 to 1 and bbar^2
(`betas2_cumsum`) from ~0 to sum_scale. At t = T-1 the state is the degraded
image plus noise (restoration) or pure noise (generation, I_in = 0).

Nothing here knows about networks or files: a sampler gets a `predict(state, t)`
callable that returns the residual, noise and clean-image estimates, so the
engine, tests and the training loop (`restorecli.training`) share the exact
arithmetic. Every
formula keeps the official evaluation order and dtypes (float64 or float32
schedules cast to float32 buffers; 0-dim float32 coefficients) so that CPU fp32
results match the official code to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

SCHEDULE_BUFFERS = (
    "alphas",
    "alphas_cumsum",
    "one_minus_alphas_cumsum",
    "betas2",
    "betas",
    "betas2_cumsum",
    "betas_cumsum",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "posterior_mean_coef3",
    "posterior_variance",
    "posterior_log_variance_clipped",
)
OBJECTIVES = ("pred_res_noise", "pred_res_add_noise", "pred_x0_noise", "pred_x0_add_noise", "pred_noise", "pred_res")
TWO_HEAD_OBJECTIVES = OBJECTIVES[:4]
SCHEDULE_TYPES = ("linear", "ddpm", "power")


# ---- schedules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The 12 float32 [T] buffers the official `ResidualDiffusion` registers (same names)."""

    buffers: dict[str, Tensor]

    @property
    def timesteps(self) -> int:
        return int(self.buffers["alphas_cumsum"].shape[0])

    @property
    def abar(self) -> Tensor:
        return self.buffers["alphas_cumsum"]

    @property
    def bbar(self) -> Tensor:
        return self.buffers["betas_cumsum"]

    @property
    def bbar2(self) -> Tensor:
        return self.buffers["betas2_cumsum"]

    @property
    def one_minus_abar(self) -> Tensor:
        return self.buffers["one_minus_alphas_cumsum"]

    def at(self, name: str, t: Tensor, ndim: int = 4) -> Tensor:
        """Buffer values at per-sample times t (B,), shaped (B, 1, 1, 1) for broadcasting."""
        return self.buffers[name][t].reshape(-1, *((1,) * (ndim - 1)))

    def to(self, device: torch.device | str) -> Schedule:
        return Schedule({k: v.to(device) for k, v in self.buffers.items()})


def _prev(x: Tensor) -> Tensor:
    """x shifted right by one with 1 in front (the official F.pad(x[:-1], (1, 0), value=1.))."""
    return torch.cat([torch.ones(1, dtype=x.dtype), x[:-1]])


def _finish(alphas: Tensor, alphas_cumsum: Tensor, betas2: Tensor, betas2_cumsum: Tensor) -> Schedule:
    """The derived buffers, computed in the schedule's own dtype, then stored as float32 with the official fix-ups."""
    betas_cumsum = torch.sqrt(betas2_cumsum)
    ac_prev, b2c_prev = _prev(alphas_cumsum), _prev(betas2_cumsum)
    posterior_variance = betas2 * b2c_prev / betas2_cumsum
    posterior_variance[0] = 0
    values = {
        "alphas": alphas,
        "alphas_cumsum": alphas_cumsum,
        "one_minus_alphas_cumsum": 1 - alphas_cumsum,
        "betas2": betas2,
        "betas": torch.sqrt(betas2),
        "betas2_cumsum": betas2_cumsum,
        "betas_cumsum": betas_cumsum,
        "posterior_mean_coef1": b2c_prev / betas2_cumsum,
        "posterior_mean_coef2": (betas2 * ac_prev - b2c_prev * alphas) / betas2_cumsum,
        "posterior_mean_coef3": betas2 / betas2_cumsum,
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": torch.log(posterior_variance.clamp(min=1e-20)),
    }
    out = {k: v.to(torch.float32) for k, v in values.items()}
    out["posterior_mean_coef1"][0] = 0
    out["posterior_mean_coef2"][0] = 0
    out["posterior_mean_coef3"][0] = 1
    out["one_minus_alphas_cumsum"][-1] = 1e-6
    return Schedule(out)


def linear_schedule(timesteps: int = 1000, sum_scale: float = 1.0) -> Schedule:
    """Restoration (exp 2): alpha_t decreasing and beta_t^2 increasing linearly, each summing to 1 (x sum_scale).

    Computed in float64 as the official restoration code does.
    """
    x = torch.linspace(1, timesteps, timesteps, dtype=torch.float64)
    total = 0.5 * timesteps * (timesteps + 1)
    alphas = torch.flip(x, dims=[0]) / total
    betas2 = x / total * sum_scale
    return _finish(alphas, alphas.cumsum(dim=0).clip(0, 1), betas2, betas2.cumsum(dim=0).clip(0, 1))


def _alpha_bar_cosine(timesteps: int, max_beta: float = 0.999) -> Tensor:
    def f(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - f((i + 1) / timesteps) / f(i / timesteps), max_beta) for i in range(timesteps)],
        dtype=torch.float32,
    )


def ddpm_schedule(
    timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02, beta_schedule: str = "linear"
) -> Schedule:
    """A DDPM beta schedule converted to RDDM (`convert_to_ddim`; the released generation model).

    abar = 1 - sqrt(prod(1 - beta)) and bbar^2 = 1 - prod(1 - beta), so RDDM with
    I_in = 0 walks the same path as DDIM. Float32 throughout; sum_scale plays no part.
    """
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        betas = _alpha_bar_cosine(timesteps)
    else:
        raise ValueError(f"unknown beta_schedule '{beta_schedule}' (linear, scaled_linear, squaredcos_cap_v2)")
    acp = torch.cumprod(1.0 - betas, dim=0)
    alphas_cumsum = 1 - acp**0.5
    betas2_cumsum = 1 - acp
    alphas = alphas_cumsum - _prev(alphas_cumsum)
    alphas[0] = 0
    betas2 = betas2_cumsum - _prev(betas2_cumsum)
    betas2[0] = 0
    return _finish(alphas, alphas_cumsum, betas2, betas2_cumsum)


def power_coefficients(timesteps: int, shape: str = "increased", ratio: float = 1, sum_scale: float = 1.0) -> Tensor:
    """Float32 per-step weights summing to sum_scale: linspace(0, 1)^ratio rising or falling, flat, or Gaussian."""
    if shape in ("increased", "decreased"):
        y = torch.from_numpy(np.linspace(0, 1, timesteps, dtype=np.float32) ** ratio)
        total = y.sum()
        if shape == "decreased":
            y = torch.flip(y, dims=[0])
        weights = y / total
    elif shape == "average":
        weights = torch.full([timesteps], 1 / timesteps, dtype=torch.float32)
    elif shape == "normal":
        x = np.linspace(-3, 3, timesteps, dtype=np.float32)
        y = torch.from_numpy(np.e ** (-(x**2) / 2) / np.sqrt(2 * np.pi))
        weights = y / y.sum()
    else:
        raise ValueError(f"unknown coefficient shape '{shape}' (increased, decreased, average, normal)")
    return weights * sum_scale


def power_schedule(
    timesteps: int = 1000,
    sum_scale: float = 1.0,
    alpha: Mapping[str, Any] | None = None,
    beta2: Mapping[str, Any] | None = None,
) -> Schedule:
    """The float32 `gen_coefficients` schedules of the generation/ablation experiments (exps 0 and 3-6)."""
    a = {"shape": "decreased", "ratio": 1, **(alpha or {})}
    b = {"shape": "increased", "ratio": 1, **(beta2 or {})}
    alphas = power_coefficients(timesteps, a["shape"], a["ratio"])
    betas2 = power_coefficients(timesteps, b["shape"], b["ratio"], sum_scale)
    return _finish(alphas, alphas.cumsum(dim=0).clip(0, 1), betas2, betas2.cumsum(dim=0).clip(0, 1))


def make_schedule(spec: Mapping[str, Any] | None, timesteps: int = 1000, sum_scale: float = 1.0) -> Schedule:
    """A schedule from a registry table: {type = "linear" | "ddpm" | "power", ...options}."""
    spec = dict(spec or {})
    kind = spec.pop("type", "linear")
    if kind == "linear":
        return linear_schedule(timesteps, sum_scale)
    if kind == "ddpm":
        return ddpm_schedule(timesteps, **spec)
    if kind == "power":
        return power_schedule(timesteps, sum_scale, spec.get("alpha"), spec.get("beta2"))
    raise ValueError(f"unknown RDDM schedule type '{kind}' ({', '.join(SCHEDULE_TYPES)})")


def time_pairs(steps: int, timesteps: int = 1000) -> list[tuple[int, int]]:
    """The official few-step grid: reversed(int(linspace(-1, T-1, S+1))), truncated toward zero, as (t, next) pairs.

    S = 5 gives (999, 799), ..., (199, -1); the pair with next = -1 returns the clean estimate.
    """
    grid = list(reversed(torch.linspace(-1, timesteps - 1, steps=steps + 1).int().tolist()))
    return list(zip(grid[:-1], grid[1:]))


# ---- forward process and training targets -------------------------------------------------


def q_sample(x0: Tensor, res: Tensor, t: Tensor, noise: Tensor, schedule: Schedule) -> Tensor:
    """x_t = x_0 + abar_t * res + bbar_t * noise, per-sample t (B,)."""
    return x0 + schedule.at("alphas_cumsum", t, x0.dim()) * res + schedule.at("betas_cumsum", t, x0.dim()) * noise


def loss_targets(objective: str, x0: Tensor, x_in: Tensor | float, noise: Tensor) -> list[Tensor]:
    """What each network output is trained towards, in output order (official `p_losses`)."""
    res = x_in - x0
    targets = {
        "pred_res_noise": lambda: [res, noise],
        "pred_res_add_noise": lambda: [res, res + noise],
        "pred_x0_noise": lambda: [x0, noise],
        "pred_x0_add_noise": lambda: [x0, x0 + noise],
        "pred_noise": lambda: [noise],
        "pred_res": lambda: [res],
    }
    if objective not in targets:
        raise ValueError(f"unknown RDDM objective '{objective}'")
    return targets[objective]()


# ---- one network evaluation -> residual, noise and clean estimates -------------------------


@dataclass
class Prediction:
    res: Tensor
    eps: Tensor
    x0: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)  # raw outputs and time inputs, for tracing


def _clip(x: Tensor) -> Tensor:
    return torch.clamp(x, min=-1.0, max=1.0)


def interpret(
    objective: str,
    out0: Tensor | None,
    out1: Tensor | None,
    x_t: Tensor,
    x_in: Tensor | float,
    abar: Tensor,
    bbar: Tensor,
    one_minus_abar: Tensor,
    test_res_or_noise: str = "res_noise",
) -> tuple[Tensor, Tensor, Tensor]:
    """(res, eps, x0) from the raw outputs, as the official `model_predictions` (clip_denoised=True).

    abar, bbar, one_minus_abar are (B, 1, 1, 1). For `pred_res_noise`,
    test_res_or_noise = "res" uses only the residual network (noise derived,
    x0 = I_in - res) and "noise" only the noise network (x0 from I_in and eps).
    """

    def from_res(res: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        res = _clip(res)
        eps = (x_t - x_in - (abar - 1) * res) / bbar
        return res, eps, _clip(x_in - res)

    def from_noise(eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x0 = _clip((x_t - abar * x_in - bbar * eps) / one_minus_abar)
        return _clip(x_in - x0), eps, x0

    def from_res_noise(res: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        res = _clip(res)
        return res, eps, _clip(x_t - abar * res - bbar * eps)

    if objective == "pred_res_noise":
        if test_res_or_noise == "res":
            return from_res(out0)  # type: ignore[arg-type]
        if test_res_or_noise == "noise":
            return from_noise(out1)  # type: ignore[arg-type]
        return from_res_noise(out0, out1)  # type: ignore[arg-type]
    if objective == "pred_res_add_noise":
        return from_res_noise(out0, out1 - out0)  # type: ignore[operator, arg-type]
    if objective == "pred_x0_noise":
        return _clip(x_in - out0), out1, _clip(out0)  # type: ignore[operator, arg-type]
    if objective == "pred_x0_add_noise":
        return _clip(x_in - out0), out1 - out0, _clip(out0)  # type: ignore[operator, arg-type]
    if objective == "pred_noise":
        return from_noise(out0)  # type: ignore[arg-type]
    if objective == "pred_res":
        return from_res(out0)  # type: ignore[arg-type]
    raise ValueError(f"unknown RDDM objective '{objective}'")


# ---- dual output (DDO's gate on residual diffusion) ----------------------------------------


def gated_x0(x_t: Tensor, x_in: Tensor, res: Tensor, eps: Tensor, logit: Tensor, abar: Tensor, bbar: Tensor) -> Tensor:
    """DDO-style mix of the two clean-image estimates of residual diffusion.

    The residual head gives x0_res = I_in - res; the noise head gives
    x0_eps = (x_t - abar*I_in - bbar*eps) / (1 - abar). RDDM's own estimate
    x_t - abar*res - bbar*eps equals abar*x0_res + (1-abar)*x0_eps, a fixed mix
    with weight abar. The gate replaces that weight with a learned per-pixel
    g = sigmoid(logit + logit(abar)): logit = 0 reproduces RDDM exactly, and
    writing (1-g)*x0_eps as (x_t - abar*I_in - bbar*eps) / (abar*e^logit + 1 - abar)
    avoids dividing by 1 - abar, which is 0 at the first sampling step.
    """
    e = torch.exp(logit.float().clamp(-15, 15))
    denom = abar * e + (1.0 - abar)
    g = abar * e / denom
    return g * (x_in - res) + (x_t - abar * x_in - bbar * eps) / denom


def gated_prediction(
    x_t: Tensor, x_in: Tensor | float, res: Tensor, eps: Tensor, logit: Tensor, abar: Tensor, bbar: Tensor
) -> tuple[Tensor, Tensor]:
    """(x0, eps) of a dual-output model (`restore train rddm --dual-output`): the gated clean estimate
    (clipped) and the noise estimate consistent with it, eps = (x_t - x0 - abar * res) / bbar (unclipped x0).

    With a zero logit this is RDDM's own update.
    """
    x0 = gated_x0(x_t, x_in, res, eps, logit, abar, bbar)
    return x0.clamp(-1, 1), (x_t - x0 - abar * res) / bbar


# ---- samplers -----------------------------------------------------------------------------

Predict = Callable[[Tensor, int], Prediction]
NoiseFn = Callable[[Tensor], Tensor]  # a standard-normal draw shaped like its argument
OnStep = Callable[[dict[str, Any]], None]


def ddim_sample(
    predict: Predict,
    x_T: Tensor,
    schedule: Schedule,
    steps: int,
    *,
    eta: float = 0.0,
    noise_fn: NoiseFn | None = None,
    loops: int = 1,
    on_step: OnStep | None = None,
) -> Tensor:
    """The official DDIM-style sampler, in [-1, 1].

    loops = 1: every step removes residual and noise together,
        x_s = x_t - (abar_t - abar_s) res - (bbar_t - sqrt(bbar_s^2 - sigma^2)) eps + sigma z.
    loops = 2: the released generation model's "partially path-independent"
        sampler: the whole grid once removing only the residual term, then
        again from t = T-1, starting at the first loop's clean estimate,
        removing only the noise term. Both networks run at every step.
    The last pair (t, -1) returns the clipped clean estimate. sigma^2 =
    eta * (bbar_t^2 - bbar_s^2) bbar_s^2 / bbar_t^2; eta = 0 draws nothing.
    """
    if loops not in (1, 2):
        raise ValueError(f"loops must be 1 or 2, not {loops}")
    if eta and noise_fn is None:
        raise ValueError("eta > 0 needs a noise source")
    pairs = time_pairs(steps, schedule.timesteps)
    abar, bbar2, bbar = schedule.abar, schedule.bbar2, schedule.bbar
    img = x_T
    for loop in range(1, loops + 1):
        terms = ("res", "eps") if loops == 1 else (("res",) if loop == 1 else ("eps",))
        for k, (t, t_next) in enumerate(pairs):
            pred = predict(img, t)
            if on_step is not None:
                on_step({"loop": loop, "step": k, "t": t, "state": img, "pred": pred})
            if t_next < 0:
                img = pred.x0
                continue
            alpha = abar[t] - abar[t_next]
            b2, b2_next = bbar2[t], bbar2[t_next]
            sigma2 = eta * ((b2 - b2_next) * b2_next / b2)
            eps_coef = bbar[t] - (b2_next - sigma2).sqrt()
            if "res" in terms:
                img = img - alpha * pred.res
            if "eps" in terms:
                img = img - eps_coef * pred.eps
            if eta:
                img = img + sigma2.sqrt() * noise_fn(img)  # type: ignore[misc]
    return img


def ancestral_sample(
    predict: Predict,
    x_T: Tensor,
    schedule: Schedule,
    noise_fn: NoiseFn,
    *,
    on_step: OnStep | None = None,
) -> Tensor:
    """The full-length posterior sampler the official code runs when steps == T (`p_sample_loop`), in [-1, 1].

    x_{t-1} = c1 x_t + c2 res + c3 x0 + exp(log_var / 2) z, with a fresh draw z at every t > 0.
    """
    img = x_T
    b = img.shape[0]
    for t in reversed(range(schedule.timesteps)):
        pred = predict(img, t)
        if on_step is not None:
            on_step({"loop": 1, "step": schedule.timesteps - 1 - t, "t": t, "state": img, "pred": pred})
        tt = torch.full((b,), t, dtype=torch.long, device=img.device)
        mean = (
            schedule.at("posterior_mean_coef1", tt, img.dim()) * img
            + schedule.at("posterior_mean_coef2", tt, img.dim()) * pred.res
            + schedule.at("posterior_mean_coef3", tt, img.dim()) * pred.x0
        )
        if t > 0:
            log_var = schedule.at("posterior_log_variance_clipped", tt, img.dim())
            img = mean + (0.5 * log_var).exp() * noise_fn(img)
        else:
            img = mean
    return img


def sample(
    predict: Predict,
    x_T: Tensor,
    schedule: Schedule,
    steps: int,
    *,
    eta: float = 0.0,
    noise_fn: NoiseFn | None = None,
    loops: int = 1,
    on_step: OnStep | None = None,
) -> Tensor:
    """What the official `sample()` runs for `steps`: the DDIM-style grid below T, the posterior chain at T."""
    if not 1 <= steps <= schedule.timesteps:
        raise ValueError(f"steps must be 1..{schedule.timesteps}, not {steps}")
    if steps == schedule.timesteps:
        if noise_fn is None:
            raise ValueError("the full-length sampler needs a noise source")
        return ancestral_sample(predict, x_T, schedule, noise_fn, on_step=on_step)
    return ddim_sample(predict, x_T, schedule, steps, eta=eta, noise_fn=noise_fn, loops=loops, on_step=on_step)
