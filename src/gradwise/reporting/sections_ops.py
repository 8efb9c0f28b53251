"""The report's sections on running the model: the cost and latency of each optimised
variant (artifacts/tradeoff.json, bench.json), the tuning study (DIR/tune.json) and the
monitor (monitor/report.json, windows.json). Without the JSON, each names its command."""

from __future__ import annotations

from typing import Any

from gradwise.reporting.blocks import Block, Facts, Plot, Section, Settings, Table, Text, flat, num
from gradwise.reporting.evidence import Evidence
from gradwise.reporting.figures import data_uri
from gradwise.reporting.plots import (
    plot_bench,
    plot_importance_study,
    plot_timeline,
    plot_tradeoff,
    plot_trials,
)

# ---------------------------------------------------------------- cost


def cost_section(ev: Evidence) -> Section:
    title = "Cost and latency of each optimised variant"
    t, bench = ev.tradeoff, ev.bench
    if t is None and bench is None:
        return Section(
            "cost",
            title,
            missing=(
                f"no trade-off or cost measured yet: gradwise optimize {ev.path} --quantize int8 "
                f"--onnx, then gradwise bench {ev.path} --variants all"
            ),
        )
    blocks: list[Block] = []
    if t is not None:
        blocks += _tradeoff_blocks(t)
        blocks += _static_int8_notes(ev, t)
        unmeasured = sorted(set(ev.variants) - {r["variant"] for r in t["rows"]})
        if unmeasured:
            blocks.append(
                Text(
                    f"Variants on disk that the last trade-off did not measure: "
                    f"{', '.join(unmeasured)} (gradwise bench {ev.path} --variants all measures "
                    "their cost).",
                    note=True,
                )
            )
    else:
        blocks.append(
            Text(
                f"no trade-off table yet: gradwise optimize {ev.path} --quantize int8 --onnx",
                note=True,
            )
        )
    if bench is not None:
        blocks += _bench_blocks(bench)
    else:
        blocks.append(
            Text(f"no latency sweep yet: gradwise bench {ev.path} --variants all", note=True)
        )
    return Section("cost", title, tuple(blocks))


RECURRENT = frozenset({"rnn", "lstm", "gru"})


def _static_int8_notes(ev: Evidence, t: dict[str, Any]) -> list[Block]:
    """Static int8 quantises Conv, MatMul and Gemm only: a recurrent model keeps its
    recurrent layers in float, so its "int8" row is a float model with an int8 head."""
    arch = str((ev.config.get("model") or {}).get("arch", ""))
    static = [r["variant"] for r in t["rows"] if "int8-static" in str(r["variant"])]
    if arch not in RECURRENT or not static:
        return []
    return [
        Text(
            f"{', '.join(static)}: static int8 quantises convolutions and matrix products "
            f"(Conv, MatMul, Gemm) only; this {arch.upper()}'s recurrent layers stay float32, "
            "so only its output layer is int8, and its row measures that"
            + ("; dynamic int8 quantises the LSTM's weights too." if arch == "lstm" else "."),
            note=True,
        )
    ]


def _tradeoff_blocks(t: dict[str, Any]) -> list[Block]:
    metric, unit = t["metric"], t.get("metric_unit") or t["metric"]
    guarantee = t.get("selective")
    rows = tuple(
        (
            r["variant"],
            num(r["metric"]),
            f"{r['metric_delta']:+.3g}",
            num(r.get("ece")),
            num(r.get("robust_accuracy")),
            *(_coverage_cells(r) if guarantee else ()),
            f"{r['size_mb']:.3f}",
            f"{r['latency_b1_ms']:.3f}",
            f"{r['latency_b64_ms']:.3f}",
            f"{r['speedup_b64']:.2f}x",
        )
        for r in t["rows"]
    )
    coverage = (f"coverage % at α {guarantee['alpha']:g}", "Δ coverage pt") if guarantee else ()
    headers = (
        "variant",
        metric + (" %" if unit == "pt" else ""),
        f"Δ {unit}",
        "ECE",
        "robust acc %",
        *coverage,
        "size MB",
        "b1 ms",
        "b64 ms",
        "speed-up b64",
    )
    blocks: list[Block] = [
        Table(headers, rows, "the trade-off, re-measured on this machine (artifacts/tradeoff.json)")
    ]
    blocks.append(
        Plot(
            data_uri(plot_tradeoff(t)),
            "trade-off",
            "Left: speed-up against the metric lost (dashed: the budget). Right: "
            "size on disk against latency at batch 1.",
        )
    )
    recs = [r["recommendation"] for r in t["rows"] if r["variant"] != "fp32"]
    blocks += [Text(r) for r in recs]
    blocks.append(Text(str(t.get("verdict", ""))))
    machine = t.get("machine") or {}
    settings = dict(t.get("settings") or {}) | {"machine": machine}
    blocks.append(Settings(flat(settings), "how the trade-off was measured"))
    return blocks


def _coverage_cells(row: dict[str, Any]) -> tuple[str, str]:
    """The share of validation inputs a variant answers under its own certified threshold,
    and its change against the base's, in points."""
    if row.get("coverage") is None or row.get("coverage_delta") is None:
        return ("not certified" if row.get("certified") is False else "n/a"), "n/a"
    return f"{100 * row['coverage']:.1f}", f"{100 * row['coverage_delta']:+.1f}"


def _bench_blocks(bench: dict[str, Any]) -> list[Block]:
    rows = tuple(
        (
            c["variant"],
            num(c.get("n_params")),
            f"{c['size_mb']:.3f}",
            num((c.get("flops_per_sample") or 0) / 1e6) if c.get("flops_per_sample") else "n/a",
            num(c.get("peak_memory_mb")),
            f"{c['best_throughput']:,.0f} (b{c['best_batch']})",
            f"{c['usd_per_million']:.5f}",
            f"{c['usd_per_million_batch1']:.5f}",
        )
        for c in bench.get("costs", [])
    )
    headers = (
        "variant",
        "params",
        "size MB",
        "MFLOPs/sample",
        "peak MB",
        "best samples/s",
        "USD / 1M (best batch)",
        "USD / 1M (batch 1)",
    )
    blocks: list[Block] = [Table(headers, rows, "what a prediction costs (artifacts/bench.json)")]
    fig = plot_bench(bench)
    if fig is not None:
        blocks.append(Plot(data_uri(fig), "latency and throughput per batch size"))
    settings = dict(bench.get("settings") or {}) | {"machine": bench.get("machine") or {}}
    blocks.append(Settings(flat(settings), "how the cost was measured"))
    return blocks


# ---------------------------------------------------------------- tuning


def tune_section(ev: Evidence) -> Section:
    title = "Tuning study and hyperparameter importance"
    if ev.tune is None:
        config = f"{ev.path}/config.given.yaml" if ev.given else "CONFIG"
        return Section(
            "tune",
            title,
            missing=(
                f"no tuning study: gradwise tune {config} --out DIR, then gradwise report "
                f"{ev.path} --tune DIR"
            ),
        )
    s = ev.tune.data
    seeds = s.get("seeds") or {}
    facts = [
        (
            "study",
            f"{ev.tune.path} ("
            + ("given with --tune" if ev.tune.found == "given" else "the run lies inside it")
            + ")",
        ),
        ("searched", f"{s.get('metric')} ({s.get('direction')})"),
        (
            "trials",
            f"{s.get('n_trials')}: {s.get('n_complete')} complete, {s.get('n_pruned')} "
            f"pruned, {s.get('n_failed')} failed",
        ),
        ("best trial", f"{s.get('best_trial')}: {num(s.get('best_value'))}"),
    ]
    if seeds:
        facts.append(
            (
                f"best config over {len(seeds.get('seeds', []))} seeds",
                f"val {num(seeds.get('val_mean'))} ± {num(seeds.get('val_std'))}, test "
                f"{num(seeds.get('test_mean'))} ± {num(seeds.get('test_std'))}",
            )
        )
    facts.append(
        (
            "search time",
            f"{num(s.get('wall_s'))} s wall, {num(s.get('trial_wall_s'))} s of training",
        )
    )
    blocks: list[Block] = [Facts(tuple(facts))]
    blocks.append(
        Table(
            ("hyperparameter", "best value"),
            tuple((k, num(v)) for k, v in (s.get("best_params") or {}).items()),
        )
    )
    for fig, alt in (
        (plot_trials(s), "trials"),
        (plot_importance_study(s.get("importance") or {}), "importance"),
    ):
        if fig is not None:
            blocks.append(Plot(data_uri(fig), alt))
    imp = s.get("importance") or {}
    if imp.get("sentence"):
        blocks.append(Text(str(imp["sentence"])))
    sens = s.get("sensitivity") or []
    if sens:
        blocks.append(
            Table(
                ("hyperparameter", "step", "value", "mean", "Δ", "threshold", "verdict"),
                tuple(
                    (
                        r["param"],
                        r["step"],
                        num(r["value"]),
                        num(r["mean"]),
                        f"{r['delta']:+.3g}",
                        num(r["threshold"]),
                        r["verdict"],
                    )
                    for r in sens
                ),
                "sensitivity: each important hyperparameter one step either side of its best value",
            )
        )
        if s.get("sensitivity_rule"):
            blocks.append(Text(str(s["sensitivity_rule"]), note=True))
    blocks.append(Settings(flat(s.get("settings") or {}), "settings of the study"))
    return Section("tune", title, tuple(blocks))


# ---------------------------------------------------------------- monitoring


def monitor_section(ev: Evidence) -> Section:
    title = "Monitoring of served traffic"
    r = ev.monitor
    if r is None:
        return Section(
            "monitor",
            title,
            missing=(
                f"not monitored yet: gradwise serve {ev.path}, then gradwise monitor {ev.path}"
            ),
        )
    facts = [
        ("served instances", num(r.get("served"))),
        (
            "windows",
            f"{r.get('n_windows', len(ev.windows))} of {r.get('settings', {}).get('window')}",
        ),
        ("replicas", ", ".join(f"{k}: {v:,}" for k, v in (r.get("replicas") or {}).items())),
        ("model versions", ", ".join(f"{k}: {v:,}" for k, v in (r.get("versions") or {}).items())),
        (
            "validation accuracy / confidence",
            f"{num(r.get('val_accuracy'))} / {num(r.get('val_confidence'))}",
        ),
        ("store", str(r.get("store"))),
    ]
    blocks: list[Block] = [Facts(tuple(facts))]
    fig = plot_timeline(ev.windows, r)
    if fig is not None:
        blocks.append(
            Plot(
                data_uri(fig),
                "monitoring timeline",
                "Top: each representation's largest drift effect over its threshold "
                "(above 1 and significant: drifted). Bottom: the label-free accuracy "
                "estimate and, where feedback arrived, the measured accuracy. Shaded: "
                "windows with alerts.",
            )
        )
    trust = r.get("trust") or {}
    if trust.get("means"):
        blocks.append(Text(str(trust["means"]), note=True))
    alerts = r.get("alerts") or []
    if alerts:
        blocks.append(
            Table(
                ("window", "alert", "message"),
                tuple((str(a["window"]), a["kind"], a["message"]) for a in alerts),
                "alerts",
            )
        )
    else:
        blocks.append(Text("No alert: no window crossed a threshold."))
    retrain = r.get("retrain")
    if retrain:
        blocks.append(
            Text(
                f"Drift persisted in windows {retrain['first']}-{retrain['last']}: "
                f"{retrain['n']} inputs ({retrain['n_labelled']} labelled) written to "
                f"{retrain['file']}; retrain with: {retrain['command']}"
            )
        )
    blocks.append(Settings(flat(r.get("settings") or {}), "settings of the monitor"))
    return Section("monitor", title, tuple(blocks))
