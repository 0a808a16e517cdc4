"""DDO (Dynamic Dual-Output diffusion) against the official fixtures in ../shared/conformance/ddo.

The fixtures come from the official code (yanivbenny/dual_diffusion) on CPU fp32
with a small random U-Net (channels 32, one res block). The registry's
`ddo-cifar10` model is reused with that small config, so the registry entry,
the checkpoint reader and the engine are what is tested. Full-size networks are
only built on the meta device.

Tolerances: 1e-4 max abs on floats (the case files' own) for the free-running
10-step chains, which drift by float rounding of the network (~3e-6 per call:
SDPA, fused SiLU, convolution kernels) amplified by sqrt(1/abar - 1) ~ 61 at
t=900: measured 2.1e-5 on the states and 4.4e-5 on the clipped x0 mix. The
per-step checks from the official states are tighter (network 1e-5, sampler
arithmetic 1e-6; measured 3.2e-6 and 0).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import typing
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import assert_png_matches, maxdiff, run_cli, shared_path
from restorecli.engines.base import Engine
from restorecli.engines.ddo.engine import DDOEngine, lightning_states
from restorecli.engines.ddo.schedule import (
    base_betas,
    build_chain,
    draw_training_inputs,
    dual_output_loss,
    implicit_mean,
    mix_x0,
    posterior_mean,
    respace,
    respaced_timesteps,
)
from restorecli.errors import UsageError, WeightsError
from restorecli.runtime.load import load_component_file
from restorecli.weights.checkpoint import InertObject, read_torch_file
from restorecli.weights.registry import load_registry

ATOL = 1e-4
SMALL = {"channels": 32, "n_res_blocks": 1}  # the fixtures' U-Net; the rest is the CIFAR-10 config


def ddo(*parts: str) -> Path:
    return shared_path("conformance", "ddo", *parts)


# Tiny networks run fastest on one thread, and OpenMP threads stall badly on a busy shared machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_spec():
    spec = load_registry().get("ddo-cifar10")
    comp = spec.components["unet"]
    comp = dataclasses.replace(comp, config={**comp.config, **SMALL})
    return dataclasses.replace(spec, components={"unet": comp})


@pytest.fixture(scope="module")
def checkpoint():
    return read_torch_file(ddo("ddim10", "checkpoint.pth"))


@pytest.fixture(scope="module")
def engine(small_spec):
    state = load_component_file(small_spec, "unet", ddo("ddim10", "checkpoint.pth"))
    return DDOEngine(small_spec, {"unet": state})


def tensors(case: str) -> dict[str, torch.Tensor]:
    return load_file(str(ddo(case, "tensors.safetensors")))


def case_json(case: str) -> dict:
    return json.loads(ddo(case, "case.json").read_text())


# ---- registry, network and checkpoint ---------------------------------------------------


def test_registry_entry_matches_the_official_cifar10_config():
    spec = load_registry().get("ddo-cifar10")
    official = json.loads(ddo("keys", "cifar10_dualx_lightning.json").read_text())["config"]
    assert spec.method == "ddo" and spec.task == "generate" and spec.origin == "user-trained"
    assert [s.kind for s in spec.components["unet"].sources] == ["manual"]
    cfg = spec.components["unet"].config
    for key in ("in_channels", "out_channels", "channels", "channel_multiplier", "n_res_blocks", "attn_strides"):
        assert cfg[key] == official["model"][key], key
    assert cfg["resolution"] == official["dataset"]["resolution"]
    assert spec.sampler["schedule"] == {k: official["model"]["schedule"][k] for k in spec.sampler["schedule"]}
    assert spec.sampler["type"] in ("ddim", "ancestral") and spec.sampler["respacing"] in ("ddim", "ddodm")


def test_full_size_keys_and_shapes_match_the_official_checkpoint():
    keys = json.loads(ddo("keys", "cifar10_dualx_lightning.json").read_text())
    spec = load_registry().get("ddo-cifar10")
    net = DDOEngine.build_component(spec.components["unet"], device="meta")
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    for prefix in ("ema.", "model."):
        official = {k[len(prefix) :]: tuple(v["shape"]) for k, v in keys["keys"].items() if k.startswith(prefix)}
        assert own == official
    assert sum(p.numel() for p in net.parameters()) == keys["params"] == 35_750_919


def test_canonicalize_takes_the_ema_weights(small_spec, checkpoint):
    comp = small_spec.components["unet"]
    state = DDOEngine.canonicalize(comp, checkpoint)
    sd = checkpoint["state_dict"]
    assert set(state) == {k[4:] for k in sd if k.startswith("ema.")}
    assert all(torch.equal(state[k], sd["ema." + k]) for k in state)
    assert not torch.equal(state["conv_out.weight"], sd["model.conv_out.weight"])  # online != EMA in the fixture
    online_only = {"state_dict": {k: v for k, v in sd.items() if not k.startswith("ema.")}}
    assert torch.equal(DDOEngine.canonicalize(comp, online_only)["conv_out.weight"], sd["model.conv_out.weight"])
    assert DDOEngine.canonicalize(comp, state).keys() == state.keys()  # a plain state dict passes through
    parts = lightning_states(checkpoint)
    assert set(parts) == {"model", "ema", "diffusion"} and len(parts["diffusion"]) == 14


@pytest.mark.parametrize(
    "bad",
    [
        {"state_dict": {"diffusion.betas": torch.zeros(3)}},
        {"state_dict": {"ema.x": "not a tensor"}},
        [1, 2, 3],
    ],
)
def test_canonicalize_refuses_what_is_not_a_ddo_network(small_spec, bad):
    with pytest.raises(WeightsError):
        DDOEngine.canonicalize(small_spec.components["unet"], bad)


def _save_with_fake_omegaconf(path: Path, payload: dict) -> None:
    """torch.save `payload` with hyper_parameters pickling OmegaConf-like objects, as a real Lightning file.

    The real structure (DictConfig/ListConfig/AnyNode with ContainerMetadata,
    typing.Any, builtins types and a defaultdict resolver cache) is built from
    stand-in classes registered under omegaconf's module names only while saving.
    """
    names = {
        "omegaconf": None,
        "omegaconf.dictconfig": "DictConfig",
        "omegaconf.listconfig": "ListConfig",
        "omegaconf.nodes": "AnyNode",
        "omegaconf.base": "ContainerMetadata",
    }
    classes = {}
    for modname, clsname in names.items():
        mod = types.ModuleType(modname)
        if clsname:
            classes[clsname] = type(clsname, (), {"__module__": modname})
            setattr(mod, clsname, classes[clsname])
        sys.modules[modname] = mod
    try:

        def obj(cls: str, **state):
            inst = classes[cls]()
            inst.__dict__.update(state)
            return inst

        def meta(**extra):
            fields = dict(
                ref_type=typing.Any,
                object_type=dict,
                optional=True,
                key=None,
                flags={"struct": True},
                resolver_cache=defaultdict(dict),
                key_type=typing.Any,
                element_type=typing.Any,
            )
            return obj("ContainerMetadata", **{**fields, **extra})

        mults = obj("ListConfig", _metadata=meta(), _content=[obj("AnyNode", _val=m, _metadata=meta()) for m in (1, 2)])
        conf = obj(
            "DictConfig",
            _metadata=meta(),
            _parent=None,
            _content={"channels": obj("AnyNode", _val=32, _metadata=meta(ref_type=int)), "mult": mults},
        )
        torch.save({**payload, "hyper_parameters": {"conf": conf}}, path)
    finally:
        for modname in names:
            sys.modules.pop(modname, None)


def test_real_lightning_file_with_pickled_omegaconf_loads_safely(tmp_path, small_spec, checkpoint):
    path = tmp_path / "last.ckpt"
    _save_with_fake_omegaconf(path, {"state_dict": checkpoint["state_dict"], "epoch": 3})
    with pytest.raises(Exception):  # noqa: B017 - any refusal: what plain weights_only loading does with it
        torch.load(path, weights_only=True)
    obj = read_torch_file(path)
    assert isinstance(obj["hyper_parameters"]["conf"], InertObject)
    assert "omegaconf" not in sys.modules  # nothing was imported
    state = load_component_file(small_spec, "unet", path)
    assert all(torch.equal(state[k], checkpoint["state_dict"]["ema." + k]) for k in state)


def test_file_pickling_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload()}, path)
    with pytest.raises(WeightsError, match="mkdir"):
        read_torch_file(path)
    assert not marker.exists()


# ---- schedule -------------------------------------------------------------------------


def test_base_chain_equals_the_official_float32_buffers(checkpoint):
    chain = build_chain(base_betas({"type": "linear", "beta_start": 1e-4, "beta_end": 0.02, "n_timestep": 1000}))
    sched = json.loads(ddo("schedule.json").read_text())["base"]
    assert torch.equal(chain.alphas_cumprod, torch.tensor(sched["alphas_cumprod_float32_buffer"], dtype=torch.float32))
    buffers = {k[len("diffusion.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("diffusion.")}
    shared = [f.name for f in dataclasses.fields(chain) if f.name in buffers]
    assert len(shared) >= 11
    for name in shared:
        assert torch.equal(getattr(chain, name), buffers[name]), name


@pytest.mark.parametrize("mode", ["ddim", "ddodm"])
@pytest.mark.parametrize("steps", [5, 10, 20])
def test_respaced_tables_equal_the_official(mode, steps):
    ref = json.loads(ddo("schedule.json").read_text())["respacing"][f"{mode}_N{steps}"]
    base = build_chain(base_betas({"type": "linear", "beta_start": 1e-4, "beta_end": 0.02, "n_timestep": 1000}))
    keep = respaced_timesteps(1000, steps, mode)
    assert keep == ref["timestep_map"]
    chain = respace(base, keep)
    assert list(chain.timesteps) == ref["timestep_map"]
    for ours, theirs in [
        (chain.betas, "betas"),
        (chain.alphas_cumprod, "alphas_cumprod"),
        (chain.alphas_cumprod_prev, "alphas_cumprod_prev"),
        (chain.posterior_mean_coef1, "posterior_mean_coef1"),
        (chain.posterior_mean_coef2, "posterior_mean_coef2"),
        (chain.log_var("fixedlarge"), "fixedlarge_log_var"),
    ]:
        torch.testing.assert_close(ours, torch.tensor(ref[theirs], dtype=torch.float32), rtol=1e-6, atol=0, msg=theirs)


def test_respacing_rules_follow_the_official_arithmetic(engine):
    assert respaced_timesteps(1000, 3, "ddim") == [0, 333, 666, 999]  # more steps than asked, as officially
    assert respaced_timesteps(1000, 3, "ddodm") == [331, 665, 999]  # -1000 // 3 == -334
    assert respaced_timesteps(1000, 1, "ddodm") == [999]
    assert engine.chain(1000) is engine.base_chain  # no respacing at the trained length
    assert list(engine.chain(10, "ddodm").timesteps) == list(range(99, 1000, 100))
    with pytest.raises(UsageError):
        respaced_timesteps(1000, 1001, "ddim")
    with pytest.raises(UsageError):
        respaced_timesteps(1000, 10, "uniform")


# ---- samplers -------------------------------------------------------------------------


@pytest.mark.parametrize("case,sampler", [("ddim10", "ddim"), ("ddpm10", "ancestral")])
def test_each_step_from_the_official_state(engine, case, sampler):
    """One step at a time from the official x_t: network, gate mix, clipping and update."""
    ref = tensors(case)
    chain = engine.chain(10, "ddim")
    assert case_json(case)["sampler"]["timestep_map"] == list(chain.timesteps)
    log_var = chain.log_var("fixedlarge")
    for k in range(10):
        i = int(ref["step_t_spaced"][k, 0])
        assert chain.timesteps[i] == int(ref["step_t_model"][k, 0])
        x = ref["step_state"][k]
        out = engine._predict(x, chain.timesteps[i], 0)
        assert maxdiff(out, ref["step_raw_out"][k]) < 1e-5  # measured 3.2e-6 (conv/attention rounding)
        parts = mix_x0(chain, i, x, ref["step_raw_out"][k])
        for name in ("gate", "x0_from_eps", "x0_mix_unclipped"):  # bit-exact on the dev machine
            assert maxdiff(parts[name], ref[f"step_{name}"][k]) < 1e-6, (k, name)
        x0 = parts["x0_mix_unclipped"].clamp(-1, 1)
        assert maxdiff(x0, ref["step_x0_mix"][k]) < 1e-6
        if sampler == "ddim":
            mean = implicit_mean(chain, i, x, parts["x0_mix_unclipped"], x0)
        else:
            mean = posterior_mean(chain, i, x0, x)
            assert torch.equal(log_var[i].expand(2), ref["step_log_var"][k])
        assert maxdiff(mean, ref["step_mean"][k]) < 1e-6


@pytest.mark.parametrize("case,sampler", [("ddim10", "ddim"), ("ddpm10", "ancestral")])
def test_full_chain_reproduces_the_official_batch(engine, case, sampler):
    ref = tensors(case)
    gen = torch.Generator().manual_seed(case_json(case)["seed"])
    rec: dict[str, list[torch.Tensor]] = defaultdict(list)
    noise = torch.randn((2, 3, 32, 32), generator=gen)
    assert torch.equal(noise, ref["noise_0"])
    final = engine.sample(
        noise, engine.chain(10), sampler=sampler, generator=gen, trace=lambda name, value: rec[name].append(value)
    )
    for name in ("state", "raw_out", "x0_mix", "mean"):
        assert maxdiff(torch.stack(rec[name]), ref[f"step_{name}"]) < ATOL, name
    if sampler == "ancestral":
        assert torch.equal(torch.stack(rec["noise"]), ref["step_noise"])  # every draw, the last one included
    else:
        assert "noise" not in rec
    assert maxdiff(final, ref["final"]) < ATOL

    # generate() makes its own draws: x_T for the batch first, then (ancestral) one per step
    drawn: dict[str, list[torch.Tensor]] = defaultdict(list)
    engine.trace = lambda name, value: drawn[name].append(value)
    try:
        images = engine.generate(
            2, steps=10, generator=torch.Generator().manual_seed(case_json(case)["seed"]), sampler=sampler
        )
    finally:
        engine.trace = None
    assert torch.equal(drawn["state"][0], ref["noise_0"])
    if sampler == "ancestral":
        assert torch.equal(torch.stack(drawn["noise"]), ref["step_noise"])
    assert images.dtype == torch.float32 and images.shape == (2, 3, 32, 32)
    assert maxdiff(images * 2 - 1, ref["final_clipped"]) < ATOL
    as_uint8 = (images * 255 + 0.5).floor()
    assert maxdiff(as_uint8, ref["final_uint8"]) <= 1


def test_registry_sampler_type_is_used_and_can_be_overridden(small_spec, engine):
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    default = engine.generate(2, steps=4, generator=gen())
    assert torch.equal(default, engine.generate(2, steps=4, generator=gen(), sampler="ddim"))
    ancestral_spec = dataclasses.replace(small_spec, sampler={**small_spec.sampler, "type": "ancestral"})
    ancestral = DDOEngine(ancestral_spec, {"unet": engine.unet.state_dict()})
    assert torch.equal(
        ancestral.generate(2, steps=4, generator=gen()),
        engine.generate(2, steps=4, generator=gen(), sampler="ancestral"),
    )
    assert maxdiff(default, ancestral.generate(2, steps=4, generator=gen())) > 1e-2
    with pytest.raises(UsageError):
        engine.generate(2, steps=4, generator=gen(), sampler="euler")


@pytest.mark.parametrize("seed", [0, 1234])
def test_seed_contract_draws_equal_torch_manual_seed(engine, seed):
    """Generator seeded S == the official draws after torch.manual_seed(S): x_T, then one per step."""
    rec: dict[str, list[torch.Tensor]] = defaultdict(list)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((3, 3, 32, 32), generator=gen)
    engine.sample(
        noise, engine.chain(4), sampler="ancestral", generator=gen, trace=lambda name, value: rec[name].append(value)
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        official = [torch.randn((3, 3, 32, 32)) for _ in range(1 + len(engine.chain(4)))]
    assert torch.equal(rec["state"][0], official[0])
    assert all(torch.equal(a, b) for a, b in zip(rec["noise"], official[1:], strict=True))


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_batch_size_never_changes_the_result(engine, sampler):
    whole = engine.generate(3, steps=3, generator=torch.Generator().manual_seed(7), sampler=sampler)
    chunked = engine.generate(3, steps=3, generator=torch.Generator().manual_seed(7), sampler=sampler, batch_size=2)
    # Batch sizes change the convolution kernels' rounding only: measured 1.9e-5 on an AMD EPYC
    # (AVX2) CPU, below 1e-5 on others; 1e-4 is still far below any real difference (1e-2).
    assert maxdiff(whole, chunked) < 1e-4
    first = engine.generate(1, steps=3, generator=torch.Generator().manual_seed(7), sampler=sampler)
    assert maxdiff(first, whole[:1]) > 0 or sampler == "ddim"  # ancestral draws have the batch's shape


def test_restore_is_refused_with_a_usage_error(engine):
    assert isinstance(engine, Engine) and not engine.tileable
    with pytest.raises(UsageError, match="generat"):
        engine.restore(torch.zeros(1, 3, 32, 32), steps=10, generators=[torch.Generator()])


# ---- training objective ---------------------------------------------------------------


def test_training_loss_matches_the_official(small_spec, checkpoint):
    ref = tensors("train_loss")
    net = DDOEngine.build_component(small_spec.components["unet"])
    net.load_state_dict(lightning_states(checkpoint)["model"])
    net.eval()
    chain = build_chain(base_betas(small_spec.sampler["schedule"]))
    t, noise = draw_training_inputs(ref["x0"], chain, torch.Generator().manual_seed(42))
    assert torch.equal(t, ref["t"]) and torch.equal(noise, ref["noise"])
    with torch.no_grad():
        loss = dual_output_loss(net, chain, ref["x0"], t, noise)
    for name in ("loss_x_0", "loss_noise", "loss_mean", "loss_per_sample"):
        ours = loss.per_sample if name == "loss_per_sample" else getattr(loss, name)
        torch.testing.assert_close(ours, ref[name], rtol=1e-5, atol=0, msg=name)
    torch.testing.assert_close(loss.loss.reshape(1), ref["loss"], rtol=1e-5, atol=0)


def test_training_loss_detaches_the_heads_inside_the_mix(small_spec):
    """Only the gate learns from the mean term; the heads learn from their own targets."""
    out = torch.randn(2, 7, 32, 32, requires_grad=True)

    class Fixed(torch.nn.Module):
        def forward(self, x, t):
            return out

    chain = build_chain(base_betas(small_spec.sampler["schedule"]))
    x0, noise, t = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 3, 32, 32), torch.tensor([10, 500])
    dual_output_loss(Fixed(), chain, x0, t, noise).loss.backward()
    scale = 2 / (2 * 9 * 32 * 32)  # d/d(pred) of mean over batch and 9 channels of squares
    torch.testing.assert_close(out.grad[:, 0:3], scale * (out[:, 0:3] - x0).detach())
    torch.testing.assert_close(out.grad[:, 3:6], scale * (out[:, 3:6] - noise).detach())
    assert out.grad[:, 6].abs().max() > 0


# ---- command line ---------------------------------------------------------------------


def test_convert_and_generate_through_the_cli(tmp_path):
    ref = tensors("ddim10")
    overlay = tmp_path / "small.toml"
    overlay.write_text(
        '[arch.ddo-unet-small]\nkind = "ddo.unet"\nin_channels = 3\nout_channels = 7\nchannels = 32\n'
        "channel_multiplier = [1, 2, 2, 2]\nn_res_blocks = 1\nattn_strides = [2]\ndropout = 0.1\nresolution = 32\n"
        '[models.ddo-cifar10.components.unet]\narch = "ddo-unet-small"\n'
    )
    env = {"RESTORECLI_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    bundle = tmp_path / "ddo.safetensors"
    res = run_cli(
        "--registry",
        str(overlay),
        "convert",
        "ddo-cifar10",
        f"unet={ddo('ddim10', 'checkpoint.pth')}",
        "-o",
        str(bundle),
        env=env,
    )
    assert res.returncode == 0, res.stderr.decode()
    res = run_cli(
        "--registry",
        str(overlay),
        "generate",
        str(tmp_path / "out"),
        "--model",
        "ddo-cifar10",
        "--weights",
        str(bundle),
        "-n",
        "2",
        "--steps",
        "10",
        "--seed",
        "42",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        env=env,
    )
    assert res.returncode == 0, res.stderr.decode()
    for k in range(2):
        assert_png_matches(tmp_path / "out" / f"ddo-cifar10_s42_{k:04d}.png", ref["final_uint8"][k])
    res = run_cli(
        "--registry",
        str(overlay),
        "generate",
        str(tmp_path / "out2"),
        "--model",
        "ddo-cifar10",
        "--weights",
        str(bundle),
        "--steps",
        "1001",
        env=env,
    )
    assert res.returncode == 2 and "--steps 1001" in res.stderr.decode()


def test_cosine_betas_are_capped_at_0_999_like_the_official_schedule():
    betas = base_betas({"type": "cosine", "n_timestep": 1000})
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[-1].item() == 0.999  # abar reaches 0 at t = T: the last beta would be 1
    assert betas[-2].item() < 0.99  # only the last one is capped
