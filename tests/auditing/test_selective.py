"""The selective check on tiny trained runs: what it certifies is what it stores, and what
`Run.predict_selective` applies; the scores (probability, margin, set size, regression
difficulty); language models described, not certified; refits that void the guarantee; the
sentence when nothing is certified; and the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import CheckResult
from gradwise.auditing.risk_control import certify, clopper_pearson, coverage_at
from gradwise.cli import app
from gradwise.errors import GradwiseError
from tests.conftest import tiny_config

runner = CliRunner()
STORED_KEYS = {
    "task", "score", "temperature", "threshold", "alpha", "delta", "n", "coverage", "accepted",
    "errors", "p_value", "fitted_at", "validation_rows_sha256", "others", "method", "assumption",
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    """A digits MLP (270 validation rows, 359 test rows) with its temperature fitted; tests
    copy it."""
    run = gradwise.train(tiny_config(train={"epochs": 10}), out=tmp_path_factory.mktemp("r") / "r")
    gradwise.audit(run, checks=["calibration"])
    return run


@pytest.fixture
def run(trained: gradwise.Run, tmp_path) -> gradwise.Run:
    """A fresh copy of the trained run, so each test stores its own guarantee."""
    shutil.copytree(trained.path, tmp_path / "run")
    return gradwise.load(tmp_path / "run")


def _selective(run: gradwise.Run, **settings: object) -> CheckResult:
    return gradwise.audit(run, checks=["selective"], selective=settings)["selective"]


def _labels(run: gradwise.Run, split: str) -> np.ndarray:
    return run.schema.target.decode(run.split(split).y.numpy())


# ---------------------------------------------------------------- classification


def test_a_classifier_certifies_stores_and_predict_selective_applies_the_threshold(run):
    result = _selective(run, alpha=0.05, delta=0.1)
    cert = result.metrics["certificates"][0]
    assert result.verdict == "pass" and cert["certified"]
    loaded = gradwise.load(run.path)
    stored = loaded.calibration.selective
    assert set(stored) >= STORED_KEYS
    assert stored["threshold"] == cert["threshold"] and stored["temperature"] is not None
    assert stored["temperature"] == loaded.calibration.temperature
    assert (stored["alpha"], stored["delta"], stored["score"]) == (0.05, 0.1, "probability")
    assert stored["others"] == []

    val, test = loaded.split("val"), loaded.split("test")
    on_val = loaded.predict_selective(val.raw)
    np.testing.assert_array_equal(on_val.answer, on_val.score >= stored["threshold"])
    wrong = on_val.prediction != _labels(loaded, "val")
    assert (on_val.answer.sum(), wrong[on_val.answer].sum()) == (cert["accepted"], cert["errors"])
    assert cert["n"] == len(val) and cert["accepted"] == round(cert["coverage"] * len(val))
    # the check's certificate is certify() on what predict_selective says about validation,
    # with the model's own chance of being wrong (1 - top-class probability) as its expected
    # errors: two chains, each at delta / 2, unless their starts coincide
    expected = 1 - on_val.probabilities.max(axis=1)
    again = certify(on_val.score, wrong, 0.05, 0.1, expected)
    assert again.threshold == stored["threshold"] and again.p_value == stored["p_value"]
    assert again.level == cert["level"] == stored["level"] and cert["level"] in (0.1, 0.05)

    on_test = loaded.predict_selective(test.raw)
    np.testing.assert_array_equal(on_test.prediction, loaded.predict(test.raw))
    np.testing.assert_allclose(on_test.score, loaded.predict_proba(test.raw).max(1), rtol=1e-5)
    assert set(on_test.decision) <= {"answer", "abstain"}
    assert (on_test.decision == "answer").sum() == on_test.answer.sum()
    wrong_test = on_test.prediction != _labels(loaded, "test")
    measured = cert["test"]
    assert measured["answered"] == on_test.answer.sum()
    assert measured["errors"] == wrong_test[on_test.answer].sum()
    assert measured["coverage"] == pytest.approx(on_test.answer.mean())
    k, m = measured["errors"], measured["answered"]
    assert measured["error_interval"] == pytest.approx(list(clopper_pearson(k, m)))
    assert measured["oracle_coverage"] == pytest.approx(
        coverage_at(on_test.score, wrong_test, 0.05)[0]
    )
    assert on_test.guarantee["threshold"] == stored["threshold"]
    assert f"Answers {cert['coverage']:.0%} of cases with at most 5.0% errors" in result.summary
    assert (run.path / "audit" / "selective.json").is_file()
    assert (run.path / "audit" / "selective.png").is_file()


def test_several_alpha_delta_pairs_are_certified_in_order_and_the_first_is_applied(run):
    result = _selective(run, alpha=[0.1, 0.05, 0.2], delta=[0.1, 0.2, 0.05])
    certs = result.metrics["certificates"]
    assert [(c["alpha"], c["delta"]) for c in certs] == [(0.1, 0.1), (0.05, 0.2), (0.2, 0.05)]
    stored = gradwise.load(run.path).calibration.selective
    assert (stored["alpha"], stored["delta"]) == (0.1, 0.1)
    assert [(o["alpha"], o["delta"]) for o in stored["others"]] == [(0.05, 0.2), (0.2, 0.05)]
    on_val = gradwise.load(run.path).predict_selective(run.split("val").raw)
    wrong = on_val.prediction != _labels(run, "val")
    expected = 1 - on_val.probabilities.max(axis=1)
    for c in certs:
        again = certify(on_val.score, wrong, c["alpha"], c["delta"], expected)
        assert (again.threshold, again.level) == (c["threshold"], c["level"])
    # one delta for several alphas
    one = _selective(run, alpha=[0.1, 0.2], delta=0.1).metrics["certificates"]
    assert [(c["alpha"], c["delta"]) for c in one] == [(0.1, 0.1), (0.2, 0.1)]
    # a looser promise answers at least as much, when both are certified
    assert one[1]["coverage"] >= one[0]["coverage"]


def test_the_margin_score_is_the_gap_between_the_two_likeliest_classes(run):
    result = _selective(run, alpha=[0.1, 0.05], score="margin")
    assert result.metrics["score"] == "margin" and result.metrics["certificates"][0]["certified"]
    loaded = gradwise.load(run.path)
    assert loaded.calibration.selective["score"] == "margin"
    # whatever the score, the expected errors are 1 - the top-class probability
    on_val = loaded.predict_selective(run.split("val").raw)
    wrong = on_val.prediction != _labels(run, "val")
    expected = 1 - on_val.probabilities.max(axis=1)
    for c in result.metrics["certificates"]:
        again = certify(on_val.score, wrong, c["alpha"], c["delta"], expected)
        assert (again.threshold, again.level) == (c["threshold"], c["level"])
    test = loaded.split("test").raw
    out = loaded.predict_selective(test)
    top2 = np.sort(loaded.predict_proba(test), axis=1)[:, -2:]
    np.testing.assert_allclose(out.score, top2[:, 1] - top2[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        out.answer, out.score >= loaded.calibration.selective["threshold"]
    )


def test_the_set_size_score_needs_the_uncertainty_check_first(run):
    alone = gradwise.audit(run, checks=["selective"], selective={"score": "set_size"})
    assert alone["selective"].verdict == "n/a"
    assert "needs the conformal sets the uncertainty check stores" in alone["selective"].summary
    assert "--checks uncertainty,selective" in alone["selective"].summary

    both = gradwise.audit(
        run, checks=["uncertainty", "selective"], selective={"score": "set_size", "alpha": 0.1}
    )["selective"]
    assert both.metrics["score"] == "set_size"
    loaded = gradwise.load(run.path)
    stored = loaded.calibration.selective
    assert stored["conformal_quantile"] == loaded.calibration.conformal["quantile"]
    test = loaded.split("test").raw
    out = loaded.predict_selective(test)
    assert both.metrics["certificates"][0]["certified"], both.summary
    sizes = loaded.predict_sets(test).sum(axis=1)
    np.testing.assert_array_equal(out.score, -sizes)  # answered: sets of at most -threshold
    np.testing.assert_array_equal(out.answer, sizes <= -stored["threshold"])


def test_a_refitted_temperature_voids_the_threshold_until_it_is_certified_again(run):
    _selective(run, alpha=0.05)
    loaded = gradwise.load(run.path)
    loaded.set_temperature(loaded.calibration.temperature * 2)
    with pytest.raises(GradwiseError, match="re-certify one with `gradwise audit"):
        gradwise.load(run.path).predict_selective(run.split("test").raw[:3])
    gradwise.audit(run, checks=["selective"], selective={"alpha": 0.05})  # re-certified
    assert len(gradwise.load(run.path).predict_selective(run.split("test").raw[:3]).answer) == 3


def test_nothing_certified_warns_with_the_rows_needed_and_predict_refuses(run):
    result = _selective(run, alpha=0.001)
    cert = result.metrics["certificates"][0]
    assert result.verdict == "warn" and not cert["certified"]
    assert result.headline == "not certified at alpha 0.001"
    assert "No abstention threshold could be certified at most 0.1% errors" in result.summary
    assert "270 validation rows are too few" in result.summary
    assert cert["rows_needed"] > 270
    assert f"about {cert['rows_needed']:,} validation rows would do" in result.summary
    assert gradwise.load(run.path).calibration.selective["threshold"] is None
    with pytest.raises(GradwiseError, match="no certified abstention threshold"):
        gradwise.load(run.path).predict_selective(run.split("test").raw[:3])


def test_the_command_line_audit_prints_the_sentence(run):
    out = runner.invoke(
        app,
        ["audit", str(run.path), "--checks", "selective", "--set",
         "audit.selective.alpha=0.05", "-q"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads((run.path / "audit" / "selective.json").read_text())
    assert result["verdict"] == "pass"
    printed = " ".join(out.stdout.replace("│", " ").split())  # the table's cells, unwrapped
    assert " ".join(result["summary"].split()) in printed
    assert result["summary"].startswith("Answers ") and result["headline"] in printed


# ---------------------------------------------------------------- regression and language


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    """y = f(x) + noise whose spread grows fiftyfold along x0: easy and hard inputs."""
    folder = tmp_path_factory.mktemp("hetero")
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, size=(1500, 3))
    y = 3 * x[:, 0] + np.sin(4 * x[:, 1]) + rng.normal(size=1500) * 0.05 * np.exp(4 * x[:, 0])
    pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y).to_csv(folder / "d.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{folder / 'd.csv'}", "target": "y"},
        model={"hidden": [32, 32]},
        train={"epochs": 30, "early_stopping": {"patience": 5}},
    )
    return gradwise.train(cfg, out=folder / "run")


def test_a_regression_is_certified_against_its_tolerance_and_na_without_one(regression_run):
    run = regression_run
    none = gradwise.audit(run, checks=["selective"])["selective"]
    assert none.verdict == "n/a" and "set audit.selective.tolerance" in none.summary

    result = gradwise.audit(
        run, checks=["selective"], selective={"alpha": 0.1, "delta": 0.1, "tolerance": 1.0}
    )["selective"]
    cert = result.metrics["certificates"][0]
    assert result.metrics["score"] == "difficulty" and cert["certified"], result.summary
    loaded = gradwise.load(run.path)
    stored = loaded.calibration.selective
    assert stored["task"] == "regression" and stored["tolerance"] == 1.0
    assert set(stored) >= (STORED_KEYS - {"temperature"}) | {"difficulty"}
    test = loaded.split("test").raw
    out = loaded.predict_selective(test.drop(columns="y"))
    predicted = loaded.predict(test.drop(columns="y"))  # float32 there, float64 here
    np.testing.assert_allclose(out.prediction, predicted, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.answer, out.score >= stored["threshold"])
    wrong = np.abs(test["y"].to_numpy() - out.prediction) > 1.0
    assert out.answer.sum() == cert["test"]["answered"]
    assert wrong[out.answer].sum() == cert["test"]["errors"]
    # easy inputs first: the answered ones sit at lower x0, where the noise is small
    assert test["a"][out.answer].mean() < test["a"][~out.answer].mean()
    assert wrong[out.answer].mean() < wrong.mean()


def test_a_language_model_gets_the_curve_described_and_nothing_certified(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 120)
    cfg = tiny_config(
        data={"source": f"text:{corpus}", "block_size": 32},
        model={"arch": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2},
        train={"epochs": 1, "diagnostics": False},
    )
    run = gradwise.train(cfg, out=tmp_path / "gpt")
    result = gradwise.audit(run, checks=["selective"], selective={"alpha": 0.05})["selective"]
    assert result.verdict == "n/a" and result.metrics["certified"] is False
    assert result.summary.startswith("Next-token predictions on")
    assert "not a guarantee" in result.summary
    curve = result.metrics["risk_coverage"]
    assert len(curve["coverage"]) == len(curve["risk"]) > 1
    assert curve["coverage"][-1] == 1.0
    assert curve["risk"][-1] == pytest.approx(result.metrics["test_error"], abs=1e-5)
    assert 0 <= result.metrics["coverage_at_alpha"]["0.05"] <= 1
    assert gradwise.load(run.path).calibration.selective is None
