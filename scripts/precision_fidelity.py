"""How far bf16 moves each engine's output from fp32, on real images, on the CPU.

For every engine the same weights run once in fp32 and once with
`--precision bf16` (torch.autocast on the CPU) on a few real crops from
../shared/data, and the script prints PSNR(bf16 vs fp32) per engine as a
Markdown table for docs/performance.md ("Fidelity of reduced precision").

Weights: the bundled project-trained RDDM deraining model (the only trained
weights available offline; its rows also give PSNR against the ground truth).
No official checkpoint of the other methods can be downloaded here, so they run
full-size networks with seeded random weights (`--weights random`, default) or
the small conformance fixture checkpoints (`--weights fixture`). The table says
which. Random networks are more sensitive to rounding than trained ones, so
their numbers are a pessimistic bound, not a quality claim.

    PYTHONPATH=src python scripts/precision_fidelity.py [--weights random|fixture] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from restorecli.engines import engine_class
from restorecli.engines.base import Engine, StateDict
from restorecli.quality import metrics
from restorecli.runtime.load import load_component_file, load_engine
from restorecli.training.degrade import motion_blur
from restorecli.weights.registry import ModelSpec, load_registry

SHARED = Path(os.environ.get("RESTORECLI_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))
DATA = SHARED / "data"
CONFORMANCE = SHARED / "conformance"

SR_INPUTS = [DATA / "sr/Set5/LR_bicubic_x4" / f"{n}x4.png" for n in ("baby", "bird", "butterfly")]
BLUR_SOURCES = [DATA / "denoise/Kodak24" / f"kodim0{k}.png" for k in (1, 2, 3)]
RAIN = DATA / "derain/Rain100L-sample"

# model -> (fixture folder, {component: file}, configs from case.json) for --weights fixture
FIXTURES: dict[str, tuple[str, dict[str, str], Callable[[dict], dict]]] = {
    "resshift-realsr-x4-v3": (
        "resshift/sr_x4",
        {"unet": "unet.pth", "autoencoder": "autoencoder.pth"},
        lambda c: {"unet": c["unet"], "autoencoder": c["autoencoder"]},
    ),
    # the one-step case reuses the sr_x4 checkpoints
    "sinsr-realsr-x4": (
        "resshift/sr_x4_onestep",
        {"unet": "../sr_x4/unet.pth", "autoencoder": "../sr_x4/autoencoder.pth"},
        lambda c: {"unet": c["unet"], "autoencoder": c["autoencoder"]},
    ),
    "diffir-srgan-x4": ("diffir/sr_x4", {"g": "checkpoint.pth"}, lambda c: {"g": c}),
    "diffir-deblur": ("diffir/deblur", {"g": "checkpoint.pth"}, lambda c: {"g": c}),
    "ddo-cifar10": (
        "ddo/ddim10",
        {"unet": "checkpoint.pth"},
        lambda c: {"unet": {k: c["model"][k] for k in ("channels", "n_res_blocks")}},
    ),
}


@dataclass
class Row:
    model: str
    weights: str
    inputs: str
    steps: int
    psnr: list[float]
    max_abs: float
    seconds: dict[str, float]
    gt: dict[str, float] | None = None  # mean PSNR against ground truth, per precision
    change: float | None = None  # mean PSNR(fp32 output vs the input, bicubic-upscaled for SR)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[top : top + size, left : left + size]


def to_tensor(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two [0, 1] images (inf when identical), by restorecli.quality.metrics on the 8-bit scale."""
    return metrics.psnr(a.double().numpy() * 255, b.double().numpy() * 255)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- weights ---------------------------------------------------------------------------------


def random_states(spec: ModelSpec, seed: int = 0) -> dict[str, StateDict]:
    """Full-size networks of the registered architecture, default torch init after manual_seed(seed)."""
    cls = engine_class(spec.method)
    torch.manual_seed(seed)
    return {name: cls.build_component(comp).state_dict() for name, comp in spec.components.items()}


def fixture_states(spec: ModelSpec) -> tuple[ModelSpec, dict[str, StateDict]]:
    """The registered model with the conformance fixture's small config and checkpoint."""
    folder, files, configs = FIXTURES[spec.name]
    root = CONFORMANCE / folder
    small = configs(json.loads((root / "case.json").read_text())["config"])
    comps = {n: dataclasses.replace(c, config={**c.config, **small.get(n, {})}) for n, c in spec.components.items()}
    spec = dataclasses.replace(spec, components=comps)
    return spec, {n: load_component_file(spec, n, (root / f).resolve()) for n, f in files.items()}


# ---- runs ------------------------------------------------------------------------------------


def compare(
    make: Callable[[torch.dtype], Engine],
    run: Callable[[Engine, int], Tensor],
    count: int,
    targets: list[Tensor] | None = None,
) -> tuple[list[float], float, dict[str, float], dict[str, float] | None, list[Tensor]]:
    """Run items 0..count-1 in fp32 then bf16: PSNR per item, max |diff|, seconds, PSNR vs targets, fp32 outputs."""
    outs: dict[torch.dtype, list[Tensor]] = {}
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        engine = make(dtype)
        start = time.perf_counter()
        outs[dtype] = [run(engine, k) for k in range(count)]
        seconds[str(dtype).replace("torch.", "")] = time.perf_counter() - start
        del engine
    pairs = list(zip(outs[torch.float32], outs[torch.bfloat16]))
    gt = None
    if targets is not None:
        gt = {
            str(d).replace("torch.", ""): float(np.mean([psnr(o, t) for o, t in zip(outs[d], targets)])) for d in outs
        }
    return (
        [psnr(a, b) for a, b in pairs],
        max(float((a - b).abs().max()) for a, b in pairs),
        seconds,
        gt,
        outs[torch.float32],
    )


def net_change(outputs: list[Tensor], images: list[Tensor], scale: int) -> float:
    """Mean PSNR of the fp32 outputs against their inputs (bicubic-upscaled): how much the network
    changes the image, the scale against which the bf16 difference should be read."""
    bases = [F.interpolate(x, scale_factor=scale, mode="bicubic").clamp(0, 1) if scale > 1 else x for x in images]
    return float(np.mean([psnr(o, b) for o, b in zip(outputs, bases)]))


def restore_row(spec: ModelSpec, weights: str, images: list[Tensor], what: str, steps: int) -> Row:
    if weights == "fixture":
        spec, states = fixture_states(spec)
        label = f"conformance fixture checkpoint ({FIXTURES[spec.name][0]}, small network)"
    else:
        states = random_states(spec)
        label = "random full-size (torch default init, seed 0)"
    cls = engine_class(spec.method)

    def run(engine: Engine, k: int) -> Tensor:
        return engine.restore(images[k], steps=steps, generators=[torch.Generator().manual_seed(k)])

    values, max_abs, seconds, _, outs = compare(lambda d: cls(spec, states, device="cpu", dtype=d), run, len(images))
    return Row(spec.name, label, what, steps, values, max_abs, seconds, change=net_change(outs, images, spec.scale))


def ddo_row(spec: ModelSpec, weights: str, steps: int = 10, count: int = 4) -> Row:
    if weights == "fixture":
        spec, states = fixture_states(spec)
        label = "conformance fixture checkpoint (ddo/ddim10, small network)"
    else:
        states = random_states(spec)
        label = "random full-size (torch default init, seed 0)"
    cls = engine_class(spec.method)

    def run(engine: Engine, k: int) -> Tensor:
        return engine.generate(count, steps=steps, generator=torch.Generator().manual_seed(k))

    values, max_abs, seconds, _, _ = compare(lambda d: cls(spec, states, device="cpu", dtype=d), run, 1)
    return Row(spec.name, label, f"{count} generated 32x32 images (seed 0)", steps, values, max_abs, seconds)


def rddm_row(steps: int, crop: int) -> Row:
    names = sorted(p.name for p in (RAIN / "input").iterdir())
    images = [to_tensor(center_crop(load_rgb(RAIN / "input" / n), crop)) for n in names]
    targets = [to_tensor(center_crop(load_rgb(RAIN / "target" / n), crop)) for n in names]
    with tempfile.TemporaryDirectory() as cache:

        def make(dtype: torch.dtype) -> Engine:
            precision = "fp32" if dtype == torch.float32 else "bf16"
            return load_engine(
                "rddm-derain-small", "derain", device="cpu", precision=precision, offline=True, cache_dir=Path(cache)
            )

        def run(engine: Engine, k: int) -> Tensor:
            return engine.restore(images[k], steps=steps, generators=[torch.Generator().manual_seed(k)])

        values, max_abs, seconds, gt, outs = compare(make, run, len(images), targets)
    return Row(
        "rddm-derain-small",
        "bundled project-trained (models/rddm-derain-small.safetensors)",
        f"Rain100L-sample inputs 1-3, center {crop}x{crop}",
        steps,
        values,
        max_abs,
        seconds,
        gt,
        change=net_change(outs, images, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        choices=("random", "fixture"),
        default="random",
        help="weights of the methods with no checkpoint available offline",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--crop", type=int, default=64, help="side of the SR / deblur input crops")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = load_registry()
    sr = [to_tensor(center_crop(load_rgb(p), args.crop)) for p in SR_INPUTS]
    rng = np.random.default_rng(0)
    blurred = [
        to_tensor(motion_blur(center_crop(load_rgb(p), args.crop), rng, length=9, angle=45)) for p in BLUR_SOURCES
    ]
    sr_what = f"Set5 LR x4 baby, bird, butterfly, center {args.crop}x{args.crop}"
    blur_what = f"Kodak24 kodim01-03, center {args.crop}x{args.crop}, motion blur 9 px at 45 deg"

    rows = []
    for model, images, what, steps in [
        ("resshift-realsr-x4-v3", sr, sr_what, 4),
        ("sinsr-realsr-x4", sr, sr_what, 1),
        ("diffir-srgan-x4", sr, sr_what, 4),
        ("diffir-deblur", blurred, blur_what, 4),
    ]:
        rows.append(restore_row(registry.get(model), args.weights, images, what, steps))
        print(f"# done {model} in {sum(rows[-1].seconds.values()):.1f} s", flush=True)
    rows.append(rddm_row(steps=1, crop=128))
    rows.append(rddm_row(steps=2, crop=128))
    rows.append(ddo_row(registry.get("ddo-cifar10"), args.weights))

    print()
    print(
        f"Date {datetime.date.today().isoformat()}, torch {torch.__version__}, CPU {cpu_name()}, "
        f"{torch.get_num_threads()} thread(s); bf16 = torch.autocast(cpu, bfloat16)."
    )
    print()
    print(
        "| model | weights | inputs | steps | PSNR bf16 vs fp32, mean (min) dB | max abs diff | "
        "net change: PSNR fp32 out vs input dB | PSNR vs GT fp32 / bf16 dB | s fp32 / bf16 |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gt = "-" if r.gt is None else f"{r.gt['float32']:.2f} / {r.gt['bfloat16']:.2f}"
        change = "-" if r.change is None else f"{r.change:.2f}"
        print(
            f"| {r.model} | {r.weights} | {r.inputs} | {r.steps} | {np.mean(r.psnr):.2f} ({min(r.psnr):.2f}) | "
            f"{r.max_abs:.4f} | {change} | {gt} | {r.seconds['float32']:.1f} / {r.seconds['bfloat16']:.1f} |"
        )


if __name__ == "__main__":
    main()
