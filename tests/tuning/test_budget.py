"""The retrains after a search are bounded by the trial count and by --budget; importance
from too few trials is not a number."""

import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.tuning.finish import RetrainPlan
from tests.conftest import tiny_config

runner = CliRunner()


def test_a_four_trial_study_is_not_followed_by_sensitivity_retrains():
    plan = RetrainPlan(allowed=4, each_s=1.0, deadline=None)
    notes: list[str] = []
    assert plan.seeds(3, notes) == 3
    plan.spent(3)
    assert plan.params(2, 3, notes) == 0
    assert notes == [
        "sensitivity: skipped (at most 1 retrain per finished trial after the search; "
        "more --trials allow more)"
    ]


def test_the_budget_cuts_the_seed_retrains_that_do_not_fit():
    plan = RetrainPlan(allowed=30, each_s=10.0, deadline=time.time() + 25)
    notes: list[str] = []
    assert plan.seeds(3, notes) == 2  # two 10 s runs fit in 25 s
    assert notes[0].startswith("seeds: 2 of the 3 asked (--budget: 0.4 min left")
    late = RetrainPlan(allowed=30, each_s=10.0, deadline=time.time() + 5)
    assert late.seeds(3, notes) == 0
    assert notes[1].startswith("seeds: the best config was not retrained over seeds (--budget")


def test_few_trials_give_no_importance_number_and_fewer_seed_runs(tmp_path: Path):
    result = gradwise.tune(
        tiny_config(train={"epochs": 1}), tmp_path / "t", trials=2, seeds=3, pruner="none"
    )
    assert result.importance is None and not result.sensitivity
    assert result.seeds is not None and len(result.seeds.seeds) == 2
    assert result.notes[0].startswith("seeds: 2 of the 3 asked")
    assert "needs at least 10 finished trials and this study has 2" in result.notes[1]
    assert not (tmp_path / "t" / "best" / "seed-2").exists()


def test_the_cli_prints_why_importance_is_missing_and_refuses_a_zero_budget(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1})))
    args = ["tune", str(config), "--trials", "2", "--seeds", "0", "-q"]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "t"), "--budget", "5"])
    assert done.exit_code == 0, done.output
    assert "importance: not measured" in done.output and "explains" not in done.output
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "u"), "--budget", "0"])
    assert bad.exit_code == 2 and "tune.budget_s: Input should be greater than 0" in bad.output
