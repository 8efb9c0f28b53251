"""The monitor on tables (named and categorical columns), regressions and language models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

import gradwise
import gradwise.serving
from gradwise.run import Run
from tests.serving.conftest import churn_frame


def _serve_rows(run: Run, store: Path, frame: pd.DataFrame, labels=None) -> None:
    rows = frame[run.schema.tabular.columns].astype(object).where(frame.notna(), None)
    records = rows.to_dict(orient="records")
    with TestClient(gradwise.serving.app(run, store=str(store), flush_interval_s=0.05)) as c:
        for a in range(0, len(records), 20):
            r = c.post("/v1/predict", json={"instances": records[a : a + 20]})
            assert r.status_code == 200, r.text
            if labels is not None:
                fed = {"request_id": r.json()["request_id"], "labels": labels[a : a + 20]}
                assert c.post("/v1/feedback", json=fed).status_code == 202


def test_a_table_drifts_in_its_named_columns(table_run: Run, tmp_path: Path):
    clean = churn_frame(200, seed=1)
    shifted = churn_frame(200, seed=2)
    shifted["age"] += 25  # an older clientele
    shifted["city"] = "Marseille"  # a city training never saw
    store = tmp_path / "p.sqlite"
    _serve_rows(table_run, store, pd.concat([clean, shifted]), None)
    report = gradwise.monitor(table_run, store=str(store), window=100)
    first, last = report.windows[0], report.windows[-1]
    assert not first.alerts
    assert last.drifted and {"age", "city"} <= set(last.most_drifted)
    assert (
        report.retrain is not None
        and report.retrain.file.endswith("retrain-unlabelled.csv") is False
    )
    kept = pd.read_csv(report.retrain.file)
    assert len(kept) == 0 and list(kept.columns)[-1] == "churn"  # no labels arrived yet
    unlabelled = pd.read_csv(Path(report.retrain.file).parent / "retrain-unlabelled.csv")
    assert len(unlabelled) == 200 and set(unlabelled["city"]) == {"Marseille"}


def test_a_regression_is_judged_by_its_predictions_and_rmse(regression_run: Run, tmp_path: Path):
    test = regression_run.split("test").raw
    store = tmp_path / "p.sqlite"
    labels = test["target"].tolist()
    _serve_rows(regression_run, store, test, labels)
    report = gradwise.monitor(regression_run, store=str(store), window=40)
    w = report.windows[0]
    assert w.mean_confidence is None and w.accuracy is None  # no probabilities to estimate from
    pred = regression_run.predict(test.iloc[:40])
    expected = float(np.sqrt(np.mean((pred - np.asarray(labels[:40])) ** 2)))
    assert w.rmse is not None and abs(w.rmse - expected) < 1e-3 * expected
    assert w.output_drift is not None and "ks" in w.output_drift["detectors"]


def test_a_language_model_is_counted_and_its_token_confidence_followed(lm_run: Run, tmp_path: Path):
    store = tmp_path / "p.sqlite"
    with TestClient(gradwise.serving.app(lm_run, store=str(store), flush_interval_s=0.05)) as c:
        for seed in range(12):
            body = {"prompt": "abc", "tokens": 4, "seed": seed, "stream": False}
            assert c.post("/v1/generate", json=body).status_code == 200
    report = gradwise.monitor(lm_run, store=str(store), window=10)
    assert report.served == 12 and report.windows[0].n == 10
    assert 0 < report.windows[0].mean_confidence <= 1 and report.windows[0].raw_drift is None
