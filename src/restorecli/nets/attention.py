"""One attention function for every network, with a switch to the plain reference path.

The fast path is `scaled_dot_product_attention`, which picks flash or
memory-efficient kernels on GPU and never materialises the full attention
matrix when it can avoid it (the cause of the official ResShift autoencoder's
35 GiB peak). The reference path is the textbook softmax(QK^T)V in the
input's dtype: `restore bench` times it as the baseline, and tests check the
two agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch.nn.functional as F
from torch import Tensor

_reference: ContextVar[bool] = ContextVar("restorecli_reference_attention", default=False)


@contextmanager
def reference_mode(enabled: bool = True) -> Iterator[None]:
    """Run attention the plain way inside this block (for baselines and checks)."""
    token = _reference.set(enabled)
    try:
        yield
    finally:
        _reference.reset(token)


def is_reference() -> bool:
    return _reference.get()


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two dims; q, k, v: (..., L, D); mask additive, broadcastable."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if _reference.get():
        logits = (q * scale) @ k.transpose(-2, -1)
        if mask is not None:
            logits = logits + mask
        return logits.softmax(dim=-1) @ v
    if mask is not None:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
