"""Tables: preprocessing fitted on train rows only, one-hot and embed, imputation, targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gradwise.data.sources import load_dataset
from gradwise.data.tabular import MISSING, OTHER
from gradwise.data.target import infer_task
from gradwise.errors import DataError
from tests.data.conftest import data_config, row_ids
from tests.shared import need_shared

SPLIT = {"val": 0.2, "test": 0.2}


def _frame(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "income": rng.normal(50.0, 10.0, n).round(3),
            "city": rng.choice(["paris", "oslo", "rome"], n),
            "label": rng.choice(["yes", "no"], n),
        }
    )


def _load(df: pd.DataFrame, tmp_path: Path, seed: int = 0, **fields):
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    fields = {"target": "label", "split": SPLIT, **fields}
    return load_dataset(data_config(f"csv:{path}", **fields), seed=seed)


def test_statistics_and_vocabulary_come_from_training_rows_only(tmp_path: Path):
    df = _frame()
    clean = _load(df, tmp_path)
    test_ids = row_ids(clean.test.x, clean.schema.tabular)
    df.loc[test_ids, "income"] = 1e6  # outliers and a new city only where the model cannot learn
    df.loc[test_ids, "city"] = "atlantis"

    data = _load(df, tmp_path)
    prep = data.schema.tabular
    train_ids = row_ids(data.train.x, prep)
    assert sorted(row_ids(data.test.x, prep)) == sorted(test_ids)  # split ignores the features
    income = df.loc[train_ids, "income"]
    j = prep.numeric.index("income")
    assert prep.means[j] == pytest.approx(income.mean())
    assert prep.stds[j] == pytest.approx(income.std(ddof=0))
    assert prep.medians[j] == pytest.approx(income.median())
    assert prep.vocab[prep.categorical.index("city")] == [OTHER, "oslo", "paris", "rome"]
    other = prep.feature_names.index(f"city={OTHER}")
    assert torch.all(data.test.x[:, other] == 1)
    assert torch.all(data.train.x[:, other] == 0)


@pytest.mark.parametrize("encoding", ["onehot", "embed"])
def test_transform_of_raw_rows_reproduces_every_split(tmp_path: Path, encoding: str):
    df = _frame()
    df.loc[df.id % 7 == 0, "income"] = np.nan
    df.loc[df.id % 9 == 0, "city"] = np.nan
    data = _load(df, tmp_path, categorical=encoding)
    raw = pd.read_csv(tmp_path / "table.csv")  # as a user holds the rows
    schema = data.schema
    for split in (data.train, data.val, data.test):
        rows = raw.iloc[row_ids(split.x, schema.tabular)]
        assert torch.equal(torch.from_numpy(schema.transform(rows)), split.x)
        plain = rows[schema.tabular.columns].to_numpy(dtype=object)  # rows without a header
        assert torch.equal(torch.from_numpy(schema.transform(plain)), split.x)
        assert torch.equal(
            torch.from_numpy(schema.target.encode(rows["label"].to_numpy())), split.y
        )


def test_onehot_gives_one_column_per_category_and_embed_one_code_per_column(tmp_path: Path):
    onehot = _load(_frame(), tmp_path, categorical="onehot")
    embed = _load(_frame(), tmp_path, categorical="embed")
    vocab = [OTHER, "oslo", "paris", "rome"]
    assert onehot.schema.input_shape == [2 + len(vocab)]
    assert onehot.schema.categorical == []
    assert torch.all(onehot.train.x[:, 2:].sum(dim=1) == 1)
    assert embed.schema.input_shape == [3]
    assert embed.schema.categorical == [len(vocab)]
    codes = embed.train.x[:, -1]
    ids = row_ids(embed.train.x, embed.schema.tabular)
    expected = [vocab.index(c) for c in _frame().loc[ids, "city"]]
    assert codes.tolist() == expected


def test_missing_values_take_the_train_median_and_a_missing_category(tmp_path: Path):
    df = _frame()
    df.loc[df.id % 5 == 0, "income"] = np.nan  # 16 rows, in every split
    df.loc[df.id % 11 == 0, "city"] = np.nan  # 8 rows
    data = _load(df, tmp_path)
    prep = data.schema.tabular
    train_ids = row_ids(data.train.x, prep)
    j = prep.numeric.index("income")
    assert prep.medians[j] == pytest.approx(df.loc[train_ids, "income"].median())

    x = torch.cat([data.train.x, data.val.x, data.test.x])
    ids = row_ids(x, prep)
    imputed = x[np.isin(ids, df.index[df.income.isna()]), j].double()
    assert torch.allclose(
        imputed * prep.stds[j] + prep.means[j], torch.tensor(prep.medians[j]).double()
    )
    missing_city = prep.feature_names.index(f"city={MISSING}")
    assert torch.equal(x[:, missing_city] == 1, torch.from_numpy(df.city.isna().to_numpy()[ids]))
    assert any("16 missing values in column 'income'" in note for note in data.notes)
    assert any("8 missing values in column 'city'" in note for note in data.notes)


def test_unseen_and_missing_categories_in_new_rows(tmp_path: Path):
    df = _frame()
    df.loc[df.id % 11 == 0, "city"] = np.nan
    schema = _load(df, tmp_path).schema
    new = pd.DataFrame(
        {"id": [1, 2, 3], "income": [50.0, None, 40.0], "city": ["tokyo", None, "rome"]}
    )
    x = schema.transform(new)
    names = schema.feature_names
    hot = [names[i] for i in x[:, 2:].argmax(axis=1) + 2]
    assert hot == [f"city={OTHER}", f"city={MISSING}", "city=rome"]
    j = names.index("income")
    assert x[1, j] * schema.tabular.stds[j] + schema.tabular.means[j] == pytest.approx(
        schema.tabular.medians[j], rel=1e-5
    )


def test_a_missing_value_in_new_rows_maps_to_other_when_train_had_none(tmp_path: Path):
    schema = _load(_frame(), tmp_path).schema
    x = schema.transform(pd.DataFrame({"id": [0], "income": [1.0], "city": [None]}))
    assert x[0, schema.feature_names.index(f"city={OTHER}")] == 1


def test_new_rows_lacking_a_training_column_are_refused(tmp_path: Path):
    schema = _load(_frame(), tmp_path).schema
    with pytest.raises(DataError, match="lacks the column.*city"):
        schema.transform(pd.DataFrame({"id": [0], "income": [1.0]}))
    with pytest.raises(DataError, match="expected rows of 3 raw columns"):
        schema.transform(np.zeros((2, 5)))


def test_regression_target_is_standardised_with_train_statistics(tmp_path: Path):
    df = _frame()
    df["label"] = np.random.default_rng(1).normal(200.0, 30.0, len(df))
    data = _load(df, tmp_path)
    spec = data.schema.target
    assert data.schema.task == "regression"
    assert data.schema.n_outputs == 1
    train_ids = row_ids(data.train.x, data.schema.tabular)
    y_train = df.loc[train_ids, "label"]
    assert spec.mean == pytest.approx([y_train.mean()])
    assert spec.std == pytest.approx([y_train.std(ddof=0)])
    assert data.train.y.dtype == torch.float32 and data.train.y.shape == (len(train_ids), 1)
    decoded = spec.decode(data.train.y.numpy())[:, 0]
    assert decoded == pytest.approx(y_train.to_numpy(), rel=1e-5)


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (np.array(["a", "b", "a", "c"]), "classification"),
        (np.array([True, False, True]), "classification"),
        (np.array([0, 1, 2, 1, 0]), "classification"),
        (np.array([0.0, 1.0, 1.0, 0.0]), "classification"),
        (np.random.default_rng(0).normal(size=100), "regression"),
        (np.arange(200), "regression"),
        (np.arange(30, dtype=np.float64), "regression"),
    ],
    ids=["strings", "bools", "small-ints", "integer-floats", "floats", "many-ints", "many-floats"],
)
def test_task_is_inferred_from_target_values(y: np.ndarray, task: str):
    assert infer_task(y, "auto") == task


def test_task_set_in_the_config_overrides_inference(tmp_path: Path):
    df = _frame()
    df["label"] = df.id % 3  # small integers: classification unless told otherwise
    auto = _load(df, tmp_path)
    forced = _load(df, tmp_path, task="regression")
    assert (auto.schema.task, auto.schema.classes) == ("classification", [0, 1, 2])
    assert forced.schema.task == "regression" and forced.schema.classes is None
    assert forced.train.y.dtype == torch.float32

    df["label"] = np.random.default_rng(0).normal(size=len(df)).round(1)
    classes = _load(df, tmp_path, task="classification")
    assert classes.schema.task == "classification"
    assert classes.schema.classes == sorted(set(df.label))


def test_a_text_target_cannot_be_forced_to_regression(tmp_path: Path):
    with pytest.raises(DataError, match="'label' holds non-numeric values"):
        _load(_frame(), tmp_path, task="regression")


def test_nan_in_the_target_is_refused_naming_the_column(tmp_path: Path):
    df = _frame()
    df.loc[[3, 10], "label"] = np.nan
    with pytest.raises(
        DataError, match=r"Target column 'label' has 2 missing values \(rows 3, 10\)"
    ):
        _load(df, tmp_path)


def test_unknown_target_column_lists_the_columns(tmp_path: Path):
    with pytest.raises(DataError, match="'price' not found.*Columns: id, income, city, label"):
        _load(_frame(), tmp_path, target="price")


def test_no_target_asks_for_one(tmp_path: Path):
    with pytest.raises(DataError, match="set data.target"):
        _load(_frame(), tmp_path, target=None)


def test_a_headerless_csv_gets_a_hint_to_name_the_columns(tmp_path: Path):
    path = tmp_path / "plain.csv"
    _frame()[["id", "income"]].to_csv(path, index=False, header=False)
    with pytest.raises(DataError, match="looks like data, not a header.*data.columns"):
        load_dataset(data_config(f"csv:{path}", target="income"), seed=0)


def test_drop_removes_columns_and_unknown_names_are_refused(tmp_path: Path):
    data = _load(_frame(), tmp_path, drop=["city"])
    assert data.schema.tabular.columns == ["id", "income"]
    with pytest.raises(DataError, match="data.drop names 'town', not in the data"):
        _load(_frame(), tmp_path, drop=["town"])
    with pytest.raises(DataError, match="data.drop names 'incme' \\(did you mean 'income'\\?\\)"):
        _load(_frame(), tmp_path, drop=["incme"])


def test_dropping_every_input_column_is_refused(tmp_path: Path):
    with pytest.raises(DataError, match="No input columns are left"):
        _load(_frame(), tmp_path, drop=["id", "income", "city"])


def test_parquet_reads_like_csv(tmp_path: Path):
    df = _frame()
    from_csv = _load(df, tmp_path)
    df.to_parquet(tmp_path / "table.parquet", index=False)
    cfg = data_config(f"parquet:{tmp_path / 'table.parquet'}", target="label", split=SPLIT)
    from_parquet = load_dataset(cfg, seed=0)
    assert from_parquet.schema.tabular == from_csv.schema.tabular
    assert torch.equal(from_parquet.train.x, from_csv.train.x)


def test_limit_keeps_the_first_rows(tmp_path: Path):
    data = _load(_frame(), tmp_path, limit=30)
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    assert sorted(row_ids(x, data.schema.tabular)) == list(range(30))


def test_headerless_adult_slice_with_columns_and_na_values():
    names = [
        "age",
        "workclass",
        "fnlwgt",
        "education",
        "education_num",
        "marital",
        "occupation",
        "relationship",
        "race",
        "sex",
        "gain",
        "loss",
        "hours",
        "country",
        "income",
    ]
    cfg = data_config(
        f"csv:{need_shared('adult', 'adult-train.csv')}",
        target="income",
        columns=names,
        na_values=["?"],
        limit=300,
    )
    data = load_dataset(cfg, seed=0)
    assert data.schema.classes == ["<=50K", ">50K"]
    assert len(data.train) + len(data.val) + len(data.test) == 300
    prep = data.schema.tabular
    assert prep.numeric == ["age", "fnlwgt", "education_num", "gain", "loss", "hours"]
    assert "?" not in prep.vocab[prep.categorical.index("workclass")]
    assert any("missing values in column 'workclass'" in note for note in data.notes)


def test_builtin_table_is_tabular_with_named_classes():
    data = load_dataset(data_config("builtin:iris", split=SPLIT), seed=0)
    assert data.schema.kind == "tabular"
    assert data.schema.classes == ["setosa", "versicolor", "virginica"]
    assert data.schema.input_shape == [4]
    assert len(data.train) + len(data.val) + len(data.test) == 150


def test_a_semicolon_separated_csv_reads_like_a_comma_one(tmp_path: Path):
    df = _frame()
    from_commas = _load(df, tmp_path)
    df.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    cfg = data_config(f"csv:{tmp_path / 'semi.csv'}", target="label", separator=";", split=SPLIT)
    from_semicolons = load_dataset(cfg, seed=0)
    assert from_semicolons.schema.tabular == from_commas.schema.tabular
    assert torch.equal(from_semicolons.train.x, from_commas.train.x)


def test_text_in_a_numeric_column_at_predict_time_names_the_column_and_rows(tmp_path: Path):
    data = _load(_frame(), tmp_path)
    new = _frame().head(8).copy()
    new["income"] = new["income"].astype(object)
    new.loc[[2, 5], "income"] = "n/a?"
    with pytest.raises(DataError, match=r"Column 'income' is numeric.*2 row\(s\) \(rows 2, 5"):
        data.schema.transform(new)
    new.loc[[2, 5], "income"] = None  # an empty value is imputed as in training
    assert np.isfinite(data.schema.transform(new)).all()
