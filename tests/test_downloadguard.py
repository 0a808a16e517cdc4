"""Guards around downloads (weights.downloadguard), through the real `restore fetch` with the fake
method in a sandbox, against rogueserver.RogueServer on 127.0.0.1: an unpinned download has a ceiling,
a restart from zero is given up, an interrupted download leaves no part file, and what arrives must be
a weights file before it enters the cache."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import fake_engine as fe
from helpers import err_of, files_under, one_line, pth_bytes, run_sandboxed, sandbox_env, start_cli
from rogueserver import RogueServer

NET = pth_bytes(fe.conv_state())  # the fake model's official file


@pytest.mark.parametrize("body", ["short", "html", "legacy-truncated"])
def test_a_corrupt_unpinned_download_is_removed_and_retried(tmp_path, body):
    bad = {
        "short": NET[:200],
        "html": b"<!doctype html><html><body>Sign in to continue</body></html>",
        "legacy-truncated": pth_bytes(fe.conv_state(), legacy=True)[:-40],
    }[body]
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", bad, mode="octet")  # no size or sha256 in the registry
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        res = run_sandboxed(tmp_path, "--registry", ov, "fetch", "-q", "fakenet")
        assert res.returncode == 3, err_of(res)
        err = one_line(res)
        assert "removed" in err and "fake_net.pth" in err and "restore fetch" in err, err
        assert not files_under(tmp_path / "cache" / "downloads")
        srv.add("/fake_net.pth", NET)  # the source is healthy again: the next run downloads it afresh
        res = run_sandboxed(tmp_path, "--registry", ov, "fetch", "fakenet")
        assert res.returncode == 0, err_of(res)
        assert len(srv.hits("/fake_net.pth")) == 2


def test_weights_file_problem_judges_structure(tmp_path):
    from safetensors.torch import save_file

    from restorecli.weights.downloadguard import weights_file_problem

    def write(name, data):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    save_file(fe.conv_state(), str(tmp_path / "ok.safetensors"))
    st = (tmp_path / "ok.safetensors").read_bytes()
    good = [
        write("zip.pth", NET),
        write("legacy.pth", pth_bytes(fe.conv_state(), legacy=True)),
        tmp_path / "ok.safetensors",
        write("plain.pkl", __import__("pickle").dumps({"a": [1, 2]})),
    ]
    assert [weights_file_problem(p) for p in good] == [None] * 4
    bad = {
        "empty": b"",
        "zip": NET[:300],
        "st": st[:-10],
        "html": b"\n <HTML><body>x</body></html>",
        "text": b"Not Found\n",
        "pickle": __import__("pickle").dumps(list(range(100)))[:-5],
        "bin": bytes(range(1, 40)),
    }
    problems = {k: weights_file_problem(write(k, v)) for k, v in bad.items()}
    assert all(problems.values()), problems
    assert "web page" in problems["html"] and "truncated" in problems["st"] and "zip" in problems["zip"]


def parts_in(cache: Path) -> list[Path]:
    return [p for p in files_under(cache) if p.name.endswith(".part")]


@pytest.mark.parametrize("declared", [None, 10**12])
def test_an_unpinned_download_has_a_ceiling(tmp_path, declared):
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", mode="endless", declared=declared, stream_s=30, limit=48 << 20)
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        t0 = time.monotonic()
        res = run_sandboxed(
            tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=60, env={"RESTORECLI_MAX_DOWNLOAD": "4M"}
        )
        assert time.monotonic() - t0 < 30
        assert len(srv.hits()) == 1
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "RESTORECLI_MAX_DOWNLOAD" in err and "4" in err
    assert not parts_in(tmp_path / "cache")


def test_a_bad_ceiling_value_is_a_usage_error(tmp_path):
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        res = run_sandboxed(
            tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=60, env={"RESTORECLI_MAX_DOWNLOAD": "lots"}
        )
    assert res.returncode == 2 and "RESTORECLI_MAX_DOWNLOAD" in one_line(res)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_download_removes_the_part_file_and_stale_parts_are_cleaned(tmp_path, sig, code):
    cache = tmp_path / "cache"
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", mode="endless", rate=2 << 20, stream_s=40, limit=100 << 20)
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        proc = start_cli("--registry", ov, "fetch", "-q", "fakenet", env=sandbox_env(tmp_path), fake=True)
        try:
            end = time.monotonic() + 60
            while not parts_in(cache) and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.05)
            assert parts_in(cache), "no download started"
            time.sleep(0.3)
            proc.send_signal(sig)
            got = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode()
        assert got == code, err
        assert "Traceback" not in err and ("interrupted" in err or sig == signal.SIGINT)
        assert not parts_in(cache)
        # a .part left by a hard kill (kill -9, power loss) is removed by the next download of that entry
        folder = next((cache / "downloads").iterdir())
        stale = folder / ".fake_net.pth.999999999.part"
        stale.write_bytes(bytes(1000))
        srv.add("/fake_net.pth", NET)
        res = run_sandboxed(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=120)
        assert res.returncode == 0, err_of(res)
    assert not stale.exists() and not parts_in(cache)


def test_a_server_that_restarts_from_zero_is_given_up(tmp_path):
    with RogueServer() as srv:
        # announces twice the bytes it sends, and answers every Range request from byte 0
        url = srv.add("/fake_net.pth", NET, mode="lie", declared=2 * len(NET))
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        res = run_sandboxed(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=45)
        assert 2 <= len(srv.hits()) <= 5
    assert res.returncode == 4, err_of(res)
    assert "fake_net.pth" in one_line(res)
    assert not parts_in(tmp_path / "cache")
