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

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engines import engine_class
from ..engines.rddm.schedule import linear_schedule
from ..errors import TrainingDiverged, UsageError
from ..io import jsontext as strict_json
from ..io.files import atomic_target
from ..weights.registry import ModelSpec
from .averaging import EMA, save_bundle
from .config import TrainConfig, model_spec
from .objective import training_loss
from .resume import bad_checkpoint, load_nets, number, read_resume, restore_rngs
from .validate import build_data, describe_scores, input_scores, is_identity, validate
from .warmstart import load_init_weights


def build_nets(spec: ModelSpec, device: torch.device) -> dict[str, nn.Module]:
    engine = engine_class("rddm")
    return {name: engine.build_component(comp, device="cpu").to(device) for name, comp in spec.components.items()}


# ---- the loop -----------------------------------------------------------------------


def cosine_lr(cfg: TrainConfig, i: int, elapsed: float) -> float:
    """The learning rate at iteration `i`: cosine decay from cfg.lr to cfg.lr_min over the run.

    With a time limit it follows whichever of iterations or time is further along, so a run
    cut by the clock still ends at lr_min.
    """
    progress = min(i, cfg.iters) / cfg.iters
    if cfg.time_limit > 0:
        progress = max(progress, min(1.0, elapsed / cfg.time_limit))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))


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


def finite_weights(nets: dict[str, nn.Module]) -> bool:
    """Whether every floating-point parameter and buffer is finite (one device sync)."""
    flags = [t.isfinite().all() for net in nets.values() for t in net.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def diverged(cfg: TrainConfig, out_dir: Path, step: int, saved_step: int | None) -> TrainingDiverged:
    """The one-line error of a run whose weights stopped being finite (nothing non-finite is ever saved)."""
    kept = (
        f"the last finite checkpoint (step {saved_step}) is kept in {out_dir / 'last.pt'}"
        if saved_step is not None
        else "nothing was saved"
    )
    return TrainingDiverged(
        f"training stopped at step {step}: the weights are no longer finite (NaN or Inf); {kept}",
        f"lower --lr (it is {cfg.lr:g}) and start again, or resume with a lower --lr",
    )


@dataclass
class TrainResult:
    bundle: Path
    best: Path | None
    step: int
    metrics: dict[str, float]
    baseline: dict[str, float]
    seconds: float


@dataclass
class _Run:
    """What a training run changes as it goes: networks, optimiser, EMA, generators, step, scores."""

    cfg: TrainConfig
    out_dir: Path
    device: torch.device
    nets: dict[str, nn.Module]
    params: list[nn.Parameter]
    param_names: list[str]
    opt: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    ema: EMA
    sched: Any
    rng: np.random.Generator
    gen: torch.Generator
    step: int = 0
    best_psnr: float = -math.inf
    elapsed_before: float = 0.0  # training seconds of earlier runs of this folder (--resume): --time-limit counts them
    saved_step: int | None = None  # the step of the last checkpoint on disk
    start: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def seconds(self) -> float:
        return time.monotonic() - self.start


def _new_run(cfg: TrainConfig, out_dir: Path, device: torch.device, nets: dict[str, nn.Module]) -> _Run:
    """The optimiser, scaler, EMA, schedule and generators of a fresh run around `nets`."""
    for net in nets.values():
        net.train()
    params = [p for net in nets.values() for p in net.parameters()]
    amp_dtype = pick_amp(cfg, device)
    return _Run(
        cfg=cfg,
        out_dir=out_dir,
        device=device,
        nets=nets,
        params=params,
        param_names=[f"{n}.{k}" for n, net in nets.items() for k, _ in net.named_parameters()],
        opt=torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas),
        amp_dtype=amp_dtype,
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        ema=EMA(nets, cfg.ema_decay),
        sched=linear_schedule(cfg.timesteps, cfg.sum_scale).to(device),
        rng=np.random.default_rng(cfg.seed),
        gen=torch.Generator().manual_seed(cfg.seed),
    )


def _resume(run: _Run, resume: Path, spec: ModelSpec) -> None:
    """Load `last.pt` into `run`: it continues bit for bit; a damaged or foreign checkpoint is refused."""
    ckpt = read_resume(resume)
    try:
        saved = TrainConfig.from_dict(ckpt["config"])
    except (UsageError, TypeError, ValueError, AttributeError) as exc:
        raise bad_checkpoint(resume, f"its training settings are damaged ({exc})") from None
    if {k: c.config for k, c in model_spec(saved).components.items()} != {
        k: c.config for k, c in spec.components.items()
    }:
        raise UsageError(f"{resume} was trained with a different network", "resume with the same options")
    load_nets(resume, run.nets, ckpt["nets"], "networks")
    ema_state = ckpt["ema"]
    if not isinstance(ema_state, dict):
        raise bad_checkpoint(resume, "its EMA weights are damaged")
    load_nets(resume, run.ema.nets, ema_state.get("nets"), "EMA weights")
    run.ema.updates = number(resume, ema_state, "updates", 0, whole=True)
    try:
        run.opt.load_state_dict(_reorder_opt_state(ckpt["opt"], ckpt.get("param_names"), run.param_names))
        if ckpt.get("scaler"):
            run.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise bad_checkpoint(resume, f"its optimiser state is damaged ({type(exc).__name__})") from None
    run.step = run.saved_step = number(resume, ckpt, "step", 0, whole=True)
    run.best_psnr = number(resume, ckpt, "best_psnr", -math.inf)
    restore_rngs(resume, ckpt, run.rng, run.gen)
    run.elapsed_before = number(resume, ckpt, "elapsed", 0.0)


def _say_what_trains(run: _Run, val_pairs: list[Any], baseline: dict[str, float], log: Callable[[str], None]) -> None:
    cfg = run.cfg
    n_identity = sum(is_identity(p) for p in val_pairs)
    if baseline:
        log(
            f"held-out inputs: PSNR-Y {baseline['psnr_y']:.2f} dB, SSIM-Y {baseline['ssim_y']:.4f} "
            f"({len(val_pairs) - n_identity} pairs)"
        )
    if n_identity:
        log(f"held-out identity pairs (output scored against the unchanged input): {n_identity}")
    n_params = sum(p.numel() for p in run.params)
    log(
        f"training {cfg.objective}{' + gate' if cfg.dual_output else ''}: {_networks_label(cfg, len(run.nets))}, "
        f"{n_params / 1e6:.2f} M parameters, {cfg.iters} iteration{'s' if cfg.iters != 1 else ''}, "
        f"batch {cfg.batch_size}, crop {cfg.crop}"
    )


def _networks_label(cfg: TrainConfig, count: int) -> str:
    if cfg.global_only:
        return f"the {cfg.network}'s global branch alone (held-out scores are of its mapping alone)"
    if cfg.network != "unet":
        return f"the {cfg.network}"
    return f"{count} UNet{'s' if count != 1 else ''}"


def _optimise(run: _Run, crops: Any) -> None:
    """One optimiser step on a batch of crops, then the EMA; a non-finite loss or weight stops the run."""
    cfg = run.cfg
    for group in run.opt.param_groups:
        group["lr"] = cosine_lr(cfg, run.step, run.seconds())
    deg, clean = crops.batch(run.rng, cfg.batch_size)
    context = torch.from_numpy(crops.last_batch_context).to(run.device) if crops.context else None
    clean_context = torch.from_numpy(crops.last_batch_clean_context).to(run.device) if crops.context else None
    deg_t = torch.from_numpy(deg).to(run.device)
    clean_t = torch.from_numpy(clean).to(run.device)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        loss, parts = training_loss(run.nets, cfg, run.sched, deg_t, clean_t, run.gen, context, clean_context)
    if run.amp_dtype != torch.float16 and not bool(torch.isfinite(loss.detach())):  # fp16's scaler skips such steps
        raise diverged(cfg, run.out_dir, run.step + 1, run.saved_step)
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.opt)
        torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    if not finite_weights(run.nets):  # before the EMA takes them in and before anything is saved
        raise diverged(cfg, run.out_dir, run.step + 1, run.saved_step)
    run.ema.update(run.nets)
    run.step += 1
    for k, v in parts.items():
        run.running[k] = run.running[k] * 0.98 + v * 0.02 if k in run.running else v


def _checkpoint(run: _Run) -> None:
    """last.pt: everything a resume needs, written atomically."""
    data = {
        "step": run.step,
        "config": asdict(run.cfg),
        "best_psnr": run.best_psnr,
        "nets": {k: v.state_dict() for k, v in run.nets.items()},
        "ema": run.ema.state(),
        "opt": run.opt.state_dict(),
        "param_names": run.param_names,
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
        "rng_numpy": json.dumps(run.rng.bit_generator.state),
        "rng_torch": run.gen.get_state(),
        "elapsed": run.seconds(),
    }
    with atomic_target(run.out_dir / "last.pt") as tmp:
        torch.save(data, tmp)
    run.saved_step = run.step


def _save_ema(run: _Run, name: str, baseline: dict[str, float], half: bool) -> None:
    """The EMA weights as a bundle, with the latest held-out scores."""
    held_out = {"step": run.step, "held_out": run.metrics, "held_out_input": baseline}
    save_bundle(run.out_dir / name, run.cfg, run.ema.nets, half=half, metrics=held_out)


def _validate(run: _Run, val_pairs: list[Any], log: Callable[[str], None]) -> bool:
    """Score the EMA weights on the held-out pairs, append to log.jsonl; True for a new best."""
    for net in run.ema.nets.values():
        net.eval()
    run.metrics = validate(run.ema.nets, run.cfg, run.sched, val_pairs, run.device)
    record = {"step": run.step, "seconds": round(run.seconds(), 1), "loss": dict(run.running), **run.metrics}
    run.history.append(record)
    with open(run.out_dir / "log.jsonl", "a") as fh:
        fh.write(strict_json.dumps(record) + "\n")
    if run.metrics:
        log(f"step {run.step}: {describe_scores(run.metrics)}")
    if run.metrics.get("psnr_y", -math.inf) > run.best_psnr:
        run.best_psnr = run.metrics["psnr_y"]
        return True
    return False


def _score_start(run: _Run, val_pairs: list[Any], log: Callable[[str], None]) -> dict[str, float]:
    """The starting model's held-out scores, logged as step 0 (log line and log.jsonl).

    A fine-tune is judged against the model it started from, not only against its inputs:
    one that makes the model worse shows it here and in the warning at the end."""
    for net in run.ema.nets.values():
        net.eval()
    initial = validate(run.ema.nets, run.cfg, run.sched, val_pairs, run.device)
    with open(run.out_dir / "log.jsonl", "a") as fh:
        fh.write(strict_json.dumps({"step": 0, "seconds": 0.0, "start": run.cfg.init, **initial}) + "\n")
    if initial:
        log(f"step 0 (the starting model): {describe_scores(initial)}")
    return initial


def _warn_if_worse(initial: dict[str, float], final: dict[str, float], log: Callable[[str], None]) -> None:
    if initial.get("psnr_y") is not None and final.get("psnr_y", math.inf) < initial["psnr_y"]:
        log(
            f"warning: held-out PSNR-Y fell from {initial['psnr_y']:.2f} dB (the starting model) to "
            f"{final['psnr_y']:.2f} dB; a lower --lr or more data may help"
        )


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
    crops, val_pairs = build_data(cfg)  # numpy only: the networks' torch-seeded init is unchanged
    run = _new_run(cfg, out_dir, device, nets)
    if resume is not None:
        _resume(run, resume, spec)
        log(f"resumed from {resume} at step {run.step}")
    baseline = input_scores(val_pairs)
    _say_what_trains(run, val_pairs, baseline, log)
    run.start = time.monotonic() - run.elapsed_before  # a resumed run continues the clock of the interrupted one
    initial = _score_start(run, val_pairs, log) if cfg.init and resume is None and val_pairs else {}
    last_log = run.start
    while run.step < cfg.iters:
        _optimise(run, crops)
        out_of_time = cfg.time_limit > 0 and run.seconds() >= cfg.time_limit
        paused = stop_after is not None and run.step >= stop_after  # a deliberate break (resume later)
        done = run.step >= cfg.iters or out_of_time or paused
        if time.monotonic() - last_log > 30 or done:
            last_log = time.monotonic()
            losses = " ".join(f"{k} {v:.4f}" for k, v in run.running.items())
            log(
                f"step {run.step}/{cfg.iters}  loss {losses}  lr {cosine_lr(cfg, run.step, run.seconds()):.2e}  {run.seconds():.0f}s"
            )
        if ((cfg.val_every and run.step % cfg.val_every == 0) or done) and _validate(run, val_pairs, log):
            _save_ema(run, "best.safetensors", baseline, half)
        if (cfg.save_every and run.step % cfg.save_every == 0) or done:
            _checkpoint(run)
            _save_ema(run, "last.safetensors", baseline, half)
        if paused:
            break
        if out_of_time:
            log(
                f"time limit of {cfg.time_limit:.0f}s reached at step {run.step}; resume with --resume {out_dir / 'last.pt'}"
            )
            break
    _warn_if_worse(initial, run.metrics, log)
    best = out_dir / "best.safetensors"
    return TrainResult(
        out_dir / "last.safetensors", best if best.is_file() else None, run.step, run.metrics, baseline, run.seconds()
    )
