"""`restore train --init`: start a run from a bundle's weights (fine-tuning).

Fine-tuning a shipped model on one's own pairs needs far fewer iterations than
training from random weights, so `--init` takes a bundle written by `restore
train` or the name of a model shipped inside the package. The run's network
options must build the very network the bundle holds: a mismatch is refused
with the differing settings named, never loaded partially.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from ..weights.bundle import bundle_spec, read_bundle
from ..weights.cache import packaged_bundle
from ..weights.registry import ModelSpec, load_registry
from .config import GATED_OUT_DIM, OFFICIAL_UNET_EXTRAS


def resolve_init(init: str) -> Path:
    """The bundle file `--init` names: a path, or a shipped model's name."""
    path = Path(init).expanduser()
    if path.is_file():
        return path
    registry = load_registry()
    if init in registry.models:
        shipped = packaged_bundle(registry.get(init))
        if shipped is not None:
            return shipped
        raise UsageError(
            f"--init {init} is a model without a bundle shipped in the package",
            "pass the .safetensors bundle written by 'restore train' instead",
        )
    raise UsageError(
        f"--init {init}: no such bundle file or shipped model",
        "pass a .safetensors bundle written by 'restore train' or a shipped model (see 'restore models')",
    )


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items()))


def _network_options(config: dict) -> str:
    """The `restore train` options that build the network of a bundle's config."""
    if "stages" in config:  # the rainnet
        return f"--network rainnet --width {config['width']} --stages {config['stages']} --blocks {config['blocks']}"
    if "width" in config and "dim" not in config:  # the lightnet
        return f"--network lightnet --width {config['width']} --global-width {config.get('global_width', 32)}"
    mults = ",".join(str(m) for m in config.get("dim_mults", ()))
    extras = {**OFFICIAL_UNET_EXTRAS, **{k: config[k] for k in OFFICIAL_UNET_EXTRAS if k in config}}
    return f"--dim {config.get('dim')} --dim-mults {mults} " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in extras.items()
    )


def load_init_weights(init: str, spec: ModelSpec, nets: dict[str, nn.Module]) -> Path:
    """Copy the bundle's weights into `nets` (which `spec` built); return the bundle's path."""
    path = resolve_init(init)
    own = bundle_spec(path)
    if own is None or own.method != spec.method:
        raise UsageError(
            f"--init {init} is not an RDDM bundle written by 'restore train'",
            "pass a bundle made by 'restore train rddm' or a shipped RDDM model",
        )
    if set(own.components) != set(spec.components):
        raise UsageError(
            f"--init {init} has networks {sorted(own.components)}, this run trains {sorted(spec.components)}",
            "train with the bundle's network: "
            + (
                "--network lightnet or rainnet"
                if set(own.components) == {"net"}
                else "--objective pred_res"
                if len(own.components) == 1
                else "--objective pred_res_noise and its --dual-output setting"
            ),
        )
    for name, comp in spec.components.items():
        theirs = own.components[name].config
        if theirs != comp.config:
            differ = {k: theirs.get(k) for k in set(theirs) | set(comp.config) if theirs.get(k) != comp.config.get(k)}
            raise UsageError(
                f"--init {init} holds a different network ({_describe(differ)} in {name})",
                f"train with the bundle's network options: {_network_options(theirs)}"
                + (" --dual-output" if theirs.get("out_dim") == GATED_OUT_DIM else ""),
            )
    states = read_bundle(path, spec)
    with torch.no_grad():
        for name, net in nets.items():
            own_state = net.state_dict()  # fp16 bundles load into the run's fp32 tensors
            try:
                net.load_state_dict(
                    {k: v.to(own_state[k].dtype) if k in own_state else v for k, v in states[name].items()}
                )
            except RuntimeError as exc:  # names or shapes that the spec in its metadata promised otherwise
                reason = str(exc).strip().splitlines()[-1].strip()
                raise UsageError(f"--init {init} does not fit the network: {reason}", "pass an intact bundle") from None
    return path
