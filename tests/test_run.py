"""The Python contract: train, load, predict on raw data, metrics; the run directory layout."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_digits, load_iris

import gradwise
from gradwise.data.readers import load_labelled
from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError
from tests.conftest import tiny_config


def test_run_directory_matches_the_design(tmp_path: Path):
    gradwise.train(tiny_config(), out=tmp_path / "r")
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {
        "config.yaml",
        "model.safetensors",
        "model.json",
        "checkpoints",
        "metrics.jsonl",
        "metrics.json",
        "train.log",
    } <= names
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert {"train", "val", "test", "best_epoch", "epochs", "wall_s"} <= summary.keys()
    assert 0 <= summary["test"]["accuracy"] <= 1
    resolved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert resolved["train"]["optimizer"]["betas"] == [0.9, 0.999]  # defaults written out


def test_loaded_run_predicts_exactly_as_the_trained_one(tmp_path: Path):
    run = gradwise.train(tiny_config(), out=tmp_path / "r", **{"train.epochs": 3})
    again = gradwise.load(tmp_path / "r")
    images = load_digits().images[:50]  # raw pixels 0..16, as a user holds them
    np.testing.assert_allclose(again.predict_proba(images), run.predict_proba(images), rtol=1e-6)
    assert again.predict(images).dtype.kind in "iu"
    flat = load_digits().data[:50]  # (N, 64) works too
    np.testing.assert_array_equal(again.predict(flat), again.predict(images))


def test_predict_matches_evaluation_on_raw_new_rows(tmp_path: Path):
    cfg = tiny_config(
        data={"source": "builtin:iris"}, train={"epochs": 30, "optimizer": {"lr": 1e-2}}
    )
    run = gradwise.load(gradwise.train(cfg, out=tmp_path / "r").path)
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    labels = np.asarray(load_iris().target_names)[load_iris().target]
    pred = run.predict(frame)
    assert set(pred) <= set(labels)
    assert (pred == labels).mean() > 0.85
    proba = run.predict_proba(frame.to_numpy())  # plain arrays in training column order
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert run.schema.classes == sorted(set(labels))


def test_tabular_run_evaluate_matches_the_summary(tmp_path: Path):
    run = gradwise.train(tiny_config(data={"source": "builtin:wine"}), out=tmp_path / "r")
    assert gradwise.load(run.path).evaluate("test") == pytest.approx(run.metrics["test"], rel=1e-5)


def test_csv_with_categories_end_to_end(tmp_path: Path):
    rng = np.random.default_rng(0)
    n = 400
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    label = np.where((color == "red") ^ (size > 0.5), "yes", "no")
    frame = pd.DataFrame({"id": range(n), "color": color, "size": size, "label": label})
    frame.loc[::17, "size"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    for encoding in ("onehot", "embed"):
        cfg = tiny_config(
            data={
                "source": f"csv:{tmp_path / 't.csv'}",
                "target": "label",
                "drop": ["id"],
                "categorical": encoding,
            },
            train={"epochs": 40, "optimizer": {"lr": 1e-2}},
        )
        run = gradwise.train(cfg, out=tmp_path / encoding)
        assert run.metrics["test"]["accuracy"] > 0.8
        assert "imputed" in (tmp_path / encoding / "train.log").read_text()
        new = pd.DataFrame({"color": ["red", "purple"], "size": [1.0, None]})
        assert list(gradwise.load(run.path).predict(new)) in (
            ["no", "yes"],
            ["no", "no"],
            ["yes", "yes"],
            ["yes", "no"],
        )


def test_regression_predictions_are_in_target_units(tmp_path: Path):
    cfg = tiny_config(
        data={"source": "builtin:diabetes"}, train={"epochs": 30, "optimizer": {"lr": 1e-2}}
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    pred = run.predict(frame.drop(columns="target"))
    assert pred.shape == (len(frame),)
    assert 50 < pred.mean() < 250  # targets average ~152; standardised outputs would be ~0
    with pytest.raises(GradwiseError, match="needs a classifier"):
        run.predict_proba(frame)


def test_wrong_input_shape_is_a_clear_error(tmp_path: Path):
    run = gradwise.train(tiny_config(), out=tmp_path / "r")
    with pytest.raises(DataError, match="trained on"):
        run.predict(np.zeros((3, 5, 5)))


def test_loading_a_missing_or_unfinished_run(tmp_path: Path):
    with pytest.raises(NotTrainedError, match="not found"):
        gradwise.load(tmp_path / "none")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("name: x\n")
    with pytest.raises(NotTrainedError, match="not a finished run"):
        gradwise.load(tmp_path / "half")


def test_damaged_weights_file_is_refused_without_unpickling(tmp_path: Path):
    gradwise.train(tiny_config(), out=tmp_path / "r")
    (tmp_path / "r" / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(DataError, match="not a readable safetensors"):
        gradwise.load(tmp_path / "r")


def test_default_run_directory_never_reuses_a_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = gradwise.train(tiny_config(train={"epochs": 1}))
    b = gradwise.train(tiny_config(train={"epochs": 1}))
    assert (a.path, b.path) == (Path("runs/tiny"), Path("runs/tiny-2"))


def test_language_model_generates_from_a_prompt(tmp_path: Path):
    text = "the cat sat on the mat. " * 200
    (tmp_path / "c.txt").write_text(text)
    cfg = tiny_config(
        data={"source": f"text:{tmp_path / 'c.txt'}", "block_size": 16},
        model={"arch": "gru", "hidden": 64, "embed_dim": 16},
        train={"epochs": 15, "optimizer": {"lr": 1e-2}, "batch_size": 32},
    )
    run = gradwise.train(cfg, out=tmp_path / "lm")
    assert run.metrics["test"]["perplexity"] < 3.0  # a uniform guess over 10 chars gives 10
    out = gradwise.load(run.path).generate("the cat ", 16, temperature=0)
    assert out.startswith("sat on the mat")


def test_forecasting_from_a_time_series_csv(tmp_path: Path):
    t = np.arange(600)
    frame = pd.DataFrame({"day": t, "load": 10 + 3 * np.sin(2 * np.pi * t / 24)})
    frame.to_csv(tmp_path / "s.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"timeseries:{tmp_path / 's.csv'}",
            "target": "load",
            "window": 24,
            "horizon": 3,
        },
        model={"arch": "lstm", "hidden": 32},
        train={"epochs": 30, "optimizer": {"lr": 1e-2}},
    )
    run = gradwise.train(cfg, out=tmp_path / "ts")
    assert run.metrics["test"]["rmse"] < 0.5  # the series swings by +-3
    future = run.predict(frame.iloc[-24:])
    assert future.shape == (1, 3)
    expected = 10 + 3 * np.sin(2 * np.pi * np.arange(600, 603) / 24)
    np.testing.assert_allclose(future[0], expected, atol=0.6)


def test_generate_scores_mark_unsure_spans_from_the_cli(tmp_path: Path):
    from typer.testing import CliRunner

    from gradwise.cli import app

    (tmp_path / "c.txt").write_text("abcabcabd " * 300)
    cfg = tiny_config(
        data={"source": f"text:{tmp_path / 'c.txt'}", "block_size": 16},
        model={"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 32},
        train={"epochs": 20, "optimizer": {"lr": 1e-2}, "batch_size": 16},
    )
    gradwise.train(cfg, out=tmp_path / "lm")
    result = CliRunner().invoke(
        app,
        [
            "generate",
            str(tmp_path / "lm"),
            "--prompt",
            "abc",
            "--tokens",
            "30",
            "--seed",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    payload = json.loads(result.output)
    assert len(payload["tokens"]) == 30
    assert all(0 < t["p"] <= 1 for t in payload["tokens"])
    assert payload["perplexity"] < 5  # the corpus is nearly deterministic
    scored = CliRunner().invoke(
        app,
        [
            "generate",
            str(tmp_path / "lm"),
            "--prompt",
            "abc",
            "--tokens",
            "30",
            "--scores",
            "--threshold",
            "0.99",
        ],
    )
    assert scored.exit_code == 0 and "[[" in scored.output and "perplexity" in scored.output


def test_dataset_of_a_text_run_keeps_the_trained_vocabulary(tmp_path: Path):
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("ab "), 12)) for _ in range(80)]
    labels = ["a" if t.count("a") > t.count("b") else "b" for t in texts]
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    cfg = tiny_config(
        data={"source": f"csv:{path}", "target": "label", "text_column": "text", "block_size": 16},
        model={"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0},
        train={"epochs": 1},
    )
    trained = gradwise.train(cfg, out=tmp_path / "r")
    # new data with characters the run never saw: refitting the tokenizer would renumber the
    # characters and ask the embedding for ids it does not have
    new = tmp_path / "new.csv"
    pd.DataFrame({"text": [t + "xyz" for t in texts], "label": labels}).to_csv(new, index=False)
    run = gradwise.load(tmp_path / "r")
    split = load_labelled(f"csv:{new}", run.schema, run.config.data)
    assert 0 <= run.evaluate(split)["accuracy"] <= 1
    assert int(split.x.max()) < run.schema.tokenizer.vocab_size
    # the training file itself changed: its splits and metrics are no longer the run's
    old_hash = trained.schema.sha256
    new.replace(path)
    with pytest.raises(
        DataError,
        match=f"changed since this run was trained: its sha256 was {old_hash}, it is now "
        "[0-9a-f]{64}",
    ):
        run.dataset()


TINY_DIFFUSION = {"arch": "diffusion", "channels": [8, 16], "timesteps": 50, "sample_steps": 2}


def test_a_diffusion_run_refuses_to_predict_and_points_to_sample(tmp_path: Path):
    cfg = tiny_config(
        data={"source": "builtin:digits", "limit": 300},
        model=TINY_DIFFUSION,
        train={"epochs": 1, "loss": {"name": "mse"}},  # mse: what diffusion trains on anyway
    )
    run = gradwise.load(gradwise.train(cfg, out=tmp_path / "d").path)
    images = load_digits().images[:4]
    for method in (run.logits, run.predict, run.predict_proba):
        with pytest.raises(
            GradwiseError, match=r"diffusion run.*Use Run.sample \(gradwise sample "
        ):
            method(images)
    assert run.sample(2, seed=0).shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ({"name": "bce"}, "train.loss.name bce does not apply to model.arch diffusion"),
        ({"name": "cross_entropy"}, "train.loss.name cross_entropy does not apply"),
        ({"class_weights": "balanced"}, "class_weights do not apply to model.arch diffusion"),
    ],
)
def test_a_diffusion_config_with_another_loss_is_refused_before_reading_data(
    tmp_path: Path, loss, message
):
    cfg = tiny_config(
        data={"source": "csv:/no/such.csv"}, model=TINY_DIFFUSION, train={"loss": loss}
    )
    with pytest.raises(ConfigError, match=message):
        gradwise.train(cfg, out=tmp_path / "d")
