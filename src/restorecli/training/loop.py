"""`restore train rddm`: the training loop, with EMA weights, checkpoints and exact resume.

This trains the exact networks the RDDM engine runs (built through the
engine, official key names), keeps an EMA copy, validates on held-out pairs
with the engine's own sampler (`validate`), and writes safetensors bundles
whose metadata carries the whole model spec (`config.model_spec`), so
`--weights` runs them directly. `last.pt` holds everything a resume needs
(networks, EMA, optimiser, scaler, both random generators), and a resumed run
continues bit for bit.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engines import engine_class
from ..engines.rddm.schedule import linear_schedule
from ..errors import UsageError
from ..io import jsontext as strict_json
from ..io.files import atomic_target
from ..weights.bundle import spec_to_dict, write_bundle
from ..weights.registry import ModelSpec
from .config import TrainConfig, model_spec, public_training_record
from .objective import training_loss
from .validate import build_data, describe_scores, input_scores, is_identity, validate
from .warmstart import load_init_weights


def build_nets(spec: ModelSpec, device: torch.device) -> dict[str, nn.Module]:
    engine = engine_class("rddm")
    return {name: engine.build_component(comp, device="cpu").to(device) for name, comp in spec.components.items()}


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
        return {"decay": self.decay, "updates": self.updates, "nets": {k: v.state_dict() for k, v in self.nets.items()}}

    def load(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)


# ---- checkpoints ----------------------------------------------------------------------


def save_bundle(
    path: Path,
    cfg: TrainConfig,
    nets: dict[str, nn.Module],
    *,
    half: bool = False,
    metrics: dict[str, Any] | None = None,
    origin: str = "user-trained",
    extra: dict[str, Any] | None = None,
) -> Path:
    """A safetensors bundle the RDDM engine loads with --weights; its metadata carries the model spec."""
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


def _networks_label(cfg: TrainConfig, count: int) -> str:
    if cfg.network != "unet":
        return f"the {cfg.network}"
    return f"{count} UNet{'s' if count != 1 else ''}"


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
    spec = model_spec(cfg)
    nets = build_nets(spec, device)
    if cfg.init and resume is None:  # a resumed run's checkpoint already holds the weights
        # before the data loads, so a bundle that does not fit is refused at once
        log(f"starting from the weights of {load_init_weights(cfg.init, spec, nets)}")
    sampler, val_pairs = build_data(cfg)  # numpy only: the networks' torch-seeded init is unchanged
    for net in nets.values():
        net.train()
    params = [p for net in nets.values() for p in net.parameters()]
    param_names = [f"{n}.{k}" for n, net in nets.items() for k, _ in net.named_parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas)
    amp_dtype = pick_amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ema = EMA(nets, cfg.ema_decay)
    sched = linear_schedule(cfg.timesteps, cfg.sum_scale).to(device)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, best_psnr = 0, -math.inf
    elapsed_before = 0.0  # training seconds of earlier runs of this folder (--resume): --time-limit counts them
    history: list[dict[str, Any]] = []
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(ckpt["config"])
        if {k: c.config for k, c in model_spec(saved).components.items()} != {
            k: c.config for k, c in spec.components.items()
        }:
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
    n_identity = sum(is_identity(p) for p in val_pairs)
    if baseline:
        log(
            f"held-out inputs: PSNR-Y {baseline['psnr_y']:.2f} dB, SSIM-Y {baseline['ssim_y']:.4f} "
            f"({len(val_pairs) - n_identity} pairs)"
        )
    if n_identity:
        log(f"held-out identity pairs (output scored against the unchanged input): {n_identity}")
    n_params = sum(p.numel() for p in params)
    log(
        f"training {cfg.objective}{' + gate' if cfg.dual_output else ''}: {_networks_label(cfg, len(nets))}, "
        f"{n_params / 1e6:.2f} M parameters, {cfg.iters} iterations, batch {cfg.batch_size}, crop {cfg.crop}"
    )

    def lr_at(i: int) -> float:
        # Cosine decay over the run; with a time limit it follows whichever of
        # iterations or time is further along, so a run cut by the clock still ends at lr_min.
        progress = min(i, cfg.iters) / cfg.iters
        if cfg.time_limit > 0:
            progress = max(progress, min(1.0, (time.monotonic() - start) / cfg.time_limit))
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))

    def checkpoint() -> None:
        data = {
            "step": step,
            "config": asdict(cfg),
            "best_psnr": best_psnr,
            "nets": {k: v.state_dict() for k, v in nets.items()},
            "ema": ema.state(),
            "opt": opt.state_dict(),
            "param_names": param_names,
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "rng_numpy": json.dumps(rng.bit_generator.state),
            "rng_torch": gen.get_state(),
            "elapsed": time.monotonic() - start,
        }
        with atomic_target(out_dir / "last.pt") as tmp:
            torch.save(data, tmp)

    def save_ema(name: str) -> None:  # the EMA weights as a bundle, with the latest held-out scores
        held_out = {"step": step, "held_out": metrics, "held_out_input": baseline}
        save_bundle(out_dir / name, cfg, ema.nets, half=half, metrics=held_out)

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
            log(
                f"step {step}/{cfg.iters}  loss "
                + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f"  lr {lr_at(step):.2e}  {time.monotonic() - start:.0f}s"
            )
        if (cfg.val_every and step % cfg.val_every == 0) or done:
            for net in ema.nets.values():
                net.eval()
            metrics = validate(ema.nets, cfg, sched, val_pairs, device)
            record = {"step": step, "seconds": round(time.monotonic() - start, 1), "loss": dict(running), **metrics}
            history.append(record)
            with open(out_dir / "log.jsonl", "a") as fh:
                fh.write(strict_json.dumps(record) + "\n")
            if metrics:
                log(f"step {step}: {describe_scores(metrics)}")
            if metrics.get("psnr_y", -math.inf) > best_psnr:
                best_psnr = metrics["psnr_y"]
                save_ema("best.safetensors")
        if (cfg.save_every and step % cfg.save_every == 0) or done:
            checkpoint()
            save_ema("last.safetensors")
        if paused:
            break
        if out_of_time:
            log(
                f"time limit of {cfg.time_limit:.0f}s reached at step {step}; resume with --resume {out_dir / 'last.pt'}"
            )
            break
    best = out_dir / "best.safetensors"
    return TrainResult(
        out_dir / "last.safetensors",
        best if best.is_file() else None,
        step,
        metrics,
        baseline,
        time.monotonic() - start,
    )
