"""Pruning: a callback stops training cleanly, and the median pruner stops a bad trial."""

from pathlib import Path

import optuna
import pytest

import gradwise
from gradwise.config import load_config
from gradwise.pipeline import train_run
from gradwise.training.loop import StopTraining
from gradwise.tuning.study import storage_url
from tests.conftest import tiny_config


def test_stopping_from_the_epoch_callback_leaves_a_complete_run(tmp_path: Path):
    def stop_at_two(record: dict) -> None:
        if record["epoch"] == 2:
            raise StopTraining("enough")

    cfg = load_config(tiny_config(train={"epochs": 5}))
    run = train_run(cfg, tmp_path / "r", on_epoch_end=stop_at_two)
    assert run.metrics["epochs"] == 2 and run.metrics["stopped_early"] is True
    assert run.metrics["stop_reason"] == "enough"
    assert len(run.history) == 2
    log = (tmp_path / "r" / "train.log").read_text()
    assert "stopped after epoch 2: enough" in log and "error" not in log
    reloaded = gradwise.load(tmp_path / "r")  # model.json, weights and metrics all written
    assert reloaded.metrics == run.metrics


def test_the_median_pruner_stops_a_trial_far_below_the_others(tmp_path: Path):
    cfg = tiny_config(train={"epochs": 4})
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1.0e-7, 1.0e-2]}\n")
    # queue a good trial, then a hopeless one (a learning rate 10^5 times too small)
    (tmp_path / "t").mkdir()
    storage = optuna.storages.RDBStorage(storage_url(tmp_path / "t", None))
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    study.enqueue_trial({"train.optimizer.lr": 5e-3})
    study.enqueue_trial({"train.optimizer.lr": 1e-7})

    result = gradwise.tune(
        cfg,
        tmp_path / "t",
        trials=2,
        space=space,
        seeds=0,
        prune_startup=1,
        prune_warmup=0,
        cv="off",  # pruned on the validation split's epochs (test_crossval: on the folds)
    )
    good, bad = result.trials
    assert (good.state, bad.state) == ("complete", "pruned")
    assert bad.epochs == 1 and "pruned after epoch 1" in bad.note
    pruned_run = gradwise.load(tmp_path / "t" / "trials" / "1")
    assert pruned_run.metrics["stop_reason"].startswith("pruned after epoch 1")
    assert bad.value == pytest.approx(pruned_run.history[0]["val.accuracy"])
    assert result.n_pruned == 1 and result.best_trial == 0
