"""A real HTTP server on 127.0.0.1 that plays the Hugging Face Hub and a release host, for the fetch tests.

Hub side: what huggingface_hub's `hf_hub_download` asks for. A HEAD (then GET)
on `/{repo}/resolve/{revision}/{filename}` answered like the Hub answers for an
LFS file: `302` with `X-Repo-Commit`, `X-Linked-Etag` (the sha256), `X-Linked-Size`
and a `Location` on another origin (the "CDN", a second instance of this server),
where the bytes are served with Range support. Unknown repos, revisions and
files get 404 with the Hub's `X-Error-Code` header; a repo can demand a token.

Release side: `/releases/download/TAG/NAME` redirects (302) to `/files/NAME`, as
GitHub release assets do, and `/files/NAME` serves the bytes.

Faults are queued per path and consumed one request at a time: `("status", 500)`,
`("cut", nbytes)` (send the full Content-Length, then close after nbytes), or
`("html",)` (a web page instead of the file). Every request is logged.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class HubRepo:
    commit: str
    files: dict[str, bytes]
    token: str | None = None  # required "Bearer TOKEN", else 401 as for a private repo


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class State:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # /files/NAME
    blobs: dict[str, bytes] = field(default_factory=dict)  # /cdn/SHA256
    faults: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    log: list[Request] = field(default_factory=list)
    cdn_base: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # ---- routing -------------------------------------------------------------
    def _serve(self, head: bool) -> None:
        st = self.state
        path = unquote(urlsplit(self.path).path)
        with st.lock:
            st.log.append(Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            fault = st.faults[path].popleft() if st.faults[path] else None
        if fault and fault[0] == "status":
            return self._plain(fault[1], f"injected {fault[1]}\n", head)
        if fault and fault[0] == "html":
            return self._plain(200, "<html><body>Sign in to continue</body></html>", head, "text/html; charset=utf-8")
        if "/resolve/" in path:
            return self._resolve(path, head)
        if path.startswith("/releases/download/"):
            name = path.rsplit("/", 1)[-1]
            if name not in st.files:
                return self._plain(404, "Not Found", head)
            return self._redirect(f"/files/{name}", {}, head)
        if path.startswith("/files/") and path[len("/files/") :] in st.files:
            return self._bytes(st.files[path[len("/files/") :]], head, fault)
        if path.startswith("/cdn/") and path[len("/cdn/") :] in st.blobs:
            return self._bytes(st.blobs[path[len("/cdn/") :]], head, fault)
        return self._plain(404, "Not Found", head)

    def _resolve(self, path: str, head: bool) -> None:
        st = self.state
        repo_id, _, rest = path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        repo = st.repos.get(repo_id)
        if repo is None:
            return self._plain(404, "Repository not found", head, extra={"X-Error-Code": "RepoNotFound"})
        if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            return self._plain(401, "Invalid username or password.", head, extra={"X-Error-Code": "RepoNotFound"})
        if revision not in (repo.commit, "main"):
            return self._plain(404, "Revision not found", head, extra={"X-Error-Code": "RevisionNotFound"})
        commit = {"X-Repo-Commit": repo.commit}
        if filename not in repo.files:
            return self._plain(404, "Entry not found", head, extra={"X-Error-Code": "EntryNotFound", **commit})
        data = repo.files[filename]
        sha = hashlib.sha256(data).hexdigest()
        st.blobs[sha] = data
        return self._redirect(
            f"{st.cdn_base}/cdn/{sha}",
            {**commit, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)), "ETag": f'"{sha[:40]}"'},
            head,
        )

    # ---- answers -------------------------------------------------------------
    def _plain(self, code: int, text: str, head: bool, ctype: str = "text/plain", extra: dict | None = None) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _redirect(self, location: str, extra: dict, head: bool) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def _bytes(self, data: bytes, head: bool, fault: tuple | None) -> None:
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes=") : -1])
        body = data[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        if fault and fault[0] == "cut":
            self.wfile.write(body[: fault[1]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class LoopbackServer:
    """One server on 127.0.0.1 with a random port; use as a context manager."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state or State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- helpers for tests -----------------------------------------------------
    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.log)

    def fault(self, path: str, *faults: tuple) -> None:
        with self.state.lock:
            self.state.faults[path].extend(faults)
