"""Architectures, one file each; `build_model` picks one by `model.arch`."""

from __future__ import annotations

from torch import nn

from gradwise.config import (
    CNNConfig,
    GPTConfig,
    MLPConfig,
    ModelConfig,
    RNNConfig,
    ViTConfig,
)
from gradwise.models.cnn import CNN
from gradwise.models.gpt import GPT
from gradwise.models.mlp import MLP
from gradwise.models.rnn import RNN
from gradwise.models.spec import InputSpec
from gradwise.models.vit import ViT

__all__ = ["InputSpec", "build_model"]


def build_model(cfg: ModelConfig, spec: InputSpec) -> nn.Module:
    """A freshly initialised model for `cfg`, shaped for `spec`.

    Raises:
        ConfigError: the architecture cannot read this kind of input.
    """
    match cfg:
        case MLPConfig():
            return MLP(cfg, spec)
        case CNNConfig():
            return CNN(cfg, spec)
        case RNNConfig():
            return RNN(cfg, spec)
        case GPTConfig():
            return GPT(cfg, spec)
        case ViTConfig():
            return ViT(cfg, spec)
    raise AssertionError(f"unhandled model config {type(cfg).__name__}")
