"""Engines, one module per method, looked up by the registry's `method` field."""

from __future__ import annotations

import importlib

from ..errors import UsageError
from .base import Engine

# method name -> "module:Class"; modules are imported only when a model of that method runs.
ENGINES: dict[str, str] = {
    "resshift": "restorecli.engines.resshift:ResShiftEngine",
    "diffir": "restorecli.engines.diffir:DiffIREngine",
    "rddm": "restorecli.engines.rddm:RDDMEngine",
    "ddo": "restorecli.engines.ddo:DDOEngine",
}


def engine_class(method: str) -> type[Engine]:
    try:
        target = ENGINES[method]
    except KeyError:
        raise UsageError(f"no engine for method '{method}'", f"known methods: {', '.join(ENGINES)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
