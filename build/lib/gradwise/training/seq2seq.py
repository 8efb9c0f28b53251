"""Sequence-to-sequence: teacher-forced cross-entropy to train, exact match of decoded text
to judge."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradwise.config import ModelConfig, Seq2SeqConfig
from gradwise.data.dataset import Split
from gradwise.data.schema import Schema
from gradwise.data.text import EOS, IGNORE
from gradwise.errors import ConfigError
from gradwise.evaluate.evaluator import (
    EvalSettings,
    predict_logits,
    split_metrics,
    task_metric_names,
)
from gradwise.models.seq2seq import Seq2Seq, translate
from gradwise.training.losses import LossFn

__all__ = ["Seq2SeqObjective", "exact_match", "reference_ids"]


@dataclass(frozen=True)
class Seq2SeqObjective:
    """Predict each next target token from the source and the target so far (teacher
    forcing); judge whole decoded targets.

    Attributes:
        criterion: cross-entropy over (B, T-1, V) logits, ignoring targets of -100.
        schema: the data schema (task seq2seq).
        cfg: the model config; its `beam_size` decodes for `exact_match`.
    """

    criterion: LossFn
    schema: Schema
    cfg: ModelConfig

    def __post_init__(self) -> None:
        if not isinstance(self.cfg, Seq2SeqConfig):
            raise ConfigError(
                f"data.task seq2seq needs an encoder-decoder: set model.arch: seq2seq "
                f"(got {self.cfg.arch})."
            )

    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        return self.criterion(forward(x), y)

    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        """Loss, perplexity and token accuracy of the teacher-forced logits, and
        `exact_match`: the fraction of sources whose decoded target equals the reference."""
        assert isinstance(model, Seq2Seq) and isinstance(self.cfg, Seq2SeqConfig)
        logits = predict_logits(model, split.x, settings)
        out = split_metrics(logits, split.y, self.schema, self.criterion)
        out["exact_match"] = exact_match(model, split, self.cfg.beam_size, settings)
        return out

    def metric_names(self) -> tuple[str, ...]:
        return ("loss", *task_metric_names(self.schema), "exact_match")


def exact_match(model: Seq2Seq, split: Split, beam_size: int, settings: EvalSettings) -> float:
    """Fraction of the split's sources decoded to exactly their reference target tokens."""
    source = split.x[:, : model.source_len]
    with settings.autocast() if settings.autocast else contextlib.nullcontext():
        predicted = translate(model, source, model.target_len, beam_size, settings.batch_size)
    references = reference_ids(split.y)
    hits = sum(p == r for p, r in zip(predicted, references, strict=True))
    return hits / max(len(references), 1)


def reference_ids(y: Tensor) -> list[list[int]]:
    """(N, T-1) next-token targets -> each row's target ids, up to its <eos>."""
    out = []
    for row in y.tolist():
        ids = [i for i in row if i != IGNORE]  # IGNORE marks padding
        out.append(ids[: ids.index(EOS)] if EOS in ids else ids)
    return out
