"""The CLI's argument handling through the real entry point: usage errors are one line with exit 2."""

from __future__ import annotations

import pytest

from helpers import ONE_THREAD, run_cli, solid_png


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.decode().startswith("restorecli ")


def test_unknown_model_exits_2_with_one_line(tmp_path):
    res = run_cli("sr", str(solid_png(tmp_path / "a.png")), "--model", "nope", env={"RESTORECLI_CACHE": str(tmp_path)})
    err = res.stderr.decode().strip()
    assert res.returncode == 2
    assert "unknown model 'nope'" in err and "restore models" in err
    assert len(err.splitlines()) == 1


def test_steps_outside_accepted_range_exit_2(tmp_path):
    res = run_cli("sr", str(solid_png(tmp_path / "a.png")), "--steps", "99", env={"RESTORECLI_CACHE": str(tmp_path)})
    err = res.stderr.decode()
    assert res.returncode == 2
    assert "--steps 99" in err and "1 to 4" in err


def test_inpaint_requires_mask_and_sr_refuses_one(tmp_path):
    img = str(solid_png(tmp_path / "a.png"))
    res = run_cli("inpaint", img)
    assert res.returncode == 2 and "--mask" in res.stderr.decode()
    res = run_cli("sr", img, "--mask", img)
    assert res.returncode == 2 and "takes no --mask" in res.stderr.decode()


def test_bad_shard_is_a_usage_error(tmp_path):
    res = run_cli("sr", str(solid_png(tmp_path / "a.png")), "--shard", "2/2")
    assert res.returncode == 2 and "0 <= I < N" in res.stderr.decode()


def test_unknown_option_is_a_usage_error():
    res = run_cli("sr", "x.png", "--no-such-option")
    assert res.returncode == 2


def test_convert_rejects_unknown_component(tmp_path):
    res = run_cli("convert", "resshift-realsr-x4-v3", "vae=x.pth", "-o", str(tmp_path / "b.safetensors"))
    assert res.returncode == 2
    assert "'vae' is not a component" in res.stderr.decode()


def test_convert_refuses_a_corrupt_file(tmp_path):
    bad = tmp_path / "unet.pth"
    bad.write_bytes(b"not a checkpoint")
    ae = tmp_path / "ae.pth"
    ae.write_bytes(b"also not")
    res = run_cli(
        "convert", "resshift-realsr-x4-v3", f"unet={bad}", f"autoencoder={ae}", "-o", str(tmp_path / "b.safetensors")
    )
    assert res.returncode == 3
    assert "cannot read checkpoint" in res.stderr.decode()
    assert not (tmp_path / "b.safetensors").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("sr", "a.png", "--no-such-option"),
        ("sr",),
        ("derain", "a.png", "--steps", "many"),
        ("derain", "a.png", "--tile", "-5"),
        ("no-such-command",),
    ],
)
def test_click_usage_errors_are_one_line_with_exit_2(tmp_path, args):
    solid_png(tmp_path / "a.png", (40, 56), 120)
    r = run_cli(*args, cwd=tmp_path, env={"COLUMNS": ""})
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "--help" in err and "╭" not in err and "Usage:" not in err, err


def test_help_is_still_the_full_help():
    r = run_cli("derain", "--help")
    assert r.returncode == 0 and "Usage: restore derain" in r.stdout.decode() and "--tile" in r.stdout.decode()
    r = run_cli()  # no arguments: the top-level help, as before
    assert "Usage: restore" in (r.stdout + r.stderr).decode()


def test_negative_tile_is_a_usage_error(tmp_path):
    solid_png(tmp_path / "a.png", (40, 56), 120)
    r = run_cli("--offline", "derain", "a.png", "out.png", "--tile", "-5", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2, r.stderr
    assert "--tile" in r.stderr.decode() and "-5" in r.stderr.decode()
    assert not (tmp_path / "out.png").exists()


def test_models_of_an_unknown_task_is_a_usage_error_listing_the_tasks():
    res = run_cli("models", "--task", "nope")
    err = res.stderr.decode()
    assert res.returncode == 2 and res.stdout == b"", err
    assert err.count("\n") == 1 and "'nope'" in err
    for task in ("sr", "derain", "lowlight", "inpaint", "shadow"):
        assert task in err.split("known tasks:")[1]
