"""A model spec's values are checked for type, count and range before anything is built: a hostile
`restore train` bundle (--weights) or registry overlay is one line, never a traceback or a long build
(weights.specvalues, through weights.bundle and runtime.load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import edit_bundle_spec, packaged_model, random_png, run_cli, toml_value
from restorecli.errors import UsageError, WeightsError
from restorecli.runtime.load import resolve_spec
from restorecli.weights.bundle import bundle_spec, spec_to_dict
from restorecli.weights.registry import builtin_registry
from restorecli.weights.specvalues import spec_problem

SMALL = packaged_model("rddm-derain-small")


def hostile_bundle(tmp_path: Path, edit) -> Path:
    return edit_bundle_spec(SMALL, tmp_path / "hostile.safetensors", edit)


def sampler(key, value):
    return lambda s: s["sampler"].__setitem__(key, value)


def unet(key, value):
    return lambda s: s["components"]["unet0"]["config"].__setitem__(key, value)


def top(key, value):
    return lambda s: s.__setitem__(key, value)


HOSTILE = {
    # sampler numbers: zero, negative, huge, fractional, text, bool, NaN, infinite, null, a table
    **{f"timesteps={v!r}": sampler("timesteps", v) for v in (0, -5, 1e10, 10**10, 2.5, "1000", True, None, {})},
    **{f"sum_scale={v!r}": sampler("sum_scale", v) for v in ("1.0", 0, -1.0, float("nan"), float("inf"), 1e300)},
    **{f"loops={v!r}": sampler("loops", v) for v in ("2", 0, -1, 10**6, 1.5)},
    **{f"image_size={v!r}": sampler("image_size", v) for v in ("64", 0, -64, 10**9)},
    **{f"schedule={v!r}": sampler("schedule", v) for v in ("linear", 5, ["linear"])},
    "schedule.beta_start=-1": sampler("schedule", {"type": "linear", "beta_start": -1.0}),
    "schedule.n_timestep=1e10": sampler("schedule", {"type": "linear", "n_timestep": 10**10}),
    "objective=5": sampler("objective", 5),
    # network: widths, levels, multipliers
    **{f"dim={v!r}": unet("dim", v) for v in (-16, 0, 10**6, "16", 16.0)},
    **{f"dim_mults=#{n}": unet("dim_mults", [1] * n) for n in (0, 9, 10000)},
    "dim_mults=text": unet("dim_mults", "1,2,4"),
    "dim_mults=[0]": unet("dim_mults", [1, 0]),
    "dim_mults=[10**6]": unet("dim_mults", [1, 10**6]),
    "attn_heads=-1": unet("attn_heads", -1),
    "pixel_unshuffle=1000": unet("pixel_unshuffle", 1000),
    "deep nesting": unet("extra", [[[[[[1]]]]]]),
    "long list": unet("extra", list(range(100000))),
    "huge int elsewhere": unet("extra", 10**40),
    # the steps it claims to accept
    **{f"max_steps={v!r}": top("max_steps", v) for v in (0, -1, 10**30, 1e10, "2", 5000)},
    **{f"min_steps={v!r}": top("min_steps", v) for v in (0, -3, 3, "1")},
    **{f"default_steps={v!r}": top("default_steps", v) for v in (0, 10**20, 3, None)},
    "trained_steps=-1": top("trained_steps", -1),
    "scale=0": top("scale", 0),
    "scale=text": top("scale", "1"),
    "name=list": top("name", ["x"]),
    "components empty": top("components", {}),
    "components=list": top("components", []),
    "sampler=text": top("sampler", "fast"),
}


@pytest.mark.parametrize("edit", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bundle_spec_is_one_weights_error_before_any_build(tmp_path, edit):
    path = hostile_bundle(tmp_path, edit)
    with pytest.raises(WeightsError) as info:
        resolve_spec(None, "derain", [str(path)])
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_the_untouched_bundle_and_every_registered_model_pass():
    assert bundle_spec(SMALL) is not None
    assert [m.name for m in builtin_registry().models.values() if spec_problem(spec_to_dict(m))] == []


@pytest.mark.parametrize(
    "line",
    ["timesteps = 0", 'timesteps = "1000"', "sum_scale = -1.0", 'schedule = "linear"', "timesteps = 1e10"],
)
def test_hostile_overlay_values_are_a_usage_error(tmp_path, line):
    base = builtin_registry().models["rddm-derain-small"]
    sampler_toml = ", ".join(f"{k} = {toml_value(v)}" for k, v in base.sampler.items() if k != line.split()[0])
    overlay = tmp_path / "ov.toml"
    overlay.write_text(f"[models.rddm-derain-small]\nsampler = {{ {sampler_toml}, {line} }}\n")
    with pytest.raises(UsageError) as info:
        resolve_spec("rddm-derain-small", "derain", None, [overlay])
    assert "rddm-derain-small" in str(info.value)


@pytest.mark.parametrize(
    "edit", [unet("dim_mults", [1] * 10000), sampler("timesteps", "1000"), unet("dim", -16)], ids=["levels", "t", "dim"]
)
def test_cli_run_on_a_hostile_bundle_is_one_line_exit_3(tmp_path, edit):
    path = hostile_bundle(tmp_path, edit)
    img = random_png(tmp_path / "in.png", size=(16, 16))
    res = run_cli("derain", str(img), str(tmp_path / "out"), "--weights", str(path), timeout=60)
    err = res.stderr.decode().strip()
    assert res.returncode == 3, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "model spec" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("schedule", ["exponential", {"type": "linear"}])
def test_a_schedule_name_is_fine_where_the_method_takes_one(schedule):
    spec = spec_to_dict(builtin_registry().models["resshift-realsr-x4-v3"])
    spec["sampler"]["schedule"] = schedule
    assert spec_problem(spec) is None
