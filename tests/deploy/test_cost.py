"""bench: every field in bench.json, FLOPs against a hand count, language-model costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gradwise
from gradwise.deploy.cost import usd_per_million
from gradwise.deploy.levers import flops_per_sample
from gradwise.run import Run
from tests.conftest import tiny_config

COST_FIELDS = {
    "variant",
    "path",
    "backend",
    "n_params",
    "size_mb",
    "flops_per_sample",
    "peak_memory_mb",
    "threads",
    "latency",
    "best_batch",
    "best_throughput",
    "usd_per_million",
    "usd_per_million_batch1",
    "language_model",
}


def test_flops_per_sample_is_two_per_multiply_add(mlp_run: Run):
    # digits: 64 inputs -> 64 hidden -> 10 classes
    assert flops_per_sample(mlp_run) == 2 * (64 * 64 + 64 * 10)


def test_bench_json_has_every_field(mlp_run: Run):
    report = gradwise.bench(mlp_run, batches=(1, 4), price_per_core_hour=0.1, seconds=0.02)
    saved = json.loads((mlp_run.path / "artifacts" / "bench.json").read_text())
    assert (mlp_run.path / "artifacts" / "bench.png").stat().st_size > 1000
    assert set(saved) == {"settings", "machine", "costs", "notes"}
    assert saved["settings"]["price_per_core_hour_usd"] == 0.1
    assert {"cpu", "cores", "torch_threads", "native_bf16"} <= set(saved["machine"])
    (cost,) = saved["costs"]
    assert set(cost) == COST_FIELDS
    assert [p["batch"] for p in cost["latency"]] == [1, 4]
    for p in cost["latency"]:
        assert 0 < p["p50_ms"] <= p["p95_ms"] and p["calls"] >= 8
        assert p["throughput"] == pytest.approx(p["batch"] / p["p50_ms"] * 1e3)
    assert cost["n_params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert cost["size_mb"] * 2**20 == (mlp_run.path / "model.safetensors").stat().st_size
    best = report.costs[0]
    assert best.usd_per_million == pytest.approx(
        0.1 * best.threads / (best.best_throughput * 3600) * 1e6
    )
    assert usd_per_million(1e6 / 3600, 1, 1.0) == pytest.approx(1.0)  # 1M in one core-hour


def test_language_model_bench_has_length_and_decode_costs(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 120)
    cfg = tiny_config(
        data={"source": f"text:{corpus}", "block_size": 32},
        model={"arch": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2},
        train={"epochs": 1, "diagnostics": False},
    )
    run = gradwise.train(cfg, out=tmp_path / "gpt")
    (cost,) = gradwise.bench(run, batches=(1, 2), seconds=0.02).costs
    lm = cost.language_model
    assert lm is not None
    assert [p["tokens"] for p in lm["latency_by_length"]] == [16, 32]
    assert lm["decode_tokens"] == 16  # the context left after a 16-token prompt
    assert lm["decode_tokens_per_s_cached"] > 0 and lm["decode_tokens_per_s_uncached"] > 0
    assert lm["cache_speedup"] == pytest.approx(
        lm["decode_tokens_per_s_cached"] / lm["decode_tokens_per_s_uncached"]
    )
