"""Device and precision choices (runtime.device), a reduced precision that is slower than fp32 on this
CPU said once as a warning, and the shared attention's fast and reference paths."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from helpers import run_cli
from restorecli.errors import DeviceError, UsageError
from restorecli.nets.attention import attention, is_reference, reference_mode
from restorecli.runtime import device as devmod
from restorecli.runtime.device import pick_device, pick_dtype


def test_cpu_and_auto_devices():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("choice", ["0", "cuda", "cuda:0", "cuda:1"])
def test_gpu_ids_are_gpus_not_no_gpu(choice):
    # "0" means the first GPU (never "no GPU"); without CUDA it is a device error (exit 5).
    with pytest.raises(DeviceError) as info:
        pick_device(choice)
    assert info.value.exit_code == 5 and "CUDA is not available" in str(info.value)


def test_unknown_device_is_a_usage_error():
    with pytest.raises(UsageError):
        pick_device("tpu")


def test_precision_defaults_and_refusals():
    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) == torch.float32  # never fp16 by default on the CPU
    assert pick_dtype("bf16", cpu) == torch.bfloat16
    assert pick_dtype("auto", torch.device("cuda", 0)) == torch.float16
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        pick_dtype("fp16", cpu)
    with pytest.raises(UsageError):
        pick_dtype("fp8", cpu)


def test_fast_attention_equals_reference():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 64, 32, generator=gen) for _ in range(3))
    mask = torch.zeros(64, 64)
    mask[:, 32:] = -100.0
    fast = attention(q, k, v, mask)
    with reference_mode():
        assert is_reference()
        ref = attention(q, k, v, mask)
    assert not is_reference()
    assert (fast - ref).abs().max() < 1e-5
    # The mask really is applied: without it the result moves.
    assert (attention(q, k, v) - ref).abs().max() > 1e-2


def test_bf16_on_a_cpu_without_native_bf16_is_flagged(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devmod, "native_cpu_bf16", lambda: False)
    note = devmod.slow_precision_note(cpu, torch.bfloat16)
    assert note and "fp32" in note and "bf16" in note
    assert devmod.slow_precision_note(cpu, torch.float32) is None
    monkeypatch.setattr(devmod, "native_cpu_bf16", lambda: True)
    assert devmod.slow_precision_note(cpu, torch.bfloat16) is None


def test_the_cli_warns_exactly_when_this_cpu_lacks_bf16(tmp_path):
    Image.new("RGB", (32, 32), (90, 120, 150)).save(tmp_path / "a.png")
    env = {"OMP_NUM_THREADS": "1", "RESTORECLI_CACHE": str(tmp_path / "cache")}
    res = run_cli(
        "--offline", "derain", "a.png", "b.png", "--device", "cpu", "--precision", "bf16", cwd=tmp_path, env=env
    )
    assert res.returncode == 0, res.stderr
    warned = "has no native bf16" in res.stderr.decode()
    assert warned == (not devmod.native_cpu_bf16()), res.stderr
    res = run_cli("--offline", "derain", "a.png", "c.png", "--device", "cpu", cwd=tmp_path, env=env)
    assert res.returncode == 0 and "bf16" not in res.stderr.decode()
