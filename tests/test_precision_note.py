"""A reduced precision that is slower than fp32 on this CPU is said once, as a warning (not an error)."""

from __future__ import annotations

import torch
from PIL import Image

from cli_helpers import run_cli
from restorecli.runtime import device as devmod


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
