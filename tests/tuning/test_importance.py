"""Importance: fANOVA and PED-ANOVA through gradwise's wrapper, on objectives whose answer
is known."""

import math
import random
import re

import optuna
import pytest

from gradwise.tuning.importance import importance
from gradwise.tuning.space import parse_space

SPACE = parse_space(
    {
        "train.optimizer.lr": {"log_uniform": [1e-5, 1e-1]},
        "model.dropout": {"uniform": [0.0, 0.5]},
        "train.batch_size": {"choice": [32, 64, 128]},
        "train.schedule.warmup_steps": {"int": [0, 200]},
    },
    "test",
)


def _study(objective, sampler_seed: int, n_trials: int = 60) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=sampler_seed)
    )
    study.optimize(lambda t: objective(SPACE.suggest(t), t.number), n_trials=n_trials)
    return study


def _accuracy_like(values: dict, number: int) -> float:
    # the learning rate decides most (a bump around 3e-3), dropout a little, noise the rest
    lr_term = -((math.log10(values["train.optimizer.lr"]) + 2.5) ** 2) / 4
    noise = random.Random(number).gauss(0, 0.01)
    return 0.9 + 0.1 * lr_term - 0.02 * values["model.dropout"] + noise


def test_two_sampler_seeds_name_the_same_top_hyperparameter():
    # the ranking is fANOVA's (the table's order); PED-ANOVA is reported beside it
    tops = []
    for seed in (1, 2):
        result = importance(_study(_accuracy_like, seed), "val.accuracy", seed=seed)
        assert result is not None
        tops.append(result.params[0].name)
        assert result.params[0].fanova > 0.5
        assert sum(p.ped_anova for p in result.params) == pytest.approx(1.0)
    assert tops == ["train.optimizer.lr", "train.optimizer.lr"]


def test_a_metric_of_one_parameter_alone_gives_it_all_the_variance():
    # the oracle: with no other effect and no noise, fANOVA's main effect of the one
    # parameter is the whole variance, and every other parameter explains none of it
    result = importance(_study(lambda v, n: -v["model.dropout"], 0, 40), "val.accuracy")
    assert result is not None
    by_name = {p.name: p for p in result.params}
    assert by_name["model.dropout"].fanova == pytest.approx(1.0, abs=0.05)
    assert sum(p.fanova for p in result.params if p.name != "model.dropout") < 0.05
    assert re.match(r"on this data, dropout explains 9\d% of the variance", result.sentence)


def test_importance_waits_for_three_finished_trials():
    assert importance(_study(_accuracy_like, 0, 2), "val.accuracy") is None
