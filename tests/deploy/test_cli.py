"""bench and optimize on the command line: the tables, and exit 2 with a clear message."""

from __future__ import annotations

from typer.testing import CliRunner

from gradwise.cli import app
from gradwise.run import Run

runner = CliRunner()


def _bad(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_optimize_flags_exit_2_with_the_fix(mlp_run: Run, monkeypatch):
    run = str(mlp_run.path)
    _bad(["optimize", run], "at least one lever: --quantize int8")
    _bad(["optimize", run, "--quantize", "int4"], "'int4' is not one of 'int8'")
    _bad(["optimize", run, "--precision", "fp16"], "'fp16' is not one of")
    _bad(["bench", run, "--batches", "0,8"], "bench.batches.0: Input should be greater than")
    _bad(["bench", run, "--set", "bench.seconds=0"], "bench.seconds: Input should be greater")
    no_openvino = lambda module: module != "openvino"  # noqa: E731
    monkeypatch.setattr("gradwise.engines.openvino_runtime._has", no_openvino)
    _bad(["optimize", run, "--openvino"], "pip install 'gradwise[openvino]'")
    monkeypatch.setattr("gradwise.training.loop.cpu_has_native_bf16", lambda: False)
    _bad(["optimize", run, "--precision", "bf16"], "as long as fp32 here")
    _bad(["optimize", run + "-none", "--onnx"], "not found")


def test_optimize_and_bench_print_their_tables(mlp_run: Run):
    run = str(mlp_run.path)
    result = runner.invoke(app, ["optimize", run, "--quantize", "int8", "--seconds", "0.02"])
    assert result.exit_code == 0, result.output
    assert "trade-off of" in result.output and "torch-int8-dynamic" in result.output
    assert "- torch dynamic int8:" in result.output
    assert "transfer attack" in result.output
    result = runner.invoke(app, ["bench", run, "--variants", "all", "--seconds", "0.02"])
    assert result.exit_code == 0, result.output
    assert "latency per batch, p50 / p95 ms" in result.output
    assert "torch-int8-dynamic" in result.output and "USD / 1M" in result.output
