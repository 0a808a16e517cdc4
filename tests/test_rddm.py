"""RDDM: networks against the official key layout, schedules and samplers against the official fixtures,
and the engine's memory model (estimates from each network's own config, automatic tiles, the tile
really used).

The conformance cases (../shared/conformance/rddm) were produced by the official
code on CPU fp32 with small random weights in the official checkpoint
containers; every recorded intermediate (noise, states, raw UNet outputs,
residual / noise / clean estimates) is compared, not only the final image.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers import assert_png_matches, cli_env, maxdiff, run_bounded, run_cli
from restorecli.engines.rddm.engine import RDDMEngine, component_state
from restorecli.engines.rddm.paper_resize import paper_resize, paper_resize_uint8
from restorecli.engines.rddm.schedule import (
    OBJECTIVES,
    SCHEDULE_BUFFERS,
    ddim_sample,
    ddpm_schedule,
    gated_x0,
    interpret,
    linear_schedule,
    loss_targets,
    power_schedule,
    q_sample,
    time_pairs,
)
from restorecli.errors import UsageError, WeightsError, WeightsUnavailable
from restorecli.nets.attention import reference_mode
from restorecli.runtime.load import load_component_file
from restorecli.runtime.restorer import Restorer
from restorecli.training.config import TrainConfig, model_spec
from restorecli.training.loop import build_nets
from restorecli.weights.registry import ComponentSpec, ModelSpec, load_registry

TOL = 1e-4


# Tiny networks run fastest on one thread, and OpenMP threads stall badly on a busy shared machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rddm(shared, *parts: str) -> Path:
    return shared("conformance", "rddm", *parts)


def tiny(name: str, dim: int = 8, **sampler: object) -> ModelSpec:
    """A registered RDDM model with the fixtures' small width (everything else as registered)."""
    spec = load_registry().get(name)
    comps = {n: replace(c, config={**c.config, "dim": dim}) for n, c in spec.components.items()}
    return replace(spec, components=comps, sampler={**spec.sampler, **sampler})


def engine_for(spec: ModelSpec, checkpoint: Path) -> RDDMEngine:
    return RDDMEngine(spec, {"model": load_component_file(spec, "model", checkpoint)})


def record(engine: RDDMEngine) -> list[dict]:
    events: list[dict] = []
    engine.on_step = events.append
    return events


def to_uint8(x01: torch.Tensor) -> torch.Tensor:
    return (x01 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # torchvision save_image


# ---- networks: full-size key layout -----------------------------------------------------------

FULL = {"rddm-celeba64": "model-100.json", "rddm-derain": "exp2_derain_layout_model-140.json"}


@pytest.mark.parametrize("model", sorted(FULL))
def test_full_size_network_has_the_official_keys(shared, model):
    info = json.loads(rddm(shared, "keys", FULL[model]).read_text())
    net = RDDMEngine.build_component(load_registry().get(model).components["model"], device="meta")
    prefix = "ema_model.model."
    want = {k[len(prefix) :]: v["shape"] for k, v in info["keys"].items() if k.startswith(prefix)}
    have = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert have == want
    assert sum(p.numel() for p in net.parameters()) == info["params"]
    assert {k for k in info["keys"] if not k.startswith(prefix)} == {f"ema_model.{b}" for b in info["schedule_buffers"]}


def meta_container(info: dict) -> dict:
    """A full-size official Trainer.save container built on the meta device from a key list."""

    def tensors(keys: dict) -> dict:
        dtypes = {"float32": torch.float32, "int64": torch.int64}
        return {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in keys.items()}

    ema = {**tensors(info["ema_other_keys"]), **tensors(info["keys"])}
    opts = {"opt0": {"state": {}, "param_groups": []}, "opt1": {"state": {}, "param_groups": []}}
    if "opt0" not in info["container"]:
        opts = {"opt": {"state": {}, "param_groups": []}}
    return {"step": 100_000, "model": tensors(info["model_keys"]), **opts, "ema": ema, "scaler": None}


@pytest.mark.parametrize("model", sorted(FULL))
def test_full_size_official_container_converts(shared, model):
    info = json.loads(rddm(shared, "keys", FULL[model]).read_text())
    comp = load_registry().get(model).components["model"]
    state = RDDMEngine.canonicalize(comp, meta_container(info))
    net = RDDMEngine.build_component(comp, device="meta")
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    # a one-UNet model refuses a two-UNet file with a one-line reason
    one = replace(comp, config={**comp.config, "num_unet": 1})
    with pytest.raises(WeightsError, match="holds 2 UNet"):
        RDDMEngine.canonicalize(one, meta_container(info))


def test_conversion_uses_the_ema_weights_not_the_online_ones(shared):
    ckpt = torch.load(rddm(shared, "derain", "checkpoint.pth"), weights_only=True)
    comp = load_registry().get("rddm-derain").components["model"]
    state = RDDMEngine.canonicalize(comp, ckpt)
    key = "unet0.init_conv.weight"
    assert torch.equal(state[key], ckpt["ema"]["ema_model.model." + key])
    assert not torch.equal(state[key], ckpt["model"]["model." + key])
    assert not any(k in state for k in SCHEDULE_BUFFERS) and "initted" not in state and "step" not in state


def test_other_layouts_are_refused_with_one_line(shared):
    comp = load_registry().get("rddm-derain").components["model"]
    ckpt = torch.load(rddm(shared, "derain", "checkpoint.pth"), weights_only=True)
    shared_encoder = {
        "ema": {
            "ema_model.model.init_conv.weight": torch.zeros(1),
            "ema_model.model.ups_no_skip.0.0.mlp.1.weight": torch.zeros(1),
        }
    }
    cases = {
        "no EMA": {k: v for k, v in ckpt.items() if k != "ema"},
        "shared-encoder": shared_encoder,
        "not an RDDM": {"conv.weight": torch.zeros(1)},
        "not hold an RDDM": [1, 2, 3],
    }
    for what, obj in cases.items():
        with pytest.raises(WeightsError, match=what) as err:
            RDDMEngine.canonicalize(comp, obj)
        assert "\n" not in str(err.value)


# ---- schedules and the time grid ----------------------------------------------------------------


def test_schedules_match_the_official_values(shared):
    data = json.loads(rddm(shared, "schedule.json").read_text())
    for scale in ("1", "0.01"):
        ref, sched = data[f"exp2_sum_scale_{scale}"], linear_schedule(1000, float(scale))
        for key in ("alphas_cumsum", "betas_cumsum"):
            np.testing.assert_array_equal(sched.buffers[key].numpy(), np.float32(ref["float32_buffers"][key]))
    ref, sched = data["exp0_convert_to_ddim"], ddpm_schedule()
    for key, ref_key in (
        ("alphas_cumsum", "alphas_cumsum"),
        ("betas2_cumsum", "betas2_cumsum"),
        ("betas_cumsum", "betas_cumsum"),
        ("alphas", "alphas_before_init"),
        ("betas2", "betas2_before_init"),
    ):
        np.testing.assert_array_equal(sched.buffers[key].numpy(), np.float32(ref[ref_key]))
    ref, sched = data["exp6_linspace_power_ratio1"], power_schedule(1000, 1.0)
    for key in ("alphas", "alphas_cumsum", "betas2", "betas2_cumsum", "betas_cumsum"):
        np.testing.assert_array_equal(sched.buffers[key].numpy(), np.float32(ref[key]))
    for steps in (1, 2, 5, 10):
        grid = data["ddim_time_grids"][f"S={steps}"]
        assert time_pairs(steps) == list(zip(grid[:-1], grid[1:]))


@pytest.mark.parametrize("case,schedule", [("derain", "linear"), ("lowlight_res", "linear"), ("generation", "ddpm")])
def test_all_twelve_buffers_equal_those_in_the_official_checkpoints(shared, case, schedule):
    ema = torch.load(rddm(shared, case, "checkpoint.pth"), weights_only=True)["ema"]
    sched = linear_schedule(1000, 1.0) if schedule == "linear" else ddpm_schedule()
    for name in SCHEDULE_BUFFERS:
        assert torch.equal(sched.buffers[name], ema[f"ema_model.{name}"]), name


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_recovers_the_clean_image_from_exact_targets(objective):
    """Outputs equal to the training targets must give back x0, res and eps (for every objective and mode)."""
    g = torch.Generator().manual_seed(0)
    x0, x_in = torch.rand(2, 3, 8, 8, generator=g) * 0.9 - 0.45, torch.rand(2, 3, 8, 8, generator=g) * 0.9 - 0.45
    noise = torch.randn(2, 3, 8, 8, generator=g)
    sched = linear_schedule()
    t = torch.tensor([300, 700])
    x_t = q_sample(x0, x_in - x0, t, noise, sched)
    outs = loss_targets(objective, x0, x_in, noise) + [None]
    modes = ("res_noise", "res", "noise") if objective == "pred_res_noise" else ("res_noise",)
    for mode in modes:
        res, eps, est = interpret(
            objective,
            outs[0],
            outs[1],
            x_t,
            x_in,
            sched.at("alphas_cumsum", t),
            sched.at("betas_cumsum", t),
            sched.at("one_minus_alphas_cumsum", t),
            mode,
        )
        assert maxdiff(est, x0) < 1e-5 and maxdiff(res, x_in - x0) < 1e-5 and maxdiff(eps, noise) < 1e-4


def test_eta_draws_once_per_intermediate_step_and_changes_the_result():
    sched = linear_schedule()
    x = torch.zeros(1, 3, 4, 4)

    def predict(img, t):
        from restorecli.engines.rddm.schedule import Prediction

        return Prediction(img * 0.1, img * 0.5, img.clamp(-1, 1))

    draws = []

    def noise_fn(like):
        draws.append(1)
        return torch.ones_like(like)

    plain = ddim_sample(predict, x + 1, sched, 5)
    noisy = ddim_sample(predict, x + 1, sched, 5, eta=1.0, noise_fn=noise_fn)
    assert len(draws) == 4 and not torch.equal(plain, noisy)


def test_eta_scales_the_noise_variance_of_a_ddim_step():
    """sigma^2 = eta (bbar_t^2 - bbar_s^2) bbar_s^2 / bbar_t^2: with eta 0.5 a step adds sigma * z, z = 1 here."""
    from restorecli.engines.rddm.schedule import Prediction

    sched = linear_schedule()
    x = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    res, eps = torch.full_like(x, 0.2), torch.full_like(x, -0.3)
    states = []
    ddim_sample(
        lambda img, t: Prediction(res, eps, img),
        x,
        sched,
        3,
        eta=0.5,
        noise_fn=torch.ones_like,
        on_step=lambda info: states.append(info["state"]),
    )
    (t, s), _ = time_pairs(3, sched.timesteps)[:2]
    b2, b2s = sched.bbar2[t].double(), sched.bbar2[s].double()
    sigma2 = 0.5 * (b2 - b2s) * b2s / b2
    step = x - (sched.abar[t] - sched.abar[s]) * res - (sched.bbar[t] - (b2s - sigma2).sqrt()) * eps + sigma2.sqrt()
    assert maxdiff(states[1], step) < 1e-6


# ---- restoration conformance ---------------------------------------------------------------------

RESTORE_CASES = {
    # case: (registered model, checkpoint folder)
    "derain": ("rddm-derain", "derain"),
    "derain_2step": ("rddm-derain", "derain"),
    "lowlight_res": ("rddm-lowlight", "lowlight_res"),
}


@pytest.mark.parametrize("case", sorted(RESTORE_CASES))
def test_restoration_matches_the_official_sampler(shared, case):
    model, ckpt = RESTORE_CASES[case]
    t = load_file(str(rddm(shared, case, "tensors.safetensors")))
    steps = json.loads(rddm(shared, case, "case.json").read_text())["sampler"]["steps"]
    engine = engine_for(tiny(model), rddm(shared, ckpt, "checkpoint.pth"))
    events = record(engine)
    out = engine.restore(t["input_01"], steps=steps, generators=[torch.Generator().manual_seed(10)])
    start, steps_seen = events[0], events[1:]
    # seed contract: the only draw equals torch.randn(shape) after torch.manual_seed(10)
    assert torch.equal(start["noise"], t["noise_0"])
    assert maxdiff(start["x_in"], t["input_pm1"]) <= 1e-6
    assert maxdiff(start["x_T"], t["x_T"]) <= TOL
    assert len(steps_seen) == steps
    for k, ev in enumerate(steps_seen):
        assert ev["t"] == int(t["step_t"][k, 0])
        assert torch.equal(ev["pred"].extra["time0"].cpu(), t["step_unet0_time_input"][k])
        assert maxdiff(ev["state"], t["step_state"][k]) <= TOL
        assert maxdiff(ev["pred"].extra["unet0"], t["step_unet0_raw"][k]) <= TOL
        if "step_unet1_raw" in t:
            assert torch.equal(ev["pred"].extra["time1"].cpu(), t["step_unet1_time_input"][k])
            assert maxdiff(ev["pred"].extra["unet1"], t["step_unet1_raw"][k]) <= TOL
        assert maxdiff(ev["pred"].res, t["step_res"][k]) <= TOL
        assert maxdiff(ev["pred"].eps, t["step_eps"][k]) <= TOL
        assert maxdiff(ev["pred"].x0, t["step_x0"][k]) <= TOL
    assert maxdiff(out, t["final_01"]) <= TOL
    assert maxdiff(to_uint8(out).float(), t["final_uint8"].float()) <= 1


def test_one_unet_per_component_layout_runs_the_same(shared):
    """Bundles of 'restore train rddm' keep unet0 / unet1 as separate 'rddm.unet' components."""
    t = load_file(str(rddm(shared, "derain_2step", "tensors.safetensors")))
    base = tiny("rddm-derain")
    conf = {k: v for k, v in base.components["model"].config.items() if k != "num_unet"}
    comps = {n: ComponentSpec(n, "rddm.unet", conf) for n in ("unet0", "unet1")}
    spec = replace(base, components=comps)
    ckpt = torch.load(rddm(shared, "derain", "checkpoint.pth"), weights_only=True)
    engine = RDDMEngine(spec, {n: component_state(c, ckpt) for n, c in comps.items()})
    out = engine.restore(t["input_01"], steps=2, generators=[torch.Generator().manual_seed(10)])
    assert maxdiff(out, t["final_01"]) <= TOL


def test_batch_results_do_not_depend_on_neighbours_and_padding_is_cropped(shared):
    """Native size: 37x50 runs padded (zeros, bottom/right) to 40x56 and comes back 37x50; per-image seeds."""
    engine = engine_for(tiny("rddm-lowlight"), rddm(shared, "lowlight_res", "checkpoint.pth"))
    pixels = np.asarray(Image.open(shared("data", "lowlight", "LOL-eval-low", "1.png")).convert("RGB"))
    img = torch.from_numpy(pixels[100:137, 200:250].astype(np.float32) / 255).permute(2, 0, 1)[None]
    other = img.flip(-1)
    events = record(engine)
    both = engine.restore(
        torch.cat([img, other]),
        steps=2,
        generators=[torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)],
    )
    x_in = events[0]["x_in"]
    assert x_in.shape[-2:] == (40, 56) and both.shape == (2, 3, 37, 50)
    assert torch.all(x_in[..., 37:, :] == -1) and torch.all(x_in[..., :, 50:] == -1)
    engine.on_step = None
    alone = engine.restore(other, steps=2, generators=[torch.Generator().manual_seed(4)])
    assert maxdiff(both[1:], alone) <= 1e-5
    assert both.min() >= 0 and both.max() <= 1


# ---- generation conformance ----------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [0, 1])
def test_generation_matches_the_official_two_loop_sampler(shared, batch_size):
    t = load_file(str(rddm(shared, "generation", "tensors.safetensors")))
    engine = engine_for(tiny("rddm-celeba64", image_size=32), rddm(shared, "generation", "checkpoint.pth"))
    events = record(engine)
    out = engine.generate(2, steps=10, generator=torch.Generator().manual_seed(10), batch_size=batch_size)
    assert torch.equal(events[0]["noise"], t["noise_0"])
    steps_seen = events[1:]
    assert [(e["loop"], e["step"]) for e in steps_seen] == [(lp, k) for lp in (1, 2) for k in range(10)]
    for ev in steps_seen:
        pre, k = f"loop{ev['loop']}_step_", ev["step"]
        assert ev["t"] == int(t[pre + "t"][k, 0])
        # FLOAT time inputs: abar_t * 1000 to the residual UNet, bbar_t * 1000 to the noise UNet
        assert maxdiff(ev["pred"].extra["time0"], t[pre + "unet0_time_input"][k]) <= 1e-4
        assert maxdiff(ev["pred"].extra["time1"], t[pre + "unet1_time_input"][k]) <= 1e-4
        for name, got in (
            ("state", ev["state"]),
            ("unet0_raw", ev["pred"].extra["unet0"]),
            ("unet1_raw", ev["pred"].extra["unet1"]),
            ("res", ev["pred"].res),
            ("eps", ev["pred"].eps),
            ("x0", ev["pred"].x0),
        ):
            assert maxdiff(got, t[pre + name][k]) <= TOL, (pre + name, k)
    assert maxdiff(steps_seen[10]["state"], t["loop1_final"]) <= TOL
    assert maxdiff(out, t["final_01"]) <= TOL
    assert maxdiff(to_uint8(out).float(), t["final_uint8"].float()) <= 1


def test_full_length_sampler_draws_once_per_step():
    """--steps = T runs the official posterior chain: one initial draw plus one per t > 0."""
    conf = {
        "dim": 8,
        "dim_mults": [1, 2],
        "channels": 3,
        "resnet_block_groups": 8,
        "condition": False,
        "input_condition": False,
        "num_unet": 2,
    }
    spec = ModelSpec(
        "tiny",
        "rddm",
        "generate",
        1,
        {"model": ComponentSpec("model", "rddm.unetres", conf)},
        {"timesteps": 6, "image_size": 8, "schedule": {"type": "power"}},
        6,
        6,
        1,
        6,
    )
    net = RDDMEngine.build_component(spec.components["model"])
    engine = RDDMEngine(spec, {"model": net.state_dict()})
    gen = torch.Generator().manual_seed(1)
    out = engine.generate(2, steps=6, generator=gen)
    ref = torch.Generator().manual_seed(1)
    for _ in range(6):
        torch.randn(2, 3, 8, 8, generator=ref)
    assert torch.equal(gen.get_state(), ref.get_state())
    assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()
    few = torch.Generator().manual_seed(1)
    engine.generate(2, steps=3, generator=few)  # eta 0: the initial draw only
    ref = torch.Generator().manual_seed(1)
    torch.randn(2, 3, 8, 8, generator=ref)
    assert torch.equal(few.get_state(), ref.get_state())


def test_generation_and_restoration_models_refuse_the_other_job(shared):
    gen = engine_for(tiny("rddm-celeba64", image_size=32), rddm(shared, "generation", "checkpoint.pth"))
    with pytest.raises(UsageError, match="generates images"):
        gen.restore(torch.zeros(1, 3, 8, 8), steps=1, generators=[torch.Generator()])
    res = engine_for(tiny("rddm-lowlight"), rddm(shared, "lowlight_res", "checkpoint.pth"))
    with pytest.raises(UsageError, match="does not generate"):
        res.generate(1, steps=1, generator=torch.Generator())


# ---- the paper's 256x256 protocol ----------------------------------------------------------------


def test_resize256_preprocessing_is_the_official_one(shared):
    t = load_file(str(rddm(shared, "resize256", "tensors.safetensors")))
    for name in ("a", "b"):
        padded, resized = paper_resize_uint8(t[f"{name}_input_uint8"].numpy(), 256)
        np.testing.assert_array_equal(padded, t[f"{name}_padded_uint8"].numpy())
        np.testing.assert_array_equal(resized, t[f"{name}_resized_uint8"].numpy())
    x = torch.from_numpy(t["a_input_uint8"].numpy().astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert torch.equal(paper_resize(x, 256), t["a_resized_01"])


def test_resize_option_runs_at_the_paper_size_and_returns_it(shared):
    engine = engine_for(tiny("rddm-lowlight"), rddm(shared, "lowlight_res", "checkpoint.pth"))
    assert engine.tileable
    engine.resize = 64
    assert not engine.tileable
    events = record(engine)
    img = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(0))
    out = engine.restore(img, steps=1, generators=[torch.Generator().manual_seed(0)])
    assert out.shape == (1, 3, 64, 64)
    assert maxdiff(events[0]["x_in"], paper_resize(img, 64) * 2 - 1) <= 1e-6


def test_shadow_model_takes_the_mask_as_a_third_input():
    spec = tiny("rddm-shadow")
    conf = {**spec.components["model"].config, "dim_mults": [1, 2]}
    spec = replace(spec, components={"model": replace(spec.components["model"], config=conf)})
    net = RDDMEngine.build_component(spec.components["model"])
    assert net.unet0.init_conv.in_channels == 9
    engine = RDDMEngine(spec, {"model": net.state_dict()})
    img = torch.rand(1, 3, 12, 10)
    with pytest.raises(UsageError, match="needs a mask"):
        engine.restore(img, steps=1, generators=[torch.Generator()])
    events = record(engine)
    mask = torch.zeros(1, 1, 12, 10)
    mask[..., 2:5, 3:7] = 1
    out = engine.restore(img, steps=2, generators=[torch.Generator().manual_seed(0)], masks=mask)
    assert out.shape == (1, 3, 12, 10)
    seen = events[1]["state"]
    assert seen.shape[1] == 3  # the state; the UNet input adds the image and the 3-channel [0, 1] mask


def shadow_engine() -> RDDMEngine:
    """The registered shadow-removal model (sum_scale 0.01, mask as a third input) at a tiny width, random weights."""
    spec = tiny("rddm-shadow")
    conf = {**spec.components["model"].config, "dim_mults": [1, 2]}
    spec = replace(spec, components={"model": replace(spec.components["model"], config=conf)})
    torch.manual_seed(0)
    net = RDDMEngine.build_component(spec.components["model"])
    return RDDMEngine(spec, {"model": net.state_dict()})


def test_restoration_starts_at_the_input_plus_sqrt_sum_scale_noise():
    """x_T = I_in + sqrt(sum_scale) * noise; every conformance case has sum_scale 1, rddm-shadow has 0.01."""
    engine = shadow_engine()
    assert engine.cfg.sum_scale == 0.01
    events = record(engine)
    img = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 12, 10)
    mask[..., 2:5, 3:7] = 1
    engine.restore(img, steps=2, generators=[torch.Generator().manual_seed(0)], masks=mask)
    start = events[0]
    assert torch.equal(start["noise"], torch.randn(1, 3, 12, 10, generator=torch.Generator().manual_seed(0)))
    assert maxdiff(start["x_T"], start["x_in"] + 0.1 * start["noise"]) <= 1e-6
    assert maxdiff(start["x_T"], start["x_in"] + 0.01 * start["noise"]) > 1e-2  # the square root matters


def test_shadow_network_input_is_state_image_then_mask_in_0_1():
    """The official ISTD settings (input_condition_mask = true): UNet input = [state, 2*image-1, mask in {0, 1}]."""
    engine = shadow_engine()
    assert engine.cfg.input_condition and engine.cfg.input_condition_mask
    seen: list[torch.Tensor] = []
    hooks = [
        net.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
        for net in (engine.unet0, engine.unet1)
    ]
    events = record(engine)
    img = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 12, 10)
    mask[..., 2:5, 3:7] = 1
    try:
        engine.restore(img, steps=2, generators=[torch.Generator().manual_seed(0)], masks=mask)
    finally:
        for h in hooks:
            h.remove()
    assert len(seen) == 4  # two UNets, two steps
    for k, net_in in enumerate(seen):
        assert net_in.shape == (1, 9, 12, 10)
        assert torch.equal(net_in[:, :3], events[1 + k // 2]["state"])
        assert torch.equal(net_in[:, 3:6], img * 2 - 1)
        assert torch.equal(net_in[:, 6:9], mask.expand(-1, 3, -1, -1))  # not 2 * mask - 1
    assert torch.equal(seen[0][:, :3], events[0]["x_T"])


# ---- registry, weights and the command line ----------------------------------------------------


def test_registry_entries():
    reg = load_registry()
    gen = reg.get("rddm-celeba64")
    assert gen.task == "generate" and gen.origin == "official" and gen.default_steps == 10 and gen.max_steps == 1000
    assert gen.components["model"].sources[0].url.startswith("https://rec.ustc.edu.cn/share/")
    for name, task in (
        ("rddm-derain", "derain"),
        ("rddm-lowlight", "lowlight"),
        ("rddm-deblur", "deblur"),
        ("rddm-shadow", "shadow"),
    ):
        spec = reg.get(name)
        assert spec.task == task and spec.origin == "user-trained" and spec.min_steps == 1 and spec.max_steps == 1000
        (src,) = spec.components["model"].sources
        assert src.kind == "manual" and src.url is None and "no public checkpoint exists" in src.note
        RDDMEngine.build_component(spec.components["model"], device="meta")


def test_restoration_without_weights_says_no_public_checkpoint_exists(tmp_path):
    from restorecli.runtime.load import ensure_bundle

    with pytest.raises(WeightsUnavailable, match="no public checkpoint exists") as err:
        ensure_bundle(load_registry().get("rddm-derain"), cache_dir=tmp_path)
    assert "--weights" in str(err.value) and "restore convert rddm-derain" in str(err.value)


OVERLAY = """
[arch.rddm-unetres-gen64]
dim = 8
[arch.rddm-unetres-restore]
dim = 8
[models.rddm-celeba64.sampler]
image_size = 32
"""


def test_cli_generate_and_derain_reproduce_the_official_outputs(shared, tmp_path):
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(OVERLAY)
    env = {"RESTORECLI_CACHE": str(tmp_path / "cache"), "RESTORECLI_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    gen = load_file(str(rddm(shared, "generation", "tensors.safetensors")))
    r = run_cli(
        "--registry",
        str(overlay),
        "generate",
        str(tmp_path / "gen"),
        "--model",
        "rddm-celeba64",
        "-n",
        "2",
        "--steps",
        "10",
        "--seed",
        "10",
        "--device",
        "cpu",
        "--grid",
        "--weights",
        str(rddm(shared, "generation", "checkpoint.pth")),
        env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    for k in range(2):
        assert_png_matches(tmp_path / "gen" / f"rddm-celeba64_s10_{k:04d}.png", gen["final_uint8"][k])
    assert (tmp_path / "gen" / "grid.png").is_file()

    der = load_file(str(rddm(shared, "derain", "tensors.safetensors")))
    Image.fromarray(der["input_uint8"][0].permute(1, 2, 0).numpy()).save(tmp_path / "rain.png")
    r = run_cli(
        "--registry",
        str(overlay),
        "derain",
        str(tmp_path / "rain.png"),
        str(tmp_path / "clean.png"),
        "--model",
        "rddm-derain",
        "--weights",
        str(rddm(shared, "derain", "checkpoint.pth")),
        "--steps",
        "5",
        "--seed",
        "10",
        "--device",
        "cpu",
        env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert_png_matches(tmp_path / "clean.png", der["final_uint8"][0])


# ---- schedules, as training uses them --------------------------------------------------------


def test_schedule_matches_official_buffers(shared):
    data = json.loads((shared("conformance", "rddm") / "schedule.json").read_text())
    buffers = data["exp2_sum_scale_1"]["float32_buffers"]
    sched = linear_schedule(1000, 1.0)
    np.testing.assert_array_equal(sched.abar.numpy(), np.array(buffers["alphas_cumsum"], np.float32))
    np.testing.assert_array_equal(sched.bbar.numpy(), np.array(buffers["betas_cumsum"], np.float32))
    for steps in (1, 2, 5, 10):
        grid = data["ddim_time_grids"][f"S={steps}"]
        assert time_pairs(steps) == list(zip(grid[:-1], grid[1:]))


def test_zero_gate_is_plain_rddm_and_gate_moves_the_estimate():
    g = torch.Generator().manual_seed(0)
    x_t, x_in, res, eps = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(4))
    for a, b in ((0.3, 0.5), (1.0, 1.0), (0.0, 0.05)):
        abar, bbar = torch.tensor(a), torch.tensor(b)
        plain = x_t - abar * res - bbar * eps
        mixed = gated_x0(x_t, x_in, res, eps, torch.zeros(2, 1, 8, 8), abar, bbar)
        assert torch.allclose(mixed, plain, atol=1e-6)
    # a large positive logit trusts the residual head: x0 -> I_in - res
    mixed = gated_x0(x_t, x_in, res, eps, torch.full((2, 1, 8, 8), 15.0), torch.tensor(0.3), torch.tensor(0.5))
    assert torch.allclose(mixed, x_in - res, atol=1e-4)


# ---- memory: estimates, automatic tiles, the tile that runs ------------------------------------


def random_engine(**config) -> RDDMEngine:
    """An RDDM engine with random weights for a training config (any width, levels, attention, fold)."""
    cfg = TrainConfig(**{"objective": "pred_res", "steps": 1, **config})
    spec = model_spec(cfg)
    nets = build_nets(spec, torch.device("cpu"))
    return RDDMEngine(spec, {name: net.state_dict() for name, net in nets.items()})


SHIPPED_SHAPE = {"dim": 16, "attn_heads": 1, "attn_dim_head": 16, "pixel_unshuffle": 2}


# Peak memory of one network forward (CPU fp32, batch 1, torch 2.13, 1 thread), measured as the
# growth of the process's max RSS around the forward in a fresh process, 2026-12-01), in MiB.
MEASURED_PEAKS = [
    (SHIPPED_SHAPE, 1024, 312),
    (SHIPPED_SHAPE, 2048, 907),
    ({"dim": 16}, 1024, 3510),  # official attention width (4 x 32), no fold
    ({"dim": 16}, 2048, 13442),
    ({"dim": 32, "dim_mults": (1, 2)}, 512, 1034),  # a shallow user-trained shape: big middle attention
]


@pytest.mark.parametrize("config, size, measured", MEASURED_PEAKS)
def test_estimate_covers_the_measured_peak_without_wasting_much(config, size, measured):
    estimate = random_engine(**config).estimate_bytes(size, size) / 2**20
    assert measured <= estimate <= 2 * measured, (estimate, measured)


def test_estimate_follows_each_networks_config():
    small = random_engine(**SHIPPED_SHAPE)
    official = random_engine(dim=16)  # official attention width (4 x 32), no fold
    two = random_engine(objective="pred_res_noise", dim=16)
    assert official.estimate_bytes(1024, 1024) > 5 * small.estimate_bytes(1024, 1024)
    # quadrupling the pixels at least quadruples the estimate
    assert official.estimate_bytes(2048, 2048) >= 3.9 * official.estimate_bytes(1024, 1024)
    # two UNets run one after the other: the larger one counts, not the sum
    assert two.estimate_bytes(512, 512) == official.estimate_bytes(512, 512)
    wider = random_engine(dim=32, dim_mults=(1, 2, 4))
    assert wider.estimate_bytes(512, 512) != official.estimate_bytes(512, 512)
    # the textbook attention path materialises heads * tokens^2 (twice): the estimate says so
    with reference_mode():
        assert official.estimate_bytes(1024, 1024) > 8 << 30


def test_full_attention_never_materialises_the_token_matrix():
    """16384 tokens x 4 heads: a materialised matrix would be 4 GiB (twice); the fused kernel works in blocks."""
    code = (
        "import resource, torch; from restorecli.nets.rddm_unet import FullAttention; torch.set_num_threads(1);"
        "m = FullAttention(32, 4, 32).eval(); x = torch.randn(1, 32, 128, 128);"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with torch.no_grad(): m(x)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)"
    )
    res = run_bounded([sys.executable, "-c", code], env=cli_env(), timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    grown_mib = int(res.stdout.decode().split()[-1])
    assert grown_mib < 512, grown_mib  # measured 52 MiB; the strided (math-kernel) path: over 8 GiB


@pytest.mark.parametrize("config", [SHIPPED_SHAPE, {"dim": 16}, {"dim": 8, "dim_mults": (1, 2)}])
def test_small_budget_picks_a_fitting_tile(monkeypatch, config):
    engine = random_engine(**config)
    budget = 200 << 20
    monkeypatch.setattr(engine, "_memory_budget", lambda: budget)
    tile = engine.auto_tile(3000, 4000)
    assert 0 < tile < 3000
    assert engine.estimate_bytes(tile, tile) <= budget or tile == engine.min_tile
    # the next larger candidate would not have fitted
    cap = engine.largest_efficient_tile() or max(engine.tile_sizes)  # tiles above it are slower
    bigger = [t for t in engine.tile_sizes if tile < t <= cap]
    if bigger:
        assert engine.estimate_bytes(min(bigger), min(bigger)) > budget
    monkeypatch.setattr(engine, "_memory_budget", lambda: engine.estimate_bytes(3000, 4000))
    # the whole image when it fits, unless full attention makes big tiles slow (below)
    assert engine.auto_tile(3000, 4000) == (engine.largest_efficient_tile() or 0)


def test_wide_attention_at_high_resolution_gets_small_tiles_for_speed():
    """A shallow user-trained net (attention at half resolution): work per pixel grows with the tile,
    so it is tiled small even when memory would take the whole image; shipped nets are not capped."""
    shallow = random_engine(dim=32, dim_mults=(1, 2))
    assert shallow.estimate_bytes(400, 600) < shallow._memory_budget()
    tile = shallow.auto_tile(400, 600)
    assert 0 < tile <= 256
    net = shallow.unet0 or shallow.unet1
    assert net.attention_flops_per_pixel(tile, tile) <= net.conv_flops_per_pixel()
    assert net.attention_flops_per_pixel(2 * tile, 2 * tile) > net.conv_flops_per_pixel()
    shipped = random_engine(**SHIPPED_SHAPE)
    assert shipped.largest_efficient_tile() is None and shipped.auto_tile(700, 1000) == 0


def test_cpu_budget_is_capped_for_a_twelve_megapixel_photo():
    engine = random_engine(**SHIPPED_SHAPE)
    tile = engine.auto_tile(3000, 4000)
    assert tile > 0  # never the whole 12 MP photo at once on a CPU
    assert engine.estimate_bytes(tile, tile) <= RDDMEngine.CPU_CAP


def test_automatic_tiles_run_with_per_tile_progress(monkeypatch):
    engine = random_engine(dim=8, dim_mults=(1, 2))
    monkeypatch.setattr(engine, "_memory_budget", lambda: engine.estimate_bytes(64, 64))
    seen: list[tuple[int, int]] = []
    restorer = Restorer(engine, steps=1, tile=None, overlap=16, on_tile=lambda d, n: seen.append((d, n)))
    assert restorer.tile_for(96, 160) == 64
    out = restorer.run([torch.rand(1, 3, 96, 160)], [None])[0]
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 96, 160)
    assert seen and seen[-1][0] == seen[-1][1] == len(seen) > 1


def test_requested_tile_below_the_minimum_reports_what_runs():
    engine = random_engine(dim=8, dim_mults=(1, 2))
    assert Restorer(engine, steps=1, tile=16).tile_for(200, 300) == engine.min_tile
    assert Restorer(engine, steps=1, tile=0).tile_for(200, 300) == 0


def test_verbose_run_prints_the_clamped_tile_and_tile_progress(tmp_path):
    Image.fromarray(np.full((120, 200, 3), 100, np.uint8)).save(tmp_path / "a.png")
    r = run_cli("--offline", "derain", "a.png", "out.png", "--tile", "16", "-v", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "64-pixel tiles" in err and "16-pixel" not in err
    tiles = [line for line in err.splitlines() if line.strip().startswith("tiles ")]
    assert 1 <= len(tiles) <= 4 and tiles[-1].split()[-1].split("/")[0] == tiles[-1].split("/")[-1], err
