"""Vision Transformer: images cut into patches, a class token, pre-norm transformer blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradwise.config import ViTConfig
from gradwise.errors import ConfigError
from gradwise.models.blocks import TransformerBlock, init_transformer
from gradwise.models.gpt import make_ffn
from gradwise.models.spec import Embedder, InputSpec


class ViT(nn.Module, Embedder):
    """Dosovitskiy et al. (2021): non-overlapping P x P patches are embedded by a strided
    convolution, a learned class token and positions are added, and the class token (or the
    mean of all tokens) feeds a linear head."""

    def __init__(self, cfg: ViTConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind != "image":
            raise ConfigError(
                f"model.arch vit needs images (N, C, H, W); this data is {spec.kind}."
            )
        c, h, w = spec.shape
        p = cfg.patch_size
        if h % p or w % p:
            fits = [d for d in range(1, p + 1) if h % d == 0 and w % d == 0]
            raise ConfigError(
                f"model.patch_size {p} must divide the image size {h}x{w}; try {max(fits)}."
            )
        n_patches = (h // p) * (w // p)
        self.pool = cfg.pool
        self.patch_embed = nn.Conv2d(c, cfg.d_model, kernel_size=p, stride=p)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(torch.zeros(1, n_patches + 1, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.d_model,
                cfg.n_head,
                make_ffn(cfg.d_model, cfg.ffn_mult, cfg.dropout, True, cfg.moe, i),
                cfg.dropout,
                causal=False,
                bias=True,
            )
            for i in range(cfg.n_layer)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, spec.n_outputs)
        init_transformer(self, cfg.n_layer)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.cls, std=0.02)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))  # (B, n_outputs)

    def features(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, D): the class token (or the mean of the patch tokens)."""
        x = self.patch_embed(images)  # (B, D, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        # x.shape[0], not len(x): the ONNX tracer keeps a shape dynamic, a Python int fixed
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, N+1, D)
        x = self.drop(x + self.pos)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return x[:, 0] if self.pool == "cls" else x[:, 1:].mean(dim=1)
