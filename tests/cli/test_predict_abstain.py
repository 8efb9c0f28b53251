"""`gradwise predict RUN INPUT --abstain`: a decision per row under the certified threshold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.run import Run
from tests.conftest import tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A digits MLP with an abstention threshold certified at alpha 0.05 (270 validation
    rows: about half the rows answered)."""
    out = tmp_path_factory.mktemp("abstain") / "run"
    run = gradwise.train(tiny_config(train={"epochs": 10}), out=out)
    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": 0.05})
    return gradwise.load(out)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "x.npy"
    np.save(path, load_digits().images[-120:][:, None].astype(np.float32))
    return path


def test_abstain_adds_a_decision_per_row_that_follows_the_certified_threshold(
    certified: Run, images: Path, tmp_path: Path
):
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app, ["predict", str(certified.path), str(images), "--abstain", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    classes = [f"p_{k}" for k in range(10)]
    assert list(frame.columns) == ["prediction", *classes, "decision", "abstain_score"]
    stored = certified.calibration.selective
    # the score is the top calibrated probability (score "probability"), as the server sends
    assert stored["score"] == "probability"
    np.testing.assert_allclose(frame["abstain_score"], frame[classes].max(axis=1), atol=1e-6)
    expected = np.where(frame["abstain_score"] >= stored["threshold"], "answer", "abstain")
    assert (frame["decision"] == expected).all()
    assert set(frame["decision"]) == {"answer", "abstain"}  # the threshold splits this sample
    # abstained rows keep the model's prediction, so a person sees what it thought
    assert (frame["prediction"] == certified.predict(np.load(images))).all()
    n = int((frame["decision"] == "answer").sum())
    summary = re.search(r"answered (\d+) of (\d+) rows", result.stderr)
    assert summary is not None and summary.groups() == (str(n), str(len(frame)))
    assert f"certified on {stored['n']} validation rows" in result.stderr
    assert f"at most {100 * stored['alpha']:g}% errors among answered rows" in result.stderr


def test_abstain_without_a_certified_threshold_exits_2_naming_the_fix(tmp_path: Path, images: Path):
    run = gradwise.train(tiny_config(), out=tmp_path / "run")  # never audited
    result = runner.invoke(app, ["predict", str(run.path), str(images), "--abstain"])
    assert result.exit_code == 2, result.output
    assert "no certified abstention threshold" in result.output
    assert "--checks selective" in result.output and "Traceback" not in result.output
    assert "prediction" not in result.stdout  # nothing half-written
