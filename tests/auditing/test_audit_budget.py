"""The audit's retrain budget: the learning curve's fractions x seeds and the data-quality
folds chosen from the data size and the run's own training time, only where left at null;
each retrain reported as a step with the time left; the CLI's progress line per check."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.base import CheckResult
from gradwise.auditing.progress import Step, listening, seconds_left
from gradwise.auditing.retrain_budget import Pace, plan_curve, plan_folds
from gradwise.cli.audit_progress import CheckProgress, _TimeLeftColumn
from gradwise.config import DataQualityAudit, GeneralisationAudit
from tests.conftest import tiny_config


def pace(wall_s: float, n_train: int = 21_000, epochs_ran: int = 13) -> Pace:
    """A run that trained `epochs_ran` epochs of 30 in wall_s, best at epoch 3."""
    return Pace(
        sample_epoch_s=wall_s / (epochs_ran * n_train),
        n_train=n_train,
        own_fraction=1.0,
        epochs=30,
        best_epoch=3,
        patience=10,
        stopped_early=True,
        wall_s=wall_s,
    )


def test_a_quick_run_keeps_the_full_learning_curve():
    plan = plan_curve(pace(6.0), GeneralisationAudit())
    assert plan.fractions == (0.1, 0.2, 0.3, 0.5, 0.75, 1.0) and plan.seeds == 2
    assert plan.n_retrains == 8 and plan.reduced is None and plan.skipped is None
    assert plan.points[-1].reused and plan.points[-1].estimate_s == 0.0


def test_a_slow_run_gets_fewer_retrains_and_says_why():
    plan = plan_curve(pace(30.0), GeneralisationAudit())
    assert plan.n_retrains < 8 and plan.estimate_s <= 60.0
    assert len(set(plan.fractions)) >= 4  # the power law's 3 parameters, and a band
    assert plan.reduced is not None
    assert "instead of 6 fractions x 2 seeds (8 retrains)" in plan.reduced
    assert "the run trained for 30 s on 21,000 samples" in plan.reduced
    assert "audit.generalisation.fractions" in plan.reduced
    # a bigger budget buys the full curve back; a slower run gets the least curve
    assert plan_curve(pace(30.0), GeneralisationAudit(budget_s=3600)).n_retrains == 8
    assert plan_curve(pace(60.0), GeneralisationAudit()).fractions == (0.1, 0.25, 0.5, 1.0)


def test_the_curve_is_left_out_when_even_its_least_would_take_ten_budgets():
    plan = plan_curve(pace(3600.0), GeneralisationAudit())
    assert plan.points == () and plan.skipped is not None
    assert "audit.generalisation.fractions" in plan.skipped


def test_fractions_and_seeds_set_by_the_user_are_kept_however_slow():
    settings = GeneralisationAudit(fractions=[0.1, 0.2, 1.0], seeds=3)
    plan = plan_curve(pace(3600.0), settings)
    assert plan.fractions == (0.1, 0.2, 1.0) and plan.seeds == 3
    assert plan.n_retrains == 6 and plan.skipped is None and plan.reduced is None
    # seeds set, fractions auto: only the fractions adapt
    only_seeds = plan_curve(pace(60.0), GeneralisationAudit(seeds=2))
    assert only_seeds.seeds == 2 and only_seeds.n_retrains < 8


def test_data_quality_folds_shrink_then_epochs_for_slow_runs():
    assert plan_folds(pace(6.0), DataQualityAudit()).folds == 5
    slow = plan_folds(pace(60.0), DataQualityAudit())
    assert (slow.folds, slow.epochs) == (4, 3) and slow.reduced is not None
    assert slow.reduced.startswith("4 folds instead of 5:")
    slower = plan_folds(pace(120.0), DataQualityAudit())
    assert (slower.folds, slower.epochs) == (3, 2)
    assert "epochs per fold instead of 3" in (slower.reduced or "")
    kept = plan_folds(pace(600.0), DataQualityAudit(folds=5, epochs=3))
    assert (kept.folds, kept.epochs, kept.reduced) == (5, 3, None)


def test_seconds_left_scales_the_plan_by_the_pace_of_the_steps_done():
    assert seconds_left([10.0, 10.0, 20.0], 0, 0.0) == 40.0
    assert seconds_left([10.0, 10.0, 20.0], 1, 20.0) == 60.0  # twice as slow as planned
    assert seconds_left([0.0, 0.0], 1, 3.0) == 3.0  # no plan: the mean step so far
    assert seconds_left([0.0, 0.0], 0, 0.0) is None  # no plan, no step done: no estimate


def test_a_slow_run_audit_states_the_reduction_and_reports_each_retrain(tmp_path):
    run = gradwise.train(tiny_config(), out=tmp_path / "r")
    metrics = json.loads((run.path / "metrics.json").read_text())
    metrics["wall_s"] = 25.0  # as if the run had taken 25 s to train
    (run.path / "metrics.json").write_text(json.dumps(metrics))
    steps: list[Step] = []
    with listening(steps.append):
        report = run_checks(gradwise.load(run.path), ["generalisation", "data_quality"])
    curve = report["generalisation"].metrics["learning_curve"]
    plan = curve["plan"]
    assert plan["n_retrains"] < 8 and plan["reduced"]
    assert len(curve["points"]) == plan["n_retrains"] + 1  # the run itself is reused
    assert "the curve ran" in report["generalisation"].summary
    assert report["generalisation"].settings["seeds"] == plan["seeds"]
    gen = [s for s in steps if s.check == "generalisation"]
    assert [s.done for s in gen] == list(range(plan["n_retrains"] + 1))
    assert all(s.total == plan["n_retrains"] for s in gen) and gen[0].left_s
    labels = report["data_quality"].metrics["labels"]
    assert labels["folds"] < 5 and labels["reduced"]
    assert report["data_quality"].settings["folds"] == labels["folds"]
    assert "out-of-fold retrains" in report["data_quality"].summary
    folds = [s.done for s in steps if s.check == "data_quality"]
    assert folds == list(range(labels["folds"] + 1))


def test_the_progress_line_counts_retrains_and_the_time_left():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with CheckProgress(["generalisation", "calibration"], console) as bars:
        bars.step(Step("generalisation", 1, 4, "0.2 of the data, seed 0", 30.0))
        task = bars.bars.tasks[0]
        assert (task.completed, task.total) == (1, 4)
        assert _TimeLeftColumn().render(task).plain in {"~30 s left", "~29 s left"}
        bars.done(CheckResult("generalisation", "pass", "gap", "ok", wall_s=12.0))
        assert bars.bars.tasks[0].fields["what"] == "pass in 12.0 s"
        assert bars.bars.tasks[1].description == "[2/2] calibration"
        assert _TimeLeftColumn().render(bars.bars.tasks[1]).plain == ""  # no steps: no estimate


@pytest.mark.parametrize(("flag", "shown"), [(None, True), ("--quiet", False), ("--json", False)])
def test_the_cli_shows_a_line_per_check_on_a_terminal_unless_quiet(
    tmp_path, monkeypatch, flag, shown
):
    from typer.testing import CliRunner

    import gradwise.cli.console as console
    from gradwise.cli import app

    terminal = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=terminal, force_terminal=True))
    run = gradwise.train(tiny_config(), out=tmp_path / "r")
    args = ["audit", str(run.path), "--checks", "calibration,uncertainty"]
    result = CliRunner().invoke(app, args + ([flag] if flag else []))
    assert result.exit_code == 0
    assert ("[2/2] uncertainty" in terminal.getvalue()) is shown
