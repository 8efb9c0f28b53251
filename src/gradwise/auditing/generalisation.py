"""Generalisation: does the model generalise or memorise, and how much would more data help?

Three pieces of evidence:
    the gap: the primary metric on train, validation and test (accuracy for classifiers,
        RMSE for regressions, cross-entropy loss for language models);
    the turn: the epoch where the validation metric was best, from the run's history;
    the learning curve: the run's config retrained on fractions of its training split
        (`pipeline.train_run`, val and test kept, several seeds at small fractions), a power
        law error = a * n^-b + c fitted to the test error, with a residual-bootstrap band,
        read at 2x, 5x and 10x the run's training data.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing import progress
from gradwise.auditing.base import AuditContext, CheckResult, Verdict, grade
from gradwise.auditing.head_retrain import (
    HEAD,
    TRADE,
    RetrainMode,
    embeddings,
    head_curve_value,
    head_plan,
    head_record,
    retrain_mode,
)
from gradwise.auditing.retrain_budget import CurvePlan, plan_curve, retrain_epochs, run_pace
from gradwise.auditing.retrain_jobs import CurveJob, curve_retrain
from gradwise.auditing.retrains import IN_PROCESS, RetrainMap, stepwise
from gradwise.evaluate.compare import PRIMARY
from gradwise.evaluate.metrics import lower_is_better
from gradwise.logs import LOG

if TYPE_CHECKING:
    from gradwise.config import GeneralisationAudit
    from gradwise.run import Run

log = logging.getLogger(LOG)

PLOT = "learning_curve.png"
MULTIPLES = (2, 5, 10)
BOOTSTRAP = 200

# ---------------------------------------------------------------- the power law


@dataclass(frozen=True)
class PowerLaw:
    """error(n) = a * n^-b + c: error falls as a power of the training-set size n towards an
    irreducible floor c (Hestness et al., 2017)."""

    a: float
    b: float
    c: float

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        return self.a * np.power(np.asarray(n, dtype=np.float64), -self.b) + self.c


def fit_power_law(n: np.ndarray, error: np.ndarray) -> PowerLaw:
    """Least-squares fit of error = a * n^-b + c, with a >= 0, 0 <= b <= 2, 0 <= c.

    Args:
        n: (P,) training-set sizes (several points may share one size: seeds).
        error: (P,) the error at each point (1 - accuracy, RMSE, loss); lower is better.

    Raises:
        ValueError: fewer than three distinct sizes (three parameters need three).
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    n, error = np.asarray(n, dtype=np.float64), np.asarray(error, dtype=np.float64)
    if len(np.unique(n)) < 3:
        raise ValueError("a power law needs points at three or more training-set sizes")
    scale = float(n.max())
    x = n / scale  # sizes near 1 keep the problem well conditioned

    def curve(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a * np.power(x, -b) + c

    floor = float(error.min())
    c0 = 0.5 * max(floor, 0.0)
    a0 = max(float(error.max()) - c0, 1e-6) * float(x.min()) ** 0.5
    with warnings.catch_warnings():  # the covariance is not used: the band is bootstrapped
        warnings.simplefilter("ignore", OptimizeWarning)
        (a, b, c), _ = curve_fit(
            curve,
            x,
            error,
            p0=(a0, 0.5, c0),
            bounds=([0.0, 0.0, 0.0], [np.inf, 2.0, max(floor, 1e-12)]),
            maxfev=20_000,
        )
    # a * (n / scale)^-b = (a * scale^b) * n^-b
    return PowerLaw(float(a * scale**b), float(b), float(c))


def bootstrap_power_laws(
    n: np.ndarray, error: np.ndarray, fit: PowerLaw, repeats: int, seed: int
) -> list[PowerLaw]:
    """Refits on the fitted curve plus resampled residuals (residual bootstrap): the spread
    of the curve that the points' noise (seed to seed, test sampling) allows."""
    rng = np.random.default_rng(seed)
    residuals = np.asarray(error) - fit(n)
    laws = []
    for _ in range(repeats):
        fake = fit(n) + rng.choice(residuals, size=len(residuals), replace=True)
        with contextlib.suppress(RuntimeError, ValueError):  # a refit that fails is left out
            laws.append(fit_power_law(n, np.clip(fake, 0.0, None)))
    return laws


# ---------------------------------------------------------------- the check


@dataclass(frozen=True)
class Point:
    fraction: float
    seed: int
    n_train: int
    value: float  # the primary test metric
    reused: bool  # the run itself, not a retrain


def check(run: Run, settings: GeneralisationAudit, ctx: AuditContext) -> CheckResult:
    """Train/val/test gap, the validation turn and the learning curve."""
    summary_metrics = run.metrics
    metric = _primary(run, summary_metrics)
    higher_better = not lower_is_better(metric)
    values = {s: float(summary_metrics[s][metric]) for s in ("train", "val", "test")}
    gap, relative = _gap(values, higher_better)
    turn = _turn(run)
    curve: dict[str, Any] | None = None
    plots: tuple[str, ...] = ()
    mode = retrain_mode(run, settings.retrain, "audit.generalisation.retrain")
    plan = None
    if settings.learning_curve:
        plan = head_plan(settings) if mode == "head" else plan_curve(run_pace(run), settings)
    if plan is not None and plan.skipped is None:
        if mode == "head":
            points = head_curve_points(run, plan)
        else:
            points = learning_curve_points(run, plan, settings, metric, ctx.retrains)
        curve, laws = _read_curve(points, metric, int(summary_metrics["n_train"]), ctx.seed)
        curve["plan"] = {**_plan_record(plan), "batch": mode == "full" and ctx.retrains.batch}
        curve["retrain"] = mode
        if mode == "head":
            curve["trade"] = TRADE
        if curve.get("fit"):
            _plot_curve(ctx.out / PLOT, points, curve, laws, metric)
            plots = (PLOT,)
    elif plan is not None:
        curve = {"fit": None, "why_no_fit": plan.skipped, "plan": _plan_record(plan)}
    warn, fail = (
        (settings.relative_gap_warn, settings.relative_gap_fail)
        if relative
        else (settings.gap_warn, settings.gap_fail)
    )
    verdict: Verdict = grade(gap, warn, fail)
    return CheckResult(
        check="generalisation",
        verdict=verdict,
        headline=f"{metric} gap {gap:+.1%}" if relative else f"{metric} gap {gap:+.3f}",
        summary=_sentence(metric, values, gap, relative, turn, curve),
        metrics={
            "metric": metric,
            **values,
            "gap": gap,
            "gap_kind": "relative: (test - train) / test" if relative else "train - test",
            "turn": turn,
            "learning_curve": curve,
        },
        settings={
            **settings.model_dump(mode="json"),
            **_resolved(plan),
            "metric": f"{metric} (the task's primary metric, from metrics.json)",
            **head_record(mode),
            "retrains": _retrains_text(mode),
            "retrains_on": _where(mode, ctx),
            "fit": "error = a * n^-b + c, least squares (scipy curve_fit); error = 1 - "
            "accuracy for accuracy, else the metric",
            "band": f"5-95% of {BOOTSTRAP} residual-bootstrap refits",
            "multiples": list(MULTIPLES),
        },
        plots=plots,
    )


def _retrains_text(mode: RetrainMode) -> str:
    if mode == "head":
        return (
            f"{HEAD}, fitted on fraction / the run's data.split.train_fraction of the training "
            "rows (numpy default_rng(the run's seed + k) draws them; k < seeds at fractions "
            "below 0.5, else k = 0), scored on the test split; every point is a head fit"
        )
    return (
        "pipeline.train_run into a temporary folder; the run's split (val and "
        "test unchanged), data.split.train_fraction = fraction, seed = the run's seed + k "
        "(k < seeds at fractions below 0.5, else k = 0), epochs scaled by the run's "
        "fraction / fraction when scale_epochs; the point at the run's own fraction is "
        "the run itself (unless epochs is set); null fractions and seeds: as many as "
        "fit budget_s at the run's own pace (metrics.json wall_s / epochs / n_train)"
    )


def _where(mode: RetrainMode, ctx: AuditContext) -> str:
    """Where the retrains ran. A batch (Ray) runs the same planned grid, fitted to budget_s
    at this machine's pace, as one batch of tasks, so its points equal the local ones."""
    if mode == "head":
        return "this process (head fits)"
    if ctx.retrains.batch:
        return f"{ctx.retrains.where}: the planned grid as one batch of tasks"
    return ctx.retrains.where


def _primary(run: Run, summary: dict[str, Any]) -> str:
    metric = PRIMARY.get(run.schema.task, "loss")
    return metric if metric in summary["test"] else "loss"


def _gap(values: dict[str, float], higher_better: bool) -> tuple[float, bool]:
    """train - test for a higher-is-better metric in [0, 1] (accuracy); the relative gap
    (test - train) / test for a lower-is-better one (RMSE, loss), whose scale is the data's."""
    if higher_better:
        return values["train"] - values["test"], False
    return (values["test"] - values["train"]) / max(abs(values["test"]), 1e-12), True


def _turn(run: Run) -> dict[str, Any] | None:
    """Where the early-stopping metric (default val.loss) was best in the run's history."""
    name = run.config.train.early_stopping.metric
    history = [r for r in run.history if name in r]
    if not history:
        return None
    series = [float(r[name]) for r in history]
    lower = lower_is_better(name)
    best = int(np.argmin(series) if lower else np.argmax(series))
    worse_after = (series[-1] - series[best]) * (1 if lower else -1)
    return {
        "metric": name,
        "best_epoch": int(history[best]["epoch"]),
        "epochs": int(history[-1]["epoch"]),
        "best": series[best],
        "last": series[-1],
        "worse_after_best": worse_after,
        "still_improving": best == len(series) - 1,
    }


def _plan_record(plan: CurvePlan) -> dict[str, Any]:
    """What the curve ran, its estimated seconds, and what was reduced and why."""
    return {
        "fractions": list(plan.fractions),
        "seeds": plan.seeds,
        "n_retrains": plan.n_retrains,
        "estimate_s": round(plan.estimate_s, 1),
        "reduced": plan.reduced,
        "skipped": plan.skipped,
    }


def _resolved(plan: CurvePlan | None) -> dict[str, Any]:
    """The fractions and seeds the curve used, in place of null (auto) settings."""
    if plan is None:
        return {}
    return {"fractions": list(plan.fractions), "seeds": plan.seeds}


def learning_curve_points(
    run: Run,
    plan: CurvePlan,
    settings: GeneralisationAudit,
    metric: str,
    retrains: RetrainMap = IN_PROCESS,
) -> list[Point]:
    """The run's config retrained on each planned fraction of its training split (quietly, in
    a temporary folder); the point at the run's own fraction is the run itself. In this
    process each retrain is reported as a step (`gradwise.auditing.progress`) with the time
    left; a batch `retrains` (Ray) runs the planned grid at once and reports one step."""
    cfg = run.config
    split_seed = cfg.data.split.seed if cfg.data.split.seed is not None else cfg.seed
    own = cfg.data.split.train_fraction
    epochs = cfg.train.epochs or int(run.metrics["epochs"])
    retrained = [p for p in plan.points if not p.reused]
    jobs = [
        CurveJob(
            cfg,
            {
                "seed": cfg.seed + p.seed_offset,
                "data.split.seed": split_seed,
                "data.split.train_fraction": p.fraction,
                "train.checkpoint": False,
                "train.epochs": retrain_epochs(epochs, own, p.fraction, settings),
            },
        )
        for p in retrained
    ]
    planned = [p.estimate_s for p in retrained]
    if retrains.batch:
        what = f"{len(jobs)} retrains as one batch on {retrains.where}"
        progress.report(progress.Step("generalisation", 0, 1, what, sum(planned)))
        summaries = retrains(curve_retrain, jobs)
    else:
        step = stepwise(curve_retrain, "generalisation", planned, _describe)
        summaries = retrains(step, jobs)
    found = iter(summaries)
    points: list[Point] = []
    for p in plan.points:
        seed = cfg.seed + p.seed_offset
        summary = run.metrics if p.reused else next(found)
        value = float(summary["test"][metric])
        points.append(Point(p.fraction, seed, int(summary["n_train"]), value, p.reused))
        if not p.reused:
            n_train = summary["n_train"]
            line = "learning curve: %g of the training data (%d samples), seed %d: %s %.4f"
            log.info(line, p.fraction, n_train, seed, metric, value)
    done = 1 if retrains.batch else len(jobs)
    progress.report(progress.Step("generalisation", done, done, "fitting the curve", 0.0))
    return points


def _describe(job: CurveJob) -> str:
    fraction, seed = job.overrides["data.split.train_fraction"], job.overrides["seed"]
    return f"{fraction:g} of the data, seed {seed}"


def head_curve_points(run: Run, plan: CurvePlan) -> list[Point]:
    """The learning curve in head mode: the run embeds its training and test rows once, and
    each point fits a fresh head on its fraction of the training embeddings (see
    `gradwise.auditing.head_retrain`); the value is the head's test accuracy."""
    cfg = run.config
    progress.report(progress.Step("generalisation", 0, 1, "embedding train and test", None))
    train, test = embeddings(run, "train"), embeddings(run, "test")
    points = []
    for p in plan.points:
        seed = cfg.seed + p.seed_offset
        share = p.fraction / cfg.data.split.train_fraction
        n_train, value = head_curve_value(train, test, share, seed)
        points.append(Point(p.fraction, seed, n_train, value, False))
    progress.report(progress.Step("generalisation", 1, 1, "fitting the curve", 0.0))
    return points


def _error(metric: str, value: np.ndarray | float) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    return 1.0 - v if metric == "accuracy" else v


def _read_curve(
    points: list[Point], metric: str, n_run: int, seed: int
) -> tuple[dict[str, Any], list[PowerLaw]]:
    """The fitted power law read at the run's size and at multiples of it, with bands; and
    the bootstrap refits."""
    n = np.array([p.n_train for p in points], dtype=np.float64)
    error = _error(metric, np.array([p.value for p in points]))
    out: dict[str, Any] = {
        "points": [p.__dict__ for p in points],
        "n_run": n_run,
        "seed_std": {f"{f:g}": v for f, v in seed_spread(points).items()},
    }
    try:
        law = fit_power_law(n, error)
    except (ValueError, RuntimeError) as exc:
        out["fit"] = None
        out["why_no_fit"] = str(exc)
        return out, []
    laws = bootstrap_power_laws(n, error, law, BOOTSTRAP, seed)
    at = {"1x": n_run, **{f"{m}x": n_run * m for m in MULTIPLES}}
    predictions = {}
    for key, size in at.items():
        spread = np.array([_error(metric, lw(size)) for lw in laws])
        low, high = np.percentile(spread, [5, 95]) if len(spread) else (np.nan, np.nan)
        predictions[key] = {
            "n": int(size),
            "value": float(_error(metric, law(size))),
            "band": sorted([float(low), float(high)]),
        }
    out["fit"] = {"a": law.a, "b": law.b, "c": law.c, "refits": len(laws)}
    out["floor"] = float(_error(metric, law.c))  # the metric with unlimited data
    out["predictions"] = predictions
    return out, laws


def _sentence(
    metric: str,
    values: dict[str, float],
    gap: float,
    relative: bool,
    turn: dict[str, Any] | None,
    curve: dict[str, Any] | None,
) -> str:
    def v(x: float) -> str:
        return f"{x:.3f}" if metric == "accuracy" else f"{x:.4g}"

    gap_text = f"{gap:+.1%} relative" if relative else f"{gap:+.3f}"
    parts = [
        f"Test {metric} {v(values['test'])} against {v(values['train'])} on train (gap {gap_text})"
    ]
    if turn is not None:
        if turn["still_improving"]:
            parts.append(f"{turn['metric']} was still improving at the last epoch")
        else:
            parts.append(
                f"{turn['metric']} was best at epoch {turn['best_epoch']} of {turn['epochs']}"
            )
    if curve and curve.get("fit"):
        p = curve["predictions"]
        ten = p["10x"]
        parts.append(
            f"the learning curve ({len(curve['points'])} runs) reads {v(p['1x']['value'])} at "
            f"this run's {curve['n_run']:,} samples, {v(p['2x']['value'])} with 2x and "
            f"{v(ten['value'])} with 10x the data (90% band {v(ten['band'][0])}-"
            f"{v(ten['band'][1])})"
        )
    elif curve is not None:
        parts.append(f"no learning curve: {curve.get('why_no_fit')}")
    if curve and curve.get("trade"):
        parts.append(f"head-only retrains: {curve['trade']}")
    if curve and curve.get("plan", {}).get("reduced"):
        parts.append(f"the curve ran {curve['plan']['reduced']}")
    return "; ".join(parts) + "."


def _plot_curve(
    path: Path, points: list[Point], curve: dict[str, Any], laws: list[PowerLaw], metric: str
) -> None:
    from gradwise.artifacts import new_figure, write_png

    fit = curve["fit"]
    law = PowerLaw(fit["a"], fit["b"], fit["c"])
    n_run = curve["n_run"]
    n = np.array([p.n_train for p in points], dtype=np.float64)
    grid = np.geomspace(n.min(), n_run * max(MULTIPLES), 100)
    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.scatter(n, [p.value for p in points], color="black", s=14, label="retrains (test)", zorder=3)
    ax.plot(grid, _error(metric, law(grid)), color="tab:blue", label="power law fit")
    if laws:
        spread = np.array([_error(metric, lw(grid)) for lw in laws])
        low, high = np.percentile(spread, [5, 95], axis=0)
        ax.fill_between(grid, low, high, color="tab:blue", alpha=0.2, label="90% band")
    pred = curve["predictions"]
    ax.scatter(
        [pred[k]["n"] for k in pred],
        [pred[k]["value"] for k in pred],
        marker="x",
        color="tab:red",
        label="read at 1x, 2x, 5x, 10x",
        zorder=3,
    )
    ax.axvline(n_run, color="gray", linestyle=":", linewidth=1, label="this run")
    ax.set_xscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=8)
    write_png(path, fig)


def seed_spread(points: list[Point]) -> dict[float, float]:
    """Seed-to-seed standard deviation of the metric at each fraction with several seeds."""
    by: dict[float, list[float]] = {}
    for p in points:
        by.setdefault(p.fraction, []).append(p.value)
    return {f: statistics.stdev(v) for f, v in by.items() if len(v) > 1}
