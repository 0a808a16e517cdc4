"""ResShift (and SinSR one-step) inference: residual shifting in a VQ-GAN latent space.

The chain starts at the latent of the low-quality image plus noise,
x_T = z_y + kappa * sqrt(eta_T) * eps, and each step replaces x_t by the
posterior mean between x_t and the network's x_0 estimate, plus noise except
at the last step. The final latent is snapped to the codebook and decoded.

Faithfulness details copied from the official code (zsyOAOA/ResShift, journal
branch; wyf0912/SinSR for one-step):
- the eta schedule is built in float64 and every coefficient is cast to
  float32 before it touches a tensor, as `_extract_into_tensor` does;
- fewer steps than trained use the official respacing: keep the timesteps
  int(T/K * k), rebuild the chain on their etas, and feed the network the
  original timestep numbers;
- random draws: one prior draw, then one per step from t=T-1 down to 0 (the
  t=0 draw is made and thrown away); SinSR makes only the prior draw. Each
  image draws from its own generator, so batching never changes a result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UsageError, WeightsError
from ...weights.checkpoint import unwrap_state_dict
from ...weights.registry import ComponentSpec, ModelSpec
from ..base import Engine, MemoryShare, StateDict, Trace
from ..common import pad_end, randn_per_image
from .schedule import Schedule, build_schedule, exponential_sqrt_etas, respaced_timesteps

UNET_KIND = "resshift.unet"
VQ_KIND = "resshift.vq"


class ResShiftEngine(Engine):
    """ResShift x4 SR (v1/v2/v3, bicubic), inpainting, face restoration, and SinSR one-step."""

    method = "resshift"
    tile_sizes = (1024, 768, 512, 384, 256, 192, 128, 64)
    memory_share = MemoryShare(gpu=0.7, cpu=0.6, cpu_cap=12 << 30)

    def configure(self) -> None:
        """The components and sampler settings; the chain of the noise levels it was trained on."""
        spec = self.spec
        self.unet_name = self._component_of_kind(spec, UNET_KIND)
        self.vq_name = self._component_of_kind(spec, VQ_KIND)
        s = spec.sampler
        unet_cfg = spec.components[self.unet_name].config
        self.kappa = float(s["kappa"])
        self.trained_steps = int(s["steps"])  # length of the diffusion chain the net was trained on
        self.one_step = bool(s.get("one_step", False))
        self.latent_scale = float(s.get("latent_scale", 1.0))
        self.pad_multiple = int(s.get("pad_multiple", unet_cfg.get("lq_size", 64)))
        self.needs_mask = bool(unet_cfg.get("cond_mask", False))
        self.mask_back = bool(s.get("mask_back", True))
        if s.get("schedule", "exponential") != "exponential":
            raise UsageError(f"model '{spec.name}': unknown ResShift schedule {s['schedule']!r}")
        self.sqrt_etas = exponential_sqrt_etas(
            self.trained_steps,
            float(s["min_noise_level"]),
            float(s.get("etas_end", 0.99)),
            self.kappa,
            float(s.get("power", 0.3)),
        )

    def prepare(self) -> None:
        """Tiling as the model allows it, and no observer of intermediates yet."""
        # Tiles are padded to the pad multiple anyway; aligned faces must stay whole.
        self.min_tile = self.pad_multiple
        self.tileable = self.spec.task != "face"
        # Optional observer of every intermediate (name, tensor); used by the conformance tests.
        self.trace: Trace | None = None

    # ---- construction ----------------------------------------------------
    @staticmethod
    def _component_of_kind(spec: ModelSpec, kind: str) -> str:
        names = [name for name, comp in spec.components.items() if comp.kind == kind]
        if len(names) != 1:
            raise UsageError(f"model '{spec.name}' needs exactly one component of kind '{kind}'")
        return names[0]

    @classmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        if comp.kind == UNET_KIND:
            from ...nets.resshift_unet import build_resshift_unet

            return build_resshift_unet(dict(comp.config), device=device)
        if comp.kind == VQ_KIND:
            from ...nets.vqgan import build_vq

            return build_vq(comp.config, device=device)
        raise UsageError(f"the resshift engine cannot build component kind '{comp.kind}'")

    @classmethod
    def canonicalize(cls, comp: ComponentSpec, obj: Any) -> StateDict:
        """Plain or wrapped state dicts (as the official loader accepts); refuse files of the other network."""
        state = unwrap_state_dict(obj)
        if comp.kind == VQ_KIND:
            marker, what = "quantize.embedding.weight", "a ResShift VQ autoencoder"
        else:
            marker, what = "input_blocks.0.0.weight", "a ResShift/SinSR UNet"
        if marker not in state:
            raise WeightsError(
                f"the file given for component '{comp.name}' is not {what} checkpoint (no '{marker}')",
                f"pass the official {comp.file or 'weights file'} for '{comp.name}'",
            )
        return state

    # ---- schedule ------------------------------------------------------------
    def schedule(self, steps: int) -> Schedule:
        """The chain for `steps` sampling steps (SinSR: the full chain, of which only t=T-1 runs)."""
        if self.one_step:
            if steps != 1:
                raise UsageError(f"model '{self.spec.name}' samples in exactly one step", "use --steps 1")
            keep = list(range(self.trained_steps))
        else:
            keep = respaced_timesteps(self.trained_steps, steps)
        return build_schedule(self.sqrt_etas, self.kappa, keep)

    # ---- inference -------------------------------------------------------------
    def _record(self, name: str, value: Tensor) -> None:
        if self.trace is not None:
            self.trace(name, value.detach().cpu())

    def _encode(self, y: Tensor) -> Tensor:
        """Padded low-quality image in [-1, 1] -> latent anchor z_y (bicubic upsampling first for SR)."""
        if self.scale != 1:
            y = F.interpolate(y, scale_factor=self.scale, mode="bicubic")
        with self.autocast():
            z = self.nets[self.vq_name].encode(y)
        return z.float() * self.latent_scale

    def _decode(self, z: Tensor) -> Tensor:
        ae = self.nets[self.vq_name]
        quantized, index = ae.quantize(z * (1 / self.latent_scale))
        self._record("quantized", quantized)
        self._record("code_indices", index)
        with self.autocast():
            out = ae.decode_quantized(quantized)
        out = out.float()
        self._record("decoder_out", out)
        return out

    def restore_batch(
        self, images: Tensor, steps: int, generators: list[torch.Generator], masks: Tensor | None
    ) -> Tensor:
        chain = self.schedule(steps)
        batch, _, height, width = images.shape
        lq01 = images.float()
        mask01 = None
        if self.needs_mask:
            mask01 = masks.float()
            lq01 = lq01 * (1 - mask01)  # the unknown area is black, as the official training data
        pad_h = -height % self.pad_multiple
        pad_w = -width % self.pad_multiple
        y = pad_end(lq01 * 2 - 1, pad_h, pad_w, "reflect").to(self.device)
        mask_pm = None
        if mask01 is not None:
            mask_pm = pad_end(mask01 * 2 - 1, pad_h, pad_w, "reflect").to(self.device)

        z_y = self._encode(y)
        self._record("z_y", z_y)
        latent_shape = tuple(z_y.shape[1:])
        draws = 0

        def draw() -> Tensor:
            nonlocal draws
            noise = randn_per_image(latent_shape, generators, self.device)
            self._record(f"noise_{draws}", noise)
            draws += 1
            return noise

        unet = self.nets[self.unet_name]
        x = z_y + chain.prior_scale().to(self.device) * draw()
        order = [chain.length - 1] if self.one_step else list(reversed(range(chain.length)))
        for call, i in enumerate(order):
            net_in = x / chain.input_divisor(i).to(self.device)
            t = torch.full((batch,), chain.timesteps[i], dtype=torch.long, device=self.device)
            self._record(f"unet_in_{call}", net_in)
            self._record(f"unet_t_{call}", t)
            with self.autocast():
                x0 = unet(net_in, t, lq=y, mask=mask_pm)
            x0 = x0.float()
            self._record(f"x0_pred_{call}", x0)
            if self.one_step:
                x = x0
                break
            noise = draw()  # made at t=0 too, and discarded, to keep the official draw order
            mean = chain.coef_xt(i).to(self.device) * x + chain.coef_x0(i).to(self.device) * x0
            x = mean + chain.noise_std(i).to(self.device) * noise if i > 0 else mean

        out = self._decode(x)
        out = out[:, :, : height * self.scale, : width * self.scale].clamp(-1.0, 1.0) * 0.5 + 0.5
        if mask01 is not None and self.mask_back:
            m = mask01.to(self.device)
            known = y[:, :, :height, :width] * 0.5 + 0.5
            out = out * m + known * (1 - m)
        return out.float().cpu()

    # ---- memory ----------------------------------------------------------------------
    def estimate_bytes(self, height: int, width: int) -> int:
        """Rough peak working memory of one image (input pixels), dominated by the decoder's top level."""
        ph = height + (-height % self.pad_multiple)
        pw = width + (-width % self.pad_multiple)
        out_px = ph * pw * self.scale * self.scale
        ae_cfg = self.spec.components[self.vq_name].config
        dd = ae_cfg["ddconfig"]
        top = int(dd["ch"]) * int(dd["ch_mult"][0])
        down = 2 ** (len(dd["ch_mult"]) - 1)
        unet_ch = int(self.spec.components[self.unet_name].config.get("model_channels", 160))
        elem = 4 if self.dtype == torch.float32 else 2
        # Measured on CPU (fp32, full-size networks): the autoencoder peaks at ~8
        # full-resolution maps of its top width (conv workspace included), the UNet at
        # ~42-58 latent-size maps of its base width (skips and deeper levels included).
        return int(out_px * elem * (9 * top + 48 * unet_ch / (down * down)))

    @property
    def tile_multiple(self) -> int:
        return self.pad_multiple
