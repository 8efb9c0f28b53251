"""`--fail-on warn|fail`: audit and report exit with code 4 when the verdict reaches the level,
so a CI pipeline can gate on it; without the flag they exit 0 whatever the verdict."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.cli.audit import VERDICT_EXIT_CODE
from tests.conftest import tiny_config

runner = CliRunner()
# calibration's ECE against thresholds that force each verdict
FORCE = {
    "fail": ["--set", "audit.calibration.ece_warn=0", "--set", "audit.calibration.ece_fail=0"],
    "warn": ["--set", "audit.calibration.ece_warn=0", "--set", "audit.calibration.ece_fail=1"],
    "pass": ["--set", "audit.calibration.ece_warn=1", "--set", "audit.calibration.ece_fail=1"],
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    run = gradwise.train(tiny_config(), out=tmp_path_factory.mktemp("fail_on") / "run")
    return str(run.path)


def _audit(run_dir: str, verdict: str, *flags: str) -> int:
    args = ["audit", run_dir, "--checks", "calibration", "-q", *FORCE[verdict], *flags]
    out = runner.invoke(app, args)
    assert f"overall: {verdict}" in out.output or "--json" in flags, out.output
    return out.exit_code


@pytest.mark.parametrize(
    ("verdict", "fail_on", "code"),
    [
        ("fail", None, 0),
        ("fail", "fail", VERDICT_EXIT_CODE),
        ("fail", "warn", VERDICT_EXIT_CODE),
        ("warn", "fail", 0),
        ("warn", "warn", VERDICT_EXIT_CODE),
        ("pass", "warn", 0),
    ],
)
def test_audit_exits_4_when_the_verdict_reaches_fail_on(run_dir, verdict, fail_on, code):
    flags = [] if fail_on is None else ["--fail-on", fail_on]
    assert _audit(run_dir, verdict, *flags) == code


def test_audit_json_prints_the_results_before_exiting_4(run_dir):
    args = ["audit", run_dir, "--checks", "calibration", *FORCE["fail"], "--json"]
    out = runner.invoke(app, [*args, "--fail-on", "fail"])
    assert out.exit_code == VERDICT_EXIT_CODE
    assert json.loads(out.output)[0]["verdict"] == "fail"


def test_a_bad_level_is_a_usage_error(run_dir):
    out = runner.invoke(app, ["audit", run_dir, "--fail-on", "maybe"])
    assert out.exit_code == 2 and "maybe" in out.output


def test_the_python_api_returns_the_report_without_raising(run_dir):
    forced = {"ece_warn": 0.0, "ece_fail": 0.0}
    report = gradwise.audit(gradwise.load(run_dir), checks=["calibration"], calibration=forced)
    assert report.worst == "fail"


def test_report_exits_4_when_its_decision_reaches_fail_on(run_dir, tmp_path):
    page = ["--out", str(tmp_path / "r.html")]
    assert _audit(run_dir, "fail") == 0  # calibration fails: do not ship
    out = runner.invoke(app, ["report", run_dir, *page])
    assert out.exit_code == 0 and "do not ship" in out.output
    for level in ("fail", "warn"):
        out = runner.invoke(app, ["report", run_dir, *page, "--fail-on", level])
        assert out.exit_code == VERDICT_EXIT_CODE, out.output
        assert "do not ship" in out.output and (tmp_path / "r.html").exists()
    assert _audit(run_dir, "pass") == 0  # the other checks have not run: ship with care
    out = runner.invoke(app, ["report", run_dir, *page, "--fail-on", "fail"])
    assert out.exit_code == 0 and "ship with care" in out.output
    out = runner.invoke(app, ["report", run_dir, *page, "--fail-on", "warn", "--json"])
    assert out.exit_code == VERDICT_EXIT_CODE
    assert json.loads(out.output)["decision"] == "ship with care"


def test_help_documents_the_exit_code():
    for verb in ("audit", "report"):
        out = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
        assert "--fail-on" in out.output and "4" in out.output
