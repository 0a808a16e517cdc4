"""nets.rddm_unet: the attention blocks compute the official formulas (scale 1/sqrt(dim_head) per head)."""

from __future__ import annotations

import torch

from restorecli.nets.rddm_unet import FullAttention, LinearAttention

HEADS, DIM_HEAD, DIM = 4, 8, 16


def _qkv(module, x):
    b, _, h, w = x.shape
    return [z.reshape(b, HEADS, DIM_HEAD, h * w) for z in module.to_qkv(x).chunk(3, dim=1)]


def test_linear_attention_scales_queries_by_one_over_sqrt_dim_head():
    torch.manual_seed(0)
    module = LinearAttention(DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    x = torch.randn(2, DIM, 5, 6)
    q, k, v = _qkv(module, x)
    q = q.softmax(dim=-2) / DIM_HEAD**0.5
    k = k.softmax(dim=-1)
    context = k @ (v / 30).transpose(-2, -1)  # (b, heads, d, e)
    hidden = (context.transpose(-2, -1) @ q).reshape(2, HEADS * DIM_HEAD, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.to_out(hidden), rtol=1e-5, atol=1e-6)


def test_full_attention_scales_logits_by_one_over_sqrt_dim_head():
    torch.manual_seed(1)
    module = FullAttention(DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    x = torch.randn(2, DIM, 4, 5)
    q, k, v = (z.transpose(-2, -1) for z in _qkv(module, x))  # (b, heads, positions, d)
    weights = (q @ k.transpose(-2, -1) / DIM_HEAD**0.5).softmax(dim=-1)
    hidden = (weights @ v).transpose(-2, -1).reshape(2, HEADS * DIM_HEAD, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.to_out(hidden), rtol=1e-5, atol=1e-5)
