"""The files of a run directory: model.json's format and contents, the weights, the config.

`Run.load` and `Run.save_model` read and write through these; the format number changes
when the files do, and a newer or unknown one is refused with the reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from torch import Tensor, nn

from gradwise.artifacts import atomic_write_text, read_json, write_json
from gradwise.config import Config, ModelConfig, dump_config
from gradwise.data.dataset import SPLITS, SPLITS_FILE, Dataset, Split
from gradwise.data.schema import Schema
from gradwise.data.sources import parse_source
from gradwise.data.stored_schema import schema_from_dict
from gradwise.errors import DataError, NotTrainedError
from gradwise.models import InputSpec
from gradwise.training.checkpoint import load_tensors

# 1: the first release; 2: calibration slot, splits.json, CNN conv stack named `blocks`
FORMAT_VERSION = 2
ENCODER_FOLDER = "encoder"  # an hf_encoder run's copy of its encoder's config and tokenizer


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


@dataclass(frozen=True)
class Calibration:
    """What the audits fitted on the validation split, stored in model.json and applied by
    `predict_proba`, `predict --proba` and the server.

    Attributes:
        temperature: logits are divided by it before the softmax (temperature scaling);
            None: not fitted, probabilities as trained.
        conformal: split-conformal quantiles and their settings (the uncertainty audit);
            None: not fitted.
        selective: the certified abstention threshold, its guarantee (alpha, delta, n) and
            what it was fitted with (the selective audit); None: not certified.
        group_thresholds: one decision threshold per group of a column, on the positive
            class's probability (column, edges, thresholds, positive, temperature, constraint,
            fitted_at, n_val); stored only in the variant the fairness check writes
            (RUN/artifacts/fair-<constraint>/), whose `predict` applies them; None: argmax.
    """

    temperature: float | None = None
    conformal: dict[str, Any] | None = None
    selective: dict[str, Any] | None = None
    group_thresholds: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelMeta:
    """What model.json holds, checked."""

    version: int
    model: Any  # a ModelConfig member
    spec: InputSpec
    schema: Schema
    loss: str
    calibration: Calibration
    backend: dict[str, Any] | None


def read_model_json(model_json: Path) -> ModelMeta:
    """model.json, parsed and checked.

    Raises:
        DataError: the file is damaged, from another tool, or from a newer gradwise.
    """
    try:
        meta = json.loads(model_json.read_text())
        if not isinstance(meta, dict):
            raise TypeError("the file does not hold a JSON object")
        version = format_version(meta, model_json)
        model_cfg = TypeAdapter(ModelConfig).validate_python(meta["model"])
        spec = InputSpec(
            **{
                **meta["input"],
                "shape": tuple(meta["input"]["shape"]),
                "categorical": tuple(meta["input"]["categorical"]),
            }
        )
        schema = schema_from_dict(meta["schema"])
        loss = str(meta["loss"])
        calibration = Calibration(**(meta.get("calibration") or {}))
        backend = meta.get("backend")
        if backend is not None and not isinstance(backend, dict):
            raise TypeError("its backend entry is not a JSON object")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).split("\n")[0]
        raise DataError(
            f"{model_json} is damaged or from another tool ({what}); retrain the run, or "
            "restore the file from a copy."
        ) from None
    return ModelMeta(version, model_cfg, spec, schema, loss, calibration, backend)


def write_config(path: Path, cfg: Config) -> None:
    atomic_write_text(path / "config.yaml", dump_config(cfg))


def require(path: Path, name: str) -> None:
    if not (path / name).is_file():
        raise NotTrainedError(
            f"{path} has no {name}: it is not a finished run. Train it with "
            f"`gradwise train CONFIG --out {path}` (or --resume if it was interrupted)."
        )


def format_version(meta: dict[str, Any], model_json: Path) -> int:
    version = meta.get("format")
    if not isinstance(version, int) or version < 1:
        raise DataError(
            f"{model_json} has format {version!r}, which no gradwise wrote; the file is "
            "damaged or from another tool."
        )
    if version > FORMAT_VERSION:
        raise DataError(
            f"{model_json} has format {version}, from a newer gradwise; this one reads up to "
            f"format {FORMAT_VERSION}. Upgrade gradwise (pip install -U gradwise)."
        )
    return version


def load_run_weights(path: Path, model: nn.Module, version: int) -> None:
    """model.safetensors into `model`; runs of format 1 named the CNN's conv stack
    `features`, now `blocks`."""
    tensors, _ = load_tensors(path)
    if version == 1:
        tensors = {
            ("blocks." + k.removeprefix("features.") if k.startswith("features.") else k): v
            for k, v in tensors.items()
        }
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise DataError(
            f"{path} does not match the model in model.json (missing: {', '.join(missing[:5])}; "
            f"unexpected: {', '.join(unexpected[:5])}); the run directory is inconsistent."
        )


@dataclass(frozen=True)
class SplitView:
    """One split exactly as training used it.

    Attributes:
        name: train, val or test.
        raw: the samples as read from the source, before preprocessing (a DataFrame for
            tables and labelled text, an array for arrays, images and series windows, token
            windows for a corpus), in the order of `x`.
        x: model-ready inputs; y: encoded targets (class indices, standardised values).
        rows: each sample's position among the source's samples (0-based row numbers of a
            table), to point a person at the original rows.
    """

    name: str
    raw: Any
    x: Tensor
    y: Tensor
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def tensors(self) -> Split:
        return Split(self.x, self.y)


def check_same_source(path: Path, schema: Schema, config: Config, data: Dataset) -> None:
    """Refuse data whose content hash or splits differ from the run's (RUN/splits.json).

    Raises:
        DataError: the source changed since training, or its split no longer matches.
    """
    then, now = schema.sha256, data.schema.sha256
    if then and now and then != now:
        _, location = parse_source(config.data.source)
        raise DataError(
            f"{location} changed since this run was trained: its sha256 was {then}, it is "
            f"now {now}. Restore the data the run was trained on, or retrain on the new "
            "data."
        )
    stored = path / SPLITS_FILE
    if stored.is_file() and data.rows:
        saved = read_json(stored)
        for name in SPLITS:
            if saved[name] != data.source_rows(name).tolist():
                raise DataError(
                    f"The {name} split of {config.data.source} no longer matches "
                    f"{stored} (another scikit-learn version may split differently); the "
                    "run's evidence cannot be reproduced on it. Retrain the run."
                )


def write_model_json(
    path: Path,
    config: Config,
    schema: Schema,
    loss: str,
    calibration: Calibration,
    backend: dict[str, Any] | None,
) -> None:
    """RUN/model.json: the format, the model's config and inputs, the loss, the schema, the
    calibration and (an optimised variant) its engine."""
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model": config.model.model_dump(mode="json"),
        "input": asdict(input_spec(schema, loss)),
        "loss": loss,
        "schema": schema.to_dict(),
        "calibration": asdict(calibration),
    }
    if backend is not None:
        meta["backend"] = backend
    write_json(path / "model.json", meta)
