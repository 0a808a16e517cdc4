"""A training run's settings (`TrainConfig`), and the model spec a run produces.

The spec is what the RDDM engine needs to run the trained networks: two UNets
(`pred_res_noise`: residual and noise) or one (`pred_res`), with the official
config keys (only non-official extensions such as narrower attention or a
pixel-unshuffle fold are written), the linear schedule's `sum_scale` and the
accepted steps. Bundles carry it in their metadata, so `--weights BUNDLE` runs
a model of any width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..engines.rddm.schedule import time_pairs
from ..errors import UsageError
from ..weights.registry import ComponentSpec, ModelSpec
from .configcheck import check_ranges


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved in checkpoints and bundle metadata."""

    name: str = "rddm-custom"
    task: str = "derain"
    objective: str = "pred_res_noise"  # two UNets (residual, noise) | "pred_res": one UNet | "direct" (lightnet)
    network: str = "unet"  # "unet": RDDM UNets | one-pass "lightnet" (nets/lightnet.py) or "rainnet" (nets/rainnet.py)
    width: int = 12  # lightnet, rainnet: full-resolution width (their coarser levels are 2, 3 and 4 times wider)
    global_width: int = 32  # lightnet: width of the global (exposure and colour) branch
    stages: int = 3  # rainnet: progressive stages sharing one set of weights
    blocks: int = 1  # rainnet: residual blocks per stage
    exposure_jitter: float = 0.0  # lightnet: inputs scaled by 2**U(-j, j) stops (the target unchanged)
    color_jitter: float = 0.0  # lightnet: inputs' channels scaled by 1 + U(-c, c) (the target unchanged)
    ssim_weight: float = 0.0  # weight of (1 - SSIM of luma) added to the pixel loss (lightnet)
    whole_image_context: bool = False  # lightnet: the global branch reads each pair's whole image, not the crop
    local_crop: int = 0  # lightnet: side of the part of each crop the local branch trains on (0: half the crop)
    # lightnet, with whole_image_context: weight of a term that scores the global mapping alone on each
    # pair's whole thumbnail, so exposure and colour learn from the whole photo and not from one crop
    global_weight: float = 0.0
    global_only: bool = False  # lightnet: train the global branch alone on whole thumbnails (a fast first stage)
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
    init: str | None = None  # bundle file or shipped model whose weights start the run (fine-tuning)

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise UsageError(f"unknown network '{self.network}'", "use unet (RDDM UNets), lightnet or rainnet")
        if self.network in DIRECT_KINDS:
            self.objective, self.steps, self.t_min, self.dual_output = "direct", 1, 0, False
        elif self.objective == "direct":
            raise UsageError("objective 'direct' is the one-pass networks'", "use --network lightnet or rainnet")
        if self.objective not in ("pred_res_noise", "pred_res", "direct"):
            raise UsageError(
                f"unknown objective '{self.objective}'", "use pred_res_noise (two UNets) or pred_res (one)"
            )
        if self.dual_output and self.objective != "pred_res_noise":
            raise UsageError("--dual-output needs two heads", "use --objective pred_res_noise")
        if self.loss not in ("l1", "l2"):
            raise UsageError(f"unknown loss '{self.loss}'", "use l1 or l2")
        if self.batch_size < 1 or self.iters < 1:
            raise UsageError("--batch-size and --iters must be at least 1")
        if not 0 <= self.t_min < self.timesteps:
            raise UsageError(f"--t-min must be 0..{self.timesteps - 1}")
        if not 1 <= self.steps <= self.max_steps():
            raise UsageError(
                f"--steps must be 1..{self.max_steps()}" + (f" with --t-min {self.t_min}" if self.t_min else "")
            )
        if not 4 <= self.width <= 256 or not 4 <= self.global_width <= 256:
            raise UsageError(
                f"--width {self.width} / --global-width {self.global_width} is out of range",
                "use 4..256 (the shipped model: 12 and 32)",
            )
        whole_photo = self.network == "lightnet" and self.whole_image_context
        if self.global_only and not whole_photo:
            raise UsageError(
                "--global-only trains a lightnet's global branch", "add --network lightnet --whole-image-context"
            )
        if self.global_weight and not whole_photo:
            raise UsageError(
                "--global-weight scores a lightnet's global branch on the whole photo",
                "add --network lightnet --whole-image-context",
            )
        for key in ("exposure_jitter", "color_jitter", "ssim_weight", "global_weight"):
            value = getattr(self, key)
            if not 0.0 <= value <= 4.0:
                raise UsageError(f"--{key.replace('_', '-')} {value} is out of range", "use 0..4")
        if self.dim % self.resnet_block_groups:
            raise UsageError(
                f"--dim {self.dim} must be a multiple of the group-norm groups ({self.resnet_block_groups})"
            )
        self.dim_mults = tuple(int(m) for m in self.dim_mults)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        check_ranges(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
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
        if self.network in DIRECT_KINDS:
            return ("net",)
        return ("unet0", "unet1") if self.objective == "pred_res_noise" else ("unet0",)


UNET_KIND = "rddm.unet"
# the one-pass networks (objective "direct") by --network name: their component kind
DIRECT_KINDS = {"lightnet": "rddm.lightnet", "rainnet": "rddm.rainnet"}
NETWORKS = ("unet", *DIRECT_KINDS)
# Official values of the restorecli-only UNet settings; a config records a key only when it differs.
OFFICIAL_UNET_EXTRAS = {"attn_heads": 4, "attn_dim_head": 32, "pixel_unshuffle": 1}
GATED_OUT_DIM = 4  # --dual-output: the noise UNet also outputs the gate (3 + 1 channels)


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
    for key, default in OFFICIAL_UNET_EXTRAS.items():
        if getattr(cfg, key) != default:
            conf[key] = getattr(cfg, key)
    return conf


def model_spec(cfg: TrainConfig, *, origin: str = "user-trained") -> ModelSpec:
    """The ModelSpec the engine needs to run what this config trains."""
    if cfg.network in DIRECT_KINDS:
        return _direct_spec(cfg, origin)
    comps = {}
    for name in cfg.components:
        out_dim = GATED_OUT_DIM if (cfg.dual_output and name == "unet1") else None
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


def direct_config(cfg: TrainConfig) -> dict[str, Any]:
    """Registry config of the one-pass network (only the settings its builder takes)."""
    if cfg.network == "rainnet":
        return {"width": cfg.width, "stages": cfg.stages, "blocks": cfg.blocks}
    return {"width": cfg.width, "global_width": cfg.global_width}


def _direct_spec(cfg: TrainConfig, origin: str) -> ModelSpec:
    config = direct_config(cfg)
    comp = ComponentSpec(name="net", kind=DIRECT_KINDS[cfg.network], config=config)
    return ModelSpec(
        name=cfg.name,
        method="rddm",
        task=cfg.task,
        scale=1,
        components={"net": comp},
        sampler={"objective": "direct", "condition": True, "steps": 1},
        trained_steps=1,
        default_steps=1,
        min_steps=1,
        max_steps=1,
        origin=origin,
        description=f"{cfg.task} model trained with 'restore train rddm --network {cfg.network}' ("
        + ", ".join(f"{k} {v}" for k, v in config.items())
        + ")",
    )


def dataset_label(folder: str) -> str:
    """A folder named by its last two path parts (e.g. `Rain100L-train/input`), never the machine's path."""
    parts = Path(folder).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(folder)


def public_training_record(cfg: TrainConfig) -> dict[str, Any]:
    """The training config as a bundle records it: data folders by dataset name, not by absolute path."""
    record = dict(asdict(cfg))
    record["clean"] = [dataset_label(c) for c in cfg.clean]
    record["pairs"] = [[dataset_label(d) for d in pair] for pair in cfg.pairs]
    record["init"] = Path(cfg.init).name if cfg.init else None  # a shipped model's name, or the bundle's file name
    return record
