"""Dynamic Dual-Output diffusion (DDO, Benny & Wolf, CVPR 2022): unconditional generation.

One network predicts both the clean image x0 and the noise eps, plus a per-pixel
gate logit. Each step turns the noise estimate into a second x0 estimate,
x0_eps = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps, and mixes the two in x0 space
with the gate: x0_mix = g * x0_head + (1 - g) * x0_eps, g = sigmoid(logit).
Early (noisy) steps trust the noise head, late steps the x0 head, which is what
keeps few-step sampling good.

Faithfulness details copied from the official code (yanivbenny/dual_diffusion):
- the base schedule is built in float64 and every table is stored as float32;
- fewer steps than trained respace the chain from the float32 base
  alphas_cumprod (new beta = 1 - abar_i / abar_prev_kept, then the whole chain is
  rebuilt in float64), and the network gets the original timestep numbers;
- the implicit (DDIM, eta 0) update takes its noise from the UNCLIPPED x0_mix and
  its x0 from the clipped one; the ancestral update uses the DDPM posterior mean
  of the clipped x0_mix and the 'fixedlarge' variance (beta_t, with
  log_var[0] = log(beta_1));
- random draws: x_T for the whole batch first; the ancestral sampler then draws
  one batch-shaped tensor per step, including the last step where it is
  multiplied by 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import UsageError, WeightsError
from ...weights.checkpoint import strip_prefix
from ...weights.registry import ComponentSpec
from ..base import Engine, StateDict, Trace
from ..common import randn
from .schedule import (
    DEFAULT_SCHEDULE,
    SAMPLERS,
    Chain,
    base_betas,
    build_chain,
    implicit_mean,
    mix_x0,
    posterior_mean,
    respace,
    respaced_timesteps,
)

UNET_KIND = "ddo.unet"
# A Lightning checkpoint's state_dict: online weights, their EMA copy, schedule buffers.
LIGHTNING_PREFIXES = ("model.", "ema.", "diffusion.")


# ---- checkpoints ---------------------------------------------------------------


def lightning_states(obj: Any) -> dict[str, StateDict]:
    """Split a DDO Lightning checkpoint into {'model': online, 'ema': EMA, 'diffusion': schedule buffers}.

    Only the prefixes present are returned (a plain network state dict comes back as 'plain').
    """
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(
            "checkpoint does not hold a DDO state dict of tensors",
            "pass the Lightning .ckpt written by the official train.py (or a bundle from 'restore convert')",
        )
    if not any(k.startswith(LIGHTNING_PREFIXES) for k in state):
        return {"plain": dict(state)}
    out: dict[str, StateDict] = {}
    for prefix in LIGHTNING_PREFIXES:
        part = {k: v for k, v in state.items() if k.startswith(prefix)}
        if part:
            out[prefix[:-1]] = strip_prefix(part, prefix)
    return out


# ---- engine --------------------------------------------------------------------


class DDOEngine(Engine):
    """Unconditional CIFAR-10-style generation with the dual-output sampler."""

    method = "ddo"
    tileable = False

    def prepare(self) -> None:
        """The UNet, the image shape it makes and the sampler settings."""
        unet = self._unet_component()
        self.unet: nn.Module = self.nets[unet]
        config = self.spec.components[unet].config
        self.image_shape = (
            int(config.get("in_channels", 3)),
            int(config.get("resolution", 32)),
            int(config.get("resolution", 32)),
        )
        sampler = self.spec.sampler
        self.base_chain = build_chain(base_betas(sampler.get("schedule", DEFAULT_SCHEDULE)))
        self.var_type = sampler.get("var_type", "fixedlarge")
        self.clip_denoised = bool(sampler.get("clip_denoised", True))
        self.trace: Trace | None = None  # observer of every step's intermediates (name, tensor); used by tests

    def _unet_component(self) -> str:
        names = [n for n, c in self.spec.components.items() if c.kind == UNET_KIND]
        if len(names) != 1:
            raise UsageError(f"model '{self.spec.name}' needs exactly one '{UNET_KIND}' component")
        return names[0]

    @classmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        if comp.kind != UNET_KIND:
            raise UsageError(f"the DDO engine cannot build component kind '{comp.kind}'", f"use '{UNET_KIND}'")
        from ...nets.ddo_unet import build_ddo_unet

        return build_ddo_unet(comp.config, device)

    @classmethod
    def canonicalize(cls, comp: ComponentSpec, obj: Any) -> StateDict:
        """Lightning checkpoint -> the EMA network (what the official sampler uses).

        `ema.*` is preferred; a file with only `model.*` gives the online weights;
        `diffusion.*` buffers are dropped (the schedule is rebuilt from the
        registry); a plain network state dict passes through.
        """
        parts = lightning_states(obj)
        for name in ("ema", "model", "plain"):
            if name in parts:
                return parts[name]
        raise WeightsError(
            "checkpoint holds only DDO schedule buffers (diffusion.*), no network weights",
            "pass the Lightning .ckpt written by the official train.py",
        )

    # ---- sampling ---------------------------------------------------------------
    def chain(self, steps: int, respacing: str | None = None) -> Chain:
        """The base chain for steps == T (official default); otherwise the respaced one."""
        trained = len(self.base_chain)
        mode = respacing or self.spec.sampler.get("respacing", "ddim")
        keep = respaced_timesteps(trained, steps, mode)
        if steps == trained:
            return self.base_chain
        return respace(self.base_chain, keep)

    def _predict(self, x: Tensor, timestep: int, batch_size: int) -> Tensor:
        """The network output for every image, `batch_size` at a time (0 = all), in float32."""
        chunk = batch_size if batch_size > 0 else x.shape[0]
        outs = []
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            t = torch.full((part.shape[0],), timestep, dtype=torch.int64, device=self.device)
            with torch.no_grad(), self.autocast():
                outs.append(self.unet(part, t).float())
        return torch.cat(outs)

    def sample(
        self,
        noise: Tensor,
        chain: Chain,
        *,
        sampler: str,
        generator: torch.Generator | None = None,
        batch_size: int = 0,
        trace: Trace | None = None,
    ) -> Tensor:
        """Run the chain from x_T = noise; returns the final state in [-1, 1]-ish (not clipped).

        Steps are the outer loop and network batches the inner one, so the
        ancestral draw of each step has the whole batch's shape, as officially.
        """
        if sampler not in SAMPLERS:
            raise UsageError(f"unknown DDO sampler '{sampler}'", f"use one of {', '.join(SAMPLERS)}")
        if sampler == "ancestral" and generator is None:
            raise ValueError("the ancestral sampler needs a generator")
        record = trace or (lambda name, value: None)
        chain = chain.to(self.device)
        log_var = chain.log_var(self.var_type) if sampler == "ancestral" else None
        x = noise.to(self.device, torch.float32)
        for i in reversed(range(len(chain))):
            record("state", x)
            out = self._predict(x, chain.timesteps[i], batch_size)
            parts = mix_x0(chain, i, x, out)
            unclipped = parts["x0_mix_unclipped"]
            x0 = unclipped.clamp(-1, 1) if self.clip_denoised else unclipped
            if sampler == "ddim":
                x = implicit_mean(chain, i, x, unclipped, x0)
                record("raw_out", out)
                record("x0_mix", x0)
                record("mean", x)
            else:
                mean = posterior_mean(chain, i, x0, x)
                z = randn(x.shape, generator, self.device)  # drawn at every step, as officially
                std = torch.exp(0.5 * log_var[i]) if i > 0 else torch.zeros((), device=self.device)
                x = mean + std * z
                record("raw_out", out)
                record("x0_mix", x0)
                record("mean", mean)
                record("noise", z)
                record("log_var", log_var[i])
        return x

    def generate(
        self,
        count: int,
        *,
        steps: int,
        generator: torch.Generator,
        batch_size: int = 0,
        sampler: str | None = None,
        respacing: str | None = None,
    ) -> Tensor:
        """`count` images (count, 3, 32, 32) in [0, 1] on the CPU.

        `sampler` ('ddim' | 'ancestral') and `respacing` ('ddim' | 'ddodm') override
        the registry's `sampler.type` / `sampler.respacing`. x_T for all `count`
        images is one draw, as the official batch; `batch_size` only bounds the
        network batch and never changes the result.
        """
        if count < 1:
            raise UsageError("nothing to generate", "pass -n 1 or more")
        chain = self.chain(steps, respacing)
        noise = randn((count, *self.image_shape), generator, torch.device("cpu"))
        kind = sampler or self.spec.sampler.get("type", "ddim")
        x = self.sample(noise, chain, sampler=kind, generator=generator, batch_size=batch_size, trace=self.trace)
        # compute_fid: clip to [-1, 1]; the [0, 1] image is (x + 1) / 2
        return x.clamp(-1, 1).add(1).div(2).float().cpu()

    def check_can_restore(self) -> None:
        raise UsageError(
            f"model '{self.spec.name}' is a generation model and restores no images",
            f"use 'restore generate --model {self.spec.name} OUT/'",
        )
