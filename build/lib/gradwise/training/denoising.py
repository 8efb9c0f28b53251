"""Denoising: the objective that trains a diffusion model (Ho et al. 2020, DDPM).

Each image gets a uniformly drawn noise level t and gaussian noise; the model sees the noisy
image and is scored by the mean squared error of its noise prediction. For classifier-free
guidance, conditional models see the "null" label instead of the true one with probability
`model.cond_dropout`, so the same network also learns the unconditional prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.config import DiffusionConfig, LossConfig
from gradwise.data.dataset import Split
from gradwise.data.schema import Schema
from gradwise.errors import ConfigError
from gradwise.evaluate.evaluator import EvalSettings, eval_batches
from gradwise.models.blocks import eval_mode
from gradwise.models.diffusion import alphas_cumprod, q_sample

EVAL_SEED = 0  # the same noise levels and noise every epoch, so val losses compare


def denoising_loss_name(cfg: LossConfig) -> str:
    """The loss of a diffusion run: always the MSE of the predicted noise.

    Raises:
        ConfigError: train.loss asks for another loss, or for settings that do not apply.
    """
    if cfg.name not in ("auto", "mse"):
        raise ConfigError(
            f"train.loss.name {cfg.name} does not apply to model.arch diffusion, which always "
            "trains on the mean squared error of the predicted noise; set train.loss.name: auto."
        )
    if cfg.label_smoothing or cfg.class_weights != "none":
        raise ConfigError(
            "train.loss.label_smoothing and train.loss.class_weights do not apply to "
            "model.arch diffusion (its loss is the MSE of the predicted noise); remove them."
        )
    return "mse"


class Denoising:
    """Predict the noise mixed into an image; implements `train.objectives.Objective`.

    Attributes:
        null_label: the class index meaning "no label" (the model's `null_label`).
        alpha_bar: (T,) the noise schedule's `alphas_cumprod`, on the CPU.
    """

    def __init__(self, cfg: DiffusionConfig, schema: Schema) -> None:
        if cfg.conditional and schema.task != "classification":
            raise ConfigError(
                f"model.conditional: true needs class labels to condition on, but this data's "
                f"task is {schema.task}; set model.conditional: false to generate images "
                "without labels."
            )
        self.cfg = cfg
        self.null_label = schema.n_outputs
        self.alpha_bar = alphas_cumprod(cfg.noise_schedule, cfg.timesteps)

    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        """MSE between the noise and its prediction; all randomness is drawn from `gen`.

        Args:
            forward: the model (or its DDP / compiled wrapper), called as (x_t, t, labels).
            x: (B, C, H, W) clean images; y: (B,) class indices.
            gen: CPU generator whose state the checkpoint keeps, so a resume is exact.
        """
        t, noise = self._draw(x, gen)
        labels = self._labels(y, len(x))
        if self.cfg.conditional and self.cfg.cond_dropout > 0:
            dropped = torch.rand(len(x), generator=gen) < self.cfg.cond_dropout  # (B,)
            labels = torch.where(dropped.to(x.device), self.null_label, labels)
        x_t = q_sample(x, t, noise, self.alpha_bar)
        return F.mse_loss(forward(x_t, t, labels).float(), noise)

    def metric_names(self) -> tuple[str, ...]:
        return ("loss", "loss_uncond") if self.cfg.conditional else ("loss",)

    @torch.no_grad()
    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        """Denoising loss over a split, with fixed noise; conditional models add the loss
        without labels (`loss_uncond`): the gap is what the label tells the model.

        Returns:
            {"loss": ...} and, for conditional models, {"loss_uncond": ...}.
        """
        gen = torch.Generator().manual_seed(EVAL_SEED)
        totals = {"loss": 0.0, "loss_uncond": 0.0}
        with eval_mode(model):
            for x, y in eval_batches(split.x, split.y, settings):
                assert y is not None
                t, noise = self._draw(x, gen)
                x_t = q_sample(x, t, noise, self.alpha_bar)
                with settings.amp():
                    eps = model(x_t, t, self._labels(y, len(x))).float()
                    totals["loss"] += F.mse_loss(eps, noise, reduction="sum").item()
                    if self.cfg.conditional:
                        eps = model(x_t, t, None).float()
                        totals["loss_uncond"] += F.mse_loss(eps, noise, reduction="sum").item()
        n_values = max(split.x.numel(), 1)
        keys = ["loss", "loss_uncond"] if self.cfg.conditional else ["loss"]
        return {k: totals[k] / n_values for k in keys}

    def _draw(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Uniform noise levels (B,) and gaussian noise like x, drawn on the CPU from `gen`."""
        t = torch.randint(0, self.cfg.timesteps, (len(x),), generator=gen)
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float32)
        return t.to(x.device), noise.to(x.device)

    def _labels(self, y: Tensor, n: int) -> Tensor:
        """The labels the model is given: the classes, or all null when unconditional."""
        if self.cfg.conditional:
            return y.long()
        return torch.full((n,), self.null_label, dtype=torch.long, device=y.device)
