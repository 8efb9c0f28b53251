"""The scikit-learn estimators: scikit-learn's own estimator checks, GridSearchCV, Pipeline,
cross_val_score, DataFrames, and nothing written to disk."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import gradwise
from gradwise.sklearn import NeuralClassifier, NeuralRegressor

FAST = {"hidden": (16,), "epochs": 15, "batch_size": 16, "lr": 1e-2, "random_state": 0}

# scikit-learn checks that cannot apply, with the reason
EXPECTED_FAILED: dict[str, str] = {}


@parametrize_with_checks(
    [NeuralClassifier(**FAST), NeuralRegressor(**FAST)],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:600], y[:600]


def test_grid_search_over_two_learning_rates_picks_the_better_one(digits):
    x, y = digits
    search = GridSearchCV(NeuralClassifier(**{**FAST, "epochs": 5}), {"lr": [1e-5, 1e-2]}, cv=2)
    search.fit(x, y)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"lr": 1e-2}
    assert scores[1] > scores[0] + 0.3  # 1e-5 barely moves in 5 epochs
    assert search.best_estimator_.score(x, y) > 0.9


def test_pipeline_and_cross_val_score(digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), NeuralClassifier(**FAST))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_parameters_are_config_keys_and_survive_clone(tmp_path: Path):
    clf = NeuralClassifier(hidden=(64, 32), lr=3e-3, dropout=0.2, config={"train.l2": 1e-5})
    cfg = clf.to_config(seed=7)
    assert cfg.model.hidden == [64, 32] and cfg.model.dropout == 0.2
    assert cfg.train.optimizer.lr == 3e-3 and cfg.train.l2 == 1e-5 and cfg.seed == 7
    clf.set_params(lr=1e-2, arch="lstm")
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    lstm = copy.to_config()
    assert (lstm.model.arch, lstm.model.hidden, lstm.model.layers) == ("lstm", 64, 2)
    with pytest.raises(gradwise.ConfigError, match="did you mean train.l2"):
        NeuralClassifier(config={"train.l22": 0.1}).to_config()


def test_dataframes_with_categories_and_gaps_go_through_the_tabular_preprocessing():
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    size[::10] = np.nan
    frame = pd.DataFrame({"colour": colour, "size": size})
    y = np.where(colour == "red", "yes", "no")
    clf = NeuralClassifier(**FAST).fit(frame, y)
    assert list(clf.feature_names_in_) == ["colour", "size"] and clf.n_features_in_ == 2
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.score(frame, y) == 1.0  # the colour alone decides
    assert clf.run_.schema.tabular is not None
    assert list(clf.predict(frame.iloc[:3])) == list(y[:3])


def test_the_regressor_predicts_in_the_target_units():
    x, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=0)
    reg = NeuralRegressor(**{**FAST, "epochs": 30}).fit(x, y * 100 + 5000)
    pred = reg.predict(x)
    assert pred.shape == (300,) and abs(pred.mean() - 5000) < 0.05 * np.abs(y * 100).mean()
    assert reg.score(x, y * 100 + 5000) > 0.9


def test_nothing_is_written_to_disk_unless_a_run_dir_is_given(digits, tmp_path: Path, monkeypatch):
    x, y = digits
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    NeuralClassifier(**{**FAST, "epochs": 2}).fit(x, y)
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"] and not list(scratch.iterdir())

    clf = NeuralClassifier(**{**FAST, "epochs": 2}, run_dir=tmp_path / "run").fit(x, y)
    run = gradwise.load(tmp_path / "run")
    assert np.array_equal(run.predict(x), clf.predict(x))
    assert set(run.metrics) >= {"train", "val"} and "test" not in run.metrics  # no test split
    with pytest.raises(gradwise.DataError, match="arrays held in memory"):
        run.split("train")
