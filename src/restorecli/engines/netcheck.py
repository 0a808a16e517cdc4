"""Check the network a model declares against the tensors it brings, before building it for real.

A bundle written by `restore train` carries its own model spec (network width,
levels), and the engine builds the network that spec declares. A damaged or
edited spec (`dim` 10^6 beside tensors of a 16-wide network) would make the
engine allocate terabytes, or build for minutes, before the tensors were ever
compared. Here the declared network is built on torch's `meta` device (shapes
only, no memory, no initialisation work) and its parameter shapes are compared
with the tensors' shapes: a mismatch is a WeightsError (exit 3), at once.

No imports from other restorecli modules except `errors`, so the module can move freely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import RestoreError, WeightsError


def declared_shapes(build: Callable[..., Any], comp: Any) -> dict[str, tuple[int, ...]] | None:
    """Each tensor's shape in the network `build(comp, device="meta")` declares; None when the
    builder cannot run on the meta device."""
    import torch

    try:
        with torch.device("meta"):
            net = build(comp, device="meta")
        return {k: tuple(v.shape) for k, v in net.state_dict().items()}
    except RestoreError:
        raise
    except Exception:
        return None


def check_declared_network(build: Callable[..., Any], comp: Any, state: Mapping[str, Any], what: str) -> None:
    """Raise WeightsError when the network `build(comp, device="meta")` declares does not fit `state`.

    A builder that cannot run on the meta device is not judged here (the real build
    and the strict load that follows it still are).
    """
    declared = declared_shapes(build, comp)
    if declared is None:
        return
    given = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    wrong = sorted(k for k in declared.keys() & given.keys() if declared[k] != given[k])
    missing = sorted(declared.keys() - given.keys())
    unexpected = sorted(given.keys() - declared.keys())
    if not (wrong or missing or unexpected):
        return
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} tensors of another shape (e.g. {k}: file {given[k]}, declared {declared[k]})")
    if missing:
        parts.append(f"{len(missing)} declared tensors missing from the file (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the declared network lacks (e.g. {unexpected[0]})")
    config = getattr(comp, "config", None)
    shown = ""
    if isinstance(config, Mapping):
        keys = [k for k in ("dim", "dim_mults", "model_channels", "channel_mult", "n_feats") if k in config]
        shown = " (declared " + ", ".join(f"{k}={config[k]}" for k in keys) + ")" if keys else ""
    raise WeightsError(
        f"weights for {what} do not fit the network the model declares{shown}: " + "; ".join(parts),
        "the file's model spec does not match its tensors (damaged or edited): use the original file, "
        "or convert or train it again",
    )
