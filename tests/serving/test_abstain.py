"""serve --abstain: a decision per instance under the certified threshold, the guarantee once
per response, decisions counted in /metrics; and /metrics summed over worker processes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits
from typer.testing import CliRunner

import gradwise.serving
from gradwise.cli import app
from gradwise.errors import GradwiseError
from gradwise.run import Run
from gradwise.run_conformal import GUARANTEE_KEYS
from gradwise.serving.metrics import ServerMetrics
from gradwise.serving.runner import free_port

IMAGES = load_digits().images[-60:]  # (60, 8, 8), values 0-16


def body(rows: range) -> dict:
    return {"instances": [{"pixels": IMAGES[i].tolist()} for i in rows]}


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one metric's samples in a Prometheus exposition."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_each_instance_carries_the_decision_predict_selective_makes(
    certified_run: Run, tmp_path: Path
):
    db = tmp_path / "p.sqlite"
    with TestClient(gradwise.serving.app(certified_run, store=str(db), abstain=True)) as c:
        reply = c.post("/v1/predict", json=body(range(60))).json()
    offline = certified_run.predict_selective(IMAGES[:, None])
    out = reply["predictions"]
    assert [p["decision"] for p in out] == offline.decision.tolist()
    np.testing.assert_allclose([p["abstain_score"] for p in out], offline.score, atol=1e-6)
    assert {"answer", "abstain"} == {p["decision"] for p in out}  # the threshold splits these
    stored = certified_run.calibration.selective
    assert reply["guarantee"] == {k: stored[k] for k in GUARANTEE_KEYS}  # once, at the top
    assert not any("guarantee" in p for p in out)
    for p, label in zip(out, offline.prediction.tolist()):  # abstained ones included
        assert p["prediction"] == label and len(p["probabilities"]) == 10
    con = sqlite3.connect(db)  # the store keeps the decisions the monitor reads
    logged = json.loads(con.execute("SELECT outputs FROM predictions").fetchone()[0])
    con.close()
    assert [p["decision"] for p in logged] == offline.decision.tolist()


def test_without_abstain_nothing_is_decided(certified_run: Run):
    with TestClient(gradwise.serving.app(certified_run, store="off")) as c:
        reply = c.post("/v1/predict", json=body(range(3))).json()
        text = c.get("/metrics").text
    assert "guarantee" not in reply
    assert not any({"decision", "abstain_score"} & p.keys() for p in reply["predictions"])
    assert samples(text, "gradwise_decisions_total") == {}


def test_decisions_are_counted_per_model_version(certified_run: Run):
    with TestClient(gradwise.serving.app(certified_run, store="off", abstain=True)) as c:
        replies = [c.post("/v1/predict", json=body(range(i, i + 7))).json() for i in (0, 20, 40)]
        text = c.get("/metrics").text
    version = replies[0]["model_version"]
    decided = [p["decision"] for r in replies for p in r["predictions"]]
    counted = samples(text, "gradwise_decisions_total")
    for decision in ("answer", "abstain"):
        key = (("decision", decision), ("model_version", version))
        assert counted[key] == decided.count(decision)


def test_abstain_without_a_certified_threshold_fails_at_start(digits_run: Run):
    with pytest.raises(GradwiseError, match="no certified abstention threshold"):
        gradwise.serving.app(digits_run, store="off", abstain=True)
    args = ["serve", str(digits_run.path), "--abstain", "--store", "off"]
    result = CliRunner().invoke(app, [*args, "--port", str(free_port())])
    assert result.exit_code == 2, result.output
    assert "--checks selective" in result.output and "Traceback" not in result.output


def test_metrics_add_up_over_workers_whichever_answers_the_scrape(
    certified_run: Run, tmp_path: Path, server_factory
):
    db = tmp_path / "p.sqlite"
    server = server_factory(
        certified_run.path, "--workers", "2", "--abstain", "--store", str(db)
    ).wait_ready()
    k = 30
    for i in range(k):  # a fresh connection each: the kernel hands each to either worker
        assert httpx.post(f"{server.url}/v1/predict", json=body(range(i, i + 1))).is_success
    for _ in range(10):
        text = httpx.get(f"{server.url}/metrics").text
        predicted = samples(text, "gradwise_requests_total")
        assert predicted[(("route", "/v1/predict"), ("status", "200"))] == k
        assert sum(samples(text, "gradwise_decisions_total").values()) == k
        assert samples(text, "gradwise_batch_size_count")[()] == k  # histograms too
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(60)
    con = sqlite3.connect(db)
    replicas = {r[0] for r in con.execute("SELECT DISTINCT replica_id FROM predictions")}
    con.close()
    assert len(replicas) == 2  # both workers answered some: each alone would show fewer


def test_a_killed_workers_gauges_leave_the_sum_and_its_counts_stay(tmp_path: Path):
    folder = str(tmp_path)
    worker = (  # a worker that counts, sets its queue depth, and dies without a word
        "from prometheus_client import Counter, Gauge\n"
        "Counter('gradwise_predictions', 'x').inc(3)\n"
        "Gauge('gradwise_queue_depth', 'x', multiprocess_mode='livesum').set(7)\n"
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": folder}
    subprocess.run([sys.executable, "-c", worker], env=env, check=True)
    metrics = ServerMetrics({"/v1/predict"}, multiprocess_dir=folder)
    assert samples(generate_latest(metrics.registry).decode(), "gradwise_queue_depth") == {(): 7.0}
    text = metrics.exposition()[0].decode()
    assert samples(text, "gradwise_queue_depth") == {}
    assert samples(text, "gradwise_predictions_total") == {(): 3.0}
