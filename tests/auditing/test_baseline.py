"""The baseline check: classical methods on exactly the run's split, next to the network,
with the noise: tables, SMS text, forecasting."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.baseline import paired_bootstrap_std
from tests.conftest import tiny_config
from tests.shared import need_shared

SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


def test_breast_cancer_reports_logistic_regression_and_boosting_next_to_the_network(tmp_path):
    run = gradwise.train(
        tiny_config(data={"source": "builtin:breast_cancer"}, train={"epochs": 10}),
        out=tmp_path / "r",
    )
    result = run_checks(run, ["baseline"])["baseline"]
    rows = {r["name"]: r for r in result.metrics["baselines"]}
    assert list(rows) == ["logistic regression", "gradient boosting"]
    assert result.metrics["network"] == pytest.approx(run.metrics["test"]["accuracy"])
    # neither draws at random on 364 rows (boosting splits off early-stopping data above 10k)
    assert all(r["deterministic"] and r["seeds"] == 1 for r in rows.values())
    assert result.metrics["noise"] > 0 and result.metrics["noise_network_seeds"] is None
    assert "not measured" in result.settings["noise"] and "noise" in result.summary
    # an independent fit on the same rows: standardised raw columns of the run's own split
    train, test = run.split("train"), run.split("test")
    cols = [c for c in train.raw.columns if c != "target"]
    mean, std = train.raw[cols].mean(), train.raw[cols].std(ddof=0)
    model = LogisticRegression(max_iter=2000).fit((train.raw[cols] - mean) / std, train.y.numpy())
    expected = np.mean(model.predict((test.raw[cols] - mean) / std) == test.y.numpy())
    assert rows["logistic regression"]["mean"] == pytest.approx(expected, abs=1.01 / len(test))
    assert result.verdict in ("pass", "warn", "fail")
    margin, noise = result.metrics["margin"], result.metrics["noise"]
    assert result.verdict == (
        "pass" if margin > 2 * noise else "fail" if margin < -2 * noise else "warn"
    )


def test_a_rare_class_makes_auto_compare_macro_f1_not_accuracy(tmp_path):
    g = np.random.default_rng(0)
    x = g.normal(size=(600, 4))
    y = (x[:, 0] + 0.3 * g.normal(size=600) > 1.7).astype(int)  # about 5% positives
    assert 0.02 < y.mean() < 0.1
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(4)}, "y": y}).to_csv(
        tmp_path / "rare.csv", index=False
    )
    cfg = tiny_config(
        data={"source": f"csv:{tmp_path / 'rare.csv'}", "target": "y"}, train={"epochs": 5}
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["baseline"])["baseline"]
    assert result.metrics["metric"] == "f1_macro"
    assert result.metrics["network"] == pytest.approx(run.metrics["test"]["f1_macro"])
    assert "accuracy would reward ignoring it" in result.settings["metric"]
    # ten balanced classes of about 10% each are not rare: digits compare accuracy
    digits = gradwise.train(tiny_config(train={"epochs": 2}), out=tmp_path / "digits")
    assert run_checks(digits, ["baseline"])["baseline"].metrics["metric"] == "accuracy"


def test_sms_messages_get_a_tf_idf_baseline(tmp_path):
    sms = need_shared("sms_spam", "SMSSpamCollection")
    assert hashlib.sha256(sms.read_bytes()).hexdigest() == SMS_SHA256
    lines = sms.read_text(encoding="utf-8").splitlines()[:600]
    rows = [line.split("\t", 1) for line in lines]
    csv = tmp_path / "sms.csv"
    pd.DataFrame(rows, columns=["label", "text"]).to_csv(csv, index=False)
    cfg = {
        "name": "sms",
        "data": {
            "source": f"csv:{csv}",
            "target": "label",
            "text_column": "text",
            "tokenizer": "char",
            "block_size": 48,
        },
        "model": {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 32, "optimizer": {"lr": 3e-3}},
        "audit": {"baseline": {"metric": "f1_macro"}},
    }
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["baseline"])["baseline"]
    (row,) = result.metrics["baselines"]
    assert row["name"] == "tf-idf + logistic regression"
    assert result.metrics["metric"] == "f1_macro"
    assert row["mean"] > 0.8  # words give spam away
    assert result.metrics["network"] == pytest.approx(run.metrics["test"]["f1_macro"], abs=1e-6)
    assert result.metrics["noise"] > 0
    assert "text" in result.metrics["features"]


def test_a_forecast_is_compared_with_last_value_seasonal_naive_and_ridge_on_lags(tmp_path):
    airline = need_shared("airline_passengers", "airline-passengers.csv")
    cfg = tiny_config(
        data={
            "source": f"timeseries:{airline}",
            "target": "Passengers",
            "window": 12,
            "horizon": 3,
        },
        model={"hidden": [16]},
        train={"epochs": 20, "batch_size": 16},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["baseline"])["baseline"]
    rows = {r["name"]: r for r in result.metrics["baselines"]}
    assert list(rows) == ["last value", "seasonal naive (12)", "ridge on lags"]
    assert "season 12, inferred" in result.metrics["season"]
    # the last value, by hand: each test window's last month repeated over the horizon
    series = pd.read_csv(airline)["Passengers"].to_numpy(dtype=float)
    test = run.split("test")
    first = test.rows + 12  # row of each window's first target month
    truth = np.stack([series[first + k] for k in range(3)], 1)
    last = series[first - 1][:, None]
    assert rows["last value"]["mean"] == pytest.approx(np.sqrt(np.mean((truth - last) ** 2)))
    seasonal = np.stack([series[first + k - 12] for k in range(3)], 1)
    expected = np.sqrt(np.mean((truth - seasonal) ** 2))
    assert rows["seasonal naive (12)"]["mean"] == pytest.approx(expected)
    assert result.metrics["network"] == pytest.approx(run.metrics["test"]["rmse"], rel=1e-5)


def test_the_paired_bootstrap_sees_no_noise_between_identical_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.8, y, 1 - y)
    assert paired_bootstrap_std("accuracy", a, a, y, 200, 0) == 0.0
    b = np.where(rng.random(200) < 0.8, y, 1 - y)
    # two independent 80% classifiers: the difference's std is near sqrt(2 * 0.16 / 200)
    assert paired_bootstrap_std("accuracy", a, b, y, 500, 0) == pytest.approx(0.04, rel=0.35)


def test_a_language_model_meets_unigram_and_bigram_baselines_on_its_own_tokens(tmp_path):
    from collections import Counter

    rng = np.random.default_rng(0)
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(rng.choice(["the cat sat", "on the mat", "a dog ran"], 400)))
    cfg = {
        "name": "lm",
        "data": {"source": f"text:{corpus}", "tokenizer": "char", "block_size": 16},
        "model": {"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 16},
        "train": {"epochs": 1, "batch_size": 32},
    }
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["baseline"])["baseline"]
    rows = {r["name"]: r["mean"] for r in result.metrics["baselines"]}
    assert list(rows) == ["unigram frequencies", "bigram"] and result.metrics["metric"] == "loss"
    assert result.metrics["network"] == pytest.approx(run.metrics["test"]["loss"], rel=1e-5)
    # the bigram by hand, from the training windows' (previous, next) token pairs
    lam, vocab = result.metrics["bigram_lambda"], run.schema.n_outputs
    pairs = lambda s: [  # noqa: E731
        (int(a), int(b)) for xs, ys in zip(s.x, s.y) for a, b in zip(xs, ys) if b != -100
    ]
    train = pairs(run.split("train"))
    pair_count, prev_count = Counter(train), Counter(a for a, _ in train)
    next_count = Counter(b for _, b in train)
    nll = []
    for a, b in pairs(run.split("test")):
        uni = (next_count[b] + 1) / (len(train) + vocab)
        if prev_count[a]:
            nll.append(-np.log(lam * pair_count[(a, b)] / prev_count[a] + (1 - lam) * uni))
        else:
            nll.append(-np.log(uni))
    assert rows["bigram"] == pytest.approx(np.mean(nll), rel=1e-9)
    assert rows["bigram"] < rows["unigram frequencies"]  # the previous letter tells a lot
