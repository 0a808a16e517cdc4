"""Official checkpoint files, read safely, and the state-dict wrappers they come in.

Official `.pth` files are only ever opened with `torch.load(weights_only=True)`,
which refuses to execute pickled code; training containers that pickle config
objects beside the weights are read with those objects replaced by inert
placeholders (see `read_torch_file`). What a method's official layout looks
like is the engine's business (`Engine.canonicalize`); the common wrappers
(`state_dict`, `module.`, `_orig_mod.`) are unwrapped here.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import WeightsError
from .picklescan import REFUSAL_HINT, pickle_refusal

StateDict = dict[str, Tensor]
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


# What a checkpoint may inflate to, given the number of elements of the network it is for: every
# element in float64, four times over (online weights, their EMA copy, two optimizer moments), plus
# room for the pickle and small buffers. Far above any official file, far below a deflate bomb.
BYTES_PER_ELEMENT = 8
COPIES = 4
MARGIN_BYTES = 64 << 20


def inflation_limit(elements: int) -> int:
    """The most bytes a checkpoint for a network of `elements` tensor elements may unpack to."""
    return BYTES_PER_ELEMENT * COPIES * elements + MARGIN_BYTES


def read_torch_file(path: Path, max_bytes: int | None = None) -> Any:
    """Open an official checkpoint without running pickled code.

    `max_bytes` bounds what the file's zip members unpack to, from the sizes its
    directory declares, before anything is inflated (a deflate bomb is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}", "check the path")
    hint = "the file is corrupt, truncated, or not a PyTorch weights file"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise WeightsError(f"cannot read checkpoint {path}: the file is empty", hint)
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # torch.save writes a zip, or (legacy) a pickle
        raise WeightsError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint "
            f"(neither a zip archive nor a pickle; it starts with {head!r})",
            hint,
        )
    if max_bytes is not None and head.startswith(b"PK"):
        _check_inflated_size(path, max_bytes)
    try:
        with warnings.catch_warnings():  # torch's warnings would break the one-line error contract
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        if "Weights only load failed" in str(exc) and _unsafe_globals(path):
            return _load_with_inert_configs(path)
        held = pickle_refusal(path)  # say what a non-zip pickle holds (weights.picklescan)
        if held is not None:
            raise WeightsError(f"refusing checkpoint {path}: {held}", REFUSAL_HINT) from None
        raise WeightsError(f"cannot read checkpoint {path}: {_torch_load_reason(exc)}", hint) from None


def _check_inflated_size(path: Path, max_bytes: int) -> None:
    """Refuse a zip checkpoint whose members declare more bytes than the network can hold.

    torch's zip reader allocates each member at its declared size, so the
    declared sizes are what inflating would cost; reading them costs nothing.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            members = [(i.filename, i.file_size) for i in zf.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load reports a damaged archive in its own words
    total = sum(size for _, size in members)
    if total > max_bytes:
        name, size = max(members, key=lambda m: m[1])
        raise WeightsError(
            f"refusing checkpoint {path}: it unpacks to {total:,} bytes (member {name}: {size:,}), more than "
            f"the {max_bytes:,} the model's network can hold",
            "the file is not weights of this model (a compressed archive that inflates far beyond its size): "
            "pass the official file",
        )


def _torch_load_reason(exc: BaseException) -> str:
    """One short phrase for a failed torch.load (its own messages span many lines of advice,
    including the suggestion to disable the safe loader, which is never passed on)."""
    text = str(exc).strip()
    if "Weights only load failed" in text or "weights_only" in text:
        after = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        detail = next((ln.strip() for ln in after.splitlines() if ln.strip()), "")
        if "weights_only" in detail:
            detail = ""
        return "it holds objects the safe loader does not accept" + (f" ({detail})" if detail else "")
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
    fix = REFUSAL_HINT  # never suggest disabling the safe loader
    names = _unsafe_globals(path)
    refused = [n for n in names if not (n.startswith(INERT_GLOBAL_PREFIXES) or n in INERT_GLOBAL_NAMES)]
    if refused:
        raise WeightsError(f"refusing checkpoint {path}: it pickles {refused[0]}, which is code, not weights", fix)
    try:
        with torch.serialization.safe_globals([(InertObject, name) for name in names]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read checkpoint {path} safely: {first}", fix) from None


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


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
