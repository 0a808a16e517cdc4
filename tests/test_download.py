"""Downloads against a hostile loopback server: redirects only to http(s), at every hop; a trickle is
cut by the low-speed limit; an unpinned file is bounded relative to the registry's largest file
(weights.download, weights.downloadguard).

The redirect tests' server answers 302 to `ftp://` (directly, or after an http hop) pointing at a
listener on 127.0.0.1 that greets like an FTP server; they check the listener was never reached.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

import fake_engine as fe
from helpers import err_of, run_sandboxed
from restorecli.errors import UsageError, WeightsError
from restorecli.weights import downloadguard, fetch
from restorecli.weights.download import SourceFailed, url_download
from restorecli.weights.progress import ByteProgress
from restorecli.weights.registry import builtin_registry
from rogueserver import RogueServer


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
        ov = fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url)))
        res = run_sandboxed(tmp_path, "--registry", str(ov), "fetch", "fakenet")
        assert ftp.connections == 0
    assert res.returncode == 4, err_of(res)
    err = err_of(res)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "redirects to" in errors[0] and "only http(s) redirects" in errors[0], err


@pytest.fixture
def quick_window(monkeypatch):
    """A one-second low-speed window, so a trickle is judged within seconds."""
    monkeypatch.setenv("RESTORECLI_LOW_SPEED_TIME", "1")
    monkeypatch.delenv("RESTORECLI_MAX_DOWNLOAD", raising=False)


def fetch_into(tmp_path, url, **kw):
    dest = tmp_path / "dl" / "net.pth"
    url_download(url, dest, expected_size=kw.pop("expected_size", None), label="net.pth", progress=ByteProgress(), **kw)
    return dest


@pytest.mark.parametrize(
    "mode, interval",
    [
        ("trickle", 0.2),  # body: one byte every 0.2 s, each read well inside the socket timeout
        ("trickle", 0.05),
        ("slowhead", 0.2),  # the headers themselves never end
        ("slowhead", 0.02),
    ],
)
def test_a_trickle_is_cut_by_the_low_speed_limit_naming_the_host(tmp_path, quick_window, mode, interval):
    with RogueServer() as srv:
        url = srv.add("/net.pth", mode=mode, declared=1 << 20, interval=interval, stream_s=25)
        t0 = time.monotonic()
        with pytest.raises(SourceFailed) as info:
            fetch_into(tmp_path, url)
        took = time.monotonic() - t0
    message = str(info.value)
    assert "127.0.0.1" in message and "low-speed" in message and "\n" not in message
    assert took < 20, took  # a bound against hanging, not a timing claim
    assert not list((tmp_path / "dl").iterdir())  # no part file left behind


def test_a_transfer_above_the_limit_is_not_cut(tmp_path, quick_window):
    data = bytes(range(256)) * 4096  # 1 MiB at 2 MiB/s: over a second, well above 1 kB/s
    with RogueServer() as srv:
        url = srv.add("/net.pth", data, mode="endless", declared=len(data), rate=2 << 20, limit=len(data))
        dest = fetch_into(tmp_path, url, expected_size=len(data))
    assert dest.stat().st_size == len(data)


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf", "1e300", "", " 5 ", "0.5"])
def test_low_speed_window_setting_is_checked(monkeypatch, raw):
    from restorecli.weights.speedwatch import low_speed_time

    monkeypatch.setenv("RESTORECLI_LOW_SPEED_TIME", raw)
    if raw.strip() in ("", "5", "0.5"):
        assert low_speed_time() == (float(raw) if raw.strip() else 30.0)
    else:
        with pytest.raises(UsageError):
            low_speed_time()


@pytest.mark.parametrize("largest", [1, 4 << 20, 477917058])
def test_unpinned_ceiling_follows_the_largest_registered_file(monkeypatch, largest):
    monkeypatch.delenv("RESTORECLI_MAX_DOWNLOAD", raising=False)
    assert downloadguard.download_ceiling(largest) == downloadguard.CEILING_FACTOR * largest
    monkeypatch.setenv("RESTORECLI_MAX_DOWNLOAD", "3M")
    assert downloadguard.download_ceiling(largest) == 3_000_000  # an explicit setting wins


def test_unpinned_ceiling_of_the_real_registry_is_a_small_multiple_of_its_largest_file(monkeypatch):
    monkeypatch.delenv("RESTORECLI_MAX_DOWNLOAD", raising=False)
    sizes = [c.size for m in builtin_registry().models.values() for c in m.components.values() if c.size]
    largest = fetch.largest_pinned()
    assert largest is not None and largest >= max(sizes)
    assert downloadguard.download_ceiling(largest) <= 2 * largest < 10 * 1000**3


@pytest.mark.parametrize("declared", [None, 10**12])
def test_an_unpinned_download_stops_at_the_ceiling(tmp_path, quick_window, declared):
    with RogueServer() as srv:
        url = srv.add("/net.pth", mode="endless", declared=declared, stream_s=20, limit=24 << 20)
        with pytest.raises(WeightsError) as info:
            fetch_into(tmp_path, url, ceiling=downloadguard.download_ceiling(2 << 20))
    assert "ceiling" in str(info.value) and "4.19 MB" in str(info.value)
    assert not list((tmp_path / "dl").iterdir())
