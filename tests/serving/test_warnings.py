"""An instance the model reads differently than sent is answered 200 with `warnings`, counted
in /metrics by kind; every error body has one shape."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

import gradwise
import gradwise.serving
from gradwise.run import Run

ROW = {"age": 30.0, "monthly income": 40.0, "city": "Paris"}


def _count(metrics: str, kind: str) -> float:
    found = re.search(rf'gradwise_input_warnings_total\{{kind="{kind}"\}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_an_unseen_category_and_a_number_for_a_category_are_flagged_and_counted(
    table_run: Run,
):
    rows = [ROW, {**ROW, "city": "Marseille"}, {**ROW, "city": 75}, {**ROW, "city": " Nice "}]
    with TestClient(gradwise.serving.app(table_run, store="off")) as c:
        r = c.post("/v1/predict", json={"instances": rows})
        assert r.status_code == 200, r.text
        seen, unseen, number, padded = r.json()["predictions"]
        metrics = c.get("/metrics").text
    assert "warnings" not in seen and "warnings" not in padded  # stripped, as in training
    assert unseen["warnings"] == [
        "column 'city': 'Marseille' was not seen in training (known: 'Lyon', 'Nice', "
        "'Paris'); read as <other>"
    ]
    assert len(number["warnings"]) == 1
    assert number["warnings"][0].startswith("column 'city': 75 is a number, but the column")
    assert _count(metrics, "unseen_category") == 1
    assert _count(metrics, "number_for_category") == 1
    assert _count(metrics, "ignored_columns") == 0


def test_an_unseen_category_reads_as_other_so_the_flag_is_not_cosmetic(table_run: Run):
    with TestClient(gradwise.serving.app(table_run, store="off")) as c:
        r = c.post(
            "/v1/predict",
            json={"instances": [{**ROW, "city": "Marseille"}, {**ROW, "city": "<other>"}]},
        )
    flagged, other = r.json()["predictions"]
    assert flagged["probabilities"] == other["probabilities"]


def test_a_wrong_method_or_route_gets_the_same_error_shape_as_a_bad_body(table_run: Run):
    with TestClient(gradwise.serving.app(table_run, store="off")) as c:
        wrong_method = c.get("/v1/predict")
        no_route = c.get("/v2/predict")
        bad_body = c.post("/v1/predict", json={"instances": [{"age": "x"}]})
    assert wrong_method.status_code == 405 and no_route.status_code == 404
    assert bad_body.status_code == 422
    for r in (wrong_method, no_route, bad_body):
        assert isinstance(r.json()["error"], str) and set(r.json()) <= {"error", "detail"}
    assert "GET is not allowed on /v1/predict; use POST" in wrong_method.json()["error"]
    assert wrong_method.headers["allow"] == "POST"
