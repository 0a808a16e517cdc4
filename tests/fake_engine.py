"""The one fake engine: tests that need an engine, but no real method, run this one.

`FakeEngine` is a real `Engine` subclass. Its model is one 3x3 convolution (weights from the
bundle: identity, a box blur, zero or seeded random; see `conv_state`) followed by a
nearest-neighbour upscale by the model's scale, plus optional noise drawn from each image's
generator (to check seeding) and the mask rule of inpainting (masked area set to 0.5). It is
local (the output at a pixel depends on a 3x3 input neighbourhood), so tiled and whole-image
results agree.

What the tiling tests need beyond that is data in the spec's sampler (`make_engine(**sampler)`):
`clamp = false` leaves the output unclipped, `edge_bias` adds that much to the 4 left output
columns of every call (a tile border the blend must hide), `tile_mean` returns each call's input
mean (neighbouring tiles disagree). A component of kind `fake.linear` is one Linear(n, n) (config
`n`): models that only carry weights for the download and cache tests; their images pass through.

The pipeline's switches (recorded calls, a delay, an out-of-memory size, a failing width, a
Ctrl-C after N calls, the automatic tile) are class-level, so tests and subprocesses can set them
without touching the CLI.

`register()` adds the method "fake" to the engine table; `write_model(dir)` writes a registry
overlay and a weights bundle so the real `restore` command can run it (`--registry overlay.toml
--model fake-x2 --weights bundle.safetensors`); `model_toml` and `write_overlay` describe other
fake models for registry overlays. `python tests/fake_engine.py ARGS` is the CLI with the fake
method registered (`helpers.run_cli(..., fake=True)`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from restorecli.engines.base import Engine  # noqa: E402
from restorecli.engines.common import randn  # noqa: E402
from restorecli.weights.registry import ComponentSpec, ModelSpec  # noqa: E402


class FakeEngine(Engine):
    method = "fake"
    min_tile = 8
    calls: list[tuple[int, ...]] = []  # shapes of every restore() call, across instances
    delay = float(os.environ.get("FAKE_ENGINE_DELAY", "0"))
    oom_above: int | None = None  # raise CUDA OOM when an input side is larger than this
    fail_width: int | None = None  # raise RuntimeError for inputs of this width
    interrupt_after: int | None = None  # raise KeyboardInterrupt on the call after this many
    auto_tile_size = 0

    @classmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        if comp.kind == "fake.linear":
            return nn.Linear(comp.config["n"], comp.config["n"], device=device)
        return nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate", device=device)

    def restore(self, images, *, steps, generators, masks=None):
        cls = type(self)
        if cls.interrupt_after is not None and len(cls.calls) >= cls.interrupt_after:
            raise KeyboardInterrupt
        cls.calls.append(tuple(images.shape))
        if cls.delay:
            time.sleep(cls.delay)
        if cls.oom_above is not None and max(images.shape[-2:]) > cls.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if cls.fail_width is not None and images.shape[-1] == cls.fail_width:
            raise RuntimeError("engine exploded")
        assert images.dtype == torch.float32 and images.device.type == "cpu"
        assert len(generators) == images.shape[0]
        sampler = self.spec.sampler
        net = self.nets.get("net")
        with torch.no_grad():
            if sampler.get("tile_mean"):
                y = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
            elif isinstance(net, nn.Conv2d):
                y = net(images.to(self.device))
            else:  # linear components only carry weights
                y = images
        noise = float(sampler.get("noise", 0.0))
        if noise:
            y = y + noise * torch.stack([randn(images.shape[1:], g, self.device) for g in generators])
        if masks is not None:
            y = y * (1 - masks) + 0.5 * masks
        if self.scale != 1:
            y = F.interpolate(y, scale_factor=self.scale, mode="nearest")
        if sampler.get("clamp", True):
            y = y.clamp(0, 1)
        y = y.float().cpu()
        if sampler.get("edge_bias"):
            y = y.clone()
            y[..., :4] += sampler["edge_bias"]
        return y

    def auto_tile(self, height, width):
        return type(self).auto_tile_size


def conv_state(kind: str = "identity", seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of the fake convolution: "identity", "blur" (a 3x3 box per channel), "zero", or
    "random" (seeded, in the range torch's default initialisation draws from)."""
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        bound = 27**-0.5
        return {
            "weight": (torch.rand(3, 3, 3, 3, generator=gen) * 2 - 1) * bound,
            "bias": (torch.rand(3, generator=gen) * 2 - 1) * bound,
        }
    weight = torch.zeros(3, 3, 3, 3)
    for c in range(3):
        if kind == "blur":
            weight[c, c] = 1.0 / 9.0
        elif kind == "identity":
            weight[c, c, 1, 1] = 1.0
    return {"weight": weight, "bias": torch.zeros(3)}


def fake_spec(name: str = "fake-x2", task: str = "sr", scale: int = 2, noise: float = 0.0, **sampler: Any) -> ModelSpec:
    comp = ComponentSpec(name="net", kind="fake.conv", config={})
    return ModelSpec(
        name=name,
        method="fake",
        task=task,
        scale=scale,
        components={"net": comp},
        sampler={"noise": noise, **sampler},
        trained_steps=1,
        default_steps=1,
        min_steps=1,
        max_steps=4,
    )


def make_engine(
    scale: int = 2, *, noise: float = 0.0, conv: str = "identity", task: str = "sr", **sampler: Any
) -> FakeEngine:
    """A loaded fake engine: `conv` names its weights (see `conv_state`), `sampler` its variant."""
    return FakeEngine(fake_spec(task=task, scale=scale, noise=noise, **sampler), {"net": conv_state(conv)})


def reset() -> None:
    FakeEngine.calls = []
    FakeEngine.delay = float(os.environ.get("FAKE_ENGINE_DELAY", "0"))
    FakeEngine.oom_above = FakeEngine.fail_width = FakeEngine.interrupt_after = None
    FakeEngine.auto_tile_size = 0


def register() -> None:
    from restorecli.engines import ENGINES

    ENGINES["fake"] = "fake_engine:FakeEngine"


REGISTRY = """
[arch.fake-conv]
kind = "fake.conv"

[models.fake-x2]
method = "fake"
task = "sr"
scale = 2
trained_steps = 1
max_steps = 4
sampler = { noise = 0.05 }

[models.fake-x2.components.net]
arch = "fake-conv"

[models.fake-inpaint]
method = "fake"
task = "inpaint"
scale = 1
trained_steps = 1
sampler = { noise = 0.0 }

[models.fake-inpaint.components.net]
arch = "fake-conv"
"""


def write_model(folder: Path) -> tuple[Path, Path]:
    """(registry overlay, weights bundle) for the fake models."""
    from restorecli.weights.bundle import write_bundle

    folder.mkdir(parents=True, exist_ok=True)
    overlay = folder / "fake.toml"
    overlay.write_text(REGISTRY)
    bundle = write_bundle(folder / "fake.safetensors", fake_spec(), {"net": conv_state()})
    return overlay, bundle


def model_toml(
    name: str = "fakenet", *, file: str = "fake_net.pth", sources: str = "[]", extra: str = "", comp_extra: str = ""
) -> str:
    """A registry entry of a fake x2 model with one downloadable file (see `write_overlay`)."""
    return (
        f'[models.{name}]\nmethod = "fake"\ntask = "sr"\nscale = 2\ntrained_steps = 1\nmax_steps = 4\n'
        f"sampler = {{ noise = 0.0 }}\n{extra}\n"
        f'[models.{name}.components.net]\narch = "fake-conv"\nfile = {json.dumps(file)}\n'
        f"sources = {sources}\n{comp_extra}\n"
    )


def url_source(url: str) -> str:
    return f'[{{ kind = "url", url = {json.dumps(url)} }}]'


def write_overlay(tmp_path: Path, body: str, name: str = "ov.toml") -> Path:
    """A registry overlay of `body` (`model_toml` entries) and the fake convolution's arch."""
    path = tmp_path / name
    path.write_text('[arch.fake-conv]\nkind = "fake.conv"\n\n' + body)
    return path


if __name__ == "__main__":  # python tests/fake_engine.py ARGS...: the real CLI with the fake engine available
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fake_engine

    fake_engine.register()
    from restorecli.cli import main

    sys.argv[0] = "restore"
    main()
