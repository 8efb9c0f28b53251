"""Every audit check on every column type the data layer accepts: a forecaster whose inputs
include a text column (like the Beijing PM2.5 wind direction) is audited, not crashed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gradwise
from gradwise.auditing import CHECKS
from gradwise.auditing.shift import series_inputs, series_matrix
from gradwise.auditing.shift_power import ShiftSpace, _current, _PoolStats
from tests.conftest import tiny_config

WINDOW = 6


def _series(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame(
        {
            "wind": rng.choice(["NW", "SE", "cv"], n),
            "temp": rng.normal(10.0, 3.0, n).round(2),
            "pm": (50 + 10 * np.sin(t / 4) + rng.normal(0, 1, n)).round(2),
        }
    )


@pytest.fixture(scope="module")
def series_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    tmp = tmp_path_factory.mktemp("series")
    df = _series()
    df.to_csv(tmp / "s.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"timeseries:{tmp / 's.csv'}",
            "target": "pm",
            # the text column first: the raw windows keep this order, the preprocessor puts
            # numeric columns first
            "features": ["wind", "temp", "pm"],
            "window": WINDOW,
            "horizon": 1,
        },
        model={"arch": "lstm", "hidden": 8},
        train={"epochs": 1, "batch_size": 32},
        audit={
            "generalisation": {"learning_curve": False},
            "shift": {"power_repeats": 4, "permutations": 20},
            "data_quality": {"folds": 2},
        },
    )
    return gradwise.train(cfg, out=tmp / "run")


def test_every_check_runs_on_a_series_with_a_text_feature(series_run: gradwise.Run):
    report = gradwise.audit(series_run, checks=list(CHECKS))
    verdicts = {r.check: r.verdict for r in report.checks}
    assert set(verdicts) == set(CHECKS)
    assert all(v in ("pass", "warn", "fail", "n/a") for v in verdicts.values())
    for r in report.checks:
        assert r.verdict != "n/a" or r.summary  # n/a always says why
    assert verdicts["baseline"] != "n/a" and verdicts["shift"] != "n/a"


def test_the_last_value_baseline_reads_the_target_column_of_the_raw_windows(
    series_run: gradwise.Run,
):
    result = gradwise.audit(series_run, checks=["baseline"]).checks[0]
    rows = {r["name"]: r for r in result.metrics["baselines"]}
    pm = _series()["pm"].to_numpy(dtype=float)
    first = series_run.split("test").rows + WINDOW  # each test window's target row
    expected = np.sqrt(np.mean((pm[first] - pm[first - 1]) ** 2))
    assert rows["last value"]["mean"] == pytest.approx(expected)


def test_series_windows_round_trip_through_the_shift_space(series_run: gradwise.Run):
    test = series_run.split("test")
    prep = series_run.schema.series.features
    m = series_matrix(test.raw, ["wind", "temp", "pm"], prep)
    assert m.shape == (len(test), WINDOW, 3) and m.dtype == np.float64
    assert np.allclose(series_inputs(m, prep), test.x.numpy(), atol=1e-6)


def test_simulated_shifts_leave_the_codes_of_text_columns_alone(series_run: gradwise.Run):
    train = series_run.split("train")
    prep = series_run.schema.series.features
    m = series_matrix(train.raw, ["wind", "temp", "pm"], prep)
    space = ShiftSpace("sequence", m, m, lambda x: x.reshape(len(x), -1), None, (2,))
    assert space.detector_categorical == ()  # the detectors see embeddings, not columns
    stats = _PoolStats.of(space)
    rng = np.random.default_rng(0)
    for shift in ("noise", "scale", "drop"):
        for _ in range(5):
            shifted = _current(space, stats, m, shift, 0.5, rng)
            assert np.array_equal(shifted[:, :, 2], m[:, :, 2]), shift
            assert not np.array_equal(shifted[:, :, :2], m[:, :, :2]), shift


def test_a_space_of_only_categorical_columns_has_no_numeric_shift():
    codes = np.zeros((10, 4, 2))
    space = ShiftSpace("sequence", codes, codes, lambda x: x, None, (0, 1))
    assert space.shifts == ()
