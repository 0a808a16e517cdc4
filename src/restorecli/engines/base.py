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
from contextlib import nullcontext
from typing import Any, ClassVar, ContextManager

import torch
from torch import Tensor, nn

from ..errors import UsageError, WeightsError
from ..netcheck import check_declared_network
from ..registry import ComponentSpec, ModelSpec

StateDict = dict[str, Tensor]


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator, device: torch.device) -> Tensor:
    """A float32 standard-normal draw made on the CPU (so values match the official CPU draws), then moved."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)


class Engine(ABC):
    """A loaded model, ready to restore batches of images."""

    method: ClassVar[str]
    # Whether the output at a pixel depends only on nearby input pixels, so the
    # image can be cut into tiles (False for e.g. fixed-size generation).
    tileable: ClassVar[bool] = True
    # Input sides are padded by the engine itself; tiles should be at least this big.
    min_tile: ClassVar[int] = 64

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
        self.nets: dict[str, nn.Module] = {}
        for name, comp in spec.components.items():
            if name not in states:
                raise WeightsError(f"model '{spec.name}' needs weights for component '{name}'")
            # issue #13: compare the declared network with the tensors before allocating it (restorecli.netcheck)
            check_declared_network(type(self).build_component, comp, states[name], f"{spec.name}:{name}")
            net = self.build_component(comp, device="cpu")
            load_strict(net, states[name], f"{spec.name}:{name}")
            net.eval().requires_grad_(False)
            self.nets[name] = net.to(self.device)

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
        from ..weights import unwrap_state_dict

        return unwrap_state_dict(obj)

    # ---- inference ----------------------------------------------------
    @property
    def scale(self) -> int:
        return self.spec.scale

    def autocast(self) -> ContextManager[Any]:
        """Reduced-precision context for the network calls (no-op in fp32)."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @abstractmethod
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
        """

    def auto_tile(self, height: int, width: int) -> int:
        """Tile size (input pixels) to use when the user asked for automatic tiling; 0 = whole image.

        Engines whose memory grows quickly with image size override this, using
        the free memory of `self.device`.
        """
        return 0

    def generate(
        self, count: int, *, steps: int, generator: torch.Generator, batch_size: int = 0
    ) -> Tensor:
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
                f"{len(wrong)} of the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)})"
            )
        raise WeightsError(
            f"weights for {what} do not fit the network: " + ", ".join(parts),
            "check that the file belongs to this model (see 'restore models')",
        )
    net.load_state_dict(state, strict=True)


def check_masks(images: Tensor, masks: Tensor | None, needed: bool) -> None:
    if needed and masks is None:
        raise UsageError("this model needs a mask", "pass --mask MASK")
    if masks is not None and masks.shape[-2:] != images.shape[-2:]:
        raise UsageError(
            f"mask is {masks.shape[-1]}x{masks.shape[-2]} but the image is "
            f"{images.shape[-1]}x{images.shape[-2]}",
            "give a mask of the same size as the image",
        )
