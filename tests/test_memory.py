"""Memory budgets that tiles are sized from (CUDA paths checked with the driver and allocator mocked)."""

from __future__ import annotations

import pytest
import torch

from restorecli import memory

GIB = 1 << 30


@pytest.fixture
def fake_gpu(monkeypatch):
    """An 80 GiB GPU with 70 GiB free to the driver; torch holds 6 GiB, of which 4 GiB are in use."""
    state = {"fraction": 1.0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (70 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 4 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 6 * GIB)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: state["fraction"])
    return state


def test_free_cuda_memory_counts_the_allocators_unused_cache(fake_gpu):
    assert memory.cuda_free_bytes(torch.device("cuda", 0)) == 72 * GIB


def test_per_process_fraction_limits_the_budget(fake_gpu):
    """A process limited to part of the GPU (set_per_process_memory_fraction(20/80)) gets smaller tiles."""
    fake_gpu["fraction"] = 0.25
    assert memory.cuda_free_bytes(torch.device("cuda", 0)) == 16 * GIB  # 20 GiB limit - 4 GiB in use
    assert memory.memory_budget(torch.device("cuda", 0), gpu_fraction=0.5, cpu_fraction=0.6) == 8 * GIB


def test_cpu_budget_is_a_capped_share_of_available_ram(monkeypatch):
    monkeypatch.setattr(memory, "available_ram", lambda: 20 * GIB)
    assert memory.memory_budget(torch.device("cpu"), gpu_fraction=0.7, cpu_fraction=0.6) == 12 * GIB
    assert memory.memory_budget(torch.device("cpu"), gpu_fraction=0.7, cpu_fraction=0.6, cpu_cap=8 * GIB) == 8 * GIB


def test_available_ram_reads_the_system():
    assert 64 << 20 < memory.available_ram() < 1 << 50


def test_resshift_tiles_a_2048_input_to_fit_a_20_gib_gpu(fake_gpu, monkeypatch):
    """Full-size ResShift v3 on the meta device: the tile chosen under a 20 GiB limit fits that limit."""
    from restorecli.engines.resshift.engine import ResShiftEngine
    from restorecli.weights.registry import load_registry

    spec = load_registry().get("resshift-realsr-x4-v3")
    engine = ResShiftEngine.__new__(ResShiftEngine)  # only the memory model is needed: no weights
    engine.spec, engine.device, engine.dtype = spec, torch.device("cuda", 0), torch.float16
    engine.vq_name, engine.unet_name, engine.pad_multiple, engine.tileable = "autoencoder", "unet", 64, True
    fake_gpu["fraction"] = 0.25
    tile = engine.auto_tile(2048, 2048)
    assert 0 < tile < 2048
    assert engine.estimate_bytes(tile, tile) <= 16 * GIB * 0.7
    fake_gpu["fraction"] = 1.0
    assert engine.auto_tile(2048, 2048) > tile  # more memory, bigger tiles
