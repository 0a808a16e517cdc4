"""Rewrite a bundle's metadata as strict JSON (tensors untouched), in place and atomically.

Bundles written before the training loop used `io.jsontext` carry bare `Infinity` in
their metrics (the held-out input PSNR of identity pairs), which jq and JSON.parse
reject. Usage: python scripts/strict_bundle_metadata.py BUNDLE [BUNDLE ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from restorecli.io import jsontext
from restorecli.io.files import atomic_target
from restorecli.weights.bundle import read_bundle_metadata
from restorecli.weights.filemode import follow_umask

PLAIN = ("format", "model", "method")  # plain strings, not JSON


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        meta = read_bundle_metadata(path)
        fixed = {k: v if k in PLAIN else jsontext.dumps(json.loads(v), sort_keys=True) for k, v in meta.items()}
        if fixed == meta:
            print(f"{path}: already strict")
            continue
        tensors = load_file(str(path))
        with atomic_target(path) as tmp:
            save_file(tensors, str(tmp), metadata=fixed)
            follow_umask(tmp)  # as write_bundle: the temporary file is private until renamed
        print(f"{path}: rewrote {sorted(k for k in meta if meta[k] != fixed[k])}")


if __name__ == "__main__":
    main(sys.argv[1:])
