"""`restore bench`: time engines on synthetic inputs, against the project's own plain reference path.

Weights are random (speed does not depend on the values). Each workload runs
twice in the same process: the plain reference path (eager fp32, explicit
attention, no fusions) and the chosen fast path, with their timed runs
alternating, so the ratio between them is measured on the same machine, in the
same run, under the same load. Timings live here and in
docs/performance.md, never in tests.

The `tiny` set is a CI smoke run, not a performance measurement: every engine
runs end to end on tiny inputs with a shrunk architecture (the registered
network with a few config values replaced, e.g. 32 channels instead of 160),
so a 2-core CI runner gets through all of them in seconds. Results say so
(`arch: "tiny"`).
"""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..engines.base import Engine
from ..errors import UsageError
from ..nets import attention
from ..runtime.device import pick_device, pick_dtype
from ..runtime.load import random_engine
from ..weights.registry import ModelSpec, load_registry


@dataclass(frozen=True)
class Workload:
    """One timed run. `shrink` maps component name -> config values replacing the registered ones
    (nested tables such as the VQ `ddconfig` merge one level deep); `sampler` likewise for the
    model's sampler table. Either makes the result an `arch: "tiny"` one."""

    name: str
    model: str
    height: int
    width: int
    batch: int = 1
    steps: int | None = None
    shrink: Mapping[str, Mapping[str, Any]] | None = None
    sampler: Mapping[str, Any] | None = None
    repeats: int | None = None  # at most this many timed runs (tiny workloads time few)
    # CPU threads when the run does not set --threads: tiny networks are overhead-bound, so one
    # thread is as fast, and OpenMP threads stall badly when a CI runner's other core is busy.
    threads: int | None = None


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
# Shrunk configs are those of the conformance fixtures (known to build and run): GroupNorm(32)
# networks keep multiples of 32 channels, the others their smallest official-shaped width.
_RESSHIFT_TINY = {
    # two levels: a 16x16 latent keeps every Swin stage (middle one included) a multiple of the 8-px window
    "unet": {"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": [1, 1], "swin_embed_dim": 64},
    "autoencoder": {"n_embed": 64, "ddconfig": {"ch": 32, "ch_mult": [1, 2, 2]}},
}
_DIFFIR_TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "n_encoder_res": 1}


def _tiny(name: str, model: str, side: int, **kw: Any) -> Workload:
    """A CI smoke workload: square `side` input, 2 timed runs, one thread, shrunk network."""
    return Workload(name, model, side, side, repeats=2, threads=1, **kw)


TINY = {
    w.name: w
    for w in (
        _tiny("resshift-tiny", "resshift-realsr-x4-v3", 16, shrink=_RESSHIFT_TINY, sampler={"pad_multiple": 16}),
        _tiny("sinsr-tiny", "sinsr-realsr-x4", 16, shrink=_RESSHIFT_TINY, sampler={"pad_multiple": 16}),
        _tiny("diffir-sr-tiny", "diffir-srgan-x4", 16, shrink={"g": _DIFFIR_TINY}),
        _tiny("diffir-deblur-tiny", "diffir-deblur", 32, shrink={"g": _DIFFIR_TINY}),
        _tiny("rddm-tiny", "rddm-derain", 32, steps=2, shrink={"model": {"dim": 8}}),
        _tiny(
            "ddo-tiny",
            "ddo-cifar10",
            16,
            steps=4,
            batch=2,
            shrink={"unet": {"channels": 32, "n_res_blocks": 1, "resolution": 16}},
        ),
    )
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
    cpu_threads: int | None = None
    arch: str = "registered"  # "tiny": a shrunk network (CI smoke run; not comparable to full size)
    notes: list[str] = field(default_factory=list)


def _merged(config: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with `over`'s values; a table (e.g. the VQ `ddconfig`) merges one level deep."""
    out = dict(config)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def shrunk_spec(spec: ModelSpec, work: Workload) -> ModelSpec:
    """The registered model with the workload's config replacements (the spec itself when none)."""
    if not work.shrink and not work.sampler:
        return spec
    unknown = set(work.shrink or {}) - set(spec.components)
    if unknown:
        raise UsageError(f"workload '{work.name}': model '{spec.name}' has no component {sorted(unknown)[0]!r}")
    comps = {
        name: replace(comp, config=_merged(comp.config, (work.shrink or {}).get(name, {})))
        for name, comp in spec.components.items()
    }
    return replace(spec, components=comps, sampler=_merged(spec.sampler, work.sampler or {}))


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # Process-wide high-water mark of resident memory (Linux reports KiB).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def workload_runner(engine: Engine, work: Workload, steps: int) -> Callable[[], None]:
    """One call = one batch of the workload through `engine` (fixed synthetic inputs and seeds)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(work.batch, 3, work.height, work.width, generator=gen)
    masks = None
    if engine.spec.task in {"inpaint", "shadow"}:
        masks = (torch.rand(work.batch, 1, work.height, work.width, generator=gen) > 0.7).float()

    def once() -> None:
        if engine.spec.task == "generate":  # generation models make `batch` images from noise
            engine.generate(work.batch, steps=steps, generator=torch.Generator().manual_seed(0))
            return
        gens = [torch.Generator().manual_seed(k) for k in range(work.batch)]
        engine.restore(images, steps=steps, generators=gens, masks=masks)

    return once


def timed_ms(device: torch.device, run: Callable[[], None]) -> float:
    """Wall milliseconds of one call, with the GPU queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000


def run_bench(
    workloads: Sequence[Workload],
    *,
    device: str = "auto",
    precision: str = "auto",
    repeats: int = 5,
    warmup: int = 1,
    reference: bool = True,
    threads: int | None = None,
) -> dict:
    """Time every workload (and its reference path); `threads` sets the CPU threads for all of them."""
    dev = pick_device(device)
    dtype = pick_dtype(precision, dev)
    registry = load_registry()
    default_threads = torch.get_num_threads()
    results = []
    try:
        for work in workloads:
            torch.set_num_threads(threads or work.threads or default_threads)
            results.append(_run_one(work, registry.get(work.model), dev, dtype, repeats, warmup, reference))
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(default_threads)
    return {
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__,
        "device_name": (
            torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
        ),
        "cpu_threads": threads or _common_threads(results) or default_threads,
        "results": [asdict(r) for r in results],
    }


def _common_threads(results: Sequence[Result]) -> int | None:
    """The CPU threads every workload ran with, when they all used the same (each result has its own)."""
    used = {r.cpu_threads for r in results}
    return used.pop() if len(used) == 1 else None


def _run_one(
    work: Workload,
    registered: ModelSpec,
    dev: torch.device,
    dtype: torch.dtype,
    repeats: int,
    warmup: int,
    reference: bool,
) -> Result:
    """One workload: the chosen path, then (optionally) the plain fp32 reference on the same weights."""
    spec = shrunk_spec(registered, work)
    steps = spec.check_steps(work.steps)
    runs = min(repeats, work.repeats) if work.repeats else repeats
    engine = random_engine(spec, dev, dtype)
    run = workload_runner(engine, work, steps)
    for _ in range(warmup):
        run()
    # Peak memory from a run of the chosen path alone, before a reference engine exists.
    _peak_reset(dev)
    times = [timed_ms(dev, run)]
    peak = _peak_gib(dev)
    ref_times: list[float] = []
    ref_note = None
    if reference:
        # Timed runs of the two paths alternate, so load from elsewhere on the machine
        # (or a GPU's clocks) affects both alike and their ratio stays meaningful.
        try:
            ref_engine = random_engine(spec, dev, torch.float32)
            ref_run = workload_runner(ref_engine, work, steps)
            with attention.reference_mode():
                for _ in range(warmup):
                    ref_run()
                ref_times.append(timed_ms(dev, ref_run))
                for _ in range(runs - 1):
                    times.append(timed_ms(dev, run))
                    ref_times.append(timed_ms(dev, ref_run))
        except torch.cuda.OutOfMemoryError:
            ref_times, ref_note = [], "the fp32 reference path ran out of GPU memory at this size"
        finally:
            ref_engine = ref_run = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    times += [timed_ms(dev, run) for _ in range(runs - len(times))]
    del engine, run
    ms = statistics.median(times)
    res = Result(
        workload=work.name,
        model=work.model,
        shape=f"{work.height}x{work.width}",
        batch=work.batch,
        steps=steps,
        device=str(dev),
        precision=str(dtype).replace("torch.", ""),
        ms_per_batch=ms,
        ms_per_image=ms / work.batch,
        images_per_s=1000 * work.batch / ms,
        peak_mem_gib=peak,
        cpu_threads=torch.get_num_threads() if dev.type == "cpu" else None,
    )
    if work.shrink or work.sampler:
        res.arch = "tiny"
        changed = {**(work.shrink or {}), **({"sampler": dict(work.sampler)} if work.sampler else {})}
        res.notes.append(
            "shrunk network (CI smoke run, not a performance figure): "
            + "; ".join(f"{name}: {', '.join(f'{k}={v}' for k, v in over.items())}" for name, over in changed.items())
        )
    if ref_times:
        ref_ms = statistics.median(ref_times)
        res.reference_ms_per_batch = ref_ms
        res.speedup_vs_reference = ref_ms / ms
    if ref_note:
        res.notes.append(ref_note)
    return res


def parse_workloads(names: Sequence[str] | None, shape: str | None) -> list[Workload]:
    """Named workloads ('tiny' for the CI set), plus an optional custom MODEL:HxW[:BATCH]."""
    chosen: list[Workload] = []
    for name in names or ([] if shape else list(WORKLOADS)):
        if name == "tiny":
            chosen.extend(TINY.values())
        elif name in WORKLOADS or name in TINY:
            chosen.append({**WORKLOADS, **TINY}[name])
        else:
            raise UsageError(f"unknown workload '{name}'", f"known: tiny, {', '.join([*TINY, *WORKLOADS])}")
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
    from rich.table import Table

    from ..io.printable import markup_safe
    from ..io.tables import print_table as print_rich_table

    tiny = any(r.get("arch") == "tiny" for r in report["results"])
    table = Table(
        title=f"restore bench - {report['device_name']}, torch {report['torch']}, {report['date']}",
        caption=(
            "arch tiny = shrunk networks on tiny inputs: a CI smoke run, not a performance figure" if tiny else None
        ),
    )
    cols = (
        "workload",
        "model",
        "arch",
        "shape",
        "batch",
        "steps",
        "precision",
        "threads",
        "ms/img",
        "img/s",
        "peak GiB",
        "ref ms/img",
        "speedup",
    )
    for col in cols:
        table.add_column(col, justify="right" if col not in {"workload", "model", "arch"} else "left")
    for r in report["results"]:
        ref = r["reference_ms_per_batch"]
        table.add_row(
            markup_safe(r["workload"]),
            markup_safe(r["model"]),
            markup_safe(r.get("arch", "registered")),
            r["shape"],
            str(r["batch"]),
            str(r["steps"]),
            r["precision"],
            str(r.get("cpu_threads") or "-"),
            f"{r['ms_per_image']:.1f}",
            f"{r['images_per_s']:.2f}",
            "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}",
            "-" if ref is None else f"{ref / r['batch']:.1f}",
            "-" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x",
        )
    print_rich_table(table)
