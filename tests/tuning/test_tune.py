"""A whole search on the digits MLP: best.yaml, seeds, importance, sensitivity, tune.json;
the CLI verb and its errors."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.errors import ConfigError
from tests.conftest import tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tune") / "study"
    seen = []
    result = gradwise.tune(
        tiny_config(train={"epochs": 2}),
        out,
        trials=10,  # importance.MIN_TRIALS
        seeds=2,
        pruner="none",
        cv="off",  # each trial one run on the validation split (test_crossval: k folds)
        progress=lambda done, total, best: seen.append((done, total, best)),
    )
    return result, out, seen


def test_a_small_study_finishes_and_reports_its_best_trial(study):
    result, out, seen = study
    assert result.n_trials == 10 and result.n_complete == 10
    values = [t.value for t in result.trials]
    assert result.best_value == max(values)
    assert result.best_trial == values.index(max(values))
    assert seen[-1][:2] == (10, 10) and seen[-1][2] == pytest.approx(result.best_value)
    for number in range(10):  # every trial is a normal run directory
        run = gradwise.load(out / "trials" / str(number))
        assert run.metrics["val"]["accuracy"] == pytest.approx(values[number])


def test_best_yaml_trains_with_gradwise_train(study, tmp_path: Path):
    result, out, _ = study
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert (
        best["model"]["hidden"]
        == [result.best_params["model.hidden.width"]] * (result.best_params["model.hidden.layers"])
    )
    assert best["train"]["optimizer"]["lr"] == result.best_params["train.optimizer.lr"]
    args = ["train", str(out / "best.yaml"), "--out", str(tmp_path / "r"), "-q"]
    done = runner.invoke(app, [*args, "--set", "train.epochs=1"])
    assert done.exit_code == 0, done.output


def test_the_best_config_is_retrained_over_seeds_on_the_same_split(study):
    result, out, _ = study
    assert result.seeds.seeds == (0, 1)
    runs = [gradwise.load(out / "best" / f"seed-{s}") for s in (0, 1)]
    assert [r.config.data.split.seed for r in runs] == [0, 0]
    assert list(result.seeds.test) == pytest.approx([r.metrics["test"]["accuracy"] for r in runs])
    assert (runs[0].path / "splits.json").read_text() == (runs[1].path / "splits.json").read_text()


def test_tune_json_holds_importance_sensitivity_and_plots(study):
    result, out, _ = study
    saved = json.loads((out / "tune.json").read_text())
    searched = set(saved["best_params"])
    assert set(saved["importance"]["fanova"]) == searched
    assert set(saved["importance"]["ped_anova"]) == searched
    assert saved["importance"]["sentence"].startswith("on this data, ")
    important = {p.name for p in result.importance.important}
    assert saved["sensitivity"] and {s["param"] for s in saved["sensitivity"]} <= important
    for step in saved["sensitivity"]:
        assert step["value"] != step["best"]
        assert step["delta"] == pytest.approx(step["mean"] - saved["seeds"]["val_mean"])
    for name in ("importance.png", "slices.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_a_finished_study_reruns_without_training_again(study):
    result, out, _ = study
    again = gradwise.tune(
        tiny_config(train={"epochs": 2}), out, trials=10, seeds=2, pruner="none", cv="off"
    )
    assert again.n_trials == 10 and again.best_trial == result.best_trial
    assert again.seeds == result.seeds  # the seed runs were reused, not retrained
    assert again.sensitivity == result.sensitivity


def test_a_study_refuses_another_config(study):
    _, out, _ = study
    with pytest.raises(ConfigError, match="started with another config"):
        gradwise.tune(tiny_config(train={"epochs": 3}), out, trials=10, seeds=0)


def test_the_cli_prints_the_study_and_writes_tune_json(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1})))
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1.0e-3, 1.0e-2]}\n")
    args = ["tune", str(config), "--trials", "3", "--seeds", "0", "--space", str(space)]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "t"), "-q"])
    assert done.exit_code == 0, done.output
    assert "3 trials: 3 finished, 0 pruned, 0 failed" in done.output
    assert "importance: not measured: it needs at least 10 finished trials" in done.output
    assert (tmp_path / "t" / "tune.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--space", "SPACE"], "did you mean train.optimizer.lr?"),
        (["--metric", "test.accuracy"], "searching on the test split"),
        (["--metric", "val.acuracy"], "--metric val.acuracy is not logged by this run"),
        (["--timeout", "ten minutes"], "must look like 90s, 10m"),
    ],
)
def test_bad_arguments_exit_2_with_one_message(tmp_path: Path, extra: list[str], message: str):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1})))
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lrate: {log_uniform: [1.0e-3, 1.0e-2]}\n")
    extra = [str(space) if a == "SPACE" else a for a in extra]
    args = ["tune", str(config), "--trials", "2", "--out", str(tmp_path / "t"), "-q", *extra]
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400)]
)
def test_timeouts_read_as_people_write_them(text: str, seconds: float):
    from gradwise.cli.tune import parse_duration

    assert parse_duration(text) == seconds
