"""Architectures, one file each; `build_model` picks one by `model.arch`."""

from __future__ import annotations

from torch import nn

from gradwise.config import (
    BERTConfig,
    CNNConfig,
    DiffusionConfig,
    GPTConfig,
    HFEncoderConfig,
    MLPConfig,
    ModelConfig,
    RNNConfig,
    Seq2SeqConfig,
    ViTConfig,
)
from gradwise.models.cnn import CNN
from gradwise.models.gpt import GPT
from gradwise.models.mlp import MLP
from gradwise.models.rnn import RNN
from gradwise.models.spec import Embedder, InputSpec
from gradwise.models.vit import ViT

__all__ = ["Embedder", "InputSpec", "build_model"]


def build_model(cfg: ModelConfig, spec: InputSpec, pretrained: bool = True) -> nn.Module:
    """A freshly initialised model for `cfg`, shaped for `spec`.

    Args:
        pretrained: for a pretrained encoder (hf_encoder), load its weights; False builds the
            architecture alone, for weights loaded next (a saved run).

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
        case BERTConfig():
            from gradwise.models.bert import BERT

            return BERT(cfg, spec)
        case Seq2SeqConfig():
            from gradwise.models.seq2seq import Seq2Seq

            return Seq2Seq(cfg, spec)
        case DiffusionConfig():
            from gradwise.models.diffusion import Diffusion

            return Diffusion(cfg, spec)
        case HFEncoderConfig():
            from gradwise.models.hf_encoder import HFEncoder

            return HFEncoder(cfg, spec, pretrained)
    raise AssertionError(f"unhandled model config {type(cfg).__name__}")
