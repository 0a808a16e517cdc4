"""RDDM inference: restoration with one or two UNets, and the released unconditional generator.

Restoration (condition = true): the degraded image I_in in [-1, 1] is the
state at t = T-1 after adding sqrt(sum_scale) * noise (the only random draw,
one per image, from that image's generator). Each step the networks see the
state concatenated with I_in (and, for shadow removal, the mask): unet0
predicts the residual I_in - I_0, unet1 the noise. The DDIM-style update then
removes part of both; the last step returns the clipped clean estimate.

Generation (condition = false, the released CelebA 64 model): the state starts
as pure noise, the UNets get the scaled times abar_t*T and bbar_t*T, and the
two-loop "partially path-independent" sampler first removes the residual
(i.e. the image content is decided), then the noise.

Images run at their own size, zero-padded at the bottom and right to what the
network needs and cropped back. `engine.resize = 256` reproduces the paper's
protocol instead: zero-pad to at least 256 and a multiple of 8, PIL-bicubic
resize to 256x256 (aspect not kept), and return the 256x256 result.

See schedule.py for the schedules and the sampler arithmetic, and
docs/engines/rddm.md for the registry entries and checkpoint layouts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...nets.direct import DirectNet
from ...nets.lightnet import build_lightnet
from ...nets.rainnet import build_rainnet
from ...nets.rddm_unet import RDDMUnet, RDDMUnetRes, build_unet, build_unetres
from ...weights.registry import ComponentSpec, ModelSpec
from ..base import Engine, MemoryShare, StateDict
from ..common import pad_end, padded_size, randn, randn_per_image
from .checkpoints import UNET_KIND, UNETRES_KIND, component_state
from .paper_resize import paper_resize
from .schedule import (
    OBJECTIVES,
    TWO_HEAD_OBJECTIVES,
    NoiseFn,
    OnStep,
    Predict,
    Prediction,
    Schedule,
    gated_prediction,
    interpret,
    make_schedule,
    sample,
)

LIGHTNET_KIND = "rddm.lightnet"  # the one-pass global/local low-light enhancer (objective "direct")
RAINNET_KIND = "rddm.rainnet"  # the one-pass progressive deraining network (objective "direct")
KINDS = (UNETRES_KIND, UNET_KIND, LIGHTNET_KIND, RAINNET_KIND)
DIRECT = "direct"  # objective of a one-pass network (lightnet, rainnet): no diffusion, no noise drawn


# ---- sampler configuration ---------------------------------------------------------------


@dataclass(frozen=True)
class RDDMConfig:
    """The `[models.X.sampler]` table of an RDDM model, with the official defaults."""

    objective: str
    condition: bool
    input_condition: bool
    input_condition_mask: bool
    sum_scale: float
    timesteps: int
    schedule: dict[str, Any]
    time_input: str  # "int": t to every UNet; "scaled": abar_t*T to unet0, bbar_t*T to unet1
    test_res_or_noise: str
    loops: int
    eta: float
    image_size: int
    dual_output: bool | None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> RDDMConfig:
        s = dict(spec.sampler)
        condition = bool(s.get("condition", spec.task != "generate"))
        objective = s.get("objective", "pred_res_noise")
        if objective not in (*OBJECTIVES, DIRECT):
            raise UsageError(
                f"model '{spec.name}': unknown RDDM objective '{objective}'",
                f"use one of {', '.join((*OBJECTIVES, DIRECT))}",
            )
        time_input = s.get("time_input", "int")
        if time_input not in ("int", "scaled"):
            raise UsageError(f"model '{spec.name}': time_input must be 'int' or 'scaled', not '{time_input}'")
        mode = s.get("test_res_or_noise", "res_noise")
        if mode not in ("res_noise", "res", "noise"):
            raise UsageError(f"model '{spec.name}': test_res_or_noise must be res_noise, res or noise")
        loops = int(s.get("loops", 1))
        if loops not in (1, 2):
            raise UsageError(f"model '{spec.name}': loops must be 1 or 2")
        sum_scale = s.get("sum_scale") or (0.01 if condition else 1.0)  # the official fallback
        return cls(
            objective=objective,
            condition=condition,
            input_condition=bool(s.get("input_condition", False)),
            input_condition_mask=bool(s.get("input_condition_mask", False)),
            sum_scale=float(sum_scale),
            timesteps=int(s.get("timesteps", 1000)),
            schedule=dict(s.get("schedule", {"type": "linear"})),
            time_input=time_input,
            test_res_or_noise=mode,
            loops=loops,
            eta=0.0 if condition else float(s.get("eta", 0.0)),  # the official code forces eta 0 for restoration
            image_size=int(s.get("image_size", 64)),
            dual_output=s.get("dual_output"),
        )

    @property
    def needs_noise_net(self) -> bool:
        if self.objective == "pred_res_noise":
            return self.test_res_or_noise != "res"
        return self.objective in TWO_HEAD_OBJECTIVES

    @property
    def needs_residual_net(self) -> bool:
        return not (self.objective == "pred_res_noise" and self.test_res_or_noise == "noise")


# ---- the engine --------------------------------------------------------------------------


class RDDMEngine(Engine):
    method = "rddm"
    min_tile = 64

    def prepare(self) -> None:
        """Read the sampler settings, pick the networks (or the direct one) and build the schedule."""
        spec = self.spec
        self.cfg = RDDMConfig.from_spec(spec)
        self.needs_mask = self.cfg.input_condition
        self.direct = self._direct_net()
        self.unet0, self.unet1 = (None, None) if self.direct is not None else self._networks()
        if self.direct is None:
            self._check_layout()
        self.exposure = 0.0  # stops added to a direct model's own exposure choice (--exposure)
        self._whole: Any = None  # the direct network's whole-image decisions while tiles run
        try:
            schedule = make_schedule(self.cfg.schedule, self.cfg.timesteps, self.cfg.sum_scale)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"model '{spec.name}': bad RDDM schedule: {exc}") from None
        self.schedule: Schedule = schedule.to(self.device)
        self.on_step: OnStep | None = None  # tests: called with a dict of every step's state and predictions
        self._resize: int | None = None
        self.tileable = True

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def build_component(cls, comp: ComponentSpec, device: torch.device | str = "cpu") -> nn.Module:
        builders = {
            UNETRES_KIND: build_unetres,
            UNET_KIND: build_unet,
            LIGHTNET_KIND: build_lightnet,
            RAINNET_KIND: build_rainnet,
        }
        if comp.kind not in builders:
            raise UsageError(
                f"the rddm engine cannot build component kind '{comp.kind}'", f"use one of {', '.join(KINDS)}"
            )
        try:
            with torch.device(device):
                return builders[comp.kind](dict(comp.config))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"component '{comp.name}': bad RDDM network config: {exc}") from None

    @classmethod
    def canonicalize(cls, comp: ComponentSpec, obj: Any) -> StateDict:
        return component_state(comp, obj)

    def _direct_net(self) -> DirectNet | None:
        direct = [net for net in self.nets.values() if isinstance(net, DirectNet)]
        if self.cfg.objective != DIRECT and not direct:
            return None
        if self.cfg.objective != DIRECT or len(direct) != 1 or len(self.nets) != 1:
            raise UsageError(
                f"model '{self.spec.name}': objective 'direct' runs exactly one one-pass network component",
                "check the model spec",
            )
        return direct[0]

    def _networks(self) -> tuple[RDDMUnet | None, RDDMUnet | None]:
        found: dict[str, RDDMUnet] = {}
        for name, net in self.nets.items():
            if isinstance(net, RDDMUnetRes):
                unet0, unet1 = net.networks()
                found["unet0"] = unet0
                if unet1 is not None:
                    found["unet1"] = unet1
            elif isinstance(net, RDDMUnet) and name in ("unet0", "unet1"):
                found[name] = net
            else:
                raise UsageError(f"model '{self.spec.name}': RDDM components are 'model' (UnetRes) or 'unet0'/'unet1'")
        return found.get("unet0"), found.get("unet1")

    def _check_layout(self) -> None:
        cfg, name = self.cfg, self.spec.name
        if cfg.needs_residual_net and self.unet0 is None:
            raise UsageError(f"model '{name}': objective {cfg.objective} needs unet0")
        if cfg.needs_noise_net and self.unet1 is None:
            raise UsageError(
                f"model '{name}': objective {cfg.objective} needs two UNets but the model has one",
                "use objective pred_res or pred_noise for one-UNet models",
            )
        want = 3 * (1 + int(cfg.condition) + int(cfg.input_condition))
        for net in (self.unet0, self.unet1):
            if net is not None and net.in_channels != want:
                raise UsageError(
                    f"model '{name}': the UNets take {net.in_channels} input channels but the sampler "
                    f"(condition={cfg.condition}, input_condition={cfg.input_condition}) feeds {want}"
                )

    # ---- options -----------------------------------------------------------------------
    @property
    def resize(self) -> int | None:
        """Paper protocol: run at resize x resize (bicubic) and return that size; None = native size."""
        return self._resize

    @resize.setter
    def resize(self, value: int | None) -> None:
        if value is not None and self.direct is not None:
            raise UsageError(f"--resize is not supported by model '{self.spec.name}'", "run it at the photo's size")
        if value is not None and int(value) < 8:
            raise UsageError(f"--resize {value} is too small", "use e.g. --resize 256 (the paper protocol)")
        self._resize = None if value is None else int(value)
        self.tileable = self._resize is None  # a resized image cannot be cut into tiles meaningfully

    @property
    def size_multiple(self) -> int:
        if self.direct is not None:
            return self.direct.size_multiple
        net = self.unet0 if self.unet0 is not None else self.unet1
        return net.size_multiple  # type: ignore[union-attr]

    # ---- memory ------------------------------------------------------------------------
    # The sampler's full-resolution images alive next to a network pass: x_in, x_t, the
    # noise, the networks' outputs, res, eps, x0, the condition (up to ~10 RGB images).
    SAMPLER_IMAGES = 10
    # Fixed slack for the allocator and the weights' copies (measured 25-40 MiB at 256^2).
    BASE_BYTES = 64 << 20
    # On a CPU at most 3 GiB is planned for one tile, whatever RAM is free: bigger tiles
    # are no faster there, and a 12-megapixel photo stays well under 6 GiB.
    CPU_CAP = 3 << 30
    memory_share = MemoryShare(gpu=0.7, cpu=0.5, cpu_cap=CPU_CAP)
    tile_sizes = (2048, 1536, 1280, 1024, 768, 512, 384, 256, 192, 128, 64)

    def estimate_bytes(self, height: int, width: int) -> int:
        """Peak working memory (bytes, beyond the weights) of restoring one image of this size.

        From the networks' own configs (`RDDMUnet.working_set_floats`), so user-trained
        bundles of any width, levels and attention are covered; the networks run one
        after the other, so the larger one counts.
        """
        elem = 4 if self.dtype == torch.float32 else 2
        if self.direct is not None:
            return int(self.direct.working_set_floats(height, width) * elem + self.BASE_BYTES)
        m = self.size_multiple
        ph, pw = padded_size(height, m), padded_size(width, m)
        nets = [net for net in (self.unet0, self.unet1) if net is not None]
        floats = max(net.working_set_floats(ph, pw) for net in nets) + self.SAMPLER_IMAGES * 3 * ph * pw
        return int(floats * elem + self.BASE_BYTES)

    def largest_efficient_tile(self) -> int | None:
        """The largest tile whose middle-block attention costs at most what the convolutions cost.

        Full attention's work per pixel grows with the tile's tokens, so for networks with
        wide attention at a high resolution (e.g. a user-trained `--dim-mults 1,2`) small
        tiles are several times faster than the largest that fits in memory. The shipped
        and official shapes are not capped below 1024 pixels.
        """
        if self.direct is not None:
            return None  # no attention: any tile that fits is efficient
        nets = [(net, net.conv_flops_per_pixel()) for net in (self.unet0, self.unet1) if net is not None]
        for tile in self.tile_sizes:
            if all(net.attention_flops_per_pixel(tile, tile) <= conv for net, conv in nets):
                return None if tile == self.tile_sizes[0] else max(tile, self.min_tile)
        return self.min_tile

    # ---- one network evaluation ---------------------------------------------------------
    def _predictor(
        self, x_in: Tensor | float, cond: Tensor | None, batch_size: int = 0
    ) -> Callable[[Tensor, int], Prediction]:
        cfg, sched = self.cfg, self.schedule
        t_scale = sched.timesteps

        def run(net: RDDMUnet, x: Tensor, time: Tensor) -> Tensor:
            if batch_size <= 0 or x.shape[0] <= batch_size:
                with self.autocast():
                    return net(x, time).float()
            parts = []
            for i in range(0, x.shape[0], batch_size):
                with self.autocast():
                    parts.append(net(x[i : i + batch_size], time[i : i + batch_size]).float())
            return torch.cat(parts)

        def predict(img: Tensor, t: int) -> Prediction:
            b = img.shape[0]
            tt = torch.full((b,), t, dtype=torch.long, device=img.device)
            if cfg.time_input == "int":
                time0 = time1 = tt
            else:
                time0, time1 = sched.abar[tt] * t_scale, sched.bbar[tt] * t_scale
            if not cfg.condition:
                net_in = img
            elif cond is not None:
                net_in = torch.cat((img, x_in, cond), dim=1)  # type: ignore[arg-type]
            else:
                net_in = torch.cat((img, x_in), dim=1)  # type: ignore[arg-type]
            out0 = out1 = None
            if cfg.objective in ("pred_res", "pred_noise"):
                # a one-network model: in scaled-time models it gets the time of what it predicts
                own_time = time1 if cfg.objective == "pred_noise" else time0
                out0 = run(self.unet0, net_in, own_time)  # type: ignore[arg-type]
            else:
                if cfg.needs_residual_net:
                    out0 = run(self.unet0, net_in, time0)  # type: ignore[arg-type]
                if cfg.needs_noise_net:
                    out1 = run(self.unet1, net_in, time1)  # type: ignore[arg-type]
            abar = sched.at("alphas_cumsum", tt, img.dim())
            bbar = sched.at("betas_cumsum", tt, img.dim())
            logit = None
            if out1 is not None and out1.shape[1] == img.shape[1] + 1:
                out1, logit = out1[:, :-1], out1[:, -1:]
            res, eps, x0 = interpret(
                cfg.objective,
                out0,
                out1,
                img,
                x_in,
                abar,
                bbar,
                sched.at("one_minus_alphas_cumsum", tt, img.dim()),
                cfg.test_res_or_noise,
            )
            if logit is not None and cfg.dual_output is not False and cfg.objective == "pred_res_noise":
                x0, eps = gated_prediction(img, x_in, res, eps, logit, abar, bbar)
            extra = {"time0": time0, "time1": time1}
            if out0 is not None:
                extra["unet0"] = out0
            if out1 is not None:
                extra["unet1"] = out1
            return Prediction(res, eps, x0, extra)

        return predict

    # ---- one-pass models -----------------------------------------------------------------
    @property
    def min_overlap(self) -> int:  # type: ignore[override]
        return self.direct.receptive_radius if self.direct is not None else 0

    @contextmanager
    def whole_image(self, image: Tensor) -> Iterator[None]:
        """A direct model decides exposure and colour once from the whole photo; tiles reuse it."""
        if self.direct is None:
            yield
            return
        with torch.no_grad():
            self._whole = self.direct.global_params(image.float().to(self.device))
        try:
            yield
        finally:
            self._whole = None

    @torch.no_grad()
    def _restore_direct(self, images: Tensor) -> Tensor:
        net = self.direct
        assert net is not None
        x = images.float().to(self.device)
        params = self._whole if self._whole is not None else net.global_params(x)
        if net.exposure_control:
            params = params.shifted(self.exposure)
        with self.autocast():
            out = net(x, params)
        return out.float().clamp(0, 1).cpu()

    # ---- restoration -------------------------------------------------------------------
    def check_can_restore(self) -> None:
        if not self.cfg.condition:
            raise UsageError(
                f"model '{self.spec.name}' generates images; it does not restore them",
                f"use 'restore generate --model {self.spec.name}'",
            )

    def restore_batch(
        self, images: Tensor, steps: int, generators: list[torch.Generator], masks: Tensor | None
    ) -> Tensor:
        cfg = self.cfg
        if self.direct is not None:
            return self._restore_direct(images)
        x = images.float()
        cond = None
        if cfg.input_condition:
            assert masks is not None  # check_batch made sure
            cond = masks.float().expand(-1, 3, -1, -1) if masks.shape[1] == 1 else masks.float()
        if self._resize is not None:
            x = paper_resize(x, self._resize)
            cond = paper_resize(cond, self._resize) if cond is not None else None
        height, width = x.shape[-2:]
        m = self.size_multiple
        ph, pw = padded_size(height, m), padded_size(width, m)
        x_in = pad_end(x, ph - height, pw - width, "zeros").to(self.device) * 2 - 1
        if cond is not None:
            cond = pad_end(cond, ph - height, pw - width, "zeros").to(self.device)
            if not cfg.input_condition_mask:
                cond = cond * 2 - 1
        shape = tuple(x_in.shape[1:])  # one image's
        noise = randn_per_image(shape, generators, self.device)
        x_t = x_in + math.sqrt(cfg.sum_scale) * noise
        if self.on_step is not None:
            self.on_step({"noise": noise, "x_T": x_t, "x_in": x_in})

        def noise_fn(like: Tensor) -> Tensor:
            return randn_per_image(shape, generators, self.device)

        out = self._sample(self._predictor(x_in, cond), x_t, steps, noise_fn)
        return ((out + 1) * 0.5)[:, :, :height, :width].float().cpu()

    # ---- generation --------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, count: int, *, steps: int, generator: torch.Generator, batch_size: int = 0) -> Tensor:
        cfg = self.cfg
        if cfg.condition:
            raise UsageError(
                f"model '{self.spec.name}' restores images; it does not generate them",
                f"use 'restore {self.spec.task} INPUT --model {self.spec.name}'",
            )
        size = cfg.image_size
        shape = (count, 3, size, size)
        x_t = randn(shape, generator, self.device)
        if self.on_step is not None:
            self.on_step({"noise": x_t, "x_T": x_t})

        def noise_fn(like: Tensor) -> Tensor:
            return randn(like.shape, generator, self.device)

        out = self._sample(self._predictor(0, None, batch_size), x_t, steps, noise_fn)
        return ((out + 1) * 0.5).float().cpu()

    def _sample(self, predict: Predict, x_t: Tensor, steps: int, noise_fn: NoiseFn) -> Tensor:
        """The model's sampler settings around `schedule.sample`: restoration and generation run the same one."""
        cfg = self.cfg
        return sample(
            predict, x_t, self.schedule, steps, eta=cfg.eta, noise_fn=noise_fn, loops=cfg.loops, on_step=self.on_step
        )
