"""The whole flow on data gradwise has never seen: every verb on a small slice of every shared
data set and on generated awkward ones, as a user would run them from the command line.

Each cell trains with tiny settings, then runs evaluate, predict (--keep, and --intervals
once the uncertainty audit has stored them), the report before any evidence (and every
`gradwise ...` command that page tells the user to run), audit (every check, lightened),
explain, optimize, bench, the report again, a few requests to the server and monitor on
what it stored. Every step must end with exit 0, 2 or 3 (4 only with --fail-on) and a
message, never a traceback; predictions must line up with the rows they were asked for.

The full matrix is marked `matrix` (CI runs it: `make matrix`); `make test` runs the cells
in SAMPLE, one of each kind.
"""

from __future__ import annotations

import re
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gradwise.cli import app
from tests.shared import need_shared

runner = CliRunner()

LIGHT_AUDIT = [
    "audit.generalisation.fractions=[0.5,1.0]",
    "audit.generalisation.seeds=1",
    "audit.data_quality.folds=2",
    "audit.robustness.max_samples=64",
    "audit.robustness.steps=3",
    "audit.shift.permutations=50",
]


@dataclass(frozen=True)
class Cell:
    """A data set and the config a user would write for it.

    Attributes:
        predict: a file of new rows to predict on (None: the verb is skipped, e.g. text LMs).
        rows: how many answers `predict` must give for it.
        keep: columns `predict --keep` copies (tables and series).
        same_keep: the kept column must come back as given, in order (one answer per row).
        refused: training must refuse this data with exit 2 and a message containing this.
    """

    config: dict[str, Any]
    predict: Path | None = None
    rows: int = 0
    keep: str | None = None
    same_keep: bool = False
    refused: str | None = None


def _config(name: str, data: dict[str, Any], model: dict[str, Any], **train: Any) -> dict:
    return {
        "name": name,
        "seed": 0,
        "data": data,
        "model": model,
        "train": {"epochs": 2, "batch_size": 64, **train},
    }


MLP = {"arch": "mlp", "hidden": [16], "dropout": 0.0}
LSTM = {"arch": "lstm", "hidden": 8}


def _table(tmp: Path, df: pd.DataFrame, target: str, **data: Any) -> Cell:
    path = tmp / "table.csv"
    df.to_csv(path, index=False)
    new = tmp / "new.csv"
    df.drop(columns=[target]).tail(25).to_csv(new, index=False)
    source = {"source": f"csv:{path}", "target": target, **data}
    cell = Cell(_config("table", source, MLP), predict=new, rows=25, keep=str(df.columns[0]))
    return dataclass_replace(cell, same_keep=True)


def _series(tmp: Path, df: pd.DataFrame, target: str, window: int, **data: Any) -> Cell:
    path = tmp / "series.csv"
    df.to_csv(path, index=False)
    new = tmp / "new.csv"
    df.tail(window + 6).to_csv(new, index=False)
    source = {"source": f"timeseries:{path}", "target": target, "window": window, **data}
    return Cell(
        _config("series", source, LSTM, batch_size=32),
        predict=new,
        keep=str(df.columns[0]),
        rows=7,  # one forecast per full window: window + 6 rows hold 7 of them
    )


# ------------------------------------------------------------------ the shared data sets

ADULT = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


def adult(tmp: Path) -> Cell:
    path = need_shared("adult", "adult-train.csv")
    df = pd.read_csv(path, names=ADULT, skipinitialspace=True, na_values=["?"], nrows=600)
    return _table(tmp, df, "income")


def german_credit(tmp: Path) -> Cell:
    df = pd.read_csv(need_shared("german_credit", "german.csv"), header=None, nrows=400)
    df.columns = [f"a{i}" for i in range(df.shape[1] - 1)] + ["risk"]
    return _table(tmp, df, "risk", task="classification")


def mammography(tmp: Path) -> Cell:
    df = pd.read_csv(need_shared("mammography", "mammography.csv"), header=None)
    df.columns = [f"f{i}" for i in range(df.shape[1] - 1)] + ["label"]
    return _table(tmp, df.sample(800, random_state=0), "label")  # 2.3% positives


def one_class(tmp: Path) -> Cell:
    # the file is sorted by label: its first 800 rows hold one class only
    df = pd.read_csv(need_shared("mammography", "mammography.csv"), header=None, nrows=800)
    df.columns = [f"f{i}" for i in range(df.shape[1] - 1)] + ["label"]
    return dataclass_replace(_table(tmp, df, "label"), refused="holds one class")


def ai4i(tmp: Path) -> Cell:
    path = need_shared("ai4i2020_predictive_maintenance", "ai4i2020.csv")
    df = pd.read_csv(path, nrows=600, encoding="utf-8-sig")
    failures = ["TWF", "HDF", "PWF", "OSF", "RNF"]
    return _table(tmp, df, "Machine_failure", drop=["UDI", "Product ID", *failures])


def airline(tmp: Path) -> Cell:
    df = pd.read_csv(need_shared("airline_passengers", "airline-passengers.csv"))
    return _series(tmp, df, "Passengers", window=12)


def melbourne(tmp: Path) -> Cell:
    path = need_shared("melbourne_min_temperatures", "daily-min-temperatures.csv")
    return _series(tmp, pd.read_csv(path, nrows=400), "Temp", window=14)


def beijing(tmp: Path) -> Cell:
    df = pd.read_csv(need_shared("beijing_pm25", "pollution.csv"), nrows=400)
    features = ["pm2.5", "DEWP", "TEMP", "cbwd", "Iws"]
    cell = _series(tmp, df, "pm2.5", window=24, features=features, fill="interpolate")
    return dataclass_replace(cell, keep="year,month,day,hour")


def mnist(tmp: Path) -> Cell:
    prefix = need_shared("mnist", "t10k-images-idx3-ubyte.gz").parent / "t10k"
    from gradwise.data.images import read_idx

    images, labels = read_idx(str(prefix))
    np.savez(tmp / "new.npz", X=images[:20], y=labels[:20])
    model = {"arch": "cnn", "channels": [4, 8], "dropout": 0.0}
    data = {"source": f"idx:{prefix}", "limit": 500}
    return Cell(_config("mnist", data, model), predict=tmp / "new.npz", rows=20)


def sms(tmp: Path) -> Cell:
    path = need_shared("sms_spam", "SMSSpamCollection")
    rows = [line.split("\t", 1) for line in path.read_text().splitlines()[:400]]
    df = pd.DataFrame(rows, columns=["label", "text"])
    df.to_csv(tmp / "sms.csv", index=False)
    df[["text"]].tail(10).to_csv(tmp / "new.csv", index=False)
    data = {"source": f"csv:{tmp / 'sms.csv'}", "target": "label", "text_column": "text"}
    data |= {"block_size": 48}
    model = {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0}
    return Cell(_config("sms", data, model), predict=tmp / "new.csv", rows=10)


def movie_reviews(tmp: Path) -> Cell:
    archive = need_shared("movie_review_polarity", "review_polarity.tar.gz")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".txt")]
        chosen = [m for m in members if "/pos/" in m.name][:40]
        chosen += [m for m in members if "/neg/" in m.name][:40]
        tar.extractall(tmp / "reviews", members=chosen, filter="data")
    folder = next((tmp / "reviews").rglob("pos")).parent
    data = {"source": f"text:{folder}", "block_size": 64}
    model = {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0}
    return Cell(_config("reviews", data, model))


def shakespeare(tmp: Path) -> Cell:
    data = {"source": f"text:{need_shared('tinyshakespeare', 'input.txt')}", "limit": 4000}
    data |= {"block_size": 32}
    model = {"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0}
    return Cell(_config("lm", data, model, epochs=1))


# ------------------------------------------------------------------ awkward generated data


def _mixed(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 80, n).astype(float),
            "city": rng.choice(["Oslo", "Lima", "Pune", None], n),
            "member": rng.choice([True, False], n),
            "joined": pd.date_range("2020-01-01", periods=n, freq="D").astype(str),
            "spend": rng.gamma(2.0, 50.0, n),
            "label": rng.choice(["yes", "no"], n),
        }
    )


def mixed_types(tmp: Path) -> Cell:
    df = _mixed(300)
    df.loc[::7, "spend"] = np.nan
    return _table(tmp, df, "label")


def text_in_numeric(tmp: Path) -> Cell:
    df = _mixed(300)
    df["age"] = df["age"].astype(object)
    df.loc[17, "age"] = "forty"
    cell = _table(tmp, df, "label")
    return dataclass_replace(cell, refused="'age'")


def series_with_category(tmp: Path) -> Cell:
    rng = np.random.default_rng(0)
    n = 300
    t = np.arange(n)
    df = pd.DataFrame(
        {
            "step": t,
            "wind": rng.choice(["NW", "SE", "cv"], n),
            "load": np.sin(t / 6) + rng.normal(0, 0.1, n),
        }
    )
    return _series(tmp, df, "load", window=12, features=["wind", "load"])


def missing_targets(tmp: Path) -> Cell:
    df = _mixed(200)
    df.loc[[3, 50], "label"] = None
    return dataclass_replace(_table(tmp, df, "label"), refused="missing values")


def headerless(tmp: Path) -> Cell:
    df = _mixed(300).drop(columns=["joined"])
    df = df[["id", "label", "age", "city", "member", "spend"]]  # the target in the middle
    path = tmp / "plain.csv"
    df.to_csv(path, index=False, header=False)
    new = tmp / "new.csv"
    df.drop(columns=["label"]).tail(10).to_csv(new, index=False, header=False)
    data = {"source": f"csv:{path}", "target": "label", "columns": list(df.columns)}
    return Cell(_config("plain", data, MLP), predict=new, rows=10)


def rare_class(tmp: Path) -> Cell:
    df = _mixed(300)
    df.loc[[5, 6], "label"] = "maybe"  # a class too rare to reach every split
    return _table(tmp, df, "label")


def constant_columns(tmp: Path) -> Cell:
    df = _mixed(300).assign(always=1.0, same="x")
    return _table(tmp, df, "label")


def long_text(tmp: Path) -> Cell:
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "fine", "awful", "long", "text", "here", "more"])
    texts = [" ".join(rng.choice(words, 400)) for _ in range(120)]
    labels = ["pos" if t.count("good") > t.count("bad") else "neg" for t in texts]
    df = pd.DataFrame({"text": texts, "label": labels})
    df.to_csv(tmp / "long.csv", index=False)
    df[["text"]].tail(5).to_csv(tmp / "new.csv", index=False)
    data = {"source": f"csv:{tmp / 'long.csv'}", "target": "label", "text_column": "text"}
    model = {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0}
    cell = Cell(_config("long", data | {"block_size": 64}, model), predict=tmp / "new.csv")
    return dataclass_replace(cell, rows=5)


def tiny_data(tmp: Path) -> Cell:
    return dataclass_replace(_table(tmp, _mixed(12), "label"), rows=12)


def too_few(tmp: Path) -> Cell:
    return dataclass_replace(_table(tmp, _mixed(2), "label"), refused="too few")


def grouped_windows(tmp: Path) -> Cell:
    rng = np.random.default_rng(0)
    xs, ys, gs = [], [], []
    for machine in range(12):
        walk = np.cumsum(rng.normal(size=(60, 3)), axis=0)
        views = np.lib.stride_tricks.sliding_window_view(walk, 10, axis=0).transpose(0, 2, 1)
        xs.append(views)
        ys.append(np.arange(len(views))[::-1].astype(np.float32))
        gs.append(np.full(len(views), machine))
    x = np.concatenate(xs).astype(np.float32)
    np.savez(tmp / "w.npz", X=x, y=np.concatenate(ys), groups=np.concatenate(gs))
    np.savez(tmp / "new.npz", X=x[:15], y=np.concatenate(ys)[:15])
    data = {"source": f"npz:{tmp / 'w.npz'}"}
    return Cell(_config("windows", data, LSTM), predict=tmp / "new.npz", rows=15)


def dataclass_replace(cell: Cell, **changes: Any) -> Cell:
    import dataclasses

    return dataclasses.replace(cell, **changes)


CELLS: dict[str, Callable[[Path], Cell]] = {
    "adult": adult,
    "german_credit": german_credit,
    "mammography": mammography,
    "one_class": one_class,
    "ai4i": ai4i,
    "airline": airline,
    "melbourne": melbourne,
    "beijing_pm25": beijing,
    "mnist": mnist,
    "sms_spam": sms,
    "movie_reviews": movie_reviews,
    "tinyshakespeare": shakespeare,
    "mixed_types": mixed_types,
    "text_in_numeric": text_in_numeric,
    "series_with_category": series_with_category,
    "missing_targets": missing_targets,
    "headerless": headerless,
    "rare_class": rare_class,
    "constant_columns": constant_columns,
    "long_text": long_text,
    "tiny_data": tiny_data,
    "too_few": too_few,
    "grouped_windows": grouped_windows,
}
# one of each kind in `make test`: a table, a series with a text feature, refused input
SAMPLE = ("mixed_types", "series_with_category", "text_in_numeric")


# ------------------------------------------------------------------ one user, every verb


@dataclass
class Tour:
    """What one cell's steps did: each step's exit code, in order."""

    steps: list[tuple[str, int]] = field(default_factory=list)

    def run(self, name: str, args: list[str], allowed: tuple[int, ...] = (0, 2, 3)) -> str:
        result = runner.invoke(app, args)
        output = result.output + (result.stderr if result.stderr_bytes else "")
        self.steps.append((name, result.exit_code))
        assert "Traceback" not in output, f"{name}: {args}\n{output}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{name} raised {result.exception!r}\n{output}")
        assert result.exit_code in allowed, f"{name}: exit {result.exit_code}\n{output}"
        if result.exit_code != 0:
            assert output.strip(), f"{name}: exit {result.exit_code} without a message"
        return output


def _printed_commands(page: str, run_dir: Path) -> list[list[str]]:
    """The `gradwise audit|optimize|explain ...` commands a report page tells the user to
    run for this run directory."""
    found = re.findall(r"gradwise (?:audit|optimize|explain) [^<\"'\n;,)]+", page)
    commands: dict[str, list[str]] = {}  # the first of each verb
    for text in found:
        words = shlex.split(text.replace("&#39;", "'"))[1:]
        if str(run_dir) in words:
            commands.setdefault(words[0], words)
    return list(commands.values())


def _tour(cell: Cell, tmp: Path) -> Tour:
    tour = Tour()
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cell.config))
    run_dir = tmp / "run"
    out = tour.run("train", ["train", str(config), "--out", str(run_dir), "-q"])
    if cell.refused is not None:
        assert tour.steps[-1][1] == 2, out
        assert cell.refused in out, out
        return tour
    assert tour.steps[-1][1] == 0, out
    run = str(run_dir)
    tour.run("evaluate", ["evaluate", run])
    if cell.predict is not None:
        _predict(tour, cell, run, tmp, intervals=False)
    tour.run("report (no evidence yet)", ["report", run])
    page = (run_dir / "report.html").read_text()
    for words in _printed_commands(page, run_dir)[:3]:
        tour.run("printed: " + " ".join(words[:3]), [*words, *_light(words)])
    audit_args = ["audit", run, "-q"] + [a for s in LIGHT_AUDIT for a in ("--set", s)]
    tour.run("audit", audit_args)
    if cell.predict is not None and (run_dir / "audit" / "uncertainty.json").is_file():
        _predict(tour, cell, run, tmp, intervals=True)
    tour.run("explain", ["explain", run])
    tour.run("optimize", ["optimize", run, "--onnx"])
    tour.run("bench", ["bench", run, "--batches", "1,8", "--seconds", "0.05"])
    tour.run("report", ["report", run])
    tour.run("report --fail-on", ["report", run, "--fail-on", "fail"], (0, 2, 4))
    _serve_and_monitor(tour, run_dir)
    return tour


def _light(words: list[str]) -> list[str]:
    if words[0] == "audit":
        return [a for s in LIGHT_AUDIT for a in ("--set", s)]
    return []


def _predict(tour: Tour, cell: Cell, run: str, tmp: Path, intervals: bool) -> None:
    assert cell.predict is not None
    target = tmp / ("intervals.csv" if intervals else "predictions.csv")
    args = ["predict", run, str(cell.predict), "--out", str(target)]
    if cell.keep:
        args += ["--keep", cell.keep]
    if intervals:
        args.append("--intervals")
    tour.run("predict" + (" --intervals" if intervals else ""), args)
    if tour.steps[-1][1] != 0:
        return
    answers = pd.read_csv(target)
    assert len(answers) == cell.rows, (len(answers), cell.rows, answers.head())
    assert answers.filter(like="prediction").notna().all().all(), answers.head()
    if cell.keep and cell.same_keep:  # the kept id is the input's own, in order
        given = pd.read_csv(cell.predict)[cell.keep].tolist()
        assert answers[cell.keep].tolist() == given


def _serve_and_monitor(tour: Tour, run_dir: Path) -> None:
    """A few requests through the app as `gradwise serve` builds it, then monitor."""
    from fastapi.testclient import TestClient

    import gradwise
    import gradwise.serving

    run = gradwise.load(run_dir)
    if run.schema.task in ("lm", "mlm") or run.schema.tokenizer is not None:
        return  # text models are served by their own tests
    test = run.split("test")
    store = run_dir / "monitor" / "predictions.sqlite"
    with TestClient(gradwise.serving.app(run, store=str(store), flush_interval_s=0.05)) as client:
        for i in range(0, 12, 3):  # four requests of three instances: one monitor window
            instances = [_instance(run, test.raw, i + k) for k in range(3)]
            answer = client.post("/v1/predict", json={"instances": instances})
            tour.steps.append(("serve", answer.status_code))
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == 3
    tour.run("monitor", ["monitor", str(run_dir), "--window", "10"])


def _instance(run: Any, raw: Any, i: int) -> dict[str, Any]:
    from gradwise.serving.schemas import example_instance, synthetic_instance

    i = i % len(raw)
    rows = raw.iloc[i:] if isinstance(raw, pd.DataFrame) else raw[i:]
    return example_instance(run.schema, rows) or synthetic_instance(run.schema)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in SAMPLE else pytest.mark.matrix, id=n) for n in CELLS],
)
def test_the_whole_flow_ends_with_a_message_never_a_traceback(name: str, tmp_path: Path):
    cell = CELLS[name](tmp_path)
    tour = _tour(cell, tmp_path)
    assert tour.steps, "no step ran"
    print(name, tour.steps)


def test_a_headerless_file_without_its_middle_target_reads_every_column_in_place(tmp_path):
    cell = headerless(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cell.config))
    Tour().run("train", ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")])
    out = tmp_path / "p.csv"
    assert cell.predict is not None
    Tour().run("predict", ["predict", str(tmp_path / "r"), str(cell.predict), "--out", str(out)])
    import gradwise

    names = ["id", "age", "city", "member", "spend"]
    frame = pd.read_csv(cell.predict, header=None, names=names)
    expected = gradwise.load(tmp_path / "r").predict_proba(frame)
    got = pd.read_csv(out).filter(like="p_").to_numpy()
    assert np.allclose(got, expected, atol=1e-5)
