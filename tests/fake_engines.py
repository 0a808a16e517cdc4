"""Tiny engines for pipeline and I/O tests, so they do not depend on any real method.

`FakeEngine` is a real `Engine` subclass: one 3x3 convolution (weights from the
registry bundle, identity by default) followed by a nearest-neighbour upscale
by the model's scale, plus optional noise drawn from each image's generator
(to check seeding) and the mask rule of inpainting (masked area set to 0.5).
It is local (the output at a pixel depends on a 3x3 input neighbourhood), so
tiled and whole-image results agree. Behaviour switches are class-level so
tests and subprocesses can set them without touching the CLI.

`register()` adds the method "fake" to the engine table; `write_model(dir)`
writes a registry overlay and a weights bundle so the real `restore` command
can run it (`--registry overlay.toml --model fake-x2 --weights bundle.safetensors`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

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
        with torch.no_grad():
            y = self.nets["net"](images.to(self.device))
        noise = float(self.spec.sampler.get("noise", 0.0))
        if noise:
            y = y + noise * torch.stack([randn(images.shape[1:], g, self.device) for g in generators])
        if masks is not None:
            y = y * (1 - masks) + 0.5 * masks
        if self.scale != 1:
            y = F.interpolate(y, scale_factor=self.scale, mode="nearest")
        return y.clamp(0, 1).float().cpu()

    def auto_tile(self, height, width):
        return type(self).auto_tile_size


def identity_state(blur: bool = False) -> dict[str, torch.Tensor]:
    weight = torch.zeros(3, 3, 3, 3)
    for c in range(3):
        if blur:
            weight[c, c] = 1.0 / 9.0
        else:
            weight[c, c, 1, 1] = 1.0
    return {"weight": weight, "bias": torch.zeros(3)}


def fake_spec(name: str = "fake-x2", task: str = "sr", scale: int = 2, noise: float = 0.0) -> ModelSpec:
    comp = ComponentSpec(name="net", kind="fake.conv", config={})
    return ModelSpec(
        name=name,
        method="fake",
        task=task,
        scale=scale,
        components={"net": comp},
        sampler={"noise": noise},
        trained_steps=1,
        default_steps=1,
        min_steps=1,
        max_steps=4,
    )


def make_engine(scale: int = 2, *, noise: float = 0.0, blur: bool = False, task: str = "sr") -> FakeEngine:
    return FakeEngine(fake_spec(task=task, scale=scale, noise=noise), {"net": identity_state(blur)})


def reset() -> None:
    FakeEngine.calls = []
    FakeEngine.delay = float(os.environ.get("FAKE_ENGINE_DELAY", "0"))
    FakeEngine.oom_above = FakeEngine.fail_width = FakeEngine.interrupt_after = None
    FakeEngine.auto_tile_size = 0


def register() -> None:
    from restorecli.engines import ENGINES

    ENGINES["fake"] = "fake_engines:FakeEngine"


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
    bundle = write_bundle(folder / "fake.safetensors", fake_spec(), {"net": identity_state()})
    return overlay, bundle


if __name__ == "__main__":  # python tests/fake_engines.py ARGS...: the real CLI with the fake engine available
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fake_engines

    fake_engines.register()
    from restorecli.cli import main

    sys.argv[0] = "restore"
    main()
