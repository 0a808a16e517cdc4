"""The Python API, and the one path every restore takes: the `restore` command line calls it too.

`restore(...)` is `restore TASK INPUT OUTPUT` as a function: same model and
steps resolution (a `restore train` bundle runs with its own spec), same
discovery, naming, skipping, atomic writes and report, and the same results
for the same seed; the CLI's task commands are `run_restore` plus an exit code.
`restore_images(...)` restores arrays already in memory. The two
`*BatchRestorer` classes are ready-made callables for Ray Data's
`map_batches` (one engine per actor, loaded once); `torchrun` needs no helper,
only `shard=(RANK, WORLD_SIZE)` (see docs/batch.md). `generate(...)` is
`restore generate`.

Importing this module is cheap: the pipeline loads when a job runs, and torch
only after the inputs, the model, its steps and its weights (fetched if needed)
are settled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ImageFailed, UsageError
from .io.imageio import check_resize
from .jobs.options import JobOptions, RestoreRequest
from .jobs.report import Report
from .jobs.runinfo import check_report_path, say_what_runs, write_run_page
from .runtime.load import engine_for_spec, ensure_bundle, resolve_spec
from .weights.registry import ModelSpec, Registry, load_registry

if TYPE_CHECKING:
    import numpy as np

    from .engines.base import Engine

_engines: dict[tuple[Any, ...], Engine] = {}
_engines_lock = threading.Lock()


def _cached_engine(key: tuple[Any, ...], build: Callable[[], Engine]) -> Engine:
    """One engine per process for the same arguments (later calls reuse it)."""
    with _engines_lock:
        if key not in _engines:
            _engines[key] = build()
        return _engines[key]


def _engine_for(
    spec: ModelSpec,
    key: tuple[Any, ...],
    *,
    weights: Sequence[str] | None,
    device: str,
    precision: str,
    offline: bool,
    cache_dir: Path | None,
    bundle: Path | None = None,
) -> Engine:
    return _cached_engine(
        key,
        lambda: engine_for_spec(
            spec,
            weights=weights,
            device=device,
            precision=precision,
            offline=offline,
            cache_dir=cache_dir,
            bundle=bundle,
        ),
    )


def _key(
    model: str | None,
    task: str,
    device: str,
    precision: str,
    weights: Sequence[str] | None,
    registry_files: Sequence[Path | str],
    offline: bool,
    cache_dir: Path | None,
) -> tuple[Any, ...]:
    return (
        model,
        task,
        device,
        precision,
        tuple(weights or ()),
        tuple(map(str, registry_files)),
        offline,
        str(cache_dir),
    )


def load_model(
    model: str | None = None,
    task: str = "sr",
    *,
    device: str = "auto",
    precision: str = "auto",
    weights: Sequence[str] | None = None,
    registry_files: Sequence[Path | str] = (),
    offline: bool = False,
    cache_dir: Path | None = None,
) -> Engine:
    """A ready engine, loaded once per process for the same arguments (later calls reuse it)."""
    spec = resolve_spec(model, task, weights, registry_files)
    key = _key(model, task, device, precision, weights, registry_files, offline, cache_dir)
    return _engine_for(
        spec, key, weights=weights, device=device, precision=precision, offline=offline, cache_dir=cache_dir
    )


def _plan(
    engine: Engine | None,
    model: str | None,
    task: str,
    steps: int | None,
    seed: int | None,
    registry_files: Sequence[Path | str],
    weights: Sequence[str] | None = None,
) -> tuple[ModelSpec, int, int]:
    """The spec that runs, its steps and its seed, exactly as every entry point picks them.

    The spec is the engine's, else the registered model's, else (for one `--weights` bundle
    written by `restore train`) the bundle's own; steps are checked against it.
    """
    spec = engine.spec if engine is not None else resolve_spec(model, task, weights, registry_files)
    return spec, spec.check_steps(steps), int(spec.extra.get("default_seed", 0) if seed is None else seed)


def _registry(registry_files: Sequence[Path | str]) -> Registry:
    return load_registry(tuple(Path(p) for p in registry_files))


def run_restore(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path | None,
    request: RestoreRequest,
    *,
    engine: Engine | None = None,
    quiet: bool = True,
    console: Any = None,
    **job_options: Any,
) -> Report:
    """The shared body of `restore(...)` and the CLI's task commands; returns the report, also when interrupted.

    Order: options, model and steps, then inputs, masks and output folders (usage errors,
    exit 2), then the weights (fetched now, or an offline error, before torch loads; not at
    all when no file is left to restore), then the job; engines are loaded when the first
    batch is ready, one per device.
    """
    raw = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    unknown = set(job_options) - set(JobOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"restore() got unexpected option(s): {', '.join(sorted(unknown))}")
    if engine is not None and job_options.get("devices") and len(job_options["devices"]) > 1:
        raise UsageError("one engine cannot run on several devices", "pass model= instead of engine=")
    r = request
    keep = [str(x) for x in raw if str(x) != "-" and not str(x).startswith("@")]
    check_report_path(r.report_path, keep=[*keep, *([str(output)] if output not in (None, "-") else [])])
    spec, steps, seed = _plan(engine, r.model, r.task, r.steps, r.seed, r.registry_files, r.weights)
    if r.resize is not None and "resize" not in _registry(r.registry_files).method(spec.method).options:
        raise UsageError(f"--resize is not supported by model '{spec.name}'")
    check_resize(r.resize, job_options.get("max_pixels"))  # before anything is allocated or created
    from .jobs.pipeline import plan_job, run_job

    opts = JobOptions(
        task=r.task, inputs=[str(p) for p in raw], output=None if output is None else str(output), steps=steps,
        seed=seed, quiet=quiet, **job_options,
    )  # fmt: skip
    # inputs, masks and output folders first: a mistyped path must not cost a download
    plan = plan_job(opts)
    bundle, source = _weights_for(spec, engine, r, quiet, needed=bool(plan.todo))
    tile = job_options.get("tile", 0)
    verbose = bool(job_options.get("verbose"))
    loaded: dict[str | None, Engine] = {}

    def make_engine(dev: str | None) -> Engine:  # called only once there is an image to restore (torch loads here)
        if engine is not None:
            chosen = engine
        else:
            key = (*_key(r.model, r.task, dev or r.device, r.precision, r.weights, r.registry_files, r.offline,
                         r.cache_dir), r.resize, r.exposure)  # fmt: skip
            chosen = _engine_for(
                spec, key, weights=r.weights, device=dev or r.device, precision=r.precision, offline=r.offline,
                cache_dir=r.cache_dir, bundle=bundle,
            )  # fmt: skip
        if r.resize is not None:
            chosen.resize = r.resize  # type: ignore[attr-defined]  (a method whose [methods] options name it)
        if r.exposure is not None:
            if not getattr(getattr(chosen, "direct", None), "exposure_control", False):
                raise UsageError(
                    f"--exposure is not supported by model '{spec.name}'",
                    "it moves the exposure of models that choose one for the whole photo (rddm-lowlight-small)",
                )
            chosen.exposure = float(r.exposure)  # type: ignore[attr-defined]
        if dev not in loaded:
            loaded[dev] = chosen
            if console is not None and not quiet:
                say_what_runs(console, chosen, source, steps, seed, tile=tile, verbose=verbose)
        return chosen

    report = run_job(make_engine, opts, console, plan)
    if r.report_path is not None:
        run_info = {"task": r.task, "model": spec.name, "weights": source, "steps": steps, "seed": seed}
        write_run_page(
            r.report_path, report, run_info, list(loaded.values()), device=r.device, precision=r.precision,
            tile=tile, inputs=[str(p) for p in raw], output=output, quiet=quiet, console=console,
        )  # fmt: skip
    return report


def _weights_for(
    spec: ModelSpec, engine: Engine | None, r: RestoreRequest, quiet: bool, needed: bool = True
) -> tuple[Path | None, str]:
    """The bundle the engines will load (fetched now, or an offline error, before torch loads) and how
    `-v` and the report name where the weights came from; none when no file is left to restore."""
    if engine is not None:
        return None, "an engine already loaded"
    if r.weights:
        return None, "--weights " + " ".join(map(str, r.weights))
    if not needed:  # every file skipped or failed already
        return None, "not needed (no image to restore)"
    from .weights.cache import is_cached, packaged_bundle

    packaged = packaged_bundle(spec)
    was_cached = is_cached(spec, r.cache_dir)
    bundle = ensure_bundle(spec, offline=r.offline, cache_dir=r.cache_dir, quiet=quiet)
    if packaged is not None:
        return bundle, f"bundled with restorecli ({bundle})"
    return bundle, f"cache {bundle}" if was_cached else f"downloaded to {bundle}"


def restore(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    *,
    task: str = "sr",
    model: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    weights: Sequence[str] | None = None,
    engine: Engine | None = None,
    registry_files: Sequence[Path | str] = (),
    offline: bool = False,
    cache_dir: Path | None = None,
    quiet: bool = True,
    console: Any = None,
    resize: int | None = None,
    exposure: float | None = None,
    **job_options: Any,
) -> Report:
    """Restore files, folders, globs or @lists into `output`, like the `restore TASK` command.

    job_options are the other `JobOptions` fields: mask, recursive, suffix, ext, quality,
    overwrite, shard=(i, n), batch_size, tile, tile_overlap, devices=["cuda:0", ...],
    relative_to, verbose, json. `engine` reuses an engine already loaded (e.g. by `load_model`);
    `weights=[BUNDLE]` of a `restore train` run uses that bundle's own spec (steps included);
    `resize` is `--resize` (RDDM's 256x256 paper protocol); `exposure` is `--exposure`
    (stops relative to a low-light model's own choice).
    Returns the Report (records per file, `exit_code`); Ctrl-C re-raises KeyboardInterrupt
    after the finished files are written.
    """
    report_path = job_options.pop("report_path", None)  # --report, accepted here as in run_restore
    request = RestoreRequest(
        task, model, steps, seed, device, precision, weights, registry_files, offline, cache_dir, resize, report_path,
        exposure,
    )  # fmt: skip
    report = run_restore(inputs, output, request, engine=engine, quiet=quiet, console=console, **job_options)
    if report.interrupted is not None:
        raise KeyboardInterrupt
    return report


def restore_images(
    images: Sequence[Any],
    *,
    engine: Engine | None = None,
    model: str | None = None,
    task: str = "sr",
    steps: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    weights: Sequence[str] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    tile: int | None = 0,
    tile_overlap: int = 32,
    batch_size: int = 1,
    registry_files: Sequence[Path | str] = (),
    offline: bool = False,
) -> list[np.ndarray]:
    """Restore in-memory images; each result has the input's layout and dtype.

    images: numpy arrays (H, W) or (H, W, C) with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or
    4 (RGBA), uint8 or uint16, or PIL images. masks: (H, W) arrays (nonzero above 127 of 255,
    or True, = area to fill) for inpainting/shadow models. Same-size images run in batches of
    `batch_size`; results do not depend on batching. Raises ImageFailed naming the image index.
    """
    from .io.pixels import array_from_picture, from_tensor, mask_tensor, picture_from_array, to_tensor
    from .runtime.restorer import Restorer

    if engine is None:
        engine = load_model(
            model,
            task,
            device=device,
            precision=precision,
            weights=weights,
            registry_files=registry_files,
            offline=offline,
        )
    _, steps, seed = _plan(engine, model, task, steps, seed, registry_files, weights)
    restorer = Restorer(engine, steps=steps, seed=seed, tile=tile, overlap=tile_overlap)
    decoded = [picture_from_array(im) for im in images]
    tensors = [to_tensor(pic) for pic, _ in decoded]
    mask_t = [
        None if masks is None or masks[i] is None else mask_tensor(_mask_bits(masks[i])) for i in range(len(decoded))
    ]
    for i, (x, m) in enumerate(zip(tensors, mask_t)):
        if m is not None and m.shape[-2:] != x.shape[-2:]:
            raise ImageFailed(
                f"image {i}: mask is {m.shape[-1]}x{m.shape[-2]} but the image is {x.shape[-1]}x{x.shape[-2]}"
            )
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(tensors):
        groups.setdefault((*x.shape[-2:], mask_t[i] is not None), []).append(i)
    results: list[np.ndarray | None] = [None] * len(decoded)
    for members in groups.values():
        for start in range(0, len(members), max(1, batch_size)):
            chunk = members[start : start + max(1, batch_size)]
            outs = restorer.run([tensors[i] for i in chunk], [mask_t[i] for i in chunk])
            for i, out in zip(chunk, outs):
                if isinstance(out, ImageFailed):
                    raise ImageFailed(f"image {i}: {out}")
                pic, layout = decoded[i]
                results[i] = array_from_picture(from_tensor(out, pic), layout)
    return results  # type: ignore[return-value]


def _mask_bits(mask: np.ndarray) -> np.ndarray:
    import numpy as np

    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == bool:
        return arr
    if arr.dtype == np.uint16:
        return arr > 32767
    if np.issubdtype(arr.dtype, np.floating):
        return arr > 0.5
    return arr > 127


def generate(
    model: str,
    output: Path | str,
    *,
    count: int = 16,
    weights: Sequence[str] | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 0,
    grid: bool = False,
    registry_files: Sequence[Path | str] = (),
    offline: bool = False,
    cache_dir: Path | None = None,
) -> list[Path]:
    """`restore generate`: `count` images of an unconditional model as PNGs in `output` (and grid.png)."""
    from .jobs.generate import write_generated

    spec, steps, seed = _plan(None, model, "generate", steps, seed, registry_files, weights)
    engine = engine_for_spec(
        spec, weights=weights, device=device, precision=precision, offline=offline, cache_dir=cache_dir
    )
    return write_generated(engine, Path(output), count=count, steps=steps, seed=seed, batch_size=batch_size, grid=grid)


class FileBatchRestorer:
    """For `ray.data.Dataset.map_batches`: a batch of {"path": [...]} rows -> files restored into `output`.

    Each actor loads its engine once. Outputs mirror the paths below `input_root`, existing
    outputs are skipped and writes are atomic, exactly as with the CLI, so a rerun of the whole
    Ray job resumes. Returns the batch with "output", "status" and "reason" columns added.
    """

    def __init__(
        self,
        output: str | Path,
        *,
        input_root: str | Path | None = None,
        task: str = "sr",
        model: str | None = None,
        engine: Engine | None = None,
        device: str = "auto",
        precision: str = "auto",
        weights: Sequence[str] | None = None,
        registry_files: Sequence[Path | str] = (),
        **options: Any,
    ) -> None:
        self.output, self.task, self.model = str(output), task, model
        self.options = dict(options, relative_to=None if input_root is None else str(input_root))
        self.engine = engine or load_model(
            model, task, device=device, precision=precision, weights=weights, registry_files=registry_files
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        paths = [str(p) for p in batch["path"]]
        report = restore(paths, self.output, task=self.task, model=self.model, engine=self.engine, **self.options)
        by_path = {r.path: r for r in report.records}
        out = dict(batch)
        out["output"] = np.array([getattr(by_path.get(p), "output", None) or "" for p in paths], dtype=object)
        out["status"] = np.array([getattr(by_path.get(p), "status", "skipped") for p in paths], dtype=object)
        out["reason"] = np.array([getattr(by_path.get(p), "reason", None) or "" for p in paths], dtype=object)
        return out


class ImageBatchRestorer:
    """For `map_batches` over `ray.data.read_images(...)`: restores the "image" column in place."""

    def __init__(
        self,
        *,
        task: str = "sr",
        model: str | None = None,
        engine: Engine | None = None,
        device: str = "auto",
        precision: str = "auto",
        weights: Sequence[str] | None = None,
        column: str = "image",
        **options: Any,
    ) -> None:
        self.task, self.model, self.column, self.options = task, model, column, options
        self.engine = engine or load_model(model, task, device=device, precision=precision, weights=weights)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        outs = restore_images(list(batch[self.column]), engine=self.engine, task=self.task, **self.options)
        out = dict(batch)
        if len({o.shape for o in outs}) == 1:
            out[self.column] = np.stack(outs)
        else:
            column = np.empty(len(outs), dtype=object)
            column[:] = outs
            out[self.column] = column
        return out
