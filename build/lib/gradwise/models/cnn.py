"""Convolutional network for images: conv blocks, global pooling, a small head."""

from __future__ import annotations

from torch import Tensor, nn

from gradwise.config import CNNConfig
from gradwise.errors import ConfigError
from gradwise.models.blocks import activation, init_weights
from gradwise.models.spec import Embedder, InputSpec


class CNNBlock(nn.Sequential):
    """`convs_per_block` x (conv -> [batch norm] -> activation), then 2x2 pooling."""

    def __init__(self, c_in: int, c_out: int, cfg: CNNConfig, pool: bool) -> None:
        layers: list[nn.Module] = []
        for i in range(cfg.convs_per_block):
            layers.append(
                nn.Conv2d(
                    c_in if i == 0 else c_out,
                    c_out,
                    cfg.kernel,
                    padding=cfg.kernel // 2,
                    bias=not cfg.batch_norm,
                )
            )
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(activation(cfg.activation))
        if pool and cfg.pool == "max":
            layers.append(nn.MaxPool2d(2))
        elif pool and cfg.pool == "avg":
            layers.append(nn.AvgPool2d(2))
        super().__init__(*layers)


class CNN(nn.Module, Embedder):
    """Conv blocks halve the resolution while it stays >= 2; a global average pool feeds the head.

    Works on 8x8 digits as on 28x28 MNIST or larger photos: the head never depends on size.
    """

    def __init__(self, cfg: CNNConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind != "image":
            raise ConfigError(
                f"model.arch cnn needs images (N, C, H, W); this data is {spec.kind}. "
                "Use arch: mlp for tables or arch: lstm for sequences."
            )
        c, h, w = spec.shape
        blocks = []
        for c_out in cfg.channels:
            pool = min(h, w) >= 2 and cfg.pool != "none"
            blocks.append(CNNBlock(c, c_out, cfg, pool))
            c = c_out
            if pool:
                h, w = h // 2, w // 2
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = [nn.Flatten()]  # a no-op on (B, C); kept for the layer numbering
        if cfg.dropout > 0:
            head.append(nn.Dropout(cfg.dropout))
        for hidden in cfg.head:
            head += [nn.Linear(c, hidden), activation(cfg.activation)]
            if cfg.dropout > 0:
                head.append(nn.Dropout(cfg.dropout))
            c = hidden
        head.append(nn.Linear(c, spec.n_outputs))
        self.head = nn.Sequential(*head)
        init_weights(self, cfg.init, cfg.activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, n_outputs)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C_last): the globally pooled last feature map."""
        x = self.blocks(x)  # (B, C_last, H', W')
        return self.pool(x).flatten(1)  # (B, C_last)
