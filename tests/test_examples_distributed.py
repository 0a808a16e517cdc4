"""The cluster recipes of docs/batch.md, run for real on CPU: examples/ray_restore.py on a local
Ray instance (2 CPUs, 2 actors) and examples/torchrun_restore.py under
`python -m torch.distributed.run --nproc_per_node 2` (gloo). Both must restore every file of a
folder exactly once, with outputs byte-equal to a plain `restore derain` run (every process on one CPU thread).

Ray comes with the `ray` extra (`pip install -e ".[test,ray]"`, the README's test command).
Without it the Ray test skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import IN_CI, REPO, cli_env, run_bounded, run_cli

EXAMPLES = REPO / "examples"


def child_env(cache: Path) -> dict[str, str]:
    """Every process alike: this checkout's code, offline, one CPU thread (the machine is shared), and
    no Ray usage-stats prompt or upload."""
    return cli_env(
        {
            "RESTORECLI_CACHE": str(cache),
            "RESTORECLI_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """6 small images (RGB, gray, RGBA, one in a sub-folder) and a plain `restore derain -r` of them."""
    root = tmp_path_factory.mktemp("distributed")
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(15)
    yy, xx = np.mgrid[0:48, 0:48]
    for i, name in enumerate(["a.png", "b.png", "c.png", "d.png", "sub/e.png", "sub/f.png"]):
        base = np.stack([(xx * 4 + i * 20) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], axis=-1)
        streaks = (((xx + 2 * yy + i) % 9) == 0) * 90  # a little "rain"
        img = np.clip(base + streaks[..., None] + rng.normal(0, 6, (48, 48, 1)), 0, 255).astype(np.uint8)
        if name == "c.png":
            Image.fromarray(img[..., 1]).save(src / name)  # gray
        elif name == "d.png":
            alpha = (xx * 255 // 47).astype(np.uint8)
            Image.fromarray(np.dstack([img, alpha]), "RGBA").save(src / name)
        else:
            Image.fromarray(img).save(src / name)
    env = child_env(root / "cache")
    ref = run_cli("derain", str(src), str(root / "ref"), "-r", "-q", env=env, timeout=300)
    assert ref.returncode == 0, ref.stderr.decode()
    names = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    assert sorted(p.relative_to(root / "ref").as_posix() for p in (root / "ref").rglob("*") if p.is_file()) == names
    return root, names, env


def check_outputs(root: Path, out: Path, names: list[str], records: list[dict]) -> None:
    """Every input exactly once, done, and each output equal to the plain CLI's, bytes and pixels."""
    src = root / "in"
    paths = [Path(r["path"]).resolve().relative_to(src.resolve()).as_posix() for r in records]
    assert sorted(paths) == names, paths  # each file exactly once
    assert all(r["status"] == "done" and not r["reason"] for r in records), records
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == names  # nothing else (no temporary files)
    for name in names:
        ours, ref = out / name, root / "ref" / name
        with Image.open(ours) as a, Image.open(ref) as b:
            assert a.mode == b.mode and a.size == b.size
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
        assert ours.read_bytes() == ref.read_bytes(), name


def recipe_command(launch: list[str], root: Path, out: Path, *options: str) -> list[str]:
    """A recipe run over the test folder as the fixture's plain run does it (`derain`, recursive), with a
    JSON report on stdout: `launch` starts the example script, `options` are its own."""
    common = ["--task", "derain", "--recursive"]
    return [sys.executable, *launch, str(root / "in"), str(out), *common, *options, "--json", "--quiet"]


def run_recipe(cmd: list[str], root: Path, env: dict[str, str], timeout: float) -> dict:
    """The report of a recipe run that succeeded (the end of its stderr when it did not)."""
    proc = run_bounded(cmd, env=env, cwd=root, timeout=timeout)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-4000:]
    return json.loads(proc.stdout)


@pytest.fixture
def ray_installed() -> None:
    """Skip without Ray (before the folder fixture does any work); fail under CI=true."""
    if importlib.util.find_spec("ray") is None:
        message = 'ray is not installed (pip install -e ".[test,ray]", the README\'s test command)'
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def test_ray_recipe_on_a_local_cluster(ray_installed, folder):
    root, names, env = folder
    out = root / "out_ray"
    script = [str(EXAMPLES / "ray_restore.py")]
    cmd = recipe_command(script, root, out, "--num-cpus", "2", "--actors", "2", "--paths-per-call", "1")
    report = run_recipe(cmd, root, env, timeout=420)
    assert report["device"] == "cpu" and report["actors"] == 2 and report["gpus_per_actor"] == 0
    assert (report["done"], report["skipped"], report["failed"]) == (6, 0, 0)
    check_outputs(root, out, names, report["files"])
    workers = {r["worker"] for r in report["files"]}
    assert 1 <= len(workers) <= 2, workers  # actors of the pool, each loaded once
    print(
        f"ray {__import__('ray').__version__}: files per actor "
        f"{sorted(sum(r['worker'] == w for r in report['files']) for w in workers)}"
    )


def test_torchrun_recipe_with_two_cpu_processes(folder):
    root, names, env = folder
    out = root / "out_torchrun"
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = recipe_command([*launcher, str(EXAMPLES / "torchrun_restore.py")], root, out)
    report = run_recipe(cmd, root, env, timeout=300)  # printed by rank 0 only
    assert report["ranks"] == 2 and (report["done"], report["skipped"], report["failed"]) == (6, 0, 0)
    check_outputs(root, out, names, report["files"])
    ranks = {r["rank"] for r in report["files"]}
    assert ranks == {0, 1}, report["files"]  # both ranks got a share of these names
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert all(r["device"].startswith(expected_device) for r in report["files"])

    # a rerun resumes: every output exists, so every file is skipped and nothing is rewritten
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    rerun = run_recipe(cmd, root, env, timeout=300)
    assert (rerun["done"], rerun["skipped"], rerun["failed"]) == (0, 6, 0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
