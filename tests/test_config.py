from pathlib import Path

import pytest
from pydantic import ValidationError

from gradwise.config import CNNConfig, Config, dump_config, load_config, parse_overrides
from gradwise.errors import ConfigError


def test_defaults_are_all_written_out():
    text = dump_config(load_config({}))
    for key in ("epochs:", "batch_size:", "warmup_steps:", "label_smoothing:", "restore_best:"):
        assert key in text
    assert load_config(dump_config_dict(text)) == load_config({})


def dump_config_dict(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def test_unknown_key_suggests_the_closest_nested_key():
    with pytest.raises(
        ConfigError, match=r"unknown key train.lr_rate .*did you mean train.optimizer.lr\?"
    ):
        load_config({"train": {"lr_rate": 0.1}})


def test_unknown_key_in_the_chosen_architecture():
    with pytest.raises(ConfigError, match=r"model.chanels.*did you mean model.channels\?"):
        load_config({"model": {"arch": "cnn", "chanels": [8]}})


def test_wrong_type_names_the_key_and_the_value():
    with pytest.raises(ConfigError, match=r"train.epochs: .*integer.*'ten'"):
        load_config({"train": {"epochs": "ten"}})


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(ConfigError, match=r"model.arch: 'transformer' is not one of .*'mlp'"):
        load_config({"model": {"arch": "transformer"}})


def test_set_overrides_parse_yaml_values_and_scientific_floats():
    cfg = load_config({}, ["train.optimizer.lr=3e-4", "model.hidden=[16, 8]", "train.compile=true"])
    assert cfg.train.optimizer.lr == pytest.approx(3e-4)
    assert cfg.model.hidden == [16, 8]
    assert cfg.train.compile is True


def test_set_override_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.epochs"])


def test_a_model_section_without_arch_names_the_missing_key_and_its_choices():
    with pytest.raises(ConfigError, match="model.arch is missing; choose one of mlp, cnn, rnn"):
        load_config({"model": {"channels": [8]}})
    assert isinstance(load_config({"model": {"arch": "cnn"}}).model, CNNConfig)
    assert load_config({}).model.arch == "mlp"  # no model section: the default MLP


def test_data_keys_of_another_source_kind_are_rejected():
    with pytest.raises(ConfigError, match="data.window does not apply to a csv: source"):
        load_config({"data": {"source": "csv:t.csv", "target": "y", "window": 12}})
    with pytest.raises(ConfigError, match="data.image_size does not apply to a builtin: source"):
        load_config({"data": {"source": "builtin:digits", "image_size": 16}})


def test_validator_messages_carry_no_pydantic_prefix():
    with pytest.raises(ConfigError) as err:
        load_config({"model": {"arch": "gpt", "d_model": 30, "n_head": 4}})
    assert str(err.value).startswith("model.d_model (30) must be divisible by model.n_head (4)")


def test_grad_clip_zero_turns_clipping_off():
    assert load_config({"train": {"grad_clip": 0}}).train.grad_clip == 0


def test_missing_and_invalid_yaml_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="nesterov"):
        load_config({"train": {"optimizer": {"name": "adam", "nesterov": True}}})
    with pytest.raises(ConfigError, match="leaves almost nothing"):
        load_config({"data": {"split": {"val": 0.5, "test": 0.5}}})


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_csv_separator_is_one_character_and_a_written_tab_escape_means_tab():
    csv = {"source": "csv:t.csv", "target": "y"}
    assert load_config({"data": {**csv, "separator": "\t"}}).data.separator == "\t"
    assert load_config({"data": csv}, ["data.separator=\\t"]).data.separator == "\t"
    assert load_config({}).data.separator is None
    with pytest.raises(ConfigError, match=r"data.separator: .*at most 1 character.*';;'"):
        load_config({"data": {**csv, "separator": ";;"}})
    with pytest.raises(ConfigError, match=r"data.quoting: .*'minimal' or 'none'"):
        load_config({"data": {**csv, "quoting": "all"}})


def test_the_config_names_where_the_work_runs_and_a_flag_overrides_it():
    from gradwise.api import _where

    cfg = load_config({"backend": "ray", "address": "10.0.0.1:6379"})
    assert _where(None, None, cfg) == ("ray", "10.0.0.1:6379")
    assert _where("local", None, cfg)[0] == "local"
    assert _where(None, "auto", cfg) == ("ray", "auto")
    assert _where(None, None, load_config({})) == ("local", None)
    with pytest.raises(ConfigError, match="backend"):
        load_config({"backend": "spark"})
