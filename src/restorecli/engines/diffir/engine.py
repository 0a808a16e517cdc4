"""DiffIR inference: a 4-step diffusion in a 256-d prior space, then one DIRformer pass.

Per image: prepare the network input (pad; SR x2/x1 pixel-unshuffle; inpainting
stacks the masked image and the mask), draw the chain's start state (one
randn(1, 256), made BEFORE the CPEN runs), let the CPEN condense the input into
c, run the reverse chain t = 3, 2, 1, 0 (denoiser -> x0 estimate; state <-
coef1[t] * x0 + coef2[t] * state; one more randn(1, 256) per step is drawn and
thrown away, as the official sampler does), and hand the final state (the IPR)
to the DIRformer. The task's residual rule, the crop and the clamp finish it.

The random stream per image is therefore exactly the official one after
`torch.manual_seed(seed)`: five draws of shape (1, 256), the first being the
start state. Only that first draw changes the result; the others keep later
images of a shared stream aligned with the official order.

Official quirks kept: BiasFree LayerNorm without mean subtraction, truncated
FFN width, the denoiser's final LeakyReLU, float32 schedule buffers taken from
the checkpoint itself, reflect (SR) versus numpy-symmetric (inpainting)
padding, and the inpainting writer's truncation to 8 bits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UsageError, WeightsError
from ...memory import cuda_free_bytes, keep_freed_memory
from ...nets.diffir import KINDS, SCHEDULE_BUFFERS, DiffIRS2, build_diffir, input_unshuffle
from ...weights.registry import ComponentSpec
from ..base import Engine, MemoryShare, StateDict, Trace
from ..common import pad_end, randn_per_image
from .schedule import chain_timesteps, respaced_schedule, trained_schedule

IPR_SHAPE = (256,)  # one image's prior draw
S2_GROUPS = ("G.", "condition.", "denoise.", "diffusion.")
ALIASES = {"diffusion.model.": "denoise.", "diffusion.condition.": "condition."}
LIGHTNING_PREFIX = "generator."
SCHEDULE_RTOL = 1e-6

# ---- checkpoint layouts ------------------------------------------------------------------


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _select_state(obj: Any, what: str) -> dict[str, Tensor]:
    """The S2 state dict inside one of the accepted containers, or a one-line WeightsError."""
    hint = f"pass the official DiffIR stage-2 file for '{what}' (see 'restore models')"
    if isinstance(obj, Mapping) and ("params_ema" in obj or "params" in obj):
        # BasicSR: inference uses the EMA weights; BasicSR falls back to 'params' when there are none.
        state = obj["params_ema"] if "params_ema" in obj else obj["params"]
        if not _is_tensor_dict(state):
            raise WeightsError("the BasicSR checkpoint's 'params_ema' is not a state dict of tensors", hint)
        return dict(state)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        # PyTorch Lightning (inpainting): the S2 generator under exactly 'generator.'; 'generatorS1.'
        # (the stage-1 teacher), discriminators and losses are ignored.
        inner = obj["state_dict"]
        state = {k[len(LIGHTNING_PREFIX) :]: v for k, v in inner.items() if k.startswith(LIGHTNING_PREFIX)}
        if not state:
            raise WeightsError("the Lightning checkpoint holds no 'generator.*' (stage-2 generator) weights", hint)
        if not all(isinstance(v, Tensor) for v in state.values()):
            raise WeightsError("the Lightning checkpoint's 'generator.*' entries are not all tensors", hint)
        return state
    if _is_tensor_dict(obj):
        return dict(obj)  # the bare S2 state dict (e.g. params_ema saved alone, or converted to safetensors)
    raise WeightsError(
        "not a DiffIR checkpoint: expected a BasicSR {'params', 'params_ema'} dict, a Lightning "
        "{'state_dict': {'generator.*'}} checkpoint or an S2 state dict",
        hint,
    )


def canonical_state(obj: Any, config: Mapping[str, Any], what: str = "DiffIR") -> StateDict:
    """Official container -> the S2 keys the network loads: G.*, condition.*, denoise.*, 12 diffusion buffers.

    The duplicated `diffusion.model.*` / `diffusion.condition.*` copies must
    equal their twins and are dropped; the schedule buffers are kept (they are
    what the official sampler multiplies with) after checking they are the
    config's schedule.
    """
    state = _select_state(obj, what)
    hint = f"pass the official DiffIR stage-2 file for '{what}'"
    if any(k.startswith("E.") for k in state) and not any(k.startswith("condition.") for k in state):
        raise WeightsError("this is a DiffIR stage-1 (teacher, 'E.*' keys) checkpoint, not the stage-2 network", hint)
    stray = sorted(k for k in state if not k.startswith(S2_GROUPS))
    if stray:
        raise WeightsError(f"not a DiffIR stage-2 state dict (unexpected key '{stray[0]}')", hint)
    out: StateDict = {}
    for key, value in state.items():
        alias = next((a for a in ALIASES if key.startswith(a)), None)
        if alias is None:
            out[key] = value
            continue
        twin = ALIASES[alias] + key[len(alias) :]
        if twin not in state:
            raise WeightsError(f"checkpoint has '{key}' but not its twin '{twin}'", hint)
        if not _same(state[twin], value):
            raise WeightsError(f"the checkpoint's two copies '{key}' and '{twin}' differ", "the file is damaged")
    _check_schedule(out, config, hint)
    return out


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shapes and values (meta tensors, used for full-size layout checks, have no values to compare)."""
    if a.shape != b.shape:
        return False
    return a.is_meta or b.is_meta or torch.equal(a, b)


def _check_schedule(state: StateDict, config: Mapping[str, Any], hint: str) -> None:
    """The file's schedule buffers must be the config's linear schedule (they are all the sampler uses)."""
    expect = trained_schedule(dict(config))
    for name in SCHEDULE_BUFFERS:
        key = f"diffusion.{name}"
        if key not in state:
            raise WeightsError(f"checkpoint lacks the schedule buffer '{key}'", hint)
        want = expect[name]
        if tuple(state[key].shape) != want.shape:
            raise WeightsError(
                f"checkpoint schedule buffer '{key}' has shape {tuple(state[key].shape)}, the registry "
                f"config's {want.shape[0]}-step schedule needs {want.shape}",
                "fix 'timesteps' in the registry entry or pass the right file",
            )
        if state[key].is_meta:
            continue
        have = state[key].detach().double().cpu().numpy()
        if not np.allclose(have, want.astype(np.float32), rtol=SCHEDULE_RTOL, atol=1e-7):
            raise WeightsError(
                f"checkpoint schedule buffer '{key}' is not the linear schedule of the registry config "
                f"(linear_start={config.get('linear_start')}, linear_end={config.get('linear_end')})",
                "fix the registry entry's schedule or pass the right file",
            )


# ---- engine --------------------------------------------------------------------------------


class DiffIREngine(Engine):
    """DiffIR stage-2 models: real-world / GAN SR (x4, x2, x1), motion deblurring, inpainting."""

    method = "diffir"
    tile_sizes = (2048, 1536, 1280, 1024, 768, 512, 384, 256, 128)
    memory_share = MemoryShare(gpu=0.8, cpu=0.6)

    def prepare(self) -> None:
        """Read the network's task and the sampler's padding and rounding, then size the attention chunks."""
        spec = self.spec
        if len(spec.components) != 1:
            raise UsageError(f"model '{spec.name}': a DiffIR model has exactly one component")
        self.comp_name, comp = next(iter(spec.components.items()))
        self.kind = comp.kind
        self.config = dict(comp.config)
        self.task = self.kind.split(".", 1)[1]
        self.needs_mask = self.task == "inpaint"
        self.unshuffle = input_unshuffle(self.kind, self.config)
        if self.task == "sr" and int(self.config.get("scale", 4)) != spec.scale:
            raise UsageError(
                f"registry: model '{spec.name}' has scale {spec.scale} but its network config scale "
                f"{self.config.get('scale', 4)}"
            )
        s = spec.sampler
        self.pad_multiple = int(s.get("pad_multiple", 8 * self.unshuffle))
        self.pad_mode = str(s.get("pad_mode", "symmetric" if self.task == "inpaint" else "reflect"))
        self.rounding = str(s.get("output_rounding", "floor" if self.task == "inpaint" else "round"))
        if self.rounding not in ("round", "floor"):
            raise UsageError(f"registry: model '{spec.name}' output_rounding must be 'round' or 'floor'")
        self.min_tile = max(64, self.pad_multiple)
        self.trace: Trace | None = None  # observer of intermediates (name, tensor); used by tests
        self.net.G.set_chunk_bytes(self._chunk_bytes())
        if self.device.type == "cpu" and os.environ.get("RESTORECLI_MALLOC_TUNING", "0") == "1":
            keep_freed_memory()  # opt-in: faster on CPU, but peak memory grows by ~70% (see docs)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        if comp.kind not in KINDS:
            raise UsageError(f"the diffir engine cannot build component kind '{comp.kind}'")
        net = build_diffir(comp.kind, dict(comp.config), device=device)
        net.diffusion.set_values(trained_schedule(dict(comp.config)))
        return net

    @classmethod
    def canonicalize(cls, comp: ComponentSpec, obj: Any) -> StateDict:
        return canonical_state(obj, comp.config, comp.file or comp.name)

    @property
    def net(self) -> DiffIRS2:
        return self.nets[self.comp_name]  # type: ignore[return-value]

    # ---- the prior chain -------------------------------------------------------------------
    def chain(self, steps: int) -> tuple[list[int], Tensor, Tensor]:
        """(timesteps fed to the denoiser, coef1, coef2) per chain index; the file's buffers when not respaced."""
        trained = self.net.diffusion.timesteps
        keep = chain_timesteps(trained, steps)
        if len(keep) == trained:
            buffers = self.net.diffusion
            return keep, buffers.posterior_mean_coef1.float(), buffers.posterior_mean_coef2.float()
        arrays = respaced_schedule(self.config, keep)
        coef1 = torch.tensor(arrays["posterior_mean_coef1"], dtype=torch.float32, device=self.device)
        coef2 = torch.tensor(arrays["posterior_mean_coef2"], dtype=torch.float32, device=self.device)
        return keep, coef1, coef2

    def _record(self, name: str, value: Tensor) -> None:
        if self.trace is not None:
            self.trace(name, value.detach().float().cpu().clone())

    def _draw(self, generators: list[torch.Generator]) -> Tensor:
        return randn_per_image(IPR_SHAPE, generators, self.device)

    def prior(self, net_in: Tensor, steps: int, generators: list[torch.Generator]) -> Tensor:
        """The IPR (B, 256): start draw, CPEN, reverse chain with one discarded draw per step."""
        keep, coef1, coef2 = self.chain(steps)
        state = self._draw(generators)
        self._record("noise_0", state)
        with self.autocast():
            c = self.net.condition(net_in)
        c = c.float()
        self._record("cpen_c", c)
        self._record("state_0", state)
        for n, i in enumerate(reversed(range(len(keep)))):
            t = torch.full((state.shape[0],), keep[i], dtype=torch.long, device=self.device)
            x0 = self.net.denoise(state, t, c).float()
            self._record(f"x0_pred_{n}", x0)
            discarded = self._draw(generators)  # made and thrown away, as the official p_sample does
            self._record(f"noise_{n + 1}", discarded)
            state = coef1[i] * x0 + coef2[i] * state
            self._record(f"state_{n + 1}", state)
        self._record("ipr", state)
        return state

    # ---- inference ---------------------------------------------------------------------------
    def _prepare(self, images: Tensor, masks: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """(network input, padded image, padded binary mask) on the device."""
        _, _, h, w = images.shape
        pad_h, pad_w = -h % self.pad_multiple, -w % self.pad_multiple
        image = pad_end(images.float().to(self.device), pad_h, pad_w, self.pad_mode)
        if self.task == "inpaint":
            assert masks is not None
            mask = pad_end(masks.float().to(self.device), pad_h, pad_w, self.pad_mode)
            mask = (mask > 0).float()  # LaMa binarises the mask (read as grey / 255) by > 0
            return torch.cat([image * (1 - mask), mask], dim=1), image, mask
        net_in = F.pixel_unshuffle(image, self.unshuffle) if self.unshuffle > 1 else image
        return net_in, image, None

    def restore_batch(
        self, images: Tensor, steps: int, generators: list[torch.Generator], masks: Tensor | None
    ) -> Tensor:
        _, _, h, w = images.shape
        net_in, image, mask = self._prepare(images, masks)
        self._record("net_input", net_in)
        ipr = self.prior(net_in, steps, generators)
        with self.autocast():
            head = self.net.G(net_in, ipr)
        head = head.float()
        del net_in
        self._record("g_head", head)
        if self.task == "sr":
            base = image if self.scale == 1 else F.interpolate(image, scale_factor=self.scale, mode="nearest")
            out = head.add_(base)
        elif self.task == "deblur":
            out = head.add_(image)
        else:
            assert mask is not None
            out = mask * head + (1 - mask) * image
        self._record("out_raw", out)
        out = out[:, :, : h * self.scale, : w * self.scale].clamp(0.0, 1.0)
        if self.rounding == "floor":
            # The official inpainting writer truncates x*255 to uint8; returning those levels makes a
            # rounding 8-bit writer store exactly the official values.
            out = torch.floor(out * 255.0) / 255.0
        return out.float().cpu()

    # ---- memory -------------------------------------------------------------------------------
    def _chunk_bytes(self) -> int:
        """Largest temporary a transformer block makes before computing in pieces (see nets.dirformer)."""
        if self.device.type == "cuda":
            free = cuda_free_bytes(self.device)
            return int(min(max(free // 32, 64 << 20), 1 << 30))
        return 256 << 20

    # Peak working memory inside one full-resolution transformer block, in feature maps of the
    # widest stage (2*dim channels at the network input size). Accounting of the chunked path:
    # stream + normalised input + q + k (+ v / out) ~ 5 maps; measured 6.2 with the chunk
    # temporaries on a 1920x1080 deblur (CPU fp32: 4.56 GiB beyond the weights, maps of
    # 0.74 GiB) and 1280x720 (2.0 GiB); 7 leaves room for allocator slack.
    LEVEL1_MAPS = 7.0

    def estimate_bytes(self, height: int, width: int) -> int:
        """Peak working memory (bytes, beyond the weights) of one image of this size in input pixels."""
        ph = height + (-height % self.pad_multiple)
        pw = width + (-width % self.pad_multiple)
        pixels = ph * pw // (self.unshuffle * self.unshuffle)
        elem = 4 if self.dtype == torch.float32 else 2
        level1 = pixels * 2 * int(self.config.get("dim", 48)) * elem
        work = self.LEVEL1_MAPS * level1
        if self.task == "sr":
            # the tail runs in bands; alive: the stream, the float32 output, the upsampled residual, the clamp
            work = max(work, level1 + 3 * (3 * 16 * pixels * 4))
        return int(work + 2 * self._chunk_bytes())
