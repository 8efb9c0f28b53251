"""The fairness check on the UCI Adult census table, beside fairlearn's MetricFrame.

A default MLP (gradwise's defaults: two hidden layers of 256, 30 epochs with early stopping)
is trained on adult-train.csv (../shared/data/adult, 32,561 rows; gradwise draws its own
train / validation / test split, 65 / 15 / 20%), its temperature and conformal quantile are
fitted (the calibration and uncertainty checks), and the fairness check runs with
`groups: [sex]`. The script prints the check's per-group numbers with their bootstrap
intervals next to MetricFrame's on the same test predictions, the between-group numbers next
to fairlearn's disparity functions, and the group thresholds the check fits (once per
constraint: demographic parity, true-positive-rate parity) beside fairlearn's
ThresholdOptimizer (prefit on the same validation scores; randomised, seeded). Each constraint's
thresholds are written as a variant, RUN/artifacts/fair-<constraint>/; the script loads it
with gradwise.load, predicts the test rows with it, and measures those predictions with
fairlearn next to the check's numbers.

    python benchmarks/fairness_adult.py                 # about 2 minutes on 2 CPU cores
    python benchmarks/fairness_adult.py --groups sex race --out runs/adult
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.base import AuditContext
from gradwise.auditing.fairness import check
from gradwise.config import FairnessAudit
from gradwise.run_conformal import class_probabilities, group_labels

# the shared data sets: GRADWISE_SHARED_DATA, else ../shared/data beside the checkout
SHARED = Path(
    os.environ.get("GRADWISE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ADULT = SHARED / "adult" / "adult-train.csv"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip
MEASURES = ("accuracy", "selection_rate", "true_positive_rate", "false_positive_rate")


def train(out: Path, seed: int) -> gradwise.Run:
    config = {
        "name": "adult-mlp",
        "seed": seed,
        "data": {
            "source": f"csv:{ADULT}",
            "columns": ADULT_COLUMNS,
            "na_values": ["?"],
            "target": "income",
        },
    }
    return gradwise.train(config, out=out, overwrite=True)


def fairlearn_side(run: gradwise.Run, group: str) -> tuple[MetricFrame, dict[str, float]]:
    """MetricFrame and the disparity functions on the run's test predictions, as the check
    makes them (argmax of the calibrated probabilities; positive: the second class)."""
    test = run.split("test")
    probs = class_probabilities(run, test.x, run.calibration.temperature)
    y, pred = test.y.numpy(), probs.argmax(axis=1)
    sf = test.raw[group].astype(str).to_numpy()
    frame = MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=y,
        y_pred=pred,
        sensitive_features=sf,
    )
    kw = {"y_true": y, "y_pred": pred, "sensitive_features": sf}
    between = {
        "demographic_parity_difference": demographic_parity_difference(**kw),
        "demographic_parity_ratio": demographic_parity_ratio(**kw),
        "equal_opportunity_difference": equal_opportunity_difference(**kw),
        "equalized_odds_difference": equalized_odds_difference(**kw),
        "equalized_odds_ratio": equalized_odds_ratio(**kw),
        "accuracy_gap": float(frame.difference()["accuracy"]),
    }
    return frame, between


class Scores(ClassifierMixin, BaseEstimator):
    """The run's calibrated probability of the positive class, given as the input: what
    ThresholdOptimizer thresholds (prefit), the score the check's own thresholds read."""

    def __init__(self) -> None:
        self.fitted_ = True

    def fit(self, x: np.ndarray, y: np.ndarray) -> Scores:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)[:, 0]


def threshold_optimizer(run: gradwise.Run, group: str, constraint: str) -> dict[str, float]:
    """Fairlearn's ThresholdOptimizer fitted on the validation split's scores (its thresholds
    are randomised between two per group; seeded here), measured on test."""
    t = run.calibration.temperature
    val, test = run.split("val"), run.split("test")
    opt = ThresholdOptimizer(
        estimator=Scores(),
        constraints=constraint,
        objective="accuracy_score",
        prefit=True,
        predict_method="predict",
    )
    opt.fit(
        class_probabilities(run, val.x, t)[:, 1:],
        val.y.numpy(),
        sensitive_features=val.raw[group].astype(str).to_numpy(),
    )
    sf = test.raw[group].astype(str).to_numpy()
    scores = class_probabilities(run, test.x, t)[:, 1:]
    pred = opt.predict(scores, sensitive_features=sf, random_state=0)
    y = test.y.numpy()
    kw = {"y_true": y, "y_pred": pred, "sensitive_features": sf}
    return {
        "accuracy": float((pred == y).mean()),
        "demographic_parity_difference": demographic_parity_difference(**kw),
        "equalized_odds_difference": equalized_odds_difference(**kw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", nargs="+", default=["sex"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: temp)")
    args = parser.parse_args()
    if not ADULT.is_file():
        raise SystemExit(f"{ADULT} not found; set GRADWISE_SHARED_DATA to the shared data folder")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "adult"
        started = time.perf_counter()
        run = train(out, args.seed)
        print(f"trained in {time.perf_counter() - started:.0f} s; test {run.metrics['test']}")
        run_checks(run, ["calibration", "uncertainty"])
        for constraint in ("demographic_parity", "true_positive_rate_parity"):
            settings = FairnessAudit(groups=args.groups, mitigation=constraint)
            started = time.perf_counter()
            result = check(run, settings, AuditContext(out=out / "audit", seed=args.seed))
            print(f"fairness check: {time.perf_counter() - started:.1f} s, {result.verdict}: ")
            print(f"  {result.headline}\n  {result.summary}\n")
            if constraint == "demographic_parity":
                report(run, result.metrics)
            mitigation(run, result.metrics["mitigation"])


def report(run: gradwise.Run, metrics: dict) -> None:
    for grouping in metrics["groupings"]:
        name = grouping["grouping"]
        if " & " in name:
            continue
        frame, between = fairlearn_side(run, name)
        print(f"by {name}: gradwise [95% interval] | MetricFrame | |difference|")
        for g in grouping["groups"]:
            print(f"  {g['group']} (n={g['n']:,})")
            for key in MEASURES:
                ours, ref = g[key]["value"], float(frame.by_group.loc[g["group"], key])
                lo, hi = g[key]["low"], g[key]["high"]
                print(
                    f"    {key:20} {ours:.6f} [{lo:.4f}, {hi:.4f}] | {ref:.6f} | "
                    f"{abs(ours - ref):.1e}"
                )
            ece = g["ece"]
            print(f"    {'ece':20} {ece['value']:.6f} [{ece['low']:.4f}, {ece['high']:.4f}]")
            if "coverage" in g:
                print(f"    {'coverage (90% sets)':20} {g['coverage']['value']:.6f}")
        for key, ref in between.items():
            ours = grouping["between"][key]
            lo, hi = ours["low"], ours["high"]
            print(
                f"  {key:30} {ours['value']:.6f} [{lo:.4f}, {hi:.4f}] | {ref:.6f} | "
                f"{abs(ours['value'] - ref):.1e}"
            )


def mitigation(run: gradwise.Run, mitigation: dict) -> None:
    """The check's group thresholds beside ThresholdOptimizer's, and its variant measured with
    fairlearn on the variant's own test predictions."""
    for v in mitigation.get("proposals", []):
        t, o = v["test"], v["original"]
        thresholds = ", ".join(f"{k} {x:.3f}" for k, x in v["thresholds"].items())
        print(
            f"group thresholds by {v['grouping']} ({v['constraint']}; {thresholds}): "
            f"accuracy {o['accuracy']:.4f} -> {t['accuracy']:.4f}, parity difference "
            f"{o['demographic_parity_difference']:.3f} -> {t['demographic_parity_difference']:.3f}"
            f", equal-opportunity difference {o['equal_opportunity_difference']:.3f} -> "
            f"{t['equal_opportunity_difference']:.3f}, equalised-odds difference "
            f"{o['equalized_odds_difference']:.3f} -> {t['equalized_odds_difference']:.3f}, "
            f"accuracy gap {o['accuracy_gap']:.3f} -> {t['accuracy_gap']:.3f}"
        )
        ref = threshold_optimizer(run, v["grouping"], v["constraint"])
        print(
            f"  ThresholdOptimizer ({v['constraint']}, randomised): accuracy "
            f"{ref['accuracy']:.4f}, parity difference {ref['demographic_parity_difference']:.3f}"
            f", equalised-odds difference {ref['equalized_odds_difference']:.3f}"
        )
    written = mitigation.get("variant")
    if written:
        variant_side(run, written, mitigation["proposals"])
    print(f"ECE (unchanged by thresholds): {mitigation.get('ece', np.nan):.4f}\n")


def variant_side(run: gradwise.Run, written: dict, proposals: list[dict]) -> None:
    """The variant loaded from its folder, its test predictions measured with fairlearn."""
    variant = gradwise.load(run.path / written["path"])
    test = run.split("test")
    stored = variant.calibration.group_thresholds
    positive = stored["positive_class"]
    classes = [str(c) for c in variant.schema.classes]
    y = (test.y.numpy() == classes.index(positive)).astype(int)
    pred = (variant.predict(test.raw).astype(str) == positive).astype(int)
    sf = group_labels(test.raw[stored["column"]], stored["edges"])  # quartile bins as the check's
    kw = {"y_true": y, "y_pred": pred, "sensitive_features": sf}
    ours = next(p for p in proposals if p["grouping"] == written["grouping"])["test"]
    print(f"variant {written['path']} (gradwise.load, predict) | the check's | |difference|")
    for key, ref in (
        ("accuracy", accuracy_score(y, pred)),
        ("demographic_parity_difference", demographic_parity_difference(**kw)),
        ("equalized_odds_difference", equalized_odds_difference(**kw)),
    ):
        print(f"  {key:30} {ref:.6f} | {ours[key]:.6f} | {abs(ref - ours[key]):.1e}")


if __name__ == "__main__":
    main()
