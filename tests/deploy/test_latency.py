"""One latency measurement for bench, optimize and the report: repeated until the median
is stable, or said to be noisy."""

from __future__ import annotations

import time

import pytest

from gradwise.deploy.cost import (
    STABLE,
    LatencyPoint,
    latency_threads,
    median_half_width,
    noise_note,
    time_until_stable,
)
from gradwise.run import Run


def test_the_half_width_of_the_median_is_zero_for_equal_rounds_and_wide_for_scattered():
    assert median_half_width([2.0] * 8) == 0.0
    assert median_half_width([1.0, 3.0] * 4) > 0.3
    assert median_half_width([1.0]) == 0.0


def test_a_steady_call_stops_after_the_first_rounds():
    timings = time_until_stable({"a": lambda: sum(range(2000))}, seconds=0.05, rounds=8)
    assert len(timings["a"].round_medians) >= 8 and len(timings["a"].times) >= 8


def test_a_call_that_keeps_slowing_down_is_repeated_then_reported_noisy():
    calls = {"n": 0}

    def slower() -> None:  # each call sleeps longer: the rounds' medians never agree
        calls["n"] += 1
        time.sleep(0.0002 * calls["n"])

    timings = time_until_stable({"slow": slower}, seconds=0.04, rounds=4, max_seconds=0.3)
    timing = timings["slow"]
    assert len(timing.round_medians) > 4  # it tried more rounds than the minimum
    assert timing.spread > STABLE
    stable = LatencyPoint(1, 1.0, 1.2, 1000.0, 50)
    noisy = LatencyPoint(8, 5.0, 9.0, 1600.0, 50, spread=0.2, stable=False)
    note = noise_note({"fp32": [stable, noisy]}, seconds=1.0)
    assert note is not None and note.startswith("latency is noisy on this machine: 1 of 2")
    assert "worst +-20%" in note and "load average" in note
    assert noise_note({"fp32": [stable]}, seconds=1.0) is None


def test_latency_uses_the_training_thread_rule_and_the_environment(
    mlp_run: Run, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("GRADWISE_THREADS", raising=False)
    assert latency_threads(mlp_run, (1, 128)) == 1  # 4,810 parameters: one thread
    assert latency_threads(mlp_run, (1, 128), threads=3) == 3
    monkeypatch.setenv("GRADWISE_THREADS", "2")
    assert latency_threads(mlp_run, (1, 128)) == 2


def test_bench_and_the_tradeoff_table_report_the_spread_of_each_point(mlp_run: Run):
    import gradwise

    report = gradwise.bench(mlp_run, batches=(1, 4), seconds=0.02)
    for p in report.costs[0].latency:
        assert p.spread >= 0 and p.stable == (p.spread <= STABLE)
    assert report.costs[0].threads == report.machine["torch_threads"] == 1
    assert "repeated until" in report.settings["latency"]
