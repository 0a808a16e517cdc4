"""Reading a run's `last.pt` for `--resume`, and refusing one that cannot continue the run.

The file is read with the same safe loader as official checkpoints (no pickled code runs,
and torch's advice to turn the safe loader off is never shown). Everything taken from it
is checked before the run uses it: the keys a checkpoint holds, the networks' tensors (they
must fit, and be finite: a run resumed from NaN weights would train nothing and write NaN
bundles), and both random generators' states. Any problem is one line, exit 3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError, WeightsError
from ..weights.checkpoint import read_torch_file

KEYS = ("step", "config", "nets", "ema", "opt", "rng_numpy", "rng_torch")
HINT = "resume from the last.pt a 'restore train' run wrote, or start the run again without --resume"


def read_resume(path: Path) -> dict[str, Any]:
    """The checkpoint as a dict with every key a resume needs (WeightsError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--resume {path}: no such file", HINT)
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict):
        raise WeightsError(f"--resume {path} is not a training checkpoint (it holds {type(ckpt).__name__})", HINT)
    missing = [k for k in KEYS if k not in ckpt]
    if missing:
        raise WeightsError(f"--resume {path} is not a training checkpoint: it lacks {', '.join(missing)}", HINT)
    return ckpt


def bad_checkpoint(path: Path, what: str) -> WeightsError:
    return WeightsError(f"--resume {path}: {what}", HINT)


def load_nets(path: Path, nets: dict[str, nn.Module], states: Any, what: str) -> None:
    """Load each network's state from `states`, refusing missing, misshapen or non-finite tensors."""
    if not isinstance(states, dict):
        raise bad_checkpoint(path, f"its {what} are not a table of networks")
    for name, net in nets.items():
        state = states.get(name)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise bad_checkpoint(path, f"its {what} lack network {name}")
        bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())), None)
        if bad is not None:
            raise bad_checkpoint(path, f"its {what} hold non-finite values ({name}.{bad}): the run had diverged")
        try:
            net.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise bad_checkpoint(path, f"its {what} do not fit the network ({first[:160]})") from None


def restore_rngs(path: Path, ckpt: dict[str, Any], rng: np.random.Generator, gen: torch.Generator) -> None:
    """Both generators as the checkpoint left them; a tampered state is refused, not half applied."""
    try:
        state = json.loads(ckpt["rng_numpy"])
        probe = np.random.default_rng()
        probe.bit_generator.state = state  # validate on a throwaway generator first
        if type(probe.bit_generator) is not type(rng.bit_generator):
            raise ValueError("another generator")
        torch_state = ckpt["rng_torch"]
        if not isinstance(torch_state, torch.Tensor) or torch_state.dtype != torch.uint8:
            raise ValueError("not a byte tensor")
        torch.Generator().set_state(torch_state)
    except Exception as exc:  # json, numpy and torch each raise their own types for a bad state
        raise bad_checkpoint(path, f"its random generator state is damaged ({type(exc).__name__})") from None
    rng.bit_generator.state = state
    gen.set_state(torch_state)


def number(path: Path, ckpt: dict[str, Any], key: str, default: float, *, whole: bool = False) -> Any:
    """A finite number from the checkpoint (a step count must be a whole number >= 0)."""
    value = ckpt.get(key, default)
    try:
        out = int(value) if whole else float(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_checkpoint(path, f"its {key} is not a number") from None
    if whole and (out < 0 or out != value):
        raise bad_checkpoint(path, f"its {key} {value!r} is not a step count")
    if not whole and math.isnan(out):
        raise bad_checkpoint(path, f"its {key} is not a number")
    return out
