"""Run an engine on decoded images: batching, tiling, per-image seeds and out-of-memory retries.

Shared by the file pipeline and the in-memory API so both give identical
results. Every image gets a fresh `torch.Generator` seeded with the user's
seed, so its result does not depend on which images share its batch or on the
order they come in. When the device runs out of memory, a batch is split into
single images, and a single image is retried with tiles half as big each time
(down to the engine's `min_tile`) before it is given up; the tile size that
worked is remembered for later images of the same size.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
from torch import Tensor

from ..engines.base import Engine
from ..errors import DeviceError, ImageFailed, RestoreError, WeightsError
from .finite import guard as guard_finite

Note = Callable[[str], None]


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def smaller_tile(tile: int, height: int, width: int, min_tile: int) -> int | None:
    """Half the current tile (the whole image counts as a tile of its longer side); None below min_tile."""
    side = max(height, width)
    current = side if tile <= 0 or tile >= side else tile
    nxt = current // 2
    return nxt if nxt >= max(min_tile, 1) else None


class Restorer:
    """One engine plus the job's sampling options; `run` restores a group of same-size images."""

    def __init__(
        self,
        engine: Engine,
        *,
        steps: int,
        seed: int = 0,
        tile: int | None = 0,
        overlap: int = 32,
        note: Note | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine, self.steps, self.seed, self.tile, self.overlap = engine, steps, seed, tile, overlap
        self.note = note or (lambda text: None)
        self.on_tile = on_tile
        self.known_tile: dict[tuple[int, int], int] = {}

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def tile_for(self, height: int, width: int) -> int:
        """Tile size in input pixels that a run really uses for an image of this size; 0 = whole image.

        A requested tile below the engine's minimum is raised to it here, so what
        `-v` reports is what runs.
        """
        from .tiling import effective_tile

        if not self.engine.tileable:
            return 0
        if (height, width) in self.known_tile:
            return self.known_tile[(height, width)]
        tile = self.engine.auto_tile(height, width) if self.tile is None else self.tile
        tile = effective_tile(self.engine, tile)
        return tile if tile and (height > tile or width > tile) else 0

    def run(self, images: list[Tensor], masks: list[Tensor | None]) -> list[Tensor | ImageFailed]:
        """images: (1, 3, H, W) each, all the same size; returns (1, 3, H', W') or the reason it failed."""
        return [
            guard_finite(r) for r in self._run(images, masks)
        ]  # NaN/Inf (damaged weights) fails the image, writes nothing

    def _run(self, images: list[Tensor], masks: list[Tensor | None]) -> list[Tensor | ImageFailed]:
        height, width = images[0].shape[-2:]
        tile = self.tile_for(height, width)
        if len(images) > 1 and tile == 0:
            try:
                batch = torch.cat(images)
                mask = None if masks[0] is None else torch.cat(masks)  # type: ignore[arg-type]
                gens = [self.generator() for _ in images]
                out = self.engine.restore(batch, steps=self.steps, generators=gens, masks=mask)
                return [out[i : i + 1] for i in range(len(images))]
            except (WeightsError, DeviceError):
                raise
            except Exception as exc:  # out of memory, or one bad image: isolate by running them one by one
                if is_out_of_memory(exc):
                    self.note(f"out of memory on a batch of {len(images)}; running them one at a time")
                free_memory(self.engine.device)
        return [self.one(x, m, tile) for x, m in zip(images, masks)]

    def one(self, image: Tensor, mask: Tensor | None, tile: int) -> Tensor | ImageFailed:
        height, width = image.shape[-2:]
        while True:
            try:
                if tile > 0:
                    from .tiling import restore_tiled

                    return restore_tiled(
                        self.engine,
                        image,
                        mask,
                        steps=self.steps,
                        generator=self.generator(),
                        tile=tile,
                        overlap=self.overlap,
                        on_tile=self.on_tile,
                    )
                return self.engine.restore(image, steps=self.steps, generators=[self.generator()], masks=mask)
            except (WeightsError, DeviceError):
                raise
            except Exception as exc:
                if not is_out_of_memory(exc):
                    return ImageFailed(_reason(exc))
                free_memory(self.engine.device)
                nxt = smaller_tile(tile, height, width, self.engine.min_tile) if self.engine.tileable else None
                if nxt is None:
                    where = f" even with {tile}-pixel tiles" if tile else ""
                    hint = "" if self.engine.tileable else " (this model cannot be tiled)"
                    return ImageFailed(f"out of memory{where}{hint}")
                self.note(
                    f"out of memory at {width}x{height} with tile {tile or 'whole image'}; retrying with {nxt}-pixel tiles"
                )
                tile = nxt
                self.known_tile[(height, width)] = nxt


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RestoreError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
