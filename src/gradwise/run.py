"""The Run: reads and writes a run directory and predicts; every capability takes a Run."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError
from torch import Tensor, nn

from gradwise.config import (
    Config,
    DiffusionConfig,
    ModelConfig,
    Seq2SeqConfig,
    dump_config,
    load_config,
)
from gradwise.data.dataset import Dataset, Split
from gradwise.data.schema import Schema
from gradwise.data.sources import load_dataset
from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError
from gradwise.evaluate.evaluator import EvalSettings, predict_logits
from gradwise.models import InputSpec, build_model
from gradwise.models.sampling import Generation
from gradwise.train.checkpoint import atomic_write_text, load_weights, save_weights
from gradwise.train.losses import make_loss
from gradwise.train.objectives import Objective, make_objective

log = logging.getLogger("gradwise")

FORMAT_VERSION = 1


def input_spec(schema: Schema, loss_name: str) -> InputSpec:
    """What the model must accept and emit for this data (a single logit for `bce`)."""
    return InputSpec(
        kind=schema.kind,
        shape=tuple(schema.input_shape),
        n_outputs=1 if loss_name == "bce" else schema.n_outputs,
        vocab_size=schema.tokenizer.vocab_size if schema.tokenizer else 0,
        categorical=tuple(schema.categorical),
        per_token=schema.task in ("lm", "seq2seq", "mlm"),
        source_len=schema.source_len or 0,
    )


class Run:
    """A trained model with its config, data schema and evidence, backed by a run directory.

    Attributes:
        path: the run directory.
        config: the resolved config the run was trained with.
        schema: the data schema (preprocessing fitted on the training split).
        model: the network, in eval mode, on the CPU.
        loss: the loss the model was trained with.
    """

    def __init__(
        self, path: Path, config: Config, schema: Schema, model: nn.Module, loss: str
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.schema = schema
        self.model = model.eval()
        self.loss = loss

    # ------------------------------------------------------------ reading and writing

    @staticmethod
    def load(path: str | Path) -> Run:
        """Rebuild a run from model.json + model.safetensors (nothing is unpickled).

        Raises:
            NotTrainedError: the directory holds no trained model.
            DataError: the files are unreadable or inconsistent.
        """
        path = Path(path)
        if not path.is_dir():
            raise NotTrainedError(f"Run directory {path} not found; train one with gradwise train.")
        for name in ("model.json", "model.safetensors", "config.yaml"):
            if not (path / name).is_file():
                raise NotTrainedError(
                    f"{path} has no {name}: it is not a finished run. Train it with "
                    f"`gradwise train CONFIG --out {path}` (or --resume if it was interrupted)."
                )
        try:
            meta = json.loads((path / "model.json").read_text())
            model_cfg = TypeAdapter(ModelConfig).validate_python(meta["model"])
            spec = InputSpec(
                **{
                    **meta["input"],
                    "shape": tuple(meta["input"]["shape"]),
                    "categorical": tuple(meta["input"]["categorical"]),
                }
            )
            schema = Schema.from_dict(meta["schema"])
        except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
            raise DataError(
                f"{path / 'model.json'} is damaged or from another tool: {exc}"
            ) from None
        config = load_config(path / "config.yaml")
        model = build_model(model_cfg, spec)
        load_weights(path / "model.safetensors", model)
        return Run(path, config, schema, model, meta["loss"])

    def save_model(self) -> None:
        """Write model.json (architecture + schema) and model.safetensors."""
        meta = {
            "format": FORMAT_VERSION,
            "model": self.config.model.model_dump(mode="json"),
            "input": asdict(input_spec(self.schema, self.loss)),
            "loss": self.loss,
            "schema": self.schema.to_dict(),
        }
        atomic_write_text(self.path / "model.json", json.dumps(meta, indent=1, default=_json))
        save_weights(self.path / "model.safetensors", self.model)

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics.json summary: train/val/test metrics, best_epoch, epochs, wall_s."""
        path = self.path / "metrics.json"
        if not path.is_file():
            raise NotTrainedError(f"{self.path} has no metrics.json; the run did not finish.")
        return json.loads(path.read_text())

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch, as logged in metrics.jsonl."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def dataset(self) -> Dataset:
        """The run's data, split exactly as in training (same source, same seed), and tokenized
        with the run's own vocabulary (refitting it would change the token ids)."""
        data = load_dataset(self.config.data, self.config.seed, tokenizer=self.schema.tokenizer)
        if self.schema.sha256 and data.schema.sha256 != self.schema.sha256:
            log.warning(
                "%s changed since training; splits and metrics may differ", self.config.data.source
            )
        return data

    # ------------------------------------------------------------ predicting

    def logits(self, x: Any) -> Tensor:
        """Model outputs for raw inputs (see `Schema.transform` for the accepted forms).

        Raises:
            GradwiseError: the run is a diffusion model, which generates rather than predicts.
        """
        if isinstance(self.config.model, DiffusionConfig):
            raise GradwiseError(
                f"{self.path} is a diffusion run: it generates images and predicts nothing from "
                f"inputs. Use Run.sample (gradwise sample {self.path})."
            )
        arr = self.schema.transform(x)
        return self._logits(torch.as_tensor(arr))

    def _logits(self, x: Tensor) -> Tensor:
        return predict_logits(self.model, x, self._eval)

    def predict(self, x: Any) -> np.ndarray:
        """Labels (classification), values in the target's units (regression), or texts
        (seq2seq): numpy out."""
        if self.schema.task == "seq2seq":
            return self._translate(x)
        out = self.logits(x)
        if self.schema.task == "classification":
            return self.schema.target.decode(self._probs(out).argmax(axis=1))
        if self.schema.task == "regression":
            values = self.schema.target.decode(out.numpy())
            return values[:, 0] if values.shape[1] == 1 else values
        raise GradwiseError("A language model predicts text: use Run.generate (gradwise generate).")

    def predict_proba(self, x: Any) -> np.ndarray:
        """(N, K) class probabilities, columns in the order of `schema.classes`."""
        if self.schema.task != "classification":
            raise GradwiseError(
                f"predict_proba needs a classifier; this run is {self.schema.task}."
            )
        return self._probs(self.logits(x))

    def _probs(self, logits: Tensor) -> np.ndarray:
        if logits.shape[1] == 1:  # bce: one logit for the positive class
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=1).numpy()
        return logits.softmax(dim=1).numpy()

    def evaluate(
        self, split: str | Split = "test", data: Dataset | None = None
    ) -> dict[str, float]:
        """Metrics on one split of the run's data, or on a Split of new labelled data.

        New data (see `gradwise.data.sources.load_labelled`) is preprocessed as in training;
        its loss is unweighted, since class weights belong to the training split.
        """
        if isinstance(split, Split):
            return self.objective(split.y, unweighted=True).metrics(self.model, split, self._eval)
        data = data or self.dataset()
        part = {"train": data.train, "val": data.val, "test": data.test}.get(split)
        if part is None:
            raise ConfigError(f"split must be train, val or test, not {split!r}.")
        return self.objective(data.train.y).metrics(self.model, part, self._eval)

    def objective(self, y_train: Tensor, unweighted: bool = False) -> Objective:
        """The training objective; class weights come from the training targets `y_train`."""
        loss_cfg = self.config.train.loss
        if unweighted:
            loss_cfg = loss_cfg.model_copy(update={"class_weights": "none"})
        n_classes = self.schema.n_outputs if self.schema.task == "classification" else 0
        criterion = make_loss(loss_cfg, self.loss, y_train, n_classes)
        return make_objective(self.config, self.schema, criterion, self.model)

    @property
    def _eval(self) -> EvalSettings:
        return EvalSettings(self.config.train.eval_batch_size)

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
        from gradwise.models.sampling import generate

        tok = self.schema.tokenizer
        if self.schema.task != "lm" or tok is None:
            raise GradwiseError(f"generate needs a language model; this run is {self.schema.task}.")
        ids = torch.from_numpy(tok.encode(prompt or "\n"))
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out, probs = generate(self.model, ids, n_tokens, temperature, top_k, top_p, gen)  # type: ignore[arg-type]
        tokens = [tok.token_text(int(i)) for i in out]
        return Generation.of(tokens, probs.tolist(), threshold)

    def _translate(self, x: Any) -> np.ndarray:
        from gradwise.models.seq2seq import translate

        tok = self.schema.tokenizer
        assert tok is not None and isinstance(self.config.model, Seq2SeqConfig)
        source = torch.as_tensor(self.schema.transform(x))
        max_len = self.schema.input_shape[0] - (self.schema.source_len or 0)
        ids = translate(self.model, source, max_len, self.config.model.beam_size)  # type: ignore[arg-type]
        return np.array([tok.decode(seq) for seq in ids], dtype=object)

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
        from gradwise.models.diffusion import Diffusion, sample_images

        cfg = self.config.model
        if not isinstance(cfg, DiffusionConfig):
            raise GradwiseError(f"sample needs a diffusion run; this run is {cfg.arch}.")
        assert isinstance(self.model, Diffusion)  # built from cfg
        labels: Tensor | None = None
        if label is not None:
            classes = self.schema.classes or []
            matches = [i for i, c in enumerate(classes) if str(c) == str(label)]
            if not matches:
                raise ConfigError(
                    f"--label {label!r} is not a class of this run; classes: "
                    f"{', '.join(map(str, classes))}."
                )
            labels = torch.full((n,), matches[0], dtype=torch.long)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            images = sample_images(
                self.model,
                n,
                labels,
                steps or cfg.sample_steps,
                cfg.guidance if guidance is None else guidance,
                gen,
            )
        norm = self.schema.array
        assert norm is not None
        mean = np.array(norm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.array(norm.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return images.float().numpy() * std + mean

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, arch={self.config.model.arch}, task={self.schema.task})"


def write_config(path: Path, cfg: Config) -> None:
    atomic_write_text(path / "config.yaml", dump_config(cfg))


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
