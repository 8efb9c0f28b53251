"""Cross-validated trial scores (tune.cv): the same numbers as a hand k-fold, the config as
given queued as trial 0, the comparison sentence read off the trials, pruning on the folds,
and whether the top importance holds over bootstrap resamples."""

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.config import load_config
from gradwise.data.dataset import Split
from gradwise.data.sources import load_dataset
from gradwise.data.split import fold_splits
from gradwise.errors import ConfigError
from gradwise.pipeline import train_run
from gradwise.tuning.crossval import AUTO_FOLDS, cv_plan, fold_datasets
from gradwise.tuning.objective import FOLD_STEP
from gradwise.tuning.space import default_params, default_space, parse_space
from gradwise.tuning.stability import RESAMPLES, top_agreement
from gradwise.tuning.study import storage_url
from tests.conftest import tiny_config

runner = CliRunner()
ONE_LR = "train.optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("cv") / "study"
    result = gradwise.tune(
        tiny_config(train={"epochs": 2}), out, trials=4, seeds=0, pruner="none", cv=3
    )
    return result, out


def _hand_folds(cfg_dict: dict, k: int, out: Path) -> list[float]:
    """The config trained on k folds of train+val built here, with the data layer's folds."""
    cfg = load_config(cfg_dict)
    data = load_dataset(cfg.data, cfg.seed)
    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    rows = np.concatenate([data.rows["train"], data.rows["val"]])
    scores = []
    for i, (keep, held) in enumerate(
        fold_splits(data.split_rule, data.fold_key, rows, y.numpy(), k, cfg.seed)
    ):
        fold = dataclasses.replace(
            data,
            train=Split(x[keep], y[keep]),
            val=Split(x[held], y[held]),
            rows={**data.rows, "train": rows[keep], "val": rows[held]},
        )
        run = train_run(cfg, out / f"hand-{i}", data=fold)
        assert not set(rows[held]) & set(data.rows["test"])  # test never scored
        scores.append(run.metrics["val"]["accuracy"])
    return scores


def test_a_cross_validated_trial_scores_what_a_hand_k_fold_scores(study, tmp_path: Path):
    result, out = study
    default = result.trials[0]  # the config as given: the same config trained by hand
    hand = _hand_folds(tiny_config(train={"epochs": 2}), 3, tmp_path)
    assert default.folds == pytest.approx(hand)
    assert default.value == pytest.approx(np.mean(hand))
    assert default.se == pytest.approx(np.std(hand, ddof=1) / math.sqrt(3))
    held = [set(json.loads((out / "trials/0" / f"fold-{i}/splits.json").read_text())["val"])
            for i in range(3)]  # fmt: skip
    assert not (held[0] & held[1]) and not (held[1] & held[2])
    assert result.folds == 3 and result.cv_rule.startswith("tune.cv 3: 3-fold")


def test_the_config_as_given_is_trial_0(study):
    result, _ = study
    base = load_config(tiny_config(train={"epochs": 2}))
    first = result.trials[0]
    assert first.default and not any(t.default for t in result.trials[1:])
    assert first.params["train.optimizer.lr"] == base.train.optimizer.lr
    assert first.params["train.batch_size"] == base.train.batch_size
    assert first.params["model.hidden.width"] == base.model.hidden[0]  # type: ignore[union-attr]
    assert result.comparison.default.trial == 0


def test_the_comparison_sentence_reads_the_trials(study):
    result, out = study
    done = sorted(
        (t for t in result.trials if t.state == "complete"), key=lambda t: (-t.value, t.number)
    )
    c = result.comparison
    assert (c.best.trial, c.second.trial) == (done[0].number, done[1].number)
    kept = result.kept_given
    recommended = result.trials[0] if kept else done[0]
    assert result.best_trial == recommended.number
    assert result.best_se == pytest.approx(recommended.se)
    for gap, other in ((c.vs_default, result.trials[0]), (c.vs_second, done[1])):
        if gap is None:  # the config as given is the best
            assert c.best.trial == 0
            continue
        diff = np.subtract(done[0].folds, other.folds)
        assert gap.gain == pytest.approx(diff.mean())
        assert gap.se == pytest.approx(np.std(diff, ddof=1) / math.sqrt(3))
        assert gap.apart == (abs(gap.gain) > 2 * gap.se)
        assert f"{gap.gain:+.4f} ± {gap.se:.4f}" in c.sentence
    assert f"best {done[0].value:.4f} ± {done[0].se:.4f} (trial {done[0].number})" in c.sentence
    within = [g.apart is False for g in (c.vs_default, c.vs_second) if g is not None]
    assert ("cannot be told apart" in c.sentence) == any(within)
    saved = json.loads((out / "tune.json").read_text())
    assert saved["comparison"]["sentence"] == c.sentence and saved["folds"] == 3


def test_the_pruner_sees_the_running_mean_after_each_fold(study):
    _, out = study
    storage = optuna.storages.RDBStorage(storage_url(out, None))
    trial = optuna.load_study(study_name="tiny", storage=storage).trials[0]
    folds = trial.user_attrs["folds"]
    for i in range(3):
        assert trial.intermediate_values[FOLD_STEP * (i + 1)] == pytest.approx(
            np.mean(folds[: i + 1])
        )
    assert set(trial.intermediate_values) - {FOLD_STEP * i for i in (1, 2, 3)} == {1, 2}


def test_a_hopeless_trial_is_pruned_in_its_first_fold(tmp_path: Path):
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1.0e-7, 1.0e-2]}\n")
    (tmp_path / "t").mkdir()
    storage = optuna.storages.RDBStorage(storage_url(tmp_path / "t", None))
    made = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    made.enqueue_trial({"train.optimizer.lr": 5e-3})
    made.enqueue_trial({"train.optimizer.lr": 1e-7})
    result = gradwise.tune(
        tiny_config(train={"epochs": 4}),
        tmp_path / "t",
        trials=2,
        space=space,
        seeds=0,
        prune_startup=1,
        prune_warmup=0,
        cv=3,
    )
    good, bad = result.trials
    assert (good.state, bad.state) == ("complete", "pruned") and len(good.folds) == 3
    assert bad.note.startswith("fold 1: pruned after epoch 1") and bad.folds == ()
    assert (tmp_path / "t/trials/1/fold-0").is_dir()
    assert not (tmp_path / "t/trials/1/fold-1").exists()
    assert "did not finish (or was not trial 0)" in result.comparison.sentence


def test_cv_off_scores_the_validation_split_as_before(tmp_path: Path):
    space = tmp_path / "space.yaml"
    space.write_text(ONE_LR)
    result = gradwise.tune(
        tiny_config(train={"epochs": 1}), tmp_path / "t", trials=2, space=space, seeds=0, cv="off"
    )
    assert result.folds == 0 and result.best_se is None
    for t in result.trials:  # one run per trial, on the validation split
        run = gradwise.load(tmp_path / "t/trials" / str(t.number))
        assert t.value == pytest.approx(run.metrics["val"]["accuracy"]) and t.folds == ()
    assert result.trials[0].default and result.trials[0].params["train.optimizer.lr"] == 1e-3
    assert "no noise estimate (tune.cv off)" in result.comparison.sentence


def test_auto_cross_validates_small_validation_splits_only():
    data = load_dataset(load_config(tiny_config()).data, 0)
    assert cv_plan("auto", 2000, data).folds == AUTO_FOLDS  # 270 validation rows
    assert "validation has 270 rows (< 2000)" in cv_plan("auto", 2000, data).rule
    assert cv_plan("auto", 100, data).folds == 0
    assert cv_plan("off", 2000, data).folds == 0 and cv_plan(4, 2000, data).folds == 4
    in_time = dataclasses.replace(data, split_rule={"method": "time"})
    assert cv_plan("auto", 2000, in_time).folds == 0
    with pytest.raises(ConfigError, match="ordered in time"):
        cv_plan(3, 2000, in_time)


def test_one_fold_and_unknown_words_are_refused(tmp_path: Path):
    for bad in (1, "sometimes"):
        with pytest.raises(ConfigError, match="tune.cv"):
            gradwise.tune(tiny_config(), tmp_path / "t", cv=bad)


def test_a_config_outside_its_space_is_not_queued_as_trial_0():
    base = load_config(tiny_config(train={"optimizer": {"lr": 0.5}}))
    params, why = default_params(base, default_space(base))
    assert params is None and why.startswith("train.optimizer.lr 0.5 lies outside the space")
    lists = load_config(tiny_config(model={"hidden": [64, 32]}))
    assert default_params(lists, default_space(lists))[1].endswith("not a list of equal widths")


def test_the_cli_prints_the_comparison_with_its_noise(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1})))
    space = tmp_path / "space.yaml"
    space.write_text(ONE_LR)
    args = ["tune", str(config), "--trials", "2", "--seeds", "0", "--space", str(space)]
    done = runner.invoke(app, [*args, "--set", "tune.cv=3", "--out", str(tmp_path / "t"), "-q"])
    assert done.exit_code == 0, done.output
    saved = json.loads((tmp_path / "t/tune.json").read_text())
    flat = " ".join(done.output.split())
    assert " ".join(saved["comparison"]["sentence"].split()) in flat
    assert "scored by tune.cv 3: 3-fold cross-validation" in flat


# ------------------------------------------------------------------ importance over resamples

SPACE = parse_space(
    {"train.optimizer.lr": {"log_uniform": [1e-5, 1e-1]}, "model.dropout": {"uniform": [0, 0.5]}},
    "test",
)


def _study(objective, n_trials: int = 30) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    made = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    made.optimize(lambda t: objective(SPACE.suggest(t), t.number), n_trials=n_trials)
    return made


def test_a_dominant_parameter_holds_over_resamples():
    def lr_decides(v: dict, n: int) -> float:
        return -((math.log10(v["train.optimizer.lr"]) + 2.5) ** 2) + random.Random(n).gauss(0, 1e-3)

    agreement = top_agreement(_study(lr_decides), "train.optimizer.lr")
    assert agreement.holds and agreement.first >= 0.8 * RESAMPLES
    assert f"in {agreement.first} of {RESAMPLES} bootstrap resamples" in agreement.sentence


def test_a_parameter_that_does_not_lead_is_said_not_to_hold():
    def dropout_decides(v: dict, n: int) -> float:
        return -v["model.dropout"] + random.Random(n).gauss(0, 1e-3)

    agreement = top_agreement(_study(dropout_decides), "train.optimizer.lr")
    assert not agreement.holds and agreement.rival == "model.dropout"
    assert "cannot be told apart from dropout" in agreement.sentence


def test_a_trial_is_not_pruned_while_its_learning_rate_warms_up(tmp_path: Path):
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1.0e-7, 1.0e-2]}\n")
    (tmp_path / "t").mkdir()
    storage = optuna.storages.RDBStorage(storage_url(tmp_path / "t", None))
    made = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    made.enqueue_trial({"train.optimizer.lr": 5e-3})
    made.enqueue_trial({"train.optimizer.lr": 1e-7})  # pruned at epoch 1 without warm-up
    long_warm_up = {"epochs": 3, "schedule": {"name": "constant", "warmup_steps": 1000}}
    result = gradwise.tune(
        tiny_config(train=long_warm_up),
        tmp_path / "t",
        trials=2,
        space=space,
        seeds=0,
        prune_startup=1,
        prune_warmup=0,
        cv="off",
    )
    assert [t.state for t in result.trials] == ["complete", "complete"]
    assert result.trials[1].epochs == 3  # 19 steps an epoch: the rate rose all 3 epochs


NARROW_LR = "train.optimizer.lr: {log_uniform: [0.0008, 0.00125]}\n"  # around the given 1e-3


def test_best_yaml_keeps_the_config_as_given_when_the_top_trial_is_within_its_noise(
    study, tmp_path: Path
):
    wide, wide_out = study  # the top trial is far ahead of the given config: best.yaml is it
    assert wide.comparison.vs_default.apart and not wide.kept_given
    assert not (wide_out / "top.yaml").exists()
    space = tmp_path / "space.yaml"
    space.write_text(NARROW_LR)
    cfg = tiny_config(train={"epochs": 2})
    args = {"trials": 3, "seeds": 0, "pruner": "none", "cv": 3, "space": str(space)}
    kept = gradwise.tune(cfg, tmp_path / "kept", **args)
    gap = kept.comparison.vs_default
    assert gap is not None and gap.apart is False  # a top trial within the noise
    assert kept.kept_given and kept.best_trial == 0
    best = yaml.safe_load((tmp_path / "kept/best.yaml").read_text())
    assert best == load_config(cfg).model_dump(mode="json")  # the config as given, every key
    top = yaml.safe_load((tmp_path / "kept/top.yaml").read_text())
    top_lr = kept.trials[kept.comparison.best.trial].params["train.optimizer.lr"]
    assert top["train"]["optimizer"]["lr"] == pytest.approx(top_lr)
    assert any("best.yaml keeps the config as given (trial 0)" in n for n in kept.notes)
    off = gradwise.tune(cfg, tmp_path / "off", keep_given=False, **args)
    assert not off.kept_given and off.best_trial == off.comparison.best.trial != 0
    assert not (tmp_path / "off" / "top.yaml").exists()


def test_a_lead_beyond_the_noise_is_measured_again_on_fresh_folds(study, tmp_path: Path):
    result, _ = study
    c = result.confirmation
    assert c is not None and c.trial == result.comparison.best.trial and c.folds == 3
    cfg = load_config(tiny_config(train={"epochs": 2}))
    assert c.seed == cfg.seed + 1  # not the search's folds
    data = load_dataset(cfg.data, cfg.seed)
    hand = [
        train_run(cfg, tmp_path / f"g{i}", data=fold).metrics["val"]["accuracy"]
        for i, fold in enumerate(fold_datasets(data, 3, c.seed))
    ]
    assert c.given == pytest.approx(hand)
    diff = np.subtract(c.top, c.given)
    assert c.gain == pytest.approx(diff.mean())
    assert c.se == pytest.approx(np.std(diff, ddof=1) / math.sqrt(3))
    assert c.apart == (c.gain > 2 * c.se) and result.kept_given == (not c.apart)
    assert c.sentence in result.notes
