"""Split-conformal intervals and sets: coverage over many random splits, agreement with
MAPIE, the normalised score on heteroscedastic data, and the check on trained runs."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.conformal import (
    absolute_scores,
    aps_scores,
    conformal_quantile,
    fit_difficulty,
    lac_scores,
    normalised_scores,
)
from gradwise.cli import app
from gradwise.run_conformal import aps_sets, lac_sets, row_uniforms
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
