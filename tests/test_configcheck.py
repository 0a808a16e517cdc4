"""A training run's numbers are checked before anything is built (UsageError, exit 2)."""

from __future__ import annotations

import math

import pytest

from restorecli.errors import UsageError
from restorecli.training.config import TrainConfig

HOSTILE = [
    ("crop", 17),
    ("crop", 20),  # not a multiple of 8 with four levels
    ("crop", 10**9),
    ("ema_decay", 2.0),
    ("ema_decay", -0.1),
    ("ema_decay", math.nan),
    ("lr", math.nan),
    ("lr", math.inf),
    ("lr", 0.0),
    ("lr", -1.0),
    ("sum_scale", math.nan),
    ("sum_scale", 0.0),
    ("dim", -16),
    ("dim", 10**6),
    ("dim_mults", (1,) * 10_000),
    ("dim_mults", ()),
    ("dim_mults", (1, -2)),
    ("dim_mults", (1, 10**6)),
    ("attn_heads", 0),
    ("pixel_unshuffle", 0),
    ("batch_size", 2**40),
    ("seed", -1),
    ("seed", 2**64),
    ("held_out", math.nan),
    ("pair_fraction", 1.5),
    ("time_limit", math.inf),
    ("time_limit", -1.0),
    ("save_every", -1),
    ("degrade_params", {"key": "garbage"}),
    ("degrade_params", {"density": "garbage"}),
    ("degrade_params", {"density": -5}),
]


@pytest.mark.parametrize("field,value", HOSTILE)
def test_hostile_settings_are_usage_errors(field, value):
    with pytest.raises(UsageError):
        TrainConfig(**{field: value})


def test_the_defaults_and_a_tiny_run_pass():
    TrainConfig()
    TrainConfig(dim=8, dim_mults=(1, 2), crop=16, batch_size=1, lr=1e12)  # too high a rate stops the run, later
