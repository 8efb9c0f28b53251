"""The command line: output, exit codes (0, 2 for bad input, never a traceback), --help."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from gradwise.cli import app
from tests.conftest import tiny_config

runner = CliRunner()


def _write(tmp_path: Path, cfg: dict, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _bad(args: list[str], message: str):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    return result


def test_train_prints_test_metrics_and_the_run_directory(tmp_path: Path):
    config = _write(tmp_path, tiny_config())
    out = _ok(["train", config, "--out", str(tmp_path / "r"), "--set", "train.epochs=1", "-q"])
    assert "accuracy" in out.output and "test" in out.output
    assert f"run directory: {tmp_path / 'r'}" in out.output.replace("\n", "")


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"train": {"lr_rate": 1}}, "did you mean train.optimizer.lr?"),
        ({"data": {"source": "csv:/no/such.csv", "target": "y"}}, "/no/such.csv not found"),
        ({"data": {"source": "pickle:x"}}, "must be KIND:LOCATION"),
        ({"data": {"source": "builtin:iris", "target": "species"}}, "'species' not found"),
        ({"data": {"source": "builtin:digits", "target": "label"}}, "does not apply to builtin"),
        ({"data": {"source": "builtin:iris", "target": "petal width (cm)"}}, None),
        ({"model": {"arch": "cnn"}, "data": {"source": "builtin:iris"}}, "needs images"),
    ],
)
def test_bad_config_or_data_exits_2_with_one_message(tmp_path: Path, cfg, message):
    config = _write(tmp_path, {**tiny_config(), **cfg})
    result = runner.invoke(app, ["train", config, "--out", str(tmp_path / "r"), "-q"])
    if message is None:  # a built-in table predicts the column data.target names
        assert result.exit_code == 0, result.output
        assert "rmse" in result.output  # petal width: a regression
        return
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_nan_in_the_target_and_images_missing(tmp_path: Path):
    pd.DataFrame({"a": [1, 2, 3, 4], "y": [1.0, None, 0.0, 1.0]}).to_csv(tmp_path / "t.csv")
    config = _write(
        tmp_path, tiny_config(data={"source": f"csv:{tmp_path / 't.csv'}", "target": "y"})
    )
    _bad(["train", config, "-q", "--out", str(tmp_path / "r")], "missing values")
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    config = _write(tmp_path, tiny_config(data={"source": f"images:{tmp_path / 'imgs'}"}))
    _bad(["train", config, "-q", "--out", str(tmp_path / "r2")], "No images found")


def test_missing_config_file_and_unfinished_runs(tmp_path: Path):
    _bad(["train", str(tmp_path / "none.yaml")], "not found")
    _bad(["evaluate", str(tmp_path / "norun")], "not found")
    _bad(["predict", str(tmp_path / "norun"), "x.csv"], "not found")


def test_evaluate_predict_and_generate_refusal(tmp_path: Path):
    config = _write(tmp_path, tiny_config())
    _ok(["train", config, "--out", str(tmp_path / "r"), "-q"])
    out = _ok(["evaluate", str(tmp_path / "r")])
    assert "f1_macro" in out.output
    np.savez(tmp_path / "new.npz", X=load_digits().images[:7])
    _ok(
        [
            "predict",
            str(tmp_path / "r"),
            str(tmp_path / "new.npz"),
            "--out",
            str(tmp_path / "p.csv"),
        ]
    )
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 7
    assert list(pred.columns[:3]) == ["prediction", "p_0", "p_1"]
    np.testing.assert_allclose(pred.filter(like="p_").sum(axis=1), 1, atol=1e-4)
    _bad(["generate", str(tmp_path / "r")], "needs a language model")
    _bad(["predict", str(tmp_path / "r"), str(tmp_path / "nothing.csv")], "not found")


def test_evaluate_on_new_labelled_data(tmp_path: Path):
    config = _write(tmp_path, tiny_config())
    _ok(["train", config, "--out", str(tmp_path / "r"), "-q"])
    d = load_digits()
    np.savez(tmp_path / "more.npz", X=d.images[:100, None], y=d.target[:100])
    out = _ok(["evaluate", str(tmp_path / "r"), "--data", f"npz:{tmp_path / 'more.npz'}"])
    assert "accuracy" in out.output


def test_predict_on_a_diffusion_run_and_a_diffusion_config_with_bce_exit_2(tmp_path: Path):
    model = {"arch": "diffusion", "channels": [8, 16], "timesteps": 50}
    cfg = tiny_config(data={"source": "builtin:digits", "limit": 300}, model=model)
    config = _write(tmp_path, {**cfg, "train": {"epochs": 1}})
    _ok(["train", config, "--out", str(tmp_path / "d"), "-q"])
    np.savez(tmp_path / "new.npz", X=load_digits().images[:3])
    _bad(["predict", str(tmp_path / "d"), str(tmp_path / "new.npz")], "gradwise sample")
    config = _write(tmp_path, {**cfg, "train": {"loss": {"name": "bce"}}}, "bce.yaml")
    _bad(["train", config, "--out", str(tmp_path / "b"), "-q"], "bce does not apply to model")


def test_lr_find_suggests_a_learning_rate_and_plots(tmp_path: Path):
    config = _write(tmp_path, tiny_config())
    out = _ok(["lr-find", config, "--out", str(tmp_path / "lr"), "--steps", "100"])
    assert "suggested learning rate" in out.output
    suggestion = float(out.output.split("suggested learning rate: ")[1].split()[0])
    assert 1e-5 < suggestion < 1.0
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 1000


def test_datasets_lists_the_builtins():
    out = _ok(["datasets"])
    for name in ("digits", "iris", "wine", "breast_cancer", "diabetes"):
        assert name in out.output


@pytest.mark.parametrize(
    "verb", ["train", "lr-find", "evaluate", "predict", "generate", "datasets"]
)
def test_every_verb_has_help(verb):
    assert _ok([verb, "--help"]).output.strip().startswith("Usage: gradwise")
