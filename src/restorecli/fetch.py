"""Where cached weights live and how a model's bundle is found (downloading comes with the weights issue)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsUnavailable
from .registry import ModelSpec

CACHE_ENV = "RESTORECLI_CACHE"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "restorecli"


def bundle_path(spec: ModelSpec) -> Path:
    return cache_dir() / "bundles" / f"{spec.name}.safetensors"


def resolve_cached(spec: ModelSpec) -> Path:
    path = bundle_path(spec)
    if path.is_file():
        return path
    files = ", ".join(f"{c}={comp.file}" for c, comp in spec.components.items())
    raise WeightsUnavailable(
        f"weights for model '{spec.name}' are not cached ({files})",
        f"download them and run 'restore convert {spec.name} "
        + " ".join(f"{c}=PATH" for c in spec.components)
        + " -o OUT.safetensors', then pass --weights OUT.safetensors",
    )


def ensure_bundle(spec: ModelSpec, *, offline: bool = False, cache_dir: Path | None = None, console=None) -> Path:
    """Placeholder until downloads land: the cached bundle or a clear error."""
    return resolve_cached(spec)
