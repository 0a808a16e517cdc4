"""What a task run says about itself: the `-v` line, the --tile warning and the --report HTML page.

`check_report_path` runs before any work; `say_what_runs` once per loaded engine;
`write_run_page` after the job (also when every file was skipped and no model loaded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RestoreError, UsageError
from ..io.printable import plain

if TYPE_CHECKING:
    from ..engines.base import Engine
    from .report import Report


def check_report_path(path: Path | str | None, keep: Sequence[Path | str] = ()) -> None:
    """--report must name an .html page whose thumbnail folder is free (or a report's own): checked before any work.

    keep: the run's inputs and output; the thumbnail folder is replaced as a whole, so it may hold none of them.
    """
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report {path}: the report is an HTML page", f"name it e.g. {path.with_suffix('.html')}")
    from ..io.outpaths import is_inside, refuse_input_overwrite
    from .html_report import MARKER, thumbs_dir_for

    refuse_input_overwrite(path, keep, what="--report", hint="choose another report name")
    files = thumbs_dir_for(path)
    for kept in keep:
        if is_inside(os.path.realpath(files), os.path.realpath(kept)):
            raise UsageError(
                f"--report {path}: its thumbnail folder {files} would hold {kept}, and a report replaces that folder",
                "choose another report name",
            )
    if os.path.islink(files):
        raise UsageError(
            f"--report {path}: {files} is a symbolic link; a report's thumbnail folder is a real folder",
            "remove the link, or choose another report name",
        )
    if files.exists() and not (files / MARKER).exists() and (not files.is_dir() or any(files.iterdir())):
        raise UsageError(
            f"--report {path}: {files} exists and holds no report thumbnails",
            "choose another report name, or move that folder",
        )


def write_report(
    path: Path | str,
    *,
    title: str,
    run_info: dict[str, Any],
    entries: list[Any],
    quiet: bool,
    console: Any = None,
    labels: tuple[str, str] = ("input", "output"),
) -> None:
    """Write the HTML page of a run (jobs.html_report) and say where it is."""
    from .html_report import write_html_report

    path = Path(path)
    try:
        write_html_report(path, title=title, run_info=run_info, entries=entries, labels=labels)
    except OSError as exc:  # FileExistsError included (checked before the run, but the disk may change)
        raise RestoreError(
            f"cannot write the report {path}: {getattr(exc, 'strerror', None) or exc}",
            "check that its folder is writable, or choose another --report path",
        ) from None
    if not quiet and console is not None:
        console.print(plain(f"wrote report {path}"), highlight=False, soft_wrap=True)


def _precision_name(dtype: object) -> str:
    from ..runtime.device import PRECISIONS

    return next((name for name, d in PRECISIONS.items() if d == dtype), str(dtype))


def _what_runs(engine: Engine, source: str, steps: int, seed: int) -> str:
    """The `-v` line: model, where its weights came from, steps, seed, device and precision."""
    return (
        f"model {engine.spec.name}; weights {source}; {steps} step{'s' if steps != 1 else ''}; seed {seed}; "
        f"device {engine.device}; precision {_precision_name(engine.dtype)}"
    )


def say_what_runs(
    console: Any, engine: Engine, source: str, steps: int, seed: int, *, tile: int | None, verbose: bool
) -> None:
    """Once per loaded engine: warn when --tile is below the model's smallest tile or the precision is
    slow on this CPU; with -v, what runs."""
    least = getattr(engine, "min_tile", 0)
    if tile and tile < least and engine.tileable:
        console.print(
            plain(
                f"warning: --tile {tile} is below the smallest tile model {engine.spec.name} takes; "
                f"using {least}-pixel tiles",
                style="yellow",
            ),
            highlight=False,
            soft_wrap=True,
        )
    from ..runtime.device import slow_precision_note

    note = slow_precision_note(engine.device, engine.dtype)
    if note:
        console.print(plain(f"warning: {note}", style="yellow"), highlight=False, soft_wrap=True)
    if verbose:
        console.print(plain(_what_runs(engine, source, steps, seed)), highlight=False, soft_wrap=True)


def write_run_page(
    path: Path | str,
    report: Report,
    run_info: dict[str, Any],
    engines: Sequence[Engine],
    *,
    device: str,
    precision: str,
    tile: int | None,
    inputs: Sequence[str],
    output: Any,
    quiet: bool,
    console: Any,
) -> None:
    """The --report page of a task run: settings (what ran, or what was asked when no model loaded) and files."""
    from .html_report import entries_from_records

    info = {
        **run_info,
        # what ran; the request when no image needed the model (every file skipped)
        "device": ", ".join(str(e.device) for e in engines) if engines else f"{device} (model not loaded)",
        "precision": _precision_name(engines[0].dtype) if engines else precision,
        "tile": "automatic" if tile is None else tile or "whole image",
        "input": " ".join(inputs),
        "output": str(output) if output is not None else "next to each input",
        # the run from start to end; the files' own times overlap and add up to something else
        "wall time": f"{report.seconds:.2f} s",
    }
    title = " ".join(["restore", run_info["task"], *inputs, *([str(output)] if output is not None else [])])
    write_report(
        path, title=title, run_info=info, entries=entries_from_records(report.records), quiet=quiet, console=console
    )
