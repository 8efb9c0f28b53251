"""The trade-off table: what each variant buys in speed and size, and what it costs in
accuracy, calibration and robustness, all re-measured on this machine.

- accuracy (classification; RMSE for regression, loss for language models) on the test split;
- ECE after refitting the temperature on each variant's own validation logits (the audit's
  `fit_temperature` and `expected_calibration_error`);
- robust accuracy on adversarial test inputs crafted once on the fp32 torch model under the
  robustness audit's threat model (`audit/threat.py`: the same eps, columns, samples and
  function, so the base's number is the audit's), then given to every variant: a transfer
  attack for the variants, white-box for the base;
- size on disk, p50 latency at batch 1 and 64, throughput at 64, interleaved across variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

from gradwise.auditing.calibration import expected_calibration_error, fit_temperature
from gradwise.deploy.cost import latency_sweep
from gradwise.deploy.levers import label
from gradwise.deploy.variants import size_on_disk, variant_name
from gradwise.evaluate.evaluator import split_metrics
from gradwise.run import Run
from gradwise.training.losses import make_loss

LATENCY_BATCHES = (1, 64)


@dataclass(frozen=True)
class Row:
    """One variant's measurements and their deltas against the base run."""

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


@dataclass(frozen=True)
class TradeOff:
    """The trade-off of every variant of a run.

    Attributes:
        metric: the primary metric (accuracy, rmse or loss) and `metric_unit`, how its delta
            reads (`pt` for accuracy points, else the metric's own units).
        choice: the recommended variant (the fastest at batch 64 within the budget), or
            None when none is faster than the base.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    runs = {"fp32": base, **{variant_name(v): v for v in variants}}
    sweep = latency_sweep(runs, test.x, LATENCY_BATCHES, seconds, threads)
    n_threads = latency_threads(base, LATENCY_BATCHES, threads)
    measured = {}
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
    _, base_value, base_ece, _, base_robust, base_b1, base_b64 = measured["fp32"]
    base_size = size_on_disk(base)
    rows = []
    for name, (run, value, ece, temperature, robust, b1, b64) in measured.items():
        delta = value - base_value
        loss = -delta if higher else delta
        size = size_on_disk(run)
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
            )
        )
    rows = _recommend(rows, metric, unit, budget)
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
    )


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


def _recommend(rows: list[Row], metric: str, unit: str, budget: float) -> list[Row]:
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
        out.append(dataclasses.replace(r, recommendation=text))
    return out


def _times(ratio: float, better: str, worse: str, same: str) -> str:
    if 0.95 <= ratio < 1.05:
        return same
    return f"{ratio:.1f}x {better}" if ratio >= 1 else f"{1 / ratio:.1f}x {worse}"


def _choose(rows: list[Row]) -> str | None:
    fit = [r for r in rows if r.variant != "fp32" and r.within_budget and r.speedup_b64 > 1]
    return max(fit, key=lambda r: r.speedup_b64).variant if fit else None


def _verdict(rows: list[Row], choice: str | None, unit: str) -> str:
    if choice is None:
        return "keep fp32: no variant is both faster at batch 64 and within the budget."
    chosen = next(r for r in rows if r.variant == choice)
    lost = []
    for r in rows:
        if r.variant in ("fp32", choice):
            continue
        if not r.within_budget:
            lost.append(f"{r.variant} loses {abs(r.metric_delta):.2f} {unit}, over the budget")
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
