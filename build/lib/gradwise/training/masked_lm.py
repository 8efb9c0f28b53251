"""Masked-token prediction: the objective that pretrains a BERT encoder (Devlin et al., 2019).

Each batch picks `model.mask_prob` of its non-special tokens; of those, 80% are replaced by
<mask>, 10% by a random ordinary token and 10% are left as they are, and the model is scored
by cross-entropy on the picked tokens only. The random and unchanged ones keep the encoder
from learning that only <mask> positions matter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.config import BERTConfig, ModelConfig
from gradwise.data.dataset import Split
from gradwise.data.schema import Schema
from gradwise.data.text import IGNORE, SpecialIds
from gradwise.errors import ConfigError
from gradwise.evaluate.evaluator import EvalSettings, eval_batches
from gradwise.models.blocks import eval_mode
from gradwise.models.moe import MoEFeedForward

__all__ = ["MaskedLM", "mask_tokens"]

EVAL_SEED = 0  # the same masks every epoch, so validation losses compare
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the picked tokens; the rest stay unchanged


def mask_tokens(
    x: Tensor, mask_prob: float, specials: SpecialIds, vocab_size: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """BERT's corruption of a batch of ids; all randomness is drawn on the CPU from `gen`.

    Args:
        x: (B, T) token ids, on any device.
        mask_prob: chance that each non-special token is picked.
        specials: ids that are never picked nor drawn as random replacements.
        vocab_size: ids are 0..vocab_size-1.
        gen: CPU generator (the checkpoint keeps its state, so a resume is exact).

    Returns:
        inputs: (B, T) x with the picked tokens replaced (80% <mask>, 10% random, 10% kept).
        labels: (B, T) the original id at picked positions, IGNORE elsewhere.
    """
    special = torch.tensor(specials.all(), device=x.device)
    ordinary = torch.ones(vocab_size, dtype=torch.bool)
    ordinary[list(specials.all())] = False
    ordinary_ids = ordinary.nonzero().squeeze(1)  # (V - specials,)
    pick = torch.rand(x.shape, generator=gen).to(x.device)
    roll = torch.rand(x.shape, generator=gen).to(x.device)
    random_ids = ordinary_ids[torch.randint(len(ordinary_ids), x.shape, generator=gen)]
    picked = (pick < mask_prob) & ~torch.isin(x, special)
    labels = torch.where(picked, x, IGNORE)
    inputs = torch.where(picked & (roll < MASK_SHARE), specials.mask, x)
    to_random = picked & (roll >= MASK_SHARE) & (roll < MASK_SHARE + RANDOM_SHARE)
    inputs = torch.where(to_random, random_ids.to(x.device), inputs)
    return inputs, labels


class MaskedLM:
    """Predict the picked tokens of a corrupted window; implements `train.objectives.Objective`.

    Args:
        schema: the corpus' schema (its tokenizer gives the special ids and vocabulary).
        cfg: the model config; `mask_prob` comes from it (arch bert).
        moe: mixture-of-experts layers whose load-balancing losses join the training loss.

    Raises:
        ConfigError: the architecture is not an encoder (arch bert).
    """

    def __init__(
        self, schema: Schema, cfg: ModelConfig, moe: tuple[MoEFeedForward, ...] = ()
    ) -> None:
        if not isinstance(cfg, BERTConfig):
            raise ConfigError(
                f"data.task mlm pretrains an encoder, but model.arch is {cfg.arch}; set "
                "model.arch: bert (or drop data.task: mlm to train a language model)."
            )
        assert schema.tokenizer is not None
        self.mask_prob = cfg.mask_prob
        self.specials = schema.tokenizer.specials
        self.vocab_size = schema.tokenizer.vocab_size
        self.moe = moe

    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        """Cross-entropy on the picked tokens (0 for a batch where none was picked)."""
        inputs, labels = mask_tokens(x, self.mask_prob, self.specials, self.vocab_size, gen)
        logits = forward(inputs)  # (B, T, V)
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        loss = nll / (labels != IGNORE).sum().clamp(min=1)
        for layer in self.moe:
            loss = loss + layer.aux_loss
        return loss

    def metric_names(self) -> tuple[str, ...]:
        return ("loss", "accuracy", "perplexity")

    @torch.no_grad()
    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        """Loss, accuracy and perplexity on the picked tokens of a whole split, with masks
        drawn from a fixed seed (the same every epoch for the same batch size)."""
        gen = torch.Generator().manual_seed(EVAL_SEED)
        nll, n_picked, n_hits = 0.0, 0, 0
        with eval_mode(model):
            for x, _ in eval_batches(split.x, None, settings):
                inputs, labels = mask_tokens(x, self.mask_prob, self.specials, self.vocab_size, gen)
                with settings.amp():
                    logits = model(inputs)
                batch_nll, batch_picked, batch_hits = _scores(logits, labels)
                nll += batch_nll.item()
                n_picked += batch_picked
                n_hits += batch_hits
        mean = nll / max(n_picked, 1)
        return {
            "loss": mean,
            "accuracy": n_hits / max(n_picked, 1),
            "perplexity": math.exp(min(mean, 50.0)),
        }


def _scores(logits: Tensor, labels: Tensor) -> tuple[Tensor, int, int]:
    """Summed cross-entropy, count and correct predictions over the picked tokens.

    Args:
        logits: (B, T, V); labels: (B, T) with IGNORE at the positions not scored.
    """
    picked = labels != IGNORE  # (B, T)
    nll = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    hits = (logits.argmax(-1) == labels) & picked
    return nll, int(picked.sum()), int(hits.sum())
