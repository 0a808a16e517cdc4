"""The safetensors bundle: one file with every component of a model, and what its metadata says.

A bundle holds each component under its own key prefix (`unet.`, `autoencoder.`),
with metadata naming the model, its method and config and the sha256 of the
source files. Bundles are what the cache keeps and what `--weights` takes. A
bundle written by `restore train` also carries its whole model spec, since a
user-trained model may differ from the registered model it stands in for
(network width, objective, accepted steps): `spec_for_weights` runs it with that.

Reading metadata needs only the file's JSON header (no torch), so the CLI can
check `--steps` and find cached bundles before the heavy imports; this module
imports torch (through safetensors.torch) only when tensors are read or written.
"""

from __future__ import annotations

import json
import signal
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from ..errors import WeightsError
from ..io import jsontext as strict_json
from ..io.files import atomic_target
from .filemode import follow_umask
from .registry import ComponentSpec, ModelSpec, Registry
from .specvalues import spec_problem

if TYPE_CHECKING:
    from torch import Tensor

StateDict = dict[str, "Tensor"]
BUNDLE_FORMAT = "restorecli-bundle-1"
MAX_HEADER = 100_000_000


def read_bundle_metadata(path: Path | str) -> dict[str, str]:
    """A safetensors file's string metadata, from its JSON header (cheap: no tensors, no torch).

    Raises OSError, ValueError or struct.error for a file that is not safetensors.
    """
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > MAX_HEADER:
            raise ValueError("header too large")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"its header is JSON {type(header).__name__}, not a table")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("its metadata is not a table of strings")
    return dict(meta)


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "method": spec.method,
        "task": spec.task,
        "scale": spec.scale,
        "components": {n: {"kind": c.kind, "config": c.config} for n, c in spec.components.items()},
        "sampler": spec.sampler,
        "trained_steps": spec.trained_steps,
        "default_steps": spec.default_steps,
        "min_steps": spec.min_steps,
        "max_steps": spec.max_steps,
        "origin": spec.origin,
        "description": spec.description,
    }


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    comps = {n: ComponentSpec(name=n, kind=c["kind"], config=c["config"]) for n, c in data["components"].items()}
    return ModelSpec(
        name=data["name"],
        method=data["method"],
        task=data["task"],
        scale=int(data.get("scale", 1)),
        components=comps,
        sampler=dict(data["sampler"]),
        trained_steps=int(data["trained_steps"]),
        default_steps=int(data["default_steps"]),
        min_steps=int(data["min_steps"]),
        max_steps=int(data["max_steps"]),
        origin=data.get("origin", "user-trained"),
        description=data.get("description", ""),
    )


def bundle_spec(path: Path | str) -> ModelSpec | None:
    """The spec stored in a `restore train` bundle, or None for any other file.

    A stored spec with a value no engine can use (wrong type, out of range) is a
    WeightsError here, before anything is built from it (weights.specvalues).
    """
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        meta = read_bundle_metadata(path)
        if meta.get("format") != BUNDLE_FORMAT or "spec" not in meta:
            return None
        data = json.loads(meta["spec"])
    except Exception:  # unreadable or foreign files are reported by the weights loader, not here
        return None
    problem = spec_problem(data) if isinstance(data, dict) else "it is not a table"
    if problem is not None:
        raise WeightsError(
            f"{path} carries a model spec no engine can run: {problem}",
            "the bundle is damaged or was edited: use the original file, or train it again",
        )
    return spec_from_dict(data)


def spec_for_weights(spec: ModelSpec, weights: list[str] | tuple[str, ...] | None) -> ModelSpec:
    """`spec`, or the spec inside a single --weights bundle of the same method."""
    if weights and len(weights) == 1:
        own = bundle_spec(weights[0])
        if own is not None and own.method == spec.method:
            return own
    return spec


def bundle_tensors(states: Mapping[str, StateDict]) -> StateDict:
    out: StateDict = {}
    for comp, state in states.items():
        for key, value in state.items():
            out[f"{comp}.{key}"] = value.detach().to("cpu").contiguous()
    return out


def write_bundle(
    path: Path,
    spec: ModelSpec,
    states: Mapping[str, StateDict],
    sources: Mapping[str, str] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": BUNDLE_FORMAT,
        "model": spec.name,
        "method": spec.method,
        "components": json.dumps(sorted(states)),
        "config": json.dumps(
            {name: {"kind": c.kind, "config": c.config} for name, c in spec.components.items()},
            sort_keys=True,
        ),
        "sources": json.dumps(dict(sources or {}), sort_keys=True),
    }
    for key, value in (extra_meta or {}).items():
        meta[key] = value if isinstance(value, str) else strict_json.dumps(value, sort_keys=True)
    tensors = _dedupe_shared(bundle_tensors(states))
    from safetensors.torch import save_file

    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        follow_umask(tmp)  # a private temporary file would lock other users out of a shared cache
    return path


def _dedupe_shared(tensors: StateDict) -> StateDict:
    """safetensors refuses tensors that share memory; give each its own storage."""
    seen: set[int] = set()
    out: StateDict = {}
    for key, value in tensors.items():
        ptr = value.untyped_storage().data_ptr()
        if ptr in seen:
            value = value.clone()
        seen.add(ptr)
        out[key] = value
    return out


@contextmanager
def _interrupt_after_read() -> Iterator[None]:
    """Hold Ctrl-C until a safetensors read returns, then raise it.

    A KeyboardInterrupt raised inside safetensors' native reader comes back as a
    SafetensorError ("could not determine the shape of object type ..."), which
    would be reported as a corrupt file with exit 3; a read takes seconds at most.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    hit: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if hit:
            raise KeyboardInterrupt


def load_file(path: str) -> StateDict:
    """`safetensors.torch.load_file`, imported on first use (importing this module does not import torch)."""
    from safetensors.torch import load_file as load

    return load(path)


def safetensors_tensors(path: Path) -> StateDict:
    """Every tensor of a safetensors file (Ctrl-C during the read stays a Ctrl-C)."""
    with _interrupt_after_read():
        return load_file(str(path))


def read_bundle(path: Path, spec: ModelSpec) -> dict[str, StateDict]:
    """Split a bundle into per-component state dicts and check it belongs to `spec`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}", "check the --weights path")
    try:
        meta = read_bundle_metadata(path)
        tensors = safetensors_tensors(path)
    except (SafetensorError, OSError, ValueError, struct.error) as exc:
        raise WeightsError(
            f"cannot read safetensors file {path}: {exc}",
            "the file is corrupt or truncated; convert or download it again",
        ) from None
    bundled_model = meta.get("model")
    if bundled_model and bundled_model != spec.name:
        bundled_method = meta.get("method")
        if bundled_method and bundled_method != spec.method:
            raise WeightsError(
                f"{path} holds weights of model '{bundled_model}' ({bundled_method}), "
                f"not of '{spec.name}' ({spec.method})",
                f"pass --model {bundled_model} or the right --weights file",
            )
    states: dict[str, StateDict] = {name: {} for name in spec.components}
    stray = []
    for key, value in tensors.items():
        comp, _, rest = key.partition(".")
        if comp in states and rest:
            states[comp][rest] = value
        else:
            stray.append(key)
    if stray:
        raise WeightsError(
            f"{path} has {len(stray)} tensors outside the components of '{spec.name}' (e.g. {stray[0]})",
            "pass a bundle made by 'restore convert' for this model",
        )
    empty = [name for name, state in states.items() if not state]
    if empty:
        raise WeightsError(
            f"{path} lacks component(s) {', '.join(empty)} of model '{spec.name}'",
            "convert all of the model's official files into one bundle with 'restore convert'",
        )
    return states


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
