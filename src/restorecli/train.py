"""`restore train rddm`: train RDDM-style residual diffusion restoration models.

RDDM (Liu et al., CVPR 2024) writes the forward process as
    x_t = x_0 + abar_t * (I_in - x_0) + bbar_t * eps
with the residual I_in - x_0 and the noise diffused by separate schedules, and
trains one network for the residual and one for the noise (objective
`pred_res_noise`), or a single network for the residual with the noise derived
from it (`pred_res`). The loss is L1 (or L2) on both heads, any batch size
works, and the authors report that a generic UNet trained this way competes
with specialised restoration networks.

This module trains the exact networks the RDDM engine runs (built through the
engine, official key names), keeps an EMA copy, validates on held-out pairs
with the same few-step sampler the engine uses, and writes safetensors bundles
whose metadata carries the whole model spec, so `--weights` runs them directly.

The optional dual-output objective transplants DDO's gated mixing (Benny &
Wolf, CVPR 2022) onto residual diffusion; see `gated_x0`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bundlespec import spec_to_dict
from .errors import UsageError
from .registry import ComponentSpec, ModelSpec

# ---- configuration -------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved in checkpoints and bundle metadata."""

    name: str = "rddm-custom"
    task: str = "derain"
    objective: str = "pred_res_noise"  # two UNets (residual, noise) | "pred_res": one UNet
    dual_output: bool = False  # DDO-style gate mixing the two clean-image estimates
    dim: int = 16
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    resnet_block_groups: int = 8
    attn_heads: int = 4  # official RDDM: 4 heads of 32; narrower attention is much cheaper at full resolution
    attn_dim_head: int = 32
    pixel_unshuffle: int = 1  # >1: the UNet runs at 1/r resolution on r*r times the channels (restorecli extension)
    timesteps: int = 1000
    sum_scale: float = 1.0
    steps: int = 5  # sampling steps used for validation and recorded as the model's default
    t_min: int = 0  # train on t in [t_min, T) only: the times a sampler of at most max_steps() steps visits
    loss: str = "l1"
    lr: float = 2e-4
    lr_min: float = 2e-5  # cosine decay to this over `iters`
    adam_betas: tuple[float, float] = (0.9, 0.99)
    batch_size: int = 4
    iters: int = 10_000
    crop: int = 64
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    amp: str = "auto"  # auto = fp16 autocast on CUDA, off elsewhere | off | fp16 | bf16
    seed: int = 0
    degradation: str | None = "rain"
    degrade_params: dict[str, Any] = field(default_factory=dict)
    held_out: float = 0.1
    val_every: int = 500
    val_size: int = 128
    val_count: int = 8
    save_every: int = 500
    time_limit: float = 0.0  # seconds; 0 = none. Stops cleanly (and saves) when reached.
    clean: list[str] = field(default_factory=list)
    pairs: list[list[str]] = field(default_factory=list)
    pair_fraction: float = 0.0  # share of crops taken from --pairs when --clean is also given; 0 = by image count

    def __post_init__(self) -> None:
        if self.objective not in ("pred_res_noise", "pred_res"):
            raise UsageError(f"unknown objective '{self.objective}'", "use pred_res_noise (two UNets) or pred_res (one)")
        if self.dual_output and self.objective != "pred_res_noise":
            raise UsageError("--dual-output needs two heads", "use --objective pred_res_noise")
        if self.loss not in ("l1", "l2"):
            raise UsageError(f"unknown loss '{self.loss}'", "use l1 or l2")
        if self.batch_size < 1 or self.iters < 1:
            raise UsageError("--batch-size and --iters must be at least 1")
        if not 0 <= self.t_min < self.timesteps:
            raise UsageError(f"--t-min must be 0..{self.timesteps - 1}")
        if not 1 <= self.steps <= self.max_steps():
            raise UsageError(f"--steps must be 1..{self.max_steps()}" + (f" with --t-min {self.t_min}" if self.t_min else ""))
        if self.dim % self.resnet_block_groups:
            raise UsageError(f"--dim {self.dim} must be a multiple of the group-norm groups ({self.resnet_block_groups})")
        self.dim_mults = tuple(int(m) for m in self.dim_mults)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def max_steps(self) -> int:
        """Most sampling steps whose grid stays at t >= t_min (all of them when t_min = 0).

        The official grid for S steps visits t = int(k*T/S - 1) for k = S..1 and
        then returns the clean estimate, so t_min = 499 allows 1 and 2 steps.
        """
        if self.t_min == 0:
            return self.timesteps
        steps = 1
        while steps < self.timesteps and time_pairs(steps + 1, self.timesteps)[-1][0] >= self.t_min:
            steps += 1
        return steps

    @property
    def components(self) -> tuple[str, ...]:
        return ("unet0", "unet1") if self.objective == "pred_res_noise" else ("unet0",)


# ---- schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """RDDM exp-2 coefficients: abar (residual weight, 0 -> 1) and bbar (noise std, 0 -> sqrt(sum_scale)).

    alphas decrease linearly and betas^2 increase linearly, each summing to 1
    (times sum_scale for beta^2); computed in float64 and stored in float32,
    as the official buffers are, so training and the engine see the same values.
    """

    abar: Tensor  # [T] float32
    bbar: Tensor  # [T] float32

    @classmethod
    def make(cls, timesteps: int = 1000, sum_scale: float = 1.0) -> "Schedule":
        i = torch.arange(1, timesteps + 1, dtype=torch.float64)
        total = 0.5 * timesteps * (timesteps + 1)
        alphas = torch.flip(i, dims=[0]) / total
        betas2 = i / total * sum_scale
        abar = alphas.cumsum(0).clip(0, 1)
        bbar = betas2.cumsum(0).clip(0, 1).sqrt()
        return cls(abar.to(torch.float32), bbar.to(torch.float32))

    def at(self, t: Tensor, ndim: int = 4) -> tuple[Tensor, Tensor]:
        shape = (-1,) + (1,) * (ndim - 1)
        return self.abar[t].view(shape), self.bbar[t].view(shape)

    def to(self, device: torch.device) -> "Schedule":
        return Schedule(self.abar.to(device), self.bbar.to(device))


def time_pairs(steps: int, timesteps: int = 1000) -> list[tuple[int, int]]:
    """The official DDIM grid: reversed(int(linspace(-1, T-1, S+1))), truncated toward zero."""
    grid = torch.linspace(-1, timesteps - 1, steps=steps + 1).int().tolist()
    grid = list(reversed(grid))
    return list(zip(grid[:-1], grid[1:]))


# ---- networks ------------------------------------------------------------------------

UNET_KIND = "rddm.unet"


def unet_config(cfg: TrainConfig, out_dim: int | None = None) -> dict[str, Any]:
    """Registry config of one restoration UNet (6 input channels: state and degraded input)."""
    conf: dict[str, Any] = {
        "dim": cfg.dim,
        "dim_mults": list(cfg.dim_mults),
        "channels": 3,
        "resnet_block_groups": cfg.resnet_block_groups,
        "condition": True,
        "input_condition": False,
    }
    if out_dim is not None:
        conf["out_dim"] = out_dim
    # only non-official values are written, so default runs keep the official config keys
    for key, default in (("attn_heads", 4), ("attn_dim_head", 32), ("pixel_unshuffle", 1)):
        if getattr(cfg, key) != default:
            conf[key] = getattr(cfg, key)
    return conf


def model_spec(cfg: TrainConfig, *, origin: str = "user-trained") -> ModelSpec:
    """The ModelSpec the engine needs to run what this config trains."""
    comps = {}
    for name in cfg.components:
        out_dim = 4 if (cfg.dual_output and name == "unet1") else None
        comps[name] = ComponentSpec(name=name, kind=UNET_KIND, config=unet_config(cfg, out_dim))
    sampler = {
        "objective": cfg.objective,
        "timesteps": cfg.timesteps,
        "sum_scale": cfg.sum_scale,
        "condition": True,
        "time_input": "int",
        "steps": cfg.steps,
    }
    if cfg.dual_output:
        sampler["dual_output"] = True
    return ModelSpec(
        name=cfg.name,
        method="rddm",
        task=cfg.task,
        scale=1,
        components=comps,
        sampler=sampler,
        trained_steps=cfg.steps,
        default_steps=cfg.steps,
        min_steps=1,
        max_steps=cfg.max_steps(),
        origin=origin,
        description=f"RDDM {cfg.task} model trained with 'restore train rddm' ({cfg.objective}, dim {cfg.dim})",
    )


def build_nets(spec: ModelSpec, device: torch.device) -> dict[str, nn.Module]:
    from .engines import engine_class

    engine = engine_class("rddm")
    return {name: engine.build_component(comp, device="cpu").to(device) for name, comp in spec.components.items()}


# ---- the objective -------------------------------------------------------------------


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


@dataclass
class Heads:
    res: Tensor
    eps: Tensor
    logit: Tensor | None = None


def run_heads(nets: dict[str, nn.Module], cfg_objective: str, x_t: Tensor, x_in: Tensor, t: Tensor,
              abar: Tensor, bbar: Tensor) -> Heads:
    """Network outputs as (residual, noise[, gate logit]); for `pred_res` the noise is derived from the residual."""
    inp = torch.cat((x_t, x_in), dim=1)
    res = nets["unet0"](inp, t)
    if cfg_objective == "pred_res":
        eps = (x_t - x_in - (abar - 1.0) * res) / bbar
        return Heads(res, eps)
    out1 = nets["unet1"](inp, t)
    if out1.shape[1] == 4:
        return Heads(res, out1[:, :3], out1[:, 3:4])
    return Heads(res, out1)


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
    abar, bbar = sched.at(t)
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


# ---- sampling (validation) -----------------------------------------------------------


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
) -> Tensor:
    """The RDDM deterministic few-step sampler (eta 0), [0, 1] in and out.

    Same grid, clamps and update as the official exp-2 sampler; with a gate,
    the clean estimate is the gated mix and the noise estimate is made
    consistent with it (eps = (x_t - x0 - abar*res) / bbar), which equals the
    plain update when the gate logit is 0.
    """
    x_in = degraded * 2 - 1
    noise = torch.randn(x_in.shape, generator=generator).to(x_in.device)
    img = x_in + math.sqrt(sum_scale) * noise
    timesteps = sched.abar.shape[0]
    for t_now, t_next in time_pairs(steps, timesteps):
        t = torch.full((x_in.shape[0],), t_now, dtype=torch.long, device=x_in.device)
        a, b = sched.at(t)
        h = run_heads(nets, objective, img, x_in, t, a, b)
        res = h.res.float().clamp(-1, 1)
        eps = h.eps.float()
        if h.logit is not None and use_gate:
            x0 = gated_x0(img, x_in, res, eps, h.logit, a, b)
            eps = (img - x0 - a * res) / b
        else:
            x0 = img - a * res - b * eps
        if t_next < 0:
            img = x0.clamp(-1, 1)
            break
        a_next, b_next = sched.abar[t_next], sched.bbar[t_next]
        img = img - (a - a_next) * res - (b - b_next) * eps
    return ((img + 1) / 2).clamp(0, 1)


# ---- EMA ----------------------------------------------------------------------------


class EMA:
    """Exponential moving average of parameters (buffers copied), with the usual warm-up
    min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the random init."""

    def __init__(self, nets: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.nets = {k: copy.deepcopy(v).eval().requires_grad_(False) for k, v in nets.items()}

    @torch.no_grad()
    def update(self, nets: dict[str, nn.Module]) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, net in nets.items():
            ema_state = self.nets[name].state_dict()
            for key, value in net.state_dict().items():
                if value.dtype.is_floating_point:
                    ema_state[key].mul_(d).add_(value.detach(), alpha=1 - d)
                else:
                    ema_state[key].copy_(value)

    def state(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "nets": {k: v.state_dict() for k, v in self.nets.items()}}

    def load(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)


# ---- data ---------------------------------------------------------------------------


def build_data(cfg: TrainConfig):
    """Training sampler and held-out validation pairs from the config's --clean and --pairs sources."""
    from .datasets import CropSampler, collect_images, fixed_pairs, load_pairs, split_files, Pair
    from .evaluate import read_rgb8

    clean_imgs: list[np.ndarray] = []
    val_pairs: list[Pair] = []
    if cfg.clean:
        files = collect_images([Path(p) for p in cfg.clean])
        train_files, val_files = split_files(files, cfg.held_out)
        if not train_files:
            raise UsageError("every clean image was held out", "lower --held-out or add images")
        clean_imgs = [read_rgb8(f) for f in train_files]
        if val_files:
            val_pairs += fixed_pairs(val_files[: cfg.val_count], cfg.degradation or "rain", seed=cfg.seed + 1,
                                     size=cfg.val_size, degrade_params=cfg.degrade_params)
    pairs: list[Pair] = []
    for degraded_dir, clean_dir in cfg.pairs:
        loaded = load_pairs(Path(degraded_dir), Path(clean_dir))
        from .datasets import is_held_out

        pairs += [p for p in loaded if not is_held_out(p.name, cfg.held_out)]
        held = [p for p in loaded if is_held_out(p.name, cfg.held_out)]
        val_pairs += [_centre(p, cfg.val_size) for p in held[: cfg.val_count]]
    sampler = CropSampler(clean=clean_imgs, pairs=pairs, degradation=cfg.degradation if cfg.clean else None,
                          degrade_params=cfg.degrade_params, crop=cfg.crop, pair_fraction=cfg.pair_fraction)
    return sampler, val_pairs


def _centre(pair, size: int):
    from .datasets import Pair

    h, w = pair.clean.shape[:2]
    s_h, s_w = (min(size, h), min(size, w)) if size else (h, w)
    y, x = (h - s_h) // 2, (w - s_w) // 2
    s_h, s_w = s_h - s_h % 8, s_w - s_w % 8
    return Pair(pair.name, pair.degraded[y:y + s_h, x:x + s_w].copy(), pair.clean[y:y + s_h, x:x + s_w].copy())


def validate(nets: dict[str, nn.Module], cfg: TrainConfig, sched: Schedule, pairs, device: torch.device,
             steps: int | None = None, use_gate: bool = True) -> dict[str, float]:
    """Mean PSNR/SSIM (Y and RGB) of the sampler's output on the held-out pairs, seed fixed per image."""
    from .metrics import all_metrics, to_255

    if not pairs:
        return {}
    scores = []
    for k, pair in enumerate(pairs):
        deg = torch.from_numpy(pair.degraded.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
        gen = torch.Generator().manual_seed(cfg.seed + k)
        out = sample(nets, cfg.objective, sched, deg, steps=steps or cfg.steps, generator=gen,
                     sum_scale=cfg.sum_scale, use_gate=use_gate)
        restored = to_255(out[0].permute(1, 2, 0).cpu().numpy())
        scores.append(all_metrics(restored, pair.clean))
    return {m: float(np.mean([s[m] for s in scores])) for m in scores[0]}


def input_scores(pairs) -> dict[str, float]:
    """The same metrics for the degraded inputs themselves: the baseline a model must beat."""
    from .metrics import all_metrics

    if not pairs:
        return {}
    scores = [all_metrics(p.degraded, p.clean) for p in pairs]
    return {m: float(np.mean([s[m] for s in scores])) for m in scores[0]}


# ---- checkpoints ----------------------------------------------------------------------


def save_bundle(path: Path, cfg: TrainConfig, nets: dict[str, nn.Module], *, half: bool = False,
                metrics: dict[str, Any] | None = None, origin: str = "user-trained",
                extra: dict[str, Any] | None = None) -> Path:
    """A safetensors bundle the RDDM engine loads with --weights; its metadata carries the model spec."""
    from .weights import write_bundle

    spec = model_spec(cfg, origin=origin)
    states = {}
    for name, net in nets.items():
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        states[name] = state
    meta = {
        "spec": spec_to_dict(spec),
        "training": public_training_record(cfg),
        "metrics": metrics or {},
    }
    meta.update(extra or {})
    return write_bundle(Path(path), spec, states, extra_meta=meta)


def dataset_label(folder: str) -> str:
    """A folder named by its last two path parts (e.g. `Rain100L-train/input`), never the machine's path."""
    parts = Path(folder).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(folder)


def public_training_record(cfg: TrainConfig) -> dict[str, Any]:
    """The training config as a bundle records it: data folders by dataset name, not by absolute path."""
    record = dict(asdict(cfg))
    record["clean"] = [dataset_label(c) for c in cfg.clean]
    record["pairs"] = [[dataset_label(d) for d in pair] for pair in cfg.pairs]
    return record


# ---- the loop -----------------------------------------------------------------------


def pick_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp in ("auto", "fp16"):
        if device.type != "cuda":
            raise UsageError("--amp fp16 needs a CUDA device", "use --amp off or bf16 on the CPU")
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    raise UsageError(f"--amp {cfg.amp} is not understood", "use auto, off, fp16 or bf16")


def _reorder_opt_state(state: dict[str, Any], saved: list[str] | None, current: list[str]) -> dict[str, Any]:
    """Optimizer state indexed by the current parameter order.

    torch keys optimizer state by parameter position, so a network whose modules
    are registered in another order (same names) would get its moments swapped;
    checkpoints record the parameter names to map them back.
    """
    if not saved or saved == current:
        return state
    if sorted(saved) != sorted(current):
        raise UsageError("the checkpoint's parameters do not match the network", "resume with the same options")
    where = {name: i for i, name in enumerate(saved)}
    old = state["state"]
    new_state = {i: old[where[name]] for i, name in enumerate(current) if where[name] in old}
    groups = [dict(g, params=list(range(len(current)))) for g in state["param_groups"]]
    if len(groups) != 1:
        raise UsageError("cannot remap a checkpoint with several parameter groups")
    return {"state": new_state, "param_groups": groups}


@dataclass
class TrainResult:
    bundle: Path
    best: Path | None
    step: int
    metrics: dict[str, float]
    baseline: dict[str, float]
    seconds: float


def train(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    device: torch.device | str = "cpu",
    resume: Path | None = None,
    log: Callable[[str], None] = print,
    half: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Run (or resume) a training run in `out_dir`: last.pt (resumable), last.safetensors and
    best.safetensors (EMA weights, best validation PSNR), log.jsonl. `stop_after` ends the
    run early at that step with everything saved, as an interruption would."""
    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    sampler, val_pairs = build_data(cfg)
    spec = model_spec(cfg)
    nets = build_nets(spec, device)
    for net in nets.values():
        net.train()
    params = [p for net in nets.values() for p in net.parameters()]
    param_names = [f"{n}.{k}" for n, net in nets.items() for k, _ in net.named_parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas)
    amp_dtype = pick_amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ema = EMA(nets, cfg.ema_decay)
    sched = Schedule.make(cfg.timesteps, cfg.sum_scale).to(device)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, best_psnr = 0, -math.inf
    elapsed_before = 0.0  # training seconds of earlier runs of this folder (--resume): --time-limit counts them
    history: list[dict[str, Any]] = []
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(ckpt["config"])
        if {k: c.config for k, c in model_spec(saved).components.items()} != {k: c.config for k, c in spec.components.items()}:
            raise UsageError(f"{resume} was trained with a different network", "resume with the same options")
        for name, net in nets.items():
            net.load_state_dict(ckpt["nets"][name])
        ema.load(ckpt["ema"])
        opt.load_state_dict(_reorder_opt_state(ckpt["opt"], ckpt.get("param_names"), param_names))
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step = int(ckpt["step"])
        best_psnr = float(ckpt.get("best_psnr", -math.inf))
        rng.bit_generator.state = json.loads(ckpt["rng_numpy"])
        gen.set_state(ckpt["rng_torch"])
        elapsed_before = float(ckpt.get("elapsed", 0.0))
        log(f"resumed from {resume} at step {step}")
    baseline = input_scores(val_pairs)
    if baseline:
        log(f"held-out inputs: PSNR-Y {baseline['psnr_y']:.2f} dB, SSIM-Y {baseline['ssim_y']:.4f} ({len(val_pairs)} pairs)")
    n_params = sum(p.numel() for p in params)
    log(f"training {cfg.objective}{' + gate' if cfg.dual_output else ''}: {len(nets)} UNet(s), "
        f"{n_params / 1e6:.2f} M parameters, {cfg.iters} iterations, batch {cfg.batch_size}, crop {cfg.crop}")

    def lr_at(i: int) -> float:
        # Cosine decay over the run; with a time limit it follows whichever of
        # iterations or time is further along, so a run cut by the clock still ends at lr_min.
        progress = min(i, cfg.iters) / cfg.iters
        if cfg.time_limit > 0:
            progress = max(progress, min(1.0, (time.monotonic() - start) / cfg.time_limit))
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))

    def checkpoint() -> None:
        data = {
            "step": step, "config": asdict(cfg), "best_psnr": best_psnr,
            "nets": {k: v.state_dict() for k, v in nets.items()}, "ema": ema.state(),
            "opt": opt.state_dict(), "param_names": param_names, "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "rng_numpy": json.dumps(rng.bit_generator.state), "rng_torch": gen.get_state(),
            "elapsed": time.monotonic() - start,
        }
        tmp = out_dir / "last.pt.tmp"
        torch.save(data, tmp)
        tmp.replace(out_dir / "last.pt")

    start = time.monotonic() - elapsed_before  # a resumed run continues the clock of the interrupted one
    metrics: dict[str, float] = {}
    last_log = start
    running: dict[str, float] = {}
    while step < cfg.iters:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        deg, clean = sampler.batch(rng, cfg.batch_size)
        deg_t = torch.from_numpy(deg).to(device)
        clean_t = torch.from_numpy(clean).to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss, parts = training_loss(nets, cfg, sched, deg_t, clean_t, gen)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        ema.update(nets)
        step += 1
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) * 0.98 + v * 0.02 if k in running else v
        out_of_time = cfg.time_limit > 0 and time.monotonic() - start >= cfg.time_limit
        paused = stop_after is not None and step >= stop_after  # a deliberate break (resume later)
        done = step >= cfg.iters or out_of_time or paused
        if time.monotonic() - last_log > 30 or done:
            last_log = time.monotonic()
            log(f"step {step}/{cfg.iters}  loss " + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f"  lr {lr_at(step):.2e}  {time.monotonic() - start:.0f}s")
        if (cfg.val_every and step % cfg.val_every == 0) or done:
            for net in ema.nets.values():
                net.eval()
            metrics = validate(ema.nets, cfg, sched, val_pairs, device)
            record = {"step": step, "seconds": round(time.monotonic() - start, 1), "loss": dict(running), **metrics}
            history.append(record)
            with open(out_dir / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            if metrics:
                log(f"step {step}: held-out PSNR-Y {metrics['psnr_y']:.2f} dB  SSIM-Y {metrics['ssim_y']:.4f}  "
                    f"PSNR {metrics['psnr_rgb']:.2f} dB")
                if metrics["psnr_y"] > best_psnr:
                    best_psnr = metrics["psnr_y"]
                    save_bundle(out_dir / "best.safetensors", cfg, ema.nets, half=half,
                                metrics={"step": step, "held_out": metrics, "held_out_input": baseline})
        if (cfg.save_every and step % cfg.save_every == 0) or done:
            checkpoint()
            save_bundle(out_dir / "last.safetensors", cfg, ema.nets, half=half,
                        metrics={"step": step, "held_out": metrics, "held_out_input": baseline})
        if paused:
            break
        if out_of_time:
            log(f"time limit of {cfg.time_limit:.0f}s reached at step {step}; resume with --resume {out_dir / 'last.pt'}")
            break
    best = out_dir / "best.safetensors"
    return TrainResult(out_dir / "last.safetensors", best if best.is_file() else None, step, metrics, baseline,
                       time.monotonic() - start)
