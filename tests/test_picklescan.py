"""A pickle-based checkpoint that would run code is refused for what it is, naming the code it would
call, and nothing runs (weights.picklescan); a plain pickle without code says what it holds instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import fake_engine as fe
from helpers import err_of, one_line, pth_bytes, random_png, run_fake_convert, run_sandboxed


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
        path.write_bytes(pth_bytes(obj, legacy=how != "zip"))
    return path


@pytest.mark.parametrize("how", ["legacy-torch-save", "raw-pickle", "zip"])
def test_pickled_code_is_named_and_never_run(tmp_path, how):
    overlay, _ = fe.write_model(tmp_path / "model")
    marker = tmp_path / "pwned"
    evil = evil_file(tmp_path / "evil.pth", how, marker)
    for args in (
        ["convert", "fake-x2", f"net={evil}", "-o", str(tmp_path / "b.safetensors")],
        [
            "sr",
            str(random_png(tmp_path / "a.png")),
            str(tmp_path / "out.png"),
            "--model",
            "fake-x2",
            "--weights",
            f"net={evil}",
        ],
    ):
        res = run_sandboxed(tmp_path, "--registry", str(overlay), *args)
        assert res.returncode == 3, err_of(res)
        err = one_line(res)
        assert "code" in err and "system" in err, err
        assert "weights_only" not in err and "Warning" not in err, err
    assert not marker.exists()
    assert not (tmp_path / "b.safetensors").exists() and not (tmp_path / "out.png").exists()


def test_a_plain_pickle_without_code_says_what_it_holds(tmp_path):
    import pickle

    data = tmp_path / "list.pth"
    data.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    res = run_fake_convert(tmp_path, data, tmp_path / "b.safetensors")
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "weights_only" not in err and "Warning" not in err
    assert "plain pickle" in err and "not a PyTorch" in err, err
