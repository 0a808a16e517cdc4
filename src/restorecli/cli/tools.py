"""The tool commands: `restore bench`, `degrade`, `train` and `eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .options import Device, HtmlReport, Json, Precision, Quiet, err_console, parse_params


def bench_cmd(
    workloads: Annotated[
        Optional[list[str]], typer.Argument(help="Workload names (default: all anchors); 'tiny' = small CI shapes.")
    ] = None,
    shape: Annotated[
        Optional[str], typer.Option("--shape", help="Custom workload MODEL:HxW[:BATCH], e.g. diffir-deblur:1080x1920.")
    ] = None,
    device: Device = "auto",
    precision: Precision = "auto",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per workload (median reported).")] = 5,
    no_reference: Annotated[bool, typer.Option("--no-reference", help="Skip the plain fp32 reference run.")] = False,
    threads: Annotated[
        Optional[int],
        typer.Option(
            "--threads", min=1, help="CPU threads for every workload (default: torch's; tiny workloads use 1)."
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Time engines on synthetic inputs (random weights) against the plain fp32 reference path."""
    from ..jobs.bench import parse_workloads, print_table, run_bench

    report = run_bench(
        parse_workloads(workloads, shape),
        device=device,
        precision=precision,
        repeats=repeats,
        reference=not no_reference,
        threads=threads,
    )
    if json:
        import json as _json

        typer.echo(_json.dumps(report, indent=2))
    else:
        print_table(report)


# --- training commands ---


def degrade_cmd(
    kind: Annotated[str, typer.Argument(help="rain, lowlight, motion, defocus, noise, jpeg, bicubic or realistic.")],
    input: Annotated[Path, typer.Argument(help="Clean image file or folder.")],
    output: Annotated[Path, typer.Argument(help="Output PNG (one input) or folder.")],
    seed: Annotated[
        int, typer.Option("--seed", help="Run seed; each file's generator is seeded from it and the file name.")
    ] = 0,
    param: Annotated[
        Optional[list[str]],
        typer.Option("--param", "-P", help="Fix a parameter, KEY=VALUE (repeatable); others are drawn."),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Make degraded copies of clean images (reproducible; parameters recorded in degrade.json)."""
    from ..training.datasets import collect_images, degrade_files
    from ..training.degrade import DEGRADATIONS

    if kind not in DEGRADATIONS:
        raise UsageError(f"unknown degradation '{kind}'", f"use one of: {', '.join(DEGRADATIONS)}")
    try:
        records = degrade_files(collect_images([input]), output, kind, seed=seed, params=parse_params(param))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not quiet:
        err_console.print(f"wrote {len(records)} degraded image(s) to {output}")


def train_cmd(
    method: Annotated[str, typer.Argument(help="Method to train; only rddm (residual diffusion) is supported.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder: last.pt (resumable), last/best.safetensors, log.jsonl.")
    ],
    clean: Annotated[
        Optional[list[Path]], typer.Option("--clean", help="Folder of clean images, degraded on the fly (repeatable).")
    ] = None,
    pairs: Annotated[
        Optional[list[str]], typer.Option("--pairs", help="DEGRADED_DIR,CLEAN_DIR of matching file names (repeatable).")
    ] = None,
    degradation: Annotated[
        str, typer.Option("--degradation", help="Synthetic degradation for --clean (see 'restore degrade').")
    ] = "rain",
    param: Annotated[
        Optional[list[str]], typer.Option("--param", "-P", help="Fix a degradation parameter, KEY=VALUE (repeatable).")
    ] = None,
    task: Annotated[
        str, typer.Option("--task", help="Task command the model serves (derain, lowlight, deblur, ...).")
    ] = "derain",
    name: Annotated[str, typer.Option("--name", help="Model name recorded in the bundle.")] = "rddm-custom",
    objective: Annotated[
        str, typer.Option("--objective", help="pred_res_noise (two UNets) or pred_res (one UNet).")
    ] = "pred_res_noise",
    dual_output: Annotated[
        bool, typer.Option("--dual-output", help="Also learn a DDO-style gate mixing the two clean-image estimates.")
    ] = False,
    dim: Annotated[int, typer.Option("--dim", min=8, help="UNet base width (the official models use 64).")] = 16,
    dim_mults: Annotated[
        str, typer.Option("--dim-mults", help="Width multipliers per level, comma-separated.")
    ] = "1,2,4,8",
    attn_heads: Annotated[
        int, typer.Option("--attn-heads", min=1, help="Linear-attention heads per level (official: 4).")
    ] = 4,
    attn_dim_head: Annotated[
        int, typer.Option("--attn-dim-head", min=1, help="Width of each attention head (official: 32).")
    ] = 32,
    pixel_unshuffle: Annotated[
        int,
        typer.Option(
            "--pixel-unshuffle",
            min=1,
            help="Run the UNet at 1/r resolution on r*r times the channels (1 = official; 2 is ~4x faster).",
        ),
    ] = 1,
    network: Annotated[
        str,
        typer.Option(
            "--network",
            metavar="NET",
            help="unet (RDDM diffusion UNets), lightnet (one-pass low-light enhancer: global exposure and "
            "colour, full-resolution local pass) or rainnet (one-pass deraining: shared-weight full-resolution "
            "stages that predict and subtract the rain layer).",
        ),
    ] = "unet",
    width: Annotated[
        int, typer.Option("--width", min=4, max=256, help="lightnet, rainnet: full-resolution width.")
    ] = 12,
    stages: Annotated[
        int, typer.Option("--stages", min=1, max=12, help="rainnet: progressive stages (shared weights).")
    ] = 3,
    blocks: Annotated[int, typer.Option("--blocks", min=1, max=8, help="rainnet: residual blocks per stage.")] = 1,
    exposure_jitter: Annotated[
        float,
        typer.Option("--exposure-jitter", min=0.0, max=4.0, help="lightnet: scale inputs by up to +-N stops."),
    ] = 0.0,
    color_jitter: Annotated[
        float,
        typer.Option("--color-jitter", min=0.0, max=1.0, help="lightnet: scale input channels by up to +-N."),
    ] = 0.0,
    ssim_weight: Annotated[
        float, typer.Option("--ssim-weight", min=0.0, max=4.0, help="Add N x (1 - SSIM of luma) to the loss.")
    ] = 0.0,
    pair_fraction: Annotated[
        float,
        typer.Option(
            "--pair-fraction",
            min=0.0,
            max=1.0,
            help="Share of crops from --pairs when --clean is also given (0 = by image count).",
        ),
    ] = 0.0,
    loss: Annotated[str, typer.Option("--loss", help="l1 or l2.")] = "l1",
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay to a tenth).")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Crops per step (1 works).")] = 4,
    iters: Annotated[int, typer.Option("--iters", min=1, help="Optimizer steps.")] = 10000,
    crop: Annotated[int, typer.Option("--crop", min=16, help="Training crop size (a multiple of 8).")] = 64,
    steps: Annotated[
        int, typer.Option("--steps", "-s", min=1, help="Sampling steps for validation and the model's default.")
    ] = 5,
    sum_scale: Annotated[
        float, typer.Option("--sum-scale", help="Noise scale of the schedule (RDDM deraining uses 1).")
    ] = 1.0,
    t_min: Annotated[
        int,
        typer.Option("--t-min", min=0, help="Train only t >= this (e.g. 499: a 1-2 step model); 0 = all t, as RDDM."),
    ] = 0,
    ema_decay: Annotated[float, typer.Option("--ema-decay", help="EMA decay of the saved weights.")] = 0.999,
    amp: Annotated[str, typer.Option("--amp", help="auto (fp16 on CUDA), off, fp16 or bf16.")] = "auto",
    device: Device = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seeds data order, crops, degradations, noise and init.")] = 0,
    held_out: Annotated[
        float, typer.Option("--held-out", min=0.0, max=0.9, help="Fraction of files held out for validation (by name).")
    ] = 0.1,
    val_every: Annotated[
        int, typer.Option("--val-every", min=0, help="Validate every N steps (0 = only at the end).")
    ] = 500,
    val_size: Annotated[
        int, typer.Option("--val-size", min=0, help="Centre crop of validation images (0 = whole).")
    ] = 128,
    save_every: Annotated[int, typer.Option("--save-every", min=0, help="Write last.pt every N steps.")] = 500,
    time_limit: Annotated[
        float, typer.Option("--time-limit", min=0.0, help="Stop (and save) after this many seconds.")
    ] = 0.0,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue from a run's last.pt.")] = None,
    init: Annotated[
        Optional[str],
        typer.Option(
            "--init",
            help="Start from these weights (fine-tune): a bundle from 'restore train' or a shipped model's name; "
            "the network options must match it.",
        ),
    ] = None,
    half: Annotated[bool, typer.Option("--half", help="Store the bundle's weights in fp16 (half the size).")] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads", min=0, help="CPU threads for torch (0 = its default; 1 is fastest on a busy machine)."
        ),
    ] = 0,
    quiet: Quiet = False,
) -> None:
    """Train an RDDM restoration model; the bundle it writes runs with --weights."""
    if method != "rddm":
        raise UsageError(f"training '{method}' is not supported", "use 'restore train rddm'")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from ..runtime.device import pick_device
    from ..training.config import TrainConfig
    from ..training.loop import train

    pair_list = []
    for item in pairs or []:
        deg, sep, cln = item.partition(",")
        if not sep:
            raise UsageError(f"--pairs {item} is not DEGRADED_DIR,CLEAN_DIR")
        pair_list.append([deg, cln])
    try:
        mults = tuple(int(m) for m in dim_mults.split(","))
    except ValueError:
        raise UsageError(f"--dim-mults {dim_mults} is not a comma-separated list of integers") from None
    cfg = TrainConfig(
        name=name,
        task=task,
        objective=objective,
        dual_output=dual_output,
        dim=dim,
        dim_mults=mults,
        attn_heads=attn_heads,
        attn_dim_head=attn_dim_head,
        pixel_unshuffle=pixel_unshuffle,
        network=network,
        width=width,
        stages=stages,
        blocks=blocks,
        exposure_jitter=exposure_jitter,
        color_jitter=color_jitter,
        ssim_weight=ssim_weight,
        pair_fraction=pair_fraction,
        loss=loss,
        lr=lr,
        lr_min=lr / 10,
        batch_size=batch_size,
        iters=iters,
        crop=crop,
        steps=steps,
        sum_scale=sum_scale,
        t_min=t_min,
        ema_decay=ema_decay,
        amp=amp,
        seed=seed,
        degradation=degradation if clean else None,
        degrade_params=parse_params(param),
        held_out=held_out,
        val_every=val_every,
        val_size=val_size,
        save_every=save_every,
        time_limit=time_limit,
        clean=[str(c) for c in clean or []],
        pairs=pair_list,
        init=init,
    )
    log = (lambda _msg: None) if quiet else (lambda msg: err_console.print(msg, highlight=False))
    result = train(cfg, output, device=pick_device(device), resume=resume, log=log, half=half)
    if not quiet:
        err_console.print(
            f"wrote {result.bundle}; run it with: restore {task} IMAGE --weights {result.bundle}", soft_wrap=True
        )


def eval_cmd(
    restored: Annotated[Path, typer.Argument(help="Restored image or folder.")],
    reference: Annotated[Path, typer.Argument(help="Reference (ground-truth) image or folder; files pair by name.")],
    crop_border: Annotated[
        int, typer.Option("--crop-border", min=0, help="Pixels dropped on each side (SR papers use the scale).")
    ] = 0,
    strip_suffix: Annotated[
        str, typer.Option("--strip-suffix", help="Suffix to remove from restored names before pairing, e.g. _derain.")
    ] = "",
    resize_reference: Annotated[
        bool,
        typer.Option(
            "--resize-reference", help="Resize references to the restored size (bicubic) instead of refusing."
        ),
    ] = False,
    json: Json = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Also write the JSON report to this file.")
    ] = None,
    html: HtmlReport = None,
) -> None:
    """PSNR and SSIM (Y channel and RGB) of restored images against references."""
    from ..jobs.runinfo import check_report_path, write_report
    from ..quality.evaluate import evaluate_pairs, format_table

    check_report_path(html)

    report = evaluate_pairs(
        restored,
        reference,
        crop_border=crop_border,
        strip_suffix=strip_suffix,
        resize_reference=resize_reference,
    )
    text = report.to_json()
    if output is not None:
        output.write_text(text + "\n")
    if json:
        typer.echo(text)
    else:
        typer.echo(format_table(report))
    if report.unmatched:
        err_console.print(f"{len(report.unmatched)} file(s) without a partner: {', '.join(report.unmatched[:5])}")
    if html is not None:
        from ..jobs.html_report import entries_from_eval

        run_info = {
            "task": "eval",
            "restored": str(restored),
            "reference": str(reference),
            "crop border": crop_border,
            "pairs": len(report.files),
            "without a partner": len(report.unmatched),
        }
        write_report(
            html,
            title=f"restore eval {restored} {reference}",
            run_info=run_info,
            entries=entries_from_eval(report.files),
            labels=("reference", "restored"),
            quiet=False,
            console=err_console,
        )


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
    app.command("degrade")(degrade_cmd)
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
