"""What a search found (`TuneResult`, also DIR/tune.json) and each trial's summary: the
types the search, the finish after it and the report share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradwise.tuning.comparison import Comparison
    from gradwise.tuning.confirm import Confirmation
    from gradwise.tuning.importance import Importance
    from gradwise.tuning.sensitivity import SeedRuns, Step
    from gradwise.tuning.stability import TopAgreement

TUNE_FILE = "tune.json"
SENSITIVITY_RULE = (
    "each important hyperparameter (fANOVA share of variance >= 5%, at most 3) is moved one "
    "step either side of its best value: x2 and /2 on log scales, a tenth of the range for "
    "linear floats, +-1 for integers (a tenth of the range when that is more), the "
    "neighbouring entries for choices; each neighbour trains over the best config's seeds, "
    "and a change of the mean within 2 * noise * sqrt(2 / seeds) (two standard errors of a "
    "difference of means; noise: the seed std pooled over the best config and its "
    "neighbours) is within noise"
)


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # complete | pruned | failed | interrupted | running | waiting
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    wall_s: float | None
    note: str = ""  # why it was pruned or failed
    folds: tuple[float, ...] = ()  # each fold's metric (cross-validated trials)
    se: float | None = None  # standard error over folds
    default: bool = False  # the config as given (trial 0)


@dataclass(frozen=True)
class TuneResult:
    """What a search found and how much of it to trust (also DIR/tune.json).

    Attributes:
        out: the output folder.
        best_trial, best_value, best_params: the trial best.yaml holds: the top trial, or
            with `kept_given` the config as given, kept because the top trial could not be
            told apart from it (DIR/top.yaml then holds the top trial; `comparison.best`
            names it).
        best_config: DIR/best.yaml, ready for `gradwise train`.
        seeds: the best config over seeds (mean ± spread of the searched metric on val and
            the same metric on test); None with seeds=0.
        importance: fANOVA and PED-ANOVA importances; None below
            `gradwise.tuning.importance.MIN_TRIALS` (10) finished trials (`notes` says so).
        sensitivity: each important parameter one step either side of its best value.
        folds, cv_rule: trials were scored over this many folds of train+val (0: on the
            validation split), and the rule that chose it (tune.cv); best_se is the best
            trial's standard error over folds.
        comparison: the best against the config as given (trial 0) and the second best,
            with the noise, and its sentence.
        confirmation: when the top trial led the config as given beyond the noise of the
            search's folds, both trained again on fresh folds (`tune.keep_given`); the top
            goes into best.yaml only if its lead holds there too.
        top_agreement: whether the top parameter by fANOVA holds over bootstrap resamples
            of the trials; None without importance.
        search_wall_s: this call's wall time searching; trial_wall_s: every trial's
            training time added up (all workers, earlier calls included).
    """

    out: str
    study: str
    storage: str
    metric: str
    direction: str
    settings: dict[str, Any]
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    n_interrupted: int
    n_running: int  # trials other workers still ran when this one finished (--timeout)
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_config: str
    seeds: SeedRuns | None
    importance: Importance | None
    sensitivity: tuple[Step, ...]
    trials: tuple[TrialSummary, ...]
    search_wall_s: float
    trial_wall_s: float
    wall_s: float
    plots: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what was not measured or cut, and why
    folds: int = 0
    cv_rule: str = ""
    best_se: float | None = None
    comparison: Comparison | None = None
    top_agreement: TopAgreement | None = None
    kept_given: bool = False  # best_* is the config as given, kept over a top trial in its noise
    confirmation: Confirmation | None = None  # the top trial's lead again, on fresh folds

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["trials"] = [asdict(t) for t in self.trials]
        out["seeds"] = self.seeds.to_dict() if self.seeds is not None else None
        out["importance"] = self.importance.to_dict() if self.importance is not None else None
        out["sensitivity"] = [s.to_dict() for s in self.sensitivity]
        out["sensitivity_rule"] = SENSITIVITY_RULE
        out["comparison"] = self.comparison.to_dict() if self.comparison is not None else None
        confirmed = self.confirmation
        out["confirmation"] = confirmed.to_dict() if confirmed is not None else None
        agreement = self.top_agreement
        out["top_agreement"] = agreement.to_dict() if agreement is not None else None
        return out
