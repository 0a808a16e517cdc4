"""A bundle's declared network is checked against its tensors before it is built (engines.netcheck):
a `restore train` bundle whose metadata declares a far larger network fails at once, in one line."""

from __future__ import annotations

import time

import pytest

from helpers import edit_bundle_spec, err_of, one_line, packaged_model, random_png, run_sandboxed


@pytest.mark.parametrize("dim", [10**6, 10**4])
def test_a_declared_network_larger_than_the_tensors_fails_at_once(tmp_path, dim):
    def declare(spec):
        for comp in spec["components"].values():
            comp["config"]["dim"] = dim

    evil = edit_bundle_spec(packaged_model("rddm-derain-small"), tmp_path / "evil.safetensors", declare)
    t0 = time.monotonic()
    res = run_sandboxed(
        tmp_path,
        "derain",
        str(random_png(tmp_path / "a.png", size=(16, 16))),
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
