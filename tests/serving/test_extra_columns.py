"""The server reads a table's records as `gradwise predict` reads a file: columns the model
does not read are ignored and named in the answer, missing ones are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

import gradwise
import gradwise.serving
from gradwise.run import Run

ROW = {"age": 30.0, "monthly income": 40.0, "city": "Paris"}


def test_extra_columns_are_ignored_and_named_in_warnings(table_run: Run):
    rows = [{**ROW, "id": 7, "churn": "yes"}, ROW]
    with TestClient(gradwise.serving.app(table_run, store="off")) as c:
        r = c.post("/v1/predict", json={"instances": rows})
        assert r.status_code == 200, r.text
        first, second = r.json()["predictions"]
        assert first["warnings"] == ["not model inputs, ignored: id, churn"]
        assert "warnings" not in second
        assert first["probabilities"] == second["probabilities"]  # the extras change nothing
        missing = c.post("/v1/predict", json={"instances": [{"age": 30.0, "id": 1}]})
        assert missing.status_code == 422 and "Field required" in missing.text
    expected = table_run.predict_proba(pd.DataFrame([ROW]))[0]
    got = [first["probabilities"][str(k)] for k in table_run.schema.classes]
    np.testing.assert_allclose(got, expected, atol=1e-6)
