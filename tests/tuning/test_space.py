"""Search spaces: the file format, config-key checks with "did you mean", neighbours."""

from pathlib import Path

import optuna
import pytest
import yaml

from gradwise.config import load_config
from gradwise.errors import ConfigError
from gradwise.tuning.space import Param, default_space, load_space, parse_space
from tests.conftest import tiny_config


def _space_file(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("train.optimizer.lrr", "did you mean train.optimizer.lr?"),
        ("train.optimzer.lr", "did you mean train.optimizer?"),
        ("model.dropuot", "did you mean model.dropout?"),
    ],
)
def test_a_typo_in_a_space_key_says_did_you_mean(tmp_path: Path, key: str, meant: str):
    path = _space_file(tmp_path, {key: {"uniform": [0.0, 0.1]}})
    with pytest.raises(ConfigError, match=meant) as err:
        load_space(path, load_config(tiny_config()))
    assert str(path) in str(err.value)


def test_a_range_outside_the_config_limits_is_refused_before_any_trial(tmp_path: Path):
    path = _space_file(tmp_path, {"model.dropout": {"uniform": [0.0, 1.0]}})
    with pytest.raises(ConfigError, match="model.dropout: Input should be less than 1"):
        load_space(path, load_config(tiny_config()))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"log_uniform": [0.0, 0.1]}, "needs low > 0"),
        ({"uniform": [0.5, 0.1]}, "needs low < high"),
        ({"int": [1.5, 3]}, "whole numbers"),
        ({"choice": []}, "non-empty list"),
        ({"normal": [0, 1]}, "must be one of"),
        ({"uniform": [0.0, 0.1], "int": [1, 2]}, "must be one of"),
    ],
)
def test_malformed_specs_say_what_is_wrong(spec: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_space({"model.dropout": spec}, "space.yaml")


def test_list_keys_search_depth_and_one_width():
    space = parse_space({"model.hidden": {"layers": [1, 3], "width": [16, 64]}}, "s")
    assert [p.name for p in space.optuna_params] == ["model.hidden.layers", "model.hidden.width"]
    assert space.param("model.hidden.width").kind == "log_int"
    assert space.overrides({"model.hidden.layers": 2, "model.hidden.width": 48}) == {
        "model.hidden": [48, 48]
    }


def test_plain_values_are_fixed_for_every_trial_and_choices_of_lists_round_trip():
    space = parse_space({"train.epochs": 3, "model.hidden": {"choice": [[16], [32, 32]]}}, "s")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = space.suggest(study.ask())
    assert values["model.hidden"] in ([16], [32, 32])
    assert space.overrides(values) == {"train.epochs": 3, "model.hidden": values["model.hidden"]}
    assert parse_space(space.to_dict(), "s") == space  # what a study stores reads back


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        (Param("lr", "log_uniform", 1e-4, 1e-2), 1e-3, [("/2", 5e-4), ("x2", 2e-3)]),
        (Param("lr", "log_uniform", 1e-4, 1e-2), 8e-3, [("/2", 4e-3), ("x2 (range end)", 1e-2)]),
        (Param("lr", "log_uniform", 1e-4, 1e-2), 1e-2, [("/2", 5e-3)]),
        (Param("dropout", "uniform", 0.0, 0.5), 0.2, [("-0.05", 0.15), ("+0.05", 0.25)]),
        (Param("warmup", "int", 0, 200), 0, [("+20", 20)]),
        (Param("layers", "int", 1, 3), 2, [("-1", 1), ("+1", 3)]),
        (Param("width", "log_int", 32, 512), 100, [("/2", 50), ("x2", 200)]),
        (Param("bs", "choice", choices=(32, 64, 128)), 32, [("next", 64)]),
        (Param("bs", "choice", choices=(32, 64, 128)), 64, [("previous", 32), ("next", 128)]),
    ],
)
def test_neighbours_are_one_stated_step_either_side_inside_the_range(param, value, expected):
    found = param.neighbours(value)
    assert [label for label, _ in found] == [label for label, _ in expected]
    assert [v for _, v in found] == pytest.approx([v for _, v in expected])


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "mlp"},
        {"arch": "cnn"},
        {"arch": "lstm"},
        {"arch": "gpt"},
        {"arch": "vit"},
        {"arch": "bert"},
        {"arch": "seq2seq"},
        {"arch": "diffusion"},
        {"arch": "hf_encoder"},
    ],
)
def test_every_architecture_has_a_default_space_of_valid_config_keys(model: dict):
    cfg = load_config({**tiny_config(), "model": model})
    space = default_space(cfg)
    names = [p.name for p in space.optuna_params]
    assert "train.optimizer.lr" in names and space.param("train.optimizer.lr").is_log
    space.check(cfg, "the default space")  # raises on an unknown key or invalid bound
