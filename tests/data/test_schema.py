"""The schema survives JSON (model.json) and transforms new data exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradwise.data.sources import load_dataset
from gradwise.data.stored_schema import schema_from_dict
from tests.data.conftest import data_config, write_idx, write_image_folder


def _table(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 60).astype(float),
            "plan": rng.choice(["basic", "pro", "max"], 60),
            "churn": rng.choice([True, False], 60),
        }
    )
    df.loc[::7, "age"] = np.nan
    df.loc[::9, "plan"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    return df


def _series(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"temp": rng.normal(size=80), "load": rng.normal(size=80).cumsum()})
    df.to_csv(tmp_path / "s.csv", index=False)
    return df


def _case(kind: str, tmp_path: Path):
    """(config, raw new data) for one kind of source."""
    rng = np.random.default_rng(1)
    match kind:
        case "onehot" | "embed":
            df = _table(tmp_path)
            cfg = data_config(f"csv:{tmp_path / 't.csv'}", target="churn", categorical=kind)
            new = pd.DataFrame({"age": [30.0, None], "plan": ["pro", "unknown"]})
            return cfg, pd.concat([df.drop(columns="churn"), new])
        case "regression":
            df = _table(tmp_path).assign(churn=rng.normal(size=60))
            df.to_csv(tmp_path / "t.csv", index=False)
            return data_config(f"csv:{tmp_path / 't.csv'}", target="churn"), df
        case "npz":
            np.savez(tmp_path / "a.npz", X=rng.normal(size=(40, 3, 4)), y=rng.normal(size=40))
            return data_config(f"npz:{tmp_path / 'a.npz'}"), rng.normal(size=(5, 3, 4))
        case "images":
            write_image_folder(tmp_path / "imgs", n_per_class=4, size=5, mode="RGB")
            raw = rng.integers(0, 256, (3, 3, 5, 5))
            return data_config(f"images:{tmp_path / 'imgs'}"), raw
        case "idx":
            write_idx(tmp_path / "m", rng.integers(0, 256, (30, 4, 4)), np.arange(30) % 2, True)
            return data_config(f"idx:{tmp_path / 'm'}"), rng.integers(0, 256, (3, 4, 4))
        case "timeseries":
            df = _series(tmp_path)
            cfg = data_config(
                f"timeseries:{tmp_path / 's.csv'}",
                target="load",
                features=["temp", "load"],
                window=6,
                horizon=2,
            )
            return cfg, df
        case "char" | "byte":
            (tmp_path / "c.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
            cfg = data_config(f"text:{tmp_path / 'c.txt'}", tokenizer=kind, block_size=8)
            return cfg, "the lazy fox é!"
    raise AssertionError(kind)


KINDS = ["onehot", "embed", "regression", "npz", "images", "idx", "timeseries", "char", "byte"]


@pytest.mark.parametrize("kind", KINDS)
def test_schema_round_trips_through_json(tmp_path: Path, kind: str):
    cfg, raw = _case(kind, tmp_path)
    schema = load_dataset(cfg, seed=0).schema
    restored = schema_from_dict(json.loads(json.dumps(schema.to_dict())))
    assert restored == schema
    assert np.array_equal(restored.transform(raw), schema.transform(raw))
    assert restored.feature_names == schema.feature_names
    assert restored.classes == schema.classes
    if schema.target.mean is not None:
        out = np.linspace(-1, 1, 4 * schema.n_outputs).reshape(4, -1)
        assert np.array_equal(restored.target.decode(out), schema.target.decode(out))


def test_boolean_and_integer_classes_keep_their_type_through_json(tmp_path: Path):
    _table(tmp_path)
    schema = load_dataset(data_config(f"csv:{tmp_path / 't.csv'}", target="churn"), seed=0).schema
    restored = schema_from_dict(json.loads(json.dumps(schema.to_dict())))
    assert restored.classes == [False, True]
    assert all(type(c) is bool for c in restored.classes)
    assert restored.target.encode(np.array([True, False])).tolist() == [1, 0]
