"""`restore train`: its options, and the TrainConfig they make.

Every option that sets a TrainConfig field defaults to None, and TrainConfig
fills in what was not given, so its defaults are written once (training/config.py).
`--help` shows them, read from TrainConfig when the help is printed (importing
it loads torch, which `restore` does only for commands that need it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import RestoreError, UsageError
from ..io.printable import plain
from .helptext import Command
from .options import Device, Quiet, err_console, parse_params

if TYPE_CHECKING:
    from ..training.config import TrainConfig

# the options that are TrainConfig fields of the same name
CONFIG_OPTIONS = (
    "name task objective dual_output dim dim_mults attn_heads attn_dim_head pixel_unshuffle pair_fraction loss lr "
    "batch_size iters crop steps sum_scale t_min ema_decay amp seed degradation held_out val_every val_size val_count "
    "save_every time_limit init network width global_width stages blocks exposure_jitter color_jitter ssim_weight local_crop "
    "whole_image_context global_weight global_only"
).split()

Method = Annotated[str, typer.Argument(help="Method to train; only rddm (residual diffusion) is supported.")]
Output = Annotated[
    Path, typer.Option("--output", "-o", help="Run folder: last.pt (resumable), last/best.safetensors, log.jsonl.")
]
Clean = Annotated[
    Optional[list[Path]], typer.Option("--clean", help="Folder of clean images, degraded on the fly (repeatable).")
]
Pairs = Annotated[
    Optional[list[str]], typer.Option("--pairs", help="DEGRADED_DIR,CLEAN_DIR of matching file names (repeatable).")
]
Degradation = Annotated[
    Optional[str], typer.Option("--degradation", help="Synthetic degradation for --clean (see 'restore degrade').")
]
Param = Annotated[
    Optional[list[str]], typer.Option("--param", "-P", help="Fix a degradation parameter, KEY=VALUE (repeatable).")
]
Task = Annotated[
    Optional[str], typer.Option("--task", help="Task command the model serves (derain, lowlight, deblur, ...).")
]
Name = Annotated[Optional[str], typer.Option("--name", help="Model name recorded in the bundle.")]
Objective = Annotated[
    Optional[str], typer.Option("--objective", help="pred_res_noise (two UNets) or pred_res (one UNet).")
]
DualOutput = Annotated[
    Optional[bool],
    typer.Option("--dual-output", help="Also learn a DDO-style gate mixing the two clean-image estimates."),
]
Dim = Annotated[Optional[int], typer.Option("--dim", min=8, help="UNet base width (the official models use 64).")]
DimMults = Annotated[Optional[str], typer.Option("--dim-mults", help="Width multipliers per level, comma-separated.")]
AttnHeads = Annotated[
    Optional[int], typer.Option("--attn-heads", min=1, help="Linear-attention heads per level (official: 4).")
]
AttnDimHead = Annotated[
    Optional[int], typer.Option("--attn-dim-head", min=1, help="Width of each attention head (official: 32).")
]
PixelUnshuffle = Annotated[
    Optional[int],
    typer.Option(
        "--pixel-unshuffle",
        min=1,
        help="Run the UNet at 1/r resolution on r*r times the channels (1 = official; 2 is ~4x faster).",
    ),
]
Network = Annotated[
    Optional[str],
    typer.Option(
        "--network",
        metavar="NET",
        help="unet (RDDM diffusion UNets), lightnet (one-pass low-light network: global exposure and colour, "
        "full-resolution local pass) or rainnet (one-pass deraining: shared-weight full-resolution stages that "
        "predict and subtract the rain layer).",
    ),
]
Width = Annotated[
    Optional[int], typer.Option("--width", min=4, max=256, help="lightnet, rainnet: full-resolution width.")
]
Stages = Annotated[
    Optional[int], typer.Option("--stages", min=1, max=12, help="rainnet: progressive stages (shared weights).")
]
Blocks = Annotated[Optional[int], typer.Option("--blocks", min=1, max=8, help="rainnet: residual blocks per stage.")]
GlobalWidth = Annotated[
    Optional[int], typer.Option("--global-width", min=4, max=256, help="lightnet: width of the exposure/colour branch.")
]
ExposureJitter = Annotated[
    Optional[float],
    typer.Option("--exposure-jitter", min=0.0, max=4.0, help="lightnet: scale inputs by up to +-N stops."),
]
ColorJitter = Annotated[
    Optional[float],
    typer.Option("--color-jitter", min=0.0, max=1.0, help="lightnet: scale input channels by up to 1 +- N."),
]
SsimWeight = Annotated[
    Optional[float], typer.Option("--ssim-weight", min=0.0, max=4.0, help="Add N x (1 - SSIM of luma) to the loss.")
]
LocalCrop = Annotated[
    Optional[int],
    typer.Option("--local-crop", min=0, help="lightnet: the part of each crop the local branch trains on (0: half)."),
]
WholeImageContext = Annotated[
    Optional[bool],
    typer.Option("--whole-image-context", help="lightnet: the exposure/colour branch reads each pair's whole image."),
]
GlobalWeight = Annotated[
    Optional[float],
    typer.Option(
        "--global-weight",
        min=0.0,
        max=4.0,
        help="lightnet, with --whole-image-context: also score the exposure/colour mapping on the whole photo.",
    ),
]
GlobalOnly = Annotated[
    Optional[bool],
    typer.Option(
        "--global-only",
        help="lightnet, with --whole-image-context: train only the exposure/colour branch (a fast first stage).",
    ),
]
PairFraction = Annotated[
    Optional[float],
    typer.Option(
        "--pair-fraction",
        min=0.0,
        max=1.0,
        help="Share of crops from --pairs when --clean is also given (0 = by image count).",
    ),
]
Loss = Annotated[Optional[str], typer.Option("--loss", help="l1 or l2.")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (cosine decay to a tenth).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Crops per step (1 works).")]
Iters = Annotated[Optional[int], typer.Option("--iters", min=1, help="Optimizer steps.")]
Crop = Annotated[Optional[int], typer.Option("--crop", min=16, help="Training crop size (a multiple of 8).")]
Steps = Annotated[
    Optional[int], typer.Option("--steps", "-s", min=1, help="Sampling steps for validation and the model's default.")
]
SumScale = Annotated[
    Optional[float], typer.Option("--sum-scale", help="Noise scale of the schedule (RDDM deraining uses 1).")
]
TMin = Annotated[
    Optional[int],
    typer.Option("--t-min", min=0, help="Train only t >= this (e.g. 499: a 1-2 step model); 0 = all t, as RDDM."),
]
EmaDecay = Annotated[Optional[float], typer.Option("--ema-decay", help="EMA decay of the saved weights.")]
Amp = Annotated[Optional[str], typer.Option("--amp", help="auto (fp16 on CUDA), off, fp16 or bf16.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Seeds data order, crops, degradations, noise and init.")]
HeldOut = Annotated[
    Optional[float],
    typer.Option("--held-out", min=0.0, max=0.9, help="Fraction of files held out for validation (by name)."),
]
ValEvery = Annotated[
    Optional[int], typer.Option("--val-every", min=0, help="Validate every N steps (0 = only at the end).")
]
ValSize = Annotated[
    Optional[int], typer.Option("--val-size", min=0, help="Centre crop of validation images (0 = whole).")
]
ValCount = Annotated[
    Optional[int], typer.Option("--val-count", min=0, help="Held-out images scored per source folder.")
]
SaveEvery = Annotated[Optional[int], typer.Option("--save-every", min=0, help="Write last.pt every N steps.")]
TimeLimit = Annotated[
    Optional[float], typer.Option("--time-limit", min=0.0, help="Stop (and save) after this many seconds.")
]
Resume = Annotated[Optional[Path], typer.Option("--resume", help="Continue from a run's last.pt.")]
Init = Annotated[
    Optional[str],
    typer.Option(
        "--init",
        help="Start from these weights (fine-tune): a bundle from 'restore train' or a shipped model's name; "
        "the network options must match it.",
    ),
]
Half = Annotated[bool, typer.Option("--half", help="Store the bundle's weights in fp16 (half the size).")]
Threads = Annotated[
    int,
    typer.Option("--threads", min=0, help="CPU threads for torch (0 = its default; 1 is fastest on a busy machine)."),
]


class TrainCommand(Command):
    """`restore train` whose --help shows TrainConfig's defaults for the options left at None."""

    def format_help(self, ctx, formatter):  # type: ignore[no-untyped-def]
        from ..training.config import TrainConfig

        defaults = TrainConfig()
        for param in self.params:
            value = getattr(defaults, param.name or "", None) if param.name in CONFIG_OPTIONS else None
            if value is not None and value is not False:
                shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                param.show_default = shown  # type: ignore[attr-defined]
        return super().format_help(ctx, formatter)


RUN_FILES = ("last.pt", "last.safetensors", "best.safetensors", "log.jsonl")  # what `restore train` writes


def check_run_folder(output: Path, data: list, *, init: str | None, resume: Path | None) -> None:
    """`train -o` is never a data folder or file, and none of the run's files lands on an input
    (an --init bundle, a data file); resuming a run rewrites its own last.pt, which is the point."""
    from ..io.files import list_images
    from ..io.outpaths import refuse_input_overwrite

    inputs = [Path(d) for d in data]
    inputs += [f for d in inputs if d.is_dir() for f in list_images(d)]  # the images training reads
    weights = [Path(p) for p in (init, resume) if p and Path(p).exists()]
    refuse_input_overwrite(output, [*inputs, *weights], what="-o", hint="give a new run folder")
    for name in RUN_FILES:
        kept = [w for w in weights if not (name == "last.pt" and resume is not None and w == Path(resume))]
        refuse_input_overwrite(
            output / name, [*inputs, *kept], what=f"-o {output}: the run's", hint="give another run folder"
        )


def train_cmd(
    method: Method,
    output: Output,
    clean: Clean = None,
    pairs: Pairs = None,
    degradation: Degradation = None,
    param: Param = None,
    task: Task = None,
    name: Name = None,
    objective: Objective = None,
    dual_output: DualOutput = None,
    dim: Dim = None,
    dim_mults: DimMults = None,
    attn_heads: AttnHeads = None,
    attn_dim_head: AttnDimHead = None,
    pixel_unshuffle: PixelUnshuffle = None,
    network: Network = None,
    width: Width = None,
    global_width: GlobalWidth = None,
    stages: Stages = None,
    blocks: Blocks = None,
    exposure_jitter: ExposureJitter = None,
    color_jitter: ColorJitter = None,
    ssim_weight: SsimWeight = None,
    local_crop: LocalCrop = None,
    whole_image_context: WholeImageContext = None,
    global_weight: GlobalWeight = None,
    global_only: GlobalOnly = None,
    pair_fraction: PairFraction = None,
    loss: Loss = None,
    lr: Lr = None,
    batch_size: BatchSize = None,
    iters: Iters = None,
    crop: Crop = None,
    steps: Steps = None,
    sum_scale: SumScale = None,
    t_min: TMin = None,
    ema_decay: EmaDecay = None,
    amp: Amp = None,
    device: Device = "auto",
    seed: Seed = None,
    held_out: HeldOut = None,
    val_every: ValEvery = None,
    val_size: ValSize = None,
    val_count: ValCount = None,
    save_every: SaveEvery = None,
    time_limit: TimeLimit = None,
    resume: Resume = None,
    init: Init = None,
    half: Half = False,
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Train an RDDM restoration model; the bundle it writes runs with --weights."""
    options = {k: v for k, v in locals().items() if k in CONFIG_OPTIONS}  # first: nothing else is bound yet
    if method != "rddm":
        raise UsageError(f"training '{method}' is not supported", "use 'restore train rddm'")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from ..runtime.device import pick_device
    from ..training.loop import train

    pair_dirs = [part for item in pairs or [] for part in item.split(",", 1)]
    check_run_folder(output, [*(clean or []), *pair_dirs], init=init, resume=resume)
    cfg = train_config(options, clean=clean, pairs=pairs, params=param)
    log = (lambda _msg: None) if quiet else (lambda msg: err_console.print(plain(msg), highlight=False))
    check_run_place(output)
    result = train(cfg, output, device=pick_device(device), resume=resume, log=log, half=half)
    if not quiet:
        err_console.print(
            plain(f"wrote {result.bundle}; run it with: restore {cfg.task} IMAGE --weights {result.bundle}"),
            highlight=False,
            soft_wrap=True,
        )


def check_run_place(output: Path) -> None:
    """`train -o` names a run folder: a file there is a usage error, an unwritable place one line (exit 1)."""
    from ..jobs.outcheck import folder_problem

    if output.exists() and not output.is_dir():
        raise UsageError(
            f"-o {output} is a file; a training run writes a folder (last.pt, bundles, log.jsonl)",
            "give a new folder, or the folder of the run to resume",
        )
    problem = folder_problem(output)
    if problem is not None:
        raise RestoreError(problem, "choose a run folder you can write to")


def train_config(
    options: dict[str, Any], *, clean: list[Path] | None, pairs: list[str] | None, params: list[str] | None
) -> TrainConfig:
    """The run's settings: the options given, TrainConfig's own defaults for the others."""
    from ..training.config import TrainConfig

    given = {k: v for k, v in options.items() if v is not None}
    if "dim_mults" in given:
        given["dim_mults"] = _dim_mults(given["dim_mults"])
    if "lr" in given:
        given["lr_min"] = given["lr"] / 10  # --lr's help: cosine decay to a tenth
    if not clean:
        given["degradation"] = None  # nothing to degrade: every pair comes from --pairs
    return TrainConfig(
        **given,
        degrade_params=parse_params(params),
        clean=[str(c) for c in clean or []],
        pairs=_pair_folders(pairs),
    )


def _pair_folders(pairs: list[str] | None) -> list[list[str]]:
    out = []
    for item in pairs or []:
        deg, sep, cln = item.partition(",")
        if not sep:
            raise UsageError(f"--pairs {item} is not DEGRADED_DIR,CLEAN_DIR")
        out.append([deg, cln])
    return out


def _dim_mults(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(m) for m in text.split(","))
    except ValueError:
        raise UsageError(f"--dim-mults {text} is not a comma-separated list of integers") from None
