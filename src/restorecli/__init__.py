"""restorecli: command-line image restoration with diffusion models.

The Python API (`restorecli.restore`, `restorecli.restore_images`, ...) is
imported on first use, so `import restorecli` stays cheap (no torch).
"""

from .version import __version__

_API = ("restore", "restore_images", "load_model", "FileBatchRestorer", "ImageBatchRestorer")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'restorecli' has no attribute {name!r}")
