"""What a task run says about itself: the `-v` line, the --tile warning and the --report HTML page.

`check_report_path` runs before any work; `say_what_runs` once per loaded engine;
`write_run_page` after the job (also when every file was skipped and no model loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RestoreError, UsageError
from ..io.printable import plain

if TYPE_CHECKING:
    from ..engines.base import Engine
    from .report import Report


def check_report_path(path: Path | str | None) -> None:
    """--report must name an .html page whose thumbnail folder is free (or a report's own): checked before any work."""
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report {path}: the report is an HTML page", f"name it e.g. {path.with_suffix('.html')}")
    from .html_report import MARKER, thumbs_dir_for

    files = thumbs_dir_for(path)
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
    }
    title = " ".join(["restore", run_info["task"], *inputs, *([str(output)] if output is not None else [])])
    write_report(
        path, title=title, run_info=info, entries=entries_from_records(report.records), quiet=quiet, console=console
    )
