"""What every engine provides, so the pipeline and CLI never special-case a method.

An engine is one method's inference (schedule, sampler, pre- and
post-processing) running the networks of one registered model. The pipeline
hands it batches of same-size images as float32 RGB in [0, 1] on the CPU and one
CPU `torch.Generator` per image (seeded with the user's seed), and gets back the
restored batch, also float32 RGB in [0, 1] on the CPU.

Per-image generators are what make the seed contract hold: CPU draws from a
generator seeded with S equal the draws the official code makes after
`torch.manual_seed(S)`, and an image's noise never depends on its batch
neighbours.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import UsageError, WeightsError
from ..memory import memory_budget
from ..weights.checkpoint import unwrap_state_dict
from ..weights.registry import ComponentSpec, ModelSpec
from .netcheck import check_declared_network

StateDict = dict[str, Tensor]
Trace = Callable[[str, Tensor], None]  # an observer of named intermediates (the conformance tests set one)


@dataclass(frozen=True)
class MemoryShare:
    """How much of the free memory one image's working set may take: a fraction of the free GPU
    memory, a fraction of the available RAM, and an optional cap in bytes on the CPU."""

    gpu: float = 0.8
    cpu: float = 0.6
    cpu_cap: int | None = None


class Engine(ABC):
    """A loaded model, ready to restore batches of images."""

    method: ClassVar[str]
    # Per loaded model (an engine may set them in __init__ or later, e.g. ResShift's face
    # model and RDDM with --resize are not tileable; the class value is the default):
    # whether the output at a pixel depends only on nearby input pixels, so the image can
    # be cut into tiles (False for e.g. fixed-size generation), and the smallest tile side
    # (input sides are padded by the engine itself).
    tileable: bool = True
    min_tile: int = 64
    # Whether `restore` needs a mask (inpainting and shadow models; set per loaded model).
    needs_mask: bool = False
    # Automatic tiling (see `auto_tile`): the tile sides tried, largest first, and the memory share.
    tile_sizes: ClassVar[tuple[int, ...]] = (1024, 768, 512, 384, 256, 128)
    memory_share: ClassVar[MemoryShare] = MemoryShare()

    def __init__(
        self,
        spec: ModelSpec,
        states: dict[str, StateDict],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self.configure()
        self.nets: dict[str, nn.Module] = {}
        for name, comp in spec.components.items():
            if name not in states:
                raise WeightsError(f"model '{spec.name}' needs weights for component '{name}'")
            # compare the declared network with the tensors before allocating it (engines.netcheck)
            check_declared_network(type(self).build_component, comp, states[name], f"{spec.name}:{name}")
            net = self.build_component(comp, device="cpu")
            load_strict(net, states[name], f"{spec.name}:{name}")
            net.eval().requires_grad_(False)
            self.nets[name] = net.to(self.device)
        self.prepare()

    def configure(self) -> None:  # noqa: B027 (a hook: engines override it where they need it)
        """Read the method's settings from `self.spec` before any weights load, so that a bad
        registry entry fails before minutes of loading (default: nothing to read)."""

    def prepare(self) -> None:  # noqa: B027 (a hook: engines override it where they need it)
        """Finish setting up once `self.nets` holds the loaded networks (default: nothing to do)."""

    # ---- construction -------------------------------------------------
    @classmethod
    @abstractmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        """Build the network of one component from its registry config (use device='meta' for key checks)."""

    @classmethod
    def canonicalize(cls, comp: ComponentSpec, obj: Any) -> StateDict:
        """Turn whatever an official file holds into the state dict `build_component` loads.

        The default handles plain state dicts and the common `state_dict` /
        `module.` / `_orig_mod.` wrappers; methods with training containers override it.
        """
        return unwrap_state_dict(obj)

    # ---- inference ----------------------------------------------------
    @property
    def scale(self) -> int:
        return self.spec.scale

    def autocast(self) -> AbstractContextManager[Any]:
        """Reduced-precision context for the network calls (no-op in fp32)."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.no_grad()
    def restore(
        self,
        images: Tensor,
        *,
        steps: int,
        generators: list[torch.Generator],
        masks: Tensor | None = None,
    ) -> Tensor:
        """Restore a batch.

        images: (B, 3, H, W) float32 RGB in [0, 1], CPU.
        masks: (B, 1, H, W) float32 in {0, 1}, 1 = area to fill (inpainting and shadow tasks only).
        Returns (B, 3, scale*H, scale*W) float32 in [0, 1], CPU.

        The checks every method makes come first, here once; the method's own work is `restore_batch`.
        """
        self.check_can_restore()
        check_batch(images, generators, masks, needs_mask=self.needs_mask)
        return self.restore_batch(images, steps, generators, masks)

    def check_can_restore(self) -> None:  # noqa: B027 (a hook: generation engines override it)
        """Raise UsageError where this model makes images rather than restoring them.

        Runs before the batch checks, so that a generation model is named as such whatever it is given.
        """

    def restore_batch(
        self, images: Tensor, steps: int, generators: list[torch.Generator], masks: Tensor | None
    ) -> Tensor:
        """The method's restoration of a batch that `restore` has checked (same arguments and result)."""
        raise NotImplementedError(f"the {self.method} engine restores no images")

    def whole_image(self, image: Tensor) -> AbstractContextManager[Any]:
        """Context for restoring `image` tile by tile: engines that make decisions about the whole
        image (e.g. one exposure for a photo) make them here once, so every tile shares them."""
        return nullcontext()

    # Pixels of overlap tiled runs need at least, so overlapping tiles agree (0: the run's default).
    min_overlap: ClassVar[int] = 0

    # ---- automatic tiling: one template, each engine declares its working set --------
    def estimate_bytes(self, height: int, width: int) -> int | None:
        """Peak working memory (bytes, beyond the weights) of one image of this size in input pixels.

        None (the default): no estimate, so automatic tiling keeps images whole. Engines whose
        memory grows quickly with image size return their measured model of it.
        """
        return None

    @property
    def tile_multiple(self) -> int:
        """Tile sides must be multiples of this (e.g. the engine's padding multiple)."""
        return 1

    def _memory_budget(self) -> int:
        """Bytes one image's working set may take on `self.device` now."""
        share = self.memory_share
        return memory_budget(self.device, gpu_fraction=share.gpu, cpu_fraction=share.cpu, cpu_cap=share.cpu_cap)

    def auto_tile(self, height: int, width: int) -> int:
        """Tile size (input pixels) to use when the user asked for automatic tiling; 0 = whole image.

        0 when the engine cannot be tiled, has no estimate, or the whole image fits the
        memory budget; otherwise `tile_for_budget`.
        """
        if not self.tileable:
            return 0
        whole = self.estimate_bytes(height, width)
        if whole is None:
            return 0
        budget = self._memory_budget()
        fastest = self.largest_efficient_tile()
        if whole <= budget and (fastest is None or max(height, width) <= fastest):
            return 0
        return self.tile_for_budget(height, width, budget, largest=fastest)

    def largest_efficient_tile(self) -> int | None:
        """The largest tile worth running for speed alone, or None (bigger is never slower).

        Engines whose cost per pixel grows with the tile (full attention over all
        positions) cap their tiles here even when memory would allow more.
        """
        return None

    def tile_for_budget(self, height: int, width: int, budget: int, largest: int | None = None) -> int:
        """The largest of `tile_sizes` below the image's longer side (and `largest`) whose tiles fit
        `budget`, else `min_tile`.

        A tile is cut to the image where the image is smaller, so a tile of side T costs
        `estimate_bytes(min(T, height), min(T, width))`.
        """
        side = max(height, width)
        for tile in self.tile_sizes:
            if tile >= side or tile % self.tile_multiple or (largest is not None and tile > largest):
                continue
            if (self.estimate_bytes(min(tile, height), min(tile, width)) or 0) <= budget:
                return max(tile, self.min_tile)
        return self.min_tile

    def generate(self, count: int, *, steps: int, generator: torch.Generator, batch_size: int = 0) -> Tensor:
        """Unconditional generation (generation models only): (count, 3, H, W) float32 [0, 1], CPU.

        All of the initial noise is drawn at once with `generator`, as the official
        sampler does for a batch of `count` after `torch.manual_seed(seed)`;
        `batch_size` (0 = all) only bounds how many run through the network at a time.
        """
        raise UsageError(f"model '{self.spec.name}' does not generate images", "use a generation model")


def load_strict(net: nn.Module, state: StateDict, what: str) -> None:
    """Load every parameter and buffer, consume every key; say exactly what does not fit."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
            )
        raise WeightsError(
            f"weights for {what} do not fit the network: " + ", ".join(parts),
            "check that the file belongs to this model (see 'restore models')",
        )
    net.load_state_dict(state, strict=True)


def check_batch(images: Tensor, generators: list[torch.Generator], masks: Tensor | None, *, needs_mask: bool) -> None:
    """What every `restore` checks first: the mask (needed, same size) and one generator per image."""
    check_masks(images, masks, needed=needs_mask)
    if len(generators) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(generators)} generators")


def check_masks(images: Tensor, masks: Tensor | None, needed: bool) -> None:
    if needed and masks is None:
        raise UsageError("this model needs a mask", "pass --mask MASK")
    if masks is not None and masks.shape[-2:] != images.shape[-2:]:
        raise UsageError(
            f"mask is {masks.shape[-1]}x{masks.shape[-2]} but the image is {images.shape[-1]}x{images.shape[-2]}",
            "give a mask of the same size as the image",
        )
