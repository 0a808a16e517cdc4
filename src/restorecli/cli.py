"""The `restore` command line: argument handling only, the work happens in the modules it calls.

Every task command (sr, inpaint, face, deblur, derain, lowlight, shadow) takes
the same options and runs whatever registered model serves that task, so a new
engine needs no CLI code. Errors are one line on stderr with a distinct exit
code (see `restore --help` epilog and docs/cli.md).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand

from . import __version__
from .errors import EXIT_CODES, RestoreError, UsageError

err_console = Console(stderr=True)

# one exit code per line (rich help joins lines, and keeps paragraphs apart)
EPILOG = "Exit codes:\n\n" + "\n\n".join(f"{code} {text}" for code, text in EXIT_CODES.items())

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


def _check_tile(value: Optional[int]) -> Optional[int]:
    """--tile: 0 (whole image) or a size; a negative value is a usage error (a size below the model's
    smallest tile is raised to it, with a warning, once the model is loaded)."""
    if value is not None and value < 0:
        raise typer.BadParameter(f"{value} is negative; use 0 (whole image) or a tile size in pixels")
    return value


Tile = Annotated[Optional[int], typer.Option("--tile", callback=_check_tile, help="Tile size in input pixels (raised to the model's smallest tile); 0 = whole image; default: automatic from memory.")]
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
HtmlReport = Annotated[Optional[Path], typer.Option("--report", help="Also write one self-contained HTML page of the run to PATH.html (thumbnails in PATH_files/): each input beside its output, status, time and settings.", metavar="PATH.html")]
Resize = Annotated[Optional[int], typer.Option("--resize", min=1, help="RDDM models only: resize inputs to SIZE x SIZE first (the paper's protocol: 256).")]


def check_report_path(path: Path | None) -> None:
    """--report must name an .html page whose thumbnail folder is free (or a report's own): checked before any work."""
    if path is None:
        return
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report {path}: the report is an HTML page", f"name it e.g. {path.with_suffix('.html')}")
    from .html_report import MARKER, thumbs_dir_for

    files = thumbs_dir_for(path)
    if files.exists() and not (files / MARKER).exists() and (not files.is_dir() or any(files.iterdir())):
        raise UsageError(f"--report {path}: {files} exists and holds no report thumbnails",
                         "choose another report name, or move that folder")


def write_report(path: Path, *, title: str, run_info: dict, entries: list, quiet: bool,
                 labels: tuple[str, str] = ("input", "output")) -> None:
    """Write the HTML page of a run (restorecli.html_report) and say where it is."""
    from .html_report import write_html_report

    try:
        write_html_report(path, title=title, run_info=run_info, entries=entries, labels=labels)
    except OSError as exc:  # FileExistsError included (checked before the run, but the disk may change)
        raise RestoreError(f"cannot write the report {path}: {getattr(exc, 'strerror', None) or exc}",
                           "check that its folder is writable, or choose another --report path") from None
    if not quiet:
        err_console.print(f"wrote report {path}", highlight=False, soft_wrap=True)


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


def _precision_name(dtype: object) -> str:
    from .runtime import PRECISIONS

    return next((name for name, d in PRECISIONS.items() if d == dtype), str(dtype))


def _what_runs(engine, source: str, steps: int, seed: int) -> str:
    """The `-v` line: model, where its weights came from, steps, seed, device and precision."""
    return (f"model {engine.spec.name}; weights {source}; {steps} step{'s' if steps != 1 else ''}; seed {seed}; "
            f"device {engine.device}; precision {_precision_name(engine.dtype)}")


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
    report_path: Path | None = None,
) -> int:
    """Shared body of the task commands: build the engine factory and hand the job to the pipeline."""
    from .registry import load_registry

    check_report_path(report_path)

    from .bundlespec import check_bundle_task, spec_for_weights

    registry = load_registry(tuple(GLOBAL.registry))
    registered = registry.resolve(model, task)
    check_bundle_task(weights, task, registry)  # a bundle recording another task: exit 3, before any work
    spec = spec_for_weights(registered, weights)  # a `restore train` bundle brings its own spec
    steps = spec.check_steps(steps)
    seed = spec.extra.get("default_seed", 0) if seed is None else seed
    shard_range = parse_shard(shard)
    if weights:
        source = "--weights " + " ".join(weights)
    else:  # fetch now (or fail at once when offline), before torch and the pipeline load
        from .fetch import ensure_bundle, is_cached, packaged_bundle

        packaged = packaged_bundle(spec)
        was_cached = is_cached(spec, GLOBAL.cache_dir)
        path = ensure_bundle(spec, offline=GLOBAL.offline, cache_dir=GLOBAL.cache_dir, quiet=quiet)
        source = (f"bundled with restorecli ({path})" if packaged is not None
                  else f"cache {path}" if was_cached else f"downloaded to {path}")
    from .pipeline import JobOptions, run_job

    engines: dict[str | None, object] = {}

    def make_engine(dev: str | None):  # called only once there is an image to restore (torch loads here)
        from .runtime import load_engine

        if dev not in engines:
            engine = load_engine(
                registered.name, task, weights=weights, device=dev or device, precision=precision,
                registry_files=GLOBAL.registry, offline=GLOBAL.offline, cache_dir=GLOBAL.cache_dir,
            )
            if resize is not None:
                if not hasattr(engine, "resize"):
                    raise UsageError(f"--resize is not supported by model '{spec.name}'")
                engine.resize = resize
            engines[dev] = engine
            least = getattr(engine, "min_tile", 0)
            if tile and tile < least and engine.tileable and not quiet:
                err_console.print(f"warning: --tile {tile} is below the smallest tile model {engine.spec.name} takes; "
                                  f"using {least}-pixel tiles", style="yellow", highlight=False, soft_wrap=True)
            if verbose and not quiet:
                err_console.print(_what_runs(engine, source, steps, seed), highlight=False, soft_wrap=True)
        return engines[dev]

    opts = JobOptions(
        task=task, inputs=[input], output=output, mask=mask, recursive=recursive,
        suffix=suffix, ext=ext, quality=quality, overwrite=overwrite, shard=shard_range,
        steps=steps, seed=seed,
        batch_size=batch_size, tile=tile, tile_overlap=tile_overlap, json=json,
        quiet=quiet, verbose=verbose, devices=parse_devices(devices),
    )
    report = run_job(make_engine, opts, err_console)
    if report_path is not None:
        from .html_report import entries_from_records

        loaded = list(engines.values())
        run_info = {
            "task": task, "model": spec.name, "weights": source, "steps": steps, "seed": seed,
            # what ran; the request when no image needed the model (every file skipped)
            "device": ", ".join(str(e.device) for e in loaded) if loaded else f"{device} (model not loaded)",
            "precision": _precision_name(loaded[0].dtype) if loaded else precision,
            "tile": "automatic" if tile is None else tile or "whole image",
            "input": input, "output": output or "next to each input",
        }
        write_report(report_path, title=" ".join(["restore", task, input, *([output] if output else [])]),
                     run_info=run_info, entries=entries_from_records(report.records), quiet=quiet)
    return report.exit_code


def _task_help(task: str) -> str:
    """A task's --help text: what it does, its default model and what that model downloads."""
    summary = TASKS[task][0]
    try:
        from .fetch import download_note
        from .registry import load_registry

        spec = load_registry(tuple(GLOBAL.registry)).default_for(task)
    except RestoreError:  # a broken overlay: its error comes when the command runs
        return summary
    steps = f"{spec.default_steps} step{'s' if spec.default_steps != 1 else ''}"
    return (f"{summary}\n\nDefault model: {spec.name} ({spec.method}, {steps}); {download_note(spec)}. "
            f"'restore models --task {task}' lists the others (--model).")


class _TaskCommand(TyperCommand):
    """A task command whose --help names the task's default model, read from the registry
    (with the --registry overlays) only when the help is shown."""

    def format_help(self, ctx, formatter):  # type: ignore[no-untyped-def]
        self.help = _task_help(self.name)
        return super().format_help(ctx, formatter)


def _task_command(task: str, summary: str, with_mask: bool = False, with_resize: bool = False) -> Callable[..., None]:
    """Build one task command: the shared options, plus --mask and --resize only where they apply."""

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
        report: HtmlReport = None,
    ) -> None:
        if with_mask and mask is None:
            raise UsageError(f"'restore {task}' needs --mask MASK", "white (255) marks the area to fill")
        code = run_task(
            task, input, output, mask=mask, model=model, weights=weights, steps=steps, seed=seed,
            device=device, precision=precision, batch_size=batch_size, tile=tile,
            tile_overlap=tile_overlap, recursive=recursive, suffix=suffix, ext=ext, quality=quality,
            overwrite=overwrite, shard=shard, devices=devices, json=json, quiet=quiet,
            verbose=verbose, resize=resize, report_path=report,
        )
        raise typer.Exit(code)

    command.__doc__ = summary
    command.__name__ = task
    # Typer reads the options from the signature: leave out those this task does not take
    sig = inspect.signature(command, eval_str=True)  # resolved: Typer takes a given signature as it is
    dropped = {"mask"} if not with_mask else set()
    dropped |= {"resize"} if not with_resize else set()
    command.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name not in dropped])
    return command


# task -> (summary, takes --mask, takes --resize: a registered RDDM model serves it)
TASKS = {
    "sr": ("Super-resolve images.", False, False),
    "inpaint": ("Fill the masked area of images (--mask, white = fill).", True, False),
    "face": ("Restore degraded aligned face images (512x512).", False, False),
    "deblur": ("Remove motion blur.", False, True),
    "derain": ("Remove rain streaks.", False, True),
    "lowlight": ("Brighten low-light images.", False, True),
    "shadow": ("Remove shadows (--mask marks the shadow).", True, True),
}
for _task, (_summary, _mask, _resize) in TASKS.items():
    app.command(_task, help=_summary, cls=_TaskCommand)(
        _task_command(_task, _summary, with_mask=_mask, with_resize=_resize))


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


@app.command("bench")
def bench_cmd(
    workloads: Annotated[Optional[list[str]], typer.Argument(help="Workload names (default: all anchors); 'tiny' = small CI shapes.")] = None,
    shape: Annotated[Optional[str], typer.Option("--shape", help="Custom workload MODEL:HxW[:BATCH], e.g. diffir-deblur:1080x1920.")] = None,
    device: Device = "auto",
    precision: Precision = "auto",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per workload (median reported).")] = 5,
    no_reference: Annotated[bool, typer.Option("--no-reference", help="Skip the plain fp32 reference run.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for every workload (default: torch's; tiny workloads use 1).")] = None,
    json: Json = False,
) -> None:
    """Time engines on synthetic inputs (random weights) against the plain fp32 reference path."""
    from .bench import parse_workloads, print_table, run_bench

    report = run_bench(
        parse_workloads(workloads, shape), device=device, precision=precision,
        repeats=repeats, reference=not no_reference, threads=threads,
    )
    if json:
        import json as _json

        typer.echo(_json.dumps(report, indent=2))
    else:
        print_table(report)


# --- weights commands ---


@app.command("models")
def models_cmd(
    json: Json = False,
    task: Annotated[Optional[str], typer.Option("--task", help="Only the models of this task.")] = None,
) -> None:
    """List the registered models: task, method, steps, download size, license, and whether cached (or bundled)."""
    import json as jsonlib

    from .fetch import cache_root, model_rows, models_table
    from .registry import load_registry
    from .tables import print_table

    rows = model_rows(load_registry(tuple(GLOBAL.registry)), GLOBAL.cache_dir)
    rows = [r for r in rows if task is None or r["task"] == task]
    if json:
        typer.echo(jsonlib.dumps(rows, indent=2))
    else:
        print_table(models_table(rows, cache_root(GLOBAL.cache_dir)))


@app.command("fetch")
def fetch_cmd(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models to download (see 'restore models').", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model whose files can be downloaded.")] = False,
    files: Annotated[Optional[list[str]], typer.Option("--file", help="[COMPONENT=]PATH of an official file downloaded by hand (one model).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and convert again even if cached.")] = False,
    quiet: Quiet = False,
) -> None:
    """Download, verify and convert models' weights into the cache ahead of time (progress on stderr)."""
    from .fetch import availability, fetch_models
    from .registry import load_registry

    registry = load_registry(tuple(GLOBAL.registry))
    if all_models:
        specs = [s for s in registry.models.values() if availability(s) == "download"]
    elif models:
        specs = [registry.get(name) for name in models]
    else:
        raise UsageError("name the models to fetch", "e.g. 'restore fetch resshift-realsr-x4-v3', or --all")
    local = None
    if files:
        from .weights import parse_weight_args

        if len(specs) != 1:
            raise UsageError("--file works with one model at a time", "restore fetch MODEL --file COMPONENT=PATH")
        parsed = parse_weight_args(specs[0], files)
        if isinstance(parsed, Path):
            if len(specs[0].components) != 1:
                raise UsageError(f"--file {files[0]}: name the component", "--file COMPONENT=PATH")
            parsed = {next(iter(specs[0].components)): parsed}
        local = parsed
    worst = 0
    for spec, path, error in fetch_models(
        specs, offline=GLOBAL.offline, cache_dir=GLOBAL.cache_dir, console=err_console,
        force=force, files=local, quiet=quiet,
    ):
        if error is not None:
            _print_error(str(error))
            worst = max(worst, error.exit_code)
        elif not quiet:
            err_console.print(f"{spec.name}: ready ({path})", highlight=False, soft_wrap=True)
    raise typer.Exit(worst)


# --- training commands ---


def _parse_params(values: list[str] | None) -> dict[str, object]:
    """KEY=VALUE pairs; values become int, float or str (in that order of preference)."""
    out: dict[str, object] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item} is not KEY=VALUE", "e.g. --param density=0.01")
        value: object = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                pass
        out[key.strip()] = value
    return out


@app.command("degrade")
def degrade_cmd(
    kind: Annotated[str, typer.Argument(help="rain, lowlight, motion, defocus, noise, jpeg, bicubic or realistic.")],
    input: Annotated[Path, typer.Argument(help="Clean image file or folder.")],
    output: Annotated[Path, typer.Argument(help="Output PNG (one input) or folder.")],
    seed: Annotated[int, typer.Option("--seed", help="Run seed; each file's generator is seeded from it and the file name.")] = 0,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Fix a parameter, KEY=VALUE (repeatable); others are drawn.")] = None,
    quiet: Quiet = False,
) -> None:
    """Make degraded copies of clean images (reproducible; parameters recorded in degrade.json)."""
    from .datasets import collect_images, degrade_files
    from .degrade import DEGRADATIONS

    if kind not in DEGRADATIONS:
        raise UsageError(f"unknown degradation '{kind}'", f"use one of: {', '.join(DEGRADATIONS)}")
    try:
        records = degrade_files(collect_images([input]), output, kind, seed=seed, params=_parse_params(param))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not quiet:
        err_console.print(f"wrote {len(records)} degraded image(s) to {output}")


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Argument(help="Method to train; only rddm (residual diffusion) is supported.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: last.pt (resumable), last/best.safetensors, log.jsonl.")],
    clean: Annotated[Optional[list[Path]], typer.Option("--clean", help="Folder of clean images, degraded on the fly (repeatable).")] = None,
    pairs: Annotated[Optional[list[str]], typer.Option("--pairs", help="DEGRADED_DIR,CLEAN_DIR of matching file names (repeatable).")] = None,
    degradation: Annotated[str, typer.Option("--degradation", help="Synthetic degradation for --clean (see 'restore degrade').")] = "rain",
    param: Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Fix a degradation parameter, KEY=VALUE (repeatable).")] = None,
    task: Annotated[str, typer.Option("--task", help="Task command the model serves (derain, lowlight, deblur, ...).")] = "derain",
    name: Annotated[str, typer.Option("--name", help="Model name recorded in the bundle.")] = "rddm-custom",
    objective: Annotated[str, typer.Option("--objective", help="pred_res_noise (two UNets) or pred_res (one UNet).")] = "pred_res_noise",
    dual_output: Annotated[bool, typer.Option("--dual-output", help="Also learn a DDO-style gate mixing the two clean-image estimates.")] = False,
    dim: Annotated[int, typer.Option("--dim", min=8, help="UNet base width (the official models use 64).")] = 16,
    dim_mults: Annotated[str, typer.Option("--dim-mults", help="Width multipliers per level, comma-separated.")] = "1,2,4,8",
    attn_heads: Annotated[int, typer.Option("--attn-heads", min=1, help="Linear-attention heads per level (official: 4).")] = 4,
    attn_dim_head: Annotated[int, typer.Option("--attn-dim-head", min=1, help="Width of each attention head (official: 32).")] = 32,
    pixel_unshuffle: Annotated[int, typer.Option("--pixel-unshuffle", min=1, help="Run the UNet at 1/r resolution on r*r times the channels (1 = official; 2 is ~4x faster).")] = 1,
    pair_fraction: Annotated[float, typer.Option("--pair-fraction", min=0.0, max=1.0, help="Share of crops from --pairs when --clean is also given (0 = by image count).")] = 0.0,
    loss: Annotated[str, typer.Option("--loss", help="l1 or l2.")] = "l1",
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay to a tenth).")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Crops per step (1 works).")] = 4,
    iters: Annotated[int, typer.Option("--iters", min=1, help="Optimizer steps.")] = 10000,
    crop: Annotated[int, typer.Option("--crop", min=16, help="Training crop size (a multiple of 8).")] = 64,
    steps: Annotated[int, typer.Option("--steps", "-s", min=1, help="Sampling steps for validation and the model's default.")] = 5,
    sum_scale: Annotated[float, typer.Option("--sum-scale", help="Noise scale of the schedule (RDDM deraining uses 1).")] = 1.0,
    t_min: Annotated[int, typer.Option("--t-min", min=0, help="Train only t >= this (e.g. 499: a 1-2 step model); 0 = all t, as RDDM.")] = 0,
    ema_decay: Annotated[float, typer.Option("--ema-decay", help="EMA decay of the saved weights.")] = 0.999,
    amp: Annotated[str, typer.Option("--amp", help="auto (fp16 on CUDA), off, fp16 or bf16.")] = "auto",
    device: Device = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seeds data order, crops, degradations, noise and init.")] = 0,
    held_out: Annotated[float, typer.Option("--held-out", min=0.0, max=0.9, help="Fraction of files held out for validation (by name).")] = 0.1,
    val_every: Annotated[int, typer.Option("--val-every", min=0, help="Validate every N steps (0 = only at the end).")] = 500,
    val_size: Annotated[int, typer.Option("--val-size", min=0, help="Centre crop of validation images (0 = whole).")] = 128,
    save_every: Annotated[int, typer.Option("--save-every", min=0, help="Write last.pt every N steps.")] = 500,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.0, help="Stop (and save) after this many seconds.")] = 0.0,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue from a run's last.pt.")] = None,
    half: Annotated[bool, typer.Option("--half", help="Store the bundle's weights in fp16 (half the size).")] = False,
    threads: Annotated[int, typer.Option("--threads", min=0, help="CPU threads for torch (0 = its default; 1 is fastest on a busy machine).")] = 0,
    quiet: Quiet = False,
) -> None:
    """Train an RDDM restoration model; the bundle it writes runs with --weights."""
    if method != "rddm":
        raise UsageError(f"training '{method}' is not supported", "use 'restore train rddm'")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from .runtime import pick_device
    from .train import TrainConfig, train

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
        name=name, task=task, objective=objective, dual_output=dual_output, dim=dim, dim_mults=mults,
        attn_heads=attn_heads, attn_dim_head=attn_dim_head, pixel_unshuffle=pixel_unshuffle, pair_fraction=pair_fraction,
        loss=loss, lr=lr, lr_min=lr / 10, batch_size=batch_size, iters=iters, crop=crop, steps=steps,
        sum_scale=sum_scale, t_min=t_min, ema_decay=ema_decay, amp=amp, seed=seed, degradation=degradation if clean else None,
        degrade_params=_parse_params(param), held_out=held_out, val_every=val_every, val_size=val_size,
        save_every=save_every, time_limit=time_limit, clean=[str(c) for c in clean or []], pairs=pair_list,
    )
    log = (lambda _msg: None) if quiet else (lambda msg: err_console.print(msg, highlight=False))
    result = train(cfg, output, device=pick_device(device), resume=resume, log=log, half=half)
    if not quiet:
        err_console.print(f"wrote {result.bundle}; run it with: restore {task} IMAGE --weights {result.bundle}")


@app.command("eval")
def eval_cmd(
    restored: Annotated[Path, typer.Argument(help="Restored image or folder.")],
    reference: Annotated[Path, typer.Argument(help="Reference (ground-truth) image or folder; files pair by name.")],
    crop_border: Annotated[int, typer.Option("--crop-border", min=0, help="Pixels dropped on each side (SR papers use the scale).")] = 0,
    strip_suffix: Annotated[str, typer.Option("--strip-suffix", help="Suffix to remove from restored names before pairing, e.g. _derain.")] = "",
    resize_reference: Annotated[bool, typer.Option("--resize-reference", help="Resize references to the restored size (bicubic) instead of refusing.")] = False,
    json: Json = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the JSON report to this file.")] = None,
    html: HtmlReport = None,
) -> None:
    """PSNR and SSIM (Y channel and RGB) of restored images against references."""
    from .evaluate import evaluate_pairs, format_table

    check_report_path(html)
    report = evaluate_pairs(
        restored, reference, crop_border=crop_border, strip_suffix=strip_suffix, resize_reference=resize_reference,
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
        from .html_report import entries_from_eval

        run_info = {"task": "eval", "restored": str(restored), "reference": str(reference),
                    "crop border": crop_border, "pairs": len(report.files), "without a partner": len(report.unmatched)}
        write_report(html, title=f"restore eval {restored} {reference}", run_info=run_info,
                     entries=entries_from_eval(report.files), labels=("reference", "restored"), quiet=False)


def _print_error(text: str) -> None:
    """`error: WHAT; WHAT TO DO` as one line on stderr (never wrapped, never read as markup)."""
    from rich.text import Text

    line = " ".join(str(text).split())
    err_console.print(Text.assemble(("error:", "bold red"), " " + line), highlight=False, soft_wrap=True)


# options only some task commands take: what to say when another task is given one
TASK_ONLY_OPTIONS = {
    "--mask": "masks are for 'restore inpaint' and 'restore shadow'",
    "--resize": "it is for RDDM models ('restore derain', 'lowlight', 'deblur -m rddm-deblur', 'shadow')",
}


def _click_error(exc: object) -> str:
    """A Click usage error (unknown option, bad value, missing argument) as one line with a pointer to --help."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "restore"
    option = getattr(exc, "option_name", None)
    if option in TASK_ONLY_OPTIONS and ctx is not None and ctx.info_name in TASKS:
        return f"'{where}' takes no {option}; {TASK_ONLY_OPTIONS[option]}"
    message = str(exc.format_message()).strip().rstrip(".")  # type: ignore[attr-defined]
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    return f"{message}; see '{where} --help'"


def main() -> None:
    """Console-script entry point: every error is one line on stderr with its exit code.

    Click's usage errors (exit 2) are printed as one line instead of Typer's box; `--help`
    (and `restore` without arguments) prints the help as usual. A RestoreError becomes one
    line and its own exit code (errors.EXIT_CODES).
    """
    # Click's exceptions, wherever this Typer takes them from (click, or its vendored copy)
    click_errors = sys.modules[typer.BadParameter.__module__]
    no_args_help = getattr(click_errors, "NoArgsIsHelpError", ())

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="restore", standalone_mode=False)
    except no_args_help as exc:  # `restore` alone: the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        _print_error(_click_error(exc))
        sys.exit(exc.exit_code)
    except typer.Abort:
        _print_error("aborted")
        sys.exit(1)
    except RestoreError as exc:
        _print_error(str(exc))
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
