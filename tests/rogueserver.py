"""A misbehaving HTTP file server on 127.0.0.1, for the tests of downloads, the cache and registry names.

Each path is a `Route`: bytes served in one of these modes:

- `ok`: the bytes, with Range support (206), like a release host;
- `endless`: a 200 that never ends (zeros, at most `rate` bytes/s and `limit` bytes), with `declared`
  as Content-Length or none at all;
- `lie`: declares `declared` bytes, sends only the route's bytes, then closes; ignores Range;
- `octet`: the bytes as `application/octet-stream`, whatever they are (an HTML page, a short body);
- `redirect`: a 302 to the route's `location` (any scheme: `ftp://` included);
- `trickle`: prompt headers declaring `declared` bytes, then one byte of body every `interval` seconds;
- `slowhead`: the status line and headers themselves, one byte every `interval` seconds.

A route can hold its answers until `gather` requests for it have arrived (or `gather_s`
seconds have passed), so several processes download at the same moment. Everything is
bounded: a streaming answer stops after `stream_s` seconds, and after `max_requests`
requests the server answers 410 to everything.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Route:
    data: bytes = b""
    mode: str = "ok"
    declared: int | None = None
    gather: int = 0
    gather_s: float = 8.0
    stream_s: float = 20.0
    rate: int | None = None
    limit: int = 64 << 20
    location: str = ""
    interval: float = 0.2
    arrived: int = 0


@dataclass
class Hit:
    method: str
    path: str
    range: str | None


@dataclass
class _State:
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(default_factory=threading.Condition)
    max_requests: int = 200
    closing: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        st = self.state
        path = unquote(urlsplit(self.path).path)
        with st.lock:
            st.log.append(Hit("GET", path, self.headers.get("Range")))
            count = len(st.log)
            route = st.routes.get(path)
        if count > st.max_requests:
            return self._plain(410, "request budget of the test server used up")
        if route is None:
            return self._plain(404, "Not Found")
        if route.gather:
            with st.cond:
                route.arrived += 1
                st.cond.notify_all()
                end = time.monotonic() + route.gather_s
                while route.arrived < route.gather and time.monotonic() < end and not st.closing.is_set():
                    st.cond.wait(0.05)
        getattr(self, f"_{route.mode}")(route)

    # ---- modes -------------------------------------------------------------------
    def _ok(self, route: Route) -> None:
        data = route.data
        rng = self.headers.get("Range", "")
        start = int(rng[len("bytes=") : -1]) if rng.startswith("bytes=") and rng.endswith("-") else 0
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send(body)

    def _redirect(self, route: Route) -> None:
        self.send_response(302)
        self.send_header("Location", route.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _octet(self, route: Route) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(route.data)))
        self.end_headers()
        self._send(route.data)

    def _lie(self, route: Route) -> None:
        self.send_response(200)  # Range ignored: always from byte 0
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(route.declared))
        self.end_headers()
        self._send(route.data)
        self.close_connection = True

    def _endless(self, route: Route) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if route.declared is not None:
            self.send_header("Content-Length", str(route.declared))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = bytes(1 << 16)
        start = time.monotonic()
        sent = 0
        try:
            while time.monotonic() < start + route.stream_s and sent < route.limit and not self.state.closing.is_set():
                if route.rate and sent > route.rate * (time.monotonic() - start):
                    time.sleep(0.01)
                    continue
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the client went away

    def _trickle(self, route: Route) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(route.declared or 1 << 20))
        self.end_headers()
        self.close_connection = True
        self._drip(bytes(route.declared or 1 << 20), route)

    def _slowhead(self, route: Route) -> None:
        self.close_connection = True
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + b"X-Pad: " + b"a" * 4096
        self._drip(head, route)

    def _drip(self, data: bytes, route: Route) -> None:
        """`data` one byte at a time, `route.interval` apart, for at most `route.stream_s` seconds."""
        end = time.monotonic() + route.stream_s
        try:
            self.wfile.flush()
            for i in range(len(data)):
                if time.monotonic() > end or self.state.closing.wait(route.interval):
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass  # the client went away

    # ---- helpers -----------------------------------------------------------------
    def _send(self, body: bytes) -> None:
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass

    def _plain(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send(body)


class RogueServer:
    """Use as a context manager; `url(path)` is the full URL of a route."""

    def __init__(self, max_requests: int = 200) -> None:
        self.state = _State(max_requests=max_requests)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> RogueServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, path: str, data: bytes = b"", **kw: object) -> str:
        with self.state.lock:
            self.state.routes[path] = Route(data=data, **kw)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str | None = None) -> list[Hit]:
        with self.state.lock:
            return [h for h in self.state.log if path is None or h.path == path]
