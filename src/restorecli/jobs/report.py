"""What a batch run tells its user: per-file records, progress, the summary and the JSON report.

Everything human goes to stderr (stdout may carry an image or the JSON
report). On a terminal, progress is a live bar (count, images/s, ETA); in a
log file (cron, SLURM) it is one line per finished image with the same
numbers. Colours follow rich, which honours NO_COLOR.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from ..errors import ExitCode
from ..io.printable import plain

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class FileRecord:
    """The outcome for one input file."""

    path: str
    output: str | None
    status: str  # done | skipped | failed
    reason: str | None = None  # why it failed or was skipped
    seconds: float = 0.0  # decode + restore (its share of the batch) + encode and write
    warnings: list[str] = field(default_factory=list)
    index: int = 0


@dataclass
class Report:
    """The outcome of a job: one record per input file, totals and the process exit code."""

    task: str
    records: list[FileRecord] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: int | None = None  # exit code of the signal that stopped the run, if any

    def _count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def done(self) -> int:
        return self._count(DONE)

    @property
    def skipped(self) -> int:
        return self._count(SKIPPED)

    @property
    def failed(self) -> int:
        return self._count(FAILED)

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return self.interrupted
        return ExitCode.FAILED if self.failed else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        files = [{k: v for k, v in asdict(r).items() if k != "index"} for r in self.records]
        return {
            "task": self.task,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted is not None,
            "exit_code": self.exit_code,
            "files": files,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress and per-file messages on stderr; thread-safe (workers and writers report from threads)."""

    def __init__(self, console: Console, total: int, *, quiet: bool = False, verbose: bool = False) -> None:
        self.console, self.total, self.quiet, self.verbose = console, total, quiet, verbose
        self.count = 0
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.bar = None
        self.tile_bar = None  # a tiled image's own bar, on a terminal
        self.tile_task = None
        if console.is_terminal and not quiet and total > 1:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self.task = self.bar.add_task("restoring", total=total, rate="")
            self.bar.start()

    def rate(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        per_s = self.count / elapsed
        eta = (self.total - self.count) / per_s if per_s > 0 else 0.0
        return per_s, eta

    def note(self, text: str, *, level: str = "info", style: str | None = None) -> None:
        """level: 'error' (always shown), 'info' (not with -q), 'debug' (only with -v)."""
        if level == "info" and self.quiet or level == "debug" and not self.verbose:
            return
        with self.lock:  # a newline in a file name never splits a line, a [/] in it is no markup
            self.console.print(plain(text, style=style or ""), highlight=False, soft_wrap=True)

    # lines a tiled image may print when stderr is not a terminal (-v): at 25, 50, 75 and 100 %
    TILE_LINES = 4

    def tile(self, done: int, total: int) -> None:
        """Progress inside one image restored in tiles: a bar on a terminal (not with -q); elsewhere, with -v,
        at most TILE_LINES lines per image (a small --tile can mean hundreds of tiles)."""
        if total <= 1 or self.quiet:
            return
        if self.console.is_terminal:
            self._tile_bar(done, total)
        elif self.verbose and done * self.TILE_LINES // total > (done - 1) * self.TILE_LINES // total:
            self.note(f"  tiles {done}/{total}", style="dim", level="debug")

    def _tile_bar(self, done: int, total: int) -> None:
        """A row 'tiles N/M' under the run's bar (or a bar of its own for a single image); removed when done."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as Bar

        with self.lock:
            if self.tile_task is None:
                if self.bar is None:  # one image: only one live display may run on a console
                    self.tile_bar = Bar(
                        TextColumn("{task.description}"),
                        BarColumn(),
                        MofNCompleteColumn(),
                        console=self.console,
                        transient=True,
                    )
                    self.tile_bar.start()
                self.tile_task = (self.bar or self.tile_bar).add_task("  tiles", total=total, rate="")
            owner = self.bar or self.tile_bar
            owner.update(self.tile_task, completed=done, total=total)
            if done >= total:
                owner.remove_task(self.tile_task)
                self.tile_task = None
                if self.tile_bar is not None:
                    self.tile_bar.stop()
                    self.tile_bar = None

    def finished(self, record: FileRecord) -> None:
        """One image left the pipeline (done or failed): advance the count, say so."""
        with self.lock:
            self.count += 1
            per_s, eta = self.rate()
            if self.bar is not None:
                self.bar.update(self.task, completed=self.count, rate=f"{per_s:.2f} img/s")
        if record.status == FAILED:
            self.note(f"failed: {record.path}: {record.reason}", level="error", style="red")
        elif self.bar is None:
            self.note(
                f"[{self.count}/{self.total}] {record.path} -> {record.output or '<stdout>'} "
                f"({record.seconds:.1f} s this image; run: {per_s:.2f} img/s, ETA {_clock(eta)})"
            )
        for warning in record.warnings:
            self.note(f"warning: {record.path}: {warning}", style="yellow")

    def close(self) -> None:
        if self.tile_bar is not None:
            self.tile_bar.stop()
            self.tile_bar = None
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def summary(self, report: Report) -> None:
        parts = [f"{report.done} restored", f"{report.skipped} skipped", f"{report.failed} failed"]
        line = ", ".join(parts) + f" in {_clock(report.seconds)} wall time"
        if report.done:
            line += f" ({report.done / max(report.seconds, 1e-9):.2f} images/s)"
        if report.skipped:
            line += "; skipped outputs already exist (--overwrite to redo)"
        if report.interrupted is not None:
            line = "interrupted: " + line + "; finished outputs kept, rerun to resume"
        style = "red" if report.failed or report.interrupted else "green"
        self.note(line, level="error" if report.interrupted else "info", style=style)
