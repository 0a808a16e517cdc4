"""Weights from the network: fetch a model's official files once, verify them, keep one bundle.

A model's components each list sources in weights.toml, tried in order: a
Hugging Face Hub file (through huggingface_hub, so HF_HOME, HF_HUB_CACHE,
HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE mean what Hub users expect), a plain
release URL, or a page a person has to download from by hand. A downloaded file
is checked against the registry's size and sha256 (when known), converted, and
the model's safetensors bundle is what the cache keeps.

The bundle's file name carries a hash of everything that decides its content
(architecture config, file, sha256 or else sources), so an edited registry
entry never serves a stale bundle. Files are written to a temporary name and
renamed, so a half-written file is never loaded, and a cached bundle is
returned before anything touches the network (or imports torch).
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import json
import os
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .errors import WeightsError, WeightsUnavailable
from .registry import ComponentSpec, ModelSpec, Registry, Source

CACHE_ENV = "RESTORECLI_CACHE"
OFFLINE_ENVS = ("RESTORECLI_OFFLINE", "HF_HUB_OFFLINE")
KEY_VERSION = 1  # bump when the bundle layout or the conversion changes, to rebuild every cached bundle
CHUNK = 1 << 20
TIMEOUT_S = 30.0  # connect / read timeout of one HTTP request
RETRY_WAIT_S = 1.0  # pause before resuming a cut download or retrying a 5xx answer
MAX_TRIES = 4  # requests for one URL in a row that bring no new byte before giving up
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"restorecli/{__version__}"


# ---- where things live ------------------------------------------------------------

def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: --cache-dir, else $RESTORECLI_CACHE, else the user cache directory."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(local) / "restorecli" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restorecli"


def hub_cache_dir() -> Path:
    """The Hub cache huggingface_hub itself would use, read now (it reads the variables at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def offline_reason(offline: bool = False) -> str | None:
    """Why no network may be used (the flag or an environment variable), or None."""
    if offline:
        return "--offline"
    for var in OFFLINE_ENVS:
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    return None


def component_key(comp: ComponentSpec) -> str:
    """Hash of what decides a component's converted tensors.

    A pinned sha256 fixes the file, so mirrors can change without a rebuild;
    without one, the sources (and size) are what identify it.
    """
    ident: dict[str, Any] = {
        "v": KEY_VERSION,
        "kind": comp.kind,
        "config": comp.config,
        "container": comp.container,
        "file": comp.file,
    }
    if comp.sha256:
        ident["sha256"] = comp.sha256.lower()
    else:
        ident["size"] = comp.size
        ident["sources"] = [
            {k: v for k, v in asdict(s).items() if k != "note" and v is not None} for s in comp.sources
        ]
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_key(spec: ModelSpec) -> str:
    blob = json.dumps(
        {"v": KEY_VERSION, "method": spec.method, "components": {n: component_key(c) for n, c in spec.components.items()}},
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def bundle_path(spec: ModelSpec, cache_dir: Path | str | None = None) -> Path:
    return cache_root(cache_dir) / "bundles" / f"{spec.name}-{cache_key(spec)}.safetensors"


def is_cached(spec: ModelSpec, cache_dir: Path | str | None = None) -> bool:
    return bundle_path(spec, cache_dir).is_file()


def resolve_cached(spec: ModelSpec, cache_dir: Path | str | None = None) -> Path:
    """The cached bundle, or the offline error naming the files, their sources and the fetch command."""
    path = bundle_path(spec, cache_dir)
    if path.is_file():
        return path
    raise _offline_error(spec, list(spec.components), cache_root(cache_dir), "cache only")


def _staged_path(root: Path, comp: ComponentSpec, name: str) -> Path:
    return root / "downloads" / component_key(comp) / (comp.file or f"{name}.bin")


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


class _SourceFailed(Exception):
    """One source could not deliver (network, HTTP status, web page): try the next one."""

    def __init__(self, message: str, manual: bool = False) -> None:
        super().__init__(message)
        self.manual = manual


def packaged_bundle(spec: ModelSpec) -> Path | None:
    """The bundle of a project-trained model shipped inside the package (every component's
    `kind = "bundled"` source names the same file), or None."""
    paths = set()
    for comp in spec.components.values():
        src = next((s for s in comp.sources if s.kind == "bundled"), None)
        if src is None or not src.path:
            return None
        paths.add(src.path)
    if len(paths) != 1:
        return None
    path = Path(__file__).resolve().parent / paths.pop()
    return path if path.is_file() else None


def ensure_bundle(
    spec: ModelSpec,
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
    console: Any = None,
    force: bool = False,
    files: Mapping[str, Path] | None = None,
    quiet: bool = False,
) -> Path:
    """The model's cached bundle, fetching, verifying and converting its files first if needed.

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
    if target.is_file() and not force and not files:
        return target
    why_offline = offline_reason(offline)
    report = _Reporter(console, quiet)
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
    failures: dict[str, list[_SourceFailed]] = {}
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
            raise _unavailable_error(spec, {n: f for n, f in failures.items() if have[n] is None})
        return _build_bundle(spec, {n: h for n, h in have.items() if h is not None}, target, report)
    except OSError as exc:  # network errors are handled per source: this is the local disk
        raise WeightsError(
            f"cannot write weights of model '{spec.name}' under {root}: {exc.strerror or exc}",
            "free some disk space or fix the permissions, or choose another folder with --cache-dir",
        ) from None


def fetch_models(
    specs: list[ModelSpec],
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
    console: Any = None,
    force: bool = False,
    files: Mapping[str, Path] | None = None,
    quiet: bool = False,
) -> list[tuple[ModelSpec, Path | None, WeightsError | None]]:
    """`restore fetch`: ensure each model's bundle; one model's failure does not stop the others."""
    results: list[tuple[ModelSpec, Path | None, WeightsError | None]] = []
    for spec in specs:
        try:
            path = ensure_bundle(
                spec, offline=offline, cache_dir=cache_dir, console=console, force=force, files=files, quiet=quiet
            )
            results.append((spec, path, None))
        except WeightsError as exc:
            results.append((spec, None, exc))
    return results


# ---- finding what is already here ------------------------------------------------------

def _find_local(comp: ComponentSpec, name: str, root: Path) -> _Have | None:
    """A component obtainable without the network: another bundle, our staged download, the Hub cache."""
    reused = _bundled_elsewhere(root, component_key(comp))
    if reused is not None:
        return reused
    staged = _staged_path(root, comp, name)
    if staged.is_file():
        try:
            return _Have(f"{staged}", path=staged, sha256=_verify(comp, staged, str(staged), delete=True), staged=True)
        except WeightsError:
            pass  # deleted; download it again
    for src in comp.sources:
        if src.kind == "hub":
            try:
                path = _hub_download(src, comp, local_only=True, progress=None)
                return _Have(describe(src, comp), path=path, sha256=_verify_hub(comp, path, src))
            except (_SourceFailed, WeightsError):
                continue  # not there, or the wrong file (now deleted): download it
    return None


def read_bundle_header(path: Path) -> dict[str, str]:
    """A safetensors file's metadata, read from its JSON header (cheap: no tensors, no torch)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > 100_000_000:
            raise ValueError("header too large")
        header = json.loads(fh.read(length))
    return dict(header.get("__metadata__") or {})


def _bundled_elsewhere(root: Path, ckey: str) -> _Have | None:
    """A cached bundle (of any model) that already holds a component with this key."""
    folder = root / "bundles"
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.safetensors")):
        try:
            keys = json.loads(read_bundle_header(path).get("component_keys", "{}"))
        except (OSError, ValueError, struct.error):
            continue
        for prefix, key in keys.items():
            if key == ckey:
                return _Have(f"{path.name}:{prefix}", bundle=path, prefix=prefix)
    return None


# ---- downloading -----------------------------------------------------------------------

def _download_component(
    comp: ComponentSpec, name: str, root: Path, progress: _Progress, report: _Reporter, *, force: bool
) -> tuple[_Have | None, list[_SourceFailed]]:
    """Try the component's sources in order; a checksum mismatch stops everything (WeightsError)."""
    failures: list[_SourceFailed] = []
    label = comp.file or name
    for i, src in enumerate(comp.sources):
        where = describe(src, comp)
        last = i == len(comp.sources) - 1
        try:
            if src.kind == "bundled":  # packaged_bundle() found no file: a broken installation
                raise _SourceFailed(f"{where}: the file is missing from this installation; reinstall restorecli",
                                    manual=True)
            if src.kind == "manual":
                note = f" ({src.note})" if src.note and src.url else ""
                raise _SourceFailed(f"{src.url or src.note}{note}", manual=True)
            # the host only: the URL is named once, in the error if this fails (or by `restore models --json`)
            report.say(f"downloading {label} from {urlsplit(where).hostname or where}")
            if src.kind == "hub":
                path = _hub_download(src, comp, local_only=False, progress=progress, force=force)
                return _Have(where, path=path, sha256=_verify_hub(comp, path, src)), failures
            dest = _staged_path(root, comp, name)
            _url_download(src.url or "", dest, expected_size=comp.size, label=label, progress=progress)
            return _Have(where, path=dest, sha256=_verify(comp, dest, where, delete=True), staged=True), failures
        except _SourceFailed as exc:
            if not exc.manual and not last:  # the final error names every failure
                report.say(f"[yellow]failed:[/] {exc}; trying the next source")
            failures.append(exc)
    return None, failures


def _verify(comp: ComponentSpec, path: Path, origin: str, *, delete: bool) -> str:
    """Check size and sha256 against the registry (when known); return the sha256.

    A mismatching download is deleted: it is the wrong file and must never be converted.
    """
    size = path.stat().st_size
    digest = sha256_of(path)
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
        blob.unlink(missing_ok=True)
        raise WeightsError(exc.message + "; the file was deleted from the Hub cache", exc.hint) from None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _url_download(url: str, dest: Path, *, expected_size: int | None, label: str, progress: _Progress) -> None:
    """GET `url` into `dest` through a temporary file; resume with Range when the connection drops.

    Fails at once when the host cannot be reached (so a machine without network
    gets its answer immediately); retries 5xx answers and cut transfers a few times.
    """
    parts = urlsplit(url)
    host = parts.hostname or url
    if parts.scheme not in ("http", "https"):
        raise _SourceFailed(f"{url}: not an http(s) URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    opener = urllib.request.build_opener()  # reads the proxy variables now, not at first use
    received, total, tries = 0, None, 0
    bar: _Bar | None = None
    try:
        with open(part, "wb") as fh:
            while True:
                tries += 1
                headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
                if received:
                    headers["Range"] = f"bytes={received}-"
                try:
                    resp = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
                except urllib.error.HTTPError as exc:
                    exc.close()
                    if exc.code in RETRY_STATUS and tries < MAX_TRIES:
                        time.sleep(RETRY_WAIT_S * tries)
                        continue
                    moved = f" (redirected to {exc.url})" if exc.url and exc.url != url else ""
                    raise _SourceFailed(f"HTTP {exc.code} {exc.reason} from {url}{moved}") from None
                except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                    if received and tries < MAX_TRIES:  # dropped while resuming; the host was there
                        time.sleep(RETRY_WAIT_S)
                        continue
                    raise _SourceFailed(f"{url}: {_net_reason(exc, host, parts.scheme)}") from None
                before, cut = received, False
                with resp:
                    kind = resp.headers.get("Content-Type", "")
                    if kind.startswith("text/html") and not label.endswith((".html", ".htm")):
                        raise _SourceFailed(f"{url} returned a web page, not {label} (it needs a browser)", manual=True)
                    start, full = _range_of(resp)
                    if start != received:
                        if resp.status == 206:
                            raise _SourceFailed(f"{url} answered bytes from {start} when asked from {received}")
                        fh.seek(0)  # the server ignored Range: start over
                        fh.truncate()
                        received = before = 0
                    total = full if full is not None else total
                    if expected_size is not None and total is not None and total != expected_size:
                        raise WeightsError(
                            f"{url} serves {total} bytes but the registry expects {expected_size} for {label}",
                            "the source serves a different file: report it, or correct size/sources in a "
                            "registry overlay (docs/weights.md)",
                        )
                    bar = bar or progress.bar(label, total)
                    bar.reset(received, total)
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except (OSError, http.client.HTTPException):
                            cut = True  # the connection broke (reset, timeout, bad chunk)
                            break
                        if not chunk:
                            break
                        fh.write(chunk)  # a full disk raises here, not as a network cut
                        received += len(chunk)
                        bar.advance(len(chunk))
                if not cut and (total is None or received >= total):
                    break
                if received > before:
                    tries = 0  # progress was made: the budget of tries starts again
                if tries + 1 >= MAX_TRIES:
                    raise _SourceFailed(
                        f"connection to {host} kept closing: got {received} of {total or '?'} bytes of {url}"
                    )
                time.sleep(RETRY_WAIT_S)
        if total is not None and received != total:
            raise _SourceFailed(f"{url} sent {received} bytes instead of {total}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _range_of(resp: Any) -> tuple[int, int | None]:
    """(first byte, full size) of a 200 or 206 answer (-1 as first byte when Content-Range is unreadable)."""
    length_h = resp.headers.get("Content-Length", "")
    length = int(length_h) if length_h.isdigit() else None
    if resp.status != 206:
        return 0, length
    try:  # Content-Range: bytes START-END/TOTAL
        span, _, full_s = resp.headers.get("Content-Range", "").split(" ", 1)[1].partition("/")
        return int(span.split("-")[0]), int(full_s) if full_s.isdigit() else None
    except (IndexError, ValueError):
        return -1, None


def _net_reason(exc: BaseException, host: str, scheme: str = "") -> str:
    """One short phrase for a failed connection (naming the proxy when one is in the way)."""
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    proxy = urllib.request.getproxies().get(scheme) if scheme else None
    if proxy and not urllib.request.proxy_bypass(host):
        host = f"{host} through proxy {proxy}"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host {host} (no network or DNS)"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {host}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer from {host} within {TIMEOUT_S:.0f} s"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error with {host}: {getattr(reason, 'reason', None) or reason}"
    text = str(getattr(reason, "strerror", None) or reason).strip().splitlines()
    return f"cannot connect to {host}: {text[0] if text else type(reason).__name__}"


def _unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why `url`'s host (or the proxy in front of it) cannot be reached now, or None.

    huggingface_hub retries a failed connection for about half a minute; one
    TCP handshake first turns "no network" into an answer within a second.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or "", p.port or 80
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return _net_reason(exc, host)
    return None


def _hub_endpoint(src: Source) -> str:
    return (src.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def describe(src: Source, comp: ComponentSpec) -> str:
    """A source as a URL a person can open (a Hub file as its resolve URL on the endpoint in use)."""
    if src.kind == "hub":
        return f"{_hub_endpoint(src)}/{src.repo}/resolve/{src.revision}/{src.filename or comp.file}"
    if src.kind == "manual":
        return f"{src.url or src.note} (download by hand)"
    if src.kind == "bundled":
        return f"bundled with restorecli ({src.path})"
    return str(src.url)


def _hub_download(
    src: Source, comp: ComponentSpec, *, local_only: bool, progress: _Progress | None, force: bool = False
) -> Path:
    """One file through huggingface_hub (its cache, endpoint, token and offline rules)."""
    import huggingface_hub
    from huggingface_hub import utils as hf_utils

    endpoint = _hub_endpoint(src)
    filename = src.filename or comp.file or ""
    where = describe(src, comp)
    if not local_only:
        down = _unreachable(endpoint)
        if down:
            raise _SourceFailed(f"{where}: {down}")
    kwargs: dict[str, Any] = dict(
        repo_id=src.repo,
        filename=filename,
        revision=src.revision,
        cache_dir=str(hub_cache_dir()),
        endpoint=endpoint,
        local_files_only=local_only,
        force_download=force and not local_only,
        library_name="restorecli",
        library_version=__version__,
    )
    if progress is not None and "tqdm_class" in inspect.signature(huggingface_hub.hf_hub_download).parameters:
        kwargs["tqdm_class"] = progress.tqdm_class(filename)
    try:
        return Path(huggingface_hub.hf_hub_download(**kwargs))
    except hf_utils.LocalEntryNotFoundError as exc:
        if local_only:
            raise _SourceFailed(f"{where}: not in the Hub cache {hub_cache_dir()}") from None
        raise _SourceFailed(f"{where}: {_hub_cause(exc.__cause__ or exc)}") from None
    except hf_utils.RevisionNotFoundError:
        raise _SourceFailed(f"revision {src.revision} not found in Hub repo {src.repo} ({where})") from None
    except hf_utils.EntryNotFoundError:
        raise _SourceFailed(f"{filename} not found in Hub repo {src.repo} ({where})") from None
    except hf_utils.RepositoryNotFoundError as exc:
        status = _status_of(exc)
        raise _SourceFailed(
            f"Hub repo {src.repo} not found or not accessible{f' (HTTP {status})' if status else ''} "
            f"({where}); for a private repo set HF_TOKEN"
        ) from None
    except (hf_utils.HfHubHTTPError, hf_utils.OfflineModeIsEnabled, OSError, ValueError) as exc:
        raise _SourceFailed(f"{where}: {_hub_cause(exc)}") from None
    except Exception as exc:  # httpx/requests transport errors differ between huggingface_hub versions
        raise _SourceFailed(f"{where}: {_hub_cause(exc)}") from None


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _hub_cause(exc: BaseException) -> str:
    status = _status_of(exc)
    if status:
        url = getattr(getattr(exc, "response", None), "url", "")
        return f"HTTP {status} from {url}".strip()
    name = type(exc).__name__
    if "Connect" in name or "Timeout" in name or isinstance(exc, (ConnectionError, socket.gaierror)):
        first = (str(exc).strip().splitlines() or [name])[0]
        return f"cannot reach the Hub: {first}"
    from huggingface_hub.utils import OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "the Hub client is in offline mode (HF_HUB_OFFLINE was set when it was imported)"
    first = (str(exc).strip().splitlines() or [name])[0]
    return f"{name}: {first}"


# ---- conversion ------------------------------------------------------------------------

def _build_bundle(spec: ModelSpec, have: dict[str, _Have], target: Path, report: _Reporter) -> Path:
    """Convert (or copy from another bundle) every component, write the bundle atomically, drop staged files."""
    from .weights import load_component_file, write_bundle

    states: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, h in have.items():
        if h.bundle is not None:
            states[name], sources[name] = _component_from_bundle(h.bundle, h.prefix)
        else:
            assert h.path is not None
            states[name] = load_component_file(spec, name, h.path)
            sources[name] = f"{spec.components[name].file or h.path.name}:{h.sha256}"
    report.say(f"converting {spec.name} into {target}")
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
        state = {k[len(lead):]: fh.get_tensor(k) for k in fh.keys() if k.startswith(lead)}
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


def _offline_error(spec: ModelSpec, names: list[str], root: Path, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"weights of model '{spec.name}' are not cached in {root} and the network is off ({why}); "
        f"it needs {_needs(spec, names)}",
        f"run 'restore fetch {spec.name}' on a machine with network and copy {root / 'bundles'} here, "
        f"or pass --weights FILE",
    )


def _never_published(spec: ModelSpec, names: list[str]) -> bool:
    """A model whose weights users train themselves: not official, and nothing to download (only notes)."""
    return spec.origin != "official" and all(
        all(s.kind == "manual" and not s.url for s in spec.components[n].sources) for n in names
    )


def _unpublished_error(spec: ModelSpec, names: list[str]) -> WeightsUnavailable:
    notes = "; ".join(dict.fromkeys(s.note for n in names for s in spec.components[n].sources if s.note))
    return WeightsUnavailable(
        f"model '{spec.name}' has no downloadable weights: {notes or 'no public checkpoint exists'}",
        f"pass --weights with a bundle you trained, or with a checkpoint of the official training code "
        f"converted by '{_convert_line(spec)}'",
    )


def _unavailable_error(spec: ModelSpec, failures: dict[str, list[_SourceFailed]]) -> WeightsUnavailable:
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
    no_source = all(not f for f in failures.values())
    return WeightsUnavailable(
        f"cannot download the weights of model '{spec.name}': {detail}",
        "pass --weights FILE (see docs/weights.md)"
        if no_source
        else f"check the network (and HTTPS_PROXY) and retry 'restore fetch {spec.name}', "
        "or point the model at a mirror with a registry overlay (docs/weights.md)",
    )


# ---- progress --------------------------------------------------------------------------

class _Bar:
    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self.progress, self.task = progress, task

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def reset(self, completed: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, total=total)


class _Progress:
    """Byte progress bars (bytes, speed, ETA) on a rich console, or nothing."""

    def __init__(self, rich_progress: Any = None) -> None:
        self.rich = rich_progress

    def bar(self, label: str, total: int | None, initial: int = 0) -> _Bar:
        if self.rich is None:
            return _Bar()
        return _Bar(self.rich, self.rich.add_task(label, total=total, completed=initial))

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


class _Reporter:
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

    def say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, soft_wrap=True)  # never wrap a URL or path

    @contextmanager
    def progress(self) -> Iterator[_Progress]:
        if self.console is None:
            yield _Progress()
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
            yield _Progress(rich_progress)


# ---- `restore models` ------------------------------------------------------------------

def availability(spec: ModelSpec) -> str:
    """'bundled' if the model ships inside the package, 'download' if every component has a source a
    program can fetch, 'manual' if some need a person, else 'none'."""
    kinds = [{s.kind for s in c.sources} for c in spec.components.values()]
    if packaged_bundle(spec) is not None:
        return "bundled"
    if kinds and all(k & {"hub", "url"} for k in kinds):
        return "download"
    if any("manual" in k for k in kinds):
        return "manual"
    return "none"


def download_note(spec: ModelSpec) -> str:
    """What running the model for the first time fetches, in words (`restore TASK --help`)."""
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
    hosts = sorted({urlsplit(describe(s, c)).hostname or s.kind for c in spec.components.values()
                    for s in c.sources[:1]})
    files = len(spec.components)
    return (f"downloads {size} once ({files} file{'s' if files != 1 else ''} from {', '.join(hosts)}) "
            f"into the cache; 'restore fetch {spec.name}' does it ahead of time")


def model_rows(registry: Registry, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """One record per registered model: what `restore models` shows (and prints with --json)."""
    rows = []
    for spec in registry.models.values():
        sizes = [c.size for c in spec.components.values()]
        packaged = packaged_bundle(spec)
        path = packaged if packaged is not None else bundle_path(spec, cache_dir)
        cached = packaged is None and path.is_file()
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
                        "sources": [describe(s, c) for s in c.sources],
                    }
                    for n, c in spec.components.items()
                },
            }
        )
    return rows


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

    table = Table(
        title="Registered models (* = default for its task)", caption=f"cache: {root}",
        caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
    )
    longest = max((len(r["name"]) + 2 for r in rows), default=4)
    table.add_column("name", no_wrap=True, min_width=longest)
    table.add_column("task", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("steps", no_wrap=True)
    table.add_column("download", no_wrap=True, justify="right")
    table.add_column("license", overflow="fold", min_width=10)
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
            name, r["task"], r["method"], steps, size, r["license"] or "-",
            "[green]bundled[/]" if r["availability"] == "bundled" else "[green]yes[/]" if r["cached"] else "no",
        )
    return table
