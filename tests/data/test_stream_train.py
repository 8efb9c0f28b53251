"""Training from a table read as a stream (data.stream): the hash split, the epochs' batches,
the held rows Run.split returns, and an exact resume from a checkpoint inside an epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import gradwise
from gradwise.config import DataConfig
from gradwise.data.hash_split import TEST, TRAIN, split_codes
from gradwise.data.sources import load_dataset
from gradwise.data.stream_train import StreamBatcher, encode_rows
from gradwise.errors import DataError


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    colour = rng.choice(["red", "green", "blue"], n)
    y = (x[:, 0] + x[:, 1] * x[:, 2] + (colour == "red") > 0.3).astype(int)
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    df["colour"] = colour
    df["customer"] = rng.integers(0, 400, n)
    df["label"] = np.where(y == 1, "yes", "no")
    return df


def _shards(df: pd.DataFrame, folder: Path, kind: str, cuts: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(df)])):
        part = df.iloc[a:b]
        if kind == "csv":
            part.to_csv(folder / f"part-{i:02d}.csv", index=False)
        else:
            part.to_parquet(folder / f"part-{i:02d}.parquet")
    return folder


def _cfg(source: str, **data: Any) -> dict[str, Any]:
    return {
        "seed": 3,
        "data": {"source": source, "target": "label", "stream": True, **data},
        "model": {"arch": "mlp", "hidden": [16], "dropout": 0.0},
        "train": {"epochs": 6, "batch_size": 64, "diagnostics": False, "optimizer": {"lr": 0.01}},
    }


def test_a_streamed_table_splits_like_the_whole_table_with_hash_order(tmp_path: Path) -> None:
    df = _table()
    df.to_parquet(tmp_path / "whole.parquet")
    folder = _shards(df, tmp_path / "shards", "parquet", [700, 701, 2000])  # one 1-row shard
    whole = DataConfig(
        source=f"parquet:{tmp_path / 'whole.parquet'}",
        target="label",
        split={"order": "hash"},  # type: ignore[arg-type]
    )
    streamed = DataConfig(source=f"parquet:{folder}", target="label", stream=True)
    a, b = load_dataset(whole, 5), load_dataset(streamed, 5)
    for name in ("train", "val", "test"):
        assert a.source_rows(name).tolist() == b.source_rows(name).tolist()
    expected = np.flatnonzero(split_codes(np.arange(len(df)), None, 5, 0.15, 0.2) == TEST)
    assert b.source_rows("test").tolist() == expected.tolist()
    # the whole training split fits the stream's sample, so the preprocessing is the same
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert b.stream is not None and b.stream.n_train == len(a.train)


def test_groups_stay_in_one_split_and_samples_are_stated(tmp_path: Path) -> None:
    df = _table(4000)
    folder = _shards(df, tmp_path / "csv", "csv", [1500, 3000])
    cfg = DataConfig(
        source=f"csv:{folder}",
        target="label",
        stream=True,
        stream_holdout=100,
        stream_sample=300,
        split={"by": "customer"},  # type: ignore[arg-type]
    )
    data = load_dataset(cfg, 0)
    assert data.stream is not None
    assert (len(data.train), len(data.val), len(data.test)) == (300, 100, 100)
    codes = split_codes(np.arange(len(df)), df["customer"], 0, 0.15, 0.2)
    assert data.stream.n_rows["test"] == int((codes == TEST).sum())
    test_customers = set(df["customer"][codes == TEST])
    assert not test_customers & set(df["customer"][codes == TRAIN])
    held = data.raw.loc[data.source_rows("test")]
    assert set(held["customer"]) <= test_customers
    assert "test 100 of" in " ".join(data.notes)


def test_each_epoch_reads_every_training_row_once_in_its_own_order(tmp_path: Path) -> None:
    df = _table(2000)
    folder = _shards(df, tmp_path / "p", "parquet", [600, 1300])
    cfg = DataConfig(source=f"parquet:{folder}", target="label", stream=True, stream_buffer=256)
    data = load_dataset(cfg, 1)
    assert data.stream is not None
    batcher = StreamBatcher(data.stream, 100, seed=9, device=torch.device("cpu"))
    train_rows = df.iloc[np.flatnonzero(split_codes(np.arange(2000), None, 1, 0.15, 0.2) == 0)]
    x_all, _ = encode_rows(train_rows, data.schema, cfg)

    def epoch(e: int, skip: int = 0) -> torch.Tensor:
        batcher.begin(e, skip)
        batches = list(batcher)
        assert all(len(xb) == 100 for xb, _ in batches[:-1])
        return torch.cat([xb for xb, _ in batches])

    one, two = epoch(1), epoch(2)
    assert len(batcher) == -(-len(train_rows) // 100)
    assert len(one) == len(train_rows) == len(two)
    key = lambda t: np.lexsort(t.numpy().T)  # noqa: E731
    assert np.array_equal(one.numpy()[key(one)], x_all[key(torch.from_numpy(x_all))])
    assert not torch.equal(one, two)  # a new order each epoch
    assert torch.equal(epoch(1), one)  # and the same order for the same epoch
    assert torch.equal(epoch(1, skip=3), one[300:])


def test_a_streamed_run_trains_and_returns_its_held_test_rows(tmp_path: Path) -> None:
    df = _table(3000)
    folder = _shards(df, tmp_path / "csv", "csv", [1000, 2000])
    run = gradwise.train(_cfg(f"csv:{folder}"), out=tmp_path / "run")
    test = run.split("test")
    expected = np.flatnonzero(split_codes(np.arange(3000), None, 3, 0.15, 0.2) == TEST)
    assert test.rows.tolist() == expected.tolist()
    assert test.raw["a"].tolist() == df["a"].iloc[expected].tolist()
    metrics = run.metrics
    assert metrics["n_train"] == int((split_codes(np.arange(3000), None, 3, 0.15, 0.2) == 0).sum())
    assert metrics["test"]["accuracy"] > 0.8  # a learnable rule: far above the 50% majority
    assert gradwise.load(tmp_path / "run").evaluate("test")["accuracy"] == pytest.approx(
        metrics["test"]["accuracy"]
    )


class _Crash(Exception):
    pass


def test_a_run_stopped_inside_an_epoch_resumes_to_the_same_weights(tmp_path: Path) -> None:
    df = _table(3000)
    folder = _shards(df, tmp_path / "p", "parquet", [1000, 2000])
    cfg = _cfg(f"parquet:{folder}", stream_buffer=300)
    cfg["train"] |= {"epochs": 3, "checkpoint_every_s": 0}
    whole = gradwise.train(cfg, out=tmp_path / "whole")

    def crash(epoch: int, done: int, total: int) -> None:
        if epoch == 2 and done == 13:
            raise _Crash  # as a kill right after batch 13 and its checkpoint

    with pytest.raises(_Crash):
        gradwise.train(cfg, out=tmp_path / "cut", progress=crash)
    resumed = gradwise.train(cfg, out=tmp_path / "cut", resume=True)
    assert "resumed in epoch 2 of 3 after batch" in (tmp_path / "cut/train.log").read_text()
    a = load_file(str(tmp_path / "whole/model.safetensors"))
    b = load_file(str(tmp_path / "cut/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [r["train.loss"] for r in resumed.history]
    assert records == [r["train.loss"] for r in whole.history]


def test_what_a_stream_cannot_do_is_refused_with_the_fix(tmp_path: Path) -> None:
    df = _table(500)
    df.to_parquet(tmp_path / "t.parquet")
    source = f"parquet:{tmp_path / 't.parquet'}"
    with pytest.raises(DataError, match="data.limit does not apply to data.stream"):
        load_dataset(DataConfig(source=source, target="label", stream=True, limit=10), 0)
    random = {"order": "random"}
    with pytest.raises(DataError, match="Set data.split.order: hash"):
        load_dataset(DataConfig(source=source, target="label", stream=True, split=random), 0)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="holds no csv or parquet table"):
        load_dataset(DataConfig(source=f"parquet:{tmp_path}/none", target="x", stream=True), 0)
