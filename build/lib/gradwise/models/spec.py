"""What a model is built for: the input it receives and the outputs it must give."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from torch import Tensor, nn


@dataclass(frozen=True)
class InputSpec:
    """Shapes a model is built for, taken from the data schema.

    Attributes:
        kind: tabular (B, F) | image (B, C, H, W) | sequence (B, T, F) | tokens (B, T).
        shape: one sample's shape, without the batch dimension.
        n_outputs: logits per sample (classes, regression outputs) or per token (vocabulary).
        vocab_size: token vocabulary (tokens only).
        categorical: vocabulary sizes of embedded categorical columns, the last columns of x.
        per_token: one output per time step (language models) instead of one per sample.
        source_len: seq2seq: x packs `source_len` source ids, then the target's input ids.
    """

    kind: Literal["tabular", "image", "sequence", "tokens"]
    shape: tuple[int, ...]
    n_outputs: int
    vocab_size: int = 0
    categorical: tuple[int, ...] = ()
    per_token: bool = False
    source_len: int = 0


@runtime_checkable
class Embedder(Protocol):
    """A model with a representation and a head on top of it.

    Supervised models (classifiers, regressors) satisfy `forward(x) == head(features(x))`:
    `features` is the penultimate representation, (B, D). Language models, masked-token
    encoders and seq2seq models give the mean of their final token states, (B, D), an
    embedding of the text; their head reads every token. The architectures subclass this
    protocol explicitly, so `isinstance(model, Embedder)` names them without probing.
    """

    head: nn.Module | None

    def features(self, x: Tensor) -> Tensor:
        """(B, ...) model input -> (B, D) representation."""
        ...
