"""explain --data TABLE: every row attributed in batches, checked against the in-memory
attributions of the same rows, the importance against the written file, and bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import gradwise
from gradwise.artifacts import read_json
from gradwise.cli import app
from gradwise.errors import ConfigError, DataError, GradwiseError
from gradwise.explaining.attributions import feature_groups, input_attributions
from gradwise.explaining.importance import grouped
from tests.conftest import tiny_config

FEATURES = ["noise_a", "decides", "noise_b", "colour"]
ATTR = [f"attr_{c}" for c in FEATURES]


def _table(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "noise_a": rng.normal(size=n),
            "decides": rng.normal(size=n),
            "noise_b": rng.normal(10, 3, size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    df["label"] = np.where(df["decides"] > 0, "yes", "no")
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    folder = tmp_path_factory.mktemp("explain-stream")
    cfg = tiny_config(
        data={"source": f"csv:{_table(folder / 't.csv')}", "target": "label"},
        # forward passes of 8 rows: a streamed batch of 8 rows is a small batch
        train={"epochs": 10, "optimizer": {"lr": 1e-2}, "eval_batch_size": 8},
    )
    return gradwise.train(cfg, out=folder / "r")


@pytest.fixture(scope="module")
def test_csv(table_run: gradwise.Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explain-stream-data") / "test.csv"
    table_run.split("test").raw.to_csv(path, index=False)
    return path


def _in_memory(run: gradwise.Run, method: str) -> np.ndarray:
    """(N, G) the test split's attributions per raw column, all rows in one call, as the
    in-memory `explain` computes them."""
    names, groups = feature_groups(run)  # type: ignore[misc]
    a = input_attributions(run, run.split("test").x, method, run.split("train").x, seed=0)  # type: ignore[arg-type]
    return grouped(a.values.flatten(1), groups, len(names)).numpy()


@pytest.mark.parametrize("method", ["ig", "saliency"])
def test_rows_streamed_in_batches_of_8_equal_the_rows_attributed_together(
    table_run, test_csv, tmp_path: Path, method
):
    out = tmp_path / "a.csv"
    result = gradwise.explain_file(table_run, str(test_csv), out, method=method, batch_rows=5)
    written = pd.read_csv(out)
    expected = _in_memory(table_run, method)
    assert result.rows == len(written) == len(expected) > 8 and result.batch_rows == 8
    assert written["row"].tolist() == list(range(len(expected)))
    # 8 rows per forward pass here, all of them there: float32 sums may add in another order
    np.testing.assert_allclose(written[ATTR].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    predicted = table_run.predict(pd.read_csv(test_csv))
    assert written["prediction"].astype(str).tolist() == [str(p) for p in predicted]
    assert ("completeness_gap" in written) == (method == "ig")


def test_streamed_rows_match_the_explain_verb_on_the_same_source_rows(
    table_run, test_csv, tmp_path: Path
):
    gradwise.explain_file(table_run, str(test_csv), tmp_path / "a.csv", batch_rows=8)
    written = pd.read_csv(tmp_path / "a.csv")
    source_rows = [int(r) for r in table_run.split("test").rows[:4]]
    shown = gradwise.explain(table_run, rows=source_rows)
    for position, row in enumerate(shown.rows):
        line = written.iloc[position]
        assert str(line["prediction"]) == str(row.prediction)
        for name, value in row.top:  # "column=value", rounded to 6 digits by explain
            assert line[f"attr_{name.split('=')[0]}"] == pytest.approx(value, abs=2e-6)


def test_parquet_shards_give_the_csv_rows_and_the_importance_of_the_file(
    table_run, test_csv, tmp_path: Path
):
    frame = pd.read_csv(test_csv)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, (start, stop) in enumerate([(0, 13), (13, 50), (50, len(frame))]):
        frame.iloc[start:stop].to_parquet(shards / f"part-{i}.parquet", index=False)
    result = gradwise.explain_file(table_run, str(shards), tmp_path / "a.parquet", batch_rows=16)
    written = pd.read_parquet(tmp_path / "a.parquet")
    whole = gradwise.explain_file(table_run, str(test_csv), tmp_path / "b.csv", batch_rows=1000)
    from_csv = pd.read_csv(tmp_path / "b.csv")
    assert written["row"].tolist() == from_csv["row"].tolist() == list(range(len(frame)))
    np.testing.assert_allclose(written[ATTR], from_csv[ATTR], rtol=1e-5, atol=1e-6)
    by_hand = written[ATTR].abs().to_numpy(dtype=np.float64).mean(axis=0)
    np.testing.assert_allclose(result.mean_abs_attribution, by_hand, rtol=1e-12)
    np.testing.assert_allclose(whole.mean_abs_attribution, by_hand, rtol=1e-5)
    saved = read_json(Path(table_run.path) / "explain" / "stream.json")
    assert saved["features"] == FEATURES and saved["rows"] == len(frame)
    assert saved["mean_abs_attribution"] == list(whole.mean_abs_attribution)  # the last call
    assert result.features[int(np.argmax(result.mean_abs_attribution))] == "decides"


def test_bad_input_is_refused_with_a_message_that_names_the_fix(
    table_run, test_csv, tmp_path: Path
):
    out = tmp_path / "a.csv"
    pd.read_csv(test_csv).drop(columns="decides").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="lacks the column.s. decides the run reads"):
        gradwise.explain_file(table_run, str(tmp_path / "short.csv"), out)
    with pytest.raises(ConfigError, match="would change with --batch-rows"):
        gradwise.explain_file(table_run, str(test_csv), out, method="gradshap")
    with pytest.raises(DataError, match="is no CSV or parquet table"):
        gradwise.explain_file(table_run, str(tmp_path / "missing.csv"), out)
    assert not out.exists()  # nothing half-written


def test_a_run_that_reads_no_table_is_refused(tmp_path: Path):
    run = gradwise.train(
        tiny_config(data={"source": "builtin:digits", "limit": 200}), out=tmp_path / "d"
    )
    pd.DataFrame({"x0": [0.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(GradwiseError, match="streams the rows of a CSV or parquet table"):
        gradwise.explain_file(run, str(tmp_path / "t.csv"), tmp_path / "a.csv")


def test_cli_streams_prints_importance_and_exits_2_on_bad_input(
    table_run, test_csv, tmp_path: Path
):
    runner = CliRunner()
    run_dir, out = str(table_run.path), str(tmp_path / "a.parquet")
    ok = runner.invoke(app, ["explain", run_dir, "--data", str(test_csv), "--out", out])
    assert ok.exit_code == 0, ok.output
    n = len(pd.read_csv(test_csv))
    assert f"feature importance over all {n} rows" in ok.output
    assert f"{n} explanations written to {out}" in ok.output and "streamed" in ok.output
    assert len(pd.read_parquet(out)) == n
    for args, message in [
        (["--data", str(test_csv)], "add --out"),
        (["--data", str(test_csv), "--out", out, "--rows", "1"], "give one or the other"),
        (["--data", str(test_csv), "--out", out, "--method", "kernelshap"], "--method ig"),
        (["--data", str(tmp_path / "none.csv"), "--out", out], "no CSV or parquet table"),
    ]:
        bad = runner.invoke(app, ["explain", run_dir, *args])
        assert bad.exit_code == 2, bad.output
        assert message in bad.output and "Traceback" not in bad.output


def test_integrated_gradients_equal_captums_to_the_last_digit(table_run):
    from captum.attr import IntegratedGradients

    from gradwise.explaining.attributions import _path_integral, baseline
    from gradwise.models.blocks import eval_mode

    x = table_run.split("test").x
    start = baseline(table_run, table_run.split("train").x).expand_as(x)
    model = table_run.model
    with eval_mode(model):
        t = model(x).argmax(dim=1)
        values, delta = _path_integral(model, x, start, t, 64)
        expected, expected_delta = IntegratedGradients(model).attribute(
            x, baselines=start, target=t, n_steps=64, return_convergence_delta=True
        )
    assert torch.equal(values, expected) and torch.equal(delta, expected_delta)
