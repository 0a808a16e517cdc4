"""The values of a model spec (sampler, network configs, accepted steps), checked before anything is built.

A `restore train` bundle carries its own spec, and a registry overlay may give any
values. A value of the wrong type (`timesteps = "1000"`) or far out of range
(`timesteps` 0 or 1e10, `dim` -16, `dim_mults` of 10000 levels) would crash deep
inside an engine, or allocate and build for minutes before any shape is compared.
Known keys are held to their type and range wherever they sit (the sampler, a
component's config, a nested table such as `schedule` or `ddconfig`); every other
value only to bounded sizes and finite numbers. `spec_problem` answers with one
phrase; the caller says whose spec it is and picks the exit code.

No imports from other restorecli modules, so the module can move freely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_STEPS = 100_000  # sampling or training timesteps
MAX_LEVELS = 8  # UNet depth (a level halves the image)
MAX_MULT = 64
MAX_WIDTH = 4096  # channels of a layer
MAX_DEPTH = 4  # tables inside tables
MAX_ITEMS = 256  # keys of a table, items of a list
MAX_TEXT = 1000
MAX_INT = 2**31

WIDTHS = ("dim", "init_dim", "model_channels", "channels", "ch", "n_feats", "swin_embed_dim", "out_dim")
SMALL_CHANNELS = ("in_channels", "out_channels", "inp_channels", "out_ch", "z_channels", "embed_dim")
SIZES = ("image_size", "lq_size", "resolution", "window_size")
# key -> (low, high) for whole numbers
INTS: dict[str, tuple[int, int]] = {
    **{k: (1, MAX_WIDTH) for k in WIDTHS},
    **{k: (1, 1024) for k in SMALL_CHANNELS},
    **{k: (1, 16384) for k in SIZES},
    "timesteps": (1, MAX_STEPS),
    "n_timestep": (1, MAX_STEPS),
    "steps": (1, MAX_STEPS),
    "loops": (1, 64),
    "scale": (1, 16),
    "pad_multiple": (1, 4096),
    "n_embed": (1, 1 << 20),
    "num_unet": (1, 8),
    "attn_heads": (1, 64),
    "attn_dim_head": (1, 1024),
    "pixel_unshuffle": (1, 16),
    "resnet_block_groups": (1, 1024),
    "swin_depth": (0, 64),
    "n_encoder_res": (0, 64),
    "n_denoise_res": (0, 64),
}
LEVELS = ("dim_mults", "channel_mult", "ch_mult", "channel_multiplier")  # one multiplier per UNet level
SCALES = ("sum_scale", "kappa", "latent_scale")  # factors above 0
FRACTIONS = ("min_noise_level", "etas_end", "eta", "dropout")  # from 0 to 1
BETA_ENDS = ("beta_start", "beta_end", "linear_start", "linear_end")  # above 0, at most 1
# key -> (low, high, low is open) for real numbers
FLOATS: dict[str, tuple[float, float, bool]] = {
    **{k: (0.0, 1e6, True) for k in SCALES},
    "power": (0.0, 100.0, True),
    **{k: (0.0, 1.0, False) for k in FRACTIONS},
    **{k: (0.0, 1.0, True) for k in BETA_ENDS},
}
TABLES = ("ddconfig",)
# `schedule` is a table of a beta schedule (rddm, ddo) or the name of one (resshift)
TABLE_OR_TEXT = ("schedule",)
SCHEDULE_TABLE_METHODS = ("rddm", "ddo")
TEXTS = (
    "type",
    "objective",
    "time_input",
    "beta_schedule",
    "respacing",
    "var_type",
    "pad_mode",
    "output_rounding",
    "test_res_or_noise",
    "padding_mode",
)
STEP_FIELDS = ("trained_steps", "default_steps", "min_steps", "max_steps")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _value_problem(key: str, value: Any, path: str, depth: int) -> str | None:
    """Why `value` at `path` (last key `key`) cannot be used, or None."""
    where = f"{path} = {_shown(value)}"
    if key in INTS:
        low, high = INTS[key]
        if not _is_int(value) or not low <= value <= high:
            return f"{where} is not a whole number from {low} to {high}"
        return None
    if key in FLOATS:
        low_f, high_f, open_low = FLOATS[key]
        ok = _is_number(value) and math.isfinite(value) and (low_f < value if open_low else low_f <= value)
        if not ok or not value <= high_f:
            return f"{where} is not a finite number {'above' if open_low else 'from'} {low_f:g} to {high_f:g}"
        return None
    if key in LEVELS:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LEVELS:
            count = f"{len(value)} levels" if isinstance(value, list) else "not a list"
            return f"{path} has {count}, not 1 to {MAX_LEVELS} multipliers"
        for m in value:
            if not _is_int(m) or not 1 <= m <= MAX_MULT:
                return f"{path} holds {_shown(m)}, not a whole number from 1 to {MAX_MULT}"
        return None
    if key in TABLES and not isinstance(value, Mapping):
        return f"{where} is not a table"
    if key in TABLE_OR_TEXT and not isinstance(value, (Mapping, str)):
        return f"{where} is neither a table nor a name"
    if key in TEXTS and not isinstance(value, str):
        return f"{where} is not text"
    return _shape_problem(value, path, depth)


def _shape_problem(value: Any, path: str, depth: int) -> str | None:
    """Bounded sizes and finite numbers for any value."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return f"{path} is text of {len(value)} characters (at most {MAX_TEXT})" if len(value) > MAX_TEXT else None
    if isinstance(value, int):
        return f"{path} = {_shown(value)} is out of range" if abs(value) > MAX_INT else None
    if isinstance(value, float):
        return None if math.isfinite(value) and abs(value) <= 1e30 else f"{path} = {_shown(value)} is not finite"
    if depth >= MAX_DEPTH:
        return f"{path} nests tables or lists more than {MAX_DEPTH} deep"
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            return f"{path} has {len(value)} items (at most {MAX_ITEMS})"
        for i, item in enumerate(value):
            problem = _shape_problem(item, f"{path}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        return table_problem(value, path, depth + 1)
    return f"{path} is a {type(value).__name__}"


def table_problem(table: Any, path: str, depth: int = 0) -> str | None:
    """The first problem among a config or sampler table's values, or None."""
    if not isinstance(table, Mapping):
        return f"{path} is not a table"
    if len(table) > MAX_ITEMS:
        return f"{path} has {len(table)} keys (at most {MAX_ITEMS})"
    for key, value in table.items():
        if not isinstance(key, str) or len(key) > 200:
            return f"{path} has a key that is not a short name"
        problem = _value_problem(key, value, f"{path}.{key}", depth)
        if problem:
            return problem
    return None


def spec_problem(data: Mapping[str, Any]) -> str | None:
    """Why a model spec (as a table: a bundle's JSON spec, or a ModelSpec's fields) cannot run, or None."""
    for key in ("name", "method", "task"):
        value = data.get(key)
        if not isinstance(value, str) or not value or len(value) > 200:
            return f"{key} = {_shown(value)} is not a name"
    scale = data.get("scale", 1)
    if not _is_int(scale) or not 1 <= scale <= 16:
        return f"scale = {_shown(scale)} is not a whole number from 1 to 16"
    for key in STEP_FIELDS:
        value = data.get(key)
        if not _is_int(value) or not 1 <= value <= MAX_STEPS:
            return f"{key} = {_shown(value)} is not a whole number from 1 to {MAX_STEPS}"
    lo, default, hi = data["min_steps"], data["default_steps"], data["max_steps"]
    if not lo <= default <= hi:
        return f"the steps it accepts are inconsistent (min {lo}, default {default}, max {hi})"
    sampler = data.get("sampler")
    problem = table_problem(sampler, "sampler")
    if problem:
        return problem
    assert isinstance(sampler, Mapping)
    schedule = sampler.get("schedule")
    if data["method"] in SCHEDULE_TABLE_METHODS and schedule is not None and not isinstance(schedule, Mapping):
        return f"sampler.schedule = {_shown(schedule)} is not a table (a {data['method']} schedule has fields)"
    timesteps = sampler.get("timesteps")
    if _is_int(timesteps) and hi > timesteps:
        return f"max_steps = {hi} is more than its {timesteps} timesteps"
    comps = data.get("components")
    if not isinstance(comps, Mapping) or not 1 <= len(comps) <= 16:
        return "components is not a table of 1 to 16 networks"
    for name, comp in comps.items():
        if not isinstance(comp, Mapping) or not isinstance(comp.get("kind"), str):
            return f"component {_shown(name)} has no kind"
        problem = table_problem(comp.get("config"), f"components.{name}.config")
        if problem:
            return problem
    return None
