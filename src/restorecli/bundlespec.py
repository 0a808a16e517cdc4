"""The model spec a bundle written by `restore train` carries in its metadata.

A user-trained model may differ from the registered model it stands in for
(network width, objective, accepted steps), so `--weights BUNDLE` runs it with
the spec stored beside its tensors. Reading it needs only the safetensors
header (no torch), so the CLI can check `--steps` before the heavy imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .registry import ComponentSpec, ModelSpec, Registry

BUNDLE_FORMAT = "restorecli-bundle-1"


def read_bundle_metadata(path: Path | str) -> dict[str, str]:
    """The string metadata of a safetensors file (header only: no tensors, no torch)."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as fh:
        return dict(fh.metadata() or {})


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "method": spec.method, "task": spec.task, "scale": spec.scale,
        "components": {n: {"kind": c.kind, "config": c.config} for n, c in spec.components.items()},
        "sampler": spec.sampler, "trained_steps": spec.trained_steps, "default_steps": spec.default_steps,
        "min_steps": spec.min_steps, "max_steps": spec.max_steps, "origin": spec.origin,
        "description": spec.description,
    }


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    comps = {n: ComponentSpec(name=n, kind=c["kind"], config=c["config"]) for n, c in data["components"].items()}
    return ModelSpec(
        name=data["name"], method=data["method"], task=data["task"], scale=int(data.get("scale", 1)),
        components=comps, sampler=dict(data["sampler"]), trained_steps=int(data["trained_steps"]),
        default_steps=int(data["default_steps"]), min_steps=int(data["min_steps"]),
        max_steps=int(data["max_steps"]), origin=data.get("origin", "user-trained"),
        description=data.get("description", ""),
    )


def bundle_spec(path: Path | str) -> ModelSpec | None:
    """The spec stored in a `restore train` bundle, or None for any other file."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        meta = read_bundle_metadata(path)
        if meta.get("format") != BUNDLE_FORMAT or "spec" not in meta:
            return None
        return spec_from_dict(json.loads(meta["spec"]))
    except Exception:  # unreadable or foreign files are reported by the weights loader, not here
        return None


def spec_for_weights(spec: ModelSpec, weights: list[str] | tuple[str, ...] | None) -> ModelSpec:
    """`spec`, or the spec inside a single --weights bundle of the same method."""
    if weights and len(weights) == 1:
        own = bundle_spec(weights[0])
        if own is not None and own.method == spec.method:
            return own
    return spec


def bundle_tasks(path: Path | str, registry: Registry) -> tuple[str | None, set[str]]:
    """(the task a bundle records, every task it may serve); (None, empty) when it records none.

    A `restore train` bundle records its spec's task; a bundle of a registered model
    (`restore convert`, the cache, the package) names the model, whose registry entry
    gives its task. Tasks the registered model is also the default for (`default_for`)
    are served too: one model may legitimately serve several tasks.
    """
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None, set()
    try:
        meta = read_bundle_metadata(path)
        own = json.loads(meta["spec"]).get("task") if "spec" in meta else None
    except Exception:  # unreadable or foreign files are reported by the weights loader
        return None, set()
    registered = registry.models.get(meta.get("model", ""))
    task = own or (registered.task if registered is not None else None)
    if task is None:
        return None, set()
    served = {task}
    if registered is not None and (own is None or own == registered.task):
        served |= {registered.task, *registered.default_for}
    return task, served


def check_bundle_task(weights: list[str] | tuple[str, ...] | None, task: str, registry: Registry) -> None:
    """Refuse (exit 3) a single --weights bundle that records a task other than `task`."""
    if not weights or len(weights) != 1 or "=" in weights[0]:
        return
    recorded, served = bundle_tasks(weights[0], registry)
    if recorded is not None and task not in served:
        raise WeightsError(
            f"{weights[0]} is a bundle for the '{recorded}' task, not for '{task}'",
            f"run it with 'restore {recorded}', or pass a bundle made for '{task}'",
        )
