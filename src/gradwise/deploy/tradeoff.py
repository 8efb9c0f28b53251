"""The trade-off table: what each variant buys in speed and size, and what it costs in
accuracy, calibration and robustness, all re-measured on this machine.

- accuracy (classification; RMSE for regression, loss for language models) on the test split;
- ECE after refitting the temperature on each variant's own validation logits (the audit's
  `fit_temperature` and `expected_calibration_error`);
- robust accuracy on adversarial test inputs crafted once on the fp32 torch model under the
  robustness audit's threat model (`audit/threat.py`: the same eps, columns, samples and
  function, so the base's number is the audit's), then given to every variant: a transfer
  attack for the variants, white-box for the base;
- size on disk, p50 latency at batch 1 and 64, throughput at 64, interleaved across variants;
- when the base run holds a certified abstention guarantee (the selective check's), the share
  of validation inputs each variant answers under its own re-certified threshold at the same
  alpha and delta (`deploy/abstention.py`), beside the base's: a variant that quietly answers
  fewer cases shows it, and one that cannot be certified is not recommended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

from gradwise.auditing.calibration import expected_calibration_error, fit_temperature
from gradwise.deploy.abstention import base_guarantee, recertify
from gradwise.deploy.cost import latency_sweep
from gradwise.deploy.levers import label
from gradwise.deploy.variants import size_on_disk, variant_name
from gradwise.evaluate.evaluator import split_metrics
from gradwise.run import Run
from gradwise.run_conformal import GUARANTEE_KEYS
from gradwise.training.losses import make_loss

LATENCY_BATCHES = (1, 64)


@dataclass(frozen=True)
class Row:
    """One variant's measurements and their deltas against the base run.

    Attributes:
        coverage: the share of validation inputs the variant answers under its own certified
            abstention threshold (None: not certified, or no guarantee to re-certify);
            coverage_delta: its change against the base run's (a share, not points).
        certified: whether the variant's threshold was certified; None when the base run
            holds no certified guarantee (nothing to re-certify).
    """

    variant: str
    label: str
    path: str
    metric: float
    metric_delta: float
    ece: float | None
    ece_delta: float | None
    temperature: float | None
    robust_accuracy: float | None
    robust_delta: float | None
    size_mb: float
    latency_b1_ms: float
    latency_b64_ms: float
    throughput_b64: float
    speedup_b1: float
    speedup_b64: float
    smaller: float
    within_budget: bool
    recommendation: str
    coverage: float | None = None
    coverage_delta: float | None = None
    certified: bool | None = None


@dataclass(frozen=True)
class TradeOff:
    """The trade-off of every variant of a run.

    Attributes:
        metric: the primary metric (accuracy, rmse or loss) and `metric_unit`, how its delta
            reads (`pt` for accuracy points, else the metric's own units).
        choice: the recommended variant (the fastest at batch 64 within the budget, and
            certified where the base run is), or None when none is faster than the base.
        selective: the base run's abstention guarantee (alpha, delta, score, n, threshold,
            coverage) that each variant was certified against; None when it holds none
            (`settings["abstention"]` says why).
        guarantees: each variant's re-certified guarantee by its path, in the format
            `Run.set_selective` stores (kept in the variants' model.json, not in
            tradeoff.json).
    """

    run: str
    metric: str
    metric_unit: str
    higher_is_better: bool
    budget: float
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    choice: str | None = None
    verdict: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    selective: dict[str, Any] | None = None
    guarantees: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["guarantees"]
        return out


def primary_metric(run: Run) -> tuple[str, str, bool]:
    """(metric, unit of its delta, higher is better) for the run's task."""
    match run.schema.task:
        case "classification":
            return "accuracy", "pt", True
        case "regression":
            return "rmse", "", False
    return "loss", "", False


def tradeoff(
    base: Run,
    variants: list[Run],
    budget: float = 0.5,
    robust_samples: int | None = None,
    seconds: float = 1.0,
    seed: int = 0,
    threads: int | None = None,
) -> TradeOff:
    """Measure the base run and its variants side by side.

    Args:
        budget: the largest metric loss accepted (accuracy points, or RMSE / loss units).
        robust_samples: test samples attacked (default: audit.robustness.max_samples).
        seconds: latency measuring time per model and batch size (repeated until stable,
            as `bench` does).
        threads: CPU threads for the latency; None: the training rule (`latency_threads`).
    """
    from gradwise.deploy.cost import latency_threads, machine, noise_note

    metric, unit, higher = primary_metric(base)
    data = base.dataset()
    val, test = data.val, data.test
    criterion = make_loss(
        base.config.train.loss,
        base.loss,
        data.train.y,
        base.schema.n_outputs if base.schema.task == "classification" else 0,
    )
    adversarial, attack = _adversarial(base, robust_samples, seed)
    guarantee, no_guarantee = base_guarantee(base)
    runs = {"fp32": base, **{variant_name(v): v for v in variants}}
    sweep = latency_sweep(runs, test.x, LATENCY_BATCHES, seconds, threads)
    n_threads = latency_threads(base, LATENCY_BATCHES, threads)
    measured = {}
    held: dict[str, dict[str, Any]] = {}  # each run's guarantee at the base's alpha and delta
    for name, run in runs.items():
        test_logits = run.logits(test.x)
        value = split_metrics(test_logits, test.y, base.schema, criterion)[metric]
        scale = 100.0 if unit == "pt" else 1.0
        ece, temperature = _ece(run, val.x, val.y, test_logits, test.y)
        robust = None
        if adversarial is not None:
            robust = _accuracy(run.logits(adversarial[0]), adversarial[1])
        b1, b64 = sweep[name]
        measured[name] = (run, value * scale, ece, temperature, robust, b1, b64)
        if guarantee is not None:
            # the variant is scored at its own refitted temperature, as optimize stores it
            t = None if guarantee.get("temperature") is None else temperature
            held[name] = guarantee if name == "fp32" else recertify(run, guarantee, t, data)
    _, base_value, base_ece, _, base_robust, base_b1, base_b64 = measured["fp32"]
    base_size = size_on_disk(base)
    rows = []
    for name, (run, value, ece, temperature, robust, b1, b64) in measured.items():
        delta = value - base_value
        loss = -delta if higher else delta
        size = size_on_disk(run)
        coverage, coverage_delta, certified = _coverage(held.get(name), guarantee)
        rows.append(
            Row(
                variant=name,
                label=label(name),
                path=str(run.path),
                metric=value,
                metric_delta=delta,
                ece=ece,
                ece_delta=None if ece is None or base_ece is None else ece - base_ece,
                temperature=temperature,
                robust_accuracy=robust,
                robust_delta=None
                if robust is None or base_robust is None
                else robust - base_robust,
                size_mb=size / 2**20,
                latency_b1_ms=b1.p50_ms,
                latency_b64_ms=b64.p50_ms,
                throughput_b64=b64.throughput,
                speedup_b1=base_b1.p50_ms / b1.p50_ms,
                speedup_b64=base_b64.p50_ms / b64.p50_ms,
                smaller=base_size / size,
                within_budget=loss <= budget + 1e-9,
                recommendation="",
                coverage=coverage,
                coverage_delta=coverage_delta,
                certified=certified,
            )
        )
    alpha = None if guarantee is None else float(guarantee["alpha"])
    rows = _recommend(rows, metric, unit, budget, alpha)
    choice = _choose(rows)
    settings = {
        "metric": f"{metric} on the test split ({len(test)} samples)",
        "ece": "15-bin equal-width ECE on the test split after a temperature refitted on each "
        "variant's validation logits",
        "robustness": attack,
        "latency": "p50 of one forward pass, batches 1 and 64, interleaved across variants, "
        f"with {n_threads} thread(s), measured as bench measures (gradwise.deploy.cost."
        "latency_sweep: repeated until stable)",
        "latency_noise": noise_note(sweep, seconds) or "stable",
        "budget": f"{budget:g} {unit or metric} of {metric} lost at most",
        "abstention": _abstention_setting(guarantee, no_guarantee),
    }
    return TradeOff(
        run=str(base.path),
        metric=metric,
        metric_unit=unit,
        higher_is_better=higher,
        budget=budget,
        settings=settings,
        rows=rows,
        choice=choice,
        verdict=_verdict(rows, choice, unit or metric),
        machine=machine(n_threads),
        selective=None if guarantee is None else {k: guarantee.get(k) for k in GUARANTEE_KEYS},
        guarantees={str(runs[k].path): g for k, g in held.items() if k != "fp32"},
    )


def _coverage(
    held: dict[str, Any] | None, base: dict[str, Any] | None
) -> tuple[float | None, float | None, bool | None]:
    """(coverage, its change against the base's, certified) of one run's guarantee."""
    if held is None or base is None:
        return None, None, None
    if held.get("threshold") is None:
        return None, None, False
    coverage = float(held["coverage"])
    return coverage, coverage - float(base["coverage"]), True


def _abstention_setting(guarantee: dict[str, Any] | None, why_not: str) -> str:
    if guarantee is None:
        return f"not measured: {why_not}"
    return (
        f"the share of the {guarantee['n']} validation inputs each variant answers under its "
        f"own threshold, certified by Learn-then-Test at the base run's alpha "
        f"{guarantee['alpha']:g} and delta {guarantee['delta']:g} on the same rows and score "
        f"({guarantee['score']}; classifiers at each variant's refitted temperature, "
        "regressions with the difficulty estimate refitted on each variant); the base's row "
        "is its stored guarantee"
    )


def coverage_header(table: TradeOff) -> str:
    """The title of the abstention column: the alpha the coverage is certified at."""
    alpha = (table.selective or {}).get("alpha")
    return "coverage %" if alpha is None else f"coverage % at α {alpha:g}"


def coverage_cells(row: Row) -> tuple[str, str]:
    """A row's abstention cells: the certified share answered on validation (or "not
    certified") and its change against the base in points; "n/a" without a guarantee."""
    if row.certified is None:
        return "n/a", "n/a"
    if row.coverage is None or row.coverage_delta is None:
        return "not certified", "n/a"
    return f"{100 * row.coverage:.1f}", f"{100 * row.coverage_delta:+.1f}"


def _ece(
    run: Run, val_x: Tensor, val_y: Tensor, test_logits: Tensor, test_y: Tensor
) -> tuple[float | None, float | None]:
    if run.schema.task != "classification":
        return None, None
    temperature = fit_temperature(run.logits(val_x), val_y)
    probs = run.probabilities(test_logits / temperature, calibrated=False)
    bins = run.config.audit.calibration.bins
    return expected_calibration_error(probs, test_y.numpy(), n_bins=bins), temperature


def _accuracy(logits: Tensor, y: Tensor) -> float:
    pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)
    return float((pred == y).float().mean()) * 100


def _adversarial(
    base: Run, n: int | None, seed: int
) -> tuple[tuple[Tensor, Tensor] | None, dict[str, Any]]:
    """The audit's worst-case test inputs (`audit.threat.robust_inputs`, the threat model of
    audit.robustness), crafted once on the base fp32 model, with their targets; or None with
    the reason."""
    from gradwise.auditing.threat import attack_sample, attacks_apply, robust_inputs
    from gradwise.errors import ConfigError

    schema, settings = base.schema, base.config.audit.robustness
    if schema.task != "classification":
        return None, {"skipped": "robust accuracy needs a classifier"}
    attacking, why = attacks_apply(schema, settings)
    if not attacking:
        return None, {"skipped": f"no gradient attack: {why}"}
    count = n or settings.max_samples
    x, y, _, _ = attack_sample(base, count, seed)
    try:
        adv, threat = robust_inputs(base, settings, x, y, seed)
    except ConfigError as exc:
        return None, {"skipped": str(exc)}
    return (adv, y), {
        "attack": "the robustness audit's threat model at its reference eps (the same "
        "function, samples and seed as `gradwise audit --checks robustness`), crafted once on "
        "the fp32 torch model; the variants are evaluated on the same inputs (a transfer "
        "attack for them, white-box for the base)",
        "eps": threat.eps,
        "eps_units": threat.budget.unit_name,
        "threat_model": threat.to_dict(),
        "samples": len(x),
        "seed": seed,
    }


def _recommend(
    rows: list[Row], metric: str, unit: str, budget: float, alpha: float | None = None
) -> list[Row]:
    """Each variant's recommendation: what it buys and costs (`alpha`: the base run's
    certified error rate, when it holds an abstention guarantee)."""
    import dataclasses

    out = []
    for r in rows:
        if r.variant == "fp32":
            text = "the reference"
        else:
            parts = [
                _times(r.speedup_b64, "faster", "slower", "same speed"),
                _times(r.smaller, "smaller", "larger", "same size"),
            ]
            parts.append(f"{r.metric_delta:+.{1 if unit == 'pt' else 4}f} {unit or metric}".strip())
            if r.ece_delta is not None:
                parts.append(f"ECE {r.ece_delta:+.3f}")
            if r.coverage is not None and r.coverage_delta is not None:
                parts.append(
                    f"answers {r.coverage:.1%} at alpha {alpha:g} "
                    f"({100 * r.coverage_delta:+.1f} pt)"
                )
            text = f"{r.label}: " + ", ".join(parts)
            if r.speedup_b64 < 1 and r.speedup_b1 < 1:
                text += (
                    f"; slower than fp32 on this CPU ({r.speedup_b64:.2f}x at batch 64, "
                    f"{r.speedup_b1:.2f}x at batch 1): not recommended"
                )
            elif r.speedup_b64 < 1:
                text += f"; slower than fp32 at batch 64 ({r.speedup_b64:.2f}x): only for batch 1"
            if not r.within_budget:
                text += f"; loses more than the {budget:g} {unit or metric} budget: not recommended"
            if r.certified is False:
                text += (
                    f"; no abstention threshold could be certified at alpha {alpha:g}, where the "
                    "base run's is: not recommended"
                )
        out.append(dataclasses.replace(r, recommendation=text))
    return out


def _times(ratio: float, better: str, worse: str, same: str) -> str:
    if 0.95 <= ratio < 1.05:
        return same
    return f"{ratio:.1f}x {better}" if ratio >= 1 else f"{1 / ratio:.1f}x {worse}"


def _choose(rows: list[Row]) -> str | None:
    fit = [
        r
        for r in rows
        if r.variant != "fp32"
        and r.within_budget
        and r.speedup_b64 > 1
        and r.certified is not False
    ]
    return max(fit, key=lambda r: r.speedup_b64).variant if fit else None


def _verdict(rows: list[Row], choice: str | None, unit: str) -> str:
    if choice is None:
        if any(r.certified is False for r in rows):
            return (
                "keep fp32: no variant is faster at batch 64, within the budget and certified "
                "to abstain at the base run's alpha."
            )
        return "keep fp32: no variant is both faster at batch 64 and within the budget."
    chosen = next(r for r in rows if r.variant == choice)
    lost = []
    for r in rows:
        if r.variant in ("fp32", choice):
            continue
        if not r.within_budget:
            lost.append(f"{r.variant} loses {abs(r.metric_delta):.2f} {unit}, over the budget")
        elif r.certified is False:
            lost.append(f"{r.variant} loses the abstention guarantee the base run holds")
        elif r.speedup_b64 <= 1:
            lost.append(f"{r.variant} is not faster than fp32 at batch 64 ({r.speedup_b64:.2f}x)")
        else:
            behind = chosen.speedup_b64 / r.speedup_b64
            lost.append(
                f"{r.variant} is faster than fp32 ({r.speedup_b64:.1f}x) but {behind:.1f}x "
                f"slower than {choice}"
            )
    why = ("; ".join(lost) + ".") if lost else ""
    return f"recommended: {chosen.recommendation.split(';')[0]}. {why}".strip()
