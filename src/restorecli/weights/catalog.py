"""`restore models`: what is registered, how each model's weights are had, and whether they are cached."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cache import bundle_path, is_cached, packaged_bundle
from .registry import ModelSpec, Registry
from .sources import describe, source_kind


def availability(spec: ModelSpec) -> str:
    """'bundled' if the model ships inside the package, 'download' if every component has a source a
    program can fetch, 'manual' if some need a person, else 'none'."""
    kinds = [[source_kind(s) for s in c.sources] for c in spec.components.values()]
    if packaged_bundle(spec) is not None:
        return "bundled"
    if kinds and all(any(k.fetchable for k in ks) for ks in kinds):
        return "download"
    if any(k.by_hand for ks in kinds for k in ks):
        return "manual"
    return "none"


def download_note(spec: ModelSpec) -> str:
    """What running the model for the first time fetches, in words (`restore TASK --help`)."""
    from .fetch import _never_published

    kind = availability(spec)
    if kind == "bundled":
        return "shipped in the package: no download, runs offline"
    if kind == "none" or _never_published(spec, list(spec.components)):
        return "no published weights: pass --weights with a bundle you trained ('restore train')"
    if kind == "manual":
        return f"its weights are downloaded by hand ('restore fetch {spec.name}' says from where)"
    sizes = [c.size for c in spec.components.values()]
    known = sum(s for s in sizes if s)
    size = _human(known) if all(sizes) else f"more than {_human(known)}" if known else "its weights"
    hosts = sorted(
        {urlsplit(describe(s, c)).hostname or s.kind for c in spec.components.values() for s in c.sources[:1]}
    )
    files = len(spec.components)
    return (
        f"downloads {size} once ({files} file{'s' if files != 1 else ''} from {', '.join(hosts)}) "
        f"into the cache; 'restore fetch {spec.name}' does it ahead of time"
    )


def model_rows(registry: Registry, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """One record per registered model: what `restore models` shows (and prints with --json)."""
    rows = []
    for spec in registry.models.values():
        sizes = [c.size for c in spec.components.values()]
        packaged = packaged_bundle(spec)
        path = packaged if packaged is not None else bundle_path(spec, cache_dir)
        cached = packaged is None and is_cached(spec, cache_dir)
        rows.append(
            {
                "name": spec.name,
                "task": spec.task,
                "method": spec.method,
                "scale": spec.scale,
                "default_for": list(spec.default_for),
                "trained_steps": spec.trained_steps,
                "default_steps": spec.default_steps,
                "min_steps": spec.min_steps,
                "max_steps": spec.max_steps,
                "download_bytes": sum(s for s in sizes if s) if sizes and all(sizes) else None,
                "download_bytes_known": sum(s for s in sizes if s),
                "license": spec.license,
                "origin": spec.origin,
                "availability": availability(spec),
                "cached": cached,  # its bundle is in the cache (a bundled model needs none)
                "ready": cached or packaged is not None,  # runs without the network
                "bundle": str(path),
                "components": {
                    n: {
                        "file": c.file,
                        "size": c.size,
                        "sha256": c.sha256,
                        # how the pin was confirmed: "independent-copies", or "unverified" (one source only)
                        "sha256_checked": (c.sha256_checked or "unverified") if c.sha256 else None,
                        "sources": [describe(s, c) for s in c.sources],
                    }
                    for n, c in spec.components.items()
                },
            }
        )
    return rows


def model_details(row: dict[str, Any]) -> str:
    """`restore models MODEL`: one model's record as plain lines, license and sources in full."""
    lo, hi = row["min_steps"], row["max_steps"]
    lines = [
        f"{row['name']}: {row['method']} model for '{row['task']}'"
        + (f" (default for {', '.join(row['default_for'])})" if row["default_for"] else ""),
        f"steps: {row['default_steps']} by default, {lo}" + (f" to {hi}" if hi != lo else "") + " accepted",
        f"license: {row['license'] or 'not given'}",
        f"weights: {row['availability']}; "
        + (
            "shipped in the package"
            if row["availability"] == "bundled"
            else "cached"
            if row["cached"]
            else "not cached"
        )
        + f" ({row['bundle']})",
    ]
    for comp, info in row["components"].items():
        size = _human(info["size"]) if info["size"] else "size unknown"
        lines.append(f"  {comp}: {info['file'] or '-'} ({size})")
        lines.extend(f"    from {source}" for source in info["sources"])
    return "\n".join(lines)


def short_license(text: str) -> str:
    """The license's name for the models table (`Apache-2.0`, `S-Lab License 1.0 (non-commercial)`).

    Registry license texts run to a few hundred characters (what the weights are, whose data
    they were trained on); the table shows the first clause, with long parentheses dropped and
    a note when the rest names terms of the training data. `restore models MODEL` shows all.
    """
    if not text:
        return "-"
    depth, cut = 0, len(text)
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch in ";:":
            cut = i
            break
    head, rest = text[:cut].strip(), text[cut:]
    if len(head) > 40:
        head = re.sub(r"\s*\([^()]*\)", "", head).strip()
    if "non-commercial" in rest and "non-commercial" not in head:
        head += " + non-commercial data"
    elif "terms" in rest:
        head += " + data terms"
    return head


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 999.5 or unit == "TB":
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{n} B"


def models_table(rows: list[dict[str, Any]], root: Path) -> Any:
    """The rich table of `restore models` (* marks a task's default model; steps: default (accepted))."""
    from rich import box
    from rich.table import Table

    from ..io.printable import markup_safe as safe  # names and licenses come from registry files

    table = Table(
        title="Registered models (* = default for its task)",
        caption=safe(f"cache: {root}") + "\n'restore models MODEL' shows a model's full license, files and sources",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    longest = max((len(safe(r["name"])) + 2 for r in rows), default=4)
    table.add_column("name", no_wrap=True, min_width=longest)
    table.add_column("task", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("steps", no_wrap=True)
    table.add_column("download", no_wrap=True, justify="right")
    table.add_column("license", no_wrap=True)
    table.add_column("cached", no_wrap=True, min_width=6)
    for r in rows:
        lo, hi = r["min_steps"], r["max_steps"]
        steps = f"{r['default_steps']} ({lo})" if lo == hi else f"{r['default_steps']} ({lo}-{hi})"
        if r["availability"] == "bundled":
            size = "bundled"  # shipped inside the package: nothing to download
        elif r["availability"] == "manual":
            size = "by hand"
        elif r["availability"] == "none":
            size = "none"
        elif r["download_bytes"] is not None:
            size = _human(r["download_bytes"])
        elif r["download_bytes_known"]:
            size = f">{_human(r['download_bytes_known'])}"
        else:
            size = "?"
        name = r["name"] + (" *" if r["default_for"] else "")
        table.add_row(
            safe(name),
            safe(r["task"]),
            safe(r["method"]),
            steps,
            size,
            safe(short_license(r["license"])),
            "[green]bundled[/]" if r["availability"] == "bundled" else "[green]yes[/]" if r["cached"] else "no",
        )
    return table
