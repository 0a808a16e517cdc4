"""The ResShift eta schedule (journal code's 'exponential'), its respacing, and the chain's coefficients.

Built in float64 as the official code builds it; every coefficient is cast to
float32 exactly where the official `_extract_into_tensor` casts it. Fewer
steps than trained keep the timesteps int(T/K * k) and rebuild the chain on
their etas (the official `space_timesteps`); the network still gets the
original timestep numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...errors import UsageError


def exponential_sqrt_etas(
    steps: int, min_noise_level: float, etas_end: float, kappa: float, power: float
) -> np.ndarray:
    """sqrt(eta_t) for t = 0..T-1 in float64, the journal code's 'exponential' schedule."""
    if steps < 2:
        raise ValueError("the exponential schedule needs at least 2 steps")
    start = min(min_noise_level / kappa, min_noise_level)
    increaser = math.exp(1 / (steps - 1) * math.log(etas_end / start))
    base = np.ones([steps]) * increaser
    exponent = np.linspace(0, 1, steps, endpoint=True) ** power
    exponent *= steps - 1
    return np.power(base, exponent) * start


def respaced_timesteps(trained: int, steps: int) -> list[int]:
    """The official `space_timesteps`: int(T/K * k) for k < K, in increasing order."""
    if not 1 <= steps <= trained:
        raise UsageError(f"{steps} sampling steps requested; the model was trained with {trained}")
    return sorted({int((trained / steps) * k) for k in range(steps)})


def _f32(value: float) -> Tensor:
    """A float64 schedule value as the float32 scalar the official code multiplies with."""
    return torch.tensor(float(value), dtype=torch.float64).float()


@dataclass(frozen=True, eq=False)
class Schedule:
    """One (possibly respaced) chain, in float64 as the official code builds it.

    The accessors return float32 scalars, cast from these arrays exactly where
    the official `_extract_into_tensor` casts them.
    """

    timesteps: tuple[int, ...]  # original timestep fed to the network, per chain index
    kappa: float
    sqrt_etas: np.ndarray
    etas: np.ndarray
    etas_prev: np.ndarray
    alpha: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray

    @property
    def length(self) -> int:
        return len(self.timesteps)

    def prior_scale(self) -> Tensor:
        """kappa * sqrt(eta) of the last kept timestep."""
        return _f32((self.kappa * self.sqrt_etas)[-1])

    def input_divisor(self, i: int) -> Tensor:
        """sqrt(kappa^2 * eta_i + 1), computed in float32 from float32(eta_i) as the official code."""
        return torch.sqrt(_f32(self.etas[i]) * self.kappa**2 + 1)

    def coef_xt(self, i: int) -> Tensor:
        return _f32(self.posterior_mean_coef1[i])

    def coef_x0(self, i: int) -> Tensor:
        return _f32(self.posterior_mean_coef2[i])

    def noise_std(self, i: int) -> Tensor:
        return torch.exp(0.5 * _f32(self.posterior_log_variance_clipped[i]))


def build_schedule(sqrt_etas_full: np.ndarray, kappa: float, keep: list[int]) -> Schedule:
    """The chain on the kept timesteps (all of them when not respaced)."""
    sqrt_etas = np.asarray([sqrt_etas_full[i] for i in keep], dtype=np.float64)
    etas = sqrt_etas**2
    etas_prev = np.append(0.0, etas[:-1])
    alpha = etas - etas_prev
    variance = kappa**2 * etas_prev / etas * alpha
    # The official code clips the t=0 log variance to the t=1 value; with one step
    # there is no t=1 (the official code fails there) and t=0 adds no noise anyway.
    clipped = np.append(variance[1], variance[1:]) if len(variance) > 1 else np.ones(1)
    return Schedule(
        timesteps=tuple(int(i) for i in keep),
        kappa=kappa,
        sqrt_etas=sqrt_etas,
        etas=etas,
        etas_prev=etas_prev,
        alpha=alpha,
        posterior_variance=variance,
        posterior_log_variance_clipped=np.log(clipped),
        posterior_mean_coef1=etas_prev / etas,
        posterior_mean_coef2=alpha / etas,
    )
