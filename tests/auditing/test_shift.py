"""The shift check: verdicts on shifted and unshifted --against data, detection power against
simulated shifts, the files it writes, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gradwise.auditing.drift import DriftSettings
from gradwise.auditing.shift_power import ShiftSpace, _rows, detection_power
from gradwise.cli import app
from gradwise.config import load_config
from gradwise.pipeline import train_run
from tests.conftest import tiny_config

runner = CliRunner()


def _table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    df = pd.DataFrame(rng.standard_normal((n, 6)), columns=[f"x{i}" for i in range(6)])
    df["color"] = rng.choice(["red", "green", "blue"], n)
    df["label"] = np.where(df.x0 + df.x1 + (df.color == "red") > 0.5, "yes", "no")
    return df


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shift")
    rng = np.random.default_rng(0)
    _table(1200, rng).to_csv(root / "train.csv", index=False)
    same = _table(600, rng)
    same.to_csv(root / "same.csv", index=False)
    moved = _table(600, rng)
    moved["x2"] = moved.x2 * 1.5 + 0.8
    moved["color"] = rng.choice(["red", "green", "blue", "purple"], 600, p=[0.6, 0.2, 0.1, 0.1])
    moved.drop(columns="label").to_csv(root / "moved.csv", index=False)  # unlabelled
    cfg = tiny_config(
        data={"source": f"csv:{root / 'train.csv'}", "target": "label"},
        audit={"shift": {"power": False, "permutations": 50}},
    )
    run = train_run(load_config(cfg), root / "run")
    return run, root


def test_shifted_data_fails_and_names_the_moved_columns(table_run):
    import gradwise

    run, root = table_run
    result = gradwise.audit(run, checks=["shift"], against=str(root / "moved.csv"))["shift"]
    assert result.verdict == "fail"
    assert "2 of 7 features drifted" in result.summary
    top = {row["column"] for row in result.metrics["most_drifted"][:2]}
    assert top == {"x2", "color"}
    detectors = result.metrics["against"]["detectors"]
    assert detectors["chi2"]["drifted"] and detectors["ks"]["drifted"]
    assert detectors["domain_auc"]["effect"] > 0.6
    assert result.headline.split(" PSI ")[0] in {"x2", "color"}  # a flagged column, by name
    saved = json.loads((run.path / "audit" / "shift.json").read_text())
    assert saved["settings"]["correction"] == "bh" and saved["verdict"] == "fail"


def test_unshifted_data_passes(table_run):
    import gradwise

    run, root = table_run
    result = gradwise.audit(run, checks=["shift"], against=f"csv:{root / 'same.csv'}")["shift"]
    assert result.verdict == "pass", result.summary
    assert "0 of 7 features drifted" in result.summary


def test_cli_prints_the_verdict_and_refuses_a_missing_file(table_run):
    run, root = table_run
    ok = runner.invoke(
        app, ["audit", str(run.path), "--checks", "shift", "--against", str(root / "moved.csv")]
    )
    assert ok.exit_code == 0, ok.output
    assert "shift" in ok.output and "fail" in ok.output
    bad = runner.invoke(
        app, ["audit", str(run.path), "--checks", "shift", "--against", str(root / "none.csv")]
    )
    assert bad.exit_code == 2 and "not found" in bad.output and "Traceback" not in bad.output


def test_power_on_images_writes_the_table_and_plot(tmp_path: Path):
    import gradwise

    cfg = tiny_config(
        train={"epochs": 3},
        audit={"shift": {"sample_size": 150, "power_repeats": 5, "permutations": 30}},
    )
    run = train_run(load_config(cfg), tmp_path / "run")
    result = gradwise.audit(run, checks=["shift"])["shift"]
    assert result.verdict in ("pass", "warn")
    assert result.plots == ("shift_power.png",)
    assert (tmp_path / "run" / "audit" / "shift_power.png").stat().st_size > 1000
    table = (tmp_path / "run" / "audit" / "shift_power.txt").read_text()
    assert "rotation (degrees)" in table and "false alarms" in table
    power = result.metrics["power"]
    assert power["n"] == 150 and result.metrics["space"] == "embedding dimensions"
    assert [c["shift"] for c in power["curves"]] == ["noise", "scale", "drop", "rotation", "prior"]
    assert "measures power" in result.summary


def _gaussian_space(n: int, d: int, rng: np.random.Generator) -> ShiftSpace:
    labels = (rng.random(2 * n) < 0.2).astype(np.int64)
    x = rng.standard_normal((2 * n, d)) + labels[:, None]  # class 1 (rare) sits apart
    return ShiftSpace("table", x[:n], x[n:], lambda v: v, labels)


def test_power_grows_with_the_shift_and_false_alarms_stay_low():
    rng = np.random.default_rng(1)
    space = _gaussian_space(600, 5, rng)
    settings = DriftSettings(detectors=("ks", "psi", "wasserstein"))
    report = detection_power(space, settings, n=300, repeats=10, seed=2)
    assert all(rate <= 0.3 for rate in report.false_alarm.values())
    noise = next(c for c in report.curves if c.shift == "noise")
    ks = [p for p in noise.power["ks"] if p is not None]
    assert ks[0] < 0.5 and ks[-1] >= 0.8  # unnoticed at 0.05 std, noticed before 1 std
    assert noise.noticed_at["ks"] is not None and noise.noticed_at["ks"] > 0.05
    drop = next(c for c in report.curves if c.shift == "drop")
    assert drop.noticed_at["psi"] == 0.02  # a column gone missing: PSI's missing bin
    assert drop.noticed_at["ks"] is None  # KS compares the values that are there


def test_prior_shift_draws_the_asked_share_from_the_rarest_class():
    rng = np.random.default_rng(3)
    space = _gaussian_space(500, 2, rng)
    assert space.labels is not None
    rest = rng.permutation(1000)[200:]
    rows = _rows(space, rest, "prior", 0.3, 200, rng)
    assert len(set(rows)) == 200 and set(rows) <= set(rest)
    base = space.labels[rest].mean()
    assert space.labels[rows].mean() == pytest.approx(0.3 + 0.7 * base, abs=0.06)


def test_images_against_npz_compares_embeddings(tmp_path: Path):
    import gradwise

    cfg = tiny_config(train={"epochs": 3}, audit={"shift": {"power": False}})
    run = train_run(load_config(cfg), tmp_path / "run")
    test = run.split("test")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "same.npz", X=test.raw, y=test.y.numpy())
    noisy = np.clip(test.raw + rng.normal(0, 4, test.raw.shape), 0, 16).astype(np.float32)
    np.savez(tmp_path / "noisy.npz", X=noisy)  # unlabelled: read as inputs
    same = gradwise.audit(run, checks=["shift"], against=str(tmp_path / "same.npz"))["shift"]
    moved = gradwise.audit(run, checks=["shift"], against=str(tmp_path / "noisy.npz"))["shift"]
    assert same.verdict == "pass", same.summary
    assert moved.verdict == "fail", moved.summary
    assert "embedding dimensions drifted" in moved.summary and "on embeddings" in moved.summary


def test_the_headline_names_the_most_drifted_flagged_column_not_a_larger_unflagged_psi():
    from gradwise.auditing.drift_types import DriftReport, DriftResult, FeatureDrift
    from gradwise.auditing.shift import View, _against_verdict
    from gradwise.config import ShiftAudit

    def per_feature(name: str, effect: list[float], drifted: list[bool]) -> DriftResult:
        f = FeatureDrift(
            columns=np.arange(3),
            statistic=np.array(effect),
            p_value=np.where(drifted, 0.001, 0.4),
            effect=np.array(effect),
            drifted=np.array(drifted),
        )
        return DriftResult(name, max(effect), 0.001, max(effect), 0.1, any(drifted), f)

    # column a: the largest PSI, but on too few rows to be significant; b drifted
    psi = per_feature("psi", [0.5, 0.3, 0.02], [False, True, False])
    ks = per_feature("ks", [0.08, 0.2, 0.01], [False, True, False])
    report = DriftReport((psi, ks), 400, 400, 3, DriftSettings())
    view = View(None, ["a", "b", "c"], None, "features")  # type: ignore[arg-type]
    verdict, headline, summary = _against_verdict(report, ShiftAudit(), "new.csv", view)
    assert headline == "b PSI 0.30" and verdict == "fail"
    assert "1 of 3 features drifted (most: b, PSI 0.30; largest PSI of any column 0.50)" in summary
    calm = DriftReport(
        (per_feature("psi", [0.05, 0.03, 0.02], [False] * 3),), 400, 400, 3, DriftSettings()
    )
    verdict, headline, summary = _against_verdict(calm, ShiftAudit(), "new.csv", view)
    assert (verdict, headline) == ("pass", "0/3 drifted")
    assert "0 of 3 features drifted (largest PSI of any column 0.05)" in summary
