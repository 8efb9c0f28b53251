"""optimize: which variants the levers make, the trade-off table and its oracles."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.auditing.calibration import expected_calibration_error, fit_temperature
from gradwise.auditing.risk_control import certify, rows_hash
from gradwise.deploy.optimize import Levers, plan
from gradwise.deploy.tradeoff import Row, _choose, _recommend, coverage_cells
from gradwise.errors import ConfigError
from gradwise.run import Run
from gradwise.run_conformal import class_probabilities


def _copy(run: Run, folder: Path) -> Run:
    """A copy of a shared run, without its variants, that a test may audit and optimise."""
    shutil.copytree(run.path, folder, ignore=shutil.ignore_patterns("artifacts"))
    return gradwise.load(folder)


def test_levers_choose_the_variants(mlp_run: Run, cnn_run: Run, monkeypatch):
    monkeypatch.setattr("gradwise.training.loop.cpu_has_native_bf16", lambda: True)
    assert plan(Levers(quantize="int8"), mlp_run.model) == ["torch-int8-dynamic"]
    # calibrated static int8 is what pays for convolutions
    assert plan(Levers(quantize="int8"), cnn_run.model) == [
        "torch-int8-dynamic",
        "onnx-int8-static",
    ]
    assert plan(Levers(onnx=True, quantize="int8"), mlp_run.model) == [
        "onnx-fp32",
        "onnx-int8-dynamic",
        "onnx-int8-static",
    ]
    assert plan(Levers(openvino=True, precision="bf16"), mlp_run.model) == [
        "torch-bf16",
        "openvino-fp32",
        "openvino-bf16",
    ]
    monkeypatch.setattr("gradwise.training.loop.cpu_has_native_bf16", lambda: False)
    assert not any("bf16" in name for name in plan(Levers(auto=True), mlp_run.model))
    with pytest.raises(ConfigError, match="no native bf16 matrix multiply"):
        plan(Levers(precision="bf16"), mlp_run.model)
    with pytest.raises(ConfigError, match="at least one lever"):
        plan(Levers(), mlp_run.model)


def test_optimize_measures_each_variant_against_the_base(mlp_run: Run):
    table = gradwise.optimize(
        mlp_run,
        onnx=True,
        distill={"model": {"arch": "mlp", "hidden": [16]}, "train": {"epochs": 3}},
        seconds=0.02,
        robust_samples=64,
    )
    rows = {r.variant: r for r in table.rows}
    assert set(rows) == {"fp32", "distilled", "onnx-fp32", "distilled-onnx-fp32"}
    base, onnx = rows["fp32"], rows["onnx-fp32"]
    # oracle: the metric is the run's own test accuracy
    assert base.metric == pytest.approx(mlp_run.metrics["test"]["accuracy"] * 100)
    # oracle: ECE after the temperature refitted on the validation logits, by hand
    val, test = mlp_run.split("val"), mlp_run.split("test")
    t = fit_temperature(mlp_run.logits(val.x), val.y)
    probs = (mlp_run.logits(test.x) / t).softmax(dim=1).numpy()
    assert base.ece == pytest.approx(expected_calibration_error(probs, test.y.numpy()), abs=1e-6)
    assert base.temperature == pytest.approx(t)
    # an exact engine on the same adversarial inputs: the same robust accuracy
    assert onnx.metric_delta == pytest.approx(0.0, abs=1e-9)
    assert onnx.robust_delta == pytest.approx(0.0, abs=1e-9)
    assert onnx.ece_delta == pytest.approx(0.0, abs=1e-5)
    assert table.settings["robustness"]["samples"] == 64
    assert "transfer attack" in table.settings["robustness"]["attack"]
    # the student is a run of its own, smaller than the teacher
    student = gradwise.load(mlp_run.path / "artifacts" / "distilled")
    info = student.metrics["variant"]
    assert info["student_params"] < info["teacher_params"] / 3
    assert info["temperature"] == 4.0 and info["alpha"] == 0.7
    saved = json.loads((mlp_run.path / "artifacts" / "tradeoff.json").read_text())
    assert [r["variant"] for r in saved["rows"]] == [r.variant for r in table.rows]
    assert saved["levers"]["made"] == ["distilled", "onnx-fp32", "distilled-onnx-fp32"]
    assert table.verdict


def _row(**kw: object) -> Row:
    base = dict(
        variant="onnx-int8-static",
        label="ONNX Runtime static int8",
        path="p",
        metric=95.0,
        metric_delta=-0.2,
        ece=0.02,
        ece_delta=0.004,
        temperature=1.2,
        robust_accuracy=50.0,
        robust_delta=-1.0,
        size_mb=1.0,
        latency_b1_ms=1.0,
        latency_b64_ms=2.0,
        throughput_b64=32000.0,
        speedup_b1=3.1,
        speedup_b64=3.1,
        smaller=3.9,
        within_budget=True,
        recommendation="",
    )
    base.update(kw)
    return Row(**base)  # type: ignore[arg-type]


def test_recommendations_say_what_a_lever_buys_and_when_it_is_slower():
    good, slow, lossy = _recommend(
        [
            _row(),
            _row(speedup_b1=0.8, speedup_b64=0.7),
            _row(metric_delta=-1.2, within_budget=False),
        ],
        "accuracy",
        "pt",
        0.5,
    )
    assert good.recommendation == (
        "ONNX Runtime static int8: 3.1x faster, 3.9x smaller, -0.2 pt, ECE +0.004"
    )
    assert "1.4x slower" in slow.recommendation
    assert "slower than fp32 on this CPU" in slow.recommendation
    assert slow.recommendation.endswith("not recommended")
    assert "budget: not recommended" in lossy.recommendation
    assert dataclasses.replace(good, recommendation="") == _row()


def test_bf16_variant_computes_in_bf16(mlp_run: Run):
    from gradwise.deploy.levers import calibration_inputs, make_variant

    made = make_variant(mlp_run, mlp_run, "torch-bf16", calibration_inputs(mlp_run, 8, 0))
    run = gradwise.load(made.path)
    assert next(run.model.parameters()).dtype == torch.bfloat16
    x = mlp_run.split("test").x
    assert (run.logits(x) - mlp_run.logits(x)).abs().max() < 0.1


def test_a_lever_the_engine_cannot_take_is_left_out_with_its_reason(
    mlp_run: Run, tmp_path, monkeypatch
):
    run = _copy(mlp_run, tmp_path / "run")

    from gradwise.deploy import onnx

    export, calls = onnx.export_onnx, []

    def export_failing_first(*args, **kwargs):  # an engine that cannot take one variant
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("exporter trace\nConcat: Non concat axis dimensions must match")
        return export(*args, **kwargs)

    monkeypatch.setattr(onnx, "export_onnx", export_failing_first)
    table = gradwise.optimize(run, quantize="int8", onnx=True, seconds=0.05)
    assert [r.variant for r in table.rows] == ["fp32", "onnx-int8-dynamic", "onnx-int8-static"]
    assert "onnx-fp32 could not be made (Concat: Non concat axis" in table.verdict
    saved = json.loads((run.path / "artifacts" / "tradeoff.json").read_text())
    assert list(saved["levers"]["failed"]) == ["onnx-fp32"]
    assert not (run.path / "artifacts" / "onnx-fp32").exists()  # nothing half-made

    def broken(*args, **kwargs):
        raise RuntimeError("cannot export")

    monkeypatch.setattr(onnx, "export_onnx", broken)
    with pytest.raises(ConfigError, match="no variant could be made: onnx-fp32: cannot export"):
        gradwise.optimize(run, onnx=True, seconds=0.05)


def test_each_variant_is_recertified_on_the_same_rows_and_keeps_its_own_guarantee(
    mlp_run: Run, tmp_path: Path
):
    from typer.testing import CliRunner

    from gradwise.cli import app

    run = _copy(mlp_run, tmp_path / "run")
    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": [0.05, 0.1]})
    base = run.calibration.selective
    assert base is not None and base["certified"]
    printed = CliRunner().invoke(
        app,
        ["optimize", str(run.path), "--quantize", "int8", "--onnx", "--seconds", "0.02"]
        + ["--robust-samples", "64"],
    )
    assert printed.exit_code == 0, printed.output
    saved = json.loads((run.path / "artifacts" / "tradeoff.json").read_text())
    rows = {r["variant"]: r for r in saved["rows"]}
    assert saved["selective"]["alpha"] == 0.05 and saved["selective"]["n"] == base["n"]
    assert "guarantees" not in saved  # each variant's model.json holds its own
    assert rows["fp32"]["coverage"] == base["coverage"] and rows["fp32"]["coverage_delta"] == 0
    # oracle: an exact engine certifies the base's own threshold again
    onnx = gradwise.load(run.path / "artifacts" / "onnx-fp32").calibration.selective
    assert onnx is not None and onnx["threshold"] == pytest.approx(base["threshold"])
    assert onnx["coverage"] == base["coverage"]
    # oracle: int8's guarantee is Learn-then-Test by hand on its own scores, same rows, same
    # alpha and delta, at the temperature refitted for it
    int8 = gradwise.load(run.path / "artifacts" / "onnx-int8-dynamic")
    row = rows["onnx-int8-dynamic"]
    assert int8.calibration.temperature == row["temperature"] != run.calibration.temperature
    val = run.split("val")
    probs = class_probabilities(int8, val.x, row["temperature"])
    wrong = probs.argmax(axis=1) != val.y.numpy()
    # as the check: the variant's own 1 - p(top) starts the second chain
    expected = 1 - probs.max(axis=1)
    first, second = (certify(probs.max(axis=1), wrong, a, 0.1, expected) for a in (0.05, 0.1))
    stored = int8.calibration.selective
    assert stored is not None and stored["threshold"] == first.threshold
    assert stored["coverage"] == row["coverage"] == first.coverage
    assert row["coverage_delta"] == pytest.approx(first.coverage - base["coverage"])
    assert stored["others"][0]["threshold"] == second.threshold
    # the same validation rows as the base run's guarantee: one fingerprint
    assert stored["validation_rows_sha256"] == rows_hash(val.rows, val.y.numpy())
    assert stored["validation_rows_sha256"] == run.calibration.selective["validation_rows_sha256"]
    # predict --abstain on the variant applies its own threshold
    assert int8.predict_selective(val.x).answer.mean() == pytest.approx(first.coverage)
    # the printed recommendation says what each variant answers, against the base
    delta = 100 * (first.coverage - base["coverage"])
    said = f"answers {first.coverage:.1%} at alpha 0.05 ({delta:+.1f} pt)"
    assert said in printed.output


def test_a_variant_that_loses_its_guarantee_shows_it_and_is_not_chosen():
    kept, lost = _recommend(
        [
            _row(coverage=0.9, coverage_delta=-0.03, certified=True),
            _row(variant="torch-int8-dynamic", speedup_b64=5.0, certified=False),
        ],
        "accuracy",
        "pt",
        0.5,
        alpha=0.02,
    )
    assert kept.recommendation.endswith("answers 90.0% at alpha 0.02 (-3.0 pt)")
    assert coverage_cells(kept) == ("90.0", "-3.0")
    assert lost.recommendation.endswith(
        "no abstention threshold could be certified at alpha 0.02, where the base run's is: "
        "not recommended"
    )
    assert coverage_cells(lost) == ("not certified", "n/a")
    assert _choose([kept, lost]) == "onnx-int8-static"  # the faster one lost its guarantee
    assert coverage_cells(_row()) == ("n/a", "n/a")  # no guarantee in the base run


def test_a_regression_variant_is_recertified_with_its_own_difficulty(tmp_path: Path):
    from tests.conftest import tiny_config

    cfg = tiny_config(data={"source": "builtin:diabetes"}, train={"epochs": 150})
    run = gradwise.train(cfg, out=tmp_path / "reg")
    gradwise.audit(run, checks=["selective"], selective={"alpha": 0.3, "tolerance": 120})
    base = run.calibration.selective
    assert base is not None and base["certified"]
    table = gradwise.optimize(run, onnx=True, seconds=0.02)
    onnx = gradwise.load(run.path / "artifacts" / "onnx-fp32")
    stored = onnx.calibration.selective
    # oracle: the same features give the same difficulty estimate and the same threshold
    assert stored is not None and stored["tolerance"] == 120
    assert stored["threshold"] == pytest.approx(base["threshold"], rel=1e-6)
    assert stored["coverage"] == base["coverage"] == table.rows[1].coverage
    val = run.split("val")
    assert onnx.predict_selective(val.x).answer.mean() == pytest.approx(base["coverage"])
