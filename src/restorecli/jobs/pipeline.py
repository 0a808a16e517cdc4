"""The batch pipeline behind every task command: files in, restored files out, a report at the end.

One job: find the inputs and name the outputs (`discovery`), skip outputs that
already exist (so a rerun resumes), decode ahead on a thread pool while the
engine works, group same-size images into batches, restore them (`restorer`:
seeds, tiles, out-of-memory retries), and encode and write each result
atomically on the same pool. A file that cannot be read, restored or written
is reported with its path and reason and the batch goes on; the exit code
says whether anything failed (0 / 1), was interrupted (130 Ctrl-C, 143
SIGTERM), while usage and weights errors (2-5) stop the job before any work.

With several devices, one worker thread per device pulls batches from the
same queue; decoding, tiling and blending stay on the CPU, and only what the
engine sends to its device leaves it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ..errors import ImageFailed, InputError
from ..interrupts import STOPPED, exit_code_of, sigterm_raises
from ..io.files import remove_temp_files, write_atomic
from ..io.imageio import FORMAT_EXT, Picture, encode_image, format_for_ext, read_image, read_mask
from .discovery import Item, MaskFinder, discover, plan_outputs, take_shard
from .options import JobOptions
from .outcheck import OutputFolders
from .report import DONE, FAILED, SKIPPED, FileRecord, Progress, Report

if TYPE_CHECKING:  # torch, the engines and the restorer load only once there is an image to restore,
    from torch import Tensor  # so a rerun that skips every file starts fast

    from ..engines.base import Engine
    from ..runtime.restorer import Restorer

__all__ = ["JobOptions", "Report", "FileRecord", "Plan", "plan_job", "run_job"]


MakeEngine = Callable[[str | None], "Engine"]


@dataclass
class _Decoded:
    item: Item
    pic: Picture | None = None
    image: Tensor | None = None
    mask: Tensor | None = None
    seconds: float = 0.0
    error: str | None = None


def prepare(opts: JobOptions) -> tuple[list[Item], list[str]]:
    """Inputs of this shard with their outputs and masks; raises UsageError for bad arguments."""
    masks = MaskFinder(opts.mask) if opts.mask else None
    exclude: frozenset[Path] = frozenset()
    if opts.output not in (None, "-") and Path(opts.output).is_dir():
        exclude = frozenset({Path(opts.output).resolve()})  # an output folder inside a scanned tree
    items, notes = discover(
        opts.inputs, recursive=opts.recursive, relative_to=opts.relative_to, exclude=exclude, stdin=opts.stdin
    )
    items = take_shard(plan_outputs(items, opts), opts.shard)
    if masks is not None:
        masks.assign(items)
    return items, notes


@dataclass
class Plan:
    """What a job will do, known before any weights are looked up: the files to restore, and the
    records of those already failed (unreadable input, unwritable folder) or skipped (output exists)."""

    todo: list[Item]
    records: list[FileRecord]
    notes: list[str]
    start: float
    folder_failures: dict[str, int]  # reason -> how many files it failed


def plan_job(opts: JobOptions) -> Plan:
    """Check inputs, masks and outputs (UsageError for bad arguments) and sort the files.

    Runs before the weights are fetched, so a typo in a path costs no download, and a run
    whose outputs all exist (or cannot be written) needs no model at all.
    """
    start = time.monotonic()
    items, notes = prepare(opts)
    records: list[FileRecord] = []
    todo: list[Item] = []
    # one probe per output folder: a read-only folder fails its files now, not after the model ran
    writable = OutputFolders()
    folder_failures: dict[str, int] = {}  # one line per unwritable folder, not one per file in it
    for item in items:
        out = str(item.output) if item.output is not None else None
        if item.error is not None:
            records.append(FileRecord(item.display, out, FAILED, item.error, index=item.index))
        elif item.output is not None and item.output.is_dir():  # nothing to skip: the file cannot be written
            reason = f"a folder is in the way: {item.output} is a folder, not a file"
            records.append(FileRecord(item.display, out, FAILED, reason, index=item.index))
        elif item.output is not None and item.output.exists() and not opts.overwrite:
            records.append(FileRecord(item.display, out, SKIPPED, "output exists", index=item.index))
        elif (unwritable := writable.problem(item.output)) is not None:
            records.append(FileRecord(item.display, out, FAILED, unwritable, index=item.index))
            folder_failures[unwritable] = folder_failures.get(unwritable, 0) + 1
        else:
            todo.append(item)
    return Plan(todo, records, notes, start, folder_failures)


def run_job(
    make_engine: MakeEngine, opts: JobOptions, console_err: Console | None = None, plan: Plan | None = None
) -> Report:
    """Restore every input of `opts` (as sorted by `plan_job`, done here unless given); returns the
    report (its `exit_code` is the process exit code)."""
    console = console_err or Console(stderr=True)
    plan = plan if plan is not None else plan_job(opts)
    start, todo, notes, folder_failures = plan.start, plan.todo, plan.notes, plan.folder_failures
    report = Report(task=opts.task)
    report.records.extend(plan.records)
    progress = Progress(console, len(todo), quiet=opts.quiet, verbose=opts.verbose)
    for note in notes:
        progress.note(f"warning: {note}", style="yellow")
    for reason, count in folder_failures.items():
        progress.note(f"failed: {reason} ({count} file{'s' if count != 1 else ''})", level="error", style="red")
    for record in report.records:
        if record.status == FAILED and record.reason in folder_failures:
            continue
        if record.status == FAILED:
            progress.note(f"failed: {record.path}: {record.reason}", level="error", style="red")
        else:
            progress.note(f"skipped: {record.path} ({record.output} exists)", level="debug")
    job = _Job(make_engine, opts, report, progress)
    try:
        try:
            with sigterm_raises():  # SIGTERM (schedulers, `kill`) stops the job like Ctrl-C does
                job.run(todo)
        except STOPPED as exc:
            report.interrupted = exit_code_of(exc)
            progress.note("interrupted: finishing the images already restored", level="error")
        finally:
            job.finish()
    except STOPPED as exc:  # a second Ctrl-C: stop writing too
        report.interrupted = report.interrupted or exit_code_of(exc)
        job.abort()
    finally:
        remove_temp_files()
        progress.close()
    report.records.sort(key=lambda r: r.index)
    report.seconds = time.monotonic() - start
    progress.summary(report)
    if opts.json:
        sys.stdout.write(report.to_json() + "\n")
        sys.stdout.flush()
    return report


class _Job:
    """The running part of a job: decode pool, batcher, one worker per device, writers."""

    def __init__(self, make_engine: MakeEngine, opts: JobOptions, report: Report, progress: Progress) -> None:
        self.make_engine, self.opts, self.report, self.progress = make_engine, opts, report, progress
        threads = opts.io_threads or min(8, os.cpu_count() or 2)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="restorecli-io")
        self.stop = threading.Event()
        self.aborted = False
        self.lock = threading.Lock()
        workers = max(1, len(opts.devices or [None]))
        self.depth = max(2, 2 * opts.batch_size * workers)
        self.write_slots = threading.Semaphore(self.depth + workers)
        self.errors: list[BaseException] = []

    # ---- orchestration --------------------------------------------------------
    def run(self, todo: list[Item]) -> None:
        if not todo:
            return  # every file skipped or failed before any work: torch is never imported
        from ..io import pixels  # noqa: F401  (torch: imported here, in the main thread, before the pool)
        from ..runtime import restorer  # noqa: F401  (torch: imported here, in the main thread, before the pool)

        batches = _Batcher(self._decoded(todo), self.opts.batch_size, self._failed_decode)
        devices: list[str | None] = list(self.opts.devices or [None])
        if len(devices) == 1:
            self._work(devices[0], batches)
            return
        threads = [
            threading.Thread(target=self._guarded_work, args=(dev, batches), daemon=True, name=f"restorecli-{dev}")
            for dev in devices
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.1)
        if self.errors:
            raise self.errors[0]

    def _guarded_work(self, device: str | None, batches: _Batcher) -> None:
        try:
            self._work(device, batches)
        except BaseException as exc:  # surfaced in the main thread; the other workers stop
            self.errors.append(exc)
            self.stop.set()

    def _work(self, device: str | None, batches: _Batcher) -> None:
        from ..runtime.restorer import Restorer

        restorer: Restorer | None = None
        while not self.stop.is_set():
            batch = batches.next()
            if batch is None:
                return
            if restorer is None:  # built only once there is work: a resumed, finished run loads no model
                engine = self.make_engine(device)
                restorer = Restorer(
                    engine,
                    steps=self.opts.steps,
                    seed=self.opts.seed,
                    tile=self.opts.tile,
                    overlap=self.opts.tile_overlap,
                    note=lambda text: self.progress.note(text, level="debug"),
                    on_tile=self.progress.tile,
                )
            height, width = batch[0].pic.size  # type: ignore[union-attr]
            tile = restorer.tile_for(height, width)
            self.progress.note(
                f"restoring {len(batch)} image(s) of {width}x{height}"
                + (f" in {tile}-pixel tiles" if tile else "")
                + (f" on {device}" if device else ""),
                level="debug",
            )
            t0 = time.monotonic()
            results = restorer.run([d.image for d in batch], [d.mask for d in batch])  # type: ignore[misc]
            share = (time.monotonic() - t0) / len(batch)
            for d, result in zip(batch, results):
                d.image = d.mask = None
                self.write_slots.acquire()
                self.pool.submit(self._write, d, result, share)

    def finish(self) -> None:
        """Let decodes stop and queued writes (finished restorations) complete."""
        self.stop.set()
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        self.aborted = True
        self.stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- decoding -------------------------------------------------------------
    def _decoded(self, todo: list[Item]) -> Iterator[_Decoded]:
        """Decode ahead on the pool, in order, at most `depth` images in flight."""
        pending = []
        source = iter(todo)
        for item in source:
            pending.append(self.pool.submit(self._decode, item))
            if len(pending) >= self.depth:
                break
        while pending and not self.stop.is_set():
            done = pending.pop(0).result()
            nxt = next(source, None)
            if nxt is not None:
                pending.append(self.pool.submit(self._decode, nxt))
            yield done

    def _decode(self, item: Item) -> _Decoded:
        if self.stop.is_set():
            return _Decoded(item, error="not started (interrupted)")
        from ..io.pixels import mask_tensor, to_tensor

        t0 = time.monotonic()
        try:
            pic = read_image(
                item.source if item.source is not None else item.data or b"", max_pixels=self.opts.max_pixels
            )
            mask = None
            if item.mask is not None:
                try:
                    bits = read_mask(item.mask, max_pixels=self.opts.max_pixels)
                except InputError as exc:  # say it is the mask that cannot be read
                    raise InputError(f"mask {item.mask}: {exc}") from None
                if bits.shape != pic.size:
                    raise InputError(
                        f"mask {item.mask} is {bits.shape[1]}x{bits.shape[0]} but the image is "
                        f"{pic.size[1]}x{pic.size[0]}",
                        "give a mask of the same size",
                    )
                mask = mask_tensor(bits)
            image = to_tensor(pic)
        except InputError as exc:
            return _Decoded(item, error=str(exc), seconds=time.monotonic() - t0)
        except Exception as exc:
            return _Decoded(item, error=f"cannot read: {type(exc).__name__}: {exc}", seconds=time.monotonic() - t0)
        return _Decoded(item, pic, image, mask, time.monotonic() - t0)

    def _failed_decode(self, d: _Decoded) -> None:
        if not self.stop.is_set():
            self._record(d.item, FAILED, d.error, d.seconds)

    # ---- writing --------------------------------------------------------------
    def _write(self, d: _Decoded, result: Tensor | ImageFailed, restore_s: float) -> None:
        from ..io.pixels import from_tensor

        t0 = time.monotonic()
        try:
            if isinstance(result, ImageFailed):
                self._record(d.item, FAILED, str(result), d.seconds + restore_s)
                return
            pic = from_tensor(result, d.pic)  # type: ignore[arg-type]
            fmt = self._format(d)
            data, lost = encode_image(pic, fmt, quality=self.opts.quality)
            if self.aborted:
                return
            if d.item.output is None:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                write_atomic(d.item.output, data)
            lost = [*(d.pic.warnings if d.pic is not None else []), *lost]  # e.g. frames not restored
            self._record(d.item, DONE, None, d.seconds + restore_s + time.monotonic() - t0, lost)
        except Exception as exc:
            where = d.item.output or "stdout"
            self._record(d.item, FAILED, f"cannot write {where}: {type(exc).__name__}: {exc}", d.seconds + restore_s)
        finally:
            self.write_slots.release()

    def _format(self, d: _Decoded) -> str:
        if d.item.output is not None:
            return format_for_ext(d.item.output.suffix) or "PNG"
        if self.opts.ext:
            return format_for_ext(self.opts.ext) or "PNG"
        fmt = d.pic.format if d.pic is not None else None
        return fmt if fmt in FORMAT_EXT else "PNG"

    def _record(
        self, item: Item, status: str, reason: str | None, seconds: float, warnings: list[str] | None = None
    ) -> None:
        record = FileRecord(
            item.display,
            str(item.output) if item.output is not None else None,
            status,
            reason,
            round(seconds, 3),
            list(warnings or []),
            item.index,
        )
        with self.lock:
            self.report.records.append(record)
        self.progress.finished(record)


class _Batcher:
    """Groups decoded images of the same size (and mask presence) into batches; thread-safe.

    Looks at most a few batches ahead, so a folder of mixed sizes still streams.
    """

    def __init__(self, source: Iterator[_Decoded], batch_size: int, failed: Callable[[_Decoded], None]) -> None:
        self.source, self.size, self.failed = source, max(1, batch_size), failed
        self.groups: dict[tuple[int, int, bool], list[_Decoded]] = {}
        self.lock = threading.Lock()
        self.limit = self.size * 4

    def next(self) -> list[_Decoded] | None:
        with self.lock:
            while True:
                for key, group in self.groups.items():
                    if len(group) >= self.size:
                        return self._take(key)
                if sum(len(g) for g in self.groups.values()) >= self.limit:
                    return self._take(next(iter(self.groups)))
                d = next(self.source, None)
                if d is None:
                    return self._take(next(iter(self.groups))) if self.groups else None
                if d.error is not None:
                    self.failed(d)
                    continue
                key = (*d.pic.size, d.mask is not None)  # type: ignore[union-attr]
                self.groups.setdefault(key, []).append(d)

    def _take(self, key: tuple[int, int, bool]) -> list[_Decoded]:
        group = self.groups.pop(key)
        batch, rest = group[: self.size], group[self.size :]
        if rest:
            self.groups[key] = rest
        return batch
