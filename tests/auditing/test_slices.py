"""The slices check: Benjamini-Hochberg and the p-values against their definitions and scipy;
a planted weak slice found with a readable rule, a table with none reports none, every
candidate listed with what it takes to redo the correction; images go through embedding
clusters; regressions through Welch's test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gradwise
from gradwise.audit_config import SlicesAudit
from gradwise.auditing import run_checks
from gradwise.auditing.base import AuditContext, NotApplicable
from gradwise.auditing.calibration import expected_calibration_error
from gradwise.auditing.slice_candidates import benjamini_hochberg, one_sided_p, redundant
from gradwise.auditing.slice_conditions import (
    column_conditions,
    over_represented_labels,
    over_represented_words,
)
from gradwise.auditing.slices import check
from tests.conftest import tiny_config

# ---------------------------------------------------------------- the statistical core


def _step_up(p: np.ndarray, q: float) -> np.ndarray:
    """Benjamini-Hochberg by its definition: reject the k smallest p-values, k the largest
    rank with p_(k) <= k q / m."""
    order = np.sort(p)
    ranks = np.flatnonzero(order <= q * np.arange(1, len(p) + 1) / len(p))
    if len(ranks) == 0:
        return np.zeros(len(p), dtype=bool)
    return p <= order[ranks[-1]]


def test_benjamini_hochberg_equals_the_step_up_definition():
    rng = np.random.default_rng(0)
    for trial in range(200):
        m = int(rng.integers(1, 60))
        p = np.concatenate([rng.uniform(0, 1, m), rng.uniform(0, 0.01, trial % 5)])
        p[: m // 4] = np.round(p[: m // 4], 2)  # ties
        q = float(rng.choice([0.01, 0.05, 0.2]))
        rejected, adjusted = benjamini_hochberg(p, q)
        np.testing.assert_array_equal(rejected, _step_up(p, q))
        order = np.argsort(p)
        scaled = p[order] * len(p) / np.arange(1, len(p) + 1)
        by_hand = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
        np.testing.assert_allclose(adjusted[order], by_hand, rtol=1e-12)


def test_p_values_equal_fisher_and_welch_from_scipy():
    rng = np.random.default_rng(1)
    errors01 = (rng.random(400) < 0.2).astype(float)
    errors = rng.exponential(1.0, 400)
    for _ in range(20):
        inside = rng.random(400) < rng.uniform(0.05, 0.5)
        n = np.array([inside.sum()])
        k, big_k = errors01[inside].sum(), errors01.sum()
        table = [[k, n[0] - k], [big_k - k, 400 - n[0] - (big_k - k)]]
        want = stats.fisher_exact(table, alternative="greater").pvalue
        total = (400, big_k, big_k)
        got = one_sided_p(n, np.array([k]), np.array([k]), total, binary=True)[0]
        assert got == pytest.approx(want, rel=1e-9)
        e_in, e_out = errors[inside], errors[~inside]
        want = stats.ttest_ind(e_in, e_out, equal_var=False, alternative="greater").pvalue
        total = (400, errors.sum(), (errors**2).sum())
        sums = (np.array([e_in.sum()]), np.array([(e_in**2).sum()]))
        assert one_sided_p(n, *sums, total, binary=False)[0] == pytest.approx(want, rel=1e-7)


def test_conditions_read_as_rules_and_hold_their_rows():
    frame = pd.DataFrame(
        {
            "hours": np.arange(100, dtype=float),
            "job": ["a"] * 60 + ["b"] * 30 + [None] * 10,
            "code": [1, 2] * 50,
        }
    )
    kinds = {"hours": "number", "job": "category", "code": "number"}
    conds = column_conditions(frame, kinds, bins=4, min_rows=5)
    rules = dict(zip(conds.rules, conds.masks))
    assert rules["job = a"].sum() == 60 and rules["job is missing"].sum() == 10
    assert rules["code = 2"].sum() == 50  # two values: categories, not bins
    np.testing.assert_array_equal(rules["hours <= 24.8"], frame["hours"] <= 24.8)
    np.testing.assert_array_equal(rules["24.8 < hours <= 49.5"], frame["hours"].between(25, 49))
    assert len({m.tobytes() for m in conds.masks}) == len(conds)  # no two with the same rows


def test_nested_slices_list_the_best_supported_and_what_adds_evidence():
    """Errors 40% in rows 0-199, 5% elsewhere. Slices: rows 0-199 (the weak ones), 0-99 (half
    of them), 0-599 (them and clean rows), 400-999 (clean rows, errors raised by chance
    nowhere): only rows 0-199 adds evidence beyond the others."""
    rng = np.random.default_rng(4)
    rows = np.arange(4000)
    errors = (rng.random(4000) < np.where(rows < 200, 0.4, 0.05)).astype(float)
    masks = np.array([rows < 200, rows < 100, rows < 600, rows < 200])
    total = (4000, errors.sum(), errors.sum())
    sums = masks @ errors
    p = one_sided_p(masks.sum(axis=1), sums, sums, total, binary=True)
    by = redundant(masks, p, errors, q=0.05, binary=True)
    assert by[0] == -1  # listed
    assert by[1] == 0 and by[2] == 0  # inside it, and around it: nothing of their own
    assert by[3] == 0  # the same rows as slice 0: one of the two is listed


def test_a_cluster_is_described_by_its_over_represented_words_and_labels():
    texts = ["free prize call now", "win a free prize", "see you at lunch", "lunch at noon?"]
    texts *= 10
    mask = np.array([t.startswith(("free", "win")) for t in texts])
    words = over_represented_words(texts, mask)
    assert [w["word"] for w in words[:2]] == ["free", "prize"]  # in all of them, half overall
    assert words[0]["share"] == pytest.approx(1.0) and words[0]["overall"] == pytest.approx(0.5)
    assert "lunch" not in {w["word"] for w in words}
    y = np.array([1, 1, 0, 0] * 10)
    (label,) = over_represented_labels(y, mask, ["ham", "spam"])
    assert label == {"label": "class spam", "share": 1.0, "overall": 0.5}


# ---------------------------------------------------------------- tables, end to end


def _table(rng: np.random.Generator, n: int, planted: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Two classes well apart on x1 (a network learns them), 5% of labels flipped; planted:
    40% flipped where marital_status = Separated and hours_per_week <= 35."""
    x1 = rng.choice([-1, 1], n) * rng.uniform(0.5, 2.0, n)
    df = pd.DataFrame(
        {
            "x1": x1,
            "x2": rng.normal(size=n),
            "marital_status": rng.choice(
                ["Married", "Never-married", "Divorced", "Separated"], n, p=[0.4, 0.3, 0.1, 0.2]
            ),
            "hours_per_week": rng.integers(10, 70, n),
        }
    )
    weak = (df.marital_status == "Separated").to_numpy() & (df.hours_per_week <= 35).to_numpy()
    weak &= planted
    flip = rng.random(n) < np.where(weak, 0.4, 0.05)
    df["label"] = np.where((x1 > 0) ^ flip, "yes", "no")
    return df, weak


def _train_table(root: Path, df: pd.DataFrame, **sections) -> gradwise.Run:
    df.to_csv(root / "table.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{root / 'table.csv'}", "target": "label"},
        train={"epochs": 5},
        **sections,
    )
    return gradwise.train(cfg, out=root / "run")


def _listed(result) -> list[dict]:
    """The reported slices the check lists (worst first), as `metrics.listed` names them."""
    by_rule = {s["rule"]: s for s in result.metrics["slices"]}
    return [by_rule[rule] for rule in result.metrics["listed"]]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("planted")
    df, weak = _table(np.random.default_rng(0), 6000, planted=True)
    run = _train_table(root, df)
    run_checks(run, ["uncertainty"])  # stores conformal sets: coverage per slice and class
    result = check(run, run.config.audit.slices, AuditContext(out=root / "audit"))
    return run, result, df, weak


def test_planted_slice_is_found_with_a_readable_rule(planted):
    run, result, df, weak = planted
    first = _listed(result)[0]
    assert first["rule"].startswith("hours_per_week <= ")
    assert first["rule"].endswith(" and marital_status = Separated")
    rows = np.array(first["rows"])
    assert len(rows) == first["n_heldout"]
    assert weak[rows].mean() >= 0.8  # most of its rows are the planted ones
    assert result.verdict == "fail" and first["gap"] >= run.config.audit.slices.gap_fail
    lo, hi = first["gap_interval"]
    assert lo <= first["gap"] <= hi
    assert first["rule"] in result.summary and f"n = {first['n']}" in result.summary
    assert result.headline.endswith(f"worst +{100 * first['gap']:.0f} pts")


def test_reported_numbers_agree_with_the_model_on_those_rows(planted):
    run, result, df, _ = planted
    first = _listed(result)[0]
    half = np.intersect1d(first["rows"], result.metrics["confirmation_rows"])
    wrong = run.predict(df.iloc[half]) != df["label"].to_numpy()[half]
    assert first["n"] == len(half)
    assert first["error"] == pytest.approx(wrong.mean())
    test = run.split("test")
    y = test.y.numpy()
    probs, sets = run.predict_proba(test.raw), run.predict_sets(test.raw)
    for k, name in enumerate(run.schema.classes):
        measured = result.metrics["per_class"][str(name)]
        assert measured["n"] == int((y == k).sum())
        assert measured["ece"] == pytest.approx(
            expected_calibration_error(probs[y == k], y[y == k], run.config.audit.calibration.bins)
        )
        assert measured["coverage"] == pytest.approx(sets[y == k, k].mean())
    assert 0 <= first["test"]["coverage"] <= 1 and first["test"]["n"] > 0


def test_json_lists_every_candidate_with_what_redoes_the_correction(planted):
    _, result, _, _ = planted
    m, q = result.metrics, result.settings["q"]
    listed = m["candidates"]
    assert len(listed) == m["n_candidates"] > 100
    assert all({"rule", "n", "error", "p", "p_bh", "discovered"} <= set(c) for c in listed)
    assert min(c["n"] for c in listed) >= result.settings["min_size"]
    rejected, adjusted = benjamini_hochberg(np.array([c["p"] for c in listed]), q)
    np.testing.assert_allclose(adjusted, [c["p_bh"] for c in listed])
    assert rejected.tolist() == [c["discovered"] for c in listed]
    second = [c["confirmation"] for c in listed if c["discovered"]]
    assert len(second) == m["n_discovered"]
    assert not any("confirmation" in c for c in listed if not c["discovered"])
    confirmed, _ = benjamini_hochberg(np.array([c["p"] for c in second]), q)
    assert confirmed.tolist() == [c["confirmed"] for c in second]
    assert sum(confirmed) == m["n_confirmed"] == len(m["slices"])
    assert any(c["kind"] == "pair" for c in listed) and any(c["kind"] == "range" for c in listed)


def test_a_table_with_no_weak_slice_reports_none(tmp_path: Path):
    df, weak = _table(np.random.default_rng(1), 3000, planted=False)
    assert not weak.any()
    run = _train_table(tmp_path, df)
    result = check(run, run.config.audit.slices, AuditContext(out=tmp_path / "audit"))
    assert result.verdict == "pass" and result.metrics["listed"] == []
    assert result.metrics["n_candidates"] > 100
    assert result.summary.startswith("No weak slice") and "worst" not in result.summary
    assert result.plots == ()


def test_regression_slices_use_welch_on_absolute_errors(tmp_path: Path):
    rng = np.random.default_rng(2)
    n = 3000
    df = pd.DataFrame({"x1": rng.normal(size=n), "region": rng.choice(list("abcd"), n)})
    noisy = (df.region == "d").to_numpy()
    df["target"] = 2 * df.x1 + rng.normal(0, np.where(noisy, 1.5, 0.2))
    df.to_csv(tmp_path / "reg.csv", index=False)
    cfg = tiny_config(data={"source": f"csv:{tmp_path / 'reg.csv'}", "target": "target"})
    run = gradwise.train({**cfg, "train": {"epochs": 10}}, out=tmp_path / "run")
    result = check(run, run.config.audit.slices, AuditContext(out=tmp_path / "audit"))
    assert "Welch" in result.settings["test"]
    first = _listed(result)[0]
    assert first["rule"] == "region = d"
    assert first["graded_gap"] == pytest.approx(first["gap"] / first["rest_error"])
    assert "MAE +" in result.headline and result.metrics["per_class"] == {}


# ---------------------------------------------------------------- images: embedding clusters


def test_images_go_through_embedding_clusters(tmp_path: Path):
    """Digits with 60% of the 3s relabelled at random: the cluster that errs most is the one
    where 3s gather."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(3)
    y = digits.target.copy()
    relabel = (y == 3) & (rng.random(len(y)) < 0.6)
    y[relabel] = rng.choice([0, 1, 2, 4, 5, 6, 7, 8, 9], relabel.sum())
    np.savez(tmp_path / "digits.npz", X=digits.images[:, None].astype(np.float32), y=y)
    cfg = tiny_config(
        data={"source": f"npz:{tmp_path / 'digits.npz'}", "split": {"val": 0.25, "test": 0.25}},
        train={"epochs": 20},
    )
    run = gradwise.train(cfg, out=tmp_path / "run")
    result = check(run, run.config.audit.slices, AuditContext(out=tmp_path / "audit"))
    m = result.metrics
    assert m["n_conditions"] == run.config.audit.slices.clusters
    assert all(c["kind"] == "cluster" for c in m["candidates"])
    first = _listed(result)[0]
    assert first["rule"].startswith("embedding cluster ")
    held = np.concatenate([run.split("val").rows, run.split("test").rows])
    shown = digits.target[first["rows"]]  # the true digits the cluster's rows show
    assert (shown == 3).mean() >= 3 * (digits.target[held] == 3).mean()
    about = first["about"]
    assert set(about["typical_rows"]) <= set(first["rows"]) <= set(held.tolist())
    assert about["inputs"] is not None and about["text"] in result.summary


def test_too_few_held_out_rows_is_not_applicable(tmp_path: Path):
    run = gradwise.train(tiny_config(), out=tmp_path / "run")
    with pytest.raises(NotApplicable, match="audit.slices.min_size"):
        check(run, SlicesAudit(min_size=1000), AuditContext(out=tmp_path / "audit"))
