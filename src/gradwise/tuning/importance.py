"""Which hyperparameters mattered: Optuna's fANOVA and PED-ANOVA on the finished trials, a
sentence, and the plots (importance bars; metric against each important value).

fANOVA (Hutter et al. 2014) fits a random forest to (parameters -> metric) and splits the
forest's variance into each parameter's main effect: its number is the fraction of the
metric's variance over the search space that the parameter explains alone (the rest is
interactions). PED-ANOVA (Watanabe et al. 2023) compares where the best trials (top
`target_quantile`) lie against all trials: its number is each parameter's share of the
total divergence. They answer different questions, so both are shown; tables and the
sentence rank by fANOVA. Both see only the trials the search ran, and TPE spends most of them
near what worked early, so with a few dozen trials the ranking below the top is noisy
(benchmarks/RESULTS.md: two sampler seeds on digits name different top hyperparameters).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from gradwise.artifacts import new_figure, write_png
from gradwise.tuning.space import Param, Space

# finished trials before importance is reported: fANOVA's forest splits the variance of a
# handful of points among 4-6 parameters, and with TPE's trials bunched near the first good
# one, fewer than 10 gave shares that changed with the sampler seed
MIN_TRIALS = 10
N_TREES = 256  # fANOVA's forest: more trees than Optuna's 64 steady the shares (cheap here)
IMPORTANT = 0.05  # a parameter explaining at least this share of the variance is "important"
LABELS = {
    "train.optimizer.lr": "the learning rate",
    "train.batch_size": "batch size",
    "train.optimizer.weight_decay": "weight decay",
    "train.schedule.name": "the schedule",
    "train.schedule.warmup_steps": "warm-up",
    "model.dropout": "dropout",
    "model.init": "initialisation",
    "model.hidden.layers": "depth",
    "model.hidden.width": "width",
    "model.channels.layers": "depth",
    "model.channels.width": "width",
    "model.hidden": "width",
    "model.layers": "depth",
    "model.n_layer": "depth",
    "model.d_model": "width",
}


@dataclass(frozen=True)
class ParamImportance:
    """One parameter's importance.

    Attributes:
        fanova: fraction of the metric's variance its main effect explains (0..1).
        ped_anova: its share of PED-ANOVA's importance (the shares sum to 1).
    """

    name: str
    fanova: float
    ped_anova: float

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class Importance:
    """Importances over the finished trials, largest fANOVA first.

    Attributes:
        n_trials: finished (complete) trials the evaluators saw.
        target_quantile: PED-ANOVA's share of best trials.
        sentence: "on this data, the learning rate explains 61% of the variance of ...".
        notes: what the evaluators warned about.
    """

    params: tuple[ParamImportance, ...]
    n_trials: int
    metric: str
    target_quantile: float
    sentence: str
    notes: tuple[str, ...] = ()

    @property
    def important(self) -> list[ParamImportance]:
        """Parameters explaining at least IMPORTANT of the variance (at least the top one)."""
        found = [p for p in self.params if p.fanova >= IMPORTANT]
        return found or list(self.params[:1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "n_trials": self.n_trials,
            "fanova": {p.name: p.fanova for p in self.params},
            "ped_anova": {p.name: p.ped_anova for p in self.params},
            "ped_anova_target_quantile": self.target_quantile,
            "sentence": self.sentence,
            "notes": list(self.notes),
        }


def importance(study: optuna.Study, metric: str, seed: int = 0) -> Importance | None:
    """fANOVA and PED-ANOVA importances of the study's complete trials; None below
    MIN_TRIALS of them."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    n = len(complete)
    if n < MIN_TRIALS:
        return None
    quantile = min(0.5, max(0.1, 2 / n))  # at least two trials count as "the best"
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fanova = optuna.importance.get_param_importances(
                study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=N_TREES, seed=seed),
                normalize=False,
            )
        except RuntimeError as exc:  # every trial scored the same: no variance to split
            notes.append(f"fANOVA: {exc}")
            fanova = {}
        ped = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile),
        )
    experimental = optuna.exceptions.ExperimentalWarning  # about optuna's API, not the data
    notes += sorted({str(w.message) for w in caught if not issubclass(w.category, experimental)})
    names = list(dict.fromkeys([*fanova, *ped]))
    params = sorted(
        (ParamImportance(k, float(fanova.get(k, 0.0)), float(ped.get(k, 0.0))) for k in names),
        key=lambda p: (-p.fanova, -p.ped_anova),
    )
    return Importance(tuple(params), n, metric, quantile, _sentence(params, metric), tuple(notes))


def _sentence(params: list[ParamImportance], metric: str) -> str:
    if not params or all(p.fanova == 0 for p in params):
        return f"no hyperparameter explains the variance of {metric} (fANOVA found none)"
    shown = [p for p in params if p.fanova >= 0.01][:3] or params[:1]
    first, rest = shown[0], shown[1:]
    text = f"on this data, {first.label} explains {first.fanova:.0%} of the variance of {metric}"
    if rest:
        text += ", " + ", ".join(f"{p.label} {p.fanova:.0%}" for p in rest)
    return text


# ------------------------------------------------------------------ plots


def plot_importance(result: Importance, path: Path) -> None:
    """Horizontal bars: fANOVA's variance fraction and PED-ANOVA's share per parameter."""
    params = list(reversed(result.params))
    fig = new_figure(7.0, 0.45 * len(params) + 1.5)
    ax = fig.add_subplot()
    y = np.arange(len(params))
    ax.barh(y + 0.2, [p.fanova for p in params], 0.4, label="fANOVA: share of variance")
    ax.barh(y - 0.2, [p.ped_anova for p in params], 0.4, label="PED-ANOVA: share of importance")
    ax.set_yticks(y, [p.name for p in params])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"importance for {result.metric} ({result.n_trials} finished trials)")
    ax.legend(loc="lower right", fontsize=8)
    write_png(path, fig)


def plot_slices(
    study: optuna.Study, space: Space, names: list[str], metric: str, path: Path
) -> None:
    """The metric against each named parameter's value: finished trials as dots (the best
    one starred), pruned trials as crosses at the value they had when stopped."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    best = study.best_trial
    n = max(1, len(names))
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = new_figure(5.0 * cols, 3.4 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        _slice(ax, trials, best, space.param(name), metric)
    write_png(path, fig)


def _slice(
    ax: Any, trials: list[FrozenTrial], best: FrozenTrial, param: Param, metric: str
) -> None:
    """One parameter's slice. The y range is the finished trials'; a pruned trial outside it
    is drawn at the edge as a triangle, so a few hopeless trials do not flatten the rest."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def position(t: FrozenTrial) -> Any:
        value = t.params[param.name]
        if param.kind == "choice":
            return [str(c) for c in _encoded(param)].index(str(value))
        return value

    finished = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.value is not None]
    values = [float(t.value) for t in finished]  # type: ignore[arg-type]
    low, high = min(values), max(values)
    pad = (high - low) * 0.15 or abs(high) * 0.01 or 0.01
    bottom, top = low - pad, high + pad
    ax.scatter([position(t) for t in finished], values, alpha=0.7, label="finished")
    inside = [t for t in pruned if bottom <= float(t.value) <= top]  # type: ignore[arg-type]
    below = [t for t in pruned if float(t.value) < bottom]  # type: ignore[arg-type]
    above = [t for t in pruned if float(t.value) > top]  # type: ignore[arg-type]
    if inside:
        ax.scatter(
            [position(t) for t in inside],
            [t.value for t in inside],
            marker="x",
            alpha=0.6,
            label="pruned (value when stopped)",
        )
    for group, edge, marker in ((below, bottom + pad / 3, "v"), (above, top - pad / 3, "^")):
        if group:
            ax.scatter(
                [position(t) for t in group],
                [edge] * len(group),
                marker=marker,
                alpha=0.5,
                color="gray",
                label=f"pruned, {'below' if marker == 'v' else 'above'} the range",
            )
    ax.scatter([position(best)], [best.value], marker="*", s=160, color="red", label="best")
    ax.set_ylim(bottom, top)
    if param.kind == "choice":
        ax.set_xticks(range(len(param.choices)), [str(c) for c in param.choices])
    elif param.is_log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if param.kind == "log_int":  # widths: powers of two read better than decades
            k = range(math.ceil(math.log2(param.low)), math.floor(math.log2(param.high)) + 1)
            ax.set_xticks([2**i for i in k])
    ax.set_xlabel(param.name)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)


def _encoded(param: Param) -> list[Any]:
    import json

    return [json.dumps(c) if isinstance(c, list | dict) else c for c in param.choices]
