"""Conformal sets and intervals from the quantiles stored in a run: what `Run.predict_sets`,
`Run.predict_intervals` and the server apply.

The uncertainty audit (`gradwise.auditing.uncertainty`) fits the split-conformal quantile on
the validation split and stores it, with its score and settings, in model.json
(`Run.set_conformal`); this module, beside the Run, turns a stored quantile into sets and
intervals for new inputs, with the same guarantee (see `gradwise.auditing.conformal` for the
scores and the quantile rule):

    regression       prediction +- q (absolute score) or +- q * sigma(x) (normalised score,
                     sigma the stored `Difficulty`), in the target's units;
    classification   APS sets (the classes whose adaptive score is at most q; randomised by
                     `row_uniforms`, or not) or LAC sets (the classes with 1 - p <= q); with
                     one quantile per class (Mondrian, `per_class: true`), class k enters a set
                     when its score is at most q_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.errors import GradwiseError

if TYPE_CHECKING:
    from gradwise.run import Run

# ---------------------------------------------------------------- sets from probabilities


def row_uniforms(probs: np.ndarray, seed: int) -> np.ndarray:
    """(N,) numbers uniform in [0, 1), each a hash of its row of probabilities (rounded to
    2^-24) and `seed`: the same row always gets the same number, whatever else is in the
    batch."""
    q = np.round(np.asarray(probs, dtype=np.float64) * 2**24).astype(np.uint64)
    h = np.full(len(q), np.uint64(seed) ^ np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
    for k in range(q.shape[1]):
        h = _splitmix64(h ^ q[:, k])
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _mass_above(probs: np.ndarray) -> np.ndarray:
    """(N, K) for each class, the probability of the classes ranked above it (ties: lower
    class index first)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    above_sorted = np.cumsum(sorted_p, axis=1) - sorted_p
    above = np.empty_like(above_sorted)
    np.put_along_axis(above, order, above_sorted, axis=1)
    return above


def aps_class_scores(probs: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """(N, K) the APS score every class would have: mass above it + U * its probability
    (U = 1 unrandomised)."""
    probs = np.asarray(probs, dtype=np.float64)
    weight = 1.0 if u is None else np.asarray(u)[:, None]
    return _mass_above(probs) + weight * probs


def aps_sets(probs: np.ndarray, q: float | np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """(N, K) membership of APS sets. Randomised: the classes whose score is at most q.
    Unrandomised: the classes ranked before the one that crosses q, and that one.

    Args:
        q: one quantile, or (K,) one per class (class k is held against q[k]).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if u is None:
        return _mass_above(probs) < q
    return aps_class_scores(probs, u) <= q


def lac_sets(probs: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """(N, K) membership: the classes with 1 - p <= q (q: one quantile, or (K,) per class)."""
    return 1.0 - np.asarray(probs, dtype=np.float64) <= q


# ---------------------------------------------------------------- the difficulty estimate


@dataclass(frozen=True)
class Difficulty:
    """sigma(x) = exp(standardised features @ coef.T + intercept), per output: a ridge
    regression of log |residual| on the model's penultimate features.

    Attributes:
        mean, std: (D,) standardisation of the features.
        coef: (m, D) one row per output; intercept: (m,).
    """

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def sigma(self, features: np.ndarray) -> np.ndarray:
        """(N, m) difficulty estimates, positive."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return np.exp(np.clip(z @ self.coef.T + self.intercept, -50.0, 50.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ridge regression of log |training residual| on the penultimate features",
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Difficulty:
        return Difficulty(*(np.asarray(d[k], dtype=np.float64) for k in _DIFFICULTY_KEYS))


_DIFFICULTY_KEYS = ("mean", "std", "coef", "intercept")


# ---------------------------------------------------------------- the run's outputs


def regression_outputs(run: Run, x: Any) -> np.ndarray:
    """(N, m) predictions in the target's units; for a forecaster of changes
    (data.difference), the changes from each window's last value, whose residuals equal those
    in levels (`prediction_intervals` adds the last value back)."""
    out = run.logits(x).double().numpy()
    return np.asarray(run.schema.target.decode(out), dtype=np.float64).reshape(len(out), -1)


def class_probabilities(run: Run, x: Any, temperature: float | None) -> np.ndarray:
    """(N, K) float64 class probabilities of softmax(logits / temperature) (None: 1)."""
    logits = run.logits(x).double()
    if temperature is not None:
        logits = logits / temperature
    return run.probabilities(logits, calibrated=False)


def _stored(run: Run, task: str) -> dict[str, Any]:
    conformal = run.calibration.conformal
    what = "intervals" if task == "regression" else "prediction sets"
    if run.schema.task != task:
        other = {"regression": " (it has intervals)", "classification": " (it has sets)"}
        raise GradwiseError(
            f"conformal {what} need a {task} run; {run.path} is {run.schema.task}"
            f"{other.get(run.schema.task, '')}."
        )
    if not conformal or conformal.get("task") != task:
        raise GradwiseError(
            f"{run.path} has no conformal quantiles for {what}; fit them with "
            f"`gradwise audit {run.path} --checks uncertainty` (it stores them in the run)."
        )
    return conformal


def prediction_intervals(
    run: Run, x: Any, last: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions and split-conformal intervals from the quantiles stored in the run.

    Args:
        x: raw inputs (as `Run.predict` takes) or model-ready tensors.
        last: (N,) for a forecaster of changes (data.difference) given model-ready tensors,
            each window's last target value (the tensors no longer hold it). None: raw input
            gives levels (its last values are read from it); tensors give changes, in the
            units of `regression_outputs` and `target_values` (as the audits compare them).

    Returns:
        (prediction, lower, upper), each (N,) for one output or (N, m) for m outputs, in the
        target's units.

    Raises:
        GradwiseError: the run is no regression, or the uncertainty check has not stored
            its quantiles.
    """
    conformal = _stored(run, "regression")
    xt = x if _is_tensor(x) else run.transform(x)
    pred = regression_outputs(run, xt)
    if last is not None:  # changes back to levels (data.difference)
        pred = pred + np.asarray(last, dtype=np.float64).reshape(-1, 1)
    elif run.schema.series is not None and not _is_tensor(x):
        pred = run.schema.series.to_levels(pred, x)
    q = np.asarray(conformal["quantile"], dtype=np.float64)
    if conformal["score"] == "normalised":
        difficulty = Difficulty.from_dict(conformal["difficulty"])
        half = q * difficulty.sigma(run.embed(xt).double().numpy())
    else:
        half = np.broadcast_to(q, pred.shape)
    lower, upper = pred - half, pred + half
    if pred.shape[1] == 1:
        return pred[:, 0], lower[:, 0], upper[:, 0]
    return pred, lower, upper


def prediction_sets(run: Run, x: Any) -> np.ndarray:
    """(N, K) booleans: which classes (columns in the order of `schema.classes`) are in each
    input's split-conformal prediction set, from the quantile stored in the run.

    Raises:
        GradwiseError: the run is no classifier, or the uncertainty check has not stored
            its quantile.
    """
    conformal = _stored(run, "classification")
    probs = class_probabilities(run, x, conformal.get("temperature"))
    return conformal_sets(probs, conformal["method"], conformal["quantile"], conformal)


def conformal_sets(
    probs: np.ndarray,
    method: str,
    q: float | Sequence[float | None],
    conformal: dict[str, Any],
) -> np.ndarray:
    """(N, K) set membership for `method` (aps or lac) at quantile q; `conformal` holds
    `randomised` and `seed` (APS).

    Args:
        q: one quantile (marginal coverage), or K quantiles, one per class (Mondrian: class
            k enters a set when its score is at most q[k]; None: the class had too few
            validation rows for a finite quantile and enters every set).
    """
    threshold = class_thresholds(q, np.shape(probs)[1])
    if method == "lac":
        return lac_sets(probs, threshold)
    u = row_uniforms(probs, conformal["seed"]) if conformal["randomised"] else None
    return aps_sets(probs, threshold, u)


def class_thresholds(q: float | Sequence[float | None], n_classes: int) -> float | np.ndarray:
    """A stored quantile as sets compare with it: one float, or (K,) floats per class with
    None (too few validation rows of the class) as +inf.

    Raises:
        GradwiseError: a per-class list does not have one quantile per class.
    """
    if isinstance(q, int | float):
        return float(q)
    values = [np.inf if v is None else float(v) for v in q]
    if len(values) != n_classes:
        raise GradwiseError(
            f"the stored conformal quantiles are {len(values)}, one per class, but the model "
            f"has {n_classes} classes; refit them with `gradwise audit RUN --checks uncertainty`."
        )
    return np.asarray(values, dtype=np.float64)


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


# ---------------------------------------------------------------- selective prediction


@dataclass(frozen=True)
class SelectivePrediction:
    """What a run with a certified abstention threshold says about each input.

    Attributes:
        prediction: (N,) labels (or values in the target's units; (N, m) for m outputs): the
            model's answer, given also where it abstains, so a person sees what it thought.
        answer: (N,) booleans: True where the score reaches the certified threshold (answer),
            False where the input goes to a person (abstain).
        score: (N,) the score compared with the threshold (higher: surer).
        probabilities: (N, K) calibrated class probabilities (classifiers), else None.
        guarantee: the guarantee in force: alpha, delta, threshold, n, score, fitted_at.
    """

    prediction: np.ndarray
    answer: np.ndarray
    score: np.ndarray
    probabilities: np.ndarray | None
    guarantee: dict[str, Any]

    @property
    def decision(self) -> np.ndarray:
        """(N,) "answer" or "abstain"."""
        return np.where(self.answer, "answer", "abstain")


GUARANTEE_KEYS = ("alpha", "delta", "threshold", "n", "score", "coverage", "fitted_at")


def selective_guarantee(run: Run) -> dict[str, Any]:
    """The certified abstention threshold stored in the run, checked against what it was
    fitted with.

    Raises:
        GradwiseError: none is stored, nothing could be certified, or the temperature or
            conformal quantile it was fitted with has been refitted since.
    """
    stored = run.calibration.selective
    fix = f"certify one with `gradwise audit {run.path} --checks selective`"
    if not stored:
        raise GradwiseError(f"{run.path} has no certified abstention threshold; {fix}.")
    if stored.get("threshold") is None:
        raise GradwiseError(
            f"{run.path} has no certified abstention threshold: {stored.get('reason', '')} "
            f"({fix} once that changes)."
        )
    if stored["task"] == "classification":
        now = run.calibration.temperature
        if stored.get("temperature") != now:
            raise GradwiseError(
                f"the abstention threshold of {run.path} was certified on probabilities with "
                f"temperature {stored.get('temperature')}, and the run's temperature is now "
                f"{now} (refitted since): the threshold no longer means what was certified; "
                f"re-{fix[0].lower()}{fix[1:]}."
            )
        if stored["score"] == "set_size":
            conformal = run.calibration.conformal or {}
            if conformal.get("quantile") != stored.get("conformal_quantile"):
                raise GradwiseError(
                    f"the abstention threshold of {run.path} was certified on conformal sets "
                    "whose quantile has been refitted since; " + fix + "."
                )
    return stored


def selective_scores(
    run: Run, x: Any, stored: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(prediction, score, probabilities or None) of inputs under a stored guarantee's score.

    Args:
        x: raw inputs (as `Run.predict` takes) or model-ready tensors.
        last: (N,) for a forecaster of changes (data.difference) given model-ready tensors,
            each window's last target value (the tensors no longer hold it). None: raw input
            gives levels (its last values are read from it); tensors give changes, in the
            units of `regression_outputs` and `target_values` (as the audits compare them).
    """
    xt = x if _is_tensor(x) else run.transform(x)
    if stored["task"] == "regression":
        pred = regression_outputs(run, xt)
        sigma = Difficulty.from_dict(stored["difficulty"]).sigma(run.embed(xt).double().numpy())
        out = pred[:, 0] if pred.shape[1] == 1 else pred
        return out, -sigma.max(axis=1), None
    probs = class_probabilities(run, xt, stored.get("temperature"))
    labels = run.schema.target.decode(probs.argmax(axis=1))
    return labels, classifier_score(probs, stored["score"], stored), probs


def classifier_score(probs: np.ndarray, score: str, stored: dict[str, Any]) -> np.ndarray:
    """(N,) how sure a classifier is, higher: surer: the top-class probability, the margin
    between the top two, or minus the size of the conformal set (`stored` holds its method,
    quantile, seed and randomisation)."""
    p = np.asarray(probs, dtype=np.float64)
    if score == "probability":
        return p.max(axis=1)
    if score == "margin":
        top2 = -np.partition(-p, 1, axis=1)[:, :2] if p.shape[1] > 1 else np.c_[p, 0 * p]
        return top2[:, 0] - top2[:, 1]
    sets = conformal_sets(p, stored["conformal_method"], stored["conformal_quantile"], stored)
    return -sets.sum(axis=1).astype(np.float64)


def predict_selective(run: Run, x: Any) -> SelectivePrediction:
    """Predictions, each with a decision (answer or abstain) under the run's certified
    threshold, and the guarantee in force."""
    stored = selective_guarantee(run)
    pred, score, probs = selective_scores(run, x, stored)
    answer = score >= stored["threshold"]
    guarantee = {k: stored.get(k) for k in GUARANTEE_KEYS}
    return SelectivePrediction(pred, answer, score, probs, guarantee)


# ---- group thresholds
# A binary classifier's decision with one threshold per group on the calibrated probability
# of the positive class, as the fairness check fits them (`gradwise.auditing.
# fairness_mitigation`) and stores them in a variant's model.json (`Calibration.
# group_thresholds`, never the base run's): `Run.predict` of that variant applies them.

if TYPE_CHECKING:
    import pandas as pd

MISSING_GROUP = "<missing>"  # the group of a row whose group column is empty


def group_labels(column: pd.Series, edges: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """(N,) each row's group name (str): the value as text, or, for a number column cut at
    `edges` (quartile edges), its bin ("18-30"; values beyond the edges fall in the first or
    last bin); an empty value is MISSING_GROUP."""
    import pandas as pd

    if edges is None:
        missing = column.isna().to_numpy()
        text = column.astype(str).to_numpy(dtype=str)
    else:
        e = np.asarray(edges, dtype=np.float64)
        names = np.array([f"{lo:g}-{hi:g}" for lo, hi in zip(e[:-1], e[1:], strict=True)])
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        text = names[np.searchsorted(e[1:-1], np.nan_to_num(values), side="left")]
    return np.where(missing, MISSING_GROUP, text)


def apply_group_thresholds(
    scores: np.ndarray, labels: np.ndarray, thresholds: dict[str, float], fallback: np.ndarray
) -> np.ndarray:
    """(N,) selected: score >= the row's group threshold; a group with none keeps `fallback`."""
    names, index = np.unique(labels, return_inverse=True)
    t = np.array([thresholds.get(str(g), np.nan) for g in names], dtype=np.float64)[index]
    return np.where(np.isnan(t), fallback, scores >= np.nan_to_num(t))


def group_thresholds_in_force(run: Run) -> dict[str, Any]:
    """The group thresholds stored in the run, checked against the temperature they were
    fitted at.

    Raises:
        GradwiseError: none are stored, or the run's temperature has been refitted since.
    """
    stored = run.calibration.group_thresholds
    if not stored:
        raise GradwiseError(
            f"{run.path} has no group thresholds; the fairness check writes a variant that "
            "has them (RUN/artifacts/fair-<constraint>/)."
        )
    now = run.calibration.temperature
    if stored.get("temperature") != now:
        raise GradwiseError(
            f"the group thresholds of {run.path} were fitted on probabilities with temperature "
            f"{stored.get('temperature')}, and its temperature is now {now} (refitted since): "
            "the thresholds no longer give the rates they were fitted for; re-run the fairness "
            "check on the run this variant came from (`gradwise audit RUN --checks fairness`), "
            "which writes the variant again."
        )
    return stored


def group_threshold_classes(run: Run, x: Any) -> np.ndarray:
    """(N,) class indices decided by the run's group thresholds: the positive class where
    p(positive) >= the threshold of the row's group, else the other; a group with no
    threshold (unseen, or too few validation rows) gets the model's argmax.

    Args:
        x: a DataFrame of raw rows holding the group column (the model reads its own columns).

    Raises:
        GradwiseError: no thresholds are in force, or `x` holds no group column.
    """
    import pandas as pd

    stored = group_thresholds_in_force(run)
    column = stored["column"]
    if not isinstance(x, pd.DataFrame) or column not in x.columns:
        given = f"a {type(x).__name__}" if not isinstance(x, pd.DataFrame) else "a table without it"
        raise GradwiseError(
            f"{run.path} decides with one threshold per group of column {column!r}, and was "
            f"given {given}; pass the raw rows as a DataFrame holding {column!r} (or predict "
            "with the run this variant came from)."
        )
    positive = int(stored["positive"])
    probs = class_probabilities(run, x, stored["temperature"])
    labels = group_labels(x[column], stored.get("edges"))
    argmax = probs.argmax(axis=1) == positive
    selected = apply_group_thresholds(probs[:, positive], labels, stored["thresholds"], argmax)
    return np.where(selected, positive, 1 - positive)
