"""The HTTP app in-process: answers against the run's own predictions, 4xx for bad input."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.datasets import load_digits

import gradwise
import gradwise.serving
from gradwise.errors import ConfigError
from gradwise.run import Run
from tests.serving.conftest import copy_run

DIGITS = load_digits()


def pixels(i: int) -> list:
    return DIGITS.images[i].tolist()  # (8, 8), values 0-16


def client(run: Run, **options) -> TestClient:
    options.setdefault("store", "off")
    return TestClient(gradwise.serving.app(run, **options))


def test_predictions_match_the_runs_own_and_carry_version_and_request_id(digits_run: Run):
    with client(digits_run) as c:
        r = c.post("/v1/predict", json={"instances": [{"pixels": pixels(i)} for i in range(5)]})
    assert r.status_code == 200
    body = r.json()
    expected = digits_run.predict_proba(DIGITS.images[:5][:, None])
    got = np.array([[p["probabilities"][str(k)] for k in range(10)] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [p["prediction"] for p in body["predictions"]] == list(expected.argmax(axis=1))
    assert [p["confidence"] for p in body["predictions"]] == pytest.approx(expected.max(axis=1))
    assert body["model_version"].startswith("tiny@") and len(body["request_id"]) == 32
    assert r.headers["x-request-id"] == body["request_id"]


def test_probabilities_are_temperature_scaled_and_the_version_follows(
    digits_run: Run, tmp_path: Path
):
    run = copy_run(digits_run, tmp_path / "run")
    before = gradwise.serving.app(run, store="off").version
    run.set_temperature(3.0)
    with client(run) as c:
        body = c.post("/v1/predict", json={"instances": [{"pixels": pixels(0)}]}).json()
    served = np.array([body["predictions"][0]["probabilities"][str(k)] for k in range(10)])
    x = DIGITS.images[:1][:, None]
    np.testing.assert_allclose(served, run.predict_proba(x)[0], atol=1e-6)
    raw = run.probabilities(run.logits(x), calibrated=False)[0]
    assert served.max() < raw.max()  # T = 3 flattens the distribution
    assert body["model_version"] != before


def test_png_and_grayscale_arrays_give_the_same_answer_as_pixels(digits_run: Run):
    img = DIGITS.images[7]
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).save(buf, format="PNG")
    png = base64.b64encode(buf.getvalue()).decode()
    with client(digits_run) as c:
        r = c.post(
            "/v1/predict",
            json={
                "instances": [{"pixels": img.tolist()}, {"pixels": [img.tolist()]}, {"png": png}]
            },
        )
    probs = [
        np.array([p["probabilities"][str(k)] for k in range(10)]) for p in r.json()["predictions"]
    ]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-7)
    np.testing.assert_allclose(probs[0], probs[2], atol=0.02)  # PNG rounds pixels to 1/255


def test_openapi_names_the_features_and_their_types(table_run: Run):
    with client(table_run) as c:
        schema = c.get("/openapi.json").json()
    props = schema["components"]["schemas"]["Instance"]["properties"]
    assert set(props) == {"age", "monthly income", "city"}
    assert {t["type"] for t in props["age"]["anyOf"]} == {"number", "null"}
    assert {t["type"] for t in props["city"]["anyOf"]} == {"string", "null"}
    assert schema["components"]["schemas"]["Instance"]["additionalProperties"] is True  # ignored


def test_named_records_predict_as_the_run_does_with_missing_values_imputed(table_run: Run):
    rows = [
        {"age": 70.0, "monthly income": 40.0, "city": "Paris"},
        {"age": 20.0, "monthly income": None, "city": "Lyon"},
        {"age": 45, "monthly income": 55.5, "city": "Somewhere new"},
    ]
    with client(table_run) as c:
        body = c.post("/v1/predict", json={"instances": rows}).json()
    frame = pd.DataFrame(rows).astype({"monthly income": float})
    expected = table_run.predict_proba(frame)
    classes = [str(k) for k in table_run.schema.classes]
    got = np.array([[p["probabilities"][k] for k in classes] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)


GOOD_ROW = {"age": 30.0, "monthly income": 40.0, "city": "Paris"}


@pytest.mark.parametrize(
    ("instances", "field", "reason"),
    [
        ([{"age": 30.0, "city": "Paris"}], "instances.0.monthly income", "Field required"),
        ([{**GOOD_ROW, "age": "thirty"}], "instances.0.age", "valid number"),
        ([{**GOOD_ROW, "age": True}], "instances.0.age", "valid number"),
        ([{**GOOD_ROW, "city": ["Paris"]}], "instances.0.city", "valid string"),
        ([], "instances", "at least 1"),
        ([GOOD_ROW, "a row"], "instances.1", "an object"),
    ],
)
def test_bad_records_get_422_with_the_field_and_the_reason(
    table_run: Run, instances, field, reason
):
    with client(table_run) as c:
        r = c.post("/v1/predict", json={"instances": instances})
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert any(d["field"] == field and reason in d["reason"] for d in detail), detail
        assert c.post("/v1/predict", json={"instances": [GOOD_ROW]}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b'{"instances": [{"pixels": [[NaN]]}]}', "instances.0.pixels.0.0.0", "finite"),
        (b'{"instances": [{"pixels": [[1, 2], [3, 4]]}]}', "instances.0.pixels.0.0", "at least 8"),
        (
            b'{"instances": [{"pixels": [[[1, 2, 3, 4, 5, 6, 7, 8]]]}]}',
            "instances.0.pixels.0",
            "at least 8",
        ),
        (b'{"instances": [{"pixels": [[1, 2], [3]]}]}', "instances.0.pixels.0.0", "at least 8"),
        (b'{"instances": [{"png": "not base64!"}]}', "instances.0.png", "base64"),
        (b'{"instances": [{"png": "aGVsbG8="}]}', "instances.0.png", "readable image"),
        (b'{"instances": [{}]}', "instances.0", "exactly one of pixels or png"),
        (b'{"instances": [', "body", "not valid JSON"),
        (b"[1, 2]", "body", "an object"),
        (b'{"rows": []}', "instances", "Field required"),
    ],
)
def test_bad_images_and_bodies_get_422_never_500(digits_run: Run, body, field, reason):
    with client(digits_run) as c:
        r = c.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["field"] == field and reason in d["reason"] for d in detail), detail


def test_values_beyond_float32_are_refused_and_the_server_answers_on(
    digits_run: Run, table_run: Run
):
    with client(digits_run) as c:
        huge = np.full((8, 8), 1e300).tolist()  # a valid JSON number, beyond float32
        r = c.post("/v1/predict", json={"instances": [{"pixels": huge}]})
        assert r.status_code == 422 and "float32 range" in r.json()["error"]
        assert c.post("/v1/predict", json={"instances": [{"pixels": pixels(0)}]}).status_code == 200
    with client(table_run) as c:
        r = c.post("/v1/predict", json={"instances": [{**GOOD_ROW, "age": 1e300}]})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "instances.0.age"
        assert c.post("/v1/predict", json={"instances": [GOOD_ROW]}).status_code == 200


def test_a_non_finite_model_output_fails_its_own_request_only(digits_run: Run, monkeypatch):
    import torch

    class Overflowing(torch.nn.Module):  # what a model far outside its training range can do
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, x):
            out = self.inner(x)
            out[(x.reshape(len(x), -1) > 100).any(dim=1)] = float("inf")
            return out

    monkeypatch.setattr(digits_run, "model", Overflowing(digits_run.model).eval())
    edge = np.full((8, 8), 1000.0).tolist()
    with client(digits_run, max_wait_ms=200) as c:
        r = c.post("/v1/predict", json={"instances": [{"pixels": pixels(0)}, {"pixels": edge}]})
        assert r.status_code == 422 and "instances.1" in r.json()["error"]
        assert "not finite" in r.json()["error"]
        assert c.post("/v1/predict", json={"instances": [{"pixels": pixels(0)}]}).status_code == 200


def test_an_oversized_body_gets_413_and_the_server_lives_on(digits_run: Run):
    big = {"instances": [{"pixels": pixels(0)}] * 400}  # about 150 KB
    with client(digits_run, max_body_kb=64) as c:
        r = c.post("/v1/predict", json=big)
        assert r.status_code == 413 and "--max-body-kb" in r.json()["error"]
        chunked = c.post("/v1/predict", content=iter([json.dumps(big).encode()]))
        assert chunked.status_code == 413
        assert c.post("/v1/predict", json={"instances": [{"pixels": pixels(1)}]}).status_code == 200


def test_regression_answers_values_in_the_target_units(regression_run: Run):
    frame = regression_run.split("test").raw.iloc[:3]
    rows = frame[regression_run.schema.tabular.columns].to_dict(orient="records")
    with client(regression_run) as c:
        body = c.post("/v1/predict", json={"instances": rows}).json()
    got = [p["prediction"] for p in body["predictions"]]
    np.testing.assert_allclose(got, regression_run.predict(frame), rtol=1e-5)
    assert "probabilities" not in body["predictions"][0]


def test_conformal_sets_come_from_the_uncertainty_module_when_stored(
    digits_run: Run, tmp_path: Path, monkeypatch
):
    """The server hands the batch to gradwise.run_conformal (its contract: (N, K) set
    membership for model-ready inputs); a stand-in function checks the plumbing."""
    seen = []

    def prediction_sets(run, x):
        seen.append(tuple(x.shape))
        probs = run.predict_proba(x)
        return probs >= 0.1

    import gradwise.run_conformal

    monkeypatch.setattr(gradwise.run_conformal, "prediction_sets", prediction_sets)
    run = copy_run(digits_run, tmp_path / "run")
    run.set_conformal({"task": "classification", "quantile": 0.9})
    with client(run) as c:
        body = c.post("/v1/predict", json={"instances": [{"pixels": pixels(i)} for i in range(3)]})
    preds = body.json()["predictions"]
    for p in preds:
        assert p["prediction_set"] == [int(k) for k, v in p["probabilities"].items() if v >= 0.1]
    assert seen == [(3, 1, 8, 8)]


def test_health_ready_and_metrics(digits_run: Run):
    with client(digits_run) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ready"
        for _ in range(3):
            c.post(
                "/v1/predict", json={"instances": [{"pixels": pixels(0)}, {"pixels": pixels(1)}]}
            )
        c.post("/v1/predict", json={"instances": []})
        text = c.get("/metrics").text
    assert 'gradwise_requests_total{route="/v1/predict",status="200"} 3.0' in text
    assert 'gradwise_request_errors_total{route="/v1/predict",status="422"} 1.0' in text
    assert "gradwise_batch_size_sum 6.0" in text
    assert "gradwise_queue_depth 0.0" in text
    assert 'gradwise_request_latency_seconds_count{route="/v1/predict"} 4.0' in text


def test_api_key_guards_every_route_but_the_health_checks(digits_run: Run, monkeypatch):
    monkeypatch.setenv("SERVE_KEY", "s3cret")
    body = {"instances": [{"pixels": pixels(0)}]}
    with client(digits_run, api_key_env="SERVE_KEY") as c:
        assert c.post("/v1/predict", json=body).status_code == 401
        assert c.post("/v1/predict", json=body, headers={"x-api-key": "wrong"}).status_code == 401
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/metrics").status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        assert c.post("/v1/predict", json=body, headers=auth).status_code == 200
        assert c.post("/v1/predict", json=body, headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        spec = c.get("/openapi.json", headers=auth).json()  # what generated clients read
        assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
        assert "security" not in spec["paths"]["/healthz"]["get"]
    monkeypatch.delenv("SERVE_KEY")
    with pytest.raises(ConfigError, match="SERVE_KEY"):
        gradwise.serving.app(digits_run, api_key_env="SERVE_KEY")


def test_the_store_keeps_requests_and_feedback(digits_run: Run, tmp_path: Path):
    db = tmp_path / "p.sqlite"
    with client(digits_run, store=str(db), flush_interval_s=0.05) as c:
        ids = [
            c.post("/v1/predict", json={"instances": [{"pixels": pixels(i)}]}).json()["request_id"]
            for i in range(3)
        ]
        assert c.post("/v1/feedback", json={"request_id": ids[0], "label": 0}).status_code == 202
        bad = c.post("/v1/feedback", json={"request_id": ids[0], "label": "cat"})
        assert bad.status_code == 422 and "not a class" in bad.json()["error"]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = con.execute(
        "SELECT request_id, n_instances, inputs, outputs, model_version FROM predictions"
    ).fetchall()
    assert [r[0] for r in rows] == ids
    assert json.loads(rows[0][2]) == {"instances": [{"pixels": pixels(0)}]}
    assert json.loads(rows[0][3])[0]["prediction"] in range(10)
    assert con.execute("SELECT request_id, label FROM feedback").fetchall() == [(ids[0], "0")]


def test_feedback_without_a_store_is_refused(digits_run: Run):
    with client(digits_run, store="off") as c:
        r = c.post("/v1/feedback", json={"request_id": "x", "label": 1})
    assert r.status_code == 409 and "--store off" in r.json()["error"]


def test_a_store_of_another_shape_or_an_unreachable_one_is_a_clear_error(
    digits_run: Run, tmp_path: Path
):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE predictions (id INTEGER PRIMARY KEY, x TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="another tool or an older gradwise"):
        gradwise.serving.app(digits_run, store=str(other))
    with pytest.raises(ConfigError, match="Cannot open the prediction store"):
        gradwise.serving.app(digits_run, store="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(ConfigError, match="Cannot use the store weird://"):
        gradwise.serving.app(digits_run, store="weird://")


def test_a_language_model_streams_the_tokens_greedy_decoding_gives(lm_run: Run):
    reference = lm_run.generate("abc", 12, temperature=0)
    with client(lm_run) as c:
        with c.stream(
            "POST", "/v1/generate", json={"prompt": "abc", "tokens": 12, "temperature": 0}
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        whole = c.post(
            "/v1/generate", json={"prompt": "abc", "tokens": 12, "temperature": 0, "stream": False}
        ).json()
        assert c.post("/v1/predict", json={"instances": []}).status_code == 404
        assert c.post("/v1/generate", json={"tokens": 0}).status_code == 422
        tiny = {"prompt": "abc", "tokens": 12, "temperature": 1e-300, "stream": False}
        assert c.post("/v1/generate", json=tiny).json()["text"] == reference  # greedy, no NaN
        odd = {"prompt": "é☃", "tokens": 3, "top_p": 1e-9, "top_k": 10**6, "seed": 2**63 - 1}
        assert c.post("/v1/generate", json={**odd, "stream": False}).status_code == 200
    tokens = [json.loads(e[6:]) for e in events]
    assert "".join(t["token"] for t in tokens[:-1]) == reference
    assert tokens[-1]["text"] == reference and tokens[-1]["n_tokens"] == 12
    assert whole["text"] == reference


def test_conformal_outputs_are_the_uncertainty_audits(
    digits_run: Run, regression_run: Run, tmp_path: Path
):
    """With the uncertainty audit present, the served sets and intervals are the ones
    `Run.predict_sets` / `Run.predict_intervals` give for the same inputs."""
    pytest.importorskip("gradwise.auditing.uncertainty", reason="the uncertainty audit is absent")
    images = DIGITS.images[:6]
    run = copy_run(digits_run, tmp_path / "cls")
    gradwise.audit(run, checks=["uncertainty"])
    run = Run.load(run.path)
    with client(run) as c:
        body = c.post("/v1/predict", json={"instances": [{"pixels": im.tolist()} for im in images]})
    member = run.predict_sets(images[:, None])  # type: ignore[attr-defined]
    classes = run.schema.classes
    expected = [[classes[j] for j in np.flatnonzero(row)] for row in member]
    assert [p["prediction_set"] for p in body.json()["predictions"]] == expected
    reg = copy_run(regression_run, tmp_path / "reg")
    gradwise.audit(reg, checks=["uncertainty"])
    reg = Run.load(reg.path)
    frame = reg.split("test").raw.iloc[:4]
    rows = frame[reg.schema.tabular.columns].to_dict(orient="records")
    with client(reg) as c:
        served = c.post("/v1/predict", json={"instances": rows}).json()["predictions"]
    _, lower, upper = reg.predict_intervals(frame)  # type: ignore[attr-defined]
    np.testing.assert_allclose([p["interval"] for p in served], np.c_[lower, upper], rtol=1e-5)


def test_a_forecaster_takes_a_window_of_named_rows(tmp_path: Path):
    t = np.arange(400)
    frame = pd.DataFrame({"day": t, "load": 10 + 3 * np.sin(2 * np.pi * t / 24)})
    frame.to_csv(tmp_path / "s.csv", index=False)
    from tests.conftest import tiny_config

    cfg = tiny_config(
        data={
            "source": f"timeseries:{tmp_path / 's.csv'}",
            "target": "load",
            "window": 24,
            "horizon": 3,
        },
        model={"arch": "lstm", "hidden": 16},
        train={"epochs": 2},
    )
    run = gradwise.train(cfg, out=tmp_path / "ts")
    window = frame.iloc[-24:][run.schema.series.features.columns]  # the feature columns
    with client(run) as c:
        props = c.get("/openapi.json").json()["components"]["schemas"]["Instance"]["properties"]
        assert props["window"]["minItems"] == props["window"]["maxItems"] == 24
        body = {"instances": [{"window": window.to_dict(orient="records")}]}
        served = c.post("/v1/predict", json=body).json()["predictions"][0]["prediction"]
        short = {"instances": [{"window": window.iloc[:5].to_dict(orient="records")}]}
        assert c.post("/v1/predict", json=short).status_code == 422
        extra = {"instances": [{"window": frame.iloc[-24:].to_dict(orient="records")}]}
        more = c.post("/v1/predict", json=extra).json()["predictions"][0]  # day: ignored
        assert more["warnings"] == ["not model inputs, ignored: day"]
        assert more["steps_ahead"] == [1, 2, 3]
    np.testing.assert_allclose(served, run.predict(window)[0], rtol=1e-5)
