"""`--report PATH.html`: one self-contained HTML page for a run, with small thumbnails beside it.

The page shows every input next to its output (a before/after slider when the two
have the same aspect ratio, e.g. derain or sr once the input is upscaled to the
output's thumbnail size; side by side otherwise), each file's status, time,
reason and warnings, the run's settings (model, steps, seed, device, ...) and,
for `restore eval`, PSNR/SSIM per file and on average.

Layout on disk: `PATH.html` plus a sibling folder `PATH_files/` holding one small
JPEG (PNG when the image has alpha) per picture, at most `thumb_size` pixels on
the longer side, so a report over thousands of large images stays light. The
folder is built under a temporary name and swapped in, then the page is written
to a temporary file and renamed: a reader never sees a half-written report.

Self-contained: no external resources, no CDN; inline CSS and one inline script
allowed by a Content-Security-Policy hash (so even a markup injection could not
run script). Every file name, reason, warning and run value is HTML-escaped.
Opening the page with `#selftest` appended to its URL runs a small check (every
image decoded, the sliders move, no errors) and writes the result into
`<pre id="selftest">`; the browser test reads it with `chromium --dump-dom`.

Depends only on the standard library, numpy and Pillow, so any layer can import it.

    from restorecli.html_report import ReportEntry, write_html_report, entries_from_records
    write_html_report("run.html", title="restore derain in/ out/",
                      run_info={"task": "derain", "model": "rddm-derain-small", "steps": 1,
                                "seed": 0, "device": "cpu"},
                      entries=entries_from_records(report.records))
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from .html_assets import _CSS, _SCRIPT, METRIC_LABELS
from .html_thumbs import DECODE_BUDGET, _fit, _open_picture, _same_aspect, _save_thumb, _Thumb, peek_pixels

warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # as restorecli.imageio

THUMB_SIZE = 320
JPEG_QUALITY = 85
MARKER = ".restorecli-report"  # marks a thumbnail folder as ours, so replacing it can never delete user files


@dataclass
class ReportEntry:
    """One file of the run. `input`/`output` are paths (None when there is none, e.g. a failed file)."""

    input: str | None
    output: str | None = None
    status: str = "done"  # done | skipped | failed (any other word is shown as is)
    reason: str | None = None
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    metrics: dict[str, float] | None = None  # psnr_y, ssim_y, psnr (or psnr_rgb), ssim (or ssim_rgb), ...


def entries_from_records(records: Iterable[Any]) -> list[ReportEntry]:
    """ReportEntry list from `restorecli.report.FileRecord`s (or anything with the same attributes)."""
    return [
        ReportEntry(
            input=str(r.path) if r.path is not None else None,
            output=str(r.output) if getattr(r, "output", None) else None,
            status=str(getattr(r, "status", "done")),
            reason=getattr(r, "reason", None),
            seconds=getattr(r, "seconds", None),
            warnings=list(getattr(r, "warnings", None) or ()),
        )
        for r in records
    ]


def entries_from_eval(files: Iterable[Mapping[str, Any]]) -> list[ReportEntry]:
    """ReportEntry list from `EvalReport.files` dicts (restored, reference, psnr_y, ...).

    The reference is the "before" side and the restored file the "after" side: pass
    `labels=("reference", "restored")` to `write_html_report`.
    """
    skip = {"name", "restored", "reference"}
    return [
        ReportEntry(
            input=str(f["reference"]),
            output=str(f["restored"]),
            status="done",
            metrics={k: float(v) for k, v in f.items() if k not in skip and _is_number(v)},
        )
        for f in files
    ]


def write_html_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    run_info: Mapping[str, Any],
    entries: Sequence[ReportEntry],
    labels: tuple[str, str] = ("input", "output"),
    thumb_size: int = THUMB_SIZE,
    workers: int | None = None,
) -> Path:
    """Write the page to `path` and its thumbnails to `<path without .html>_files/`; return the page path.

    run_info: shown as a table in the given order (model, steps, seed, device, ...); values are
    printed with str(), None as a dash. labels: names of the two sides (before, after).
    Unreadable or missing images become "preview unavailable"; nothing here raises for a bad
    image. Raises FileExistsError if the thumbnail folder exists and is not a report's.
    """
    page = Path(path)
    files_dir = thumbs_dir_for(page)
    if files_dir.exists() and not (files_dir / MARKER).exists() and any(files_dir.iterdir()):
        raise FileExistsError(f"{files_dir} exists and was not written by a report; not replacing it")
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{files_dir.name}.", suffix=".tmp", dir=page.parent))
    try:
        (tmp_dir / MARKER).write_text("thumbnails of a restorecli HTML report; safe to delete with it\n")
        n = max(1, min(8, workers or min(4, os.cpu_count() or 1)))
        jobs = list(enumerate(entries))
        if n == 1 or len(jobs) < 4:
            views = [_entry_view(i, e, tmp_dir, thumb_size) for i, e in jobs]
        else:
            with ThreadPoolExecutor(n) as pool:
                views = list(pool.map(lambda ie: _entry_view(ie[0], ie[1], tmp_dir, thumb_size), jobs))
        text = _render_page(page, files_dir, title, run_info, entries, views, labels, thumb_size)
        _swap_in(tmp_dir, files_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    _write_atomic(page, text.encode("utf-8"))
    return page


def thumbs_dir_for(page: Path) -> Path:
    """`report.html` -> `report_files` (beside it)."""
    page = Path(page)
    stem = page.stem if page.suffix.lower() in (".html", ".htm") else page.name
    return page.parent / f"{stem}_files"


# ---- thumbnails ---------------------------------------------------------------------------


@dataclass
class _View:
    before: _Thumb
    after: _Thumb | None  # None: the entry has no output
    slider: bool


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def _entry_view(index: int, entry: ReportEntry, folder: Path, limit: int) -> _View:
    with DECODE_BUDGET.hold(peek_pixels(entry.input) + peek_pixels(entry.output)):
        return _decoded_view(index, entry, folder, limit)


def _decoded_view(index: int, entry: ReportEntry, folder: Path, limit: int) -> _View:
    pics: dict[str, Image.Image | None] = {}
    full: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    for side, p in (("before", entry.input), ("after", entry.output)):
        if not p:
            continue
        try:
            pics[side], full[side] = _open_picture(p, limit, side)
        except Exception as exc:  # noqa: BLE001 - a report must never fail on one bad image
            pics[side] = None
            errors[side] = _short_error(exc)
    before_im, after_im = pics.get("before"), pics.get("after")
    slider = before_im is not None and after_im is not None and _same_aspect(full["before"], full["after"])
    stem = f"{index:06d}"

    def make(side: str, im: Image.Image | None, size: tuple[int, int] | None) -> _Thumb:
        if im is None:
            return _Thumb(error=errors.get(side, "no file"))
        try:
            thumb = _save_thumb(im, size or _fit(full[side], limit), folder, f"{stem}-{side}")
        except Exception as exc:  # noqa: BLE001
            return _Thumb(error=_short_error(exc), full=full[side])
        thumb.full = full[side]
        return thumb

    after = make("after", after_im, None) if entry.output else None
    # the "before" thumbnail is drawn at the "after" thumbnail's size when they are compared by
    # the slider, so an sr input is upscaled (bicubic) and the two line up pixel for pixel
    before_size = (after.width, after.height) if slider and after is not None and after.name else None
    before = make("before", before_im, before_size) if entry.input else _Thumb(error="no file")
    slider = slider and before.name is not None and after is not None and after.name is not None
    return _View(before, after, slider)


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


# ---- files on disk ------------------------------------------------------------------------


def _swap_in(new_dir: Path, final: Path) -> None:
    """Replace `final` (a previous report's thumbnails, or nothing) by `new_dir`."""
    old = None
    if os.path.lexists(final):  # a dangling link too: it is moved aside like a folder
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{os.urandom(3).hex()}")
        os.replace(final, old)
    os.replace(new_dir, final)
    os.chmod(final, 0o755 & ~_umask())
    if old is not None:
        if old.is_symlink():
            old.unlink()  # the link goes; the folder it pointed to is not the report's to delete
        else:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- the page -----------------------------------------------------------------------------


def _text(value: Any) -> str:
    """Escaped text; undecodable file-name bytes (surrogate escapes) become U+FFFD."""
    s = "" if value is None else str(value)
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(s, quote=True)


def _href(target: str | os.PathLike[str], base: Path) -> str:
    """A URL for `target`, relative to the folder `base` when possible, escaped for an attribute."""
    target_path = Path(os.path.abspath(target))
    try:
        rel = os.path.relpath(target_path, os.path.abspath(base))
        url = quote(os.fsencode(rel.replace(os.sep, "/")), safe="/")
    except ValueError:  # another drive (Windows)
        url = target_path.as_uri()
    return html.escape(url, quote=True)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.2f} s" if s < 60 else f"{int(s // 60)}:{int(round(s % 60)):02d} min"


def _fmt_metric(key: str, value: float) -> str:
    label, unit = METRIC_LABELS.get(key, (key, ""))
    if math.isinf(value):
        num = "\u221e" if value > 0 else "-\u221e"
    elif key.startswith("ssim"):
        num = f"{value:.4f}"
    else:
        num = f"{value:.2f}"
    return f"{label} {num}{(' ' + unit) if unit else ''}"


def _mean_metrics(entries: Sequence[ReportEntry]) -> dict[str, float]:
    keys: list[str] = []
    for e in entries:
        for k in e.metrics or {}:
            if k not in keys:
                keys.append(k)
    out = {}
    for k in keys:
        vals = [float(e.metrics[k]) for e in entries if e.metrics and k in e.metrics]
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def _img(thumb: _Thumb, url_dir: str, cls: str, alt: str) -> str:
    return (
        f'<img class="{cls}" src="{url_dir}/{quote(thumb.name or "")}" width="{thumb.width}" '
        f'height="{thumb.height}" alt="{alt}" loading="lazy" decoding="async">'
    )


def _unavailable(thumb: _Thumb | None, label: str) -> str:
    why = _text(thumb.error) if thumb is not None and thumb.error else "no file"
    return f'<div class="na">{_text(label)}: preview unavailable<br><small>{why}</small></div>'


def _figure(thumb: _Thumb | None, url_dir: str, label: str) -> str:
    if thumb is None or thumb.name is None:
        return f"<figure>{_unavailable(thumb, label)}<figcaption>{_text(label)}</figcaption></figure>"
    size = f" {thumb.full[0]}\u00d7{thumb.full[1]}" if thumb.full else ""
    return (
        f'<figure><div class="frame">{_img(thumb, url_dir, "solo", _text(label))}</div>'
        f"<figcaption>{_text(label)}{size}</figcaption></figure>"
    )


def _card(i: int, entry: ReportEntry, view: _View, url_dir: str, page_dir: Path, labels: tuple[str, str]) -> str:
    status = (entry.status or "").strip() or "unknown"
    name = Path(entry.input).name if entry.input else (Path(entry.output).name if entry.output else f"#{i + 1}")
    parts = [
        f'<article class="card st-{_text(status if status in ("done", "skipped", "failed") else "other")}" '
        f'data-status="{_text(status)}" id="f{i}">',
        f'<header><span class="badge">{_text(status)}</span> '
        f'<span class="name" title="{_text(entry.input or "")}">'
        f'{_text(name)}</span><span class="secs" title="time for this file: read, restore, write">'
        f"{_text(_fmt_seconds(entry.seconds))}</span></header>",
    ]
    b, a = view.before, view.after
    if view.slider and a is not None:
        alt_b, alt_a = _text(f"{labels[0]}: {name}"), _text(f"{labels[1]}: {name}")
        sizes = ""
        if b.full and a.full:
            sizes = f"{_text(labels[0])} {b.full[0]}\u00d7{b.full[1]}" + (
                f" \u2192 {_text(labels[1])} {a.full[0]}\u00d7{a.full[1]}" if a.full != b.full else ""
            )
        parts.append(
            f'<div class="cmp" style="width:{a.width}px">'
            f'<div class="stage" style="aspect-ratio:{a.width}/{a.height}">'
            f"{_img(b, url_dir, 'before', alt_b)}"
            f'<div class="after" style="clip-path:inset(0 0 0 50%)">{_img(a, url_dir, "", alt_a)}</div>'
            '<div class="divider" style="left:50%"></div>'
            f'<span class="tag l">{_text(labels[0])}</span><span class="tag r">{_text(labels[1])}</span>'
            f'<input class="range" type="range" min="0" max="100" step="0.5" value="50" '
            f'aria-label="{_text(labels[0])} / {_text(labels[1])} slider for {_text(name)}">'
            f'</div><div class="dims">{sizes}</div></div>'
        )
    else:
        figs = _figure(b, url_dir, labels[0])
        has_after = a is not None and a.name is not None
        # a failed file's planned output name that was never written is noise: its reason says it all
        if has_after or status == "done" or (entry.output and status != "failed"):
            figs += _figure(a, url_dir, labels[1])
        parts.append(f'<div class="pair">{figs}</div>')
    if entry.metrics:
        parts.append(
            '<div class="metrics">'
            + " \u00b7 ".join(_text(_fmt_metric(k, float(v))) for k, v in entry.metrics.items() if _is_number(v))
            + "</div>"
        )
    if entry.reason:
        parts.append(f'<div class="reason">{_text(entry.reason)}</div>')
    for w in entry.warnings or ():
        parts.append(f'<div class="warn">warning: {_text(w)}</div>')
    links = []
    if entry.input:
        links.append(f'<a href="{_href(entry.input, page_dir)}">{_text(labels[0])}</a>')
    if entry.output and a is not None and a.error != "file not found":
        links.append(f'<a href="{_href(entry.output, page_dir)}">{_text(labels[1])}</a>')
    if links:
        parts.append(f'<div class="links">full size: {" ".join(links)}</div>')
    parts.append("</article>")
    return "".join(parts)


def _render_page(
    page: Path,
    files_dir: Path,
    title: str,
    run_info: Mapping[str, Any],
    entries: Sequence[ReportEntry],
    views: Sequence[_View],
    labels: tuple[str, str],
    thumb_size: int,
) -> str:
    page_dir = page.parent
    url_dir = html.escape(quote(os.fsencode(files_dir.name)), quote=True)
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.status] = counts.get(e.status, 0) + 1
    total_s = sum(e.seconds or 0.0 for e in entries)
    dash = "\u2014"
    info_rows = "".join(
        f"<tr><th>{_text(k)}</th><td>{_text(dash if v is None else v)}</td></tr>" for k, v in run_info.items()
    )
    summary = [f"{len(entries)} file{'s' if len(entries) != 1 else ''}"]
    for st in ("done", "skipped", "failed"):
        if counts.get(st):
            summary.append(f'<span class="c-{st}">{counts[st]} {st}</span>')
    for st, n in counts.items():
        if st not in ("done", "skipped", "failed"):
            summary.append(f"{n} {_text(st)}")
    if total_s:  # per-file times overlap (decoding and writing run beside restoring): not the run's length
        summary.append(f"{_text(_fmt_seconds(total_s))} summed over files")
    summary_html = " \u00b7 ".join(summary)
    means = _mean_metrics(entries)
    mean_html = ""
    if means:
        mean_html = (
            '<p class="means">mean over files: '
            + " \u00b7 ".join(_text(_fmt_metric(k, v)) for k, v in means.items())
            + "</p>"
        )
    filters = "".join(
        f'<button type="button" data-filter="{st}">{st} ({counts.get(st, 0)})</button>'
        for st in ("done", "skipped", "failed")
        if counts.get(st)
    )
    cards = "\n".join(
        _card(i, e, v, url_dir, page_dir, labels) for i, (e, v) in enumerate(zip(entries, views, strict=True))
    )
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="restorecli html_report">\n'
        f"<title>{_text(title)}</title>\n<style>{_CSS.replace('THUMB', str(thumb_size))}</style></head>\n"
        f"<body>\n<h1>{_text(title)}</h1>\n"
        f'<section class="run"><table class="info">{info_rows}</table>'
        f'<p class="summary">{summary_html}</p>{mean_html}'
        f'<nav class="filters"><button type="button" data-filter="all" class="on">all ({len(entries)})</button>'
        f"{filters}</nav></section>\n"
        f'<main class="grid">\n{cards}\n</main>\n'
        '<pre id="selftest" hidden></pre>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
