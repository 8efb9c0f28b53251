"""Split-conformal intervals and sets: coverage over many random splits, agreement with
MAPIE, the normalised score on heteroscedastic data, per-class (Mondrian) quantiles, per-class
coverage graded with its n, and the check on trained runs."""

from __future__ import annotations

import importlib.util
import io
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.base import CheckResult
from gradwise.auditing.conformal import (
    absolute_scores,
    aps_scores,
    class_quantiles,
    conformal_quantile,
    fit_difficulty,
    lac_scores,
    normalised_scores,
)
from gradwise.cli import app
from gradwise.run_conformal import aps_sets, conformal_sets, lac_sets, row_uniforms
from tests.conftest import tiny_config

runner = CliRunner()
HAS_MAPIE = importlib.util.find_spec("mapie") is not None


def _heteroscedastic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x in [0, 1]^3; y = f(x) + noise whose std grows fiftyfold along x0; and f(x), a
    model that is right on average."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 3))
    f = 3 * x[:, 0] + np.sin(4 * x[:, 1])
    y = f + rng.normal(size=n) * 0.05 * np.exp(4 * x[:, 0])
    return x, y, f


def test_the_quantile_is_the_conformal_order_statistic():
    scores = np.arange(1.0, 100.0)  # n = 99: rank ceil(100 * 0.9) = 90
    assert conformal_quantile(scores, 0.9) == 90.0
    assert conformal_quantile(np.arange(1.0, 101.0), 0.9) == 91.0  # rank ceil(101 * 0.9)
    assert conformal_quantile(np.arange(5.0), 0.9) == np.inf  # too few for 90%
    two = conformal_quantile(np.stack([scores, 2 * scores], axis=1), 0.9)
    np.testing.assert_array_equal(two, [90.0, 180.0])


def test_too_small_a_validation_split_is_not_applicable_with_the_size_it_needs():
    from gradwise.auditing.base import NotApplicable
    from gradwise.auditing.uncertainty import check_calibration_size

    check_calibration_size(9, 0.9)  # rank ceil(10 * 0.9) = 9 of 9: finite
    with pytest.raises(NotApplicable, match="needs at least 99"):
        check_calibration_size(98, 0.99)
    assert conformal_quantile(np.arange(98.0), 0.99) == np.inf


def test_interval_coverage_over_100_random_splits_is_within_a_point_of_the_target():
    x, y, f = _heteroscedastic(3000, seed=0)
    pred = f + 0.1  # a slightly biased model
    difficulty = fit_difficulty(x[:1000], np.abs(y[:1000] - pred[:1000]))
    sigma = difficulty.sigma(x)[:, 0]
    coverages: dict[str, list[float]] = {"absolute": [], "normalised": []}
    for seed in range(100):
        idx = 1000 + np.random.default_rng(seed).permutation(2000)
        cal, test = idx[:500], idx[500:]
        q = conformal_quantile(absolute_scores(pred[cal], y[cal]), 0.9)
        coverages["absolute"].append(np.mean(np.abs(y[test] - pred[test]) <= q))
        qn = conformal_quantile(normalised_scores(pred[cal], y[cal], sigma[cal]), 0.9)
        coverages["normalised"].append(np.mean(np.abs(y[test] - pred[test]) <= qn * sigma[test]))
    for name, values in coverages.items():
        assert abs(np.mean(values) - 0.9) <= 0.01, name


def test_set_coverage_over_100_random_splits_is_within_a_point_of_the_target():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3000, 6)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sharper = np.exp(1.5 * logits) / np.exp(1.5 * logits).sum(1, keepdims=True)
    # labels come from the softer distribution: the model is over-confident
    labels = np.array([rng.choice(6, p=p) for p in probs])
    u = row_uniforms(sharper, seed=0)
    coverage: dict[str, list[float]] = {"aps": [], "lac": [], "aps_unrandomised": []}
    for seed in range(100):
        idx = np.random.default_rng(seed).permutation(3000)
        cal, test = idx[:1000], idx[1000:]
        p, y = sharper[test], labels[test]
        q = conformal_quantile(aps_scores(sharper[cal], labels[cal], u[cal]), 0.9)
        coverage["aps"].append(aps_sets(p, q, u[test])[np.arange(len(y)), y].mean())
        q = conformal_quantile(lac_scores(sharper[cal], labels[cal]), 0.9)
        coverage["lac"].append(lac_sets(p, q)[np.arange(len(y)), y].mean())
        q = conformal_quantile(aps_scores(sharper[cal], labels[cal], None), 0.9)
        sets = aps_sets(p, q, None)
        assert sets.sum(1).min() >= 1  # unrandomised sets are never empty
        coverage["aps_unrandomised"].append(sets[np.arange(len(y)), y].mean())
    assert abs(np.mean(coverage["aps"]) - 0.9) <= 0.01
    assert abs(np.mean(coverage["lac"]) - 0.9) <= 0.01
    assert np.mean(coverage["aps_unrandomised"]) >= 0.9 - 0.01  # conservative by design


def test_the_normalised_score_gives_narrower_intervals_on_heteroscedastic_data():
    x, y, f = _heteroscedastic(3000, seed=2)
    difficulty = fit_difficulty(x[:1000], np.abs(y[:1000] - f[:1000]))
    sigma = difficulty.sigma(x)[:, 0]
    width = {"absolute": [], "normalised": []}
    cover = {"absolute": [], "normalised": []}
    for seed in range(20):
        idx = 1000 + np.random.default_rng(seed).permutation(2000)
        cal, test = idx[:500], idx[500:]
        q = conformal_quantile(absolute_scores(f[cal], y[cal]), 0.9)
        qn = conformal_quantile(normalised_scores(f[cal], y[cal], sigma[cal]), 0.9)
        for name, half in (("absolute", np.full(len(test), q)), ("normalised", qn * sigma[test])):
            width[name].append(2 * half.mean())
            cover[name].append(np.mean(np.abs(y[test] - f[test]) <= half))
    assert abs(np.mean(cover["normalised"]) - np.mean(cover["absolute"])) < 0.01
    assert np.mean(width["normalised"]) < 0.85 * np.mean(width["absolute"])


def test_row_uniforms_are_uniform_and_the_same_for_the_same_row():
    from scipy.stats import kstest

    probs = np.random.default_rng(3).dirichlet(np.ones(4), size=5000)
    u = row_uniforms(probs, seed=7)
    assert kstest(u, "uniform").pvalue > 0.01
    np.testing.assert_array_equal(row_uniforms(probs[[10, 3]], seed=7), u[[10, 3]])
    assert not np.array_equal(row_uniforms(probs, seed=8), u)


@pytest.mark.skipif(not HAS_MAPIE, reason="mapie is not installed (pip install mapie)")
@pytest.mark.parametrize("n_cal", [99, 100, 333])
def test_intervals_and_lac_sets_equal_mapie_on_the_same_model(n_cal):
    from mapie.classification import SplitConformalClassifier
    from mapie.regression import SplitConformalRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y, _ = _heteroscedastic(400 + n_cal, seed=n_cal)
    model = LinearRegression().fit(x[:200], y[:200])
    cal, test = slice(200, 200 + n_cal), slice(200 + n_cal, None)
    mapie = SplitConformalRegressor(model, confidence_level=0.9, prefit=True)
    _, bounds = mapie.conformalize(x[cal], y[cal]).predict_interval(x[test])
    q = conformal_quantile(absolute_scores(model.predict(x[cal]), y[cal]), 0.9)
    pred = model.predict(x[test])
    np.testing.assert_allclose(bounds[:, 0, 0], pred - q, rtol=1e-12)
    np.testing.assert_allclose(bounds[:, 1, 0], pred + q, rtol=1e-12)

    labels = (y > np.median(y)).astype(int) + (x[:, 1] > 0.5)
    clf = LogisticRegression().fit(x[:200], labels[:200])
    mapie_c = SplitConformalClassifier(clf, confidence_level=0.9, conformity_score="lac")
    _, mapie_sets = mapie_c.conformalize(x[cal], labels[cal]).predict_set(x[test])
    qc = conformal_quantile(lac_scores(clf.predict_proba(x[cal]), labels[cal]), 0.9)
    np.testing.assert_array_equal(lac_sets(clf.predict_proba(x[test]), qc), mapie_sets[:, :, 0])


# ---------------------------------------------------------------- the check on trained runs


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    folder = tmp_path_factory.mktemp("hetero")
    x, y, _ = _heteroscedastic(1500, seed=4)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y)
    frame.to_csv(folder / "data.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{folder / 'data.csv'}", "target": "y"},
        model={"hidden": [32, 32]},
        train={"epochs": 30, "early_stopping": {"patience": 5}},
    )
    return gradwise.train(cfg, out=folder / "run")


def test_the_check_stores_intervals_that_predict_reproduces(regression_run):
    run = regression_run
    result = run_checks(run, ["uncertainty"])["uncertainty"]
    assert result.metrics["chosen"] == "normalised"
    assert result.settings["coverage"] == 0.9 and "ceil((n + 1)" in result.settings["quantile_rule"]
    # heteroscedastic data: the normalised score is narrower than the absolute one
    assert result.metrics["normalised"]["mean_width"] < result.metrics["absolute"]["mean_width"]
    assert result.metrics["normalised"]["coverage"] > 0.8
    test = gradwise.load(run.path).split("test")
    pred, lower, upper = gradwise.load(run.path).predict_intervals(test.raw.drop(columns="y"))
    y = test.raw["y"].to_numpy()
    assert np.all(lower <= pred) and np.all(pred <= upper)
    assert np.mean((lower <= y) & (y <= upper)) == pytest.approx(
        result.metrics["normalised"]["coverage"]
    )
    assert np.mean(upper - lower) == pytest.approx(result.metrics["normalised"]["mean_width"])


def test_predict_intervals_on_the_command_line(regression_run, tmp_path):
    run_checks(regression_run, ["uncertainty"])
    rows = regression_run.split("test").raw.drop(columns="y").head(4)
    rows.to_csv(tmp_path / "new.csv", index=False)
    out = runner.invoke(
        app, ["predict", str(regression_run.path), str(tmp_path / "new.csv"), "--intervals"]
    )
    assert out.exit_code == 0, out.output
    frame = pd.read_csv(io.StringIO(out.stdout))
    assert list(frame.columns) == ["prediction", "lower", "upper"] and len(frame) == 4
    assert (frame["lower"] < frame["upper"]).all()


def test_classification_sets_are_stored_and_predict_returns_them(tmp_path):
    run = gradwise.train(tiny_config(train={"epochs": 4}), out=tmp_path / "r")
    test = run.split("test")
    np.save(tmp_path / "x.npy", test.raw[:6])
    missing = runner.invoke(app, ["predict", str(run.path), str(tmp_path / "x.npy"), "--intervals"])
    assert missing.exit_code == 2 and "--checks uncertainty" in missing.output
    result = run_checks(run, ["uncertainty"])["uncertainty"]
    assert set(result.metrics) >= {"aps", "lac"} and result.metrics["chosen"] == "aps"
    assert len(result.metrics["aps"]["coverage_per_class"]) == 10
    sets = gradwise.load(run.path).predict_sets(test.raw)
    covered = sets[np.arange(len(test)), test.y.numpy()]
    assert covered.mean() == pytest.approx(result.metrics["aps"]["coverage"])
    assert sets.sum(1).mean() == pytest.approx(result.metrics["aps"]["mean_size"])
    out = runner.invoke(app, ["predict", str(run.path), str(tmp_path / "x.npy"), "--intervals"])
    assert out.exit_code == 0, out.output
    frame = pd.read_csv(io.StringIO(out.stdout), dtype={"set": str})
    assert "set" in frame.columns
    first = gradwise.load(run.path).predict_sets(test.raw[:6])
    names = [str(c) for c in run.schema.classes]
    expected = ["|".join(n for n, m in zip(names, row) if m) for row in first]
    assert frame["set"].fillna("").tolist() == expected


# ---------------------------------------------------------------- per class (Mondrian)


def _hard_class_probabilities(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes; the model's probabilities understate class 3 (its logit is 1.5 too low),
    so one marginal quantile covers class 3 less than the others."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 4)) * 1.5
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in true])
    biased = logits - np.array([0.0, 0.0, 0.0, 1.5])
    return np.exp(biased) / np.exp(biased).sum(1, keepdims=True), labels


def test_per_class_coverage_over_100_random_splits_is_near_the_target_for_every_class():
    probs, labels = _hard_class_probabilities(3000, seed=5)
    u = row_uniforms(probs, seed=0)
    fitted = {"seed": 0, "randomised": True}
    names = ("aps", "lac", "aps_unrandomised", "marginal")
    per_class: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for seed in range(100):
        idx = np.random.default_rng(seed).permutation(3000)
        cal, test = idx[:1200], idx[1200:]
        p, y = probs[test], labels[test]
        runs = {
            "aps": (aps_scores(probs[cal], labels[cal], u[cal]), "aps", fitted),
            "lac": (lac_scores(probs[cal], labels[cal]), "lac", fitted),
            "aps_unrandomised": (
                aps_scores(probs[cal], labels[cal], None),
                "aps",
                {**fitted, "randomised": False},
            ),
        }
        for name, (scores, method, how) in runs.items():
            q = class_quantiles(scores, labels[cal], 4, 0.9)
            covered = conformal_sets(p, method, q, how)[np.arange(len(y)), y]
            per_class[name].append(np.array([covered[y == k].mean() for k in range(4)]))
        q = float(conformal_quantile(runs["aps"][0], 0.9))
        covered = conformal_sets(p, "aps", q, fitted)[np.arange(len(y)), y]
        per_class["marginal"].append(np.array([covered[y == k].mean() for k in range(4)]))
    mean = {k: np.mean(v, axis=0) for k, v in per_class.items()}
    assert mean["marginal"][3] < 0.86  # one quantile for all leaves the hard class short
    np.testing.assert_allclose(mean["aps"], 0.9, atol=0.01)
    np.testing.assert_allclose(mean["lac"], 0.9, atol=0.01)
    assert mean["aps_unrandomised"].min() >= 0.9 - 0.01  # conservative by design


def _brute_force_sets(
    probs: np.ndarray, y_cal: np.ndarray, scores: np.ndarray, coverage: float
) -> tuple[list[float | None], np.ndarray]:
    """Per-class quantiles and membership by plain loops: class k's validation scores
    sorted, the ceil((n + 1) * coverage)-th taken (none if beyond n); a test row's class k
    in its set when 1 - p_k is at most q_k (every row when there is none)."""
    quantiles: list[float | None] = []
    for k in range(probs.shape[1]):
        own = sorted(s for s, label in zip(scores, y_cal) if label == k)
        rank = math.ceil((len(own) + 1) * coverage - 1e-9)
        quantiles.append(own[rank - 1] if rank <= len(own) else None)
    member = np.zeros(probs.shape, dtype=bool)
    for i, row in enumerate(probs):
        for k, p in enumerate(row):
            member[i, k] = quantiles[k] is None or 1 - p <= quantiles[k]
    return quantiles, member


def test_per_class_quantiles_and_sets_equal_a_brute_force_computation():
    probs, labels = _hard_class_probabilities(700, seed=6)
    cal, test = slice(0, 400), slice(400, None)
    y_cal = labels[cal].copy()
    y_cal[y_cal == 2] = 1  # class 2 has no validation rows: it enters every set
    y_cal[:5] = 2  # ... but five, too few for a 90% quantile (it needs 9)
    scores = lac_scores(probs[cal], y_cal)
    expected_q, expected_sets = _brute_force_sets(probs[test], y_cal, scores, 0.9)
    q = class_quantiles(scores, y_cal, 4, 0.9)
    assert q == expected_q and q[2] is None
    sets = conformal_sets(probs[test], "lac", q, {})
    np.testing.assert_array_equal(sets, expected_sets)
    assert sets[:, 2].all()


@pytest.mark.skipif(not HAS_MAPIE, reason="mapie is not installed (pip install mapie)")
def test_per_class_lac_sets_equal_mapie_fitted_on_each_class_alone():
    """MAPIE 1.6 has no label-conditional (Mondrian) classifier; the same sets come from its
    split-conformal classifier conformalised on the validation rows of one class at a time."""
    import warnings

    from mapie.classification import SplitConformalClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(1300, 3))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] + 0.5 * rng.normal(size=1300) > 0.5)
    clf = LogisticRegression().fit(x[:300], labels[:300])
    cal, test = slice(300, 800), slice(800, None)
    q = class_quantiles(lac_scores(clf.predict_proba(x[cal]), labels[cal]), labels[cal], 3, 0.9)
    ours = conformal_sets(clf.predict_proba(x[test]), "lac", q, {})
    for k in range(3):
        mine = labels[cal] == k
        mapie = SplitConformalClassifier(clf, confidence_level=0.9, conformity_score="lac")
        with warnings.catch_warnings():  # MAPIE warns that one class is all it was given
            warnings.simplefilter("ignore", UserWarning)
            mapie.conformalize(x[cal][mine], labels[cal][mine])
        _, sets = mapie.predict_set(x[test])
        np.testing.assert_array_equal(ours[:, k], sets[:, k, 0])


def test_a_stored_quantile_list_must_have_one_entry_per_class():
    from gradwise.errors import GradwiseError

    with pytest.raises(GradwiseError, match="one per class"):
        conformal_sets(np.full((2, 3), 1 / 3), "lac", [0.5, 0.5], {})


@pytest.fixture(scope="module")
def class_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    """A digits MLP after 8 epochs: right about three times in four, below a 90% target."""
    return gradwise.train(tiny_config(train={"epochs": 8}), out=tmp_path_factory.mktemp("c") / "r")


def _uncertainty(run: gradwise.Run, **settings: object) -> CheckResult:
    from gradwise.auditing.base import AuditContext
    from gradwise.auditing.uncertainty import check
    from gradwise.config import UncertaintyAudit

    return check(run, UncertaintyAudit(**settings), AuditContext(out=run.path / "audit"))


def test_mondrian_quantiles_are_stored_and_predict_applies_one_per_class(class_run):
    from gradwise.run_conformal import class_probabilities, classifier_score

    result = _uncertainty(class_run, per_class=True)
    stored = gradwise.load(class_run.path).calibration.conformal
    assert stored["per_class"] is True and len(stored["quantile"]) == 10
    n_val = np.bincount(class_run.split("val").y, minlength=10)
    assert stored["n_calibration_per_class"] == n_val.tolist()
    assert "one quantile per class" in result.summary
    assert "Mondrian" in result.settings["per_class_quantiles"]
    test = class_run.split("test")
    y = test.y.numpy()
    sets = gradwise.load(class_run.path).predict_sets(test.raw)
    assert sets[np.arange(len(y)), y].mean() == pytest.approx(result.metrics["aps"]["coverage"])
    for name, entry in result.metrics["aps"]["coverage_per_class"].items():
        k = [str(c) for c in class_run.schema.classes].index(name)
        assert entry["coverage"] == pytest.approx(sets[y == k, k].mean())
        assert entry["n"] == int((y == k).sum())
    # the selective check's set-size score reads the same per-class quantiles
    probs = class_probabilities(class_run, test.x, stored["temperature"])
    extra = {"conformal_method": "aps", "conformal_quantile": stored["quantile"], **stored}
    np.testing.assert_array_equal(-classifier_score(probs, "set_size", extra), sets.sum(1))


def test_a_run_stored_before_per_class_existed_keeps_its_sets(class_run):
    _uncertainty(class_run)
    run = gradwise.load(class_run.path)
    test = run.split("test")
    sets = run.predict_sets(test.raw)
    old = {k: v for k, v in run.calibration.conformal.items() if k != "per_class"}
    run.set_conformal(old)
    np.testing.assert_array_equal(gradwise.load(run.path).predict_sets(test.raw), sets)


def test_class_coverage_grades_a_short_class_by_its_n_and_lists_small_ones():
    from scipy.stats import binom

    from gradwise.auditing.class_coverage import CLASS_LEVEL, class_coverage

    y = np.array([0] * 40 + [1] * 40 + [2] * 2)
    covered = np.zeros(82, dtype=bool)
    covered[:7] = True  # class 0: 7 of 40, 17.5%
    covered[40:76] = True  # class 1: 36 of 40, at the target
    found = class_coverage(covered, y, ["a", "b", "c"], 0.9, min_class=20)
    assert found["a"]["coverage"] == pytest.approx(0.175) and found["a"]["n"] == 40
    assert found["a"]["p_value"] == pytest.approx(binom.cdf(7, 40, 0.9))
    assert found["a"]["under_covered"] and not found["b"]["under_covered"]
    assert found["c"] == {
        "coverage": 0.0,
        "covered": 0,
        "n": 2,
        "graded": False,
        "p_value": None,
        "under_covered": False,
    }
    # 33 of 40 (82.5%): p = 0.07 alone, but not below 0.05 / 2 graded classes
    covered[:33] = True
    assert binom.cdf(33, 40, 0.9) > CLASS_LEVEL / 2
    assert not class_coverage(covered, y, ["a", "b", "c"], 0.9, 20)["a"]["under_covered"]


def test_a_class_covered_less_than_chance_allows_makes_the_verdict_warn(tmp_path):
    from gradwise.auditing.uncertainty import coverage_verdict
    from gradwise.config import UncertaintyAudit

    run = gradwise.train(tiny_config(), out=tmp_path / "r")  # 2 epochs: some classes lag
    result = _uncertainty(run)
    m = result.metrics["aps"]
    assert m["classes_under_covered"]  # this run has one, so the test has teeth
    assert coverage_verdict(m["coverage"], UncertaintyAudit()) == "pass"  # marginally fine
    assert result.verdict == "warn"
    worst = min(m["classes_under_covered"], key=lambda c: m["coverage_per_class"][c]["coverage"])
    entry = m["coverage_per_class"][worst]
    assert f"Class {worst} is covered only" in result.summary
    assert f"({entry['covered']} of {entry['n']} test rows)" in result.summary
    assert "per_class: true" in result.summary
    assert "Bonferroni" in result.settings["class_coverage"]


def test_least_covered_class_gives_n_and_small_classes_are_not_graded(class_run):
    result = _uncertainty(class_run, min_class=1000)
    m = result.metrics["aps"]
    assert len(m["classes_not_graded"]) == 10 and not m["classes_under_covered"]
    assert "No class holds 1000 test rows" in result.summary
    graded = _uncertainty(class_run, min_class=20)
    per = graded.metrics["aps"]["coverage_per_class"]
    if not graded.metrics["aps"]["classes_under_covered"]:
        worst = min(per, key=lambda c: per[c]["coverage"])
        assert f", {worst}, is covered" in graded.summary
        assert f"(n = {per[worst]['n']})" in graded.summary


def test_empty_sets_are_explained_by_what_the_accuracy_shows(class_run):
    """'The model is right more often than the target asks' only when it is."""
    low = _uncertainty(class_run, coverage=0.9)
    accuracy = low.metrics["accuracy"]
    test = class_run.split("test")
    top = class_run.probabilities(class_run.logits(test.x), calibrated=True).argmax(1)
    assert accuracy == pytest.approx((top == test.y.numpy()).mean())
    assert accuracy < 0.9 and low.metrics["aps"]["empty"] > 0.01  # the case at issue
    assert "more often than the target" not in low.summary and "more than the" not in low.summary
    assert "counts as a miss" in low.summary and "randomised: false" in low.summary
    high = _uncertainty(class_run, coverage=0.5)
    assert accuracy > 0.5 and high.metrics["aps"]["empty"] > 0.01
    assert "more than the 50% target asks" in high.summary


def test_empty_lac_sets_and_unfitted_classes_are_explained_by_their_own_rule():
    from gradwise.auditing.class_coverage import empty_sets_sentence, unfitted_classes_sentence
    from gradwise.config import UncertaintyAudit

    lac = empty_sets_sentence(0.05, 0.856, UncertaintyAudit(method="lac"))
    assert "no class is likely enough" in lac and "right for only 85.6%" in lac
    assert "more than the" not in lac
    assert empty_sets_sentence(0.005, 0.5, UncertaintyAudit()) == ""  # 1% or less: not worth a word
    one = unfitted_classes_sentence([0.3, None, 0.2], ["a", "b", "c"], 0.9)
    assert one == (
        " Class b has fewer than 9 validation rows, too few for a quantile of its own, so it "
        "enters every set."
    )
    assert unfitted_classes_sentence(0.3, ["a", "b", "c"], 0.9) == ""
