"""Engines, one package per method (`schedule` + `engine`), looked up by the registry's `method` field.

`base` holds the `Engine` contract every method implements (and the automatic
tile choice they share), `common` the padding and per-image noise draws.
"""

from __future__ import annotations

import importlib

from ..errors import UsageError
from .base import Engine

# method name -> "module:Class"; modules are imported only when a model of that method runs.
ENGINES: dict[str, str] = {
    "resshift": "restorecli.engines.resshift.engine:ResShiftEngine",
    "diffir": "restorecli.engines.diffir.engine:DiffIREngine",
    "rddm": "restorecli.engines.rddm.engine:RDDMEngine",
    "ddo": "restorecli.engines.ddo.engine:DDOEngine",
}


def engine_class(method: str) -> type[Engine]:
    try:
        target = ENGINES[method]
    except KeyError:
        raise UsageError(f"no engine for method '{method}'", f"known methods: {', '.join(ENGINES)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
