"""Reliability and security, each case through the real `restore` entry point.

Every test runs the command in a subprocess (`tests/fake_engines.py` is the CLI with
the tiny "fake" method registered) against an empty cache in tmp_path, with every
proxy pointed at a closed loopback port; network cases use `rogueserver.RogueServer`
on 127.0.0.1, whose answers are bounded in count and time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fake_engines as fe
from rogueserver import RogueServer

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CLOSED = "http://127.0.0.1:9"


# ---- helpers ----------------------------------------------------------------------------


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment that cannot leave the machine and uses this test's own cache."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO / "src"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "RESTORECLI_CACHE": str(tmp_path / "cache"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
            "HF_ENDPOINT": CLOSED,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HTTP_PROXY": CLOSED,
            "HTTPS_PROXY": CLOSED,
            "ALL_PROXY": CLOSED,
            "http_proxy": CLOSED,
            "https_proxy": CLOSED,
            "all_proxy": CLOSED,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "HF_HUB_OFFLINE": "",
            "RESTORECLI_OFFLINE": "",
            "RESTORECLI_REGISTRY": "",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.update(extra)
    return env


def restore(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    popen: bool = False,
    preexec=None,
):
    """`restore ARGS` (with the fake method available) in a subprocess."""
    cmd = [sys.executable, str(TESTS / "fake_engines.py"), *args]
    full = env_for(tmp_path, **(env or {}))
    if popen:
        return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)
    return subprocess.run(cmd, env=full, capture_output=True, timeout=timeout, preexec_fn=preexec)


def err_of(res) -> str:
    return res.stderr.decode(errors="replace").strip()


def one_line(res) -> str:
    err = err_of(res)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def pth_bytes(state: dict[str, torch.Tensor] | None = None) -> bytes:
    buf = io.BytesIO()
    torch.save(state if state is not None else fe.identity_state(), buf)
    return buf.getvalue()


NET = pth_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


ARCH = '[arch.fake-conv]\nkind = "fake.conv"\n\n'


def model_toml(
    name: str = "fakenet", *, file: str = "fake_net.pth", sources: str = "[]", extra: str = "", comp_extra: str = ""
) -> str:
    return (
        f'[models.{name}]\nmethod = "fake"\ntask = "sr"\nscale = 2\ntrained_steps = 1\nmax_steps = 4\n'
        f"sampler = {{ noise = 0.0 }}\n{extra}\n"
        f'[models.{name}.components.net]\narch = "fake-conv"\nfile = {json.dumps(file)}\n'
        f"sources = {sources}\n{comp_extra}\n"
    )


def url_source(url: str) -> str:
    return f'[{{ kind = "url", url = {json.dumps(url)} }}]'


def write_overlay(tmp_path: Path, body: str, name: str = "ov.toml") -> Path:
    path = tmp_path / name
    path.write_text(ARCH + body)
    return path


def png(path: Path, size=(8, 8), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3)).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---- 1. registry paths never leave the cache ----------------------------------------------


def test_item1_absolute_file_is_refused_and_never_deleted_offline(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    ov = write_overlay(
        tmp_path, model_toml(file=str(precious), sources=url_source(CLOSED + "/x.pth"), comp_extra="size = 1\n")
    )
    res = restore(tmp_path, "--offline", "--registry", str(ov), "fetch", "fakenet")
    assert precious.read_text() == "keep me"
    assert res.returncode == 2, err_of(res)
    err = one_line(res)
    assert str(ov) in err and "fakenet" in err and "'file'" in err


def test_item1_dotdot_file_is_refused_online_and_never_written(tmp_path):
    victim = tmp_path / "victim" / "y.txt"
    victim.parent.mkdir()
    victim.write_text("original")
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        # CACHE/downloads/KEY/../../../victim/y.txt is tmp_path/victim/y.txt
        ov = write_overlay(tmp_path, model_toml(file="../../../victim/y.txt", sources=url_source(url)))
        res = restore(tmp_path, "--registry", str(ov), "fetch", "fakenet")
        assert not srv.hits()
    assert victim.read_text() == "original"
    assert res.returncode == 2, err_of(res)
    assert "'file'" in one_line(res)


def test_item1_task_command_never_deletes_outside_the_cache(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        ov = write_overlay(tmp_path, model_toml(file=str(precious), sources=url_source(url), comp_extra="size = 1\n"))
        res = restore(
            tmp_path,
            "--registry",
            str(ov),
            "sr",
            str(png(tmp_path / "a.png")),
            str(tmp_path / "out"),
            "--model",
            "fakenet",
        )
    assert precious.read_text() == "keep me"
    assert res.returncode == 2, err_of(res)
    one_line(res)


@pytest.mark.parametrize("case", ["hub-filename", "bundled-path", "model-name", "component-name", "backslash"])
def test_item1_every_path_like_value_is_a_plain_relative_name(tmp_path, case):
    if case == "hub-filename":
        body = model_toml(
            sources='[{ kind = "hub", repo = "org/x", filename = "../../../etc/passwd", '
            'revision = "0123456789abcdef0123456789abcdef01234567" }]'
        )
    elif case == "bundled-path":
        body = model_toml(sources='[{ kind = "bundled", path = "../../../../etc/passwd" }]')
    elif case == "model-name":
        body = model_toml('"../../escape"', sources=url_source(CLOSED + "/x.pth"))
    elif case == "component-name":
        body = model_toml(sources=url_source(CLOSED + "/x.pth")).replace("components.net]", 'components."../n"]')
    else:
        body = model_toml(file="..\\..\\x.pth", sources=url_source(CLOSED + "/x.pth"))
    ov = write_overlay(tmp_path, body)
    res = restore(tmp_path, "--registry", str(ov), "models", "--json")
    assert res.returncode == 2, err_of(res)
    assert str(ov) in one_line(res)
    assert not (tmp_path / "cache").exists()


# ---- 5. concurrent first use of one cache -------------------------------------------------


def test_item5_concurrent_first_use_of_an_empty_cache_all_succeed(tmp_path):
    """Three `--shard k/3` jobs and a `restore fetch` start together on an empty cache; the server
    holds its answers until all four asked, so they download at the same moment (the race)."""
    for i in range(9):
        png(tmp_path / "in" / f"{i}.png", seed=i)
    out = tmp_path / "out"
    with RogueServer() as srv:
        # a 32 MB file (padding beside the state dict), so checking and loading it takes a while
        big = pth_bytes({"state_dict": fe.identity_state(), "padding": torch.zeros(8 << 20)})
        url = srv.add("/fake_net.pth", big, gather=4, gather_s=10)
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        procs = [
            restore(
                tmp_path,
                "--registry",
                ov,
                "sr",
                str(tmp_path / "in"),
                str(out),
                "--model",
                "fakenet",
                "--shard",
                f"{k}/3",
                "--json",
                popen=True,
            )
            for k in range(3)
        ]
        procs.append(restore(tmp_path, "--registry", ov, "fetch", "fakenet", popen=True))
        results = []
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, stderr = p.communicate()
            results.append((p.returncode, stdout, stderr.decode(errors="replace")))
    assert [rc for rc, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    done = sum(json.loads(o)["done"] for _, o, _ in results[:3])
    assert done == 9 and len([p for p in out.iterdir() if not p.name.startswith(".")]) == 9
    cache = tmp_path / "cache"
    assert [p.name for p in (cache / "bundles").iterdir()] == [p.name for p in files_under(cache / "bundles")]
    assert not [p for p in files_under(cache) if p.suffix in (".part", ".tmp")]


# ---- 10. registry overlays are validated on load --------------------------------------------

BAD_OVERLAYS = {
    "sources-string": ("sources", lambda url: model_toml(sources=json.dumps(url))),
    "trained-steps-text": (
        "trained_steps",
        lambda url: model_toml(sources=url_source(url)).replace("trained_steps = 1", 'trained_steps = "two"'),
    ),
    "sha256-short": ("sha256", lambda url: model_toml(sources=url_source(url), comp_extra='sha256 = "abc123"\n')),
    "size-negative": ("size", lambda url: model_toml(sources=url_source(url), comp_extra="size = -5\n")),
    "file-url": ("url", lambda url: model_toml(sources=url_source("file:///etc/passwd"))),
    "malformed-url": ("url", lambda url: model_toml(sources=url_source("http//127.0.0.1/x.pth"))),
    "url-without-host": ("url", lambda url: model_toml(sources=url_source("http:///x.pth"))),
    "source-not-a-table": ("sources", lambda url: model_toml(sources=f"[{json.dumps(url)}]")),
    "default-for-string": (
        "default_for",
        lambda url: model_toml(sources=url_source(url), extra='default_for = "sr"\n'),
    ),
    "unknown-source-field": (
        "filname",
        lambda url: model_toml(sources=f'[{{ kind = "url", url = {json.dumps(url)}, filname = "x.pth" }}]'),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERLAYS))
def test_item10_overlay_mistakes_are_one_line_usage_errors(tmp_path, case):
    field, make = BAD_OVERLAYS[case]
    ov = write_overlay(tmp_path, make(CLOSED + "/fake_net.pth"))
    for args in (["models", "--json"], ["fetch", "fakenet"]):
        res = restore(tmp_path, "--registry", str(ov), *args, timeout=120)
        assert res.returncode == 2, (args, err_of(res))
        err = one_line(res)
        assert str(ov) in err and "'fakenet'" in err and f"'{field}'" in err, err


# ---- 7. a corrupt unpinned download never stays in the cache ----------------------------------


def legacy_pth(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


@pytest.mark.parametrize("body", ["short", "html", "legacy-truncated"])
def test_item7_corrupt_unpinned_download_is_removed_and_retried(tmp_path, body):
    bad = {
        "short": NET[:200],
        "html": b"<!doctype html><html><body>Sign in to continue</body></html>",
        "legacy-truncated": legacy_pth(fe.identity_state())[:-40],
    }[body]
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", bad, mode="octet")  # no size or sha256 in the registry
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        res = restore(tmp_path, "--registry", ov, "fetch", "-q", "fakenet")
        assert res.returncode == 3, err_of(res)
        err = one_line(res)
        assert "removed" in err and "fake_net.pth" in err and "restore fetch" in err, err
        assert not files_under(tmp_path / "cache" / "downloads")
        srv.add("/fake_net.pth", NET)  # the source is healthy again: the next run downloads it afresh
        res = restore(tmp_path, "--registry", ov, "fetch", "fakenet")
        assert res.returncode == 0, err_of(res)
        assert len(srv.hits("/fake_net.pth")) == 2


def test_item7_weights_file_problem_judges_structure(tmp_path):
    from safetensors.torch import save_file

    from restorecli.weights.downloadguard import weights_file_problem

    def write(name, data):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    save_file(fe.identity_state(), str(tmp_path / "ok.safetensors"))
    st = (tmp_path / "ok.safetensors").read_bytes()
    good = [
        write("zip.pth", NET),
        write("legacy.pth", legacy_pth(fe.identity_state())),
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


# ---- 6. downloads are bounded, interruptible and cleaned up -----------------------------------


def run_bounded(tmp_path: Path, *args: str, timeout: float, env: dict[str, str] | None = None):
    """Run, but fail the test (rather than hang) when the command does not finish in time."""
    proc = restore(tmp_path, *args, env=env, popen=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"'restore {' '.join(args)}' still running after {timeout} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def parts_in(cache: Path) -> list[Path]:
    return [p for p in files_under(cache) if p.name.endswith(".part")]


@pytest.mark.parametrize("declared", [None, 10**12])
def test_item6_unpinned_download_has_a_ceiling(tmp_path, declared):
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", mode="endless", declared=declared, stream_s=30, limit=48 << 20)
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        t0 = time.monotonic()
        res = run_bounded(
            tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=60, env={"RESTORECLI_MAX_DOWNLOAD": "4M"}
        )
        assert time.monotonic() - t0 < 30
        assert len(srv.hits()) == 1
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "RESTORECLI_MAX_DOWNLOAD" in err and "4" in err
    assert not parts_in(tmp_path / "cache")


def test_item6_bad_ceiling_value_is_a_usage_error(tmp_path):
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        res = run_bounded(
            tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=60, env={"RESTORECLI_MAX_DOWNLOAD": "lots"}
        )
    assert res.returncode == 2 and "RESTORECLI_MAX_DOWNLOAD" in one_line(res)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_item6_sigterm_during_a_download_removes_the_part_file_and_stale_parts_are_cleaned(tmp_path, sig, code):
    cache = tmp_path / "cache"
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", mode="endless", rate=2 << 20, stream_s=40, limit=100 << 20)
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        proc = restore(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", popen=True)
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
        res = run_bounded(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=120)
        assert res.returncode == 0, err_of(res)
    assert not stale.exists() and not parts_in(cache)


def test_item6_a_server_that_restarts_from_zero_is_given_up(tmp_path):
    with RogueServer() as srv:
        # announces twice the bytes it sends, and answers every Range request from byte 0
        url = srv.add("/fake_net.pth", NET, mode="lie", declared=2 * len(NET))
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        res = run_bounded(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", timeout=45)
        assert 2 <= len(srv.hits()) <= 5
    assert res.returncode == 4, err_of(res)
    assert "fake_net.pth" in one_line(res)
    assert not parts_in(tmp_path / "cache")


# ---- 2. a bundle's declared network is checked against its tensors before it is built -----------


def packaged(name: str) -> Path:
    return REPO / "src" / "restorecli" / "models" / f"{name}.safetensors"


def rewrite_spec(src: Path, dst: Path, **config) -> Path:
    """A copy of a `restore train` bundle whose metadata declares a different network config."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    spec = json.loads(meta["spec"])
    for comp in spec["components"].values():
        comp["config"].update(config)
    meta["spec"] = json.dumps(spec)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("dim", [10**6, 10**4])
def test_item2_declared_network_larger_than_the_tensors_fails_at_once(tmp_path, dim):
    evil = rewrite_spec(packaged("rddm-derain-small"), tmp_path / "evil.safetensors", dim=dim)
    t0 = time.monotonic()
    res = run_bounded(
        tmp_path,
        "derain",
        str(png(tmp_path / "a.png", size=(16, 16))),
        str(tmp_path / "out.png"),
        "--weights",
        str(evil),
        "--device",
        "cpu",
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "declare" in err and str(dim) in err, err
    assert elapsed < 60 and not (tmp_path / "out.png").exists()


# ---- 8. non-finite network output fails the file ------------------------------------------------


def fake_bundle(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({f"net.{k}": v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_item8_nan_weights_fail_each_file_and_write_nothing(tmp_path):
    overlay, _ = fe.write_model(tmp_path / "model")
    state = fe.identity_state()
    state["weight"][0, 0, 1, 1] = float("nan")
    weights = fake_bundle(tmp_path / "nan.safetensors", state)
    for i in range(2):
        png(tmp_path / "in" / f"{i}.png", seed=i)
    out = tmp_path / "out"
    for _ in range(2):  # and a rerun does not skip anything: no black image was left behind
        res = restore(
            tmp_path,
            "--registry",
            str(overlay),
            "sr",
            str(tmp_path / "in"),
            str(out),
            "--model",
            "fake-x2",
            "--weights",
            str(weights),
            "--json",
        )
        err = err_of(res)
        assert res.returncode == 1, err
        doc = json.loads(res.stdout)
        assert doc["done"] == 0 and doc["skipped"] == 0 and doc["failed"] == 2
        assert all("NaN" in f["reason"] for f in doc["files"]), doc
        assert "RuntimeWarning" not in err and "Traceback" not in err
        assert not files_under(out)


def test_item8_output_problem_counts_nan_and_inf():
    from restorecli.runtime.finite import output_problem

    x = torch.zeros(1, 3, 4, 4)
    assert output_problem(x) is None
    x[0, 0, 0, 0] = float("nan")
    x[0, 1, 0, 1] = float("inf")
    problem = output_problem(x)
    assert "NaN" in problem and "Inf" in problem and "2 of 48" in problem


# ---- 3. pickles with code are refused for what they are ---------------------------------------


class _Payload:
    """Unpickling this would run a shell command (it never may)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_file(path: Path, how: str, marker: Path) -> Path:
    import pickle

    obj = {"weight": torch.zeros(3, 3, 3, 3), "bias": _Payload(marker)}
    if how == "raw-pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=(how == "zip"))
        path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("how", ["legacy-torch-save", "raw-pickle", "zip"])
def test_item3_pickled_code_is_named_and_never_run(tmp_path, how):
    overlay, _ = fe.write_model(tmp_path / "model")
    marker = tmp_path / "pwned"
    evil = evil_file(tmp_path / "evil.pth", how, marker)
    for args in (
        ["convert", "fake-x2", f"net={evil}", "-o", str(tmp_path / "b.safetensors")],
        [
            "sr",
            str(png(tmp_path / "a.png")),
            str(tmp_path / "out.png"),
            "--model",
            "fake-x2",
            "--weights",
            f"net={evil}",
        ],
    ):
        res = restore(tmp_path, "--registry", str(overlay), *args)
        assert res.returncode == 3, err_of(res)
        err = one_line(res)
        assert "code" in err and "system" in err, err
        assert "weights_only" not in err and "Warning" not in err, err
    assert not marker.exists()
    assert not (tmp_path / "b.safetensors").exists() and not (tmp_path / "out.png").exists()


def test_item3_plain_pickle_without_code_says_what_it_holds(tmp_path):
    import pickle

    overlay, _ = fe.write_model(tmp_path / "model")
    data = tmp_path / "list.pth"
    data.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    res = restore(
        tmp_path, "--registry", str(overlay), "convert", "fake-x2", f"net={data}", "-o", str(tmp_path / "b.safetensors")
    )
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "weights_only" not in err and "Warning" not in err
    assert "plain pickle" in err and "not a PyTorch" in err, err


# ---- 4. cache files follow the umask ------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_item4_bundles_follow_the_umask(tmp_path, umask):
    overlay, _ = fe.write_model(tmp_path / "model")
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        ov = str(write_overlay(tmp_path, model_toml(sources=url_source(url))))
        res = restore(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", preexec=lambda: os.umask(umask))
        assert res.returncode == 0, err_of(res)
    (tmp_path / "net.pth").write_bytes(NET)
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "convert",
        "fake-x2",
        f"net={tmp_path / 'net.pth'}",
        "-o",
        str(tmp_path / "mine.safetensors"),
        preexec=lambda: os.umask(umask),
    )
    assert res.returncode == 0, err_of(res)
    bundles = list((tmp_path / "cache" / "bundles").glob("*.safetensors"))
    assert len(bundles) == 1
    for path in (bundles[0], tmp_path / "mine.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))


# ---- 12. outputs are checked before the model is loaded ------------------------------------------


def unwritable_folder(tmp_path: Path, how: str) -> Path:
    if how == "under-a-file":  # missing and impossible to create, even for root
        (tmp_path / "blocker").write_text("a file where a folder would be")
        return tmp_path / "blocker" / "out"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root ignores mode bits: an immutable folder refuses root too (ext4, CAP_LINUX_IMMUTABLE)
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"root writes into read-only folders and chattr +i failed: {made.stderr.decode().strip()}")
    return folder


def release_folder(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@pytest.mark.parametrize("how", ["under-a-file", "read-only"])
def test_item12_unwritable_output_folder_fails_before_the_model_loads(tmp_path, how, request):
    overlay, _ = fe.write_model(tmp_path / "model")
    for i in range(3):
        png(tmp_path / "in" / f"{i}.png", seed=i)
    out = unwritable_folder(tmp_path, how)
    request.addfinalizer(lambda: release_folder(out))
    # weights that do not exist: loading the model would fail with exit 3, so exit 1 proves it never loaded
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(tmp_path / "in"),
        str(out),
        "--model",
        "fake-x2",
        "--weights",
        str(tmp_path / "missing.safetensors"),
        "--json",
    )
    err = err_of(res)
    assert res.returncode == 1, err
    doc = json.loads(res.stdout)
    assert doc["failed"] == 3 and all("cannot write" in f["reason"] and str(out) in f["reason"] for f in doc["files"])
    assert err.count("failed: ") == 1 and "(3 files)" in err and "Traceback" not in err  # one line per folder


# ---- 9. a symlink loop is one failed file, not a crashed run --------------------------------------


def test_item9_symlink_loop_in_an_input_folder_is_reported_per_file(tmp_path):
    overlay, bundle = fe.write_model(tmp_path / "model")
    src = tmp_path / "in"
    png(src / "good.png")
    (src / "a.png").symlink_to("b.png")
    (src / "b.png").symlink_to("a.png")
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(src),
        str(tmp_path / "out"),
        "--model",
        "fake-x2",
        "--weights",
        str(bundle),
        "--json",
    )
    err = err_of(res)
    assert res.returncode == 1, err
    doc = json.loads(res.stdout)
    status = {Path(f["path"]).name: f for f in doc["files"]}
    assert status["good.png"]["status"] == "done"
    for name in ("a.png", "b.png"):
        assert status[name]["status"] == "failed" and "symbolic link" in status[name]["reason"], status
    assert "Traceback" not in err and (tmp_path / "out" / "good.png").is_file()


# ---- 11. clear errors: convert onto a full disk, a mask that is not an image, newlines in names ----


def _full_disk(limit: int = 300):
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("how", ["full-disk", "under-a-file", "read-only"])
def test_item11_convert_onto_an_unwritable_place_is_one_line(tmp_path, how, request):
    overlay, _ = fe.write_model(tmp_path / "model")
    (tmp_path / "net.pth").write_bytes(NET)
    preexec = None
    if how == "full-disk":
        out, preexec = tmp_path / "b.safetensors", _full_disk()
    else:
        folder = unwritable_folder(tmp_path, how)
        request.addfinalizer(lambda: release_folder(folder))
        out = folder / "b.safetensors"
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "convert",
        "fake-x2",
        f"net={tmp_path / 'net.pth'}",
        "-o",
        str(out),
        preexec=preexec,
    )
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "cannot write" in err and str(out) in err, err
    assert not out.exists() and not [p for p in out.parent.glob(".*.tmp")] if out.parent.is_dir() else True


def test_item11_a_mask_that_is_not_an_image_is_named(tmp_path):
    overlay, _ = fe.write_model(tmp_path / "model")
    from restorecli.weights.bundle import write_bundle

    # a bundle recording the inpaint task (a bundle for another task is refused)
    write_bundle(
        tmp_path / "inpaint.safetensors", fe.fake_spec("fake-inpaint", "inpaint", 1), {"net": fe.identity_state()}
    )
    mask = tmp_path / "mask.png"
    mask.write_text("not an image")
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "inpaint",
        str(png(tmp_path / "a.png")),
        str(tmp_path / "out.png"),
        "--mask",
        str(mask),
        "--model",
        "fake-inpaint",
        "--weights",
        str(tmp_path / "inpaint.safetensors"),
        "--json",
    )
    assert res.returncode == 1, err_of(res)
    reason = json.loads(res.stdout)["files"][0]["reason"]
    assert f"mask {mask}" in reason and "not an image" in reason, reason


def test_item11_newlines_in_file_names_stay_on_one_line(tmp_path):
    overlay, bundle = fe.write_model(tmp_path / "model")
    src = tmp_path / "in"
    png(src / "a\nb.png")
    (src / "c\nd.png").write_text("not an image")
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(src),
        str(tmp_path / "out"),
        "--model",
        "fake-x2",
        "--weights",
        str(bundle),
    )
    assert res.returncode == 1, err_of(res)
    lines = err_of(res).splitlines()
    assert len(lines) == 3, lines  # one progress line, one failure, the summary
    assert any(line.startswith("failed: ") and "c\\nd.png" in line for line in lines), lines
    assert any(line.startswith(("[1/2] ", "[2/2] ")) and "a\\nb.png" in line for line in lines), lines
    assert (tmp_path / "out" / "a\nb.png").is_file()


# ---- 13. multi-frame inputs are not silently cut to their first frame --------------------------------


def test_item13_multi_frame_inputs_are_flagged_in_stderr_and_json(tmp_path):
    overlay, bundle = fe.write_model(tmp_path / "model")
    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 128, 250)]
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    png(src / "single.png")
    out = tmp_path / "out"
    for inp in (str(src), str(tmp_path / "anim.gif")):
        res = restore(
            tmp_path,
            "--registry",
            str(overlay),
            "sr",
            inp,
            str(out),
            "--model",
            "fake-x2",
            "--weights",
            str(bundle),
            "--json",
        )
        err = err_of(res)
        assert res.returncode == 0, err
        files = {Path(f["path"]).name: f for f in json.loads(res.stdout)["files"]}
        for name, f in files.items():
            flagged = [w for w in f["warnings"] if "first of 3" in w]
            assert bool(flagged) == (name != "single.png"), files
            if flagged:
                assert f"warning: {f['path']}: {flagged[0]}" in err
