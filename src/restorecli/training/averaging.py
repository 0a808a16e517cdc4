"""What a training run keeps besides the networks it trains: the EMA copy, and bundles of it.

The EMA weights are what validation scores and what `best.safetensors` /
`last.safetensors` hold; a bundle's metadata carries the model spec
(`config.model_spec`), so `--weights` runs it directly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..weights.bundle import spec_to_dict, write_bundle
from .config import TrainConfig, model_spec, public_training_record

# ---- EMA ----------------------------------------------------------------------------


class EMA:
    """Exponential moving average of parameters (buffers copied), with the usual warm-up
    min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the random init."""

    def __init__(self, nets: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.nets = {k: copy.deepcopy(v).eval().requires_grad_(False) for k, v in nets.items()}

    @torch.no_grad()
    def update(self, nets: dict[str, nn.Module]) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, net in nets.items():
            ema_state = self.nets[name].state_dict()
            for key, value in net.state_dict().items():
                if value.dtype.is_floating_point:
                    ema_state[key].mul_(d).add_(value.detach(), alpha=1 - d)
                else:
                    ema_state[key].copy_(value)

    def state(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "nets": {k: v.state_dict() for k, v in self.nets.items()}}

    def load(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)


# ---- bundles ----------------------------------------------------------------------


def save_bundle(
    path: Path,
    cfg: TrainConfig,
    nets: dict[str, nn.Module],
    *,
    half: bool = False,
    metrics: dict[str, Any] | None = None,
    origin: str = "user-trained",
    extra: dict[str, Any] | None = None,
) -> Path:
    """A safetensors bundle the RDDM engine loads with --weights; its metadata carries the model spec."""
    spec = model_spec(cfg, origin=origin)
    states = {}
    for name, net in nets.items():
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        states[name] = state
    meta = {
        "spec": spec_to_dict(spec),
        "training": public_training_record(cfg),
        "metrics": metrics or {},
    }
    meta.update(extra or {})
    return write_bundle(Path(path), spec, states, extra_meta=meta)
