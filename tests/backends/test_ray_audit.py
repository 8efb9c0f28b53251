"""`audit --backend ray` runs the learning curve's and the data-quality folds' retrains as Ray
tasks and gives the local audit's numbers: each task trains exactly what the local loop
trains, from the same config, seed and fold positions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import gradwise
from gradwise.auditing.quality_scans import out_of_fold_probabilities
from gradwise.auditing.retrains import IN_PROCESS
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray  # make test-ray (CI runs it): a local cluster takes minutes
pytest.importorskip("ray", reason="the Ray extra is not installed (gradwise[ray])")

from gradwise.backends.ray_audit import RayRetrains  # noqa: E402

TOLERANCE = 1e-6
CURVE = {"fractions": [0.25, 0.5, 1.0], "seeds": 2, "scale_epochs": False}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cfg = tiny_config(audit={"generalisation": CURVE, "data_quality": {"folds": 3, "epochs": 2}})
    return gradwise.train(cfg, out=tmp_path_factory.mktemp("ray-audit") / "run")


def test_out_of_fold_probabilities_on_ray_equal_the_local_ones(ray_cluster: Any, run: Any) -> None:
    local, local_folds = out_of_fold_probabilities(run, 3, 2, seed=0, retrains=IN_PROCESS)
    on_ray, ray_folds = out_of_fold_probabilities(
        run, 3, 2, seed=0, retrains=RayRetrains(ray_cluster)
    )
    assert np.array_equal(ray_folds, local_folds) and set(local_folds) == {0, 1, 2}
    np.testing.assert_allclose(on_ray, local, rtol=0, atol=TOLERANCE)
    assert np.allclose(local.sum(axis=1), 1.0)  # every training row got its fold's answer


def test_the_audit_on_ray_gives_the_local_curve_and_label_issues(
    ray_cluster: Any, run: Any
) -> None:
    checks = ["generalisation", "data_quality"]
    local = gradwise.audit(run, checks=checks, backend="local")
    on_ray = gradwise.audit(run, checks=checks, backend="ray")
    local_curve = local["generalisation"].metrics["learning_curve"]
    ray_curve = on_ray["generalisation"].metrics["learning_curve"]
    assert len(ray_curve["points"]) == 4 and not ray_curve["points"][0]["reused"]
    for mine, theirs in zip(ray_curve["points"], local_curve["points"], strict=True):
        assert {k: v for k, v in mine.items() if k != "value"} == {
            k: v for k, v in theirs.items() if k != "value"
        }
        assert mine["value"] == pytest.approx(theirs["value"], abs=TOLERANCE)
    assert ray_curve["plan"]["batch"] and not local_curve["plan"]["batch"]
    assert "one batch of tasks" in on_ray["generalisation"].settings["retrains_on"]
    assert "this process" in local["generalisation"].settings["retrains_on"]
    ray_labels = on_ray["data_quality"].metrics["labels"]
    local_labels = local["data_quality"].metrics["labels"]
    assert ray_labels["rows"] == local_labels["rows"]
    assert ray_labels["out_of_fold_accuracy"] == pytest.approx(
        local_labels["out_of_fold_accuracy"], abs=TOLERANCE
    )
    assert on_ray["data_quality"].settings["retrains_on"].startswith("Ray")


def test_the_cli_audits_on_ray_and_prints_where_the_retrains_ran(
    ray_cluster: Any, run: Any
) -> None:
    from typer.testing import CliRunner

    from gradwise.cli import app

    args = ["audit", str(run.path), "--checks", "generalisation", "--json"]
    got = CliRunner().invoke(app, [*args, "--backend", "ray"])
    assert got.exit_code == 0, got.output
    (result,) = json.loads(got.output)
    assert result["settings"]["retrains_on"].startswith("Ray, one task per retrain")
    unknown = CliRunner().invoke(app, [*args, "--backend", "spark"])
    assert unknown.exit_code == 2 and "local or ray" in unknown.output


def test_audit_on_ray_without_ray_installed_says_how_to_install_it(run: Any) -> None:
    hide_ray = "import sys; sys.modules['ray'] = None; from gradwise.cli import main; main()"
    cmd = [sys.executable, "-c", hide_ray, "audit", str(run.path), "--backend", "ray"]
    got = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    assert got.returncode == 2, got.stderr
    assert "pip install 'gradwise[ray]'" in got.stderr + got.stdout
    assert "Traceback" not in got.stderr
