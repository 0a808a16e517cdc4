"""Where the RDDM networks' weights sit in the official files and in restorecli's bundles.

The official Trainer saves a container whose EMA copy holds a `UnetRes` (unet0.* and,
in two-network models, unet1.*); `restore train rddm` bundles keep each network as its
own component. These functions turn either into the exact state dict one component loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ...errors import UsageError, WeightsError
from ...weights.registry import ComponentSpec
from ..base import StateDict
from .schedule import SCHEDULE_BUFFERS

UNETRES_KIND = "rddm.unetres"  # official UnetRes: unet0.* (and unet1.*) in one component
UNET_KIND = "rddm.unet"  # one Unet per component, named unet0 / unet1 (what `restore train rddm` writes)
EMA_PREFIX = "ema_model."
MODEL_PREFIX = "model."


def _tensor_map(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def unetres_state(obj: Any) -> StateDict:
    """The `UnetRes` weights (unet0.*, unet1.*) inside an official file, EMA copy preferred.

    Accepted: the Trainer.save container {'step', 'model', 'opt'|'opt0'/'opt1',
    'ema', 'scaler'} (its 'ema' is used, as the official test does); the EMA
    state alone ('ema_model.*'); a `ResidualDiffusion` state dict ('model.*'
    plus schedule buffers); a bare `UnetRes` state dict. Schedule buffers,
    'initted', 'step' and the online copy are dropped: the schedule is rebuilt
    from the registry config.
    """
    hint = "pass an RDDM checkpoint written by the official Trainer.save (model-N.pt) or a converted bundle"
    if isinstance(obj, Mapping) and "ema" in obj:
        obj = obj["ema"]
        if not isinstance(obj, Mapping) or not any(str(k).startswith(EMA_PREFIX) for k in obj):
            raise WeightsError("the checkpoint's 'ema' entry holds no 'ema_model.*' weights", hint)
    elif isinstance(obj, Mapping) and "model" in obj and "step" in obj:
        raise WeightsError("the training checkpoint has no EMA weights ('ema'), which RDDM inference uses", hint)
    if not isinstance(obj, Mapping):
        raise WeightsError("the file does not hold an RDDM state dict", hint)
    if any(str(k).startswith(EMA_PREFIX) for k in obj):
        obj = {k[len(EMA_PREFIX) :]: v for k, v in obj.items() if str(k).startswith(EMA_PREFIX)}
    if any(str(k).startswith(MODEL_PREFIX) for k in obj):
        stray = [k for k in obj if not str(k).startswith(MODEL_PREFIX) and k not in SCHEDULE_BUFFERS]
        if stray:
            raise WeightsError(f"unexpected entry '{stray[0]}' beside the RDDM network weights", hint)
        obj = {k[len(MODEL_PREFIX) :]: v for k, v in obj.items() if str(k).startswith(MODEL_PREFIX)}
    if not _tensor_map(obj):
        raise WeightsError("the file does not hold an RDDM state dict of tensors", hint)
    if "ups_no_skip.0.0.mlp.1.weight" in obj or "final_conv_1.weight" in obj:
        raise WeightsError(
            "the checkpoint is a shared-encoder UnetRes (share_encoder=1), which restorecli does not run",
            "train with separate networks (share_encoder=0 or -1, num_unet=2 or 1)",
        )
    other = sorted(k for k in obj if not k.startswith(("unet0.", "unet1.")))
    if other:
        raise WeightsError(f"the file is not an RDDM UnetRes checkpoint (found key '{other[0]}')", hint)
    return dict(obj)


def component_state(comp: ComponentSpec, obj: Any) -> StateDict:
    """The exact state dict of one component: the whole UnetRes, or one Unet (by component name)."""
    if comp.kind == UNETRES_KIND:
        state = unetres_state(obj)
        want = int(comp.config.get("num_unet", 2))
        have = {k.split(".", 1)[0] for k in state}
        if have != {f"unet{i}" for i in range(want)}:
            raise WeightsError(
                f"the checkpoint holds {len(have)} UNet(s) ({', '.join(sorted(have))}) but model component "
                f"'{comp.name}' has {want}",
                "check the model (one-UNet pred_res models need num_unet = 1)",
            )
        return state
    if comp.kind == UNET_KIND:
        if _tensor_map(obj) and "init_conv.weight" in obj:
            return dict(obj)
        prefix = f"{comp.name}."
        state = {k[len(prefix) :]: v for k, v in unetres_state(obj).items() if k.startswith(prefix)}
        if not state:
            raise WeightsError(f"the checkpoint holds no '{comp.name}' network", "check the file and the model")
        return state
    raise UsageError(f"the rddm engine cannot load component kind '{comp.kind}'")
