"""What a download shows: status lines and byte progress bars on stderr (a terminal), or nothing.

Everything goes to the given rich console, or to stderr only when it is a
terminal (a log file gets no bars), or nowhere with `quiet`. huggingface_hub
draws its own tqdm bars; `ByteProgress.tqdm_class` hands it one that draws on
ours instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ByteBar:
    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self.progress, self.task = progress, task

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def reset(self, completed: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, total=total)


class ByteProgress:
    """Byte progress bars (bytes, speed, ETA) on a rich console, or nothing."""

    def __init__(self, rich_progress: Any = None) -> None:
        self.rich = rich_progress

    def bar(self, label: str, total: int | None, initial: int = 0) -> ByteBar:
        if self.rich is None:
            return ByteBar()
        from ..io.printable import markup_safe

        return ByteBar(self.rich, self.rich.add_task(markup_safe(label), total=total, completed=initial))

    def tqdm_class(self, label: str) -> type:
        """A tqdm class huggingface_hub can drive, drawing on our bar instead of printing its own."""
        from tqdm.std import tqdm

        owner = self

        class _HubBar(tqdm):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.pop("name", None)
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)
                self._bar = owner.bar(label, kwargs.get("total"), kwargs.get("initial") or 0)

            def update(self, n: float | None = 1) -> bool | None:
                if n:
                    self._bar.advance(int(n))
                return super().update(n)

        return _HubBar


class Reporter:
    """Where status lines and progress go: the given console, stderr if it is a terminal, or nowhere."""

    def __init__(self, console: Any, quiet: bool) -> None:
        if quiet:
            self.console = None
        elif console is None:
            from rich.console import Console

            stderr = Console(stderr=True)
            self.console = stderr if stderr.is_terminal else None
        else:
            self.console = console

    def say(self, message: str, style: str = "") -> None:
        """One status line; `message` carries outside text (URLs, names, reasons): never markup."""
        if self.console is not None:
            from ..io.printable import plain

            self.console.print(plain(message, style), highlight=False, soft_wrap=True)  # never wrap a URL or path

    @contextmanager
    def progress(self) -> Iterator[ByteProgress]:
        if self.console is None:
            yield ByteProgress()
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        ) as rich_progress:
            yield ByteProgress(rich_progress)
