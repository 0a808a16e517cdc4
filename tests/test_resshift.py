"""The ResShift / SinSR engine (engines.resshift) against the official fixtures: schedule, draws, every intermediate, output.

Two levels: with a *replay* network (returns the official x0 estimates in order,
so the sampler math, padding, RNG order, encode/decode and compositing are
checked without the UNet), and end to end with the real UNet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers import case_dir, case_spec, load_case, shared_path
from restorecli.engines.common import pad_end, randn
from restorecli.engines.resshift import engine as rs
from restorecli.engines.resshift import schedule as rsched
from restorecli.errors import UsageError, WeightsError
from restorecli.nets import attention
from restorecli.runtime.load import load_component_file
from restorecli.weights.registry import ModelSpec, load_registry

TOL = 1e-4
CASES = ["sr_x4", "sr_x4_pad", "sr_x4_onestep", "inpaint"]
IMAGE_KEYS = {"lq_01", "mask_01", "output_01", "output_uint8"}


# ---- helpers -------------------------------------------------------------------------


def resshift_spec(cfg: dict[str, Any]) -> ModelSpec:
    """The case's small configs, registered as a weights.toml block would register them."""
    diffusion = cfg["config"]["diffusion"]
    one_step = cfg["case"].endswith("onestep")
    unet = cfg["config"]["unet"]
    return case_spec(
        cfg["case"],
        {
            "small-unet": {"kind": "resshift.unet", **unet},
            "small-vq": {"kind": "resshift.vq", **cfg["config"]["autoencoder"]},
        },
        method="resshift",
        task="inpaint" if unet.get("cond_mask") else "sr",
        scale=diffusion["sf"],
        trained_steps=1 if one_step else diffusion["steps"],
        min_steps=1,
        sampler={
            "kappa": diffusion["kappa"],
            "min_noise_level": diffusion["min_noise_level"],
            "etas_end": diffusion["etas_end"],
            "power": diffusion["schedule_kwargs"]["power"],
            "steps": diffusion["steps"],
            "latent_scale": diffusion["scale_factor"],
            "pad_multiple": unet["lq_size"],
            "one_step": one_step,
        },
        components={"unet": {"arch": "small-unet"}, "autoencoder": {"arch": "small-vq"}},
    )


def checkpoint(case: str, name: str) -> Path:
    path = case_dir("resshift", case) / f"{name}.pth"
    return path if path.exists() else case_dir("resshift", "sr_x4") / f"{name}.pth"


class ReplayNet(nn.Module):
    """Stands in for the UNet: returns the official x0 estimates in call order and keeps its inputs."""

    def __init__(self, outputs: list[Tensor]) -> None:
        super().__init__()
        self.outputs = outputs
        self.calls: list[dict[str, Tensor | None]] = []

    def forward(self, x: Tensor, timesteps: Tensor, lq: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        self.calls.append({"x": x, "t": timesteps, "lq": lq, "mask": mask})
        return self.outputs[len(self.calls) - 1].to(x.device)


def replay_engine(case: str, monkeypatch: pytest.MonkeyPatch) -> tuple[rs.ResShiftEngine, ReplayNet, dict, dict]:
    cfg, t = load_case("resshift", case)
    spec = resshift_spec(cfg)
    replay = ReplayNet([t[k] for k in sorted(k for k in t if k.startswith("x0_pred_"))])
    real_build = rs.ResShiftEngine.build_component

    def build(comp, device="cpu"):
        return replay if comp.kind == rs.UNET_KIND else real_build(comp, device)

    monkeypatch.setattr(rs.ResShiftEngine, "build_component", staticmethod(build))
    states = {"unet": {}, "autoencoder": load_component_file(spec, "autoencoder", checkpoint(case, "autoencoder"))}
    return rs.ResShiftEngine(spec, states), replay, cfg, t


def real_engine(case: str) -> tuple[rs.ResShiftEngine, dict, dict]:
    cfg, t = load_case("resshift", case)
    spec = resshift_spec(cfg)
    states = {name: load_component_file(spec, name, checkpoint(case, name)) for name in spec.components}
    return rs.ResShiftEngine(spec, states), cfg, t


def run_traced(
    engine: rs.ResShiftEngine, t: dict, seed: int, steps: int
) -> tuple[Tensor, dict[str, Tensor], torch.Generator]:
    seen: dict[str, Tensor] = {}
    engine.trace = seen.__setitem__
    gen = torch.Generator().manual_seed(seed)
    out = engine.restore(t["lq_01"], steps=steps, generators=[gen], masks=t.get("mask_01"))
    engine.trace = None
    return out, seen, gen


def assert_matches_fixture(
    out: Tensor,
    seen: dict[str, Tensor],
    gen: torch.Generator,
    cfg: dict,
    t: dict,
    loose: dict[str, float] | None = None,
) -> None:
    """Every intermediate within TOL (or the measured tolerance in `loose`, by key prefix); draws bit-equal."""
    expected = sorted(set(t) - IMAGE_KEYS)
    assert sorted(seen) == expected
    over = {}
    flipped = 0
    for key in expected:
        ours, theirs = seen[key], t[key]
        assert ours.shape == theirs.shape, key
        if key.startswith("code_indices"):
            # A latent sitting halfway between two codebook entries can round to the other one
            # on another CPU (measured: 1 of 8192 on an AMD EPYC AVX2 CPU, sr_x4_pad). At most
            # one in a thousand may differ; then the output gets the chain's own tolerance.
            flipped = int((ours != theirs).sum())
            assert flipped <= ours.numel() // 1000, (key, flipped)
            continue
        if key.startswith(("noise_", "unet_t_")):
            assert torch.equal(ours, theirs), key
            continue
        limit = next((v for k, v in (loose or {}).items() if key.startswith(k)), TOL)
        gap = (ours.double() - theirs.double()).abs()
        if flipped and key.startswith(("quantized", "decoder")):
            # a flipped code changes its own latent pixel and the decoder's receptive field around it
            # (measured: 7.5% of decoder_out elements beyond 1e-4 for one flipped code in sr_x4_pad);
            # the final image must still match within 1e-3 and one uint8 level (below)
            share = (gap > limit).double().mean().item()
            if share > 0.1:
                over[key] = share
            continue
        diff = gap.max().item()
        if diff > limit:
            over[key] = diff
    diff = (out.double() - t["output_01"].double()).abs().max().item()
    if diff > (1e-3 if flipped else TOL):
        over["output_01"] = diff
    assert not over, over
    # The engine really drew these tensors from the caller's generator, and nothing more.
    fresh = torch.Generator().manual_seed(cfg["seed"])
    for key in sorted(k for k in t if k.startswith("noise_")):
        assert torch.equal(randn(t[key].shape, fresh, torch.device("cpu")), t[key])
    assert torch.equal(gen.get_state(), fresh.get_state())
    u8 = torch.round(out.clamp(0, 1) * 255).to(torch.uint8)
    assert (u8.int() - t["output_uint8"].int()).abs().max().item() <= 1


# ---- schedule ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v3_T4_min0.2", "v1_T15_min0.04"])
def test_schedule_matches_official(name: str) -> None:
    ref = json.loads(shared_path("conformance", "resshift", "schedule.json").read_text())[name]
    p = ref["params"]
    sqrt_etas = rsched.exponential_sqrt_etas(
        p["steps"], p["min_noise_level"], p["etas_end"], p["kappa"], p["schedule_kwargs"]["power"]
    )
    chain = rsched.build_schedule(sqrt_etas, p["kappa"], list(range(p["steps"])))
    for field in ("sqrt_etas", "etas", "etas_prev", "alpha", "posterior_variance", "posterior_log_variance_clipped"):
        np.testing.assert_allclose(getattr(chain, field), ref[field], rtol=1e-13, atol=1e-15, err_msg=field)
    np.testing.assert_allclose(chain.posterior_mean_coef1, ref["posterior_mean_coef1"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(chain.posterior_mean_coef2, ref["posterior_mean_coef2"], rtol=1e-13, atol=1e-15)
    divisors = [chain.input_divisor(i).item() for i in range(chain.length)]
    np.testing.assert_allclose(divisors, ref["input_divisor"], rtol=1e-6)
    assert chain.timesteps == tuple(range(p["steps"]))
    assert chain.prior_scale().item() == pytest.approx(p["kappa"] * ref["sqrt_etas"][-1], rel=1e-7)


def test_respacing_follows_space_timesteps() -> None:
    assert rsched.respaced_timesteps(4, 4) == [0, 1, 2, 3]
    assert rsched.respaced_timesteps(4, 2) == [0, 2]
    assert rsched.respaced_timesteps(4, 3) == [0, 1, 2]
    assert rsched.respaced_timesteps(4, 1) == [0]
    assert rsched.respaced_timesteps(15, 4) == [0, 3, 7, 11]
    assert rsched.respaced_timesteps(15, 15) == list(range(15))
    with pytest.raises(UsageError):
        rsched.respaced_timesteps(4, 5)
    full = rsched.exponential_sqrt_etas(15, 0.04, 0.99, 2.0, 0.3)
    chain = rsched.build_schedule(full, 2.0, [0, 3, 7, 11])
    # the respaced chain is rebuilt on the kept etas, as SpacedDiffusion does
    np.testing.assert_array_equal(chain.sqrt_etas, full[[0, 3, 7, 11]])
    np.testing.assert_allclose(chain.etas_prev[1:], full[[0, 3, 7]] ** 2)
    assert chain.posterior_mean_coef1[0] == 0.0 and chain.posterior_mean_coef2[0] == 1.0


# ---- sampler with the official x0 estimates ------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_sampler_with_replayed_network(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, replay, cfg, t = replay_engine(case, monkeypatch)
    out, seen, gen = run_traced(engine, t, cfg["seed"], engine.spec.trained_steps)
    assert_matches_fixture(out, seen, gen, cfg, t)
    # what the network was given besides x_t: the padded LR in [-1, 1] and the mask as mask*2-1
    multiple = cfg["config"]["unet"]["lq_size"]
    lq = t["lq_01"] * (1 - t["mask_01"]) if "mask_01" in t else t["lq_01"]
    h, w = lq.shape[-2:]
    padded = F.pad(lq * 2 - 1, (0, -w % multiple, 0, -h % multiple), mode="reflect")
    for call in replay.calls:
        assert torch.equal(call["lq"], padded)
        if "mask_01" in t:
            assert torch.equal(call["mask"], t["mask_01"] * 2 - 1)
        else:
            assert call["mask"] is None
    if "mask_01" in t:  # outside the mask the output is the input itself
        keep = t["mask_01"].expand_as(out) == 0
        assert (out[keep] - t["lq_01"][keep]).abs().max().item() <= 1e-6


def test_fewer_steps_respace_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, replay, cfg, t = replay_engine("sr_x4", monkeypatch)
    _, seen, _ = run_traced(engine, t, cfg["seed"], steps=2)
    # official timestep numbers are fed (2 then 0), one prior draw plus one per step
    assert [seen[f"unet_t_{i}"].item() for i in range(2)] == [2, 0]
    assert sorted(k for k in seen if k.startswith("noise_")) == ["noise_0", "noise_1", "noise_2"]
    chain = engine.schedule(2)
    prior = t["z_y"] + chain.prior_scale() * t["noise_0"]  # x_T uses the last *kept* eta
    assert (seen["unet_in_0"] - prior / chain.input_divisor(1)).abs().max().item() <= TOL


# ---- end to end with the real UNet ----------------------------------------------------------

# Measured: the small random-weight UNet amplifies input differences about 30x at t=0
# (a 1e-5 perturbation of sr_x4_pad's unet_in_3 moves x0_pred_3 by 3e-4). Differences of
# ~1e-7 relative between equally exact kernels (scaled_dot_product_attention versus the
# explicit softmax, or a different thread count: OMP_NUM_THREADS=1 versus the fixture's 2)
# reach 1.7e-5 on unet_in_3 and 3.2e-4 to 4.4e-4 on x0_pred_3 in sr_x4_pad (below 4e-5
# in the other cases). With reference attention on 2 threads every intermediate is
# bit-equal to the fixture. The decoded output stays within 1e-4 and the codes are equal.
CHAIN_TOL = {"x0_pred_": 1e-3}


@pytest.mark.parametrize("case", CASES)
def test_end_to_end_matches_official(case: str) -> None:
    engine, cfg, t = real_engine(case)
    out, seen, gen = run_traced(engine, t, cfg["seed"], engine.spec.trained_steps)
    assert_matches_fixture(out, seen, gen, cfg, t, loose=CHAIN_TOL)


@pytest.mark.parametrize("case", ["sr_x4_pad", "inpaint"])
def test_end_to_end_with_reference_attention(case: str) -> None:
    """The explicit-softmax path (the benchmark baseline) conforms as well."""
    engine, cfg, t = real_engine(case)
    with attention.reference_mode():
        out, seen, gen = run_traced(engine, t, cfg["seed"], engine.spec.trained_steps)
    assert_matches_fixture(out, seen, gen, cfg, t, loose=CHAIN_TOL)


def test_batch_gives_the_same_result_as_single_images() -> None:
    engine, cfg, t = real_engine("sr_x4")
    other = shared_path("data", "sr", "ImageNet-val-x4", "lq")
    from PIL import Image

    names = sorted(p for p in other.iterdir() if p.suffix == ".png")
    second = torch.from_numpy(np.asarray(Image.open(names[-1]).convert("RGB"), dtype=np.float32) / 255)
    second = second.permute(2, 0, 1)[None]
    first = t["lq_01"]
    assert second.shape == first.shape and not torch.equal(first, second)
    seeds = [cfg["seed"], 99]
    alone = [
        engine.restore(img, steps=2, generators=[torch.Generator().manual_seed(s)])
        for img, s in zip((first, second), seeds)
    ]
    both = engine.restore(
        torch.cat([first, second]), steps=2, generators=[torch.Generator().manual_seed(s) for s in seeds]
    )
    assert (alone[0] - alone[1]).abs().max().item() > 1e-2
    for i in range(2):
        # batch vs single changes only the kernels' rounding: measured 1.4e-5 on an AMD EPYC (AVX2) CPU
        assert (both[i : i + 1] - alone[i]).abs().max().item() <= 1e-4


def test_fewer_steps_run_and_steps_out_of_range_are_refused() -> None:
    engine, cfg, t = real_engine("sr_x4")
    seen: dict[str, Tensor] = {}
    engine.trace = seen.__setitem__
    out = engine.restore(t["lq_01"], steps=2, generators=[torch.Generator().manual_seed(cfg["seed"])])
    assert out.shape == t["output_01"].shape
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (out - t["output_01"]).abs().max().item() > 1e-3  # a different chain, not the 4-step result
    assert [seen[f"unet_t_{i}"].item() for i in range(2)] == [2, 0]
    spec = engine.spec
    assert spec.check_steps(None) == 4
    for bad in (0, 5):
        with pytest.raises(UsageError):
            spec.check_steps(bad)
        with pytest.raises(UsageError):
            engine.schedule(bad)


def test_one_step_model_takes_exactly_one_step() -> None:
    cfg, _ = load_case("resshift", "sr_x4_onestep")
    spec = resshift_spec(cfg)
    assert spec.check_steps(None) == 1
    with pytest.raises(UsageError):
        spec.check_steps(2)
    engine = rs.ResShiftEngine.__new__(rs.ResShiftEngine)  # schedule logic only, no networks needed
    engine.spec, engine.one_step, engine.trained_steps, engine.kappa = spec, True, 15, 2.0
    engine.sqrt_etas = rsched.exponential_sqrt_etas(15, 0.04, 0.99, 2.0, 0.3)
    assert engine.schedule(1).timesteps[-1] == 14
    with pytest.raises(UsageError):
        engine.schedule(2)


# ---- weights, registry, helpers ----------------------------------------------------------------


def test_canonicalize_accepts_wrappers_and_refuses_the_wrong_network(tmp_path: Path) -> None:
    cfg, _ = load_case("resshift", "sr_x4")
    spec = resshift_spec(cfg)
    raw = torch.load(checkpoint("sr_x4", "autoencoder"), map_location="cpu", weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in raw.items()}}, wrapped)
    state = load_component_file(spec, "autoencoder", wrapped)
    assert sorted(state) == sorted(raw)
    with pytest.raises(WeightsError, match="not a ResShift/SinSR UNet"):
        load_component_file(spec, "unet", checkpoint("sr_x4", "autoencoder"))
    with pytest.raises(WeightsError, match="not a ResShift VQ autoencoder"):
        load_component_file(spec, "autoencoder", checkpoint("sr_x4", "unet"))


UNET_KEY_FILES = {
    "resshift-realsr-x4-v1": "resshift_realsrx4_s15_v1.json",
    "resshift-realsr-x4-v2": "resshift_realsrx4_s15_v2.json",
    "resshift-realsr-x4-v3": "resshift_realsrx4_s4_v3.json",
    "resshift-bicsr-x4": "resshift_bicsrx4_s4.json",
    "resshift-inpaint-imagenet": "resshift_inpainting_imagenet_s4.json",
    "resshift-inpaint-face": "resshift_inpainting_face_s4.json",
    "resshift-faceir": "resshift_faceir_s4.json",
    "sinsr-realsr-x4": "SinSR_v1.json",
}
SAMPLERS = {  # (schedule length, min_noise_level, kappa, scale, task, user steps min..max, default)
    "resshift-realsr-x4-v1": (15, 0.04, 2.0, 4, "sr", (1, 15), 15),
    "resshift-realsr-x4-v2": (15, 0.04, 2.0, 4, "sr", (1, 15), 15),
    "resshift-realsr-x4-v3": (4, 0.2, 2.0, 4, "sr", (1, 4), 4),
    "resshift-bicsr-x4": (4, 0.2, 2.0, 4, "sr", (1, 4), 4),
    "resshift-inpaint-imagenet": (4, 0.2, 2.0, 1, "inpaint", (1, 4), 4),
    "resshift-inpaint-face": (4, 0.2, 2.0, 1, "inpaint", (1, 4), 4),
    "resshift-faceir": (4, 0.2, 2.0, 1, "face", (1, 4), 4),
    "sinsr-realsr-x4": (15, 0.04, 2.0, 4, "sr", (1, 1), 1),
}


@pytest.mark.parametrize("name", sorted(UNET_KEY_FILES))
def test_registry_entries_match_official_configs(name: str) -> None:
    spec = load_registry().get(name)
    info = json.loads(shared_path("conformance", "resshift", "keys", UNET_KEY_FILES[name]).read_text())
    unet = spec.components["unet"]
    assert unet.kind == rs.UNET_KIND and unet.file == info["official_file"] and unet.url == info["source_url"]
    assert unet.config == info["config"]
    length, min_noise, kappa, scale, task, (lo, hi), default = SAMPLERS[name]
    s = spec.sampler
    assert (s["steps"], s["min_noise_level"], s["kappa"], s["etas_end"], s["power"]) == (
        length,
        min_noise,
        kappa,
        0.99,
        0.3,
    )
    assert s.get("one_step", False) == name.startswith("sinsr")
    assert s["pad_multiple"] == unet.config["lq_size"]
    assert (spec.scale, spec.task, spec.min_steps, spec.max_steps, spec.default_steps) == (scale, task, lo, hi, default)
    assert spec.components["autoencoder"].kind == rs.VQ_KIND
    assert spec.license and spec.citation and spec.description
    # the autoencoder latent feeds the UNet: channel counts must agree
    assert spec.components["autoencoder"].config["embed_dim"] == unet.config["in_channels"]


def test_registry_defaults() -> None:
    reg = load_registry()
    assert reg.default_for("inpaint").name == "resshift-inpaint-imagenet"
    assert reg.default_for("face").name == "resshift-faceir"
    assert reg.default_for("sr").name == "resshift-realsr-x4-v3"


def test_reflect_pad() -> None:
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)
    assert torch.equal(pad_end(x, 3, 4, "reflect"), F.pad(x, (0, 4, 0, 3), mode="reflect"))
    assert torch.equal(pad_end(x, 0, 0, "reflect"), x)
    big = pad_end(x, 12, 20, "reflect")  # longer than the sides: reflected again
    assert big.shape == (1, 2, 17, 27)
    assert torch.equal(big[..., :5, :7], x)
    assert torch.equal(big[..., 5:9, :7], x.flip(-2)[..., 1:, :])


def test_auto_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _, _, _ = replay_engine("sr_x4", monkeypatch)
    monkeypatch.setattr(engine, "_memory_budget", lambda: 2 << 30)
    assert engine.auto_tile(64, 64) == 0
    assert engine.auto_tile(300, 200) == 0
    tile = engine.auto_tile(8000, 8000)
    assert tile > 0 and tile % engine.pad_multiple == 0
    assert engine.estimate_bytes(tile, tile) <= 2 << 30
    engine.tileable = False
    assert engine.auto_tile(8000, 8000) == 0


def test_auto_tile_full_size_sr() -> None:
    """Full-size x4 SR in fp32 with a 12 GiB budget: small images whole, large ones in 256 px tiles."""
    spec = load_registry().get("resshift-realsr-x4-v3")
    engine = rs.ResShiftEngine.__new__(rs.ResShiftEngine)  # memory model only, no networks needed
    engine.spec, engine.dtype, engine.pad_multiple, engine.tileable = spec, torch.float32, 64, True
    engine.unet_name, engine.vq_name = "unet", "autoencoder"
    engine._memory_budget = lambda: 12 << 30
    assert 80 << 10 <= engine.estimate_bytes(64, 64) / (64 * 64) <= 120 << 10  # ~100 KiB per input px
    assert engine.auto_tile(128, 200) == 0
    assert engine.auto_tile(1000, 700) == 256
