"""The safetensors bundle (weights.bundle): a header that is not a table is a damaged file, one line,
never a traceback; a bundle made for one task is refused by another, naming both."""

from __future__ import annotations

import json
import struct

import pytest

from helpers import ONE_THREAD, run_cli, solid_png
from restorecli.weights.bundle import bundle_spec, read_bundle_metadata


@pytest.mark.parametrize("header", [[1, 2], "text", 5, {"__metadata__": [1]}, {"__metadata__": {"a": 1}}])
def test_a_header_that_is_not_a_table_is_refused(tmp_path, header):
    path = tmp_path / "x.safetensors"
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ValueError):
        read_bundle_metadata(path)
    assert bundle_spec(path) is None


def _derain_bundle_copy(tmp_path):
    from restorecli.weights.cache import packaged_bundle
    from restorecli.weights.registry import load_registry

    bundle = tmp_path / "rddm-derain-small.safetensors"
    bundle.write_bytes(packaged_bundle(load_registry().get("rddm-derain-small")).read_bytes())
    return bundle


@pytest.mark.parametrize("task", ["lowlight", "shadow"])
def test_bundle_of_another_task_exits_3_naming_both_tasks(tmp_path, task):
    solid_png(tmp_path / "x.png", (40, 56), 120)
    bundle = _derain_bundle_copy(tmp_path)
    extra = ["--mask", "x.png"] if task == "shadow" else []
    r = run_cli("--offline", task, "x.png", "out.png", "--weights", str(bundle), *extra, cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 3, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert "'derain'" in err and f"'{task}'" in err and str(bundle) in err, err
    assert not (tmp_path / "out.png").exists()


def test_bundle_task_check_in_the_api_and_for_converted_bundles(tmp_path):
    import torch

    from restorecli.errors import WeightsError
    from restorecli.runtime.load import load_engine
    from restorecli.weights.bundle import check_bundle_task, write_bundle
    from restorecli.weights.registry import load_registry

    registry = load_registry()
    with pytest.raises(WeightsError, match="'derain'.*'lowlight'"):
        load_engine(None, "lowlight", weights=[str(_derain_bundle_copy(tmp_path))], device="cpu", offline=True)
    # a `restore convert` bundle has no spec: its registered model's task decides
    official = write_bundle(
        tmp_path / "conv.safetensors", registry.get("rddm-derain"), {"unet0": {"w": torch.zeros(1)}}
    )
    with pytest.raises(WeightsError, match="'derain'.*'shadow'"):
        check_bundle_task([str(official)], "shadow", registry)
    check_bundle_task([str(official)], "derain", registry)
    check_bundle_task(["unet0=some.pth"], "shadow", registry)  # official files: nothing recorded, nothing refused


def test_a_model_serving_several_tasks_still_runs_them(tmp_path):
    """A registry entry whose default_for lists another task: its bundle is accepted there."""
    solid_png(tmp_path / "x.png", (40, 56), 120)
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(
        '[models.rddm-derain-small]\ndefault_for = ["derain", "deblur"]\n[models.diffir-deblur]\ndefault_for = []\n'
    )
    bundle = _derain_bundle_copy(tmp_path)
    r = run_cli(
        "--offline",
        "--registry",
        str(overlay),
        "deblur",
        "x.png",
        "out.png",
        "--weights",
        str(bundle),
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.png").is_file()
