"""`restore train --init` (training.warmstart): fine-tuning starts from a bundle's (or a shipped model's) weights,
refuses a network that does not match, and records the start by name, never by machine path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers import offline_env, run_cli, tiny_config, write_clean_images
from restorecli.errors import UsageError
from restorecli.training.loop import train
from restorecli.training.warmstart import resolve_init
from restorecli.weights.bundle import read_bundle_metadata

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = lambda _m: None  # noqa: E731


@pytest.fixture
def first_run(tmp_path: Path) -> Path:
    """A tiny trained bundle (fp32) to start from."""
    write_clean_images(tmp_path / "clean")
    return train(tiny_config(tmp_path / "clean"), tmp_path / "first", log=QUIET).bundle


def test_init_starts_from_the_bundles_weights(tmp_path, first_run):
    # a rate of 1e-12: Adam moves each weight by about that much, so the new run's bundle is where it started
    still = tiny_config(tmp_path / "clean", lr=1e-12, lr_min=1e-12, seed=7)
    started = train(dataclasses.replace(still, init=str(first_run)), tmp_path / "tuned", log=QUIET).bundle
    fresh = train(still, tmp_path / "fresh", log=QUIET).bundle
    a, b, c = load_file(str(first_run)), load_file(str(started)), load_file(str(fresh))
    assert a.keys() == b.keys()
    # (the EMA of unchanging weights moves them by float rounding only)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 1e-2  # without --init: its own random weights
    record = json.loads(read_bundle_metadata(started)["training"])
    assert record["init"] == "last.safetensors"  # the file's name, not the machine's path


def test_init_refuses_a_different_network(tmp_path, first_run):
    wider = tiny_config(tmp_path / "clean", dim=16, init=str(first_run))
    with pytest.raises(UsageError, match=r"different network \(dim=8") as err:
        train(wider, tmp_path / "wider", log=QUIET)
    assert "--dim 8 --dim-mults 1,2 " in err.value.hint
    one_head = tiny_config(tmp_path / "clean", objective="pred_res", init=str(first_run))
    with pytest.raises(UsageError, match="unet1"):
        train(one_head, tmp_path / "one", log=QUIET)
    assert not (tmp_path / "wider" / "last.pt").exists()
    gated = train(tiny_config(tmp_path / "clean", dual_output=True, iters=1), tmp_path / "gated", log=QUIET).bundle
    with pytest.raises(UsageError, match=r"out_dim=4 in unet1") as err:
        train(tiny_config(tmp_path / "clean", init=str(gated)), tmp_path / "plain", log=QUIET)
    assert err.value.hint.endswith("--dual-output")


def test_init_accepts_a_shipped_model_by_name_and_explains_a_bad_name():
    shipped = resolve_init("rddm-lowlight-small")
    assert shipped.name == "rddm-lowlight-small.safetensors" and shipped.is_file()
    with pytest.raises(UsageError, match="no such bundle file or shipped model"):
        resolve_init("rddm-lowlight-smal")


def test_cli_init_with_a_mismatched_network_is_one_line_and_exit_2(tmp_path):
    write_clean_images(tmp_path / "clean")
    r = run_cli(
        "train", "rddm", "--clean", str(tmp_path / "clean"), "-o", str(tmp_path / "run"), "--dim", "8",
        "--dim-mults", "1,2", "--iters", "1", "--crop", "32", "--objective", "pred_res", "--init", "rddm-derain-small",
        cwd=tmp_path, env=offline_env(tmp_path),
    )  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "different network" in err and "Traceback" not in err
    assert "--dim 16 --dim-mults 1,2,4,8 --attn-heads 1 --attn-dim-head 16 --pixel-unshuffle 2" in err


def test_init_is_checked_before_the_data_loads(tmp_path, first_run, monkeypatch):
    import restorecli.training.loop as loop

    def no_data(_cfg):
        raise AssertionError("the data was loaded before --init was checked")

    monkeypatch.setattr(loop, "build_data", no_data)
    with pytest.raises(UsageError, match="different network"):
        train(tiny_config(tmp_path / "clean", dim=16, init=str(first_run)), tmp_path / "wider", log=QUIET)


def test_a_fine_tune_logs_its_starting_models_score_at_step_0(tmp_path, first_run):
    lines: list[str] = []
    train(tiny_config(tmp_path / "clean", init=str(first_run)), tmp_path / "tuned", log=lines.append)
    records = [json.loads(line) for line in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and records[0]["start"] == str(first_run)
    assert [r["step"] for r in records[1:]] == sorted(r["step"] for r in records[1:]) and records[-1]["step"] > 0
    # the starting model is the first run's last bundle: the same held-out score as at its end
    first = [json.loads(line) for line in (tmp_path / "first" / "log.jsonl").read_text().splitlines()]
    assert records[0]["psnr_y"] == pytest.approx(first[-1]["psnr_y"], abs=1e-3)
    assert any(line.startswith("step 0 (the starting model): held-out PSNR-Y") for line in lines), lines
    # a run from scratch has no starting model to score
    train(tiny_config(tmp_path / "clean"), tmp_path / "scratch", log=QUIET)
    assert json.loads((tmp_path / "scratch" / "log.jsonl").read_text().splitlines()[0])["step"] > 0


def test_a_fine_tune_that_scores_below_its_start_says_so(tmp_path, first_run, monkeypatch):
    import restorecli.training.loop as loop

    scores = iter([30.0, 25.0, 24.0, 23.0, 22.0])
    monkeypatch.setattr(
        loop, "validate", lambda *a, **k: {"psnr_y": next(scores), "ssim_y": 0.5, "psnr_rgb": 20.0, "ssim_rgb": 0.5}
    )
    lines: list[str] = []
    train(tiny_config(tmp_path / "clean", init=str(first_run), iters=2), tmp_path / "worse", log=lines.append)
    assert any("fell from 30.00 dB (the starting model)" in line for line in lines), lines
