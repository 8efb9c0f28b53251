"""Mixture of experts: a feed-forward layer with a top-k router and a load-balancing loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MoEFeedForward(nn.Module):
    """`experts` feed-forward networks; each token goes to its `top_k` likeliest experts.

    The router's softmax weights (renormalised over the chosen k) mix the experts' outputs.
    The Switch-Transformer load-balancing loss, experts * sum_e(f_e * P_e) with f_e the
    fraction of routed tokens and P_e the mean router probability of expert e, is kept in
    `aux_loss` after each forward pass for the objective to add. `counts` tallies tokens per
    expert during training, for the run's log.
    """

    def __init__(
        self,
        d_model: int,
        hidden: int,
        experts: int,
        top_k: int,
        dropout: float,
        aux_weight: float,
    ) -> None:
        super().__init__()
        self.experts, self.top_k, self.aux_weight = experts, top_k, aux_weight
        self.router = nn.Linear(d_model, experts, bias=False)
        self.in_proj = nn.Parameter(torch.empty(experts, d_model, hidden))
        self.out_proj = nn.Parameter(torch.empty(experts, hidden, d_model))
        nn.init.normal_(self.in_proj, std=0.02)
        nn.init.normal_(self.out_proj, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.counts: Tensor
        self.register_buffer("counts", torch.zeros(experts, dtype=torch.long), persistent=False)
        self.aux_loss = torch.zeros(())

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, C)
        logits = self.router(tokens).float()  # (N, E)
        top, chosen = logits.topk(self.top_k, dim=-1)  # (N, k)
        # the softmax over the chosen k logits is the router's softmax renormalised over
        # them (the full softmax's denominator cancels), without an (N, E) softmax
        weight = top.softmax(dim=-1).to(x.dtype)
        out = self._dispatch(tokens, chosen, weight)
        if self.training or torch.is_grad_enabled():  # only a loss to be backpropagated reads it
            probs = logits.softmax(dim=-1)  # (N, E)
            routed = F.one_hot(chosen, self.experts).sum(dim=1).float()  # (N, E)
            fraction = routed.mean(dim=0) / self.top_k
            self.aux_loss = self.aux_weight * self.experts * (fraction * probs.mean(dim=0)).sum()
            if self.training:
                self.counts += routed.sum(dim=0).long().detach()
        return self.drop(out).reshape(shape)

    def _dispatch(self, tokens: Tensor, chosen: Tensor, weight: Tensor) -> Tensor:
        """Each token through its chosen experts, mixed by `weight`: (N, C) -> (N, C).

        The (token, slot) pairs are sorted by expert once (a stable sort, so each expert's
        tokens keep their order), gathered in one go, passed through each expert's slice
        with one matmul pair, and scattered back with one index_add. A loop that gathered
        and scattered per expert cost 5x a dense layer's backward pass on a CPU; this is
        within 1.5x (benchmarks/moe_vs_dense.py), with the same numbers.
        """
        flat = chosen.flatten()  # (N*k,) the expert of each (token, slot), token-major
        order = flat.argsort(stable=True)  # pairs grouped by expert
        rows = order // self.top_k  # (N*k,) the token of each sorted pair
        counts = torch.bincount(flat, minlength=self.experts).tolist()
        # index_select, not tokens[rows]: advanced indexing takes a general path that cost
        # 5x as much on a CPU (1.1 vs 0.2 ms for 4,096 rows of 128)
        groups = tokens.index_select(0, rows).split(counts)  # E x (n_e, C)
        # unbind: one op whose backward stacks the experts' gradients (indexing each expert
        # would fill and add a full-size gradient per expert)
        w_in = self.in_proj.to(tokens.dtype).unbind(0)
        w_out = self.out_proj.to(tokens.dtype).unbind(0)
        ys = [F.gelu(xe @ w_in[e]) @ w_out[e] for e, xe in enumerate(groups)]  # E x (n_e, C)
        y = torch.cat(ys) * weight.flatten().index_select(0, order)[:, None]  # (N*k, C)
        return torch.zeros_like(tokens).index_add_(0, rows, y)


def moe_layers(model: nn.Module) -> list[MoEFeedForward]:
    return [m for m in model.modules() if isinstance(m, MoEFeedForward)]


def expert_shares(model: nn.Module) -> dict[str, float]:
    """Each expert's share of routed tokens since the last call (then the tallies reset)."""
    out: dict[str, float] = {}
    names = {id(m): n for n, m in model.named_modules()}
    shares: list[float] = []
    for layer in moe_layers(model):
        total = int(layer.counts.sum())
        if total == 0:
            continue
        share = (layer.counts.float() / total).tolist()
        shares += share
        out.update({f"moe.{names[id(layer)]}.{e}": s for e, s in enumerate(share)})
        layer.counts.zero_()
    if shares:
        out["moe.min_share"] = min(shares)
    return out
