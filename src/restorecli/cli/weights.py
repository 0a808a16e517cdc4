"""The weights commands: `restore models` (what is registered and cached), `fetch` and `convert`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..io.printable import plain
from .helptext import Command
from .options import GLOBAL, Json, Quiet, err_console, print_error


def models_cmd(
    name: Annotated[
        Optional[str], typer.Argument(help="Show one model in full: license, files, sources, cache.")
    ] = None,
    json: Json = False,
    task: Annotated[Optional[str], typer.Option("--task", help="Only the models of this task.")] = None,
) -> None:
    """List the registered models: task, method, steps, download size, license, and whether cached (or bundled)."""
    import json as jsonlib

    from ..io.tables import print_table
    from ..weights.cache import cache_root
    from ..weights.catalog import model_details, model_rows, models_table
    from ..weights.registry import load_registry

    registry = load_registry(tuple(GLOBAL.registry))
    rows = model_rows(registry, GLOBAL.cache_dir)
    if name is not None:
        registry.get(name)  # an unknown name: usage error with the close names
        row = next(r for r in rows if r["name"] == name)
        typer.echo(jsonlib.dumps(row, indent=2) if json else model_details(row))
        return
    if task is not None:
        known = sorted({r["task"] for r in rows})
        if task not in known:
            raise UsageError(f"no registered model serves task '{task}'", f"known tasks: {', '.join(known)}")
        rows = [r for r in rows if r["task"] == task]
    if json:
        typer.echo(jsonlib.dumps(rows, indent=2))
    else:
        print_table(models_table(rows, cache_root(GLOBAL.cache_dir)))


def fetch_cmd(
    models: Annotated[
        Optional[list[str]], typer.Argument(help="Models to download (see 'restore models').", show_default=False)
    ] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model whose files can be downloaded.")] = False,
    files: Annotated[
        Optional[list[str]],
        typer.Option("--file", help="[COMPONENT=]PATH of an official file downloaded by hand (one model)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and convert again even if cached.")] = False,
    quiet: Quiet = False,
) -> None:
    """Download, verify and convert models' weights into the cache ahead of time (progress on stderr)."""
    from ..runtime.load import fetch_models
    from ..weights.catalog import availability
    from ..weights.registry import load_registry

    registry = load_registry(tuple(GLOBAL.registry))
    if all_models:
        specs = [s for s in registry.models.values() if availability(s) == "download"]
    elif models:
        specs = [registry.get(name) for name in models]
    else:
        raise UsageError("name the models to fetch", "e.g. 'restore fetch resshift-realsr-x4-v3', or --all")
    local = None
    if files:
        from ..weights.convert import parse_weight_args

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
        specs,
        offline=GLOBAL.offline,
        cache_dir=GLOBAL.cache_dir,
        console=err_console,
        force=force,
        files=local,
        quiet=quiet,
    ):
        if error is not None:
            print_error(str(error))
            worst = max(worst, error.exit_code)
        elif not quiet:
            err_console.print(plain(f"{spec.name}: ready ({path})"), highlight=False, soft_wrap=True)
    raise typer.Exit(worst)


def convert(
    model: Annotated[str, typer.Argument(help="Registered model the files belong to.")],
    files: Annotated[list[str], typer.Argument(help="[COMPONENT=]PATH of each official file.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Bundle to write (.safetensors).")],
) -> None:
    """Convert official checkpoint files (.pth/.pt/.ckpt) into one safetensors bundle."""
    from ..errors import WeightsError
    from ..jobs.outcheck import check_output_file
    from ..runtime.load import convert_files
    from ..weights.bundle import write_bundle
    from ..weights.convert import parse_weight_args
    from ..weights.registry import load_registry

    spec = load_registry(tuple(GLOBAL.registry)).get(model)
    parsed = parse_weight_args(spec, files)
    if isinstance(parsed, Path):
        parsed = {next(iter(spec.components)): parsed}
    check_output_file(
        out, parsed.values(), option="-o", suffix=".safetensors", what="the bundle", error=WeightsError
    )  # before anything is read: never onto a source file, never a .txt by mistake
    states, sources = convert_files(spec, parsed)
    try:
        write_bundle(out, spec, states, sources)
    except Exception as exc:  # a full disk or an unwritable folder is one line, not a traceback
        from ..jobs.outcheck import write_error

        raise write_error(out, exc) from None
    count = sum(len(s) for s in states.values())
    err_console.print(plain(f"wrote {out} ({count} tensors, model {spec.name})"), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("models", cls=Command)(models_cmd)
    app.command("fetch", cls=Command)(fetch_cmd)
    app.command("convert", cls=Command)(convert)
