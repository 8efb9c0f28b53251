"""Property-based: any config and input file a person might write ends in exit 0, or exit 2
with one message — never a traceback.

Hypothesis generates configs (wrong types, unknown and missing keys, values out of range,
sources of every kind) and data files (missing and extra columns, empty files, NaN, text in
numbers, huge values, wrong array shapes) and runs them through the CLI in-process.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from tests.conftest import tiny_config

runner = CliRunner()
CASES = {"train": 0, "predict": 0, "exit_2": 0}
N_EXAMPLES = int(os.environ.get("GRADWISE_FUZZ_EXAMPLES", "120"))
DERANDOMIZE = "GRADWISE_FUZZ_EXAMPLES" not in os.environ  # CI: the same cases every run

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-(10**12), 10**12),
    st.sampled_from(["", "n/a", "abc", "1e400", '"q', "NaN", " 3 "]),
    st.none(),
)


@st.composite
def tables(draw: Any) -> pd.DataFrame:
    n_cols = draw(st.integers(1, 4))
    n_rows = draw(st.integers(0, 25))
    names = draw(
        st.lists(
            st.sampled_from(["a", "b", "label", "x y", "1", "target"]),
            min_size=n_cols,
            max_size=n_cols,
            unique=True,
        )
    )
    data = {name: draw(st.lists(cells, min_size=n_rows, max_size=n_rows)) for name in names}
    return pd.DataFrame(data)


@st.composite
def arrays(draw: Any) -> dict[str, np.ndarray]:
    shape = draw(st.sampled_from([(0, 4), (10, 4), (10, 1, 8, 8), (10, 3, 2), (10,), (5, 1, 4, 4)]))
    x = np.asarray(
        draw(st.lists(cells.filter(lambda v: isinstance(v, (int, float))), min_size=1, max_size=1))
        * int(np.prod(shape))
        or [0.0]
    )
    x = np.resize(x.astype(np.float64), shape)
    out = {"X": x}
    if draw(st.booleans()):
        out["y"] = np.resize(np.arange(3), draw(st.sampled_from([shape[0], max(shape[0] - 1, 0)])))
    return out


def _value(draw: Any) -> Any:
    return draw(
        st.one_of(
            st.integers(-3, 70),
            st.floats(-1.0, 2.0),
            st.sampled_from(["", "ten", "auto", True, None, [], [8], {"a": 1}]),
        )
    )


@st.composite
def configs(draw: Any, folder: Path) -> dict[str, Any]:
    cfg = tiny_config(train={"epochs": 1, "batch_size": 8, "diagnostics": False})
    kind = draw(st.sampled_from(["builtin", "csv", "npz", "text", "nonsense"]))
    if kind == "csv":
        draw(tables()).to_csv(folder / "t.csv", index=False)
        cfg["data"] = {
            "source": f"csv:{folder / 't.csv'}",
            "target": draw(st.sampled_from(["label", "a", "zzz"])),
        }
    elif kind == "npz":
        np.savez(folder / "a.npz", **draw(arrays()))
        cfg["data"] = {"source": f"npz:{folder / 'a.npz'}"}
    elif kind == "text":
        (folder / "c.txt").write_text(draw(st.text(max_size=300)))
        cfg["data"] = {"source": f"text:{folder / 'c.txt'}", "block_size": draw(st.integers(2, 40))}
        cfg["model"] = {"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 8}
    elif kind == "nonsense":
        cfg["data"] = {
            "source": draw(st.sampled_from(["digits", "csv:", "xls:f.xls", "builtin:nope"]))
        }
    else:
        cfg["data"] = {
            "source": draw(st.sampled_from(["builtin:iris", "builtin:digits"])),
            "limit": 60,
        }
    for _ in range(draw(st.integers(0, 3))):
        section, key = draw(
            st.sampled_from(
                [
                    ("model", "hidden"),
                    ("model", "dropout"),
                    ("model", "arch"),
                    ("model", "hiden"),
                    ("train", "epochs"),
                    ("train", "batch_size"),
                    ("train", "grad_clip"),
                    ("data", "split"),
                    ("data", "target"),
                    ("data", "window"),
                    ("data", "augment"),
                    ("train", "early_stopping"),
                    ("train", "optimizer"),
                    ("seed", None),
                ]
            )
        )
        if key is None:
            cfg[section] = _value(draw)
        else:
            cfg.setdefault(section, {})
            if isinstance(cfg[section], dict):
                cfg[section][key] = _value(draw)
    if draw(st.booleans()):
        cfg["train"] = {**cfg.get("train", {}), "epochs": 1}  # keep the valid ones quick
    return cfg


def _check(result: Any) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        CASES["exit_2"] += 1
        assert "error" in result.output.lower(), result.output


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=DERANDOMIZE,
)
@given(data=st.data())
def test_any_config_trains_or_exits_2_with_a_message(data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = data.draw(configs(folder))
        (folder / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
        result = runner.invoke(
            app, ["train", str(folder / "c.yaml"), "--out", str(folder / "r"), "-q"]
        )
        CASES["train"] += 1
        _check(result)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.choice(["u", "v"], 80)})
    frame["label"] = (frame["a"] > 0).astype(int)
    frame.to_csv(folder / "train.csv", index=False)
    cfg = tiny_config(data={"source": f"csv:{folder / 'train.csv'}", "target": "label"})
    return gradwise.train(cfg, out=folder / "r").path


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=DERANDOMIZE,
)
@given(data=st.data())
def test_any_input_file_predicts_or_exits_2_with_a_message(table_run: Path, data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        choice = data.draw(st.sampled_from(["csv", "npz", "empty", "binary", "missing"]))
        path = folder / {"npz": "x.npz", "binary": "x.parquet"}.get(choice, "x.csv")
        if choice == "csv":
            data.draw(tables()).to_csv(path, index=False)
        elif choice == "npz":
            np.savez(path, **data.draw(arrays()))
        elif choice == "empty":
            path.write_text("")
        elif choice == "binary":
            path.write_bytes(data.draw(st.binary(max_size=64)))
        args = ["predict", str(table_run), str(path)]
        if data.draw(st.booleans()):
            args += ["--keep", data.draw(st.sampled_from(["a", "nope", "a,b"]))]
        CASES["predict"] += 1
        _check(runner.invoke(app, args))


def test_report_how_many_cases_ran() -> None:
    # runs last in this file: the counts are what the two properties above generated
    assert CASES["train"] + CASES["predict"] >= 2 * N_EXAMPLES, CASES
    print(f"\nfuzz cases: {CASES}")
