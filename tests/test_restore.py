"""The task commands (cli.restore) are built from the registry: a method and a task are data plus an
engine module, and each task's --help lists its own options and names its default model."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, TESTS, run_cli

FIFTH_METHOD = """
[methods.colorfake]
engine = "fake_engine:FakeEngine"
options = ["resize"]

[tasks.colorize]
summary = "Colourise grey photographs."
needs_mask = true

[arch.colorfake-conv]
kind = "fake.conv"

[models.colorfake-1]
method = "colorfake"
task = "colorize"
trained_steps = 3

[models.colorfake-1.components.net]
arch = "colorfake-conv"
"""


def _fifth_method(tmp_path):
    """A registry overlay naming an engine module outside the package (tests/fake_engine.py), and
    nothing else, for a method no restorecli file names."""
    overlay = tmp_path / "colorfake.toml"
    overlay.write_text(FIFTH_METHOD)
    path = os.pathsep.join([str(REPO / "src"), str(TESTS)])
    return {"RESTORECLI_REGISTRY": str(overlay), "PYTHONPATH": path, "RESTORECLI_CACHE": str(tmp_path / "cache")}


def _words(r):
    return " ".join(r.stdout.decode().replace("│", " ").split())


def test_a_fifth_method_gets_its_task_command_with_the_options_its_registry_entry_names(tmp_path):
    env = _fifth_method(tmp_path)
    r = run_cli("--help", env=env)
    assert r.returncode == 0, r.stderr
    assert "colorize Colourise grey photographs." in _words(r)
    r = run_cli("colorize", "--help", env=env)
    assert r.returncode == 0, r.stderr
    text = _words(r)
    assert "Default model: colorfake-1 (colorfake, 3 steps)" in text, text
    assert "--mask" in text and "--resize" in text and "--steps" in text, text
    r = run_cli("sr", "--help", env=env)
    assert "--resize" not in _words(r) and "--mask" not in _words(r)  # the fifth method adds nothing to sr


def test_a_fifth_method_runs_from_its_registry_entry_and_needs_its_mask(tmp_path):
    import fake_engine as fe
    from restorecli.weights.bundle import write_bundle
    from restorecli.weights.registry import parse_registry

    env = _fifth_method(tmp_path)
    import tomllib

    spec = parse_registry(tomllib.loads(FIFTH_METHOD)).models["colorfake-1"]
    bundle = write_bundle(tmp_path / "colorfake.safetensors", spec, {"net": fe.conv_state()})
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "mask.png")
    r = run_cli("colorize", "in.png", "out.png", "-w", str(bundle), env=env, cwd=tmp_path)
    assert r.returncode == 2 and "'restore colorize' needs --mask" in r.stderr.decode(), r.stderr
    r = run_cli("colorize", "in.png", "out.png", "--mask", "mask.png", "-w", str(bundle), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "out.png")).mean() == 90


@pytest.mark.parametrize(
    "task, model, download, mask, resize",
    [
        ("sr", "resshift-realsr-x4-v3", "downloads 699 MB once", False, False),
        ("inpaint", "resshift-inpaint-imagenet", "downloads", True, False),
        ("face", "resshift-faceir", "downloads", False, False),
        ("deblur", "diffir-deblur", "by hand", False, True),
        ("derain", "rddm-derain-small", "shipped in the package: no download", False, True),
        ("lowlight", "rddm-lowlight-small", "shipped in the package: no download", False, True),
        ("shadow", "rddm-shadow", "no published weights", True, True),
    ],
)
def test_task_help_lists_its_options_and_default_model(task, model, download, mask, resize):
    r = run_cli(task, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.decode().replace("│", " ").split())
    assert f"Default model: {model}" in text, text
    assert download in text, text
    assert ("--mask" in text) is mask, text
    assert ("--resize" in text) is resize, text


def test_an_option_of_another_task_is_refused_in_one_line():
    r = run_cli("sr", "a.png", "--resize", "256")
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "'restore sr' takes no --resize" in err, err
