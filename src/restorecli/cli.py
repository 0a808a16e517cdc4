"""The `restore` command line: argument handling only, the work happens in the modules it calls.

Every task command (sr, inpaint, face, deblur, derain, lowlight, shadow) takes
the same options and runs whatever registered model serves that task, so a new
engine needs no CLI code. Errors are one line on stderr with a distinct exit
code (see `restore --help` epilog and docs/cli.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import EXIT_CODES, RestoreError, UsageError

err_console = Console(stderr=True)

EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="restore",
    help="Restore images with diffusion models (ResShift, SinSR, DiffIR, RDDM, DDO).",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class GlobalOptions:
    """Options given before the command (`restore --offline sr ...`) or via environment variables."""

    offline: bool = False
    cache_dir: Optional[Path] = None
    registry: list[Path] = []


GLOBAL = GlobalOptions()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"restorecli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    offline: Annotated[bool, typer.Option("--offline", envvar="RESTORECLI_OFFLINE", help="Never use the network; only cached weights.")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", envvar="RESTORECLI_CACHE", help="Where downloaded weights are kept.")] = None,
    registry: Annotated[Optional[list[Path]], typer.Option("--registry", help="Extra weights.toml overlay (repeatable).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    GLOBAL.offline = offline
    GLOBAL.cache_dir = cache_dir
    GLOBAL.registry = list(registry or [])


# ---- shared option types --------------------------------------------------------

Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model (see 'restore models'); default: the task's default.")]
Weights = Annotated[Optional[list[str]], typer.Option("--weights", "-w", help="A bundle .safetensors, or COMPONENT=PATH of official files (repeatable).")]
Steps = Annotated[Optional[int], typer.Option("--steps", "-s", help="Sampling steps; default: what the model was trained with.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Random seed; each image gets its own generator seeded with it.")]
Device = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda, cuda:N or mps.")]
Precision = Annotated[str, typer.Option("--precision", "-p", help="auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Same-size images run together.")]
Tile = Annotated[Optional[int], typer.Option("--tile", help="Tile size in input pixels; 0 = whole image; default: automatic from memory.")]
TileOverlap = Annotated[int, typer.Option("--tile-overlap", min=0, help="Overlap between tiles in input pixels.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders (mirrored in the output).")]
Suffix = Annotated[Optional[str], typer.Option("--suffix", help="Added to output names written next to the input (default _TASK).")]
Ext = Annotated[Optional[str], typer.Option("--ext", help="Output format (png, jpg, webp, tif, bmp); default: the input's.")]
Quality = Annotated[int, typer.Option("--quality", min=1, max=100, help="Quality of lossy outputs.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo images whose output already exists.")]
Shard = Annotated[Optional[str], typer.Option("--shard", help="I/N: process only the I-th of N disjoint parts (0-based).")]
Devices = Annotated[Optional[str], typer.Option("--devices", help="Comma-separated GPUs, one worker each, e.g. 0,1.")]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON report (one record per file) on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")]
Resize = Annotated[Optional[int], typer.Option("--resize", help="Resize inputs to SIZE x SIZE first (RDDM paper protocol: 256).")]


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard {value} is not I/N", "e.g. --shard 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {value}: need 0 <= I < N", "e.g. --shard 0/4 ... --shard 3/4")
    return i, n


def parse_devices(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = []
    for item in value.split(","):
        item = item.strip()
        out.append(f"cuda:{item}" if item.isdigit() else item)
    return out


def run_task(
    task: str,
    input: str,
    output: str | None,
    *,
    mask: str | None = None,
    model: str | None,
    weights: list[str] | None,
    steps: int | None,
    seed: int | None,
    device: str,
    precision: str,
    batch_size: int,
    tile: int | None,
    tile_overlap: int,
    recursive: bool,
    suffix: str | None,
    ext: str | None,
    quality: int,
    overwrite: bool,
    shard: str | None,
    devices: str | None,
    json: bool,
    quiet: bool,
    verbose: bool,
    resize: int | None = None,
) -> int:
    """Shared body of the task commands: build the engine factory and hand the job to the pipeline."""
    from .registry import load_registry
    from .runtime import load_engine, resolve_spec

    spec = resolve_spec(load_registry(tuple(GLOBAL.registry)), model, task)
    steps = spec.check_steps(steps)
    shard_range = parse_shard(shard)
    from .pipeline import JobOptions, run_job
    engines: dict[str | None, object] = {}

    def make_engine(dev: str | None):
        if dev not in engines:
            engine = load_engine(
                spec.name, task, weights=weights, device=dev or device, precision=precision,
                registry_files=GLOBAL.registry, offline=GLOBAL.offline, cache_dir=GLOBAL.cache_dir,
            )
            if resize is not None:
                if not hasattr(engine, "resize"):
                    raise UsageError(f"--resize is not supported by model '{spec.name}'")
                engine.resize = resize
            engines[dev] = engine
        return engines[dev]

    opts = JobOptions(
        task=task, inputs=[input], output=output, mask=mask, recursive=recursive,
        suffix=suffix, ext=ext, quality=quality, overwrite=overwrite, shard=shard_range,
        steps=steps, seed=spec.extra.get("default_seed", 0) if seed is None else seed,
        batch_size=batch_size, tile=tile, tile_overlap=tile_overlap, json=json,
        quiet=quiet, verbose=verbose, devices=parse_devices(devices),
    )
    report = run_job(make_engine, opts, err_console)
    return report.exit_code


def _task_command(task: str, summary: str, with_mask: bool = False, with_resize: bool = False) -> Callable[..., None]:
    """Build one task command; all task commands share these options."""

    def command(
        input: Annotated[str, typer.Argument(help="Image file, folder, glob, @list.txt, or - for stdin.")],
        output: Annotated[Optional[str], typer.Argument(help="File, folder, or - for stdout; default: next to the input.")] = None,
        mask: Annotated[Optional[str], typer.Option("--mask", help="Mask image or folder (white = area to fill).")] = None,
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
    ) -> None:
        if with_mask and mask is None:
            raise UsageError(f"'restore {task}' needs --mask MASK", "white (255) marks the area to fill")
        if mask is not None and not with_mask:
            raise UsageError(f"'restore {task}' takes no --mask", "masks are for 'restore inpaint' and 'restore shadow'")
        code = run_task(
            task, input, output, mask=mask, model=model, weights=weights, steps=steps, seed=seed,
            device=device, precision=precision, batch_size=batch_size, tile=tile,
            tile_overlap=tile_overlap, recursive=recursive, suffix=suffix, ext=ext, quality=quality,
            overwrite=overwrite, shard=shard, devices=devices, json=json, quiet=quiet,
            verbose=verbose, resize=resize,
        )
        raise typer.Exit(code)

    command.__doc__ = summary
    command.__name__ = task
    return command


TASKS = {
    "sr": ("Super-resolve images (default: ResShift real-world x4, 4 steps).", False),
    "inpaint": ("Fill the masked area of images (--mask, white = fill).", True),
    "face": ("Restore degraded aligned face images (512x512).", False),
    "deblur": ("Remove motion blur (default: DiffIR GoPro).", False),
    "derain": ("Remove rain streaks.", False),
    "lowlight": ("Brighten low-light images.", False),
    "shadow": ("Remove shadows (--mask marks the shadow).", True),
}
for _task, (_summary, _mask) in TASKS.items():
    app.command(_task, help=_summary)(_task_command(_task, _summary, with_mask=_mask))


@app.command("generate")
def generate(
    output: Annotated[Path, typer.Argument(help="Folder for the generated PNGs.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Generation model, e.g. rddm-celeba64.")] = "rddm-celeba64",
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many images.")] = 16,
    weights: Weights = None,
    steps: Steps = None,
    seed: Seed = None,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=0, help="Images per network call (0 = all).")] = 0,
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png with all images.")] = False,
    quiet: Quiet = False,
) -> None:
    """Generate images with an unconditional model (RDDM CelebA 64, DDO CIFAR-10)."""
    from .generate import generate_images

    paths = generate_images(
        model, output, count=count, weights=weights, steps=steps, seed=seed, device=device,
        precision=precision, batch_size=batch_size, grid=grid,
        registry_files=GLOBAL.registry, offline=GLOBAL.offline, cache_dir=GLOBAL.cache_dir,
    )
    if not quiet:
        err_console.print(f"wrote {len(paths)} image(s) to {output}")


@app.command("convert")
def convert(
    model: Annotated[str, typer.Argument(help="Registered model the files belong to.")],
    files: Annotated[list[str], typer.Argument(help="[COMPONENT=]PATH of each official file.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Bundle to write (.safetensors).")],
) -> None:
    """Convert official checkpoint files (.pth/.pt/.ckpt) into one safetensors bundle."""
    from .registry import load_registry
    from .weights import convert_files, parse_weight_args, write_bundle

    spec = load_registry(tuple(GLOBAL.registry)).get(model)
    parsed = parse_weight_args(spec, files)
    if isinstance(parsed, Path):
        parsed = {next(iter(spec.components)): parsed}
    states, sources = convert_files(spec, parsed)
    write_bundle(out, spec, states, sources)
    err_console.print(f"wrote {out} ({sum(len(s) for s in states.values())} tensors, model {spec.name})")


# --- weights commands ---


def main() -> None:
    """Console-script entry point. Click handles its own usage errors (exit 2) and typer.Exit;
    a RestoreError becomes one line on stderr and its own exit code."""
    try:
        app()
    except RestoreError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
