"""Every command `gradwise monitor` prints for the user to run is run here, on tiny runs of
each kind whose retrain file differs: a table (CSV, with a dropped id column), a series with a
text feature (npz windows) and images (npz). Each ends with exit 0, or exit 2 and a clear
message where the data is intentionally absent (no labels fed back yet)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import gradwise
import gradwise.serving
from gradwise.cli import app
from gradwise.run import Run
from tests.conftest import tiny_config
from tests.serving.conftest import churn_frame

runner = CliRunner()
WINDOW = 6  # rows per series window


def _serve(run: Run, store: Path, instances: list[Any], labels: list[Any] | None) -> None:
    with TestClient(gradwise.serving.app(run, store=str(store), flush_interval_s=0.05)) as c:
        for a in range(0, len(instances), 20):
            r = c.post("/v1/predict", json={"instances": instances[a : a + 20]})
            assert r.status_code == 200, r.text
            if labels is not None:
                fed = {"request_id": r.json()["request_id"], "labels": labels[a : a + 20]}
                assert c.post("/v1/feedback", json=fed).status_code == 202, fed


def _printed_commands(run: Run, store: Path, window: int) -> list[str]:
    """The `gradwise ...` lines `gradwise monitor` prints (exit 3: the drift alert fired)."""
    result = runner.invoke(
        app, ["monitor", str(run.path), "--store", str(store), "--window", str(window)]
    )
    assert result.exit_code == 3, result.output
    commands = [
        ln.strip() for ln in result.output.splitlines() if ln.strip().startswith("gradwise ")
    ]
    assert commands, result.output
    return commands


def _run_printed(command: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(cwd)  # train's default out is runs/NAME, relative to here
    args = shlex.split(command)
    assert args[0] == "gradwise"
    return runner.invoke(app, [*args[1:], "--set", "train.epochs=1", "--quiet"])


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("printed-table")
    frame = churn_frame(300).assign(id=np.arange(300))
    frame.to_csv(folder / "churn.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{folder / 'churn.csv'}", "target": "churn", "drop": ["id"]}
    )
    return gradwise.train(cfg, out=folder / "run")


def _table_traffic() -> tuple[list[dict[str, Any]], list[str]]:
    clean, shifted = churn_frame(200, seed=1), churn_frame(200, seed=2)
    shifted["age"] += 25
    shifted["city"] = "Marseille"
    both = pd.concat([clean, shifted])
    rows = both.drop(columns="churn").astype(object).where(both.notna(), None)
    return rows.to_dict(orient="records"), both["churn"].tolist()


def test_the_retrain_command_of_a_table_trains(table_run: Run, tmp_path: Path, monkeypatch):
    instances, labels = _table_traffic()
    _serve(table_run, tmp_path / "p.sqlite", instances, labels)
    (command,) = _printed_commands(table_run, tmp_path / "p.sqlite", 100)
    result = _run_printed(command, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output


def test_without_labels_the_retrain_command_stops_with_a_clear_message(
    table_run: Run, tmp_path: Path, monkeypatch
):
    instances, _ = _table_traffic()
    _serve(table_run, tmp_path / "p.sqlite", instances, None)
    (command,) = _printed_commands(table_run, tmp_path / "p.sqlite", 100)
    result = _run_printed(command, tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "retrain.csv" in result.output


def test_the_retrain_command_of_a_series_with_a_text_feature_trains(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(0)
    n = 300
    t = np.arange(n)
    series = pd.DataFrame(
        {
            "wind": rng.choice(["NW", "SE", "cv"], n),
            "temp": rng.normal(10, 3, n).round(2),
            "pm": (50 + 10 * np.sin(t / 4) + rng.normal(0, 1, n)).round(2),
        }
    )
    series.to_csv(tmp_path / "s.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"timeseries:{tmp_path / 's.csv'}",
            "target": "pm",
            "features": ["wind", "temp", "pm"],
            "window": WINDOW,
        },
        model={"arch": "lstm", "hidden": 8},
        train={"epochs": 1, "batch_size": 32},
    )
    run = gradwise.train(cfg, out=tmp_path / "run")
    drifted = series.assign(temp=series["temp"] + 30, wind="XX")
    instances, labels = [], []
    for frame in (series, drifted):
        for a in range(0, 160):
            rows = frame.iloc[a : a + WINDOW]
            instances.append({"window": rows.to_dict(orient="records")})
            labels.append(float(frame["pm"].iloc[a + WINDOW]))
    _serve(run, tmp_path / "p.sqlite", instances, labels)
    (command,) = _printed_commands(run, tmp_path / "p.sqlite", 40)
    result = _run_printed(command, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output


def test_the_retrain_command_of_images_trains(tmp_path: Path, monkeypatch):
    run = gradwise.train(
        tiny_config(model={"hidden": [64]}, train={"epochs": 6}), out=tmp_path / "d"
    )
    val, test = run.split("val"), run.split("test")
    x = np.concatenate([np.asarray(val.raw), np.asarray(test.raw)])
    y = np.concatenate([val.y.numpy(), test.y.numpy()]).tolist()
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 4, x.shape), 0, 16)
    instances = [{"pixels": s.tolist()} for s in np.concatenate([x, noisy])]
    _serve(run, tmp_path / "p.sqlite", instances, y + y)
    (command,) = _printed_commands(run, tmp_path / "p.sqlite", 150)
    result = _run_printed(command, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
