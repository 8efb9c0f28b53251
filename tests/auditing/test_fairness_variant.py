"""The fairness check's group thresholds as a variant run: RUN/artifacts/fair-<constraint>/
loads with gradwise.load, predicts by the threshold of each row's group (its numbers are the
check's, as fairlearn measures them), leaves the base run as it was, and says what to do when
the group column is missing or the temperature was refitted."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import accuracy_score

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.base import AuditContext, CheckResult
from gradwise.auditing.fairness import check
from gradwise.config import FairnessAudit
from gradwise.errors import GradwiseError
from tests.auditing.test_fairness import _unfair_table
from tests.conftest import tiny_config

PARITY = Path("artifacts") / "fair-demographic_parity"


class Checked:
    """A trained run (group column `grp` kept out of its inputs, temperature fitted), what it
    predicted and its model.json before the fairness check, and the check's result."""

    def __init__(self, run: gradwise.Run, before: np.ndarray, meta: bytes, result: CheckResult):
        self.run, self.before, self.meta, self.result = run, before, meta, result


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    tmp = tmp_path_factory.mktemp("fair-variant")
    data = {"source": f"csv:{_unfair_table(tmp / 't.csv')}", "target": "y", "drop": ["grp"]}
    run = gradwise.train(tiny_config(data=data, train={"epochs": 8}), out=tmp / "run")
    run_checks(run, ["calibration"])
    before = run.predict(run.split("test").raw)
    meta = (run.path / "model.json").read_bytes()
    result = _check(run, tmp, groups=["grp"])
    return Checked(run, before, meta, result)


def _check(run: gradwise.Run, tmp: Path, **settings: Any) -> CheckResult:
    return check(run, FairnessAudit(bootstrap=100, **settings), AuditContext(out=tmp))


def test_the_variant_predicts_by_the_threshold_of_each_rows_group(checked):
    variant = gradwise.load(checked.run.path / PARITY)
    stored = variant.calibration.group_thresholds
    assert stored["column"] == "grp" and set(stored["thresholds"]) == {"a", "b"}
    assert checked.run.calibration.temperature is not None  # the calibration check fitted it
    assert stored["temperature"] == checked.run.calibration.temperature
    test = checked.run.split("test")
    grp = test.raw["grp"].to_numpy()
    p_yes = variant.predict_proba(test.raw)[:, variant.schema.classes.index("yes")]
    threshold = np.array([stored["thresholds"][g] for g in grp])
    pred = variant.predict(test.raw)
    np.testing.assert_array_equal(pred, np.where(p_yes >= threshold, "yes", "no"))
    assert (pred != checked.before).any()  # the thresholds changed some decisions
    # probabilities are the run's: thresholds change decisions, not probabilities
    base_proba = checked.run.predict_proba(test.raw)
    np.testing.assert_array_equal(variant.predict_proba(test.raw), base_proba)
    # a group with no threshold keeps the model's argmax
    unseen = test.raw.assign(grp="c")
    argmax = np.array(variant.schema.classes)[base_proba.argmax(axis=1)]
    np.testing.assert_array_equal(variant.predict(unseen), argmax)


def test_the_variants_numbers_are_the_checks_as_fairlearn_measures_them(checked):
    variant = gradwise.load(checked.run.path / PARITY)
    test = checked.run.split("test")
    y = (test.raw["y"] == "yes").astype(int).to_numpy()
    pred = (variant.predict(test.raw) == "yes").astype(int)
    kw = {"y_true": y, "y_pred": pred, "sensitive_features": test.raw["grp"].to_numpy()}
    mitigation = checked.result.metrics["mitigation"]
    assert mitigation["variant"]["path"] == PARITY.as_posix()
    (proposal,) = mitigation["proposals"]
    after = proposal["test"]
    assert after["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    for key, ref in (
        ("demographic_parity_difference", demographic_parity_difference(**kw)),
        ("equal_opportunity_difference", equal_opportunity_difference(**kw)),
        ("equalized_odds_difference", equalized_odds_difference(**kw)),
    ):
        assert after[key] == pytest.approx(ref, abs=1e-12), key
    assert variant.metrics["variant"]["test"] == after  # its metrics.json holds the same
    before = proposal["original"]["demographic_parity_difference"]
    assert after["demographic_parity_difference"] < before
    summary = checked.result.summary
    assert f"({checked.run.path / PARITY}; equal selection rates" in summary
    assert f"narrows the demographic-parity difference on test from {before:.2f} to " in summary
    assert f"at accuracy {after['accuracy']:.3f} vs {proposal['original']['accuracy']:.3f}" in (
        summary
    )
    assert summary.endswith("not applied to this run.") and mitigation["applied"] is False


def test_the_base_run_is_left_as_it_was(checked):
    assert (checked.run.path / "model.json").read_bytes() == checked.meta
    base = gradwise.load(checked.run.path)
    assert base.calibration.group_thresholds is None
    np.testing.assert_array_equal(base.predict(checked.run.split("test").raw), checked.before)


def test_a_variant_given_no_group_column_names_it(checked):
    variant = gradwise.load(checked.run.path / PARITY)
    test = checked.run.split("test")
    with pytest.raises(GradwiseError, match=r"column 'grp'.*a table without it.*holding 'grp'"):
        variant.predict(test.raw.drop(columns=["grp"]))
    with pytest.raises(GradwiseError, match=r"given a Tensor; pass the raw rows as a DataFrame"):
        variant.predict(test.x)


def test_a_refitted_temperature_asks_to_rerun_the_fairness_check(checked, tmp_path):
    shutil.copytree(checked.run.path / PARITY, tmp_path / "copy")
    variant = gradwise.load(tmp_path / "copy")
    variant.set_temperature(2 * variant.calibration.temperature)
    with pytest.raises(GradwiseError, match="refitted since.*re-run the fairness check"):
        gradwise.load(tmp_path / "copy").predict(checked.run.split("test").raw)


def test_the_check_on_the_variant_measures_the_variants_decisions(checked, tmp_path):
    variant = gradwise.load(checked.run.path / PARITY)
    result = _check(variant, tmp_path, groups=["grp"])
    assert result.metrics["decisions"] == "the run's group thresholds"
    assert "skipped" in result.metrics["mitigation"]
    assert not (variant.path / "artifacts").exists()  # no variant of a variant
    test = checked.run.split("test")
    pred, grp = variant.predict(test.raw), test.raw["grp"].to_numpy()
    for g in result.metrics["groupings"][0]["groups"]:
        rate = (pred[grp == g["group"]] == "yes").mean()
        assert g["selection_rate"]["value"] == pytest.approx(rate, abs=1e-12)


def test_the_constraint_names_the_variant_and_off_writes_none(checked, tmp_path):
    result = _check(checked.run, tmp_path, groups=["grp"], mitigation="true_positive_rate_parity")
    folder = checked.run.path / "artifacts" / "fair-true_positive_rate_parity"
    stored = gradwise.load(folder).calibration.group_thresholds
    assert stored["constraint"] == "true_positive_rate_parity"
    assert "equal true-positive rates" in result.summary
    shutil.rmtree(folder)
    off = _check(checked.run, tmp_path, groups=["grp"], mitigation="off")
    assert "off" in off.metrics["mitigation"] and "variant" not in off.summary
    assert not folder.exists()
