"""Where bundles live, and the keys that name them.

The cache folder is --cache-dir, else $RESTORECLI_CACHE, else the user cache
directory; bundles are `bundles/NAME-KEY.safetensors`, where KEY hashes
everything that decides the bundle's content (architecture config, file,
sha256 or else sources), so an edited registry entry never serves a stale
bundle. Downloads being assembled wait in `downloads/COMPONENT-KEY/`. The
models shipped inside the package are found here too (`packaged_bundle`).
Nothing here touches the network or imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .safepaths import inside
from .sources import source_kind
from .specs import ComponentSpec, ModelSpec

CACHE_ENV = "RESTORECLI_CACHE"
OFFLINE_ENVS = ("RESTORECLI_OFFLINE", "HF_HUB_OFFLINE")
KEY_VERSION = 1  # bump when the bundle layout or the conversion changes, to rebuild every cached bundle


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: --cache-dir, else $RESTORECLI_CACHE, else the user cache directory."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(local) / "restorecli" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restorecli"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def offline_reason(offline: bool = False) -> str | None:
    """Why no network may be used (the flag or an environment variable), or None."""
    if offline:
        return "--offline"
    for var in OFFLINE_ENVS:
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    return None


def component_key(comp: ComponentSpec) -> str:
    """Hash of what decides a component's converted tensors.

    A pinned sha256 fixes the file, so mirrors can change without a rebuild;
    without one, the sources (and size) are what identify it.
    """
    ident: dict[str, Any] = {
        "v": KEY_VERSION,
        "kind": comp.kind,
        "config": comp.config,
        "container": comp.container,
        "file": comp.file,
    }
    if comp.sha256:
        ident["sha256"] = comp.sha256.lower()
    else:
        ident["size"] = comp.size
        ident["sources"] = [{k: v for k, v in asdict(s).items() if k != "note" and v is not None} for s in comp.sources]
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_key(spec: ModelSpec) -> str:
    blob = json.dumps(
        {
            "v": KEY_VERSION,
            "method": spec.method,
            "components": {n: component_key(c) for n, c in spec.components.items()},
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def bundle_path(spec: ModelSpec, cache_dir: Path | str | None = None) -> Path:
    return cache_root(cache_dir) / "bundles" / f"{spec.name}-{cache_key(spec)}.safetensors"


def is_cached(spec: ModelSpec, cache_dir: Path | str | None = None) -> bool:
    return bundle_path(spec, cache_dir).is_file()


def staged_path(root: Path, comp: ComponentSpec, name: str) -> Path:
    # issue #13: the registry's file name may never lead outside CACHE/downloads/KEY/ (weights.safepaths)
    return inside(root / "downloads" / component_key(comp), comp.file or f"{name}.bin")


def packaged_bundle(spec: ModelSpec) -> Path | None:
    """The bundle of a project-trained model shipped inside the package (every component's
    `kind = "bundled"` source names the same file), or None."""
    paths = set()
    for comp in spec.components.values():
        src = next((s for s in comp.sources if source_kind(s).packaged), None)
        if src is None or not src.path:
            return None
        paths.add(src.path)
    if len(paths) != 1:
        return None
    path = Path(__file__).resolve().parent.parent / paths.pop()  # relative to the restorecli folder
    return path if path.is_file() else None
