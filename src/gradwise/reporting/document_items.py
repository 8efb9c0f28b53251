"""What the regulated documents say, item by item, and where each answer comes from.

A filler reads the run's parsed files (`Evidence`) and returns the answer with the file it
came from (relative to the run) and the number quoted, or None when the run does not hold it
yet. Items without a filler are the ones only a person can answer; their `needs` says what is
missing and why it matters. The items follow the fillers; the templates in `documents.py`
list them in each document's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gradwise.reporting.evidence import Evidence


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


@dataclass(frozen=True)
class Item:
    """One question of a document.

    Attributes:
        id: the key a context file answers it under (shared by the templates that ask it).
        title: the question, worded as the template words it.
        needs: what a person must supply when the run cannot answer, and why it matters.
        fill: reads the answer from the run; None: only a person knows.
        runs: the check or verb whose files would answer it ("calibration", "monitor").
    """

    id: str
    title: str
    needs: str
    fill: Filler | None = None
    runs: str | None = None


def number(value: Any) -> str:
    """A number as the documents quote it: 4 significant digits, integers whole."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _primary(scores: dict[str, Any]) -> str:
    """The headline metric of a split's scores: accuracy, else the first key in order."""
    names = sorted(k for k, v in scores.items() if isinstance(v, int | float))
    return "accuracy" if "accuracy" in names else names[0]


def model_details(ev: Evidence) -> Filled:
    model = ev.config.get("model") or {}
    arch = model.get("arch", "?")
    n_params = ev.metrics.get("n_params")
    return Filled(
        f"{ev.name}: model architecture {arch} ({ev.task}) with {number(n_params)} parameters, "
        "trained by "
        f"gradwise {ev.metrics.get('environment', {}).get('gradwise', '?')}.",
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
    return Filled(
        f"Architecture: {settings}. Training: {train.get('epochs')} epochs, batch "
        f"{train.get('batch_size')}, optimizer {train.get('optimizer', '?')}, "
        f"lr {train.get('lr', '?')}, seed {ev.config.get('seed')}.",
        "config.yaml",
        f"train.epochs = {train.get('epochs')}",
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
        f"rows.test = {rows.get('test')}",
    )


def training_history(ev: Evidence) -> Filled | None:
    if not ev.history:
        return None
    best = ev.metrics.get("best_epoch")
    stop = ev.metrics.get("stop_reason") or "the epoch budget ran out"
    return Filled(
        f"{len(ev.history)} logged steps over {ev.metrics.get('epochs')} epochs; the best "
        f"epoch was {best} (stopped: {stop}).",
        "metrics.jsonl",
        f"best_epoch = {best}",
    )


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
            if value is not None:
                quoted = f"metrics.{'.'.join(path)} = {number(value)}"
        return Filled(f"{result.verdict.upper()}: {result.summary}", f"audit/{name}.json", quoted)

    return fill


def explain(ev: Evidence) -> Filled | None:
    if ev.explain is None:
        return None
    keys = sorted(ev.explain)
    return Filled(
        f"Attributions written for the run (explain.json holds: {', '.join(keys)}).",
        "explain/explain.json",
        f"keys = {len(keys)}",
    )


def optimize(ev: Evidence) -> Filled | None:
    if ev.tradeoff is None and not ev.variants:
        return None
    choice = (ev.tradeoff or {}).get("choice")
    source = "artifacts/tradeoff.json" if ev.tradeoff is not None else "artifacts/"
    return Filled(
        f"Optimised variants: {', '.join(ev.variants) or 'none kept'}; chosen: {choice}.",
        source,
        f"variants = {len(ev.variants)}",
    )


def bench(ev: Evidence) -> Filled | None:
    costs = (ev.bench or {}).get("costs") or []
    if not costs:
        return None
    first = costs[0]
    shown = {k: v for k, v in first.items() if isinstance(v, int | float | str)}
    listed = ", ".join(f"{k} {number(shown[k])}" for k in sorted(shown))
    return Filled(
        f"{len(costs)} variant(s) measured; the first: {listed}.",
        "artifacts/bench.json",
        f"costs = {len(costs)}",
    )


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


def selective_oversight(ev: Evidence) -> Filled | None:
    result = ev.audit.get("selective")
    if result is None:
        return None
    certificates = result.metrics.get("certificates") or []
    certified = [c for c in certificates if c.get("certified")]
    if not certified:
        return Filled(
            f"No abstention guarantee: {result.summary}",
            "audit/selective.json",
            f"certificates.certified = {len(certified)} of {len(certificates)}",
        )
    c = certified[0]
    abstain = 1 - float((c.get("test") or {}).get("coverage", c.get("coverage", 0.0)))
    return Filled(
        f"The model abstains on {abstain:.1%} of test rows and hands them to a person; "
        f"among the answered rows the error is at most {c['alpha']:.1%} with "
        f"{1 - c['delta']:.0%} confidence. {result.summary}",
        "audit/selective.json",
        f"certificates[0].test.coverage = {number(1 - abstain)}",
    )


# ---------------------------------------------------------------- the items

PURPOSE = Item(
    "intended_purpose",
    "Intended purpose",
    "the task the model may be used for; every other answer is judged against it",
)
USERS = Item(
    "users",
    "Intended users and deployers",
    "who acts on the output decides what they must be told and trained on",
)
OUT_OF_SCOPE = Item(
    "out_of_scope",
    "Uses out of scope",
    "uses the evidence does not cover must be ruled out by the people who know them",
)
LIMITATIONS = Item(
    "limitations",
    "Known limitations",
    "limits known to the builders and domain experts (populations, conditions) that no "
    "measurement here reveals",
)
OVERSIGHT = Item(
    "human_oversight",
    "Human oversight arrangements",
    "who reviews abstentions and alerts, with what authority, is an organisational decision",
)
ETHICS = Item(
    "ethical_considerations",
    "Ethical considerations",
    "harms to the people the model decides about are judged by people, not measured here",
)

DETAILS = Item("model_details", "Model details", "", model_details)
VERSIONS = Item("versions", "Versions of the software", "", versions)
HARDWARE = Item("hardware", "Hardware and training resources", "", hardware)
DESIGN = Item("design_choices", "Design choices: architecture and training", "", design)
PROVENANCE = Item(
    "data_provenance",
    "Training data: provenance and fingerprint",
    "the data's source and hash make the training reproducible; splits.json is missing "
    "(retrain with this gradwise version)",
    data_provenance,
)
SPLITS = Item(
    "data_splits",
    "Training, validation and test splits",
    "without the split record, no one can check that test rows stayed unseen",
    splits,
)
HISTORY = Item(
    "training_history",
    "Training history",
    "metrics.jsonl is missing: the training curve shows whether it converged",
    training_history,
)
METRICS = Item(
    "test_metrics",
    "Performance on held-out data",
    "metrics.json has no test scores; evaluate with gradwise evaluate RUN",
    test_metrics,
)
METRIC_CHOICE = Item(
    "metric_choice",
    "Appropriateness of the performance metrics",
    "metrics.json has no test scores to justify",
    metric_choice,
)
EXPLAIN = Item(
    "explanations",
    "Explanations of the model's decisions",
    "attributions show what drives the output",
    explain,
    "explain",
)
OPTIMIZE = Item(
    "optimisations",
    "Optimised variants",
    "a quantised or distilled variant must be evaluated before it replaces the model",
    optimize,
    "optimize",
)
BENCH = Item("cost", "Cost to run", "latency and memory decide where it can run", bench, "bench")
MONITOR = Item(
    "monitoring",
    "Ongoing monitoring in production",
    "drift and accuracy in production are watched only once predictions are stored",
    monitor,
    "monitor",
)
LOGGING = Item(
    "logging",
    "Logging of the system's operation",
    "records of every prediction let decisions be traced afterwards",
    logging,
    "monitor",
)
SELECTIVE = Item(
    "abstention",
    "Human oversight: when the model abstains",
    "a certified abstention rule says which cases go to a person",
    selective_oversight,
    "selective",
)


def _audit_item(name: str, title: str, needs: str, key: tuple[str, ...] = ()) -> Item:
    return Item(f"audit_{name}", title, needs, check(name, key), name)


GENERALISATION = _audit_item(
    "generalisation", "Generalisation and learning curve", "shows whether more data would help"
)
BASELINE = _audit_item(
    "baseline",
    "Benchmarking against simple baselines",
    "a network that loses to a linear model should not ship",
    ("network",),
)
CALIBRATION = _audit_item(
    "calibration",
    "Calibration: is the confidence honest",
    "decisions taken on the probability need it to be honest",
    ("*", "ece"),
)
UNCERTAINTY = _audit_item(
    "uncertainty",
    "Prediction sets with a coverage guarantee",
    "says how uncertain each answer is",
)
ROBUSTNESS = _audit_item(
    "robustness",
    "Robustness to perturbed inputs (accuracy, cybersecurity)",
    "small input changes that flip the output are an attack surface",
)
SHIFT = _audit_item(
    "shift",
    "Detecting a shift in the input data, and the power to detect it",
    "a shift no detector can see goes unnoticed in production",
)
DATA_QUALITY = _audit_item(
    "data_quality",
    "Data quality: label errors and duplicates",
    "label errors cap the accuracy and bias the evaluation",
)
SLICES = _audit_item(
    "slices", "Performance across slices of the data", "a good average can hide a bad group"
)
FAIRNESS = _audit_item(
    "fairness",
    "Bias: outcomes across protected groups",
    "disparate outcomes across groups are the bias the law asks about",
)


def person(item_id: str, title: str, needs: str) -> Item:
    return Item(item_id, title, needs)
