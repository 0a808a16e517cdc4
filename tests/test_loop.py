"""training.loop: the learning-rate schedule of a run."""

from __future__ import annotations

import pytest

from restorecli.training.config import TrainConfig
from restorecli.training.loop import cosine_lr


def test_the_learning_rate_decays_from_lr_to_lr_min_along_a_cosine():
    cfg = TrainConfig(lr=1e-3, lr_min=1e-5, iters=100)
    rates = [cosine_lr(cfg, i, 0.0) for i in range(0, 101, 10)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert cosine_lr(cfg, 50, 0.0) == pytest.approx((1e-3 + 1e-5) / 2)


def test_a_time_limit_further_along_than_the_iterations_sets_the_rate():
    cfg = TrainConfig(lr=1e-3, lr_min=1e-5, iters=100, time_limit=10.0)
    assert cosine_lr(cfg, 10, 10.0) == pytest.approx(1e-5)  # the clock has run out: lr_min
    assert cosine_lr(cfg, 50, 1.0) == pytest.approx(cosine_lr(TrainConfig(lr=1e-3, lr_min=1e-5, iters=100), 50, 0.0))
