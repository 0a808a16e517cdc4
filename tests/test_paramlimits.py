"""Fixed degradation parameters (-P) are checked for type and range before any image is read."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli
from restorecli.training.degrade import PARAMS, check_params
from restorecli.training.paramlimits import LIMITS


def _hostile(kind, low, high):
    values = [low - 1, high + 1, math.nan, math.inf, -math.inf, "garbage", True]
    if kind is int:
        values.append(low + 0.5)
    return values


CASES = [
    (name, key, value)
    for name, table in LIMITS.items()
    for key, (kind, low, high) in table.items()
    for value in _hostile(kind, low, high)
]


def test_every_numeric_parameter_has_limits():
    for name, table in PARAMS.items():
        numeric = {k for k, rule in table.items() if rule[0] in ("float", "int", "sometimes", "fixed")}
        assert numeric <= set(LIMITS[name]), name


@pytest.mark.parametrize("name,key,value", CASES)
def test_hostile_values_are_refused(name, key, value):
    problem = check_params(name, {key: value})
    assert problem is not None and key in problem


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_values_in_range_pass(name):
    for key, (kind, low, high) in LIMITS[name].items():
        assert check_params(name, {key: kind(low)}) is None
        assert check_params(name, {key: kind(high)}) is None


def test_degrade_refuses_a_negative_density_before_reading(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(src)
    done = run_cli("degrade", "rain", str(src), str(tmp_path / "out"), "-P", "density=-5")
    assert done.returncode == 2, done.stderr
    assert b"density" in done.stderr and b"Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
