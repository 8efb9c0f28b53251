"""Tables bigger than memory: `predict --out` and `evaluate --data` read CSV/parquet (a file,
a folder of shards, a glob) in batches, and give what the in-memory path gives, to the last
digit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.data.readers import load_labelled, read_inputs
from gradwise.data.stream import stream_table, table_shards
from gradwise.errors import DataError
from gradwise.run import Run
from gradwise.run_predict import evaluate_file, prediction_frame
from tests.conftest import tiny_config

runner = CliRunner()
N_ROWS = 600  # new rows: with eval_batch_size 64 and --batch-rows 100, batches of 128


def _table(n: int, seed: int) -> pd.DataFrame:
    """Digits pixels plus a text category, an id the model does not read, and the label."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(x), n)
    frame = pd.DataFrame(x[rows], columns=[f"px{i}" for i in range(64)])
    frame["colour"] = rng.choice(["red", "green", "blue"], n)
    frame.insert(0, "id", np.arange(n) + 1000 * seed)
    frame["label"] = y[rows]
    return frame


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A tabular MLP trained on a CSV, audited for conformal sets and abstention."""
    folder = tmp_path_factory.mktemp("stream")
    _table(1500, seed=0).to_csv(folder / "train.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{folder / 'train.csv'}", "target": "label", "drop": ["id"]},
        train={"epochs": 20, "batch_size": 64, "eval_batch_size": 64, "optimizer": {"lr": 3e-3}},
    )
    trained = gradwise.train(cfg, out=folder / "run")
    gradwise.audit(trained, checks=["uncertainty", "selective"], selective={"alpha": 0.2})
    return gradwise.load(folder / "run")


@pytest.fixture(scope="module")
def new(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CSV of new labelled rows, and the same rows as uneven parquet and CSV shards."""
    folder = tmp_path_factory.mktemp("new")
    table = _table(N_ROWS, seed=1)
    table.to_csv(folder / "all.csv", index=False)
    (folder / "parquet").mkdir()
    (folder / "csv").mkdir()
    for i, (lo, hi) in enumerate([(0, 37), (37, 38), (38, 411), (411, N_ROWS)]):
        table.iloc[lo:hi].to_parquet(folder / "parquet" / f"part-{i}.parquet", index=False)
        table.iloc[lo:hi].to_csv(folder / "csv" / f"part-{i}.csv", index=False)
    (folder / "parquet" / "_SUCCESS").write_text("")  # a marker that is no shard
    return folder


def _predict(*args: str) -> str:
    result = runner.invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output
    return result.stderr


def test_streamed_csv_equals_the_in_memory_output_byte_for_byte(run: Run, new: Path):
    flags = ["--keep", "id", "--intervals", "--abstain"]
    in_memory = runner.invoke(app, ["predict", str(run.path), str(new / "all.csv"), *flags])
    assert in_memory.exit_code == 0, in_memory.output
    out = new / "streamed.csv"
    _predict(str(run.path), str(new / "all.csv"), *flags, "--out", str(out), "--batch-rows", "100")
    assert out.read_text() == in_memory.stdout
    assert set(pd.read_csv(out)["decision"]) == {"answer", "abstain"}  # both sides checked


@pytest.mark.parametrize("source", ["parquet", "parquet/*.parquet", "csv", "csv/part-*.csv"])
def test_shards_and_globs_stream_to_parquet_equal_to_the_whole_table(
    run: Run, new: Path, tmp_path: Path, source: str
):
    out = tmp_path / "p.parquet"
    stderr = _predict(
        str(run.path), str(new / source), "--keep", "id,colour", "--intervals", "--abstain",
        "--out", str(out), "--batch-rows", "150",
    )  # fmt: skip
    whole = read_inputs(str(new / "all.csv"), run.schema, run.config.data)
    expected = prediction_frame(run, whole, ["id", "colour"], intervals=True, abstain=True)
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_dtype=False)
    assert got["id"].dtype == np.int64
    # the abstention summary counts every batch
    answered = re.search(r"answered (\d+) of (\d+) rows", stderr)
    assert answered is not None
    assert int(answered[1]) == int((expected["decision"] == "answer").sum())
    assert int(answered[2]) == N_ROWS
    assert "label are not model inputs" in stderr


def test_batches_hold_exact_multiples_of_the_batch_size_across_uneven_shards(run: Run, new: Path):
    shards = table_shards(str(new / "parquet"))
    assert shards is not None and len(shards.files) == 4
    sizes = [len(b) for b in stream_table(shards, run.config.data, None, None, 128)]
    assert sizes == [128, 128, 128, 128, N_ROWS - 4 * 128]
    starts = [b.index[0] for b in stream_table(shards, run.config.data, None, None, 128)]
    assert starts == [0, 128, 256, 384, 512]


def test_streamed_evaluate_equals_the_in_memory_metrics(run: Run, new: Path):
    split = load_labelled(f"csv:{new / 'all.csv'}", run.schema, run.config.data)
    expected = run.evaluate(split)
    for source in ("parquet", "csv/*.csv"):
        assert evaluate_file(run, str(new / source), batch_rows=100) == expected
    result = runner.invoke(
        app, ["evaluate", str(run.path), "--data", str(new / "parquet"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"] == expected


def test_a_bad_shard_is_named_and_exits_2(run: Run, new: Path, tmp_path: Path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for part in (new / "parquet").glob("*.parquet"):
        (folder / part.name).write_bytes(part.read_bytes())
    (folder / "part-9.parquet").write_bytes(b"not parquet at all")
    result = runner.invoke(app, ["predict", str(run.path), str(folder), "--out", "x.csv"])
    assert result.exit_code == 2
    assert "part-9.parquet (shard 5 of 5)" in result.output
    assert "Traceback" not in result.output


def test_a_shard_without_a_model_column_is_named(run: Run, new: Path, tmp_path: Path):
    folder = tmp_path / "shards"
    folder.mkdir()
    _table(20, seed=2).to_csv(folder / "a.csv", index=False)
    _table(20, seed=3).drop(columns=["px5"]).to_csv(folder / "b.csv", index=False)
    with pytest.raises(DataError, match=r"b\.csv lacks the column\(s\) px5"):
        evaluate_file(run, str(folder))
    result = runner.invoke(app, ["predict", str(run.path), str(folder), "--out", "x.csv"])
    assert result.exit_code == 2 and "px5" in result.output


@pytest.mark.parametrize(
    ("source", "args", "message"),
    [
        ("nothing/*.parquet", [], "matches no file"),
        ("mixed", [], "several kinds"),
        ("all.csv", ["--batch-rows", "0"], "batch-rows"),
    ],
)
def test_bad_input_exits_2_with_one_message(
    run: Run, new: Path, tmp_path: Path, source: str, args: list[str], message: str
):
    mixed = new / "mixed"
    mixed.mkdir(exist_ok=True)
    (mixed / "a.csv").write_text((new / "csv" / "part-0.csv").read_text())
    (mixed / "b.parquet").write_bytes((new / "parquet" / "part-0.parquet").read_bytes())
    out = str(tmp_path / "p.csv")
    result = runner.invoke(app, ["predict", str(run.path), str(new / source), "--out", out, *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not Path(out).exists()  # nothing half-written


def test_shards_without_out_exit_2_asking_for_a_file(run: Run, new: Path):
    result = runner.invoke(app, ["predict", str(run.path), str(new / "parquet")])
    assert result.exit_code == 2
    assert "4 shard(s)" in result.output and "--out FILE.parquet" in result.output
