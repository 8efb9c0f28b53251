"""The verbs after training that ship and watch a run: what it costs to serve (bench), a
faster variant (optimize), the server (serve) and the drift watch (monitor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.api.common import as_run, config_of
from gradwise.config import (
    BenchSettings,
    MonitorSettings,
    OptimizeSettings,
    ServeSettings,
    settings_with,
)
from gradwise.run import Run

if TYPE_CHECKING:
    from gradwise.deploy.cost import BenchReport
    from gradwise.deploy.tradeoff import TradeOff
    from gradwise.monitoring import MonitorReport, WindowResult
    from gradwise.serving.tune import BatchingResult, TuneTrial


def bench(
    run: Run | str | Path,
    settings: BenchSettings | None = None,
    **changes: Any,
) -> BenchReport:
    """Measure what the run costs to predict with: parameters, size on disk, FLOPs per
    sample, peak memory, p50/p95 latency and throughput per batch size, USD per million
    predictions (and, for language models, latency by sequence length and decode speed with
    and without the cache). Writes RUN/artifacts/bench.json and the latency-vs-throughput
    plot RUN/artifacts/bench.png.

    Args:
        settings: a BenchSettings; default: the run's config `bench:` section.
        **changes: BenchSettings fields to change: `variants` ("base": the run alone; "all":
            also every variant under RUN/artifacts/), `batches`, `price_per_core_hour`
            (USD per CPU core-hour), `seconds` (measuring time per model and batch size).
    """
    from gradwise.artifacts import write_json
    from gradwise.deploy.cost import bench as measure
    from gradwise.deploy.cost import plot_latency_throughput
    from gradwise.deploy.variants import artifacts_folder, variant_folders, variant_name

    base = as_run(run)
    chosen = settings_with(settings or base.config.bench, "bench", changes)
    runs = {variant_name(base): base}
    if chosen.variants == "all":
        runs.update({variant_name(v): v for v in map(Run.load, variant_folders(base))})
    report = measure(runs, chosen.batches, chosen.price_per_core_hour, chosen.seconds)
    report.settings["variants"] = chosen.variants
    folder = artifacts_folder(base)
    write_json(folder / "bench.json", report.to_dict())
    plot_latency_throughput(report, folder / "bench.png")
    return report


def optimize(
    run: Run | str | Path,
    settings: OptimizeSettings | None = None,
    **changes: Any,
) -> TradeOff:
    """Make optimised variants of a run, each a run directory under RUN/artifacts/<variant>/,
    and measure the trade-off (written to RUN/artifacts/tradeoff.json with the settings).

    Args:
        settings: an OptimizeSettings; default: the run's config `optimize:` section.
        **changes: OptimizeSettings fields to change, e.g. `quantize="int8"` (torch dynamic
            int8 and, for CNNs and transformers, calibrated static int8), `onnx=True`,
            `openvino=True`, `precision="bf16"` (only where the CPU multiplies bf16
            natively), `distill="student.yaml"`, `auto=True` (every candidate this machine
            supports; the fastest within `budget_pt` recommended), `robust_samples=200`.

    Returns:
        The TradeOff: one row per variant, the recommendation and why the others lost.

    Raises:
        ConfigError: bad levers (bf16 without native support, OpenVINO missing, none given).
    """
    from gradwise.deploy.optimize import optimize as run_levers

    loaded = as_run(run)
    return run_levers(
        loaded, settings_with(settings or loaded.config.optimize, "optimize", changes)
    )


def serve(
    run: Run | str | Path,
    settings: ServeSettings | None = None,
    *,
    on_listening: Callable[[], None] | None = None,
    on_trial: Callable[[TuneTrial], None] | None = None,
    **changes: Any,
) -> BatchingResult | None:
    """Serve a run over HTTP until interrupted (POST /v1/predict, /v1/feedback, /healthz,
    /readyz, /metrics; POST /v1/generate for language models). See `gradwise.serving.app` for
    the ASGI app alone. With `tune=True`, measure the batching settings under load instead
    and return the recommendation (also RUN/serve/tune.json).

    Args:
        run: a Run or its directory (an optimised variant's directory too).
        settings: a ServeSettings; default: the run's config `serve:` section.
        on_listening: called once the port accepts requests.
        on_trial: with `tune`: called with each measured batching setting.
        **changes: ServeSettings fields to change: `host`, `port`, `store` (None:
            RUN/monitor/predictions.sqlite; a SQLite path, a SQLAlchemy URL, or "off"),
            `max_batch`, `max_wait_ms`, `workers`, `threads`, `api_key_env`, `max_body_kb`,
            `flush_interval_s`, `tune`, `p95_ms`, ...
    """
    chosen = settings_with(settings or config_of(run).serve, "serve", changes)
    if chosen.tune:
        from gradwise.serving.tune import tune_batching

        return tune_batching(run, chosen, on_trial=on_trial)
    from gradwise.serving.runner import serve_forever

    run_dir = run.path if isinstance(run, Run) else Path(run)
    serve_forever(run_dir, chosen, on_listening=on_listening)
    return None


def monitor(
    run: Run | str | Path,
    settings: MonitorSettings | None = None,
    *,
    replay: str | None = None,
    labels: str | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **changes: Any,
) -> MonitorReport:
    """Watch what a run served: per window of traffic, input drift against the training
    split (raw features and embeddings), predictions and confidence against validation, a
    label-free accuracy estimate and, where feedback arrived, the measured accuracy. Writes
    RUN/monitor/report.json (with the settings), windows.json and timeline.png; alerts are
    logged (and POSTed to `webhook`).

    Args:
        settings: a MonitorSettings; default: the run's config `monitor:` section.
        replay: instead of the store, a CSV or parquet table (a file, a folder of shards or a
            glob), predicted and watched window by window as if it had been served; memory
            holds about a window, not the table. Windows count instances.
        labels: with `replay`: the table's column of true labels (the feedback).
        on_window: called with each window as it is evaluated.
        should_stop: with `follow`: polled after each pass; True ends the watch.
        **changes: MonitorSettings fields to change: `store` (default
            RUN/monitor/predictions.sqlite), `window` (instances, or a duration such as
            "30m", "1h"), `follow`, `poll_s`, `webhook`, and the thresholds (`alpha`,
            `confidence_drop`, `accuracy_drop`, `min_labels`, `persist`, ...).

    Returns:
        A MonitorReport (`.alerted` is True when a threshold was crossed).

    Raises:
        ConfigError: `labels` without `replay`, or `replay` with `follow` or `store`.
    """
    from gradwise.errors import ConfigError
    from gradwise.monitoring import replay_table, watch

    loaded = as_run(run)
    chosen = settings_with(settings or loaded.config.monitor, "monitor", changes)
    if replay is None:
        if labels is not None:
            raise ConfigError(
                f"--labels {labels} names the label column of a --replay table; served "
                "traffic's labels are the feedback in its store."
            )
        return watch(loaded, chosen, on_window=on_window, should_stop=should_stop)
    if chosen.follow or changes.get("store") is not None:
        raise ConfigError(
            "--replay reads a table instead of the store, once: drop --follow and --store."
        )
    return replay_table(loaded, chosen, replay, labels, on_window=on_window)
