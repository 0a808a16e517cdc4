"""Every engine under bf16 on the CPU agrees with fp32 (`Engine.autocast`, engines.base), on the
conformance fixtures' weights and inputs.

`Engine(..., dtype=torch.bfloat16)` runs the networks under `torch.autocast`
(bf16 matmuls and convolutions) while the schedules, the VQ codebook search,
the diffusion updates and the outputs stay float32. Each test runs the same
fixture model in fp32 and bf16 and bounds PSNR(bf16 vs fp32) from below. The
bounds were MEASURED first (values in the table; torch 2.13 CPU, one thread,
2026-11-23) and set a few dB lower for other CPUs and thread counts.

The fixture networks are small and random, which makes them more sensitive
to rounding than trained ones. How much of the gap is bf16 itself: fp32
compute with the weights merely rounded to bf16 measured 23.9 / 67.9 / 63.6 /
56.5 / 38.4 dB for the five cases below, i.e. autocast loses only 1-6 dB beyond
storing the weights in bf16. Computing GroupNorm, attention or the residual
additions in fp32 under autocast was tried and changed the results by < 0.7 dB,
so no engine keeps more in fp32 than it already does. ResShift is the lowest:
its final latent is snapped to the nearest of 64 random codewords, so a ~3%
latent error flips ~6% of the codes and the random decoder amplifies the jump.

The bf16 runs are also checked to have really computed in bf16 (network
layers emit bf16 tensors, and the outputs differ from fp32), so a silent
fallback to fp32 fails the test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from helpers import shared_path
from restorecli.engines import engine_class
from restorecli.engines.base import Engine
from restorecli.quality import metrics
from restorecli.runtime.load import load_component_file
from restorecli.weights.registry import ModelSpec, load_registry

# Tiny networks run fastest on one thread, and OpenMP threads stall badly on a busy shared machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(frozen=True)
class Case:
    model: str  # registered model; its component configs are replaced by the fixture's small ones
    folder: tuple[str, ...]  # under shared/conformance
    files: dict[str, str]  # component -> checkpoint file in the folder
    configs: Any  # case.json -> {component: config}
    input_key: str | None  # fixture tensor restored; None = generation model
    steps: int
    seed: int
    min_psnr: float  # measured value in the comment


CASES = {
    # measured 20.95 dB (seeds 0-3: 19.3-20.6); code flips in the VQ snap dominate, see the docstring
    "resshift-sr_x4": Case(
        "resshift-realsr-x4-v3",
        ("resshift", "sr_x4"),
        {"unet": "unet.pth", "autoencoder": "autoencoder.pth"},
        lambda c: {"unet": c["unet"], "autoencoder": c["autoencoder"]},
        "lq_01",
        4,
        10,
        17.0,
    ),
    # measured 61.92 dB
    "diffir-sr_x4": Case(
        "diffir-srgan-x4", ("diffir", "sr_x4"), {"g": "checkpoint.pth"}, lambda c: {"g": c}, "lq", 4, 0, 54.0
    ),
    # measured 60.60 dB
    "diffir-deblur": Case(
        "diffir-deblur", ("diffir", "deblur"), {"g": "checkpoint.pth"}, lambda c: {"g": c}, "lq", 4, 0, 53.0
    ),
    # measured 55.29 dB (seeds 0-3: 55.1-55.4)
    "rddm-derain": Case(
        "rddm-derain",
        ("rddm", "derain"),
        {"model": "checkpoint.pth"},
        lambda c: {"model": {"dim": c["UnetRes"]["dim"]}},
        "input_01",
        5,
        10,
        49.0,
    ),
    # measured 34.26 dB for 4 images (seeds 0-3 and 10: 32.9-34.6)
    "ddo-ddim10": Case(
        "ddo-cifar10",
        ("ddo", "ddim10"),
        {"unet": "checkpoint.pth"},
        lambda c: {"unet": {"channels": c["model"]["channels"], "n_res_blocks": c["model"]["n_res_blocks"]}},
        None,
        10,
        42,
        29.0,
    ),
}


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two [0, 1] images (inf when identical), by restorecli.quality.metrics on the 8-bit scale."""
    return metrics.psnr(a.double().numpy() * 255, b.double().numpy() * 255)


def fixture_spec(case: Case, folder: Path) -> ModelSpec:
    """The registered model with the fixture's small network configs."""
    spec = load_registry().get(case.model)
    small = case.configs(json.loads((folder / "case.json").read_text())["config"])
    comps = {n: replace(c, config={**c.config, **small.get(n, {})}) for n, c in spec.components.items()}
    return replace(spec, components=comps)


def count_bf16_layers(engine: Engine) -> tuple[list[Any], list[int]]:
    """Hooks that count network layers (convs, linears) whose output is bf16."""
    seen = [0]

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, Tensor) and out.dtype == torch.bfloat16:
            seen[0] += 1

    handles = [
        m.register_forward_hook(hook)
        for net in engine.nets.values()
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    return handles, seen


def run(engine: Engine, case: Case, inputs: dict[str, Tensor]) -> Tensor:
    gen = torch.Generator().manual_seed(case.seed)
    if case.input_key is None:
        return engine.generate(4, steps=case.steps, generator=gen)
    return engine.restore(inputs[case.input_key], steps=case.steps, generators=[gen])


# ResShift's autoencoder at 256x256 takes ~5 minutes in bf16 on a CPU without native bf16 (AVX2:
# torch's reference convolution), seconds elsewhere: marked slow so that it starts first.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("resshift") else n for n in CASES]
)
def test_bf16_agrees_with_fp32(name: str) -> None:
    case = CASES[name]
    folder = shared_path("conformance", *case.folder)
    spec = fixture_spec(case, folder)
    states = {n: load_component_file(spec, n, folder / f) for n, f in case.files.items()}
    inputs = load_file(str(folder / "tensors.safetensors"))
    outs, bf16_layers = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        engine = engine_class(spec.method)(spec, states, device="cpu", dtype=dtype)
        handles, seen = count_bf16_layers(engine)
        try:
            outs[dtype] = run(engine, case, inputs)
        finally:
            for h in handles:
                h.remove()
        bf16_layers[dtype] = seen[0]
    ref, low = outs[torch.float32], outs[torch.bfloat16]
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert torch.isfinite(low).all() and 0 <= low.min() and low.max() <= 1
    # the reduced-precision path really ran: layers computed in bf16, and the result moved
    assert bf16_layers[torch.float32] == 0 and bf16_layers[torch.bfloat16] > 0
    assert not torch.equal(ref, low)
    value = psnr(ref, low)
    assert case.min_psnr <= value < 100, f"{name}: PSNR(bf16 vs fp32) {value:.2f} dB, bound {case.min_psnr}"
