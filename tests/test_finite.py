"""A restored image with NaN or Inf values is a failure, not a black picture (runtime.finite)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import fake_engine as fe
from helpers import err_of, files_under, random_png, run_fake_x2


def fake_bundle(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({f"net.{k}": v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_nan_weights_fail_each_file_and_write_nothing(tmp_path):
    state = fe.conv_state()
    state["weight"][0, 0, 1, 1] = float("nan")
    weights = fake_bundle(tmp_path / "nan.safetensors", state)
    for i in range(2):
        random_png(tmp_path / "in" / f"{i}.png", seed=i)
    out = tmp_path / "out"
    for _ in range(2):  # and a rerun does not skip anything: no black image was left behind
        res = run_fake_x2(tmp_path, "sr", str(tmp_path / "in"), str(out), "--json", weights=weights)
        err = err_of(res)
        assert res.returncode == 1, err
        doc = json.loads(res.stdout)
        assert doc["done"] == 0 and doc["skipped"] == 0 and doc["failed"] == 2
        assert all("NaN" in f["reason"] for f in doc["files"]), doc
        assert "RuntimeWarning" not in err and "Traceback" not in err
        assert not files_under(out)


def test_output_problem_counts_nan_and_inf():
    from restorecli.runtime.finite import output_problem

    x = torch.zeros(1, 3, 4, 4)
    assert output_problem(x) is None
    x[0, 0, 0, 0] = float("nan")
    x[0, 1, 0, 1] = float("inf")
    problem = output_problem(x)
    assert "NaN" in problem and "Inf" in problem and "2 of 48" in problem
