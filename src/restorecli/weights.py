"""Checkpoint files: read official `.pth` safely, canonicalise, and keep safetensors bundles.

A *bundle* is one safetensors file holding every component of a model, each
under its own key prefix (`unet.`, `autoencoder.`), with metadata naming the
model, its config and the sha256 of the source files. Bundles are what the
cache keeps and what `--weights` takes; official files are converted into one
in memory when given as `COMPONENT=PATH` pairs.

Official `.pth` files are only ever opened with `torch.load(weights_only=True)`,
which refuses to execute pickled code.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .bundlespec import BUNDLE_FORMAT, read_bundle_metadata
from .errors import UsageError, WeightsError
from .registry import ModelSpec

StateDict = dict[str, Tensor]
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_torch_file(path: Path) -> Any:
    """Open an official checkpoint without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}", "check the path")
    hint = "the file is corrupt, truncated, or not a PyTorch weights file"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise WeightsError(f"cannot read checkpoint {path}: the file is empty", hint)
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # torch.save writes a zip, or (legacy) a pickle
        raise WeightsError(f"cannot read checkpoint {path}: not a PyTorch checkpoint "
                           f"(neither a zip archive nor a pickle; it starts with {head!r})", hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        if "Weights only load failed" in str(exc) and _unsafe_globals(path):
            return _load_with_inert_configs(path)
        raise WeightsError(f"cannot read checkpoint {path}: {_torch_load_reason(exc)}", hint) from None


def _torch_load_reason(exc: BaseException) -> str:
    """One short phrase for a failed torch.load (its own messages span many lines of advice)."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        after = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        detail = next((ln.strip() for ln in after.splitlines() if ln.strip()), "")
        return "PyTorch's safe loader refused it" + (f" ({detail})" if detail else "")
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# Training containers (e.g. Lightning `hyper_parameters`) pickle config objects
# beside the weights. Their classes are not importable here and must never run,
# so these names are read as `InertObject`s; any other unknown global is refused.
INERT_GLOBAL_PREFIXES = ("omegaconf.", "typing.")
INERT_GLOBAL_NAMES = frozenset(
    f"builtins.{t}" for t in ("dict", "list", "tuple", "set", "int", "float", "str", "bool", "bytes", "object")
) | {"collections.defaultdict"}


class InertObject:
    """Stand-in for a pickled config object: takes any arguments and state, keeps nothing, runs nothing."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the globals a checkpoint pickles that torch's restricted unpickler does not allow."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:
        return []


def _load_with_inert_configs(path: Path) -> Any:
    """`torch.load(weights_only=True)` with pickled config classes mapped to `InertObject`.

    torch's restricted unpickler still decides everything else (tensor rebuilds
    only, APPEND/SETITEM only on real lists and dicts); the mapping only names
    which inert placeholder a config global becomes, so no code from the file runs.
    """
    fix = (
        "if you trust the file, load it once where its training code is installed and save only the weights: "
        "ck = torch.load(IN, weights_only=False); torch.save({'state_dict': ck['state_dict']}, OUT)"
    )
    names = _unsafe_globals(path)
    refused = [n for n in names if not (n.startswith(INERT_GLOBAL_PREFIXES) or n in INERT_GLOBAL_NAMES)]
    if refused:
        raise WeightsError(f"refusing checkpoint {path}: it pickles {refused[0]}, which is code, not weights", fix)
    try:
        with torch.serialization.safe_globals([(InertObject, name) for name in names]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read checkpoint {path} safely: {first}", fix) from None


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def unwrap_state_dict(obj: Any) -> StateDict:
    """Plain state dict from the wrappers official files use: {'state_dict': ...}, 'module.', '_orig_mod.'."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(
            "checkpoint does not hold a state dict of tensors",
            "pass the official weights file of this model",
        )
    state = dict(obj)
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = strip_prefix(state, prefix)
    return state


# ---- bundles ------------------------------------------------------------------

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
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    tensors = _dedupe_shared(bundle_tensors(states))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
    except (SafetensorsError, OSError, ValueError) as exc:
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
            f"{path} has {len(stray)} tensors outside the components of '{spec.name}' "
            f"(e.g. {stray[0]})",
            "pass a bundle made by 'restore convert' for this model",
        )
    empty = [name for name, state in states.items() if not state]
    if empty:
        raise WeightsError(
            f"{path} lacks component(s) {', '.join(empty)} of model '{spec.name}'",
            "convert all of the model's official files into one bundle with 'restore convert'",
        )
    return states


def parse_weight_args(spec: ModelSpec, args: list[str]) -> dict[str, Path] | Path:
    """`--weights` values: one bundle path, or COMPONENT=PATH pairs (a lone PATH is allowed for one-component models)."""
    if len(args) == 1 and "=" not in args[0] and (
        args[0].endswith(".safetensors") or len(spec.components) != 1
    ):
        return Path(args[0])
    pairs: dict[str, Path] = {}
    for arg in args:
        comp, sep, value = arg.partition("=")
        if not sep:
            if len(spec.components) == 1:
                comp, value = next(iter(spec.components)), arg
            else:
                raise UsageError(
                    f"--weights {arg}: model '{spec.name}' has components "
                    f"{', '.join(spec.components)}",
                    "pass a bundle .safetensors or COMPONENT=PATH for each component",
                )
        if comp not in spec.components:
            raise UsageError(
                f"--weights {arg}: '{comp}' is not a component of model '{spec.name}'",
                f"components: {', '.join(spec.components)}",
            )
        pairs[comp] = Path(value)
    return pairs


def load_component_file(spec: ModelSpec, comp_name: str, path: Path) -> StateDict:
    """One official (.pth) or safetensors file, canonicalised for component `comp_name`."""
    from .engines import engine_class

    path = Path(path)
    comp = spec.components[comp_name]
    if path.suffix == ".safetensors":
        try:
            meta = read_bundle_metadata(path)
        except Exception:
            meta = {}
        if meta.get("format") == BUNDLE_FORMAT:
            return read_bundle(path, spec)[comp_name]
        try:
            obj: Any = safetensors_tensors(path)
        except (SafetensorsError, OSError) as exc:
            raise WeightsError(f"cannot read {path}: {exc}") from None
    else:
        obj = read_torch_file(path)
    return engine_class(spec.method).canonicalize(comp, obj)


def convert_files(spec: ModelSpec, files: Mapping[str, Path]) -> tuple[dict[str, StateDict], dict[str, str]]:
    """Official files -> per-component state dicts, plus the sha256 of each source file."""
    missing = [c for c in spec.components if c not in files]
    if missing:
        raise UsageError(
            f"model '{spec.name}' needs files for component(s) {', '.join(missing)}",
            " ".join(f"{c}=PATH" for c in spec.components),
        )
    states = {c: load_component_file(spec, c, Path(p)) for c, p in files.items()}
    hashes = {c: f"{Path(p).name}:{sha256_file(Path(p))}" for c, p in files.items()}
    return states, hashes


def load_weights(
    spec: ModelSpec,
    weights: list[str] | None,
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
) -> dict[str, StateDict]:
    """The weights a restore command runs on: `--weights` if given, else the cached (or downloaded) bundle."""
    if weights:
        parsed = parse_weight_args(spec, weights)
        if isinstance(parsed, Path):
            return read_bundle(parsed, spec)
        states, _ = convert_files(spec, parsed)
        return states
    from .fetch import ensure_bundle

    return read_bundle(ensure_bundle(spec, offline=offline, cache_dir=cache_dir), spec)
