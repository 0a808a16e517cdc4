"""--resume refuses, in one line, a checkpoint it cannot continue from; a diverging run stops (exit 1)
and never writes non-finite weights."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from restorecli.errors import RestoreError, TrainingDiverged, UsageError, WeightsError
from restorecli.training.config import TrainConfig
from restorecli.training.loop import train


def _cfg(data, **kw):
    base = dict(dim=8, dim_mults=(1, 2), crop=16, batch_size=1, iters=2, val_every=0, save_every=1, held_out=0.0)
    base.update(kw)
    return TrainConfig(clean=[str(data)], **base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = root / "clean"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = root / "run"
    train(_cfg(data), out, log=lambda _m: None)
    return data, out / "last.pt"


def _variant(tmp_path, last, change):
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    change(ckpt)
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    return path


class _Code:
    def __reduce__(self):
        return (os.system, ("echo ran",))


def _nan_nets(c):
    c["nets"] = {
        k: {n: v * float("nan") if v.is_floating_point() else v for n, v in s.items()} for k, s in c["nets"].items()
    }


BAD = {
    "missing keys": lambda c: c.pop("ema"),
    "numpy rng state": lambda c: c.update(rng_numpy=json.dumps({"bit_generator": "PCG64", "state": {"state": "x"}})),
    "numpy rng junk": lambda c: c.update(rng_numpy="not json"),
    "torch rng state": lambda c: c.update(rng_torch=torch.zeros(3, dtype=torch.uint8)),
    "nan weights": _nan_nets,
    "missing network": lambda c: c["nets"].pop("unet1"),
    "misshapen network": lambda c: c["nets"]["unet0"].update({next(iter(c["nets"]["unet0"])): torch.zeros(1)}),
    "negative step": lambda c: c.update(step=-3),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_damaged_checkpoint_is_one_line(tmp_path, run, case):
    data, last = run
    bad = _variant(tmp_path, last, BAD[case])
    with pytest.raises(RestoreError) as err:
        train(_cfg(data, iters=3), tmp_path / "out", resume=bad, log=lambda _m: None)
    assert isinstance(err.value, (WeightsError, UsageError))
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)


def test_missing_junk_and_code_files(tmp_path, run):
    data, _ = run
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk" * 10)
    code = tmp_path / "code.pt"
    torch.save({"step": _Code()}, code)
    for path, kind in ((tmp_path / "none.pt", UsageError), (junk, WeightsError), (code, WeightsError)):
        with pytest.raises(kind) as err:
            train(_cfg(data, iters=3), tmp_path / "out", resume=path, log=lambda _m: None)
        assert "weights_only" not in str(err.value)


def test_a_diverging_run_stops_and_keeps_finite_weights(tmp_path, run):
    data, _ = run
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        train(_cfg(data, lr=1e12, iters=6), out, log=lambda _m: None)
    assert err.value.exit_code == 1
    for path in out.glob("*.safetensors"):
        assert all(bool(t.isfinite().all()) for t in load_file(str(path)).values())
