"""What served traffic is compared with: the training inputs, and the validation outputs.

Inputs are compared on two representations: the raw features (table columns, with
categorical columns as codes; pixels; numbers) and the model's penultimate embeddings
(`Run.embed`). Outputs (the predicted class distribution or predicted values, the mean
confidence, the accuracy) are compared with the same quantities on the validation split,
computed with the probabilities the server sends (temperature-scaled when the run has one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from gradwise.artifacts import read_json
from gradwise.auditing.calibration import expected_calibration_error
from gradwise.auditing.drift import Reference, prepare
from gradwise.auditing.shift import table_matrix
from gradwise.run import Run
from gradwise.serving.schemas import InstanceCodec


@dataclass(frozen=True)
class Trust:
    """How far the label-free accuracy estimate can be trusted.

    Attributes:
        ece: expected calibration error of the served probabilities on held-out data: while
            inputs look like that data, mean confidence misses accuracy by about this much.
        source: where the number comes from.
    """

    ece: float
    source: str

    def sentence(self) -> str:
        return (
            f"the label-free estimate (mean top probability) is within about "
            f"{100 * self.ece:.1f} points of the true accuracy while inputs look like the "
            f"held-out data (ECE {self.ece:.3f}, {self.source}); under drift calibration "
            "degrades, and the estimate tends to be optimistic"
        )


@dataclass(frozen=True)
class Baseline:
    """The reference samples and validation statistics of a run.

    Attributes:
        raw: prepared training raw features (None: not comparable, e.g. text).
        raw_names: the raw features' names (tables).
        embed: prepared training embeddings.
        outputs: prepared validation outputs: predicted class codes (one categorical
            column) or predicted values.
        val_confidence, val_accuracy: mean top probability and accuracy on validation
            (classification).
        trust: the calibration error behind the label-free estimate.
    """

    raw: Reference | None
    raw_names: list[str] | None
    embed: Reference | None
    outputs: Reference | None
    outputs_categorical: bool
    val_confidence: float | None
    val_accuracy: float | None
    trust: Trust | None


def raw_features(run: Run, codec: InstanceCodec) -> Callable[[list[BaseModel]], np.ndarray] | None:
    """Served instances -> the raw feature matrix the training split is compared in."""
    schema = run.schema
    if schema.tabular is not None:
        prep = schema.tabular
        return lambda instances: table_matrix(codec.to_raw(instances), prep)
    if schema.array is not None and not codec.model_ready:
        return lambda instances: np.asarray(codec.to_raw(instances), dtype=np.float64).reshape(
            len(instances), -1
        )
    return None  # series windows and text: compared on embeddings only


def model_inputs(run: Run, codec: InstanceCodec, instances: list[BaseModel]) -> torch.Tensor:
    raw = codec.to_raw(instances)
    return torch.as_tensor(raw) if codec.model_ready else run.transform(raw)


def build_baseline(run: Run, max_rows: int = 5000, seed: int = 0) -> Baseline:
    """Training features and embeddings (a sample of at most `max_rows`), validation outputs.

    Raises:
        DataError: the run's data is not at hand or changed since training.
    """
    rng = np.random.default_rng(seed)
    train = run.split("train")
    pick = np.sort(rng.permutation(len(train))[:max_rows])
    schema = run.schema
    raw: Reference | None = None
    names: list[str] | None = None
    if schema.tabular is not None:
        prep = schema.tabular
        matrix = table_matrix(train.raw.iloc[pick], prep)
        raw = prepare(matrix, range(len(prep.numeric), len(prep.columns)))
        names = list(prep.columns)
    elif schema.array is not None and schema.series is None and schema.kind != "sequence":
        raw = prepare(np.asarray(train.raw, dtype=np.float64)[pick].reshape(len(pick), -1))
    embed = prepare(run.embed(train.x[torch.from_numpy(pick)]).double().numpy())
    val = run.split("val")
    logits = run.logits(val.x)
    if schema.task == "classification":
        probs = run.probabilities(logits)
        predicted = probs.argmax(axis=1)
        outputs = prepare(predicted[:, None].astype(np.float64), categorical=[0])
        return Baseline(
            raw,
            names,
            embed,
            outputs,
            True,
            float(probs.max(axis=1).mean()),
            float((predicted == val.y.numpy()).mean()),
            trust(run),
        )
    values = np.asarray(schema.target.decode(logits.numpy()), dtype=np.float64)
    if schema.series is not None:  # changes back to levels (data.difference), as served
        values = schema.series.to_levels(values, np.asarray(val.raw))
    return Baseline(
        raw, names, embed, prepare(values.reshape(len(values), -1)), False, None, None, None
    )


def trust(run: Run) -> Trust:
    """The ECE behind the label-free estimate: the calibration check's, when it measured
    the probabilities the run serves now; else measured here on the test split."""
    stored = _audited_ece(Path(run.path) / "audit" / "calibration.json", run)
    if stored is not None:
        return Trust(stored, "RUN/audit/calibration.json, test split")
    test = run.split("test")
    probs = run.probabilities(run.logits(test.x))
    ece = expected_calibration_error(probs, test.y.numpy())
    t = run.calibration.temperature
    which = f"temperature {t:.2f}" if t is not None else "no temperature fitted"
    return Trust(float(ece), f"measured now on the test split, {which}")


def _audited_ece(path: Path, run: Run) -> float | None:
    """The audit's ECE of the probabilities the run serves now, else None."""
    if not path.is_file():
        return None
    served_t = run.calibration.temperature
    try:
        metrics: dict[str, Any] = read_json(path)["metrics"]
        graded = metrics["graded"]
        if graded == "after":  # graded with the temperature it fitted and stored
            same = served_t is not None and abs(float(metrics["temperature"]) - served_t) < 1e-9
        else:
            same = graded == "before" and served_t is None
        return float(metrics[graded]["ece"]) if same else None
    except (KeyError, TypeError, ValueError):
        return None
