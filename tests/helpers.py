"""What the test files share, so each is written once: where things are, running the `restore`
command in a subprocess, environments that keep it off the network, and small inputs (images,
checkpoints, bundles, conformance cases).

Every subprocess runs through `run_bounded`: a command that hangs fails its test after its
time limit, with its whole process group stopped, instead of stalling the suite.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from restorecli.training.config import TrainConfig
    from restorecli.weights.registry import ModelSpec

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
SHARED = Path(os.environ.get("RESTORECLI_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CLOSED = "http://127.0.0.1:9"  # nothing listens there: the proxy and Hub of a sandboxed run
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # tiny models on a busy machine


# ---- paths ------------------------------------------------------------------------------


def shared_path(*parts: str) -> Path:
    """A path under ../shared; skip the test if it is missing (fail under CI=true)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"required fixture missing under CI: {path}")
        pytest.skip(f"{path} not present (../shared is absent)")
    return path


def packaged_model(name: str) -> Path:
    """A model bundle shipped in the package (src/restorecli/models)."""
    return REPO / "src" / "restorecli" / "models" / f"{name}.safetensors"


# ---- running the command line -------------------------------------------------------------


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout's code, no colour, 200 columns, then `extra`."""
    env = dict(os.environ)
    env.setdefault("RESTORECLI_CACHE", str(REPO / ".pytest-cache-weights"))
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def sandbox_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Variables that keep a subprocess on this machine and in `tmp_path`: its own cache, config and Hub
    cache, every proxy a closed loopback port (loopback itself exempt), no overlay from the caller."""
    env = {
        "RESTORECLI_CACHE": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_ENDPOINT": CLOSED,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **{
            name: CLOSED
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
        },
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "HF_HUB_OFFLINE": "",
        "RESTORECLI_OFFLINE": "",
        "RESTORECLI_REGISTRY": "",
        **ONE_THREAD,
    }
    env.update(extra)
    return env


def cli_command(*args: str, fake: bool = False) -> list[str]:
    """`restore ARGS` as an argv; `fake`: the same CLI with the fake method registered (fake_engine.py)."""
    return [sys.executable, *([str(TESTS / "fake_engine.py")] if fake else ["-m", "restorecli"]), *args]


def run_bounded(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float,
    stdin: bytes | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; past `timeout` stop the whole group (children such as Ray's
    and torchrun's too) and fail the test with the end of its stderr."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = b"", b""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = proc.communicate(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        pytest.fail(
            f"{' '.join(cmd[:4])} ... did not finish in {timeout:.0f} s\n" + err.decode("utf-8", "replace")[-4000:]
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    fake: bool = False,
    preexec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """Run the real `restore` entry point in a subprocess, as a user's shell would (see `cli_command`)."""
    return run_bounded(
        cli_command(*args, fake=fake), env=cli_env(env), cwd=cwd, timeout=timeout, stdin=stdin, preexec=preexec
    )


def start_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    fake: bool = False,
    stdout: Any = subprocess.PIPE,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """`run_cli`, started and left running: for signals sent mid-run and outputs watched as they appear."""
    return subprocess.Popen(
        cli_command(*args, fake=fake),
        env=cli_env(env),
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
    )


def offline_env(folder: Path) -> dict[str, str]:
    """No network, and an empty cache of `folder`'s own: a fresh install's first run."""
    return {"RESTORECLI_OFFLINE": "1", "RESTORECLI_CACHE": str(folder / "cache"), **ONE_THREAD}


def run_sandboxed(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    preexec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """`restore ARGS` with the fake method available, in the sandbox of `sandbox_env(tmp_path)`."""
    return run_cli(*args, env=sandbox_env(tmp_path, **(env or {})), timeout=timeout, fake=True, preexec=preexec)


def fake_x2_args(tmp_path: Path, *args: str, weights: Path | str | None = None) -> list[str]:
    """`--registry OVERLAY ARGS --model fake-x2 --weights BUNDLE`: a command of the fake x2 model, whose
    overlay and bundle fake_engine.write_model writes under tmp_path/model (`weights` replaces the bundle)."""
    import fake_engine

    overlay, bundle = fake_engine.write_model(tmp_path / "model")
    return ["--registry", str(overlay), *args, "--model", "fake-x2", "--weights", str(weights or bundle)]


def run_fake_x2(
    tmp_path: Path, *args: str, weights: Path | str | None = None, **kwargs: Any
) -> subprocess.CompletedProcess:
    """`run_sandboxed` of a command of the fake x2 model (see `fake_x2_args`)."""
    return run_sandboxed(tmp_path, *fake_x2_args(tmp_path, *args, weights=weights), **kwargs)


def run_fake_convert(tmp_path: Path, net: Path | str, out: Path | str, **kwargs: Any) -> subprocess.CompletedProcess:
    """`run_sandboxed` of `restore convert fake-x2 net=NET -o OUT`, with the fake model's overlay that
    fake_engine.write_model writes under tmp_path/model."""
    import fake_engine

    overlay, _ = fake_engine.write_model(tmp_path / "model")
    args = ("--registry", str(overlay), "convert", "fake-x2", f"net={net}", "-o", str(out))
    return run_sandboxed(tmp_path, *args, **kwargs)


def err_of(res: subprocess.CompletedProcess) -> str:
    return res.stderr.decode(errors="replace").strip()


def one_line(res: subprocess.CompletedProcess) -> str:
    """The run's stderr, checked to be one line and no traceback."""
    err = err_of(res)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# ---- files --------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pth_bytes(state: Any, *, legacy: bool = False) -> bytes:
    """`torch.save(state)` as bytes: a zip file, or with `legacy` the older plain-pickle layout."""
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def toml_value(value: Any) -> str:
    """`value` written as TOML, for registry overlays made from Python values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def edit_bundle_spec(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a bundle that carries its spec (a `restore train` bundle) with that spec changed by `edit`."""
    with safe_open(str(src), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    spec = json.loads(meta["spec"])
    edit(spec)
    meta["spec"] = json.dumps(spec)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def solid_png(path: Path, size: tuple[int, int] = (16, 16), value: int = 128) -> Path:
    """A flat grey RGB PNG of (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def random_png(path: Path, size: tuple[int, int] = (16, 24), seed: int = 0, mode: str = "RGB") -> Path:
    """A random image of (height, width) in `mode` (RGB, RGBA or L)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (*size, channels)).astype(np.uint8)
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(path)
    return path


def photos(tmp_path: Path) -> Path:
    """tmp_path/in holding two small random photos, x.png and y.png."""
    folder = tmp_path / "in"
    for i, name in enumerate(["x.png", "y.png"]):
        random_png(folder / name, size=(16, 16), seed=i)
    return folder


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header claiming a huge image, with almost no data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def snapshot(*folders: Path) -> dict[Path, bytes]:
    """Every file below `folders` with its bytes: what a test compares before and after a command."""
    return {p: p.read_bytes() for folder in folders for p in files_under(folder)}


def blocker(tmp_path: Path) -> Path:
    """A file where a folder would be: nothing can be created below it, not even by root."""
    path = tmp_path / "blocker"
    path.write_text("a file where a folder would be")
    return path


def locked_folder(folder: Path, request: pytest.FixtureRequest) -> Path:
    """A folder even root cannot write into (read-only, plus ext4's immutable flag for root), or skip
    where that flag cannot be set; the flag is cleared again when the test ends."""
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root ignores mode bits: an immutable folder refuses root too (CAP_LINUX_IMMUTABLE)
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"root writes into read-only folders and chattr +i failed: {made.stderr.decode().strip()}")
        request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(folder)], capture_output=True))
    return folder


# ---- training ------------------------------------------------------------------------------


def write_clean_images(folder: Path, count: int = 6, size: int = 48) -> None:
    """Procedural clean images (smooth colours and edges), so the tests need no data set."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for k in range(count):
        img = np.stack([np.sin(3 * xx + k) * 0.4 + 0.5, yy * (0.3 + 0.1 * k), (xx > 0.3 + 0.05 * k) * 0.6 + 0.2], 2)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"img{k}.png")


def tiny_config(clean: Path, **kw: Any) -> TrainConfig:
    """A training run of a tiny network on `clean` that takes seconds (override any field with `kw`)."""
    from restorecli.training.config import TrainConfig

    base = dict(
        dim=8,
        dim_mults=(1, 2),
        batch_size=2,
        crop=32,
        iters=4,
        val_every=0,
        save_every=2,
        val_size=32,
        val_count=1,
        held_out=0.2,
        clean=[str(clean)],
        steps=2,
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base)


# ---- conformance fixtures -------------------------------------------------------------------


def assert_png_matches(path: Path, official: torch.Tensor, tolerance: int = 1) -> None:
    """A PNG the CLI wrote against the official code's uint8 image (C, H, W): at most `tolerance` levels apart."""
    png = np.asarray(Image.open(path))
    want = official.permute(1, 2, 0).numpy()
    assert np.abs(png.astype(int) - want.astype(int)).max() <= tolerance


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, computed exactly (float64); the shapes must be equal."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.double() - b.double()).abs().max())


def case_dir(method: str, case: str) -> Path:
    """../shared/conformance/METHOD/CASE (skips, or fails under CI=true, when absent)."""
    return shared_path("conformance", method, case)


def load_case(method: str, case: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A conformance case: its case.json and its recorded tensors."""
    folder = case_dir(method, case)
    return json.loads((folder / "case.json").read_text()), load_file(str(folder / "tensors.safetensors"))


def case_spec(name: str, arch: dict[str, dict[str, Any]], **model: Any) -> ModelSpec:
    """A model registered as a weights.toml block would register it: `arch` tables (a case's small
    network configs) and the model's own fields."""
    from restorecli.weights.registry import parse_registry

    return parse_registry({"arch": arch, "models": {name: model}}).get(name)
