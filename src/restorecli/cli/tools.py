"""The tool commands: `restore bench`, `degrade`, `train` and `eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import RestoreError, UsageError
from ..io.printable import plain
from .helptext import Command
from .options import Device, HtmlReport, Json, Precision, Quiet, err_console, parse_params
from .train import TrainCommand, train_cmd


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
    from ..io.files import is_image_name
    from ..jobs.outcheck import folder_problem
    from ..training.datasets import collect_images, degrade_files, plan_degrade_targets
    from ..training.degrade import DEGRADATIONS, PARAMS, check_params

    if kind not in DEGRADATIONS:
        raise UsageError(f"unknown degradation '{kind}'", f"use one of: {', '.join(DEGRADATIONS)}")
    problem = check_params(kind, parse_params(param))
    if problem is not None:  # before any image is read
        raise UsageError(f"-P: {problem}", "" if "it takes" in problem else f"'{kind}' takes {', '.join(PARAMS[kind])}")
    inputs = collect_images([input])
    single_file = len(inputs) == 1 and is_image_name(output)
    plan_degrade_targets(inputs, output, single_file=single_file)  # clashes refused before a folder is made
    folder = output.parent if single_file else output
    unwritable = folder_problem(folder)  # one line for the folder, before any image is read
    if unwritable is not None:
        raise RestoreError(unwritable, "choose an output folder you can write to")
    try:
        records = degrade_files(inputs, output, kind, seed=seed, params=parse_params(param))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # a full disk, a folder in the way of an output file
        where = f" {exc.filename}" if exc.filename else ""
        reason = f"cannot write{where}: {exc.strerror or exc}"
        raise RestoreError(reason, "free some space or choose another output") from None
    if not quiet:
        err_console.print(plain(f"wrote {len(records)} degraded image(s) to {output}"), highlight=False, soft_wrap=True)


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

    check_report_path(html, keep=[restored, reference, *([output] if output is not None else [])])
    if output is not None:
        from ..jobs.outcheck import check_output_file

        check_output_file(
            output, [restored, reference], option="-o", suffix=".json", what="the report", error=UsageError
        )  # a JSON report never replaces a restored or reference image
        check_report_file(output)

    report = evaluate_pairs(
        restored,
        reference,
        crop_border=crop_border,
        strip_suffix=strip_suffix,
        resize_reference=resize_reference,
    )
    text = report.to_json()
    if output is not None:
        try:
            output.write_text(text + "\n")
        except OSError as exc:
            raise RestoreError(f"cannot write {output}: {exc.strerror or exc}", "choose another -o") from None
    if json:
        typer.echo(text)
    else:
        typer.echo(format_table(report))
    if report.unmatched:
        err_console.print(
            plain(f"{len(report.unmatched)} file(s) without a partner: {', '.join(report.unmatched[:5])}"),
            highlight=False,
            soft_wrap=True,
        )
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


def check_report_file(output: Path) -> None:
    """`eval -o` names a file: a folder there is a usage error; its folder is made, or one line (exit 1)."""
    from ..jobs.outcheck import folder_problem

    if output.is_dir():
        raise UsageError(f"-o {output} is a folder", "give a file name for the JSON report, e.g. -o scores.json")
    problem = folder_problem(output.parent)
    if problem is not None:
        raise RestoreError(problem, "choose a place you can write to for -o")


def register(app: typer.Typer) -> None:
    app.command("bench", cls=Command)(bench_cmd)
    app.command("degrade", cls=Command)(degrade_cmd)
    app.command("train", cls=TrainCommand)(train_cmd)
    app.command("eval", cls=Command)(eval_cmd)
