"""DiffIR engine against the official fixtures (Zj-BinXia/DiffIR @ 293f86cd, CPU fp32).

Every conformance case is run end to end through the engine with the official
container file; each intermediate the fixture holds (the five draws, the CPEN
output, the denoiser's x0 estimates, the chain states, the IPR, G's patch
embedding, latent and head, the output before and after cropping, the 8-bit
values) is compared. Full-size networks are only built on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from helpers import case_dir, case_spec, load_case, maxdiff, shared_path
from restorecli.engines.base import load_strict
from restorecli.engines.common import pad_end
from restorecli.engines.diffir import engine as dr
from restorecli.engines.diffir.schedule import chain_timesteps
from restorecli.errors import UsageError, WeightsError, WeightsUnavailable
from restorecli.nets.diffir import SCHEDULE_BUFFERS, build_diffir
from restorecli.runtime.load import convert_files
from restorecli.weights.bundle import read_bundle, write_bundle
from restorecli.weights.checkpoint import read_torch_file
from restorecli.weights.registry import load_registry

TOL_PRIOR = 1e-5  # cpen_c, x0_pred, states, ipr (the fixture's stated tolerance)
TOL = 1e-4  # images
CASES = {"sr_x4": "sr", "realsr_x2": "sr", "realsr_x1": "sr", "deblur": "deblur", "inpaint": "inpaint"}

# registry model -> the key list of its official file (keys/*.json)
KEY_FILES = {
    "diffir-srgan-x4": "DiffIRS2-GAN_SRGAN-x4",
    "diffir-realsr-x4": "DiffIRS2-GAN_RealSR-x4",
    "diffir-realsr-x4-v2": "DiffIRS2-GAN_RealSR-x4",
    "diffir-realsr-x2": "DiffIRS2-GANx2",
    "diffir-realsr-x2-v2": "DiffIRS2-GANx2",
    "diffir-realsr-x1": "DiffIRS2-GANx1",
    "diffir-realsr-x1-v2": "DiffIRS2-GANx1",
    "diffir-deblur": "DiffIRS2_deblur",
    "diffir-celeba": "DiffIRS2-celeba_last",
    "diffir-places": "DiffIRS2-place_last",
    "diffir-places-big": "Big-DiffIRS2-place_last",
}


# ---- helpers -----------------------------------------------------------------------------


def case_engine(case: str) -> tuple[dr.DiffIREngine, dict[str, Any], dict[str, Tensor]]:
    cfg, tensors = load_case("diffir", case)
    task = CASES[case]
    spec = case_spec(  # the case's small network, registered as a weights.toml block would register it
        case,
        {"small": {"kind": f"diffir.{task}", **cfg["config"]}},
        method="diffir",
        task=task,
        scale=cfg["config"].get("scale", 1),
        trained_steps=4,
        min_steps=1,
        sampler={"pad_mode": "symmetric", "output_rounding": "floor"} if task == "inpaint" else {},
        components={"g": {"arch": "small", "file": "checkpoint.pth"}},
    )
    state = dr.DiffIREngine.canonicalize(
        spec.components["g"], read_torch_file(case_dir("diffir", case) / "checkpoint.pth")
    )
    return dr.DiffIREngine(spec, {"g": state}), cfg, tensors


def run_case(
    engine: dr.DiffIREngine, case: str, tensors: dict[str, Tensor], seed: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """Restore the case input with the engine, recording the engine trace and G's inner outputs."""
    rec: dict[str, Tensor] = {}
    engine.trace = lambda name, value: rec.__setitem__(name, value)
    g = engine.net.G
    hooks = [
        g.patch_embed.register_forward_hook(lambda m, i, o: rec.__setitem__("g_patch_embed", o.detach().clone())),
        g.latent[-1].register_forward_hook(lambda m, i, o: rec.__setitem__("g_latent", o.detach().clone())),
    ]
    gen = torch.Generator().manual_seed(seed)
    try:
        if CASES[case] == "inpaint":
            out = engine.restore(tensors["image"], steps=4, generators=[gen], masks=tensors["mask_raw"])
        else:
            out = engine.restore(tensors["lq"], steps=4, generators=[gen])
    finally:
        for h in hooks:
            h.remove()
        engine.trace = None
    return out, rec


# ---- conformance ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_conformance_case(case: str) -> None:
    engine, cfg, t = case_engine(case)
    out, rec = run_case(engine, case, t, cfg["seed"])
    # the seed contract: five randn(1, 256) draws in the official order
    for k in range(5):
        assert torch.equal(rec[f"noise_{k}"], t[f"noise_{k}"]), f"draw {k}"
    assert maxdiff(rec["cpen_c"], t["cpen_c"]) <= TOL_PRIOR
    for k in range(4):
        assert maxdiff(rec[f"x0_pred_{k}"], t["x0_pred"][k]) <= TOL_PRIOR
    for k in range(5):
        assert maxdiff(rec[f"state_{k}"], t["states"][k]) <= TOL_PRIOR
    assert maxdiff(rec["ipr"], t["ipr"]) <= TOL_PRIOR
    assert maxdiff(rec["g_patch_embed"], t["g_patch_embed"]) <= TOL
    assert maxdiff(rec["g_latent"], t["g_latent"]) <= TOL
    task = CASES[case]
    assert maxdiff(rec["g_head"], t["g_tail" if task == "sr" else "g_output_conv"]) <= TOL
    if task == "inpaint":
        assert maxdiff(rec["net_input"], t["net_input"]) == 0.0
        assert maxdiff(rec["out_raw"], t["inpainted_padded"]) <= TOL
        assert maxdiff(out, t["inpainted"].clamp(0, 1)) <= TOL + 1 / 255  # output is floor-quantised
    else:
        if task == "sr":  # the padded LQ, unshuffled by 4/scale for x2 and x1
            assert maxdiff(F.pixel_shuffle(rec["net_input"], engine.unshuffle), t["lq_padded"]) == 0.0
        assert maxdiff(rec["out_raw"], t["out_raw"]) <= TOL
        assert maxdiff(out, t.get("out_cropped", t["out_raw"]).clamp(0, 1)) <= TOL
    # 8 bits as a rounding writer stores them equal the official PNG values
    u8 = torch.floor(out * 255 + 0.5)
    wrong = (u8 != t["out_uint8"]).sum().item()
    assert maxdiff(u8, t["out_uint8"]) <= 1 and wrong <= max(1, u8.numel() // 10000), wrong


def test_chunked_forward_matches_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small chunk limit: split attention, grouped FFN and banded SR tail give the official outputs."""
    from restorecli.nets import dirformer

    calls = {"qkv_part": 0, "ffn_group": 0, "tail": 0}

    def counted(cls: type, name: str, key: str, when: Any = lambda *a: True) -> None:
        orig = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if when(*args):
                calls[key] += 1
            return orig(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counted(dirformer.PriorAttention, "_projection", "qkv_part", lambda self, x, part: part is not None)
    counted(dirformer.PriorFeedForward, "_group", "ffn_group")
    counted(torch.nn.Sequential, "forward", "tail", lambda self, x: isinstance(self, dirformer.UpsampleTail))
    for case in ("sr_x4", "deblur"):
        engine, cfg, t = case_engine(case)
        engine.net.G.set_chunk_bytes(640_000)
        _, rec = run_case(engine, case, t, cfg["seed"])
        assert maxdiff(rec["out_raw"], t["out_raw"]) <= 1e-5
    assert calls["qkv_part"] > 0 and calls["ffn_group"] > 0 and calls["tail"] > 2, calls


def test_seed_stream_and_batch_independence() -> None:
    engine, cfg, t = case_engine("deblur")
    lq = t["lq"][:, :, :32, :32]
    # one generator: the restore consumes exactly five (1, 256) draws
    g = torch.Generator().manual_seed(7)
    ref = torch.Generator().manual_seed(7)
    engine.restore(lq, steps=4, generators=[g])
    for _ in range(5):
        torch.randn(1, 256, generator=ref)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=ref))
    # a batch equals its images run alone with the same per-image seeds
    other = lq.flip(-1)
    batch = engine.restore(
        torch.cat([lq, other]), steps=4, generators=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    )
    alone0 = engine.restore(lq, steps=4, generators=[torch.Generator().manual_seed(0)])
    alone1 = engine.restore(other, steps=4, generators=[torch.Generator().manual_seed(1)])
    assert maxdiff(batch[:1], alone0) <= 1e-6 and maxdiff(batch[1:], alone1) <= 1e-6
    # a different seed changes the result (only draw 0 matters)
    seed1 = engine.restore(lq, steps=4, generators=[torch.Generator().manual_seed(1)])
    assert maxdiff(seed1, alone0) > 1e-4


def test_deblur_pads_sizes_the_official_code_refuses() -> None:
    engine, _, t = case_engine("deblur")
    lq = t["lq"][:, :, :61, :45]
    out = engine.restore(lq, steps=4, generators=[torch.Generator().manual_seed(0)])
    assert out.shape == lq.shape and 0 <= out.min() and out.max() <= 1


def test_deblur_reflect_pads_to_a_multiple_of_8_at_the_bottom_and_right() -> None:
    """The official deblurring test pads with F.pad(mode='reflect') to a multiple of 8, then crops the output back."""
    engine, _, t = case_engine("deblur")
    lq = t["lq"][:, :, :61, :45]
    rec: dict[str, Tensor] = {}
    engine.trace = lambda name, value: rec.__setitem__(name, value)
    try:
        engine.restore(lq, steps=4, generators=[torch.Generator().manual_seed(0)])
    finally:
        engine.trace = None
    assert torch.equal(rec["net_input"], F.pad(lq, (0, 3, 0, 3), mode="reflect"))


def test_inpaint_needs_a_mask() -> None:
    engine, _, t = case_engine("inpaint")
    with pytest.raises(UsageError):
        engine.restore(t["image"], steps=4, generators=[torch.Generator()])


# ---- schedule and steps --------------------------------------------------------------------------


def test_schedule_buffers_are_the_official_float32() -> None:
    sched = json.loads(shared_path("conformance", "diffir", "schedule.json").read_text())["linear_4step"]
    engine, _, _ = case_engine("deblur")
    for name in SCHEDULE_BUFFERS:
        have = getattr(engine.net.diffusion, name)
        want = torch.tensor(sched["float32_as_stored"][name], dtype=torch.float32)
        assert torch.equal(have, want), name
    keep, c1, c2 = engine.chain(4)
    assert keep == [0, 1, 2, 3] and torch.equal(c1, engine.net.diffusion.posterior_mean_coef1)
    # the sampler's coefficients are the official float32 values, not only whatever the buffers hold
    stored = sched["float32_as_stored"]
    assert torch.equal(c1, torch.tensor(stored["posterior_mean_coef1"], dtype=torch.float32))
    assert torch.equal(c2, torch.tensor(stored["posterior_mean_coef2"], dtype=torch.float32))
    # the config recomputation gives the same float32 buffers as the file
    fresh = dr.DiffIREngine.build_component(engine.spec.components["g"])
    for name in SCHEDULE_BUFFERS:
        assert torch.equal(getattr(fresh.diffusion, name), getattr(engine.net.diffusion, name)), name


def test_respaced_chain() -> None:
    engine, _, t = case_engine("deblur")
    assert chain_timesteps(4, 1) == [3]
    assert chain_timesteps(4, 2) == [0, 3]
    assert chain_timesteps(4, 3) == [0, 2, 3]
    keep, c1, c2 = engine.chain(1)
    assert keep == [3] and c1.tolist() == [1.0] and c2.tolist() == [0.0]
    keep, c1, c2 = engine.chain(2)
    assert c1[0].item() == pytest.approx(1.0) and c2[0].item() == 0.0  # last step returns its x0 estimate
    # one step: IPR = the denoiser's x0 estimate at t=3 from the start draw; 2 draws in all
    rec: dict[str, Tensor] = {}
    engine.trace = lambda n, v: rec.__setitem__(n, v)
    engine.restore(t["lq"], steps=1, generators=[torch.Generator().manual_seed(0)])
    engine.trace = None
    assert "noise_2" not in rec and torch.equal(rec["noise_1"], t["noise_1"])
    assert maxdiff(rec["ipr"], t["x0_pred"][0]) <= TOL_PRIOR
    with pytest.raises(UsageError):
        engine.chain(5)


def test_registry_accepts_only_the_trained_steps() -> None:
    spec = load_registry().get("diffir-deblur")
    assert spec.check_steps(None) == 4
    with pytest.raises(UsageError, match="--steps 4"):
        spec.check_steps(2)


# ---- checkpoint layouts ------------------------------------------------------------------------


def _official(case: str) -> Any:
    return read_torch_file(case_dir("diffir", case) / "checkpoint.pth")


def test_basicsr_container_uses_params_ema() -> None:
    obj = _official("sr_x4")
    cfg, _ = load_case("diffir", "sr_x4")
    state = dr.canonical_state(obj, cfg["config"])
    ema = obj["params_ema"]
    assert set(state) == {k for k in ema if not k.startswith(("diffusion.model.", "diffusion.condition."))}
    assert all(torch.equal(state[k], ema[k]) for k in state)
    assert not torch.equal(obj["params"]["G.patch_embed.proj.weight"], ema["G.patch_embed.proj.weight"])
    # a bare state dict (params_ema alone) is the same thing
    bare = dr.canonical_state(dict(ema), cfg["config"])
    assert set(bare) == set(state)


def test_lightning_container_strips_exactly_generator() -> None:
    obj = _official("inpaint")
    cfg, _ = load_case("diffir", "inpaint")
    state = dr.canonical_state(obj, cfg["config"])
    inner = obj["state_dict"]
    assert any(k.startswith("generatorS1.") for k in inner)
    assert all(f"generator.{k}" in inner for k in state)
    assert not any(k.startswith(("S1.", "generatorS1", "E.")) for k in state)
    net = build_diffir("diffir.inpaint", cfg["config"])
    load_strict(net, state, "inpaint")


def _refused(obj: Any, config: dict[str, Any], match: str) -> None:
    with pytest.raises(WeightsError, match=match) as err:
        dr.canonical_state(obj, config)
    assert "\n" not in str(err.value)


def test_other_layouts_are_refused() -> None:
    cfg, _ = load_case("diffir", "deblur")
    c = cfg["config"]
    ema = dict(_official("deblur")["params_ema"])
    _refused([1, 2], c, "not a DiffIR checkpoint")
    _refused({"model": {"a": 1}}, c, "not a DiffIR checkpoint")
    _refused({"state_dict": {"generatorS1.G.x": torch.zeros(1)}}, c, "no 'generator")
    _refused({"E.0.weight": torch.zeros(1), "G.patch_embed.proj.weight": torch.zeros(1)}, c, "stage-1")
    _refused({**ema, "net.extra": torch.zeros(1)}, c, "unexpected key 'net.extra'")
    bad = dict(ema)
    key = next(k for k in bad if k.startswith("diffusion.model."))
    bad[key] = bad[key] + 1
    _refused({"params_ema": bad}, c, "differ")
    bad = {k: v for k, v in ema.items() if not k.startswith("denoise.")}
    _refused(bad, c, "not its twin")
    bad = dict(ema)
    bad["diffusion.posterior_mean_coef1"] = bad["diffusion.posterior_mean_coef1"] * 1.01
    _refused(bad, c, "not the linear schedule")
    bad = {k: v for k, v in ema.items() if k != "diffusion.betas"}
    _refused(bad, c, "lacks the schedule buffer")


def _meta_official(keyfile: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The full-size official container of a key list, with meta tensors (shapes only)."""
    info = json.loads(shared_path("conformance", "diffir", "keys", f"{keyfile}.json").read_text())
    state = {k: torch.empty(v["shape"], device="meta") for k, v in info["keys"].items()}
    if info["prefix"] == "generator.":
        teacher = {f"generatorS1.E.{i}.weight": torch.empty(1, device="meta") for i in range(3)}
        obj: dict[str, Any] = {"state_dict": {**{f"generator.{k}": v for k, v in state.items()}, **teacher}}
    else:
        obj = {"params": state, "params_ema": state}
    return info, obj


@pytest.mark.parametrize("model", list(KEY_FILES))
def test_full_size_keys(model: str) -> None:
    """The registry entry builds the official network: same keys, order, shapes, parameter count."""
    spec = load_registry().get(model)
    comp = spec.components["g"]
    info, obj = _meta_official(KEY_FILES[model])
    net = dr.DiffIREngine.build_component(comp, device="meta")
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    state = dr.DiffIREngine.canonicalize(comp, obj)
    assert list(own) == list(state)
    assert own == {k: tuple(v.shape) for k, v in state.items()}
    assert sum(p.numel() for p in net.parameters()) == info["params"]
    dropped = set(info["keys"]) - set(state)
    assert dropped and all(k.startswith(("diffusion.model.", "diffusion.condition.")) for k in dropped)
    cfg = {k: v for k, v in comp.config.items()}
    assert {k: cfg[k] for k in info["config"]} == info["config"]


# ---- registry ----------------------------------------------------------------------------------


def test_registry_entries() -> None:
    reg = load_registry()
    expect = {
        "diffir-srgan-x4": ("sr", 4),
        "diffir-realsr-x4": ("sr", 4),
        "diffir-realsr-x2": ("sr", 2),
        "diffir-realsr-x1": ("sr", 1),
        "diffir-deblur": ("deblur", 1),
        "diffir-celeba": ("inpaint", 1),
        "diffir-places": ("inpaint", 1),
        "diffir-places-big": ("inpaint", 1),
    }
    for name, (task, scale) in expect.items():
        spec = reg.get(name)
        assert (spec.method, spec.task, spec.scale, spec.trained_steps) == ("diffir", task, scale, 4)
        comp = spec.components["g"]
        assert comp.file and comp.sources and comp.sources[0].kind == "manual"
        assert comp.sources[0].url.startswith("https://drive.google.com/drive/folders/")
        assert spec.license and spec.citation
    assert reg.default_for("deblur").name == "diffir-deblur"
    assert reg.resolve("diffir-celeba", "inpaint").name == "diffir-celeba"


def test_missing_weights_say_what_to_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from restorecli.runtime.load import ensure_bundle

    for var in ("RESTORECLI_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    spec = load_registry().get("diffir-realsr-x2")
    with pytest.raises(WeightsUnavailable) as err:
        ensure_bundle(spec, cache_dir=tmp_path, quiet=True)
    msg = str(err.value)
    assert "DiffIRS2-GANx2.pth" in msg and "drive.google.com/drive/folders/1G3Ep0xd" in msg
    assert "restore convert diffir-realsr-x2 g=DiffIRS2-GANx2.pth" in msg and "\n" not in msg


def test_convert_and_run_through_the_registry(tmp_path: Path) -> None:
    """Official file -> bundle -> engine under the registry name (small config from an overlay)."""
    cfg, t = load_case("diffir", "deblur")
    overlay = tmp_path / "small.toml"
    lines = ["[arch.diffir-deblur]"] + [f"{k} = {json.dumps(v)}" for k, v in cfg["config"].items()]
    overlay.write_text("\n".join(lines) + "\n")
    spec = load_registry((overlay,)).get("diffir-deblur")
    states, sources = convert_files(spec, {"g": case_dir("diffir", "deblur") / "checkpoint.pth"})
    bundle = write_bundle(tmp_path / "b.safetensors", spec, states, sources)
    engine = dr.DiffIREngine(spec, read_bundle(bundle, spec))
    out = engine.restore(t["lq"], steps=4, generators=[torch.Generator().manual_seed(cfg["seed"])])
    assert maxdiff(out, t["out_raw"].clamp(0, 1)) <= TOL


# ---- padding and memory ----------------------------------------------------------------------------


@pytest.mark.parametrize("size,pad", [(5, 3), (5, 4), (3, 7), (1, 2), (6, 0)])
def test_padding_matches_numpy_and_torch(size: int, pad: int) -> None:
    x = torch.arange(2 * size * size, dtype=torch.float32).view(1, 2, size, size)
    sym = pad_end(x, pad, pad, "symmetric")
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (0, pad), (0, pad)), mode="symmetric")
    assert np.array_equal(sym.numpy(), want)
    ref = pad_end(x, pad, pad, "reflect")
    if size > 1:
        want = np.pad(x.numpy(), ((0, 0), (0, 0), (0, pad), (0, pad)), mode="reflect")
        assert np.array_equal(ref.numpy(), want)
    if pad < size:
        assert torch.equal(ref, F.pad(x, (0, pad, 0, pad), mode="reflect"))


def test_auto_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _, _ = case_engine("deblur")
    engine.config = dict(engine.config, dim=48)  # estimate as for the full-size deblurring model
    assert engine.auto_tile(256, 256) == 0
    full_hd = engine.estimate_bytes(1080, 1920)
    monkeypatch.setattr(engine, "_memory_budget", lambda: full_hd + 1)
    assert engine.auto_tile(1080, 1920) == 0
    monkeypatch.setattr(engine, "_memory_budget", lambda: full_hd // 3)
    tile = engine.auto_tile(1080, 1920)
    assert 0 < tile < 1920 and engine.estimate_bytes(min(tile, 1080), tile) <= full_hd // 3
    # the estimate grows with the image
    assert engine.estimate_bytes(2160, 3840) > full_hd > engine.estimate_bytes(540, 960)
