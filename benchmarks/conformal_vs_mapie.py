"""Claims: gradwise's split-conformal intervals and sets equal MAPIE's on the same model and
residuals, and their empirical coverage over 100 random calibration / test splits is within
1 point of the nominal 90%.

    python benchmarks/conformal_vs_mapie.py

Needs mapie (`pip install mapie`, in the `bench` extra). Two trained runs: an MLP on a
heteroscedastic synthetic table (noise std grows fiftyfold along one feature; 3,000 rows)
and the digits MLP (examples/digits-mlp.yaml). For each, the uncertainty check fits its
quantile on the validation split; MAPIE's SplitConformalRegressor / SplitConformalClassifier
(prefit) get the same model (wrapped as a scikit-learn estimator over the run's logits) and
the same validation rows; the test intervals and sets are compared element by element.
Coverage: the validation and test rows pooled and re-split at random 100 times (half to
calibrate, half to test), the quantile refitted each time. Time: gradwise's calibration and
prediction against MAPIE's conformalize + predict, measured in the same run on the same
precomputed outputs (model forward passes excluded from both).
"""

from __future__ import annotations

import datetime
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mapie.classification import SplitConformalClassifier
from mapie.regression import SplitConformalRegressor
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.conformal import (
    absolute_scores,
    aps_scores,
    conformal_quantile,
    lac_scores,
    normalised_scores,
    target_values,
)
from gradwise.run_conformal import (
    aps_sets,
    class_probabilities,
    lac_sets,
    prediction_intervals,
    prediction_sets,
    regression_outputs,
    row_uniforms,
)

ROOT = Path(__file__).resolve().parent.parent
COVERAGE = 0.9
RESPLITS = 100


class Outputs(BaseEstimator, RegressorMixin):
    """A fitted 'model' whose predictions are looked up by row index (the run's outputs)."""

    fitted_ = True

    def __init__(self, values: np.ndarray | None = None) -> None:
        self.values = values

    def fit(self, x: np.ndarray, y: np.ndarray) -> Outputs:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.values is not None
        return self.values[np.asarray(x)[:, 0].astype(int)]

    def __sklearn_is_fitted__(self) -> bool:
        return True


class Probabilities(BaseEstimator, ClassifierMixin):
    """A fitted classifier whose probabilities are looked up by row index."""

    fitted_ = True

    def __init__(self, probs: np.ndarray | None = None) -> None:
        self.probs = probs

    def fit(self, x: np.ndarray, y: np.ndarray) -> Probabilities:
        return self

    @property
    def classes_(self) -> np.ndarray:
        assert self.probs is not None
        return np.arange(self.probs.shape[1])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.probs is not None
        return self.probs[np.asarray(x)[:, 0].astype(int)]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _heteroscedastic_run(folder: Path) -> gradwise.Run:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(3000, 3))
    y = 3 * x[:, 0] + np.sin(4 * x[:, 1]) + rng.normal(size=3000) * 0.05 * np.exp(4 * x[:, 0])
    pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y).to_csv(folder / "h.csv", index=False)
    cfg = {
        "name": "hetero",
        "data": {"source": f"csv:{folder / 'h.csv'}", "target": "y"},
        "model": {"arch": "mlp", "hidden": [64, 64], "dropout": 0.0},
        "train": {"epochs": 100, "batch_size": 64, "early_stopping": {"patience": 10}},
        "audit": {"uncertainty": {"regression_score": "absolute"}},
    }
    return gradwise.train(cfg, out=folder / "hetero")


def regression(folder: Path) -> None:
    run = _heteroscedastic_run(folder)
    result = run_checks(run, ["uncertainty"])["uncertainty"]
    val, test = run.split("val"), run.split("test")
    pred_val, y_val = regression_outputs(run, val.x)[:, 0], target_values(run, val.y)[:, 0]
    pred_test = regression_outputs(run, test.x)[:, 0]
    _, lower, upper = prediction_intervals(gradwise.load(run.path), test.x)
    # MAPIE on the same model outputs: rows are looked up by their index
    values = np.concatenate([pred_val, pred_test])
    idx_val = np.arange(len(val))[:, None]
    idx_test = len(val) + np.arange(len(test))[:, None]
    mapie = SplitConformalRegressor(Outputs(values), confidence_level=COVERAGE, prefit=True)
    started = time.perf_counter()
    _, bounds = mapie.conformalize(idx_val, y_val).predict_interval(idx_test)
    mapie_s = time.perf_counter() - started
    started = time.perf_counter()
    q = conformal_quantile(absolute_scores(pred_val, y_val), COVERAGE)
    ours = (pred_test - q, pred_test + q)
    ours_s = time.perf_counter() - started
    diff = max(np.abs(bounds[:, 0, 0] - lower).max(), np.abs(bounds[:, 1, 0] - upper).max())
    assert np.allclose(ours[0], lower) and np.allclose(ours[1], upper)
    coverage = result.metrics["absolute"]["coverage"]
    print(
        f"| regression (absolute score), {len(val)} calibration / {len(test)} test rows | "
        f"max |gradwise - MAPIE| bound {diff:.2e} | test coverage {coverage:.3f} | "
        f"time gradwise / MAPIE {ours_s / mapie_s:.3f} |"
    )
    # coverage over random re-splits of the pooled validation + test rows
    y_all = np.concatenate([y_val, target_values(run, test.y)[:, 0]])
    sigma = _sigma(run, val, test)
    covers: dict[str, list[float]] = {"absolute": [], "normalised": []}
    widths: dict[str, list[float]] = {"absolute": [], "normalised": []}
    for seed in range(RESPLITS):
        perm = np.random.default_rng(seed).permutation(len(y_all))
        cal, tst = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        for name, scale in (("absolute", np.ones_like(sigma)), ("normalised", sigma)):
            scores = normalised_scores(values[cal], y_all[cal], scale[cal])
            half = conformal_quantile(scores, COVERAGE) * scale[tst]
            covers[name].append(float(np.mean(np.abs(y_all[tst] - values[tst]) <= half)))
            widths[name].append(float(2 * half.mean()))
    for name in covers:
        print(
            f"| intervals, {name} score, {RESPLITS} re-splits | mean coverage "
            f"{np.mean(covers[name]):.4f} (std {np.std(covers[name]):.4f}) | mean width "
            f"{np.mean(widths[name]):.3f} |"
        )


def _sigma(run: gradwise.Run, val: object, test: object) -> np.ndarray:
    from gradwise.auditing.uncertainty import _fit_difficulty

    train = run.split("train")
    difficulty = _fit_difficulty(run, train.x, train.y, 0)
    feats = torch.cat([run.embed(val.x), run.embed(test.x)]).double().numpy()  # type: ignore[attr-defined]
    return difficulty.sigma(feats)[:, 0]


def classification(folder: Path) -> None:
    run = gradwise.train(ROOT / "examples" / "digits-mlp.yaml", out=folder / "digits")
    run_checks(run, ["uncertainty"])
    val, test = run.split("val"), run.split("test")
    p_val, p_test = class_probabilities(run, val.x, None), class_probabilities(run, test.x, None)
    y_val, y_test = val.y.numpy(), test.y.numpy()
    probs = np.concatenate([p_val, p_test])
    idx_val = np.arange(len(val))[:, None]
    idx_test = len(val) + np.arange(len(test))[:, None]
    mapie = SplitConformalClassifier(
        Probabilities(probs), confidence_level=COVERAGE, conformity_score="lac", prefit=True
    )
    started = time.perf_counter()
    _, mapie_sets = mapie.conformalize(idx_val, y_val).predict_set(idx_test)
    mapie_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = lac_sets(p_test, conformal_quantile(lac_scores(p_val, y_val), COVERAGE))
    ours_s = time.perf_counter() - started
    same = float(np.mean(np.all(ours == mapie_sets[:, :, 0], axis=1)))
    stored = prediction_sets(gradwise.load(run.path), test.x)  # the stored APS sets
    stored_coverage = stored[np.arange(len(y_test)), y_test].mean()
    print(
        f"| classification (LAC), digits MLP, {len(val)} / {len(test)} rows | identical sets "
        f"{same:.1%} | stored APS sets: coverage {stored_coverage:.3f}, "
        f"size {stored.sum(1).mean():.2f} | time gradwise / MAPIE {ours_s / mapie_s:.3f} |"
    )
    y_all = np.concatenate([y_val, y_test])
    u = row_uniforms(probs, 0)
    covers: dict[str, list[float]] = {"aps (randomised)": [], "lac": [], "aps (unrandomised)": []}
    sizes: dict[str, list[float]] = {k: [] for k in covers}
    for seed in range(RESPLITS):
        perm = np.random.default_rng(seed).permutation(len(y_all))
        cal, tst = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        rows = np.arange(len(tst))
        q = conformal_quantile(aps_scores(probs[cal], y_all[cal], u[cal]), COVERAGE)
        sets = {"aps (randomised)": aps_sets(probs[tst], q, u[tst])}
        q = conformal_quantile(lac_scores(probs[cal], y_all[cal]), COVERAGE)
        sets["lac"] = lac_sets(probs[tst], q)
        q = conformal_quantile(aps_scores(probs[cal], y_all[cal], None), COVERAGE)
        sets["aps (unrandomised)"] = aps_sets(probs[tst], q, None)
        for name, s in sets.items():
            covers[name].append(float(s[rows, y_all[tst]].mean()))
            sizes[name].append(float(s.sum(1).mean()))
    for name in covers:
        print(
            f"| sets, {name}, {RESPLITS} re-splits | mean coverage {np.mean(covers[name]):.4f} "
            f"(std {np.std(covers[name]):.4f}) | mean size {np.mean(sizes[name]):.3f} |"
        )


def main() -> None:
    torch.set_num_threads(1)
    import mapie

    print(
        f"# conformal vs MAPIE {mapie.__version__}, {datetime.date.today()}, "
        f"{platform.machine()}, target coverage {COVERAGE}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        regression(Path(tmp))
        classification(Path(tmp))


if __name__ == "__main__":
    main()
