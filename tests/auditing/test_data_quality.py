"""The data-quality check: flipped labels, planted duplicates and leakage found by row number;
the scans against brute force; k-fold retrains on given training rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradwise.auditing.quality_scans import (
    duplicate_groups,
    feature_health,
    near_duplicate_pairs,
    row_keys,
)
from gradwise.config import load_config
from gradwise.pipeline import train_run
from tests.conftest import tiny_config

N_BASE, N_COPIES, N_CONFLICTING, N_NEAR = 1500, 30, 3, 10


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """Four well-separated classes; 5% of the labels flipped; exact copies, copies with the
    label changed and near copies appended after the base rows."""
    root = tmp_path_factory.mktemp("quality")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, N_BASE)
    x = rng.standard_normal((4, 8))[y] * 3 + rng.standard_normal((N_BASE, 8))
    flipped = rng.choice(N_BASE, N_BASE // 20, replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, 4, len(flipped))) % 4
    clean = np.setdiff1d(np.arange(N_BASE), flipped)
    originals = rng.choice(clean, N_COPIES + N_CONFLICTING + N_NEAR, replace=False)
    copies = originals[:N_COPIES]
    conflicting = originals[N_COPIES : N_COPIES + N_CONFLICTING]
    near = originals[N_COPIES + N_CONFLICTING :]
    x_all = np.vstack(
        [x, x[copies], x[conflicting], x[near] + 1e-4 * rng.standard_normal((N_NEAR, 8))]
    )
    y_all = np.concatenate([y, y[copies], (y[conflicting] + 1) % 4, y[near]])
    df = pd.DataFrame(x_all, columns=[f"f{i}" for i in range(8)])
    df["label"] = [f"c{v}" for v in y_all]
    df.to_csv(root / "data.csv", index=False)
    first_conflict = N_BASE + N_COPIES
    twins = {
        "exact": list(zip(copies, range(N_BASE, first_conflict))),
        "conflicting": list(zip(conflicting, range(first_conflict, first_conflict + 3))),
        "near": list(zip(near, range(first_conflict + 3, len(df)))),
    }
    cfg = tiny_config(
        data={"source": f"csv:{root / 'data.csv'}", "target": "label"},
        train={"epochs": 10},
    )
    run = train_run(load_config(cfg), root / "run")
    import gradwise

    result = gradwise.audit(run, checks=["data_quality"])["data_quality"]
    wrong = set(flipped.tolist()) | {c for _, c in twins["conflicting"]}
    return run, result, wrong, twins


def test_finds_flipped_labels_with_recall_and_precision(planted):
    run, result, wrong, _ = planted
    in_train = set(run.split("train").rows.tolist())
    truth = wrong & in_train
    found = set(result.metrics["labels"]["rows"])
    recall, precision = len(found & truth) / len(truth), len(found & truth) / len(found)
    assert recall >= 0.8 and precision >= 0.7, (recall, precision, len(truth), len(found))
    # about 5% of the labels are wrong: graded against label_issue_warn (1%) and _fail (5%)
    share = result.metrics["labels"]["share"]
    assert share > 0.03
    assert result.verdict == ("fail" if share >= 0.05 else "warn")
    worst = result.metrics["labels"]["worst"][0]
    assert worst["row"] in wrong and worst["label"] != worst["suggested"]


def _where(run) -> dict[int, str]:
    return {int(r): name for name in ("train", "val", "test") for r in run.split(name).rows}


def test_finds_planted_duplicates_and_leakage_by_row_number(planted):
    run, result, _, twins = planted
    split_of = _where(run)

    def placed(pairs, where):  # the planted pairs whose two rows landed in `where`
        return [p for p in pairs if sorted((split_of[p[0]], split_of[p[1]])) == where]

    exact = twins["exact"] + twins["conflicting"]
    within = placed(exact, ["train", "train"])
    across = placed(exact, ["test", "train"]) + placed(exact, ["train", "val"])
    dup, leak = result.metrics["duplicates"], result.metrics["leakage"]
    assert dup["n_exact_groups"] == len(within)
    assert {frozenset(g["rows"]) for g in dup["exact"]} == {frozenset(map(int, p)) for p in within}
    assert dup["n_conflicting_groups"] == len(placed(twins["conflicting"], ["train", "train"]))
    assert dup["exact"][0]["conflicting_labels"] == (dup["n_conflicting_groups"] > 0)
    assert leak["val"]["n_exact"] + leak["test"]["n_exact"] == len(across)
    leaked = {
        frozenset((e["row"], e["train_row"])) for s in ("val", "test") for e in leak[s]["exact"]
    }
    assert leaked == {frozenset(map(int, p)) for p in across}
    near = {frozenset((p["row"], p["other_row"])) for p in dup["near"]}
    near |= {
        frozenset((p["row"], p["other_row"])) for s in ("val", "test") for p in leak[s]["near"]
    }
    planted_near = placed(twins["near"], ["train", "train"])
    planted_near += placed(twins["near"], ["test", "train"]) + placed(
        twins["near"], ["train", "val"]
    )
    assert {frozenset(map(int, p)) for p in planted_near} <= near
    saved = json.loads((run.path / "audit" / "data_quality.json").read_text())
    assert saved["settings"]["folds"] == 5


def test_near_duplicate_pairs_match_brute_force_across_blocks(monkeypatch):
    import gradwise.auditing.quality_scans as scans

    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 3))
    b = np.vstack([a[:20] * 2.0 + 1e-3, rng.standard_normal((100, 3))])
    monkeypatch.setattr(scans, "CHUNK", 1000)  # several blocks of rows
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    cos = unit(a) @ unit(b).T
    within = unit(a) @ unit(a).T
    for threshold in (0.999, 0.99):
        across = near_duplicate_pairs(a, b, threshold)
        assert across.count == int((cos >= threshold).sum())
        assert set(zip(across.a, across.b)) == set(zip(*np.nonzero(cos >= threshold)))
        inner = near_duplicate_pairs(a, None, threshold)
        expected = {(i, j) for i, j in zip(*np.nonzero(within >= threshold)) if j > i}
        assert set(zip(inner.a, inner.b)) == expected


def test_row_keys_and_groups_find_equal_rows_only():
    df = pd.DataFrame({"a": [1.0, 2.0, 1.0, 1.0], "b": ["x", "y", "x", "z"]})
    groups = duplicate_groups(row_keys(df))
    assert [g.tolist() for g in groups] == [[0, 2]]
    images = np.zeros((4, 1, 2, 2))
    images[1, 0, 0, 0] = 1
    assert [g.tolist() for g in duplicate_groups(row_keys(images))] == [[0, 2, 3]]


def test_feature_health_names_constant_and_mostly_missing_columns():
    df = pd.DataFrame(
        {"ok": [1, 2, 3, 4], "same": [5, 5, 5, np.nan], "gappy": [1, np.nan, np.nan, 2]}
    )
    constant, heavy = feature_health(df, ["ok", "same", "gappy"], 0.5)
    assert constant == ["same"] and heavy == {"gappy": 0.5}


def test_keep_train_trains_on_exactly_those_training_positions(tmp_path: Path):
    cfg = load_config(tiny_config(train={"epochs": 1}))
    full = train_run(cfg, tmp_path / "full")
    keep = np.arange(0, len(full.split("train")), 3)
    part = train_run(cfg, tmp_path / "part", data=full.dataset().keep_train(keep))
    assert part.metrics["n_train"] == len(keep)
    saved = json.loads((tmp_path / "part" / "splits.json").read_text())
    assert saved["train"] == full.split("train").rows[keep].tolist()
    assert saved["test"] == full.split("test").rows.tolist()
