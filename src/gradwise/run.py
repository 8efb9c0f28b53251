"""The Run: reads and writes a run directory and predicts; every capability takes a Run.

A Run offers what audit, optimise, serve, monitor, tune and report build on: preprocessing
as a public step (`transform`), batched outputs on a chosen device (`logits`, `to`), the
penultimate representation (`embed`), the exact splits it was trained and tested on
(`split`), and a calibration slot (`set_temperature`) that `predict_proba` applies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from gradwise.artifacts import read_json
from gradwise.config import (
    Config,
    DiffusionConfig,
    HFEncoderConfig,
    load_config,
)
from gradwise.data.dataset import SPLITS, SPLITS_FILE, Dataset, Split
from gradwise.data.schema import Schema
from gradwise.data.sources import load_dataset
from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError
from gradwise.evaluate.evaluator import EvalSettings, eval_batches
from gradwise.logs import LOG
from gradwise.models import Embedder, build_model
from gradwise.models.blocks import eval_mode
from gradwise.models.sampling import Generation
from gradwise.run_files import (
    ENCODER_FOLDER,
    FORMAT_VERSION,
    Calibration,
    SplitView,
    check_same_source,
    input_spec,
    load_run_weights,
    read_model_json,
    require,
    write_config,
    write_model_json,
)
from gradwise.training.checkpoint import save_weights
from gradwise.training.objectives import Objective, run_objective

if TYPE_CHECKING:
    from gradwise.run_conformal import SelectivePrediction

__all__ = ["FORMAT_VERSION", "Calibration", "Run", "SplitView", "input_spec", "write_config"]

log = logging.getLogger(LOG)


class Run:
    """A trained model with its config, data schema and evidence, backed by a run directory.

    Attributes:
        path: the run directory.
        config: the resolved config the run was trained with.
        schema: the data schema (preprocessing fitted on the training split).
        model: the network, in eval mode, on the CPU unless moved with `to`.
        loss: the loss the model was trained with.
        calibration: the fitted temperature and conformal quantiles, if any.
        backend: for an optimised variant (RUN/artifacts/<variant>/), the engine that runs
            it and its settings (see engines/loader.py); None for a plain torch run.
    """

    def __init__(
        self,
        path: Path,
        config: Config,
        schema: Schema,
        model: nn.Module,
        loss: str,
        calibration: Calibration = Calibration(),
        backend: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.schema = schema
        self.model = model.eval()
        self.loss = loss
        self.calibration = calibration
        self.backend = backend
        self.device = torch.device("cpu")
        self._data: Dataset | None = None

    # ------------------------------------------------------------ reading and writing

    @staticmethod
    def load(path: str | Path) -> Run:
        """Rebuild a run from model.json + model.safetensors (nothing is unpickled).

        Raises:
            NotTrainedError: the directory holds no trained model.
            DataError: the files are unreadable, inconsistent, or from a newer gradwise.
        """
        path = Path(path)
        if not path.is_dir():
            raise NotTrainedError(
                f"Run directory {path} not found ({path.resolve()}); train one with gradwise train."
            )
        for name in ("model.json", "config.yaml"):
            require(path, name)
        meta = read_model_json(path / "model.json")
        config = load_config(path / "config.yaml")
        model_cfg = meta.model
        if isinstance(model_cfg, HFEncoderConfig):  # rebuilt from the run's own copy
            model_cfg = model_cfg.model_copy(update={"path": str(path / ENCODER_FOLDER)})
        if meta.backend is not None:  # an optimised variant: its engine (engines/), its file
            from gradwise.engines.loader import load_variant_model

            model = load_variant_model(path, meta.backend, model_cfg, meta.spec)
        else:
            require(path, "model.safetensors")
            model = build_model(model_cfg, meta.spec, pretrained=False)
            load_run_weights(path / "model.safetensors", model, meta.version)
        return Run(path, config, meta.schema, model, meta.loss, meta.calibration, meta.backend)

    def save_model(self) -> None:
        """Write model.json (architecture, schema, calibration) and model.safetensors; a
        variant's engine file is written once, by deploy/, so a variant writes model.json."""
        if self.backend is not None:
            self._write_model_json()
            return
        if isinstance(self.config.model, HFEncoderConfig):
            from gradwise.models.hf_encoder import export_encoder_files

            export_encoder_files(self.config.model, self.path / ENCODER_FOLDER)
        self._write_model_json()
        save_weights(self.path / "model.safetensors", self.model)

    def _write_model_json(self) -> None:
        write_model_json(
            self.path, self.config, self.schema, self.loss, self.calibration, self.backend
        )

    def set_temperature(self, temperature: float | None) -> None:
        """Store a fitted temperature in model.json; `predict_proba` divides the logits by it.
        None removes it."""
        if temperature is not None and not temperature > 0:
            raise ConfigError(f"temperature must be above 0, got {temperature}.")
        t = None if temperature is None else float(temperature)
        self.calibration = dataclasses.replace(self.calibration, temperature=t)
        self._write_model_json()

    def set_conformal(self, conformal: dict[str, Any] | None) -> None:
        """Store conformal quantiles (and their settings) in model.json; None removes them."""
        self.calibration = dataclasses.replace(self.calibration, conformal=conformal)
        self._write_model_json()

    def set_selective(self, selective: dict[str, Any] | None) -> None:
        """Store a certified abstention threshold and its guarantee in model.json; None
        removes it."""
        self.calibration = dataclasses.replace(self.calibration, selective=selective)
        self._write_model_json()

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics.json summary: train/val/test metrics, best_epoch, epochs, wall_s."""
        path = self.path / "metrics.json"
        if not path.is_file():
            raise NotTrainedError(f"{self.path} has no metrics.json; the run did not finish.")
        return dict(read_json(path))

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch, as logged in metrics.jsonl."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @property
    def split_rule(self) -> dict[str, Any]:
        """How the splits were drawn and what the leakage scan found (splits.json's `rule`;
        empty for runs made before it was recorded). `split_rule["leaky"]` is True when 1%
        or more of the validation and test samples are copies of, or overlapping windows
        with, training samples: every held-out number of the run is then optimistic."""
        path = self.path / SPLITS_FILE
        return dict(read_json(path).get("rule") or {}) if path.is_file() else {}

    # ------------------------------------------------------------ the data it was trained on

    def dataset(self) -> Dataset:
        """The run's data, split exactly as in training, tokenized with the run's own
        vocabulary (refitting it would change the token ids); read once per Run.

        Raises:
            DataError: the source changed since training (its content hash differs), or the
                split no longer matches the stored one.
        """
        if self._data is None:
            data = load_dataset(self.config.data, self.config.seed, tokenizer=self.schema.tokenizer)
            check_same_source(self.path, self.schema, self.config, data)
            self._data = data
        return self._data

    def split(self, name: str) -> SplitView:
        """The raw samples, model-ready tensors and targets of exactly split `name`.

        Raises:
            ConfigError: `name` is not train, val or test.
            DataError: the source changed since training.
        """
        if name not in SPLITS:
            raise ConfigError(f"split must be train, val or test, not {name!r}.")
        data = self.dataset()
        part = data.part(name)
        return SplitView(name, data.raw_rows(name), part.x, part.y, data.source_rows(name))

    # ------------------------------------------------------------ predicting

    def to(self, device: str | torch.device) -> Run:
        """Move the model to `device` (e.g. "cuda"); `logits`, `embed` and `predict` run there
        and return CPU results. Returns the Run itself."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @property
    def eval_settings(self) -> EvalSettings:
        return EvalSettings(self.config.train.eval_batch_size, self.device)

    def transform(self, raw: Any) -> Tensor:
        """Raw inputs, as a user holds them, to model-ready inputs: what `predict` does before
        the forward pass (see `Schema.transform` for the accepted forms).

        Raises:
            DataError: the input has no rows, or does not fit the schema.
        """
        arr = self.schema.transform(raw)
        if len(arr) == 0:
            raise DataError("The input holds no rows; give at least one sample.")
        return torch.as_tensor(arr)

    def logits(self, x: Any) -> Tensor:
        """Model outputs for model-ready tensors (as `transform` gives) or raw inputs, in
        batches of `train.eval_batch_size` on the Run's device; returned on the CPU.

        Raises:
            GradwiseError: the run is a diffusion model, which generates rather than predicts.
        """
        self._check_not_generative("logits")
        xt = x if isinstance(x, Tensor) else self.transform(x)
        return self._forward(self.model, xt)

    def embed(self, x: Any) -> Tensor:
        """(N, D) penultimate features for tensors or raw inputs: what the head reads
        (`logits == model.head(embed)` for classifiers and regressors); the mean of the
        final token states for language models.

        Raises:
            GradwiseError: the run is a diffusion model.
        """
        self._check_not_generative("embed")
        model = self.model
        assert isinstance(model, Embedder)  # every architecture but diffusion
        xt = x if isinstance(x, Tensor) else self.transform(x)
        return self._forward(model.features, xt)

    @torch.no_grad()
    def _forward(self, fn: Any, x: Tensor) -> Tensor:
        outs = []
        with eval_mode(self.model):
            for xb, _ in eval_batches(x, None, self.eval_settings):
                outs.append(fn(xb).float().cpu())
        return torch.cat(outs) if outs else torch.empty(0)

    def _check_not_generative(self, what: str) -> None:
        if isinstance(self.config.model, DiffusionConfig):
            raise GradwiseError(
                f"{self.path} is a diffusion run: it generates images and has no {what} for "
                f"inputs. Use Run.sample (gradwise sample {self.path})."
            )

    def check_predicts(self) -> None:
        """Raise, with the verb to use instead, when this run does not predict from inputs."""
        self._check_not_generative("predictions")
        match self.schema.task:
            case "lm":
                raise GradwiseError(
                    f"{self.path} is a language model: it continues text rather than "
                    f"predicting from inputs. Use `gradwise generate {self.path} --prompt TEXT` "
                    "(Run.generate)."
                )
            case "mlm":
                raise GradwiseError(
                    f"{self.path} is masked-token pretraining: a starting point for "
                    "fine-tuning, not a predictor. Fine-tune it on labelled text with "
                    f"model.init_from: {self.path}."
                )

    def predict(self, x: Any) -> np.ndarray:
        """Labels (classification), values in the target's units (regression), or texts
        (seq2seq): numpy out. A forecaster given a table of consecutive rows answers once per
        full window; `forecast_positions` says which rows each answer read and is for. A
        variant with group thresholds (the fairness check's) decides by them; it needs a
        DataFrame holding the group column (see `run_conformal.group_threshold_classes`)."""
        self.check_predicts()
        if self.schema.task == "seq2seq":
            return self._translate(x)
        if self.calibration.group_thresholds is not None:  # a fairness variant's decisions
            from gradwise.run_conformal import group_threshold_classes

            return self.schema.target.decode(group_threshold_classes(self, x))
        out = self.logits(x)
        if self.schema.task == "classification":
            return self.schema.target.decode(self.probabilities(out).argmax(axis=1))
        values = self.schema.target.decode(out.numpy())
        if self.schema.series is not None:  # changes back to levels (data.difference)
            values = self.schema.series.to_levels(values, x)
        return values[:, 0] if values.shape[1] == 1 else values

    def predict_proba(self, x: Any) -> np.ndarray:
        """(N, K) class probabilities, columns in the order of `schema.classes`, with the
        run's fitted temperature applied (when it has one)."""
        if self.schema.task != "classification":
            raise GradwiseError(
                f"predict_proba needs a classifier; this run is {self.schema.task}."
            )
        return self.probabilities(self.logits(x))

    def probabilities(self, logits: Tensor, calibrated: bool = True) -> np.ndarray:
        """(N, K) class probabilities from (N, K) logits (or (N, 1) for `bce`), divided by the
        fitted temperature first unless `calibrated` is False."""
        t = self.calibration.temperature if calibrated else None
        if t is not None:
            logits = logits / t
        if logits.shape[1] == 1:  # bce: one logit for the positive class
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=1).numpy()
        return logits.softmax(dim=1).numpy()

    def evaluate(
        self, split: str | Split = "test", data: Dataset | None = None
    ) -> dict[str, float]:
        """Metrics on one split of the run's data, or on a Split of new labelled data.

        New data (see `gradwise.data.readers.load_labelled`) is preprocessed as in training;
        its loss is unweighted, since class weights belong to the training split.
        """
        if isinstance(split, Split):
            return self.objective(split.y, unweighted=True).metrics(
                self.model, split, self.eval_settings
            )
        if split not in SPLITS:
            raise ConfigError(f"split must be train, val or test, not {split!r}.")
        data = data or self.dataset()
        return self.objective(data.train.y).metrics(
            self.model, data.part(split), self.eval_settings
        )

    def objective(self, y_train: Tensor, unweighted: bool = False) -> Objective:
        """The training objective; class weights come from the training targets `y_train`."""
        return run_objective(self.config, self.schema, self.loss, self.model, y_train, unweighted)

    def predict_intervals(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Regression: (prediction, lower, upper) in the target's units, from the
        split-conformal quantiles the uncertainty audit stored (see
        `gradwise.run_conformal.prediction_intervals`); for a forecaster, one row per
        window, in the order of `forecast_positions`.

        Raises:
            GradwiseError: no quantiles are stored (run `gradwise audit RUN --checks
                uncertainty`), or the run is no regression.
            DataError: a forecaster of changes (data.difference) given model-ready tensors,
                which no longer hold the level to add back.
        """
        from gradwise.run_conformal import prediction_intervals

        self.check_predicts()
        series = self.schema.series
        if series is not None and series.difference and isinstance(x, Tensor):
            series.last_levels(x)  # raises: tensors no longer hold the level
        return prediction_intervals(self, x)

    def forecast_positions(self, x: Any) -> Any:
        """A forecaster's answers to a table of consecutive rows, located: a DataFrame with one
        row per answer of `predict` / `predict_intervals`, in their order: `window_first`,
        `window_last` (0-based input rows it read) and `for_row` (the row of its first step;
        step k is for row for_row + k - 1, past the input's end for the last ones).

        Raises:
            GradwiseError: the run is no forecaster, or `x` is no table.
        """
        import pandas as pd

        from gradwise.data.readers import forecast_positions

        series = self.schema.series
        if series is None or not isinstance(x, pd.DataFrame):
            raise GradwiseError(
                "forecast_positions locates a forecaster's answers to a table of consecutive "
                f"rows; this run is {self.schema.kind}, the input {type(x).__name__}."
            )
        return forecast_positions(len(x), series.window)

    def predict_sets(self, x: Any) -> np.ndarray:
        """Classification: (N, K) booleans, which classes (in the order of
        `schema.classes`) are in each input's split-conformal prediction set (see
        `gradwise.run_conformal.prediction_sets`).

        Raises:
            GradwiseError: no quantile is stored (run `gradwise audit RUN --checks
                uncertainty`), or the run is no classifier.
        """
        from gradwise.run_conformal import prediction_sets

        self.check_predicts()
        return prediction_sets(self, x)

    def predict_selective(self, x: Any) -> SelectivePrediction:
        """Predictions with a decision each: answer where the run's certified threshold is
        met, abstain (hand to a person) where not, and the guarantee in force (see
        `gradwise.run_conformal.predict_selective`): among answered inputs the error rate is
        at most alpha, with confidence 1 - delta, while inputs stay like the validation rows.

        Raises:
            GradwiseError: no threshold is certified (run `gradwise audit RUN --checks
                selective`), or the temperature it was fitted with has been refitted since.
        """
        from gradwise.run_conformal import predict_selective

        self.check_predicts()
        return predict_selective(self, x)

    # ------------------------------------------------------------ generating

    def generate(
        self,
        prompt: str,
        n_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> str:
        """Continue `prompt` with `n_tokens` sampled tokens (language models)."""
        return self.generate_scored(prompt, n_tokens, temperature, top_k, top_p, seed).text

    def generate_scored(
        self,
        prompt: str,
        n_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        threshold: float = 0.1,
    ) -> Generation:
        """Like `generate`, with each token's probability, the perplexity and the spans the
        model was unsure of (probability below `threshold`)."""
        from gradwise.run_generate import generate_scored

        return generate_scored(self, prompt, n_tokens, temperature, top_k, top_p, seed, threshold)

    def _translate(self, x: Any) -> np.ndarray:
        from gradwise.run_generate import translate

        return translate(self, x)

    def sample(
        self,
        n: int = 16,
        label: Any = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Generate `n` images with a diffusion run, in the training data's pixel scale.

        Args:
            label: a class (as in the data) to generate; None draws unconditionally.
            steps: DDIM steps (default: model.sample_steps); guidance: classifier-free scale.

        Returns:
            (n, C, H, W) float images.
        """
        from gradwise.run_generate import sample

        return sample(self, n, label, steps, guidance, seed)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, arch={self.config.model.arch}, task={self.schema.task})"
