"""Pieces several architectures share: activations and weight initialisation."""

from __future__ import annotations

from torch import nn

from gradwise.config import Activation, Init


def activation(name: Activation) -> nn.Module:
    match name:
        case "relu":
            return nn.ReLU()
        case "gelu":
            return nn.GELU()
        case "tanh":
            return nn.Tanh()
        case "silu":
            return nn.SiLU()
        case "leaky_relu":
            return nn.LeakyReLU(0.01)


def init_weights(model: nn.Module, scheme: Init, act: Activation = "relu") -> None:
    """Glorot (`xavier`) or Kaiming (`he`) weights and zero biases; `default` keeps PyTorch's.

    Recurrent layers get the chosen scheme on input weights, orthogonal recurrent weights,
    and (LSTM) a forget-gate bias of 1 so that memory is kept early in training.
    """
    if scheme == "default":
        return
    nonlinearity = "leaky_relu" if act == "leaky_relu" else "relu"
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            for name, p in m.named_parameters():
                if name.startswith("weight_ih"):
                    if scheme == "he":
                        nn.init.kaiming_normal_(p, nonlinearity=nonlinearity)
                    else:
                        nn.init.xavier_uniform_(p)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(p)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
                    if isinstance(m, nn.LSTM):
                        h = p.shape[0] // 4
                        nn.init.ones_(p[h : 2 * h])
