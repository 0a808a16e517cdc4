"""training.averaging: the EMA copy follows the trained weights from the first updates on."""

from __future__ import annotations

import torch
from torch import nn

from restorecli.training.averaging import EMA


def test_the_ema_warm_up_lets_early_updates_leave_the_random_start():
    torch.manual_seed(0)
    net = nn.Linear(4, 4)
    ema = EMA({"net": net}, decay=0.999)
    start = ema.nets["net"].weight.clone()
    with torch.no_grad():
        net.weight.copy_(start + 1.0)  # the trained weights moved by 1 everywhere
    for _ in range(5):
        ema.update({"net": net})
    moved = (ema.nets["net"].weight - start).mean().item()
    # warm-up decays (1+n)/(10+n) for n = 1..5: the average has moved about 94% of the way; 0.999 would give 0.5%
    assert 0.9 < moved <= 1.0, moved
