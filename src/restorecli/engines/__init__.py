"""Engines, one package per method (`schedule` + `engine`), looked up by the registry's `method` field.

`base` holds the `Engine` contract every method implements (and the automatic
tile choice they share), `common` the padding and per-image noise draws. Which
class runs a method is data: the `engine` field of its `[methods.NAME]` table in
weights.toml (or an overlay), so a new method is its engine package and a
registry entry.
"""

from __future__ import annotations

import importlib

from ..errors import UsageError
from ..weights.registry import load_registry
from .base import Engine

# Engines registered by Python code (a test's fake, a plugin) for the life of the process;
# they take precedence over the registry's `[methods]` tables.
ENGINES: dict[str, str] = {}


def engine_class(method: str, target: str = "") -> type[Engine]:
    """The engine class of `method`: `target` ("module:Class", from a model spec), else the registry's."""
    methods = load_registry().methods
    target = ENGINES.get(method) or target or (methods[method].engine if method in methods else "")
    if not target:
        known = sorted({*ENGINES, *(m for m, spec in methods.items() if spec.engine)})
        raise UsageError(f"no engine for method '{method}'", f"known methods: {', '.join(known)}")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
