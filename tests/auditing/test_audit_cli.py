"""The audit verb and gradwise.audit: the verdict table, exit codes, typos, stated settings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import AuditReport, CheckResult
from gradwise.cli import app
from gradwise.config import BaselineAudit, CalibrationAudit, GeneralisationAudit, UncertaintyAudit
from tests.conftest import tiny_config

runner = CliRunner()
MINE = {
    "calibration": CalibrationAudit,
    "uncertainty": UncertaintyAudit,
    "generalisation": GeneralisationAudit,
    "baseline": BaselineAudit,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    cfg = tiny_config(audit={"generalisation": {"learning_curve": False}})
    run = gradwise.train(cfg, out=tmp_path_factory.mktemp("audit") / "run")
    return str(run.path)


def test_the_verdict_table_has_a_row_per_check_with_headline_verdict_seconds_and_sentence(
    run_dir,
):
    out = runner.invoke(app, ["audit", run_dir, "--checks", "calibration,uncertainty", "-q"])
    assert out.exit_code == 0, out.output
    for text in ("check", "headline", "verdict", "seconds", "what it means"):
        assert text in out.stdout
    assert "calibration" in out.stdout and "ECE" in out.stdout
    assert "uncertainty" in out.stdout and "coverage" in out.stdout
    assert "overall:" in out.stdout and "calibration.png" in out.stdout
    for name in ("calibration", "uncertainty"):
        saved = json.loads((gradwise.load(run_dir).path / "audit" / f"{name}.json").read_text())
        assert saved["verdict"] in ("pass", "warn", "fail") and saved["wall_s"] > 0


def test_a_misspelt_check_gets_a_did_you_mean_and_exit_code_2(run_dir):
    out = runner.invoke(app, ["audit", run_dir, "--checks", "calibraton,uncertainty"])
    assert out.exit_code == 2
    assert "did you mean calibration?" in out.output and "Traceback" not in out.output


def test_a_missing_run_is_one_message_and_exit_code_2(tmp_path):
    out = runner.invoke(app, ["audit", str(tmp_path / "nope"), "--checks", "calibration"])
    assert out.exit_code == 2 and "not found" in out.output and "Traceback" not in out.output


def test_json_output_and_every_default_stated(run_dir):
    out = runner.invoke(app, ["audit", run_dir, "--checks", ",".join(MINE), "--json"])
    assert out.exit_code == 0, out.output
    checks = {c["check"]: c for c in json.loads(out.stdout)}
    assert list(checks) == list(MINE)
    for name, settings_class in MINE.items():
        assert set(settings_class.model_fields) <= set(checks[name]["settings"]), name
        assert checks[name]["summary"].endswith("."), name


def test_the_python_api_returns_frozen_results_and_n_a_with_a_reason(tmp_path):
    run = gradwise.train(tiny_config(data={"source": "builtin:diabetes"}), out=tmp_path / "r")
    report = gradwise.audit(run, checks=["calibration"])
    assert isinstance(report, AuditReport) and isinstance(report["calibration"], CheckResult)
    assert report["calibration"].verdict == "n/a" and report.worst == "n/a"
    assert "regression" in report["calibration"].summary
    with pytest.raises(AttributeError):
        report["calibration"].verdict = "pass"  # type: ignore[misc]


def test_set_changes_a_check_setting_for_this_audit_only(run_dir):
    args = ["audit", run_dir, "--checks", "calibration", "--set", "audit.calibration.bins=10"]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["settings"]["bins"] == 10
    assert gradwise.load(run_dir).config.audit.calibration.bins == 15  # the run is unchanged
    bad = runner.invoke(app, ["audit", run_dir, "--set", "train.epochs=3"])
    assert bad.exit_code == 2 and "audit --set changes the audit settings only" in bad.output
    typo = runner.invoke(app, ["audit", run_dir, "--set", "audit.calibration.binz=3"])
    assert typo.exit_code == 2 and "did you mean audit.calibration.bins" in typo.output


def test_slices_and_fairness_run_from_the_cli_and_fairness_names_what_it_needs(run_dir):
    out = runner.invoke(app, ["audit", run_dir, "--checks", "slices,fairness", "--json"])
    assert out.exit_code == 0, out.output
    results = {c["check"]: c for c in json.loads(out.stdout)}
    assert results["slices"]["verdict"] in ("pass", "warn", "fail")
    assert results["slices"]["metrics"]["candidates"], "every candidate tested is listed"
    assert results["fairness"]["verdict"] == "n/a"
    assert "audit.fairness.groups" in results["fairness"]["summary"]
    named = runner.invoke(
        app,
        ["audit", run_dir, "--checks", "fairness", "--set", "audit.fairness.groups=[x]", "--json"],
    )
    assert named.exit_code == 0, named.output
    (fairness,) = json.loads(named.stdout)
    assert fairness["verdict"] == "n/a" and "table" in fairness["summary"]  # digits are images


def test_the_table_prints_sentences_as_written_brackets_included(run_dir):
    out = runner.invoke(app, ["audit", run_dir, "--checks", "fairness"])
    assert out.exit_code == 0, out.output
    flat = " ".join(out.stdout.replace("│", " ").split())  # the sentence wraps over rows
    assert "[column, ...]" in flat and "groups=[sex]" in flat
