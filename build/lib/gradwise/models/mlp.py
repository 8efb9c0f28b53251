"""Multi-layer perceptron: tables, flattened images and flattened sequences."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradwise.config import MLPConfig
from gradwise.errors import ConfigError
from gradwise.models.blocks import activation, init_weights
from gradwise.models.spec import Embedder, InputSpec


class MLP(nn.Module, Embedder):
    """Linear -> [norm] -> activation -> dropout, repeated, then a linear head.

    Embedded categorical columns (the last columns of x, as integer codes) go through one
    nn.Embedding each and are concatenated with the numeric columns.
    """

    def __init__(self, cfg: MLPConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind == "tokens":
            raise ConfigError("model.arch mlp cannot read token ids; use arch: lstm (or gru).")
        n_in = math.prod(spec.shape)
        self.n_numeric = n_in - len(spec.categorical)
        dims = [cfg.embed_dim or min(16, (card + 1) // 2) for card in spec.categorical]
        self.embeds = nn.ModuleList(
            nn.Embedding(card, dim) for card, dim in zip(spec.categorical, dims)
        )
        width = self.n_numeric + sum(dims)
        layers: list[nn.Module] = []
        for hidden in cfg.hidden:
            layers.append(nn.Linear(width, hidden, bias=cfg.norm != "batch"))
            if cfg.norm == "batch":
                layers.append(nn.BatchNorm1d(hidden))
            elif cfg.norm == "layer":
                layers.append(nn.LayerNorm(hidden))
            layers.append(activation(cfg.activation))
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, spec.n_outputs)
        init_weights(self, cfg.init, cfg.activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, n_outputs)

    def features(self, x: Tensor) -> Tensor:
        """(B, ...) -> (B, hidden[-1]): the last hidden layer's output."""
        x = x.flatten(1)  # (B, F)
        if self.embeds:
            codes = x[:, self.n_numeric :].long()  # (B, n_cat)
            parts = [x[:, : self.n_numeric]] + [e(codes[:, i]) for i, e in enumerate(self.embeds)]
            x = torch.cat(parts, dim=1)  # (B, F_num + sum(embed_dim))
        return self.body(x)
