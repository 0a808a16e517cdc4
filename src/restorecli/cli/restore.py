"""The task commands (sr, inpaint, face, deblur, derain, lowlight, shadow) and `restore generate`.

The task commands are built from the registry: one per `[tasks.NAME]` table,
with --mask where the task needs a mask and the extra options (--resize) of
the methods its models run on, so a new method or task needs no CLI code.
Every task command runs whatever registered model serves that task; the work
is `restorecli.api.run_restore`, the same path `restorecli.restore()` takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..api import generate as api_generate
from ..api import run_restore
from ..errors import RestoreError, UsageError
from ..io.printable import plain
from ..jobs.options import RestoreRequest
from ..weights.registry import Registry, builtin_registry, load_registry
from .helptext import Command
from .options import (
    GLOBAL,
    BatchSize,
    Device,
    Devices,
    Exposure,
    Ext,
    HtmlReport,
    Json,
    Model,
    Overwrite,
    Precision,
    Quality,
    Quiet,
    Recursive,
    Resize,
    Seed,
    Shard,
    Steps,
    Suffix,
    Tile,
    TileOverlap,
    Verbose,
    Weights,
    err_console,
    parse_devices,
    parse_shard,
)

# what white (255) in a --mask marks, per task that takes one
MASK_MEANS = {"inpaint": "the area to fill", "shadow": "the shadow to remove"}


def mask_means(task: str) -> str:
    return MASK_MEANS.get(task, "the area to restore")


# the options only some task commands take, as the registry names them ("mask" for a task that needs one)
TASK_OPTIONS = ("mask", "resize", "exposure")


def _task_command(task: str, summary: str, extra: frozenset[str] = frozenset()) -> Callable[..., None]:
    """Build one task command: the shared options, plus those of TASK_OPTIONS in `extra`."""

    def command(
        input: Annotated[str, typer.Argument(help="Image file, folder, glob, @list.txt, or - for stdin.")],
        output: Annotated[
            Optional[str], typer.Argument(help="File, folder, or - for stdout; default: next to the input.")
        ] = None,
        mask: Annotated[
            Optional[str], typer.Option("--mask", help="Mask image or folder (white = area to fill).")
        ] = None,
        model: Model = None,
        weights: Weights = None,
        steps: Steps = None,
        seed: Seed = None,
        device: Device = "auto",
        precision: Precision = "auto",
        batch_size: BatchSize = 1,
        tile: Tile = None,
        tile_overlap: TileOverlap = 32,
        recursive: Recursive = False,
        suffix: Suffix = None,
        ext: Ext = None,
        quality: Quality = 95,
        overwrite: Overwrite = False,
        shard: Shard = None,
        devices: Devices = None,
        json: Json = False,
        quiet: Quiet = False,
        verbose: Verbose = False,
        resize: Resize = None,
        exposure: Exposure = None,
        report: HtmlReport = None,
    ) -> None:
        if "mask" in extra and mask is None:
            raise UsageError(f"'restore {task}' needs --mask MASK", f"white (255) in the mask marks {mask_means(task)}")
        request = RestoreRequest(
            task, model, steps, seed, device, precision, weights, GLOBAL.registry, GLOBAL.offline, GLOBAL.cache_dir,
            resize, report, exposure,
        )  # fmt: skip
        result = run_restore(
            [input], output, request, quiet=quiet, console=err_console, mask=mask, recursive=recursive,
            suffix=suffix, ext=ext, quality=quality, overwrite=overwrite, shard=parse_shard(shard),
            batch_size=batch_size, tile=tile, tile_overlap=tile_overlap, json=json, verbose=verbose,
            devices=parse_devices(devices),
        )  # fmt: skip
        raise typer.Exit(result.exit_code)

    command.__doc__ = summary
    command.__name__ = task
    # Typer reads the options from the signature: leave out those this task does not take
    sig = inspect.signature(command, eval_str=True)  # resolved: Typer takes a given signature as it is
    dropped = set(TASK_OPTIONS) - extra
    params = [p for p in sig.parameters.values() if p.name not in dropped]
    if "mask" in extra:  # what white means differs per task
        mask_option = typer.Option("--mask", help=f"Mask image or folder (white = {mask_means(task)}).")
        params = [
            p.replace(annotation=Annotated[Optional[str], mask_option]) if p.name == "mask" else p for p in params
        ]
    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return command


def task_registry() -> Registry:
    """The registry the task commands are built from: weights.toml with the $RESTORECLI_REGISTRY
    and user overlays (a broken overlay: the built-in one; its error comes when a command runs)."""
    try:
        return load_registry()
    except RestoreError:
        return builtin_registry()


def task_options(registry: Registry, task: str) -> frozenset[str]:
    """The options of TASK_OPTIONS that `restore TASK` takes."""
    mask = {"mask"} if registry.tasks[task].needs_mask else set()
    return frozenset(mask | set(registry.task_options(task))) & frozenset(TASK_OPTIONS)


def _task_help(task: str) -> str:
    """A task's --help text: what it does, its default model and what that model downloads."""
    try:
        from ..weights.catalog import download_note

        registry = load_registry(tuple(GLOBAL.registry))
        summary = registry.tasks[task].summary
        spec = registry.default_for(task)
    except RestoreError:  # a broken overlay: its error comes when the command runs
        return task_registry().tasks[task].summary
    steps = f"{spec.default_steps} step{'s' if spec.default_steps != 1 else ''}"
    return (
        f"{summary}\n\nDefault model: {spec.name} ({spec.method}, {steps}); {download_note(spec)}. "
        f"'restore models --task {task}' lists the others (--model)."
    )


class _TaskCommand(Command):
    """A task command whose --help names the task's default model, read from the registry
    (with the --registry overlays) only when the help is shown."""

    def format_help(self, ctx, formatter):  # type: ignore[no-untyped-def]
        self.help = _task_help(self.name or "")
        return super().format_help(ctx, formatter)


def generate(
    output: Annotated[Path, typer.Argument(help="Folder for the generated PNGs.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Generation model, e.g. rddm-celeba64.")
    ] = "rddm-celeba64",
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many images.")] = 16,
    weights: Weights = None,
    steps: Steps = None,
    seed: Seed = None,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=0, help="Images per network call (0 = all).")
    ] = 0,
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png with all images.")] = False,
    quiet: Quiet = False,
) -> None:
    """Generate images with an unconditional model (RDDM CelebA 64, DDO CIFAR-10)."""
    paths = api_generate(
        model,
        output,
        count=count,
        weights=weights,
        steps=steps,
        seed=seed,
        device=device,
        precision=precision,
        batch_size=batch_size,
        grid=grid,
        registry_files=GLOBAL.registry,
        offline=GLOBAL.offline,
        cache_dir=GLOBAL.cache_dir,
    )
    if not quiet:
        err_console.print(plain(f"wrote {len(paths)} image(s) to {output}"), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    registry = task_registry()
    for task, spec in registry.tasks.items():
        app.command(task, help=spec.summary, cls=_TaskCommand)(
            _task_command(task, spec.summary, task_options(registry, task))
        )
    app.command("generate", cls=Command)(generate)
