"""The fairness check: per-group numbers equal to Fairlearn's MetricFrame and disparity
functions, bootstrap intervals that cover, group thresholds fitted as stated, and the check on
trained runs (a planted gap found, a group column kept out of the inputs, n/a and errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
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
from sklearn.metrics import accuracy_score, mean_absolute_error, root_mean_squared_error

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.base import AuditContext, NotApplicable
from gradwise.auditing.calibration import expected_calibration_error
from gradwise.auditing.fairness import check
from gradwise.auditing.fairness_measures import (
    bootstrap_sums,
    classification_columns,
    classification_measures,
    disparities,
    group_sums,
    regression_columns,
    regression_measures,
)
from gradwise.auditing.fairness_mitigation import RATE_GRID, fit_group_thresholds
from gradwise.config import FairnessAudit
from gradwise.errors import ConfigError
from gradwise.run_conformal import apply_group_thresholds, class_probabilities
from tests.conftest import tiny_config
from tests.shared import need_shared

BINS = 15
PER_GROUP = ("accuracy", "selection_rate", "true_positive_rate", "false_positive_rate")


def _predictions(
    n: int, k: int, seed: int, positive: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, probabilities that are right more often than not, and 4 groups of unequal
    size; group "d" holds no row of class `positive` (its TPR has nothing to count)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    groups = rng.choice(np.array(list("abcd")), n, p=[0.5, 0.3, 0.15, 0.05])
    y[(groups == "d") & (y == positive)] = (positive + 1) % k
    return y, probs, groups


def _fairlearn(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    kw = {"y_true": y_true, "y_pred": y_pred, "sensitive_features": groups}
    return {
        "demographic_parity_difference": demographic_parity_difference(**kw),
        "demographic_parity_ratio": demographic_parity_ratio(**kw),
        "equal_opportunity_difference": equal_opportunity_difference(**kw),
        "equalized_odds_difference": equalized_odds_difference(**kw),
        "equalized_odds_ratio": equalized_odds_ratio(**kw),
    }


@pytest.mark.parametrize(("k", "positive"), [(2, 1), (2, 0), (4, 3)])
def test_per_group_measures_and_disparities_equal_metricframe(k: int, positive: int):
    y, probs, groups = _predictions(3000, k, seed=k + positive, positive=positive)
    pred = probs.argmax(axis=1)
    names = sorted(set(groups))
    ours = classification_measures(
        group_sums(classification_columns(y, probs, positive, None, BINS), groups, names), BINS
    )
    # one against the rest: fairlearn's binary rates on "is the positive class"
    y_pos, pred_pos = (y == positive).astype(int), (pred == positive).astype(int)
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=y_pos,
        y_pred=pred_pos,
        sensitive_features=groups,
    )
    accuracy = MetricFrame(
        metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=groups
    ).by_group
    assert frame.by_group.loc["d", "true_positive_rate"] == 0.0  # no positives: 0, as ours
    np.testing.assert_allclose(ours["accuracy"], accuracy.loc[names], rtol=0, atol=1e-12)
    for key in PER_GROUP[1:]:
        np.testing.assert_allclose(ours[key], frame.by_group.loc[names, key], rtol=0, atol=1e-12)
    between = disparities(ours)
    for key, ref in _fairlearn(y_pos, pred_pos, groups).items():
        assert between[key] == pytest.approx(ref, abs=1e-12), key
    assert between["accuracy_gap"] == pytest.approx(accuracy.max() - accuracy.min(), abs=1e-12)


def test_an_undefined_ratio_is_nan_as_in_fairlearn():
    y, groups = np.array([0, 1, 0, 1, 0, 1]), np.array(list("aabbcc"))
    probs = np.tile([0.9, 0.1], (6, 1))  # nobody selected: every selection rate is 0
    m = classification_measures(
        group_sums(classification_columns(y, probs, 1, None, BINS), groups, list("abc")), BINS
    )
    ref = _fairlearn(y, probs.argmax(axis=1), groups)
    assert np.isnan(disparities(m)["demographic_parity_ratio"])
    assert np.isnan(ref["demographic_parity_ratio"])
    assert np.isnan(disparities(m)["equalized_odds_ratio"]) and np.isnan(
        ref["equalized_odds_ratio"]
    )


def test_per_group_ece_and_coverage_equal_their_definitions():
    y, probs, groups = _predictions(2000, 3, seed=5)
    covered = np.random.default_rng(0).random(2000) < 0.9
    names = sorted(set(groups))
    m = classification_measures(
        group_sums(classification_columns(y, probs, 2, covered, BINS), groups, names), BINS
    )
    for i, g in enumerate(names):
        rows = groups == g
        ece = expected_calibration_error(probs[rows], y[rows], BINS)
        assert m["ece"][i] == pytest.approx(ece, abs=1e-12)
        assert m["coverage"][i] == pytest.approx(covered[rows].mean(), abs=1e-12)


def test_regression_measures_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y, groups = rng.normal(size=500), rng.choice(np.array(["u", "v"]), 500)
    pred = y + rng.normal(size=500) * np.where(groups == "u", 0.5, 2.0)
    m = regression_measures(group_sums(regression_columns(pred, y), groups, ["u", "v"]))
    for i, g in enumerate(["u", "v"]):
        rows = groups == g
        assert m["mae"][i] == pytest.approx(mean_absolute_error(y[rows], pred[rows]), abs=1e-12)
        rmse = root_mean_squared_error(y[rows], pred[rows])
        assert m["rmse"][i] == pytest.approx(rmse, abs=1e-12)


def test_bootstrap_sums_are_sums_of_rows_drawn_with_replacement():
    columns = np.random.default_rng(0).normal(size=(37, 5))
    ours = bootstrap_sums(columns, 300, np.random.default_rng(7))
    idx = np.random.default_rng(7).integers(0, 37, size=(300, 37))
    np.testing.assert_allclose(ours, columns[idx].sum(axis=1), rtol=1e-12)


def test_percentile_intervals_of_a_group_accuracy_cover_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(300):
        correct = (rng.random(200) < 0.8).astype(np.float64)
        columns = np.stack([np.ones(200), correct], axis=1)
        acc = (lambda s: s[:, 1] / s[:, 0])(bootstrap_sums(columns, 500, rng))
        lo, hi = np.percentile(acc, [2.5, 97.5])
        hits += lo <= 0.8 <= hi
    assert 0.9 <= hits / 300 <= 0.99  # binomial sd at 95%: 1.3 points


@pytest.mark.parametrize("constraint", ["demographic_parity", "true_positive_rate_parity"])
def test_group_thresholds_equalise_the_rate_and_maximise_accuracy(constraint: Any):
    rng = np.random.default_rng(3)
    groups = rng.choice(np.array(["a", "b"]), 1500, p=[0.6, 0.4])
    positive = rng.random(1500) < np.where(groups == "a", 0.2, 0.5)
    scores = np.clip(0.35 * positive + rng.random(1500) * 0.65, 0, 1)
    thresholds, rate = fit_group_thresholds(scores, positive, groups, constraint)
    selected = apply_group_thresholds(scores, groups, thresholds, np.zeros(1500, dtype=bool))
    for g in ("a", "b"):
        rows = groups == g
        base = rows if constraint == "demographic_parity" else rows & positive
        assert abs(selected[base].mean() - rate) <= 1.0 / base.sum() + 1e-9, g
    accuracy = (selected == positive).mean()
    for other in np.linspace(0, 1, RATE_GRID):  # no common rate of the grid does better
        t = _thresholds_at(scores, positive, groups, constraint, other)
        assert (apply_group_thresholds(scores, groups, t, selected) == positive).mean() <= accuracy


def _thresholds_at(
    scores: np.ndarray, positive: np.ndarray, groups: np.ndarray, constraint: Any, rate: float
) -> dict[str, float]:
    """Per group, the threshold selecting round(rate * n) rows (or the fewest top rows whose
    positives reach rate * positives): the brute-force reading of the rule."""
    out = {}
    for g in set(groups.tolist()):
        s = np.sort(scores[groups == g])[::-1]
        if constraint == "demographic_parity":
            k = int(np.rint(rate * len(s)))
        else:
            hits = np.cumsum(positive[groups == g][np.argsort(-scores[groups == g])])
            k = int(np.searchsorted(np.r_[0, hits], np.ceil(rate * hits[-1] - 1e-9)))
        out[g] = np.nextafter(s[0], 2) if k == 0 else s[k - 1]
    return out


# ---------------------------------------------------------------- the check on trained runs


def _unfair_table(path: Path, n: int = 2400) -> Path:
    """A table whose label depends on a group column `grp` (b: twice the positives, noisier
    labels), which the model sees only through x2, and a number column `age`."""
    rng = np.random.default_rng(0)
    grp = rng.choice(np.array(["a", "b"]), n, p=[0.6, 0.4])
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    noise = rng.normal(size=n) * np.where(grp == "b", 1.5, 0.3)
    y = 2 * x1 + np.where(grp == "b", 1.5, -1.0) + noise > 0
    df = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2 + 2 * (grp == "b"),
            "grp": grp,
            "age": rng.integers(18, 80, n),
            "y": np.where(y, "yes", "no"),
        }
    )
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def unfair_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    tmp = tmp_path_factory.mktemp("fair")
    data = {"source": f"csv:{_unfair_table(tmp / 't.csv')}", "target": "y", "drop": ["grp"]}
    cfg = tiny_config(data=data, train={"epochs": 8, "batch_size": 64})
    run = gradwise.train(cfg, out=tmp / "run")
    run_checks(run, ["calibration", "uncertainty"])
    return run


def _check(run: gradwise.Run, tmp: Path, **settings: Any) -> Any:
    return check(run, FairnessAudit(**settings), AuditContext(out=tmp))


def test_a_planted_gap_is_found_by_a_column_kept_out_of_the_inputs(unfair_run, tmp_path):
    assert "grp" not in unfair_run.schema.tabular.columns  # dropped from the model's inputs
    result = _check(unfair_run, tmp_path, groups=["grp"])
    assert result.verdict in ("warn", "fail")
    assert result.headline.endswith("(grp)")
    between = result.metrics["groupings"][0]["between"]
    assert between["demographic_parity_difference"]["low"] > 0.05  # b: twice the positives
    assert result.summary.startswith("By grp (test rows: a n=")
    assert (tmp_path / "fairness.png").is_file()
    json.dumps(result.to_dict(), allow_nan=False)  # strict JSON: an undefined ratio is null
    # the per-group numbers equal MetricFrame's on the run's own test predictions
    test = unfair_run.split("test")
    pred = class_probabilities(unfair_run, test.x, unfair_run.calibration.temperature).argmax(1)
    y, sf = test.y.numpy(), test.raw["grp"].to_numpy()
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "selection_rate": selection_rate,
                 "true_positive_rate": true_positive_rate,
                 "false_positive_rate": false_positive_rate},
        y_true=y, y_pred=pred, sensitive_features=sf,
    )  # fmt: skip
    (grouping,) = result.metrics["groupings"]
    for g in grouping["groups"]:
        for key in PER_GROUP:
            assert g[key]["value"] == pytest.approx(frame.by_group.loc[g["group"], key], abs=1e-12)
            assert g[key]["low"] <= g[key]["value"] <= g[key]["high"]
        assert g["coverage"]["value"] is not None  # the uncertainty check stored its sets
    for key, ref in _fairlearn(y, pred, sf).items():
        assert grouping["between"][key]["value"] == pytest.approx(ref, abs=1e-12), key


def test_group_thresholds_narrow_the_gap_they_target_and_are_not_applied(unfair_run, tmp_path):
    before = unfair_run.predict_proba(unfair_run.split("test").raw)
    mitigation = _check(unfair_run, tmp_path, groups=["grp"]).metrics["mitigation"]
    (parity,) = mitigation["proposals"]  # one single-column grouping, the default constraint
    assert parity["constraint"] == "demographic_parity"
    assert set(parity["thresholds"]) == {"a", "b"}
    after, original = parity["test"], parity["original"]
    assert after["demographic_parity_difference"] < original["demographic_parity_difference"]
    result = _check(
        unfair_run, tmp_path, groups=["grp"], mitigation="true_positive_rate_parity", bootstrap=100
    )
    (tpr,) = result.metrics["mitigation"]["proposals"]
    gap = [
        abs(g["a"]["true_positive_rate"] - g["b"]["true_positive_rate"])
        for g in (tpr["test"]["groups"], _original_groups(result))
    ]
    assert gap[0] < gap[1]
    assert gap[1] == pytest.approx(tpr["original"]["equal_opportunity_difference"], abs=1e-12)
    assert tpr["test"]["equal_opportunity_difference"] == pytest.approx(gap[0], abs=1e-12)
    assert mitigation["applied"] is False
    np.testing.assert_array_equal(unfair_run.predict_proba(unfair_run.split("test").raw), before)


def _original_groups(result: Any) -> dict[str, dict[str, float]]:
    (grouping,) = result.metrics["groupings"]
    return {g["group"]: {k: g[k]["value"] for k in PER_GROUP} for g in grouping["groups"]}


def test_several_columns_are_compared_alone_and_together(unfair_run, tmp_path):
    result = _check(unfair_run, tmp_path, groups=["grp", "age"], min_group=20)
    names = [g["grouping"] for g in result.metrics["groupings"]]
    assert names == ["grp", "age", "grp & age"]
    assert {f["grouping"] for f in result.metrics["graded"]} <= {"grp", "age"}
    ages = result.metrics["groupings"][1]["groups"]
    assert len(ages) == 4  # a number column: quartiles of its test values
    assert sum(g["n"] for g in ages) == len(unfair_run.split("test"))


def test_groups_under_min_group_are_listed_not_compared(unfair_run, tmp_path):
    result = _check(unfair_run, tmp_path, groups=["grp"], min_group=10_000)
    assert result.verdict == "n/a"
    assert "fewer than 2 groups hold 10000 test rows" in result.summary
    assert all(not g["graded"] for g in result.metrics["groupings"][0]["groups"])


def test_an_unknown_column_names_the_columns_and_the_closest(unfair_run, tmp_path):
    with pytest.raises(ConfigError, match=r"'gpr' \(did you mean 'grp'\?\).*Columns: x1, x2"):
        _check(unfair_run, tmp_path, groups=["gpr"])


def test_an_unknown_positive_class_names_the_classes(unfair_run, tmp_path):
    with pytest.raises(ConfigError, match="the classes are no, yes"):
        _check(unfair_run, tmp_path, groups=["grp"], positive="maybe")


def test_no_groups_is_not_applicable_and_says_how_to_name_them(unfair_run, tmp_path):
    with pytest.raises(NotApplicable, match=r"audit.fairness.groups: \[column, ...\]"):
        _check(unfair_run, tmp_path)


def test_data_without_columns_is_not_applicable(tmp_path):
    run = gradwise.train(tiny_config(), out=tmp_path / "digits")
    with pytest.raises(NotApplicable, match="columns of a table"):
        _check(run, tmp_path, groups=["pixel"])


def test_a_regression_is_graded_by_its_relative_mae_gap(tmp_path):
    rng = np.random.default_rng(0)
    grp = rng.choice(np.array(["a", "b"]), 800)
    x = rng.normal(size=800)
    df = pd.DataFrame({"x": x, "grp": grp, "y": 3 * x + rng.normal(size=800) * (grp == "b")})
    df.to_csv(tmp_path / "r.csv", index=False)
    data = {"source": f"csv:{tmp_path / 'r.csv'}", "target": "y", "task": "regression"}
    cfg = tiny_config(data=data, train={"epochs": 40, "batch_size": 32})
    run = gradwise.train(cfg, out=tmp_path / "run")
    result = _check(run, tmp_path, groups=["grp"], bootstrap=100)
    test = run.split("test")
    y, pred = test.raw["y"].to_numpy(), run.predict(test.raw).reshape(-1)
    sf = test.raw["grp"].to_numpy()
    mae = {g: mean_absolute_error(y[sf == g], pred[sf == g]) for g in ("a", "b")}
    for g in result.metrics["groupings"][0]["groups"]:
        assert g["mae"]["value"] == pytest.approx(mae[g["group"]], rel=1e-6)
    relative = abs(mae["a"] - mae["b"]) / mean_absolute_error(y, pred)
    between = result.metrics["groupings"][0]["between"]["relative_mae_gap"]
    assert between["value"] == pytest.approx(relative, rel=1e-6)
    assert relative >= 0.25  # b's targets carry noise the model cannot know; a's none
    assert result.verdict == "fail" and result.headline.startswith("relative MAE gap")
    assert "audit.fairness.error_gap_fail (0.25)" in result.summary
    wider = _check(
        run, tmp_path, groups=["grp"], bootstrap=100, error_gap_warn=relative + 0.01,
        error_gap_fail=relative + 0.02,
    )  # fmt: skip
    assert wider.verdict == "pass" and "under its warn threshold" in wider.summary


ADULT = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


def test_on_a_slice_of_adult_the_gaps_by_sex_come_with_intervals(tmp_path):
    path = need_shared("adult", "adult-train.csv")
    data = {
        "source": f"csv:{path}",
        "columns": ADULT,
        "na_values": ["?"],
        "target": "income",
        "limit": 3000,
    }
    run = gradwise.train(tiny_config(data=data, train={"epochs": 3}), out=tmp_path / "run")
    result = _check(run, tmp_path, groups=["sex"])
    assert result.summary.startswith("By sex (test rows: Female n=")
    assert "selected as >50K" in result.summary and "95% interval" in result.summary
    test = run.split("test")
    pred = class_probabilities(run, test.x, None).argmax(axis=1)
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "selection_rate": selection_rate},
        y_true=test.y.numpy(),
        y_pred=pred,
        sensitive_features=test.raw["sex"].to_numpy(),
    )
    for g in result.metrics["groupings"][0]["groups"]:
        for key in ("accuracy", "selection_rate"):
            assert g[key]["value"] == pytest.approx(frame.by_group.loc[g["group"], key], abs=1e-12)
