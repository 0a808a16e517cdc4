"""Official files -> the per-component state dicts a bundle stores.

Which keys an official file holds, and how they map onto the network, is the
method's knowledge (`Engine.canonicalize`), so every function here takes the
canonicaliser as an argument; `restorecli.runtime.load` binds the engine's.
This keeps the weights package free of engine imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from ..errors import UsageError, WeightsError
from ..io.files import sha256_file
from .bundle import BUNDLE_FORMAT, StateDict, read_bundle, read_bundle_metadata, safetensors_tensors
from .registry import ComponentSpec, ModelSpec

Canonicalize = Callable[[ComponentSpec, Any], StateDict]
"""A method's `Engine.canonicalize`: whatever an official file holds -> the component's state dict."""


@dataclass(frozen=True)
class NetworkFit:
    """What the component's network declares, for judging a file before and after reading it.

    `elements(comp)`: the number of tensor elements of the declared network (None when unknown),
    which bounds what a checkpoint may inflate to; `check(comp, state, what)`: raise WeightsError
    when the tensors do not fit the declared network's keys and shapes (the check `restore` makes
    when it loads a bundle, made at conversion so a misfit never becomes a bundle).
    """

    elements: Callable[[ComponentSpec], int | None]
    check: Callable[[ComponentSpec, StateDict, str], None]


def parse_weight_args(spec: ModelSpec, args: list[str]) -> dict[str, Path] | Path:
    """`--weights` values: one bundle path, or COMPONENT=PATH pairs (a lone PATH is allowed for one-component models)."""
    if len(args) == 1 and "=" not in args[0] and (args[0].endswith(".safetensors") or len(spec.components) != 1):
        return Path(args[0])
    pairs: dict[str, Path] = {}
    for arg in args:
        comp, sep, value = arg.partition("=")
        if not sep:
            if len(spec.components) == 1:
                comp, value = next(iter(spec.components)), arg
            else:
                raise UsageError(
                    f"--weights {arg}: model '{spec.name}' has components {', '.join(spec.components)}",
                    "pass a bundle .safetensors or COMPONENT=PATH for each component",
                )
        if comp not in spec.components:
            raise UsageError(
                f"--weights {arg}: '{comp}' is not a component of model '{spec.name}'",
                f"components: {', '.join(spec.components)}",
            )
        pairs[comp] = Path(value)
    return pairs


def load_component_file(
    spec: ModelSpec, comp_name: str, path: Path, canonicalize: Canonicalize, fit: NetworkFit | None = None
) -> StateDict:
    """One official (.pth) or safetensors file, canonicalised for component `comp_name`.

    A bundle (format `restorecli-bundle-1`) gives its stored component as it is.
    With `fit`, a checkpoint is bounded by what the network can hold before it is
    inflated, and the tensors are checked against the network's shapes.
    """
    path = Path(path)
    comp = spec.components[comp_name]
    state = _read_component(spec, comp_name, path, canonicalize, fit)
    if fit is not None:
        fit.check(comp, state, f"{spec.name}:{comp_name} from {path}")
    return state


def _read_component(
    spec: ModelSpec, comp_name: str, path: Path, canonicalize: Canonicalize, fit: NetworkFit | None
) -> StateDict:
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
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"cannot read {path}: {exc}") from None
    else:
        from .checkpoint import inflation_limit, read_torch_file  # imports torch: only when a file is read

        elements = fit.elements(comp) if fit is not None else None
        obj = read_torch_file(path, max_bytes=inflation_limit(elements) if elements is not None else None)
    return canonicalize(comp, obj)


def convert_files(
    spec: ModelSpec, files: Mapping[str, Path], canonicalize: Canonicalize, fit: NetworkFit | None = None
) -> tuple[dict[str, StateDict], dict[str, str]]:
    """Official files -> per-component state dicts, plus the sha256 of each source file."""
    missing = [c for c in spec.components if c not in files]
    if missing:
        raise UsageError(
            f"model '{spec.name}' needs files for component(s) {', '.join(missing)}",
            " ".join(f"{c}=PATH" for c in spec.components),
        )
    states = {c: load_component_file(spec, c, Path(p), canonicalize, fit) for c, p in files.items()}
    hashes = {c: f"{Path(p).name}:{sha256_file(Path(p))}" for c, p in files.items()}
    return states, hashes
