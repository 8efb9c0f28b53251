"""compare: same splits across seeds, and a verdict that respects seed-to-seed noise."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.evaluate.compare import Arm, _verdict
from tests.conftest import tiny_config


def _arm(name: str, values: list[float]) -> Arm:
    return Arm(name, 1.0, values, [1.0] * len(values), 10)


def test_no_winner_inside_the_noise():
    v = _verdict(_arm("a", [0.90, 0.93, 0.88]), _arm("b", [0.91, 0.89, 0.92]), "test.accuracy")
    assert v.winner is None and "no clear winner" in v.text


def test_a_clear_gap_names_the_winner_and_respects_lower_is_better():
    a, b = _arm("a", [0.80, 0.81, 0.82]), _arm("b", [0.90, 0.91, 0.90])
    assert _verdict(a, b, "test.accuracy").winner == "b"
    assert _verdict(a, b, "test.rmse").winner == "a"
    assert _verdict(_arm("a", [0.8]), _arm("b", [0.9]), "test.accuracy").winner is None


def test_zero_variance_in_both_arms_runs_no_test_and_says_so():
    same = _verdict(_arm("a", [0.9, 0.9, 0.9]), _arm("b", [0.9, 0.9, 0.9]), "test.accuracy")
    assert same.winner is None and same.p_value is None and "no test run" in same.text
    exact = _verdict(_arm("a", [0.8, 0.8]), _arm("b", [0.9, 0.9]), "test.accuracy")
    assert exact.winner == "b" and exact.p_value is None
    assert "no test was run" in exact.text and "p=" not in exact.text


def test_both_configs_see_the_same_splits_and_subsets(tmp_path: Path):
    a = tiny_config(name="narrow", model={"hidden": [8]}, train={"epochs": 1})
    b = tiny_config(name="wide", model={"hidden": [64]}, train={"epochs": 1})
    result = gradwise.compare(a, b, seeds=2, fractions=(0.5,), out=tmp_path)
    assert result.metric == "test.accuracy"
    assert [arm.name for arm in result.arms] == ["narrow", "wide"]
    for seed in (0, 1):
        na = json.loads((tmp_path / "narrow" / "f0.5" / f"s{seed}" / "metrics.json").read_text())
        nb = json.loads((tmp_path / "wide" / "f0.5" / f"s{seed}" / "metrics.json").read_text())
        assert na["n_train"] == nb["n_train"] == 584  # half of 1168
        assert na["n_test"] == nb["n_test"]
    cfg0 = yaml.safe_load((tmp_path / "wide" / "f0.5" / "s1" / "config.yaml").read_text())
    assert cfg0["seed"] == 1 and cfg0["data"]["split"]["seed"] == 0
    assert (tmp_path / "compare.json").is_file()


def test_compare_cli_prints_the_table_and_verdicts(tmp_path: Path):
    for name, hidden in (("a", [8]), ("b", [16])):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump(tiny_config(name=name, model={"hidden": hidden}, train={"epochs": 1}))
        )
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(tmp_path / "a.yaml"),
            str(tmp_path / "b.yaml"),
            "--seeds",
            "2",
            "--metric",
            "test.f1_macro",
            "--out",
            str(tmp_path / "cmp"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test.f1_macro over 2 seeds" in result.output
    assert "fraction 1:" in result.output
    bad = CliRunner().invoke(
        app,
        [
            "compare",
            str(tmp_path / "a.yaml"),
            str(tmp_path / "b.yaml"),
            "--fractions",
            "0,1",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "each must be in (0, 1]" in bad.output


def test_unknown_metric_lists_the_known_ones(tmp_path: Path):
    a = tiny_config(name="a", train={"epochs": 1})
    with pytest.raises(gradwise.ConfigError, match="test.nope is not in the runs' metrics"):
        gradwise.compare(a, a, seeds=1, metric="test.nope", out=tmp_path)
