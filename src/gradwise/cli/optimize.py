"""Verbs that measure and cut inference cost: bench, optimize."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import (
    JsonOpt,
    QuietOpt,
    RunArg,
    SetOpt,
    console_logging,
    flag,
    handles_errors,
    out_console,
    verb_changes,
)


class Which(StrEnum):
    base = "base"
    all = "all"


class Quantize(StrEnum):
    int8 = "int8"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


PriceOpt = Annotated[
    float | None,
    typer.Option(
        "--price-per-core-hour",
        metavar="USD",
        help="price of one CPU core for an hour, for the cost per million predictions "
        "(default 0.05)",
    ),
]
SecondsOpt = Annotated[
    float | None,
    typer.Option(metavar="S", help="measuring time per model and batch size (default 1)"),
]


@handles_errors
def bench(
    run_dir: RunArg,
    variants: Annotated[
        Which | None,
        typer.Option(
            metavar="base|all",
            help="all: also every variant under RUN/artifacts/ (default base)",
        ),
    ] = None,
    batches: Annotated[
        str | None,
        typer.Option(
            metavar="B,B,...", help="batch sizes of the latency sweep (default 1,8,32,128)"
        ),
    ] = None,
    price_per_core_hour: PriceOpt = None,
    seconds: SecondsOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Parameters, size, FLOPs, memory, latency (p50/p95) and throughput per batch size, and
    the cost per million predictions; writes RUN/artifacts/bench.json and bench.png."""
    import gradwise

    changes = verb_changes(
        "bench",
        set_,
        variants=variants.value if variants else None,
        batches=batches,
        price_per_core_hour=price_per_core_hour,
        seconds=seconds,
    )
    with console_logging(quiet=True, progress=False):
        report = gradwise.bench(run_dir, **changes)
    if as_json:
        out_console.print_json(json.dumps(report.to_dict()))
        return
    out_console.print(cost_table(report, f"cost of {run_dir}"))
    out_console.print(latency_table(report))
    for note in report.notes:
        out_console.print(note, highlight=False)
    lm = [c for c in report.costs if c.language_model]
    for cost in lm:
        out_console.print(language_model_lines(cost))
    m = report.machine
    price = report.settings["price_per_core_hour_usd"]
    out_console.print(
        f"measured on {machine_text(m)}; price {price:g} USD per core-hour. Details: "
        f"{run_dir}/artifacts/bench.json, plot: {run_dir}/artifacts/bench.png"
    )


def machine_text(m: dict[str, Any]) -> str:
    threads = m["torch_threads"]
    return f"{m['cpu']} ({m['cores']} cores, {threads} thread{'s' if threads != 1 else ''})"


def cost_table(report: Any, title: str) -> Table:
    """One row per model: size, FLOPs, memory, best throughput and what a million
    predictions cost."""
    table = Table(title=title, title_justify="left")
    table.add_column("variant", no_wrap=True)
    for col in ("params", "size MB", "MFLOPs/sample", "peak MB", "best samples/s"):
        table.add_column(col, justify="right")
    table.add_column("USD / 1M (best batch)", justify="right")
    table.add_column("USD / 1M (batch 1)", justify="right")
    for c in report.costs:
        table.add_row(
            c.variant,
            f"{c.n_params:,}" if c.n_params is not None else "",
            f"{c.size_mb:.3f}",
            f"{c.flops_per_sample / 1e6:.3f}" if c.flops_per_sample is not None else "",
            _megabytes(c.peak_memory_mb),
            f"{c.best_throughput:,.0f} (b{c.best_batch})",
            f"{c.usd_per_million:.5f}",
            f"{c.usd_per_million_batch1:.5f}",
        )
    return table


def latency_table(report: Any) -> Table:
    """p50 / p95 latency (ms) of one forward pass, per model and batch size."""
    table = Table(title="latency per batch, p50 / p95 ms", title_justify="left")
    table.add_column("variant", no_wrap=True)
    for p in report.costs[0].latency:
        table.add_column(f"batch {p.batch}", justify="right")
    for c in report.costs:
        table.add_row(c.variant, *(_latency_cell(p) for p in c.latency))
    return table


def _latency_cell(p: Any) -> str:
    """p50 / p95, and the p50's spread when it did not settle (see the note below it)."""
    noisy = "" if p.stable else f" (±{p.spread:.0%}, noisy)"
    return f"{p.p50_ms:.3f} / {p.p95_ms:.3f}{noisy}"


def language_model_lines(cost: Any) -> str:
    lm = cost.language_model
    lengths = ", ".join(f"{p['tokens']}: {p['p50_ms']:.2f} ms" for p in lm["latency_by_length"])
    return (
        f"{cost.variant}: forward latency by sequence length (batch 1) {lengths}\n"
        f"{cost.variant}: decode {lm['decode_tokens_per_s_cached']:.0f} tokens/s with the cache, "
        f"{lm['decode_tokens_per_s_uncached']:.0f} without ({lm['cache_speedup']:.1f}x), "
        f"{lm['decode_tokens']} new tokens"
    )


@handles_errors
def optimize(
    run_dir: RunArg,
    quantize: Annotated[
        Quantize | None,
        typer.Option(
            metavar="int8",
            help="int8: torch dynamic int8 (Linear/LSTM), plus calibrated static int8 for CNNs "
            "and transformers; with --onnx / --openvino, through that engine",
        ),
    ] = None,
    onnx: Annotated[bool, flag("--onnx", "export to ONNX and run it in ONNX Runtime")] = False,
    openvino: Annotated[
        bool, flag("--openvino", "run it in OpenVINO (int8 through NNCF with --quantize)")
    ] = False,
    precision: Annotated[
        Precision | None,
        typer.Option(metavar="fp32|bf16", help="bf16: only on CPUs with native bf16"),
    ] = None,
    distill: Annotated[
        Path | None,
        typer.Option(
            metavar="STUDENT.yaml",
            help="train a smaller student (its model: section) on this run's soft targets",
        ),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(metavar="T", help="distillation temperature (default 4)")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(metavar="A", help="weight of the soft targets, 0 to 1 (default 0.7)"),
    ] = None,
    auto: Annotated[
        bool, flag("--auto", "try every lever this machine supports; recommend the fastest")
    ] = False,
    budget_pt: Annotated[
        float | None,
        typer.Option(
            "--budget-pt",
            metavar="PT",
            help="accuracy points a variant may lose (RMSE / loss units for other tasks; "
            "default 0.5)",
        ),
    ] = None,
    calibration_samples: Annotated[
        int | None,
        typer.Option(metavar="N", help="training inputs static int8 calibrates on (default 256)"),
    ] = None,
    robust_samples: Annotated[
        int | None,
        typer.Option(metavar="N", help="test samples attacked for robust accuracy"),
    ] = None,
    seconds: SecondsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Make optimised variants (RUN/artifacts/<variant>/, each a run) and print the trade-off
    table: accuracy, ECE and robust-accuracy deltas, size, latency, throughput."""
    import gradwise

    changes = verb_changes(
        "optimize",
        set_,
        quantize=quantize.value if quantize else None,
        onnx=onnx,
        openvino=openvino,
        precision=precision.value if precision else None,
        distill=distill,
        temperature=temperature,
        alpha=alpha,
        auto=auto,
        budget_pt=budget_pt,
        calibration_samples=calibration_samples,
        robust_samples=robust_samples,
        seconds=seconds,
    )
    with console_logging(quiet, progress=False):
        table = gradwise.optimize(run_dir, **changes)
    if as_json:
        out_console.print_json(json.dumps(table.to_dict()))
        return
    out_console.print(tradeoff_table(table, f"trade-off of {run_dir}"))
    for row in table.rows[1:]:
        out_console.print(f"- {row.recommendation}", markup=False, highlight=False)
    out_console.print(table.verdict, markup=False, highlight=False)
    robust = table.settings["robustness"]
    if "attack" in robust:
        out_console.print(
            f"robust accuracy: {robust['attack']}; eps {robust['eps']:g} "
            f"({robust['eps_units']}), {robust['samples']} test samples.",
            markup=False,
            highlight=False,
        )
    if table.settings.get("latency_noise", "stable") != "stable":
        out_console.print(table.settings["latency_noise"], markup=False, highlight=False)
    m = table.machine
    out_console.print(f"measured on {machine_text(m)}. Details: {run_dir}/artifacts/tradeoff.json")


def tradeoff_table(table: Any, title: str) -> Table:
    from gradwise.deploy.tradeoff import coverage_cells, coverage_header

    unit = table.metric_unit or table.metric
    abstains = table.selective is not None  # the base run holds a certified guarantee
    out = Table(title=title, title_justify="left")
    cols = [
        "variant",
        table.metric + (" %" if table.metric_unit == "pt" else ""),
        f"Δ {unit}",
        "ECE",
        "Δ ECE",
        "robust acc %",
        "Δ robust",
        *((coverage_header(table), "Δ coverage pt") if abstains else ()),
        "size MB",
        "b1 ms",
        "b64 ms",
        "samples/s b64",
        "speed-up b64",
    ]
    for col in cols:
        if col == "variant":
            out.add_column(col, no_wrap=True)
        else:
            out.add_column(col, justify="right")
    digits = 2 if table.metric_unit == "pt" else 4
    for r in table.rows:
        out.add_row(
            r.variant,
            f"{r.metric:.{digits}f}",
            f"{r.metric_delta:+.{digits}f}",
            _num(r.ece, 4),
            _num(r.ece_delta, 4, signed=True),
            _num(r.robust_accuracy, 1),
            _num(r.robust_delta, 1, signed=True),
            *(coverage_cells(r) if abstains else ()),
            f"{r.size_mb:.3f}",
            f"{r.latency_b1_ms:.3f}",
            f"{r.latency_b64_ms:.3f}",
            f"{r.throughput_b64:,.0f}",
            f"{r.speedup_b64:.2f}x",
        )
    return out


def _num(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _megabytes(mb: float | None) -> str:
    """Peak memory growth; a small model's batch fits in memory already held: "<0.1"."""
    if mb is None:
        return ""
    return "<0.1" if mb < 0.05 else f"{mb:.1f}"
