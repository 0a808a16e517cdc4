"""`restore bench`: time engines on synthetic inputs, against the project's own plain reference path.

Weights are random unless the model's bundle is cached (speed does not depend
on the values). Each workload runs twice in the same process: the plain
reference path (eager fp32, explicit attention, no fusions) and the chosen
fast path, so the ratio between them is measured on the same machine, in the
same run. Timings live here and in docs/performance.md, never in tests.
"""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from .engines import engine_class
from .engines.base import Engine
from .nets import attention
from .registry import ModelSpec, load_registry
from .runtime import pick_device, pick_dtype


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    height: int
    width: int
    batch: int = 1
    steps: int | None = None


# The anchors of the performance issue, plus tiny CI shapes.
WORKLOADS = {
    "resshift-64": Workload("resshift-64", "resshift-realsr-x4-v3", 64, 64),
    "resshift-64-b64": Workload("resshift-64-b64", "resshift-realsr-x4-v3", 64, 64, batch=64),
    "resshift-256": Workload("resshift-256", "resshift-realsr-x4-v3", 256, 256),
    "diffir-sr-64": Workload("diffir-sr-64", "diffir-srgan-x4", 64, 64),
    "diffir-sr-64-b16": Workload("diffir-sr-64-b16", "diffir-srgan-x4", 64, 64, batch=16),
    "diffir-deblur-720p": Workload("diffir-deblur-720p", "diffir-deblur", 720, 1280),
    "rddm-derain-256": Workload("rddm-derain-256", "rddm-derain", 256, 256, steps=5),
    "rddm-derain-256-b16": Workload("rddm-derain-256-b16", "rddm-derain", 256, 256, batch=16, steps=5),
}
TINY = {
    "resshift-tiny": Workload("resshift-tiny", "resshift-realsr-x4-v3", 16, 16),
    "diffir-tiny": Workload("diffir-tiny", "diffir-srgan-x4", 16, 16),
    "rddm-tiny": Workload("rddm-tiny", "rddm-derain", 32, 32, steps=2),
}


@dataclass
class Result:
    workload: str
    model: str
    shape: str
    batch: int
    steps: int
    device: str
    precision: str
    ms_per_batch: float
    ms_per_image: float
    images_per_s: float
    peak_mem_gib: float | None
    reference_ms_per_batch: float | None = None
    speedup_vs_reference: float | None = None
    notes: list[str] = field(default_factory=list)


def random_engine(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> Engine:
    """An engine with randomly initialised networks of the registered (full-size) architecture."""
    cls = engine_class(spec.method)
    torch.manual_seed(0)
    states = {name: cls.build_component(comp, device="cpu").state_dict() for name, comp in spec.components.items()}
    return cls(spec, states, device=device, dtype=dtype)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # Process-wide high-water mark of resident memory (Linux reports KiB).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_engine(engine: Engine, work: Workload, steps: int, repeats: int, warmup: int) -> tuple[float, float | None]:
    """Median milliseconds per batch and peak memory in GiB."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(work.batch, 3, work.height, work.width, generator=gen)
    masks = None
    if engine.spec.task in {"inpaint", "shadow"}:
        masks = (torch.rand(work.batch, 1, work.height, work.width, generator=gen) > 0.7).float()

    def once() -> None:
        gens = [torch.Generator().manual_seed(k) for k in range(work.batch)]
        engine.restore(images, steps=steps, generators=gens, masks=masks)

    for _ in range(warmup):
        once()
    _peak_reset(engine.device)
    times = []
    for _ in range(repeats):
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
        start = time.perf_counter()
        once()
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), _peak_gib(engine.device)


def run_bench(
    workloads: Sequence[Workload],
    *,
    device: str = "auto",
    precision: str = "auto",
    repeats: int = 5,
    warmup: int = 1,
    reference: bool = True,
) -> dict:
    dev = pick_device(device)
    dtype = pick_dtype(precision, dev)
    registry = load_registry()
    results = []
    for work in workloads:
        spec = registry.get(work.model)
        steps = spec.check_steps(work.steps)
        engine = random_engine(spec, dev, dtype)
        ms, peak = time_engine(engine, work, steps, repeats, warmup)
        res = Result(
            workload=work.name, model=work.model, shape=f"{work.height}x{work.width}", batch=work.batch,
            steps=steps, device=str(dev), precision=str(dtype).replace("torch.", ""),
            ms_per_batch=ms, ms_per_image=ms / work.batch, images_per_s=1000 * work.batch / ms,
            peak_mem_gib=peak,
        )
        if reference:
            ref_engine = random_engine(spec, dev, torch.float32)
            with attention.reference_mode():
                ref_ms, _ = time_engine(ref_engine, work, steps, max(1, repeats // 2), warmup)
            res.reference_ms_per_batch = ref_ms
            res.speedup_vs_reference = ref_ms / ms
            del ref_engine
        results.append(res)
        del engine
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "results": [asdict(r) for r in results],
    }


def parse_workloads(names: Sequence[str] | None, shape: str | None) -> list[Workload]:
    """Named workloads ('tiny' for the CI set), plus an optional custom MODEL:HxW[:BATCH]."""
    from .errors import UsageError

    chosen: list[Workload] = []
    for name in names or ([] if shape else list(WORKLOADS)):
        if name == "tiny":
            chosen.extend(TINY.values())
        elif name in WORKLOADS or name in TINY:
            chosen.append({**WORKLOADS, **TINY}[name])
        else:
            raise UsageError(f"unknown workload '{name}'", f"known: tiny, {', '.join(WORKLOADS)}")
    if shape:
        try:
            model, hw, *rest = shape.split(":")
            h, w = (int(x) for x in hw.lower().split("x"))
            batch = int(rest[0]) if rest else 1
        except ValueError:
            raise UsageError(f"--shape {shape} is not MODEL:HxW[:BATCH]", "e.g. diffir-deblur:1080x1920") from None
        chosen.append(Workload(f"{model}-{h}x{w}-b{batch}", model, h, w, batch))
    return chosen


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"restore bench - {report['device_name']}, torch {report['torch']}, {report['date']}")
    for col in ("workload", "model", "shape", "batch", "steps", "precision", "ms/img", "img/s", "peak GiB", "ref ms/img", "speedup"):
        table.add_column(col, justify="right" if col not in {"workload", "model"} else "left")
    for r in report["results"]:
        ref = r["reference_ms_per_batch"]
        table.add_row(
            r["workload"], r["model"], r["shape"], str(r["batch"]), str(r["steps"]), r["precision"],
            f"{r['ms_per_image']:.1f}", f"{r['images_per_s']:.2f}",
            "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}",
            "-" if ref is None else f"{ref / r['batch']:.1f}",
            "-" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x",
        )
    Console().print(table)
