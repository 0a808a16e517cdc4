"""cli.train: `restore train`'s options default to TrainConfig's own values, written once."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from restorecli.cli.train import CONFIG_OPTIONS, train_cmd, train_config
from restorecli.training.config import TrainConfig


def test_options_left_out_take_train_configs_defaults():
    nothing = {name: None for name in CONFIG_OPTIONS}
    cfg = train_config(nothing, clean=[Path("photos")], pairs=None, params=None)
    assert cfg == TrainConfig(clean=["photos"])


def test_no_train_option_repeats_a_default_of_train_config():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(CONFIG_OPTIONS) <= fields
    params = inspect.signature(train_cmd).parameters
    assert all(params[name].default is None for name in CONFIG_OPTIONS)


def test_given_options_reach_the_config():
    given = {name: None for name in CONFIG_OPTIONS} | {"dim": 8, "dim_mults": "1,2", "lr": 1e-3, "task": "lowlight"}
    cfg = train_config(given, clean=None, pairs=["deg,clean"], params=None)
    assert (cfg.dim, cfg.dim_mults, cfg.lr, cfg.lr_min, cfg.task) == (8, (1, 2), 1e-3, 1e-4, "lowlight")
    assert cfg.degradation is None and cfg.pairs == [["deg", "clean"]]
