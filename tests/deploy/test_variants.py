"""Optimised variants are runs: they load, evaluate, predict and calibrate like any run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gradwise
from gradwise.deploy.levers import calibration_inputs, make_variant
from gradwise.errors import DataError, GradwiseError, NotTrainedError
from gradwise.run import Run
from tests.conftest import tiny_config

INT8_LEVERS = ("torch-int8-dynamic", "onnx-int8-dynamic", "onnx-int8-static", "openvino-int8")
OTHER_LEVERS = ("onnx-fp32", "openvino-fp32", "torch-bf16")
BACKEND = {
    "torch-int8-dynamic": "torch-int8",
    "onnx-int8-dynamic": "onnxruntime",
    "onnx-int8-static": "onnxruntime",
    "openvino-int8": "openvino",
    "onnx-fp32": "onnxruntime",
    "openvino-fp32": "openvino",
    "torch-bf16": "torch-bf16",
}


@pytest.fixture(scope="module")
def variants(mlp_run: Run) -> dict[str, Run]:
    cal = calibration_inputs(mlp_run, 128, seed=0)
    return {name: make_variant(mlp_run, mlp_run, name, cal) for name in INT8_LEVERS + OTHER_LEVERS}


def test_each_variant_loads_and_evaluate_agrees_with_its_metrics(mlp_run: Run, variants):
    for name, made in variants.items():
        run = gradwise.load(made.path)
        assert made.path == mlp_run.path / "artifacts" / name
        assert run.backend is not None and run.backend["name"] == BACKEND[name]
        stored = json.loads((made.path / "metrics.json").read_text())
        assert stored["variant"]["name"] == name
        for split in ("val", "test"):
            measured = run.evaluate(split)
            for key, value in stored[split].items():
                assert measured[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, key)
        x = mlp_run.split("test").raw[:5]
        assert run.predict(x).shape == (5,)
        assert run.embed(torch.as_tensor(mlp_run.transform(x))).shape == (5, 64)


def test_int8_variants_agree_with_fp32_on_digits(mlp_run: Run, variants):
    """Tolerance: argmax agreement >= 95% and mean |probability change| < 0.02 on the test
    split (the fp32 model reaches about 95% accuracy there)."""
    x = mlp_run.split("test").x
    ref = mlp_run.logits(x)
    p_ref = ref.softmax(dim=1)
    for name in INT8_LEVERS:
        out = variants[name].logits(x)
        agreement = float((out.argmax(1) == ref.argmax(1)).float().mean())
        assert agreement >= 0.95, (name, agreement)
        assert float((out.softmax(dim=1) - p_ref).abs().mean()) < 0.02, name
        assert not torch.equal(out, ref), f"{name} should not be bit-identical to fp32"


def test_fp32_engines_are_exact_to_1e4(mlp_run: Run, variants):
    x = mlp_run.split("val").x
    for name in ("onnx-fp32", "openvino-fp32"):
        assert (variants[name].logits(x) - mlp_run.logits(x)).abs().max() < 1e-4
        assert variants[name].metrics["variant"]["parity"]["max_abs_diff"] < 1e-4
        with pytest.raises(GradwiseError, match="has no gradients"):
            variants[name].model(x[:2].clone().requires_grad_())


def test_a_variant_keeps_its_engine_when_its_temperature_is_set(variants):
    run = gradwise.load(variants["onnx-fp32"].path)
    run.set_temperature(1.7)
    again = gradwise.load(run.path)
    assert again.calibration.temperature == pytest.approx(1.7)
    assert again.backend == run.backend
    probs = again.predict_proba(again.split("test").raw[:3])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_a_variant_without_its_engine_file_or_with_an_unknown_engine_is_refused(
    mlp_run: Run, tmp_path: Path
):
    made = make_variant(mlp_run, mlp_run, "onnx-fp32", calibration_inputs(mlp_run, 8, 0))
    copy = tmp_path / "v"
    copy.mkdir()
    for f in made.path.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "model.onnx").unlink()
    with pytest.raises(NotTrainedError, match="variant is incomplete"):
        gradwise.load(copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["backend"]["name"] = "tensorrt"
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="names backend 'tensorrt'"):
        gradwise.load(copy)


def test_auditing_a_variant_says_robustness_is_measured_by_transfer(tmp_path):
    run = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "r")
    gradwise.optimize(run, onnx=True)
    variant = next(p for p in (run.path / "artifacts").iterdir() if (p / "model.json").is_file())
    report = gradwise.audit(variant, checks=["calibration", "robustness"])
    assert report["calibration"].verdict != "n/a"  # forward-only checks run on the variant
    assert report["robustness"].verdict == "n/a"
    assert "by transfer" in report["robustness"].summary
