"""Head-only retrains: a text encoder's learning curve and out-of-fold labels fit fresh heads
on frozen embeddings, each number equal to a hand fit; a table model stays on full retrains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.head_retrain import TRADE, retrain_mode
from gradwise.cli import app
from gradwise.data.split import fold_splits
from gradwise.errors import ConfigError
from tests.conftest import tiny_config

GOOD = ["great", "fine", "lovely", "nice", "happy"]
BAD = ["awful", "poor", "sad", "nasty", "grim"]
NEUTRAL = ["the", "a", "day", "film", "food", "it", "was", "so"]


def _texts(n: int, seed: int) -> pd.DataFrame:
    """Short sentences whose label is given away by one good or bad word among neutral ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["pos", "neg"][i % 2]
        words = list(rng.choice(NEUTRAL, size=4)) + [rng.choice(GOOD if label == "pos" else BAD)]
        rows.append((label, " ".join(rng.permutation(words))))
    return pd.DataFrame(rows, columns=["label", "text"])


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    folder = tmp_path_factory.mktemp("head")
    csv = folder / "texts.csv"
    _texts(240, seed=0).to_csv(csv, index=False)
    cfg = {
        "name": "texts",
        "seed": 3,
        "data": {
            "source": f"csv:{csv}",
            "target": "label",
            "text_column": "text",
            "tokenizer": "char",
            "block_size": 40,
        },
        "model": {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 32, "optimizer": {"lr": 3e-3}},
        "audit": {
            "generalisation": {"fractions": [0.25, 0.5, 1.0], "seeds": 1},
            "data_quality": {"folds": 3, "retrain": "head"},
        },
    }
    return gradwise.train(cfg, out=folder / "run")


def _hand_head(x: np.ndarray, y: np.ndarray):  # the oracle: the documented head, by hand
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)


def _embed(run: gradwise.Run, split: str) -> tuple[np.ndarray, np.ndarray]:
    part = run.split(split)
    return run.embed(part.x).numpy().astype(np.float64), part.y.numpy()


def test_an_encoder_learning_curve_fits_heads_that_match_a_hand_fit(encoder):
    result = run_checks(encoder, ["generalisation"])["generalisation"]
    assert result.settings["retrain"] == "auto"
    assert result.settings["retrain_used"] == "head"
    assert result.settings["trade"] == TRADE
    assert TRADE in result.summary
    assert "the encoder was trained on every training row" in result.summary
    curve = result.metrics["learning_curve"]
    assert curve["retrain"] == "head"
    points = {p["fraction"]: p for p in curve["points"]}
    assert sorted(points) == [0.25, 0.5, 1.0]
    assert not any(p["reused"] for p in points.values())  # the run's own point is a head too
    (x, y), (tx, ty) = _embed(encoder, "train"), _embed(encoder, "test")
    assert points[1.0]["n_train"] == len(y)
    whole = (_hand_head(x, y).predict(tx) == ty).mean()
    assert points[1.0]["value"] == pytest.approx(whole)
    half = np.sort(np.random.default_rng(3).choice(len(y), size=round(len(y) / 2), replace=False))
    assert points[0.5]["n_train"] == len(half)
    part = (_hand_head(x[half], y[half]).predict(tx) == ty).mean()
    assert points[0.5]["value"] == pytest.approx(part)


def test_encoder_out_of_fold_labels_come_from_heads_fitted_without_the_fold(encoder):
    result = run_checks(encoder, ["data_quality"])["data_quality"]
    labels = result.metrics["labels"]
    assert labels["retrain_used"] == "head" and labels["epochs_per_fold"] is None
    assert result.settings["retrain_used"] == "head" and result.settings["folds"] == 3
    assert TRADE in result.summary
    x, y = _embed(encoder, "train")
    data = encoder.dataset()
    rows = encoder.split("train").rows
    probs = np.zeros((len(y), 2))
    for keep, held in fold_splits(data.split_rule, data.fold_key, rows, y, 3, seed=3):
        probs[held] = _hand_head(x[keep], y[keep]).predict_proba(x[held])
    assert labels["out_of_fold_accuracy"] == pytest.approx((probs.argmax(axis=1) == y).mean())


def test_a_table_model_stays_on_full_retrains_under_auto(tmp_path: Path):
    cfg = tiny_config(audit={"generalisation": {"learning_curve": False}})
    run = gradwise.train(cfg, out=tmp_path / "digits")
    assert retrain_mode(run, "auto", "audit.generalisation.retrain") == "full"
    result = run_checks(run, ["generalisation"])["generalisation"]
    assert result.settings["retrain_used"] == "full"
    assert "trade" not in result.settings
    assert "head-only" not in result.summary


def test_the_command_line_picks_the_mode_and_refuses_head_on_a_regression(encoder, tmp_path):
    runner = CliRunner()
    args = ["audit", str(encoder.path), "--checks", "generalisation", "--json"]
    result = runner.invoke(app, [*args, "--set", "audit.generalisation.retrain=full"])
    assert result.exit_code == 0, result.output
    assert '"retrain_used": "full"' in result.output
    cfg = tiny_config(
        data={"source": "builtin:diabetes"}, audit={"generalisation": {"learning_curve": False}}
    )
    run = gradwise.train(cfg, out=tmp_path / "values")
    assert retrain_mode(run, "auto", "audit.generalisation.retrain") == "full"
    with pytest.raises(ConfigError, match="set audit.generalisation.retrain=full"):
        retrain_mode(run, "head", "audit.generalisation.retrain")
    head = ["--set", "audit.generalisation.retrain=head"]
    result = runner.invoke(app, ["audit", str(run.path), "--checks", "generalisation", *head])
    assert result.exit_code == 2, result.output
    assert "needs a classification run" in result.output and "Traceback" not in result.output
