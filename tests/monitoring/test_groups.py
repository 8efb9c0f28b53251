"""The monitor tracks the accuracy of named groups from feedback: per window and over the
watch, equal to a direct computation (exact intervals, exact binomial tests), held against the
fairness audit's test accuracy; the alert fires for the group whose accuracy dropped only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from scipy.stats import beta, binom

import gradwise
import gradwise.serving
from gradwise.auditing.fairness_measures import groupings
from gradwise.config import MonitorSettings
from gradwise.errors import ConfigError
from gradwise.monitoring import Monitor, MonitorReport
from gradwise.monitoring.groups import watch_groups
from gradwise.run import Run
from tests.conftest import tiny_config

WINDOW = 140
FEATURES = ["x1", "x2", "age"]


def _table(path: Path, n: int = 2400) -> Path:
    """Label from x1 and a group column `grp` that the model sees only through x2 (b: noisier
    labels), and a number column `age`."""
    rng = np.random.default_rng(0)
    grp = rng.choice(np.array(["a", "b"]), n, p=[0.6, 0.4])
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    noise = rng.normal(size=n) * np.where(grp == "b", 1.0, 0.3)
    y = 2 * x1 + noise > 0
    frame = {"x1": x1, "x2": x2 + 2 * (grp == "b"), "grp": grp, "age": rng.integers(18, 80, n)}
    pd.DataFrame({**frame, "y": np.where(y, "yes", "no")}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def group_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A classifier whose group column `grp` is dropped from its inputs and named for the
    fairness audit (the monitor follows it while monitor.groups is null)."""
    tmp = tmp_path_factory.mktemp("groups")
    data = {"source": f"csv:{_table(tmp / 't.csv')}", "target": "y", "drop": ["grp"]}
    cfg = tiny_config(data=data, train={"epochs": 8}, audit={"fairness": {"groups": ["grp"]}})
    return gradwise.train(cfg, out=tmp / "run")


@dataclass(frozen=True)
class Stream:
    store: Path
    raw: pd.DataFrame  # the served rows, in order (with grp)
    predictions: np.ndarray
    labels: np.ndarray  # fed back: group b's flipped at random from `change` on
    change: int


def _serve(run: Run, store: Path, rows: pd.DataFrame, labels: np.ndarray, send: list[str]) -> list:
    """Serve the `send` columns of `rows` ten per request, feed `labels` back; the answers."""
    out = []
    with TestClient(gradwise.serving.app(run, store=str(store), flush_interval_s=0.05)) as c:
        for a in range(0, len(rows), 10):
            chunk = rows[send].iloc[a : a + 10].astype(object)
            records = chunk.where(chunk.notna(), None).to_dict(orient="records")
            r = c.post("/v1/predict", json={"instances": records})
            assert r.status_code == 200, r.text
            out += [p["prediction"] for p in r.json()["predictions"]]
            body = {"request_id": r.json()["request_id"], "labels": list(labels[a : a + 10])}
            assert c.post("/v1/feedback", json=body).status_code == 202
    return out


@pytest.fixture(scope="module")
def stream(group_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """Validation and test rows in random order, the group column sent with each instance;
    from the middle on, half of group b's labels fed back are the other class."""
    val, test = group_run.split("val"), group_run.split("test")
    raw = pd.concat([val.raw, test.raw], ignore_index=True)
    rng = np.random.default_rng(1)
    raw = raw.iloc[rng.permutation(len(raw))].reset_index(drop=True)
    change = 3 * WINDOW
    flip = (np.arange(len(raw)) >= change) & (raw["grp"].to_numpy() == "b")
    flip &= rng.random(len(raw)) < 0.5
    truth = raw["y"].to_numpy()
    labels = np.where(flip, np.where(truth == "yes", "no", "yes"), truth)
    store = tmp_path_factory.mktemp("groups-store") / "predictions.sqlite"
    predictions = _serve(group_run, store, raw, labels, [*FEATURES, "grp"])
    return Stream(store, raw, np.asarray(predictions), labels, change)


@pytest.fixture(scope="module")
def reports(group_run: Run, stream: Stream) -> tuple[MonitorReport, MonitorReport]:
    """The watch before any fairness audit (group accuracies measured now), then after it."""
    before = gradwise.monitor(group_run, store=str(stream.store), window=WINDOW, min_labels=30)
    assert not (Path(group_run.path) / "audit" / "fairness.json").exists()
    gradwise.audit(group_run, checks=["fairness"], fairness={"groups": ["grp", "age"]})
    after = gradwise.monitor(group_run, store=str(stream.store), window=WINDOW, min_labels=30)
    return before, after


def _audited(run: Run) -> dict[str, dict[str, Any]]:
    metrics = json.loads((Path(run.path) / "audit" / "fairness.json").read_text())["metrics"]
    return {m["grouping"]: {g["group"]: g for g in m["groups"]} for m in metrics["groupings"]}


def _direct(
    groups: np.ndarray, right: np.ndarray, audited: dict[str, Any], floor_drop: float
) -> dict[str, dict[str, Any]]:
    """Per group: labelled, correct, accuracy, the Clopper-Pearson interval from beta
    quantiles, the audited accuracy and the binomial p-value against it minus the drop."""
    out = {}
    for g in sorted(set(groups)):
        n, k = int((groups == g).sum()), int(right[groups == g].sum())
        low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        acc = audited[g]["accuracy"]["value"]
        p = binom.cdf(k, n, acc - floor_drop)
        out[g] = {"n": n, "k": k, "low": low, "high": high, "audited": acc, "p": p}
    return out


def test_the_alert_fires_for_the_group_whose_accuracy_dropped_and_only_for_it(
    stream: Stream, reports: tuple[MonitorReport, MonitorReport]
):
    for report in reports:
        fired = [a for a in report.alerts if a.kind == "group_accuracy_drop"]
        changed = {w.index for w in report.windows if w.start >= stream.change}
        assert {a.window for a in fired} == changed and len(changed) >= 2
        assert all(a.message.startswith("accuracy of grp = b is ") for a in fired)
        assert all("below its audited" in a.message for a in fired)


def test_per_group_numbers_equal_a_direct_computation(
    group_run: Run, stream: Stream, reports: tuple[MonitorReport, MonitorReport]
):
    _, report = reports
    audited = _audited(group_run)["grp"]
    right = stream.predictions == stream.labels
    grp = stream.raw["grp"].to_numpy()
    for w in report.windows:
        direct = _direct(grp[w.start : w.end], right[w.start : w.end], audited, 0.05)
        tested = [r for r in w.groups["grp"]["groups"] if r["n_labelled"] >= 30]
        for r in w.groups["grp"]["groups"]:
            d = direct[r["group"]]
            assert (r["n_labelled"], r["correct"]) == (d["n"], d["k"])
            assert r["accuracy"] == pytest.approx(d["k"] / d["n"], abs=1e-12)
            assert (r["low"], r["high"]) == pytest.approx((d["low"], d["high"]), abs=1e-9)
            assert r["audited_accuracy"] == pytest.approx(d["audited"], abs=1e-12)
            assert r["gap"] == pytest.approx(d["k"] / d["n"] - d["audited"], abs=1e-12)
            assert r["p_value"] == pytest.approx(d["p"], rel=1e-9)
            assert r["level"] == pytest.approx(0.01 / len(tested))
            assert r["dropped"] == (d["p"] < 0.01 / len(tested))
    overall = report.groups["groups"]["grp"]["groups"]
    direct = _direct(grp, right, audited, 0.05)
    assert [(r["group"], r["n_labelled"], r["correct"]) for r in overall] == [
        (g, d["n"], d["k"]) for g, d in direct.items()
    ]
    assert "p_value" not in overall[0]  # the whole watch is described, not tested


def test_audited_accuracies_come_from_the_audit_or_are_measured_the_same_way(
    group_run: Run, reports: tuple[MonitorReport, MonitorReport]
):
    before, after = reports
    measured = "measured now on the test split (no fairness audit of it stored)"
    assert before.groups["audited"] == {"grp": measured}
    assert after.groups["audited"] == {"grp": "RUN/audit/fairness.json, test split"}
    for b, a in zip(
        before.groups["groups"]["grp"]["groups"], after.groups["groups"]["grp"]["groups"]
    ):
        assert b["audited_accuracy"] == pytest.approx(a["audited_accuracy"], abs=1e-12)
        assert b["n_test"] == a["n_test"] == _audited(group_run)["grp"][a["group"]]["n"]


def test_a_number_column_is_cut_at_the_audits_quartiles(group_run: Run, stream: Stream):
    report = gradwise.monitor(group_run, store=str(stream.store), window=WINDOW, groups="age")
    assert report.groups["columns"] == ["age"]
    (ages,) = groupings(group_run.split("test").raw, ["age"], "test")
    served = ages.labels(stream.raw)
    names, counts = np.unique(served, return_counts=True)
    rows = report.groups["groups"]["age"]["groups"]
    assert [(r["group"], r["n"]) for r in rows] == list(zip(names.tolist(), counts.tolist()))
    assert set(names) <= set(_audited(group_run)["age"])  # the audit's group names
    assert all(r["audited_accuracy"] is not None for r in rows)


def test_the_outputs_carry_the_numbers_and_one_line_sums_them_up(group_run: Run, stream: Stream):
    report = gradwise.monitor(group_run, store=str(stream.store), window=WINDOW, min_labels=30)
    folder = Path(group_run.path) / "monitor"
    saved = json.loads((folder / "report.json").read_text())
    assert saved["groups"] == json.loads(json.dumps(report.groups))
    windows = json.loads((folder / "windows.json").read_text())
    assert [w["groups"] for w in windows] == [
        json.loads(json.dumps(w.groups)) for w in report.windows
    ]
    a, b = report.groups["groups"]["grp"]["groups"]
    expected = (
        f"groups: grp: a {a['accuracy']:.0%} (n={a['n_labelled']}), "
        f"b {b['accuracy']:.0%} (n={b['n_labelled']})"
    )
    assert report.groups_line() == expected


def test_no_groups_named_tracks_nothing(group_run: Run, stream: Stream, table_run: Run, tmp_path):
    report = gradwise.monitor(group_run, store=str(stream.store), window=WINDOW, groups=[])
    assert report.groups is None and report.groups_line() is None
    assert all(w.groups is None for w in report.windows)
    assert not [a for a in report.alerts if a.kind == "group_accuracy_drop"]
    # a run whose audit names no groups, with monitor.groups null
    assert table_run.config.audit.fairness.groups == []
    store = tmp_path / "p.sqlite"
    rows = table_run.split("test").raw.iloc[:30]
    _serve(table_run, store, rows, rows["churn"].to_numpy(), ["age", "monthly income", "city"])
    plain = gradwise.monitor(table_run, store=str(store), window=10)
    assert plain.groups is None and all(w.groups is None for w in plain.windows)


def test_an_unknown_column_names_the_columns(group_run: Run, stream: Stream):
    with pytest.raises(ConfigError, match=r"monitor.groups names 'gpr' \(did you mean 'grp'\?\)"):
        Monitor(group_run, f"sqlite:///{stream.store}", MonitorSettings(groups=["gpr"]))
    with pytest.raises(ConfigError, match=r"Columns: x1, x2, grp, age, y\."):
        Monitor(group_run, f"sqlite:///{stream.store}", MonitorSettings(groups=["grp", "sex"]))


def test_a_column_the_requests_did_not_carry_is_named_not_tracked(
    group_run: Run, stream: Stream, tmp_path: Path
):
    store = tmp_path / "p.sqlite"
    rows = stream.raw.iloc[:60]
    _serve(group_run, store, rows, rows["y"].to_numpy(), FEATURES)  # without grp
    report = gradwise.monitor(group_run, store=str(store), window=30)
    assert report.groups is not None and report.groups["groups"]["grp"] == {
        "absent": 60,
        "groups": [],
    }
    assert all(w.groups["grp"]["absent"] == w.n for w in report.windows)
    (note,) = report.groups["notes"]
    assert note.startswith("'grp' is in none of the 60 stored instances")
    assert report.groups_line() == f"groups: grp: no labels yet; {note}"


def test_a_regression_names_its_groups_as_not_tracked(regression_run: Run):
    watch = watch_groups(regression_run, MonitorSettings(groups=["sex"]))
    assert watch is not None and watch.columns == []
    why = "group accuracy is tracked for classifiers; this run is a regression"
    assert watch.notes == (f"{why}: sex not tracked",)
