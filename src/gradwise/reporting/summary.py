"""The summary card at the top of the report: what the model is, how good, how sure, how
fragile, how fast, and whether to ship it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradwise.auditing import CHECKS
from gradwise.data.split import leak_warning
from gradwise.evaluate.compare import PRIMARY
from gradwise.reporting.blocks import num
from gradwise.reporting.evidence import Evidence
from gradwise.reporting.sections import architecture
from gradwise.reporting.ship import ShipDecision, check_anchor, ship_rule


@dataclass(frozen=True)
class Noise:
    """The headline metric's noise: one standard deviation, and where it comes from."""

    std: float | None
    source: str


@dataclass(frozen=True)
class Card:
    """Label / value / section-anchor lines, each check's verdict, and the decision."""

    title: str
    facts: tuple[tuple[str, str, str], ...]
    verdicts: tuple[tuple[str, str, str], ...]
    decision: ShipDecision


def headline_metric(ev: Evidence) -> str:
    """The task's primary test metric (accuracy, rmse, loss, exact_match)."""
    return PRIMARY.get(ev.task, "loss")


def headline_noise(ev: Evidence, metric: str) -> Noise:
    """The best noise estimate at hand: seeds of a tuning study or a comparison the run
    belongs to, else the baseline check's test-set bootstrap, else unknown."""
    if ev.tune is not None:
        study = ev.tune.data
        seeds = study.get("seeds") or {}
        searched = str(study.get("metric", "")).partition(".")[2]
        if seeds.get("test_std") is not None and searched == metric:
            return Noise(
                float(seeds["test_std"]),
                f"seed-to-seed std of test {metric} over {len(seeds.get('seeds', []))} "
                f"seeds of the tuned config (tuning study {ev.tune.path})",
            )
    if ev.compare is not None:
        arm = _compare_arm(ev, ev.compare.data)
        if arm is not None and str(ev.compare.data.get("metric")) == f"test.{metric}":
            return Noise(
                float(arm["std"]),
                f"seed-to-seed std over {len(arm['values'])} seeds of {arm['name']} "
                f"(gradwise compare, {ev.compare.path})",
            )
    baseline = ev.audit.get("baseline")
    if baseline is not None and baseline.metrics.get("metric") == metric:
        boot = baseline.metrics.get("noise_test_bootstrap")
        if boot is not None:
            return Noise(
                float(boot),
                "test-set bootstrap of the margin over the best baseline "
                "(baseline audit); seed-to-seed noise not measured",
            )
    return Noise(
        None,
        "unknown: one run, no seeds measured (gradwise compare CONFIG CONFIG "
        "--seeds 3, or gradwise audit RUN --checks baseline for the test-set noise)",
    )


def _compare_arm(ev: Evidence, data: dict[str, Any]) -> dict[str, Any] | None:
    """The arm the run is a seed of: compare writes DIR/<arm>/f<fraction>/s<seed>."""
    path = Path(ev.path).resolve()
    for arm in data.get("arms", []):
        folder = f"f{arm['fraction']:g}"
        if path.parent.name == folder and path.parent.parent.name == arm["name"]:
            return dict(arm)
    return None


def card(ev: Evidence) -> Card:
    m, schema = ev.metrics, ev.schema
    metric = headline_metric(ev)
    test = m.get("test") or {}
    noise = headline_noise(ev, metric)
    value = test.get(metric)
    spread = f" ± {num(noise.std, 2)}" if noise.std is not None else " ± unknown"
    facts = [
        ("task", _task(ev), "data"),
        (
            "data",
            f"{num(sum(m.get(f'n_{s}') or 0 for s in ('train', 'val', 'test')))} rows of "
            f"{schema.get('source')}: {num(m.get('n_train'))} train / {num(m.get('n_val'))} val / "
            f"{num(m.get('n_test'))} test",
            "data",
        ),
        ("architecture", architecture(ev.config), "data"),
        ("parameters", num(m.get("n_params")), "data"),
        (f"test {metric}", f"{num(value)}{spread}", "metrics"),
        ("noise", noise.source, "metrics" if noise.std is None else _noise_anchor(noise)),
    ]
    extra = _secondary(test, metric)
    if extra:
        facts.append(("other test metrics", extra, "metrics"))
    for name, label in (
        ("calibration", "calibration"),
        ("selective", "abstention"),
        ("robustness", "robustness"),
        ("shift", "shift power"),
    ):
        r = ev.audit.get(name)
        text = (
            f"{r.headline} ({r.verdict})"
            if r
            else f"not measured: gradwise audit {ev.path} --checks {name}"
        )
        facts.append((label, text, check_anchor(name)))
    facts.append(("latency", _latency(ev), "cost"))
    verdicts = tuple(
        (name, ev.audit[name].verdict if name in ev.audit else "not run", check_anchor(name))
        for name in CHECKS
    )
    alerts = len((ev.monitor or {}).get("alerts") or [])
    leak = leak_warning((ev.splits or {}).get("rule") or {})
    groups = ((ev.config.get("audit") or {}).get("fairness") or {}).get("groups")
    not_asked = frozenset() if groups else frozenset({"fairness"})
    return Card(ev.name, tuple(facts), verdicts, ship_rule(ev.audit, alerts, leak, not_asked))


def _noise_anchor(noise: Noise) -> str:
    if "tuning study" in noise.source:
        return "tune"
    return "audit-baseline" if "baseline" in noise.source else "metrics"


def _task(ev: Evidence) -> str:
    schema = ev.schema
    kind, task = schema.get("kind"), ev.task
    classes = (schema.get("target") or {}).get("classes") or []
    if task == "classification":
        return f"classification of {kind} inputs into {len(classes)} classes"
    if task == "regression":
        outputs = schema.get("n_outputs")
        return f"regression of {kind} inputs ({outputs} output{'s' if outputs != 1 else ''})"
    if task == "lm":
        return f"language model ({kind}, next-token prediction)"
    return f"{task} on {kind} inputs"


def _secondary(test: dict[str, Any], metric: str) -> str:
    keep = [
        k
        for k in ("f1_macro", "roc_auc", "average_precision", "log_loss", "mae", "r2", "perplexity")
        if k in test and k != metric
    ]
    return ", ".join(f"{k} {num(test[k])}" for k in keep)


def _latency(ev: Evidence) -> str:
    """p50 at batch 1 and the best throughput of the run itself; the recommended variant."""
    text = f"not measured: gradwise bench {ev.path}"
    costs = (ev.bench or {}).get("costs") or []
    base = next((c for c in costs if c.get("variant") == "fp32"), costs[0] if costs else None)
    if base is not None:
        b1 = next((p for p in base.get("latency", []) if p["batch"] == 1), None)
        first = f"p50 {b1['p50_ms']:.3f} ms at batch 1, " if b1 else ""
        text = (
            f"{first}{base['best_throughput']:,.0f} samples/s at batch {base['best_batch']} "
            "(gradwise bench)"
        )
    elif ev.tradeoff is not None:
        row = ev.tradeoff["rows"][0]
        text = (
            f"p50 {row['latency_b1_ms']:.3f} ms at batch 1, {row['latency_b64_ms']:.3f} ms "
            "at batch 64 (gradwise optimize)"
        )
    if ev.tradeoff is not None and ev.tradeoff.get("choice"):
        chosen = next(r for r in ev.tradeoff["rows"] if r["variant"] == ev.tradeoff["choice"])
        text += f"; recommended variant {chosen['variant']} ({chosen['speedup_b64']:.1f}x at b64)"
    return text
