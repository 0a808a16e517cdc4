"""Conversion judges a checkpoint by the network it is for: a deflate bomb is refused from its zip
directory before anything is inflated, and tensors of the wrong keys or shapes never become a bundle
(weights.convert, weights.checkpoint, through runtime.load)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

import fake_engine as fe
from helpers import pth_bytes, run_cli
from restorecli.errors import WeightsError
from restorecli.runtime.load import convert_files


@pytest.fixture(autouse=True)
def fake_method():
    fe.register()


def deflated(data: bytes, path: Path) -> Path:
    """`data` (a torch.save zip) with every member deflated: same content, far smaller file."""
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return path


def bomb(path: Path, inflated: int, declared: int | None = None) -> Path:
    """A valid-looking checkpoint with one more member of `inflated` zero bytes deflated to a few kB."""
    good = pth_bytes(fe.conv_state())
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        prefix = src.namelist()[0].split("/")[0]
        info = zipfile.ZipInfo(f"{prefix}/data/99")
        info.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(info, "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                fh.write(chunk)
    return path


@pytest.mark.parametrize("inflated_mib", [128])
def test_a_deflate_bomb_is_refused_before_inflating(tmp_path, inflated_mib):
    path = bomb(tmp_path / "bomb.pth", inflated_mib << 20)
    assert path.stat().st_size < (inflated_mib << 20) // 100  # the file is small; only its content is large
    with pytest.raises(WeightsError) as info:
        convert_files(fe.fake_spec(), {"net": path})
    assert "unpacks to" in str(info.value) and "\n" not in str(info.value)


def test_a_bomb_inside_a_tensor_of_the_right_key_is_refused(tmp_path):
    state = {"weight": torch.zeros(1 << 25), "bias": torch.zeros(3)}  # 128 MiB of zeros as one tensor
    path = deflated(pth_bytes(state), tmp_path / "big.pth")
    assert path.stat().st_size < 8 << 20
    with pytest.raises(WeightsError) as info:
        convert_files(fe.fake_spec(), {"net": path})
    assert "unpacks to" in str(info.value)


def test_the_limit_follows_the_network(tmp_path):
    from restorecli.runtime.load import network_fit
    from restorecli.weights.checkpoint import inflation_limit

    elements = network_fit(fe.fake_spec()).elements(fe.fake_spec().components["net"])
    assert elements == 3 * 3 * 3 * 3 + 3
    assert inflation_limit(elements) < 128 << 20 <= inflation_limit(4 << 20)


def test_an_honest_deflated_checkpoint_still_converts(tmp_path):
    path = deflated(pth_bytes(fe.conv_state()), tmp_path / "ok.pth")
    states, _ = convert_files(fe.fake_spec(), {"net": path})
    assert states["net"]["weight"].shape == (3, 3, 3, 3)


MISFITS = {
    "weight too wide": {"weight": torch.zeros(3, 3, 5, 5), "bias": torch.zeros(3)},
    "weight flat": {"weight": torch.zeros(81), "bias": torch.zeros(3)},
    "bias long": {"weight": torch.zeros(3, 3, 3, 3), "bias": torch.zeros(300)},
    "bias scalar": {"weight": torch.zeros(3, 3, 3, 3), "bias": torch.zeros(())},
    "bias missing": {"weight": torch.zeros(3, 3, 3, 3)},
    "extra key": {**fe.conv_state(), "extra": torch.zeros(2)},
    "renamed": {"conv.weight": torch.zeros(3, 3, 3, 3), "conv.bias": torch.zeros(3)},
}


@pytest.mark.parametrize("state", MISFITS.values(), ids=MISFITS.keys())
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_tensors_that_do_not_fit_the_network_are_refused_at_conversion(tmp_path, state, suffix):
    path = tmp_path / f"net{suffix}"
    if suffix == ".pth":
        path.write_bytes(pth_bytes(state))
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    with pytest.raises(WeightsError) as info:
        convert_files(fe.fake_spec(), {"net": path})
    assert "do not fit" in str(info.value) and str(path) in str(info.value)


def test_convert_command_refuses_a_bomb_in_one_line_and_writes_nothing(tmp_path):
    overlay, _ = fe.write_model(tmp_path / "model")
    path = bomb(tmp_path / "bomb.pth", 128 << 20)
    out = tmp_path / "b.safetensors"
    res = run_cli(
        "--registry", str(overlay), "convert", "fake-x2", f"net={path}", "-o", str(out), timeout=120, fake=True
    )
    err = res.stderr.decode().strip()
    assert res.returncode == 3, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "unpacks to" in err
    assert not out.exists()


def test_convert_of_a_file_that_is_no_checkpoint_says_so(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"fake\n")
    r = run_cli("convert", "rddm-derain-small", str(fake), "-o", str(tmp_path / "x.safetensors"))
    assert r.returncode == 3, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert f"cannot read checkpoint {fake}: not a PyTorch checkpoint" in err, err
    assert "Weights only load failed" not in err and "Unsupported operand" not in err
