"""The task commands are built from the registry: a method and a task are data plus an engine module."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cli_helpers import REPO, run_cli

FIFTH_METHOD = """
[methods.colorfake]
engine = "colorfake_engine:ColorFakeEngine"
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

ENGINE_MODULE = """
from fake_engines import FakeEngine


class ColorFakeEngine(FakeEngine):
    method = "colorfake"
"""


def _fifth_method(tmp_path):
    """An engine module and a registry overlay, and nothing else, for a method no restorecli file names."""
    (tmp_path / "colorfake_engine.py").write_text(ENGINE_MODULE)
    overlay = tmp_path / "colorfake.toml"
    overlay.write_text(FIFTH_METHOD)
    path = os.pathsep.join([str(REPO / "src"), str(tmp_path), str(REPO / "tests")])
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
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    import fake_engines as fe
    from restorecli.weights.bundle import write_bundle
    from restorecli.weights.registry import parse_registry

    env = _fifth_method(tmp_path)
    import tomllib

    spec = parse_registry(tomllib.loads(FIFTH_METHOD)).models["colorfake-1"]
    bundle = write_bundle(tmp_path / "colorfake.safetensors", spec, {"net": fe.identity_state()})
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "mask.png")
    r = run_cli("colorize", "in.png", "out.png", "-w", str(bundle), env=env, cwd=tmp_path)
    assert r.returncode == 2 and "'restore colorize' needs --mask" in r.stderr.decode(), r.stderr
    r = run_cli("colorize", "in.png", "out.png", "--mask", "mask.png", "-w", str(bundle), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "out.png")).mean() == 90
