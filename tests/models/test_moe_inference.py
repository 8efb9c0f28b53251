"""The mixture-of-experts forward at inference (no gradients) against a plain per-expert loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gradwise.models.moe import MoEFeedForward


def reference_forward(layer: MoEFeedForward, x: Tensor) -> Tensor:
    """Router softmax over every expert, top-k, renormalise, then each expert in turn."""
    tokens = x.reshape(-1, x.shape[-1])
    probs = layer.router(tokens).float().softmax(dim=-1)
    weight, chosen = probs.topk(layer.top_k, dim=-1)
    weight = weight / weight.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(tokens)
    for token in range(len(tokens)):
        for slot in range(layer.top_k):
            e = int(chosen[token, slot])
            h = F.gelu(tokens[token] @ layer.in_proj[e]) @ layer.out_proj[e]
            out[token] += weight[token, slot] * h
    return out.reshape(x.shape)


def test_inference_forward_equals_the_per_token_loop():
    for experts, top_k in ((4, 1), (8, 2), (5, 3), (3, 3)):
        torch.manual_seed(experts * 10 + top_k)
        layer = MoEFeedForward(16, 24, experts, top_k, dropout=0.3, aux_weight=0.01).eval()
        torch.nn.init.normal_(layer.router.weight, std=0.5)
        torch.nn.init.normal_(layer.in_proj, std=0.3)
        torch.nn.init.normal_(layer.out_proj, std=0.3)
        x = torch.randn(4, 9, 16)
        with torch.no_grad():
            ref = reference_forward(layer, x)
            fast = layer(x)
        with torch.inference_mode():
            torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-5)


def test_the_load_balancing_loss_still_reads_the_full_router_softmax():
    torch.manual_seed(0)
    layer = MoEFeedForward(8, 12, 4, 2, dropout=0.0, aux_weight=1.0).train()
    x = torch.randn(50, 8)
    layer(x)
    probs = layer.router(x).softmax(dim=-1)
    chosen = probs.topk(2, dim=-1).indices
    fraction = F.one_hot(chosen, 4).sum(dim=1).float().mean(dim=0) / 2
    expected = 4 * (fraction * probs.mean(dim=0)).sum()
    torch.testing.assert_close(layer.aux_loss, expected)
    assert layer.counts.sum() == 100
