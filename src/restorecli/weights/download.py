"""Moving bytes: one file from a release URL (resumable, with retries) or through huggingface_hub.

A failed source raises `SourceFailed` with one line saying why (no network,
DNS, proxy, HTTP status, a web page where a file was expected), so the caller
can try the next source; a file of the wrong size raises WeightsError at once.
Files are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import http.client
import inspect
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import WeightsError
from ..version import __version__
from .cachefs import create_new
from .downloadguard import DownloadGuard, remove_stale_parts
from .progress import ByteBar, ByteProgress
from .specs import ComponentSpec, Source
from .speedwatch import SpeedWatch

CHUNK = 1 << 20
TIMEOUT_S = 30.0  # connect / read timeout of one HTTP request
RETRY_WAIT_S = 1.0  # pause before resuming a cut download or retrying a 5xx answer
MAX_TRIES = 4  # requests for one URL in a row that bring no new byte before giving up
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"restorecli/{__version__}"


class SourceFailed(Exception):
    """One source could not deliver (network, HTTP status, web page): try the next one."""

    def __init__(self, message: str, manual: bool = False) -> None:
        super().__init__(message)
        self.manual = manual


def _read_body(
    resp: Any, fh: Any, received: int, guard: DownloadGuard, bar: ByteBar, watch: SpeedWatch
) -> tuple[int, bool]:
    """Copy a response into `fh`; returns the bytes received in all and whether the connection broke.

    `read1` returns what has arrived, so a trickle is counted (by `watch`) as it comes.
    """
    while True:
        try:
            chunk = resp.read1(CHUNK)
        except (OSError, http.client.HTTPException):
            return received, True  # the connection broke (reset, timeout, bad chunk, the watchdog)
        if not chunk:
            return received, False
        fh.write(chunk)  # a full disk raises here, not as a network cut
        received += len(chunk)
        watch.count(len(chunk))
        guard.check_received(received)  # more bytes than declared: a lying server
        bar.advance(len(chunk))


def _check_size(url: str, label: str, total: int | None, expected_size: int | None) -> None:
    """A server announcing another size than the registry's serves another file: stop before reading it."""
    if expected_size is not None and total is not None and total != expected_size:
        raise WeightsError(
            f"{url} serves {total} bytes but the registry expects {expected_size} for {label}",
            "the source serves a different file: report it, or correct size/sources in a "
            "registry overlay (docs/weights.md)",
        )


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http(s): urllib would also follow one to ftp://, at every hop."""

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001 (urllib's signature)
        location = headers.get("location") or headers.get("uri") or ""
        newurl = urllib.parse.urljoin(req.full_url, location)
        scheme = urlsplit(newurl).scheme.lower()
        if location and scheme not in ("http", "https"):
            fp.close()
            raise SourceFailed(f"{req.full_url} redirects to {newurl}: only http(s) redirects are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def url_download(
    url: str, dest: Path, *, expected_size: int | None, label: str, progress: ByteProgress, ceiling: int | None = None
) -> None:
    """GET `url` into `dest` through a temporary file; resume with Range when the connection drops.

    Fails at once when the host cannot be reached (no network: an answer at once) or the transfer is
    under the low-speed limit (speedwatch); retries 5xx answers and cut transfers a few times.
    `ceiling` bounds a download whose size the registry does not pin (downloadguard)."""
    parts, host = _http_parts(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    remove_stale_parts(dest.parent, keep=part)  # left by a hard kill (we hold this entry's lock)
    guard = DownloadGuard(url, label, expected_size, ceiling)  # a server may lie about sizes: size ceiling, restarts
    watch = SpeedWatch()
    opener = _opener(watch)  # reads the proxy variables now, not at first use
    received, total, tries = 0, None, 0
    bar: ByteBar | None = None
    part.unlink(missing_ok=True)  # ours (this pid) from an earlier try, or a planted link: never written through
    try:
        with watch, os.fdopen(create_new(part), "wb") as fh:
            while True:
                tries += 1
                headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
                if received:
                    headers["Range"] = f"bytes={received}-"
                watch.start()
                try:
                    resp = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
                except urllib.error.HTTPError as exc:
                    exc.close()
                    watch.idle()
                    if exc.code in RETRY_STATUS and tries < MAX_TRIES:
                        time.sleep(RETRY_WAIT_S * tries)
                        continue
                    moved = f" (redirected to {exc.url})" if exc.url and exc.url != url else ""
                    raise SourceFailed(f"HTTP {exc.code} {exc.reason} from {url}{moved}") from None
                except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                    _judged(watch, url, host)
                    if received and tries < MAX_TRIES:  # dropped while resuming; the host was there
                        time.sleep(RETRY_WAIT_S)
                        continue
                    raise SourceFailed(f"{url}: {_net_reason(exc, host, parts.scheme)}") from None
                with resp:
                    kind = resp.headers.get("Content-Type", "")
                    if kind.startswith("text/html") and not label.endswith((".html", ".htm")):
                        raise SourceFailed(f"{url} returned a web page, not {label} (it needs a browser)", manual=True)
                    start, full = _range_of(resp)
                    if start != received:
                        if resp.status == 206:
                            raise SourceFailed(f"{url} answered bytes from {start} when asked from {received}")
                        fh.seek(0)  # the server ignored Range: start over
                        fh.truncate()
                        received = 0
                        if guard.restarted():  # a server that restarts forever is given up
                            raise SourceFailed(
                                f"{url} ignores Range and keeps breaking off: restarted from "
                                f"byte 0 {guard.restarts - 1} times"
                            )
                    total = full if full is not None else total
                    _check_size(url, label, total, expected_size)
                    guard.check_declared(total)  # a declared size over the ceiling stops before any byte
                    bar = bar or progress.bar(label, total)
                    bar.reset(received, total)
                    received, cut = _read_body(resp, fh, received, guard, bar, watch)
                _judged(watch, url, host)  # the watchdog cut it: what came is not the file
                if not cut and (total is None or received >= total):
                    break
                if guard.progressed(received):  # only bytes never received before count
                    tries = 0  # progress was made: the budget of tries starts again
                if tries + 1 >= MAX_TRIES:
                    raise SourceFailed(
                        f"connection to {host} kept closing: got {received} of {total or '?'} bytes of {url}"
                    )
                time.sleep(RETRY_WAIT_S)
        if total is not None and received != total:
            raise SourceFailed(f"{url} sent {received} bytes instead of {total}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _http_parts(url: str) -> tuple[Any, str]:
    """The URL's parts and host; SourceFailed for a scheme other than http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SourceFailed(f"{url}: not an http(s) URL")
    return parts, parts.hostname or url


def _judged(watch: SpeedWatch, url: str, host: str) -> None:
    """A request is over: stop judging it, and fail the source if the watchdog cut it."""
    watch.idle()
    if watch.tripped:
        raise SourceFailed(f"{url}: {watch.reason(host)}")


def _opener(watch: SpeedWatch) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections hand their socket to `watch` (so the watchdog can cut it)."""

    def watched(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        class Watched(base):  # type: ignore[valid-type, misc]
            def connect(self) -> None:
                super().connect()
                watch.attach(self.sock)

        return Watched

    class WatchedHTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(watched(http.client.HTTPConnection), req)

    class WatchedHTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(watched(http.client.HTTPSConnection), req, context=self._context)

    return urllib.request.build_opener(HttpOnlyRedirects, WatchedHTTP(), WatchedHTTPS())


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


def unreachable(url: str, timeout: float = 5.0) -> str | None:
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


def hub_cache_dir() -> Path:
    """The Hub cache huggingface_hub itself would use, read now (it reads the variables at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_endpoint(src: Source) -> str:
    return (src.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_url(src: Source, comp: ComponentSpec) -> str:
    """A Hub file as its resolve URL on the endpoint in use (what a person can open)."""
    return f"{hub_endpoint(src)}/{src.repo}/resolve/{src.revision}/{src.filename or comp.file}"


def hub_download(
    src: Source, comp: ComponentSpec, *, local_only: bool, progress: ByteProgress | None, force: bool = False
) -> Path:
    """One file through huggingface_hub (its cache, endpoint, token and offline rules)."""
    import huggingface_hub
    from huggingface_hub import utils as hf_utils

    endpoint = hub_endpoint(src)
    filename = src.filename or comp.file or ""
    where = hub_url(src, comp)
    if not local_only:
        down = unreachable(endpoint)
        if down:
            raise SourceFailed(f"{where}: {down}")
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
            raise SourceFailed(f"{where}: not in the Hub cache {hub_cache_dir()}") from None
        raise SourceFailed(f"{where}: {_hub_cause(exc.__cause__ or exc)}") from None
    except hf_utils.RevisionNotFoundError:
        raise SourceFailed(f"revision {src.revision} not found in Hub repo {src.repo} ({where})") from None
    except hf_utils.EntryNotFoundError:
        raise SourceFailed(f"{filename} not found in Hub repo {src.repo} ({where})") from None
    except hf_utils.RepositoryNotFoundError as exc:
        status = _status_of(exc)
        raise SourceFailed(
            f"Hub repo {src.repo} not found or not accessible{f' (HTTP {status})' if status else ''} "
            f"({where}); for a private repo set HF_TOKEN"
        ) from None
    except (hf_utils.HfHubHTTPError, hf_utils.OfflineModeIsEnabled, OSError, ValueError) as exc:
        raise SourceFailed(f"{where}: {_hub_cause(exc)}") from None
    except Exception as exc:  # httpx/requests transport errors differ between huggingface_hub versions
        raise SourceFailed(f"{where}: {_hub_cause(exc)}") from None


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
