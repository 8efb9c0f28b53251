"""`predict` and `evaluate --data` on Ray Data give the local path's rows and numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gradwise
from gradwise.data.readers import load_labelled
from gradwise.errors import GradwiseError
from gradwise.run_predict import predict_file
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray  # make test-ray (CI runs it): a local cluster takes minutes
pytest.importorskip("ray", reason="the Ray extra is not installed (gradwise[ray])")

from gradwise.backends.ray_predict import evaluate_ray, predict_ray  # noqa: E402


def _table(n: int, seed: int) -> pd.DataFrame:
    """Rows with an id, a category, a number with gaps and a label that depends on both."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    label = np.where((color == "red") ^ (size > 0.5), "yes", "no")
    frame = pd.DataFrame({"id": range(n), "color": color, "size": size, "label": label})
    frame.loc[::17, "size"] = np.nan
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    folder = tmp_path_factory.mktemp("ray-predict")
    _table(400, 0).to_csv(folder / "train.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{folder / 'train.csv'}", "target": "label", "drop": ["id"]},
        train={"epochs": 5},
    )
    return gradwise.train(cfg, out=folder / "run"), folder


def test_predict_on_ray_writes_the_local_rows_in_order(ray_cluster: Any, trained: Any) -> None:
    run, folder = trained
    _table(250, 1).to_csv(folder / "new.csv", index=False)
    predict_file(run, str(folder / "new.csv"), folder / "local.csv", keep=["id"], batch_rows=64)
    n = predict_ray(run, str(folder / "new.csv"), folder / "ray.csv", keep=["id"], batch_rows=64)
    assert n == 250
    assert (folder / "ray.csv").read_text() == (folder / "local.csv").read_text()


def test_predict_on_ray_reads_a_folder_of_parquet_shards(ray_cluster: Any, trained: Any) -> None:
    run, folder = trained
    new = _table(300, 2)
    shards = folder / "shards"
    shards.mkdir()
    for i, start in enumerate(range(0, len(new), 100)):
        new.iloc[start : start + 100].to_parquet(shards / f"part-{i}.parquet", index=False)
    whole = pd.DataFrame(run.predict_proba(new.drop(columns=["id", "label"])))
    predict_ray(run, str(shards), folder / "ray.parquet", keep=["id"], batch_rows=64)
    got = pd.read_parquet(folder / "ray.parquet")
    assert list(got["id"]) == list(new["id"])
    assert list(got["prediction"]) == list(run.predict(new.drop(columns=["id", "label"])))
    np.testing.assert_allclose(got[["p_no", "p_yes"]].to_numpy(), whole.to_numpy(), atol=5e-7)


def test_evaluate_on_ray_gives_the_local_metrics(ray_cluster: Any, trained: Any) -> None:
    run, folder = trained
    _table(350, 3).to_csv(folder / "labelled.csv", index=False)
    local = run.evaluate(load_labelled(str(folder / "labelled.csv"), run.schema, run.config.data))
    on_ray = evaluate_ray(run, str(folder / "labelled.csv"), batch_rows=64)
    assert on_ray.keys() == local.keys()
    assert on_ray == pytest.approx(local, rel=1e-6, abs=1e-9)


def test_a_forecaster_or_a_non_table_is_refused_with_the_fix(
    ray_cluster: Any, trained: Any
) -> None:
    run, folder = trained
    np.savez(folder / "x.npz", X=np.zeros((3, 2)))
    with pytest.raises(GradwiseError, match="Drop --backend ray"):
        predict_ray(run, str(folder / "x.npz"), folder / "out.csv")


def test_abstain_without_a_certified_threshold_is_refused_before_ray(trained: Any) -> None:
    run, folder = trained
    _table(10, 4).to_csv(folder / "few.csv", index=False)
    with pytest.raises(GradwiseError, match="--checks selective"):
        predict_ray(run, str(folder / "few.csv"), folder / "refused.csv", abstain=True)
    assert not (folder / "refused.csv").exists()


def test_the_cli_runs_predict_and_evaluate_on_ray(ray_cluster: Any, trained: Any) -> None:
    from typer.testing import CliRunner

    from gradwise.cli import app

    run, folder = trained
    _table(120, 4).to_csv(folder / "cli.csv", index=False)
    predict_file(run, str(folder / "cli.csv"), folder / "cli-local.csv", keep=["id"])
    args = ["predict", str(run.path), str(folder / "cli.csv"), "--keep", "id"]
    got = CliRunner().invoke(app, [*args, "--out", str(folder / "cli-ray.csv"), "--backend", "ray"])
    assert got.exit_code == 0, got.output
    assert "120 predictions written" in got.output and "on Ray" in got.output
    assert (folder / "cli-ray.csv").read_text() == (folder / "cli-local.csv").read_text()
    missing_out = CliRunner().invoke(app, [*args, "--backend", "ray"])
    assert missing_out.exit_code == 2 and "--out" in missing_out.output
    unknown = CliRunner().invoke(app, [*args, "--out", "x.csv", "--backend", "spark"])
    assert unknown.exit_code == 2 and "local or ray" in unknown.output
    evaluated = CliRunner().invoke(
        app, ["evaluate", str(run.path), "--data", str(folder / "cli.csv"), "--backend", "ray"]
    )
    assert evaluated.exit_code == 0, evaluated.output


def test_a_run_whose_config_says_ray_predicts_on_ray_unless_the_flag_says_local(
    ray_cluster: Any, trained: Any, tmp_path: Path
) -> None:
    import shutil

    import yaml
    from typer.testing import CliRunner

    from gradwise.cli import app

    run, folder = trained
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    (copy / "config.yaml").write_text(yaml.safe_dump({**cfg, "backend": "ray"}))
    _table(50, 5).to_csv(folder / "cfg.csv", index=False)
    args = ["predict", str(copy), str(folder / "cfg.csv"), "--out"]
    on_ray = CliRunner().invoke(app, [*args, str(tmp_path / "a.csv")])
    assert on_ray.exit_code == 0 and "on Ray" in on_ray.output, on_ray.output
    local = CliRunner().invoke(app, [*args, str(tmp_path / "b.csv"), "--backend", "local"])
    assert local.exit_code == 0 and "on Ray" not in local.output, local.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
