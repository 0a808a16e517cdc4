"""Weights from the network: fetch a model's official files once, verify them, keep one bundle.

A model's components each list sources in weights.toml, tried in order: a
Hugging Face Hub file (through huggingface_hub, so HF_HOME, HF_HUB_CACHE,
HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE mean what Hub users expect), a plain
release URL, or a page a person has to download from by hand. A downloaded file
is checked against the registry's size and sha256 (when known), converted with
the method's canonicaliser (passed in: see `restorecli.runtime.load`), and the
model's safetensors bundle is what the cache keeps (`cache`). A cached bundle
is returned before anything touches the network (or imports torch).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import WeightsError, WeightsUnavailable
from ..io.files import sha256_file
from .bundle import read_bundle_metadata, write_bundle
from .cache import (
    bundle_path,
    cache_key,
    cache_root,
    cached_file,
    component_key,
    offline_reason,
    packaged_bundle,
    staged_path,
)
from .cachefs import cache_folder, is_real_file
from .cachelock import cache_entry_locks
from .convert import Canonicalize, NetworkFit, load_component_file
from .download import SourceFailed, hub_cache_dir
from .downloadguard import download_ceiling, weights_file_problem
from .progress import ByteProgress, Reporter
from .registry import ComponentSpec, ModelSpec, Source, load_registry
from .safepaths import is_inside
from .sources import describe, source_kind

DOWNLOAD_RETRY_HINT = (
    "run 'restore fetch MODEL' again to download it afresh; if that fails the same way the source serves "
    "something else: report it, or pin size and sha256 or point the sources at a mirror in a registry "
    "overlay (docs/weights.md)"
)

# ---- the entry point -----------------------------------------------------------------


@dataclass
class _Have:
    """Where one component's weights come from for this build."""

    origin: str
    path: Path | None = None  # an official file on disk
    sha256: str | None = None
    bundle: Path | None = None  # or: a cached bundle of another model holding the same component
    prefix: str = ""
    staged: bool = False  # our own download: deleted once the bundle is written


def find_or_build_bundle(
    spec: ModelSpec,
    *,
    canonicalize: Canonicalize,
    fit: NetworkFit | None = None,
    offline: bool = False,
    cache_dir: Path | None = None,
    console: Any = None,
    force: bool = False,
    files: Mapping[str, Path] | None = None,
    quiet: bool = False,
) -> Path:
    """The model's cached bundle, fetching, verifying and converting its files first if needed.

    canonicalize: the method's `Engine.canonicalize` (only called when a file is converted).
    fit: the declared networks, bounding and checking each converted file (weights.convert).
    offline (or HF_HUB_OFFLINE / RESTORECLI_OFFLINE): never use the network.
    force: fetch and convert again even if a bundle is cached.
    files: COMPONENT -> local official file to use instead of downloading it.
    console: a rich Console for progress; by default stderr, only when it is a terminal.
    Raises WeightsUnavailable (exit 4) when the files cannot be had now, WeightsError (exit 3)
    when a file fails its checksum (the download is deleted) or does not convert.
    """
    packaged = packaged_bundle(spec)
    if packaged is not None and not files:
        return packaged  # shipped inside the package: no cache, no network
    root = cache_root(cache_dir)
    target = bundle_path(spec, root)
    if not force and not files and cached_file(target, root):
        return target
    # processes share the cache: one lock per cache entry (this bundle, each component); look again once they are held
    names = [f"bundle-{target.stem}", *(f"component-{component_key(c)}" for c in spec.components.values())]
    with cache_entry_locks(root, names, note=Reporter(console, quiet).say):
        if not force and not files and cached_file(target, root):
            return target  # another process made it while we waited
        return _fetch_and_build(
            spec,
            root,
            target,
            canonicalize=canonicalize,
            fit=fit,
            offline=offline,
            console=console,
            force=force,
            files=files,
            quiet=quiet,
        )


def _fetch_and_build(
    spec: ModelSpec,
    root: Path,
    target: Path,
    *,
    canonicalize: Canonicalize,
    fit: NetworkFit | None,
    offline: bool,
    console: Any,
    force: bool,
    files: Mapping[str, Path] | None,
    quiet: bool,
) -> Path:
    """The work of find_or_build_bundle once the cache entry is locked."""
    why_offline = offline_reason(offline)
    report = Reporter(console, quiet)
    files = dict(files or {})
    have: dict[str, _Have | None] = {}
    for name, comp in spec.components.items():
        if name in files:
            path = Path(files[name])
            if not path.is_file():
                raise WeightsError(f"file not found: {path}", f"give the official {comp.file or name} file")
            have[name] = _Have(f"{path}", path=path, sha256=_verify(comp, path, str(path), delete=False))
        else:
            have[name] = None if force else _find_local(comp, name, root)
    missing = [n for n, h in have.items() if h is None]
    if missing and _never_published(spec, missing):
        raise _unpublished_error(spec, missing)
    if missing and why_offline:
        raise _offline_error(spec, missing, root, why_offline)
    failures: dict[str, list[SourceFailed]] = {}
    try:
        if missing:
            with report.progress() as progress:
                for name in missing:
                    have[name], failures[name] = _download_component(
                        spec.components[name], name, root, progress, report, force=force
                    )
                    if have[name] is None:
                        break  # the bundle cannot be made now; what was fetched stays staged for next time
        if failures and any(h is None for h in have.values()):
            untried = [n for n in missing if have[n] is None and n not in failures]
            raise _unavailable_error(spec, {n: f for n, f in failures.items() if have[n] is None}, untried)
        return _build_bundle(spec, {n: h for n, h in have.items() if h is not None}, target, report, canonicalize, fit)
    except OSError as exc:  # network errors are handled per source: this is the local disk
        raise WeightsError(
            f"cannot write weights of model '{spec.name}' under {root}: {exc.strerror or exc}",
            "free some disk space or fix the permissions, or choose another folder with --cache-dir",
        ) from None


# ---- finding what is already here ------------------------------------------------------


def _find_local(comp: ComponentSpec, name: str, root: Path) -> _Have | None:
    """A component obtainable without the network: another bundle, our staged download, the Hub cache."""
    reused = _bundled_elsewhere(root, component_key(comp))
    if reused is not None:
        return reused
    staged = staged_path(root, comp, name)
    if cached_file(staged, root):  # a link there is never read, nor deleted through
        try:
            return _Have(f"{staged}", path=staged, sha256=_verify(comp, staged, str(staged), delete=True), staged=True)
        except WeightsError:
            pass  # deleted; download it again
    for src in comp.sources:
        path = source_kind(src).find_local(src, comp)
        if path is not None:
            try:
                return _Have(describe(src, comp), path=path, sha256=_verify_hub(comp, path, src))
            except WeightsError:
                continue  # the wrong file (now deleted): download it
    return None


def _bundled_elsewhere(root: Path, ckey: str) -> _Have | None:
    """A cached bundle (of any model) that already holds a component with this key."""
    folder = cache_folder(root, "bundles", create=False)
    if not folder.is_dir():
        return None
    for path in sorted(p for p in folder.glob("*.safetensors") if is_real_file(p)):
        try:
            keys = json.loads(read_bundle_metadata(path).get("component_keys", "{}"))
        except (OSError, ValueError, struct.error):
            continue
        for prefix, key in keys.items():
            if key == ckey:
                return _Have(f"{path.name}:{prefix}", bundle=path, prefix=prefix)
    return None


# ---- downloading -----------------------------------------------------------------------


def _download_component(
    comp: ComponentSpec, name: str, root: Path, progress: ByteProgress, report: Reporter, *, force: bool
) -> tuple[_Have | None, list[SourceFailed]]:
    """Try the component's sources in order; a checksum mismatch stops everything (WeightsError)."""
    failures: list[SourceFailed] = []
    label = comp.file or name
    for i, src in enumerate(comp.sources):
        where = describe(src, comp)
        last = i == len(comp.sources) - 1
        kind = source_kind(src)
        try:
            if kind.fetchable:  # the host only: the URL is named once, in the error if this fails
                report.say(f"downloading {label} from {urlsplit(where).hostname or where}")
            dest = staged_path(root, comp, name)
            cache_folder(root, dest.parent.relative_to(root).as_posix(), create=False)  # a planted link is refused
            ceiling = None if comp.size is not None else download_ceiling(largest_pinned())  # unpinned: bounded
            path, staged = kind.download(src, comp, dest, progress, force=force, ceiling=ceiling)
            if staged:
                return _Have(where, path=path, sha256=_verify(comp, path, where, delete=True), staged=True), failures
            return _Have(where, path=path, sha256=_verify_hub(comp, path, src)), failures
        except SourceFailed as exc:
            if not exc.manual and not last:  # the final error names every failure
                report.say(f"failed: {exc}; trying the next source", "yellow")
            failures.append(exc)
    return None, failures


def largest_pinned() -> int | None:
    """The largest file size the registry pins (an unpinned download is bounded relative to it)."""
    registry = load_registry()
    return max((c.size for m in registry.models.values() for c in m.components.values() if c.size), default=None)


def _verify(comp: ComponentSpec, path: Path, origin: str, *, delete: bool) -> str:
    """Check size and sha256 against the registry (when known); return the sha256.

    A mismatching download is deleted: it is the wrong file and must never be converted.
    """
    if delete and (bad := weights_file_problem(path)) is not None:  # check our own download first
        path.unlink(missing_ok=True)
        raise WeightsError(
            f"{comp.file or path.name} from {origin} is not a weights file: {bad}; the download was removed",
            DOWNLOAD_RETRY_HINT,
        )
    size = path.stat().st_size
    digest = sha256_file(path)
    problems = []
    if comp.size is not None and size != comp.size:
        problems.append(f"{size} bytes, registry says {comp.size}")
    if comp.sha256 and digest != comp.sha256.lower():
        problems.append(f"sha256 {digest}, registry says {comp.sha256.lower()}")
    if problems:
        if delete:
            path.unlink(missing_ok=True)
        raise WeightsError(
            f"{comp.file or path.name} from {origin} fails its check ({'; '.join(problems)})"
            + ("; the file was deleted" if delete else ""),
            "the source serves a different file: report it, or correct sha256/sources in a registry overlay "
            "(docs/weights.md)",
        )
    return digest


def _verify_hub(comp: ComponentSpec, path: Path, src: Source) -> str:
    """Verify a file in the Hub cache; on mismatch remove both the snapshot link and its blob."""
    try:
        return _verify(comp, path, describe(src, comp), delete=False)
    except WeightsError as exc:
        blob = Path(os.path.realpath(path))
        path.unlink(missing_ok=True)
        if is_inside(hub_cache_dir(), blob):  # never delete outside the Hub cache
            blob.unlink(missing_ok=True)
        raise WeightsError(exc.message + "; the file was deleted from the Hub cache", exc.hint) from None


# ---- conversion ------------------------------------------------------------------------


def _build_bundle(
    spec: ModelSpec,
    have: dict[str, _Have],
    target: Path,
    report: Reporter,
    canonicalize: Canonicalize,
    fit: NetworkFit | None = None,
) -> Path:
    """Convert (or copy from another bundle) every component, write the bundle atomically, drop staged files."""
    states: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, h in have.items():
        if h.bundle is not None:
            states[name], sources[name] = _component_from_bundle(h.bundle, h.prefix)
        else:
            assert h.path is not None
            try:
                states[name] = load_component_file(spec, name, h.path, canonicalize, fit)
            except WeightsError as exc:  # a download that does not load never stays in the cache
                if not h.staged:
                    raise
                h.path.unlink(missing_ok=True)
                raise WeightsError(f"{exc.message}; the download was removed", DOWNLOAD_RETRY_HINT) from None
            sources[name] = f"{spec.components[name].file or h.path.name}:{h.sha256}"
    report.say(f"converting {spec.name} into {target}")
    cache_folder(target.parent.parent, target.parent.name)  # CACHE/bundles: a real folder, never a link
    write_bundle(
        target,
        spec,
        states,
        sources,
        extra_meta={
            "cache_key": cache_key(spec),
            "component_keys": {n: component_key(c) for n, c in spec.components.items()},
            "origins": {n: h.origin for n, h in have.items()},
        },
    )
    for h in have.values():
        if h.staged and h.path is not None:
            h.path.unlink(missing_ok=True)
            try:
                h.path.parent.rmdir()
            except OSError:
                pass
    return target


def _component_from_bundle(path: Path, prefix: str) -> tuple[dict[str, Any], str]:
    from safetensors import safe_open

    lead = f"{prefix}."
    with safe_open(str(path), "pt") as fh:
        state = {k[len(lead) :]: fh.get_tensor(k) for k in fh.keys() if k.startswith(lead)}
        meta = fh.metadata() or {}
    source = json.loads(meta.get("sources", "{}")).get(prefix, f"{path.name}:{prefix}")
    if not state:
        raise WeightsError(f"cached bundle {path} lacks component '{prefix}'", "run 'restore fetch --force'")
    return state, source


# ---- messages --------------------------------------------------------------------------


def _needs(spec: ModelSpec, names: list[str]) -> str:
    parts = []
    for name in names:
        comp = spec.components[name]
        where = " or ".join(describe(s, comp) for s in comp.sources) or "no published source"
        parts.append(f"{name} {comp.file or '(file)'} from {where}")
    return ", ".join(parts)


def _convert_line(spec: ModelSpec) -> str:
    pairs = " ".join(f"{n}={c.file or n + '.pth'}" for n, c in spec.components.items())
    return f"restore convert {spec.name} {pairs} -o {spec.name}.safetensors"


def offline_tasks() -> list[str]:
    """Tasks whose default model ships inside the package, so they run with no network and no cache."""
    try:
        registry = load_registry()
    except Exception:  # never let a hint hide the real error
        return []
    return sorted(
        {
            task
            for model in registry.models.values()
            if all(any(source_kind(s).packaged for s in c.sources) for c in model.components.values())
            for task in model.default_for
        }
    )


def _offline_hint() -> str:
    tasks = offline_tasks()
    return f"; without network these tasks work: {', '.join(tasks)} (bundled models)" if tasks else ""


def _offline_error(spec: ModelSpec, names: list[str], root: Path, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"weights of model '{spec.name}' are not cached in {root} and the network is off ({why}); "
        f"it needs {_needs(spec, names)}",
        f"run 'restore fetch {spec.name}' on a machine with network and copy {root / 'bundles'} here, "
        f"{_by_hand(spec, names)}, or pass --weights FILE" + _offline_hint(),
    )


def _by_hand(spec: ModelSpec, names: list[str]) -> str:
    """How files downloaded in a browser (or on another machine) get into the cache."""
    files = " ".join(f"--file {n}=PATH" for n in names)
    return f"or download {'the files' if len(names) > 1 else 'the file'} by hand and run 'restore fetch {spec.name} {files}'"


def _never_published(spec: ModelSpec, names: list[str]) -> bool:
    """A model whose weights users train themselves: not official, and nothing to download (only notes)."""
    return spec.origin != "official" and all(
        all(source_kind(s).by_hand and not s.url for s in spec.components[n].sources) for n in names
    )


def _unpublished_error(spec: ModelSpec, names: list[str]) -> WeightsUnavailable:
    # a note's first clause is the fact; what to do is said once, below (notes may carry their own advice)
    facts = dict.fromkeys(s.note.split(";")[0].strip() for n in names for s in spec.components[n].sources if s.note)
    return WeightsUnavailable(
        f"model '{spec.name}' has no downloadable weights: {'; '.join(facts) or 'no public checkpoint exists'}",
        f"train one with 'restore train rddm --task {spec.task} ...' (docs/training.md) and pass --weights BUNDLE, "
        f"or convert a checkpoint of the official training code with '{_convert_line(spec)}'",
    )


def _unavailable_error(
    spec: ModelSpec, failures: dict[str, list[SourceFailed]], untried: list[str] | None = None
) -> WeightsUnavailable:
    """Why the weights cannot be had now: each failed file with its URLs, and the files not tried after
    the first failure (with theirs), so a user can fetch them all by hand."""
    untried = untried or []
    manual = {n: f for n, f in failures.items() if f and all(x.manual for x in f)}
    if manual:
        what = ", ".join(f"{spec.components[n].file or n} from {f[0]}" for n, f in manual.items())
        first = next(iter(manual))
        return WeightsUnavailable(
            f"the weights of model '{spec.name}' cannot be downloaded by a program: download {what} by hand",
            f"then run '{_convert_line(spec)}' and pass --weights {spec.name}.safetensors "
            f"(or 'restore fetch {spec.name} --file {first}=PATH' to cache it)",
        )
    detail = "; ".join(
        f"{n} {spec.components[n].file}: " + (" | ".join(str(x) for x in f) or "no published source")
        for n, f in failures.items()
    )
    if untried:
        detail += f"; not tried after that: {_needs(spec, untried)}"
    no_source = all(not f for f in failures.values())
    return WeightsUnavailable(
        f"cannot download the weights of model '{spec.name}': {detail}",
        "pass --weights FILE (see docs/weights.md)"
        if no_source
        else f"check the network (and HTTPS_PROXY) and retry 'restore fetch {spec.name}', "
        f"{_by_hand(spec, [*failures, *untried])}, "
        "or point the model at a mirror with a registry overlay (docs/weights.md)" + _offline_hint(),
    )
