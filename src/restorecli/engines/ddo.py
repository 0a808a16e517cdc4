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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError, WeightsError
from ..registry import ComponentSpec
from ..weights import strip_prefix
from .base import Engine, StateDict, randn

UNET_KIND = "ddo.unet"
SAMPLERS = ("ddim", "ancestral")
RESPACINGS = ("ddim", "ddodm")
VAR_TYPES = ("fixedlarge", "fixedsmall")
DEFAULT_SCHEDULE = {"type": "linear", "beta_start": 1e-4, "beta_end": 2e-2, "n_timestep": 1000}
# A Lightning checkpoint's state_dict: online weights, their EMA copy, schedule buffers.
LIGHTNING_PREFIXES = ("model.", "ema.", "diffusion.")

Trace = Callable[[str, Tensor], None]


# ---- schedule ------------------------------------------------------------------

def base_betas(schedule: Mapping[str, Any]) -> Tensor:
    """The training betas in float64 for the official schedule types (linear, quad, const, cosine)."""
    kind = schedule.get("type", "linear")
    n = int(schedule.get("n_timestep", 1000))
    start, end = float(schedule.get("beta_start", 1e-4)), float(schedule.get("beta_end", 2e-2))
    if kind == "linear":
        return torch.linspace(start, end, n, dtype=torch.float64)
    if kind == "quad":
        return torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
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
        _at(chain.posterior_mean_coef1, index, x_t.ndim) * x0
        + _at(chain.posterior_mean_coef2, index, x_t.ndim) * x_t
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unet = self._unet_component()
        self.unet: nn.Module = self.nets[unet]
        config = self.spec.components[unet].config
        self.image_shape = (int(config.get("in_channels", 3)), int(config.get("resolution", 32)),
                            int(config.get("resolution", 32)))
        sampler = self.spec.sampler
        self.base_chain = build_chain(base_betas(sampler.get("schedule", DEFAULT_SCHEDULE)))
        self.var_type = sampler.get("var_type", "fixedlarge")
        self.clip_denoised = bool(sampler.get("clip_denoised", True))

    def _unet_component(self) -> str:
        names = [n for n, c in self.spec.components.items() if c.kind == UNET_KIND]
        if len(names) != 1:
            raise UsageError(f"model '{self.spec.name}' needs exactly one '{UNET_KIND}' component")
        return names[0]

    @classmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        if comp.kind != UNET_KIND:
            raise UsageError(f"the DDO engine cannot build component kind '{comp.kind}'", f"use '{UNET_KIND}'")
        from ..nets.ddo_unet import build_ddo_unet

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
            part = x[start:start + chunk]
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
        x = self.sample(noise, chain, sampler=kind, generator=generator, batch_size=batch_size)
        # compute_fid: clip to [-1, 1]; the [0, 1] image is (x + 1) / 2
        return x.clamp(-1, 1).add(1).div(2).float().cpu()

    def restore(
        self, images: Tensor, *, steps: int, generators: list[torch.Generator], masks: Tensor | None = None
    ) -> Tensor:
        raise UsageError(
            f"model '{self.spec.name}' is a generation model and restores no images",
            f"use 'restore generate --model {self.spec.name} OUT/'",
        )
