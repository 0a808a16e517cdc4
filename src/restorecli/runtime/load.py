"""From a model name to a ready engine: registry spec -> weights -> engine.

This is the one module that joins the weights package (registry, bundles,
cache, downloads) with the engines: converting an official file needs the
method's `Engine.canonicalize`, and building an engine needs the weights, so
both meet here and nowhere else. The functions that convert take the engine's
canonicaliser from here; the engine modules are imported only when a file is
really converted or a model really runs, so finding a cached bundle (or
failing offline) stays quick and free of torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, WeightsError
from ..weights import convert, fetch
from ..weights.bundle import StateDict, check_bundle_task, read_bundle, spec_for_weights, spec_to_dict
from ..weights.convert import Canonicalize, NetworkFit
from ..weights.registry import ModelSpec, load_registry
from ..weights.specvalues import spec_problem

if TYPE_CHECKING:
    import torch

    from ..engines.base import Engine


def canonicalizer(spec: ModelSpec) -> Canonicalize:
    """The model's `Engine.canonicalize`, looked up (and its engine module imported) only when called."""

    def canonicalize(comp: Any, obj: Any) -> StateDict:
        from ..engines import engine_class

        return engine_class(spec.method, spec.engine).canonicalize(comp, obj)

    return canonicalize


def resolve_spec(
    model: str | None,
    task: str,
    weights: Sequence[str] | None = None,
    registry_files: Sequence[Path | str] = (),
) -> ModelSpec:
    """The spec a command runs: the registered model (or the task's default), or the spec a single
    `restore train` bundle given as `weights` carries (network size, sampler, accepted steps)."""
    registry = load_registry(tuple(Path(p) for p in registry_files))
    registered = registry.resolve(model, task)
    problem = spec_problem(spec_to_dict(registered))
    if problem is not None:  # an overlay's values, checked before any engine is built
        raise UsageError(
            f"registry model '{registered.name}': {problem}",
            "correct the value in your registry overlay (docs/weights.md)",
        )
    check_bundle_task(list(weights) if weights else None, task, registry)  # a bundle of another task: exit 3
    return spec_for_weights(registered, list(weights) if weights else None)


def network_fit(spec: ModelSpec) -> NetworkFit:
    """The model's declared networks (built on the meta device: shapes only), for judging official files."""

    def build(comp: Any, device: Any = "meta") -> Any:
        from ..engines import engine_class

        return engine_class(spec.method, spec.engine).build_component(comp, device=device)

    def elements(comp: Any) -> int | None:
        from ..engines.netcheck import declared_shapes

        shapes = declared_shapes(build, comp)
        return None if shapes is None else sum(math.prod(shape) for shape in shapes.values())

    def check(comp: Any, state: StateDict, what: str) -> None:
        from ..engines.netcheck import check_declared_network

        check_declared_network(build, comp, state, what)

    return NetworkFit(elements=elements, check=check)


def load_component_file(spec: ModelSpec, comp_name: str, path: Path | str) -> StateDict:
    """One official (.pth) or safetensors file, canonicalised for component `comp_name` of `spec`."""
    return convert.load_component_file(spec, comp_name, Path(path), canonicalizer(spec), network_fit(spec))


def convert_files(spec: ModelSpec, files: Mapping[str, Path]) -> tuple[dict[str, StateDict], dict[str, str]]:
    """Official files -> per-component state dicts, plus the sha256 of each source file (`restore convert`)."""
    return convert.convert_files(spec, files, canonicalizer(spec), network_fit(spec))


def ensure_bundle(spec: ModelSpec, **options: Any) -> Path:
    """`restorecli.weights.fetch.find_or_build_bundle` with the model's own canonicaliser (same options)."""
    return fetch.find_or_build_bundle(spec, canonicalize=canonicalizer(spec), fit=network_fit(spec), **options)


def fetch_models(
    specs: Sequence[ModelSpec], **options: Any
) -> list[tuple[ModelSpec, Path | None, WeightsError | None]]:
    """`restore fetch`: ensure each model's bundle; one model's failure does not stop the others."""
    results: list[tuple[ModelSpec, Path | None, WeightsError | None]] = []
    for spec in specs:
        try:
            results.append((spec, ensure_bundle(spec, **options), None))
        except WeightsError as exc:
            results.append((spec, None, exc))
    return results


def load_weights(
    spec: ModelSpec,
    weights: Sequence[str] | None,
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
    bundle: Path | None = None,
) -> dict[str, StateDict]:
    """The weights a model runs on: `--weights` if given, else `bundle` (the model's bundle, already
    found by `ensure_bundle`), else the cached (or downloaded) bundle."""
    if weights:
        parsed = convert.parse_weight_args(spec, list(weights))
        if isinstance(parsed, Path):
            return read_bundle(parsed, spec)
        states, _ = convert_files(spec, parsed)
        return states
    return read_bundle(bundle or ensure_bundle(spec, offline=offline, cache_dir=cache_dir), spec)


def engine_for_spec(
    spec: ModelSpec,
    *,
    weights: Sequence[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    offline: bool = False,
    cache_dir: Path | None = None,
    bundle: Path | None = None,
) -> Engine:
    """The engine of a resolved spec: device, precision, weights (given, found, cached or downloaded)."""
    from ..engines import engine_class
    from .device import pick_device, pick_dtype

    dev = pick_device(device)
    dtype = pick_dtype(precision, dev)
    states = load_weights(spec, weights, offline=offline, cache_dir=cache_dir, bundle=bundle)
    return engine_class(spec.method, spec.engine)(spec, states, device=dev, dtype=dtype)


def load_engine(
    model_name: str | None,
    task: str,
    *,
    weights: Sequence[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    registry_files: Sequence[Path] = (),
    offline: bool = False,
    cache_dir: Path | None = None,
) -> Engine:
    """Registry lookup (or a trained bundle's own spec), weights, device, precision -> engine."""
    spec = resolve_spec(model_name, task, weights, registry_files)
    return engine_for_spec(
        spec, weights=weights, device=device, precision=precision, offline=offline, cache_dir=cache_dir
    )


def random_engine(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> Engine:
    """An engine with randomly initialised networks of the spec's architecture (seeded, so runs repeat)."""
    import torch

    from ..engines import engine_class

    cls = engine_class(spec.method, spec.engine)
    torch.manual_seed(0)
    states = {name: cls.build_component(comp, device="cpu").state_dict() for name, comp in spec.components.items()}
    return cls(spec, states, device=device, dtype=dtype)
