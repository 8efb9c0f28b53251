"""Where each document's answers come from: one filler per kind of evidence.

A filler reads the run's parsed files (`Evidence`) and returns the answer with the file it
came from (relative to the run) and the number quoted, or None when the run does not hold it
yet. The quote is `key = value` with `key` a path into that file (`test.accuracy`,
`metrics.certificates[0].test.coverage`, `len(test)` for a list's length), so anyone can read
the same number back from the file; a drawer returns the plot the same file holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradwise.reporting.evidence import Evidence
from gradwise.reporting.plots import (
    plot_bench,
    plot_importance,
    plot_timeline,
    plot_tradeoff,
    plot_training,
)
from gradwise.reporting.plots_audit import plot_check

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Filled:
    """An answer read from the run.

    Attributes:
        text: the answer in a sentence or two.
        source: the file it came from, relative to the run directory.
        number: the key and value quoted from that file ("test.accuracy = 0.9611").
    """

    text: str
    source: str
    number: str


Filler = Callable[[Evidence], Filled | None]
Drawer = Callable[[Evidence], "Figure | None"]


def number(value: Any) -> str:
    """A number as the documents quote it: 4 significant digits, integers whole."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _primary(scores: dict[str, Any]) -> str:
    """The headline metric of a split's scores: accuracy, else the first key in order."""
    names = sorted(k for k, v in scores.items() if isinstance(v, int | float))
    return "accuracy" if "accuracy" in names else names[0]


# ---------------------------------------------------------------- the model and its making


def model_details(ev: Evidence) -> Filled:
    arch = (ev.config.get("model") or {}).get("arch", "?")
    n_params = ev.metrics.get("n_params")
    gradwise = (ev.metrics.get("environment") or {}).get("gradwise", "?")
    return Filled(
        f"{ev.name}: model architecture {arch} ({ev.task}) with {number(n_params)} parameters, "
        f"trained by gradwise {gradwise}.",
        "metrics.json",
        f"n_params = {number(n_params)}",
    )


def versions(ev: Evidence) -> Filled | None:
    env = ev.metrics.get("environment")
    if not env:
        return None
    names = ("gradwise", "torch", "numpy", "python")
    listed = ", ".join(f"{k} {env[k]}" for k in names if k in env)
    return Filled(
        f"Software versions: {listed}.", "metrics.json", f"environment.torch = {env.get('torch')}"
    )


def hardware(ev: Evidence) -> Filled | None:
    env = ev.metrics.get("environment")
    if not env:
        return None
    return Filled(
        f"Trained on {env.get('device')} with {env.get('threads')} thread(s), "
        f"{env.get('platform')}; {number(ev.metrics.get('wall_s'))} s of training.",
        "metrics.json",
        f"wall_s = {number(ev.metrics.get('wall_s'))}",
    )


def design(ev: Evidence) -> Filled:
    model, train = ev.config.get("model") or {}, ev.config.get("train") or {}
    shown = {k: v for k, v in model.items() if v not in (None, [], {})}
    settings = ", ".join(f"{k}={shown[k]}" for k in sorted(shown))
    optimizer, loss = train.get("optimizer") or {}, train.get("loss") or {}
    return Filled(
        f"Architecture: {settings}. Training: {train.get('epochs')} epochs, batch "
        f"{train.get('batch_size')}, optimizer {optimizer.get('name', '?')} at lr "
        f"{optimizer.get('lr', '?')}, loss {loss.get('name', '?')}, seed {ev.config.get('seed')}.",
        "config.yaml",
        f"train.epochs = {train.get('epochs')}",
    )


def development_steps(ev: Evidence) -> Filled:
    """What was done to the model, in order, and whether it started from a pre-trained one."""
    start = (ev.config.get("model") or {}).get("init_from")
    origin = (
        f"Started from {start}" if start else "Started from random weights (no pre-trained model)"
    )
    steps = [f"trained ({len(ev.history)} logged steps)"]
    if ev.audit:
        steps.append(f"audited ({', '.join(sorted(ev.audit))})")
    done = (("explained", ev.explain), ("benchmarked", ev.bench), ("monitored", ev.monitor))
    steps += [name for name, found in done if found is not None]
    if ev.variants:
        steps.append(f"variants kept beside it ({', '.join(ev.variants)})")
    return Filled(
        f"{origin}; then {', '.join(steps)} by gradwise from the resolved config, each step "
        "writing its files into the run directory.",
        "config.yaml",
        f"model.init_from = {start}",
    )


def components(ev: Evidence) -> Filled:
    """How the parts feed into each other: preprocessing, network, the stored judgement."""
    spec, schema = ev.model.get("input") or {}, ev.schema
    table = schema.get("tabular") or {}
    steps = [f"{spec.get('kind', '?')} input of shape {spec.get('shape')}"]
    if table:
        steps.append(
            f"{len(table.get('numeric') or [])} numeric columns standardised with the training "
            f"means, {len(table.get('categorical') or [])} categorical columns "
            f"{table.get('encoding', 'encoded')}"
        )
    arch = (ev.model.get("model") or {}).get("arch", "?")
    steps.append(f"the {arch} network with {spec.get('n_outputs')} outputs")
    stored = sorted(k for k, v in (ev.model.get("calibration") or {}).items() if v)
    steps.append(f"then {', '.join(stored)} as stored" if stored else "then its raw output")
    return Filled(
        f"One function from input to output: {' -> '.join(steps)}; model.json holds every "
        "part, so the served model is the audited one.",
        "model.json",
        f"input.kind = {spec.get('kind')}",
    )


def input_spec(ev: Evidence) -> Filled:
    """What the system expects as input and gives as output."""
    schema, target = ev.schema, ev.schema.get("target") or {}
    columns = (schema.get("tabular") or {}).get("order")
    shown = f"the columns {', '.join(columns)}" if columns else f"shape {schema.get('input_shape')}"
    classes = target.get("classes")
    output = f"one of {len(classes)} classes of {target.get('name')}" if classes else "a number"
    return Filled(
        f"Input: {schema.get('kind')} data with {shown}. Output: {output}.",
        "model.json",
        f"schema.input_shape = {schema.get('input_shape')}",
    )


def data_provenance(ev: Evidence) -> Filled | None:
    if ev.splits is None:
        return None
    return Filled(
        f"Source {ev.splits.get('source')} ({number(ev.splits.get('n_rows'))} rows), "
        f"SHA-256 {ev.splits.get('sha256')}.",
        "splits.json",
        f"sha256 = {ev.splits.get('sha256')}",
    )


def splits(ev: Evidence) -> Filled | None:
    if ev.splits is None:
        return None
    rows = ev.splits.get("rows") or {}
    rule = ev.splits.get("rule") or {}
    listed = ", ".join(f"{k} {rows[k]}" for k in ("train", "val", "test") if k in rows)
    return Filled(
        f"Rows per split: {listed} ({rule.get('method', '?')} split, stratified "
        f"{rule.get('stratified')}); the row numbers of every split are kept.",
        "splits.json",
        f"len(test) = {rows.get('test')}",
    )


def training_history(ev: Evidence) -> Filled | None:
    if not ev.history:
        return None
    best = ev.metrics.get("best_epoch")
    return Filled(
        f"{len(ev.history)} logged steps (metrics.jsonl) over {ev.metrics.get('epochs')} "
        f"epochs; the best epoch was {best} (stopped: {_stop(ev)}).",
        "metrics.json",
        f"best_epoch = {best}",
    )


def _stop(ev: Evidence) -> str:
    """Why training stopped: a callback's message, early stopping, or the epoch budget."""
    if ev.metrics.get("stop_reason"):
        return str(ev.metrics["stop_reason"])
    train = ev.config.get("train") or {}
    if ev.metrics.get("stopped_early"):
        early = train.get("early_stopping") or {}
        return (
            f"early stopping, {early.get('metric', 'the validation metric')} not improving for "
            f"{early.get('patience', '?')} epochs"
        )
    return f"the budget of {train.get('epochs')} epochs ran out"


def test_metrics(ev: Evidence) -> Filled | None:
    test = ev.metrics.get("test") or {}
    if not test:
        return None
    main = _primary(test)
    listed = ", ".join(f"{k} {number(test[k])}" for k in sorted(test))
    return Filled(
        f"On {number(ev.metrics.get('n_test'))} held-out test rows: {listed}.",
        "metrics.json",
        f"test.{main} = {number(test[main])}",
    )


def metric_choice(ev: Evidence) -> Filled | None:
    test = ev.metrics.get("test") or {}
    if not test:
        return None
    main = _primary(test)
    return Filled(
        f"Reported on the test split: {', '.join(sorted(test))}; the audit grades "
        f"{main} against baselines and checks whether the confidence behind it is honest.",
        "metrics.json",
        f"test.{main} = {number(test[main])}",
    )


# ---------------------------------------------------------------- the audit's checks


def check(name: str, key: tuple[str, ...] = ()) -> Filler:
    """The filler of an audit check: its verdict and summary, quoting `key` of its metrics
    (a path into audit/<name>.json's metrics; "*" reads the key the check graded) or, by
    default, its headline."""

    def fill(ev: Evidence) -> Filled | None:
        result = ev.audit.get(name)
        if result is None:
            return None
        quoted = f"headline = {result.headline}"
        if key:
            value: Any = result.metrics
            path = [str(result.metrics.get("graded", "before")) if k == "*" else k for k in key]
            for k in path:
                value = value.get(k) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                quoted = f"metrics.{'.'.join(path)} = {number(value)}"
        return Filled(f"{result.verdict.upper()}: {result.summary}", f"audit/{name}.json", quoted)

    return fill


def draw_check(name: str) -> Drawer:
    """The plot of an audit check, redrawn from audit/<name>.json as the report draws it."""

    def draw(ev: Evidence) -> Figure | None:
        result = ev.audit.get(name)
        return None if result is None else plot_check(result)

    return draw


def selective_oversight(ev: Evidence) -> Filled | None:
    result = ev.audit.get("selective")
    if result is None:
        return None
    certificates = result.metrics.get("certificates") or []
    certified = [(i, c) for i, c in enumerate(certificates) if c.get("certified")]
    if not certified:
        return Filled(
            f"No abstention guarantee: {result.summary}",
            "audit/selective.json",
            f"len(metrics.certificates) = {len(certificates)}",
        )
    i, c = certified[0]
    test = c.get("test") or {}
    key, coverage = (
        ("test.coverage", test["coverage"]) if "coverage" in test else ("coverage", c["coverage"])
    )
    return Filled(
        f"The model abstains on {1 - float(coverage):.1%} of test rows and hands them to a "
        f"person; among the answered rows the error is at most {c['alpha']:.1%} with "
        f"{1 - c['delta']:.0%} confidence. {result.summary}",
        "audit/selective.json",
        f"metrics.certificates[{i}].{key} = {number(coverage)}",
    )


# ---------------------------------------------------------------- explain, optimise, operate


def explain(ev: Evidence) -> Filled | None:
    e = ev.explain
    if e is None:
        return None
    imp = e.get("importance") or {}
    ranked = sorted(
        zip(imp.get("mean_abs_attribution") or [], imp.get("features") or []), reverse=True
    )
    top = f"; the largest mean |attribution| is {ranked[0][1]}" if ranked else ""
    return Filled(
        f"Attributions ({e.get('method')}) for {len(e.get('rows') or [])} {e.get('split')} "
        f"rows explained one by one{top}.",
        "explain/explain.json",
        f"method = {e.get('method')}",
    )


def draw_importance(ev: Evidence) -> Figure | None:
    imp = (ev.explain or {}).get("importance")
    return plot_importance(imp) if imp else None


def optimize(ev: Evidence) -> Filled | None:
    if ev.tradeoff is None and not ev.variants:
        return None
    kept = f"Variants kept beside the model: {', '.join(ev.variants) or 'none'}"
    if ev.tradeoff is None:
        return Filled(
            f"{kept}; no trade-off table chose among them (gradwise optimize writes one).",
            "artifacts/",
            f"variants = {len(ev.variants)}",
        )
    rows = ev.tradeoff.get("rows") or []
    return Filled(
        f"{kept}. The trade-off table measured {len(rows)} variant(s): "
        f"{ev.tradeoff.get('verdict', '')}",
        "artifacts/tradeoff.json",
        f"len(rows) = {len(rows)}",
    )


def draw_tradeoff(ev: Evidence) -> Figure | None:
    return None if ev.tradeoff is None else plot_tradeoff(ev.tradeoff)


def bench(ev: Evidence) -> Filled | None:
    costs = (ev.bench or {}).get("costs") or []
    if not costs:
        return None
    keys = ("size_mb", "peak_memory_mb", "best_batch", "best_throughput", "threads")
    first = costs[0]
    listed = ", ".join(f"{k} {number(first[k])}" for k in keys if k in first)
    return Filled(
        f"{len(costs)} variant(s) measured on the machine that ran the benchmark; "
        f"{first.get('variant')}: {listed}.",
        "artifacts/bench.json",
        f"len(costs) = {len(costs)}",
    )


def draw_bench(ev: Evidence) -> Figure | None:
    return None if ev.bench is None else plot_bench(ev.bench)


def monitor(ev: Evidence) -> Filled | None:
    r = ev.monitor
    if r is None:
        return None
    alerts = r.get("alerts") or []
    return Filled(
        f"{number(r.get('served'))} served predictions watched in {len(ev.windows)} windows "
        f"of {r.get('settings', {}).get('window')}; {len(alerts)} alert(s) raised.",
        "monitor/report.json",
        f"served = {number(r.get('served'))}",
    )


def draw_monitor(ev: Evidence) -> Figure | None:
    return None if ev.monitor is None else plot_timeline(ev.windows, ev.monitor)


def draw_training(ev: Evidence) -> Figure | None:
    return plot_training(ev.history, ev.metrics.get("best_epoch"))


def logging(ev: Evidence) -> Filled | None:
    r = ev.monitor
    if r is None or not r.get("store"):
        return None
    store = str(r["store"]).split("@")[-1]  # the host and database, never a user name
    return Filled(
        f"Every served prediction is kept in the prediction store ({store}), with its model "
        f"version and replica; {number(r.get('served'))} rows read back for monitoring.",
        "monitor/report.json",
        f"served = {number(r.get('served'))}",
    )
