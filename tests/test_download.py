"""Downloads follow redirects only to http(s), at every hop, against a hostile loopback server.

The server answers 302 to `ftp://` (directly, or after an http hop) pointing at a listener
on 127.0.0.1 that greets like an FTP server; the test checks the listener was never reached.
"""

from __future__ import annotations

import socket
import threading

import pytest

from rogueserver import RogueServer
from test_reliability import err_of, model_toml, restore, url_source, write_overlay


class FtpListener:
    """Counts the connections made to it (an FTP client would log in after the greeting)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                conn.sendall(b"421 closing\r\n")
            finally:
                conn.close()

    def __enter__(self) -> FtpListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("hops", [1, 2])
@pytest.mark.parametrize("scheme", ["ftp", "file"])
def test_a_redirect_away_from_http_is_refused(tmp_path, hops, scheme):
    with FtpListener() as ftp, RogueServer() as srv:
        target = f"ftp://127.0.0.1:{ftp.port}/fake_net.pth" if scheme == "ftp" else f"file://{tmp_path}/x.pth"
        srv.add("/last", mode="redirect", location=target)
        url = srv.add("/first", mode="redirect", location=srv.url("/last")) if hops == 2 else srv.url("/last")
        ov = write_overlay(tmp_path, model_toml(sources=url_source(url)))
        res = restore(tmp_path, "--registry", str(ov), "fetch", "fakenet")
        assert ftp.connections == 0
    assert res.returncode == 4, err_of(res)
    err = err_of(res)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "redirects to" in errors[0] and "only http(s) redirects" in errors[0], err
