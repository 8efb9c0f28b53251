"""One threat model for every robustness number: the audit and optimize agree, categorical
columns are never attacked, and the threat fits the data kind (attacks opt-in for tables and
series, whose verdict reads corruptions and sensor noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.auditing import CHECKS, robustness
from gradwise.auditing.base import AuditContext, CheckResult
from gradwise.auditing.threat import attack_sample, robust_inputs
from gradwise.config import RobustnessAudit
from gradwise.reporting.ship import ship_rule
from tests.conftest import tiny_config

ROBUST = {"attacks": "on", "norm": "linf", "steps": 3, "max_samples": 40, "corruptions": False}


def _table(path: Path, n: int = 200) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "income": rng.normal(50_000, 15_000, n),
            "ratio": rng.normal(0.3, 0.05, n),
            "city": rng.choice(["a", "b", "c"], n),
        }
    )
    score = (df.income - 50_000) / 15_000 + (df.ratio - 0.3) / 0.05 + (df.city == "a") * 1.5
    df["label"] = np.where(score > 0.5, "y", "n")
    df.to_csv(path, index=False)
    return path


def _table_run(tmp_path: Path, categorical: str = "onehot", **robust) -> gradwise.Run:
    cfg = tiny_config(
        data={"source": f"csv:{_table(tmp_path / 't.csv')}", "target": "label"},
        train={"epochs": 10, "optimizer": {"lr": 1e-2}},
        audit={"robustness": {**ROBUST, **robust}},
    )
    cfg["data"]["categorical"] = categorical
    return gradwise.train(cfg, out=tmp_path / f"r-{categorical}")


def test_the_audit_and_optimize_report_the_same_robust_accuracy(tmp_path: Path):
    run = _table_run(tmp_path)
    audited = gradwise.audit(run, checks=["robustness"])["robustness"]
    at_reference = audited.metrics["at_reference"]["linf"]
    threat = audited.metrics["threat_model"]
    assert threat["perturbed"] == ["income", "ratio"] and threat["fixed"] == ["city (one-hot)"]
    assert "not perturbed: city (one-hot)" in audited.summary
    table = gradwise.optimize(run, onnx=True, seconds=0.01)
    base = next(r for r in table.rows if r.variant == "fp32")
    assert base.robust_accuracy == pytest.approx(at_reference * 100)
    assert table.settings["robustness"]["threat_model"] == threat
    assert table.settings["robustness"]["samples"] == audited.metrics["n_samples"]


@pytest.mark.parametrize("categorical", ["onehot", "embed"])
def test_categorical_columns_are_left_alone_by_the_attack(tmp_path: Path, categorical: str):
    run = _table_run(tmp_path, categorical)
    settings = run.config.audit.robustness
    x, y, _, _ = attack_sample(run, settings.max_samples, seed=0)
    adv, threat = robust_inputs(run, settings, x, y, seed=0)
    assert torch.equal(adv[:, 2:], x[:, 2:])  # one-hot columns or the embedded code
    assert (adv[:, :2] - x[:, :2]).abs().max() > 0  # the numbers did move
    assert (adv[:, :2] - x[:, :2]).abs().max() <= threat.eps + 1e-5  # std units


def test_tables_are_judged_on_corruptions_unless_attacks_are_asked_for(tmp_path: Path):
    run = _table_run(tmp_path, attacks="auto", corruptions=True)
    result = gradwise.audit(run, checks=["robustness"])["robustness"]
    assert "curves" not in result.metrics
    assert result.metrics["verdict_from"]["kind"] == "corruption"
    assert "attacks: on" in result.summary  # says how to add them
    assert result.headline.startswith("accuracy") and " under " in result.headline
    table = gradwise.optimize(run, onnx=True, seconds=0.01)
    assert table.rows[0].robust_accuracy is None
    assert "audit.robustness.attacks" in table.settings["robustness"]["skipped"]


def _series_run(tmp_path: Path, **robust) -> gradwise.Run:
    rng = np.random.default_rng(0)
    t = np.arange(200)
    df = pd.DataFrame(
        {
            "temp": rng.normal(10.0, 3.0, 200).round(2),
            "pm": 50 + 10 * np.sin(t / 4) + rng.normal(0, 1, 200),
        }
    )
    df.to_csv(tmp_path / "s.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"timeseries:{tmp_path / 's.csv'}",
            "target": "pm",
            "features": ["temp", "pm"],
            "window": 8,
        },
        model={"hidden": [16]},
        train={"epochs": 3},
        audit={"robustness": {"steps": 3, **robust}},
    )
    return gradwise.train(cfg, out=tmp_path / "series")


def test_a_forecaster_is_judged_on_sensor_noise_and_held_readings_by_default(tmp_path: Path):
    run = _series_run(tmp_path)
    result = gradwise.audit(run, checks=["robustness"])["robustness"]
    m = result.metrics
    assert "curves" not in m and m["verdict_from"]["kind"] == "corruption"
    assert {c["name"] for c in m["corruptions"]} == {"feature_noise", "held_readings"}
    assert "PGD" not in result.summary and "PGD" not in result.headline
    assert result.headline.startswith("RMSE x")
    # asked for, the attacks come back and drive the verdict
    ctx = AuditContext(out=Path(run.path) / "audit", seed=0)
    on = robustness.check(run, RobustnessAudit(attacks="on", steps=3, norm="linf"), ctx)
    assert "curves" in on.metrics and on.metrics["verdict_from"]["kind"] == "attack"
    assert on.summary.startswith("PGD (L-inf) at eps 0.25")


def test_the_ship_sentence_names_the_checks_and_numbers_that_drove_it():
    checks = {
        name: CheckResult(name, "pass", f"{name} ok", "fine")
        for name in ("generalisation", "baseline", "calibration", "uncertainty", "shift")
    }
    checks["data_quality"] = CheckResult("data_quality", "warn", "3 label issues", "some")
    checks["robustness"] = CheckResult(
        "robustness",
        "fail",
        "RMSE x1.80 under PGD L-inf 0.25",
        "PGD ...",
        metrics={"verdict_from": {"kind": "attack"}},
    )
    decision = ship_rule(checks)
    assert decision.decision == "do not ship"
    assert decision.sentence.startswith("do not ship, driven by robustness fail: RMSE x1.80")
    assert "3 label issues" not in decision.sentence  # a warning did not drive a block
    assert "audit.robustness.attacks" in decision.sentence
    everything_passes = {n: CheckResult(n, "pass", "ok", "fine") for n in CHECKS}
    assert ship_rule(everything_passes).sentence.startswith("ship:")
