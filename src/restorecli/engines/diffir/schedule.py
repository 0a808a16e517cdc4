"""The DiffIR prior chain's schedule: LDM's linear betas, the 12 DDPM buffers, and shorter respaced chains.

Computed in float64 as the official code does; the network stores them as
float32 buffers (`nets.diffir.ScheduleBuffers`), and the sampler multiplies
with the file's own float32 buffers when the chain is not respaced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import UsageError


def linear_betas(timesteps: int, linear_start: float, linear_end: float) -> np.ndarray:
    """LDM's 'linear' schedule: betas = linspace(sqrt(start), sqrt(end), T)^2, in float64 as the official code."""
    ramp = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64, device="cpu")
    return (ramp**2).numpy()


def schedule_arrays(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The 12 buffers of a chain with these betas (float64; v_posterior = 0), as DDPM.register_schedule.

    Used for the trained 4-step chain and for a respaced shorter one (whose
    betas come from the ratios of the kept timesteps' cumulative alphas).
    """
    betas = np.asarray(betas, dtype=np.float64)
    alphas = 1.0 - betas
    acp = np.cumprod(alphas, axis=0)
    acp_prev = np.append(1.0, acp[:-1])
    variance = betas * (1.0 - acp_prev) / (1.0 - acp)
    return {
        "betas": betas,
        "alphas_cumprod": acp,
        "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": np.sqrt(acp),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - acp),
        "log_one_minus_alphas_cumprod": np.log(1.0 - acp),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / acp),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / acp - 1),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": np.log(np.maximum(variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(acp_prev) / (1.0 - acp),
        "posterior_mean_coef2": (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp),
    }


def trained_schedule(config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The schedule the checkpoint was trained with, from its config (float64)."""
    return schedule_arrays(
        linear_betas(
            int(config.get("timesteps", 4)),
            float(config.get("linear_start", 0.1)),
            float(config.get("linear_end", 0.99)),
        )
    )


def respaced_schedule(config: dict[str, Any], keep: list[int]) -> dict[str, np.ndarray]:
    """A shorter chain on the kept timesteps (increasing): betas from ratios of their cumulative alphas."""
    acp = trained_schedule(config)["alphas_cumprod"][list(keep)]
    prev = np.append(1.0, acp[:-1])
    return schedule_arrays(1.0 - acp / prev)


def chain_timesteps(trained: int, steps: int) -> list[int]:
    """Kept timesteps (increasing) of a chain of `steps` out of `trained`: all of them, or evenly spread.

    One step keeps t = T-1 (the pure-noise start the network was trained on);
    more keep both ends, 0 and T-1, and round the points between.
    """
    if not 1 <= steps <= trained:
        raise UsageError(f"{steps} sampling steps requested; the model was trained with {trained}")
    if steps == trained:
        return list(range(trained))
    if steps == 1:
        return [trained - 1]
    return sorted({int(v) for v in np.round(np.linspace(0, trained - 1, steps))})
