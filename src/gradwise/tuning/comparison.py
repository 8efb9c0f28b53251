"""How much better the best configuration is than the config as given (trial 0) and than the
second best, with the noise: the sentence a reader needs before trusting a search.

With cross-validation every complete trial has the same folds, so two trials are compared
fold by fold: the difference's standard error is that of the paired differences, and a
difference within TWO_SE of them "cannot be told apart". Without folds there is one
validation score per trial and no noise estimate; the sentence says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from gradwise.tuning.crossval import TWO_SE, FoldScores


@dataclass(frozen=True)
class Standing:
    """One complete trial's score: `value` (the mean over `folds`, when there are folds) and
    its standard error `se` (None without folds)."""

    trial: int
    value: float
    se: float | None
    folds: tuple[float, ...]


@dataclass(frozen=True)
class Gap:
    """The best against `other`: `gain` is how much better the best is (positive: better,
    in the metric's own direction), `se` the standard error of the paired fold differences
    (None without folds), `apart` whether |gain| > TWO_SE x se (None without folds)."""

    other: Standing
    gain: float
    se: float | None
    apart: bool | None


@dataclass(frozen=True)
class Comparison:
    """The best, the config as given and the second best, and the sentence that says it."""

    metric: str
    folds: int
    best: Standing
    default: Standing | None
    second: Standing | None
    vs_default: Gap | None
    vs_second: Gap | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def standing(t: FrozenTrial) -> Standing:
    folds = tuple(float(v) for v in t.user_attrs.get("folds", ()))
    se = FoldScores(folds).se if len(folds) > 1 else None
    return Standing(t.number, float(t.value), se, folds)  # type: ignore[arg-type]


def compare(trials: list[FrozenTrial], metric: str, maximize: bool, folds: int) -> Comparison:
    """The comparison over the complete trials (at least one); the default is the complete
    trial marked `default` (trial 0, or its retry)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ranked = sorted(done, key=lambda t: (-t.value if maximize else t.value, t.number))  # type: ignore[operator]
    best = standing(ranked[0])
    second = standing(ranked[1]) if len(ranked) > 1 else None
    default = next((standing(t) for t in ranked if t.user_attrs.get("default")), None)
    vs_default = gap(best, default, maximize) if default and default.trial != best.trial else None
    vs_second = gap(best, second, maximize) if second else None
    sentence = _sentence(metric, folds, best, default, second, vs_default, vs_second)
    return Comparison(metric, folds, best, default, second, vs_default, vs_second, sentence)


def gap(best: Standing, other: Standing, maximize: bool) -> Gap:
    sign = 1.0 if maximize else -1.0
    if best.folds and len(best.folds) == len(other.folds) and len(best.folds) > 1:
        diff = FoldScores(best.folds).minus(FoldScores(other.folds))
        gain, se = sign * diff.mean, diff.se
        return Gap(other, gain, se, abs(gain) > TWO_SE * se)
    return Gap(other, sign * (best.value - other.value), None, None)


def _shown(s: Standing) -> str:
    noise = f" ± {s.se:.4f}" if s.se is not None else ""
    return f"{s.value:.4f}{noise} (trial {s.trial})"


def _gap_text(what: str, g: Gap) -> str:
    if g.se is None:
        return f"the best leads {what} by {g.gain:+.4f}"
    verdict = "beyond the noise" if g.apart else "within the noise: they cannot be told apart"
    return f"the best leads {what} by {g.gain:+.4f} ± {g.se:.4f} (paired over folds), {verdict}"


def _sentence(
    metric: str,
    folds: int,
    best: Standing,
    default: Standing | None,
    second: Standing | None,
    vs_default: Gap | None,
    vs_second: Gap | None,
) -> str:
    how = (
        f"{metric} mean ± standard error over {folds} folds of train+val"
        if folds
        else f"{metric} on the validation split, one score per trial: no noise estimate "
        "(tune.cv off)"
    )
    parts = [f"best {_shown(best)}"]
    if default is None:
        parts.append("the config as given did not finish (or was not trial 0): not compared")
    elif default.trial == best.trial:
        parts.append("the best is the config as given")
    else:
        parts.append(f"config as given {_shown(default)}")
    if second is not None:
        parts.append(f"second best {_shown(second)}")
    text = f"{'; '.join(parts)} ({how})."
    gaps = [_gap_text("the config as given", vs_default)] if vs_default else []
    gaps += [_gap_text("the second best", vs_second)] if vs_second else []
    return text + (" " + "; ".join(gaps) + "." if gaps else "")


TOP_FILE = "top.yaml"  # the best trial, when best.yaml keeps the config as given


def recommended(
    trials: list[FrozenTrial], top: FrozenTrial, comparison: Comparison, keep_given: bool
) -> tuple[FrozenTrial, bool]:
    """The trial best.yaml holds, and whether it is the config as given kept over a top
    trial it cannot be told apart from (paired over folds; without folds, never)."""
    gap_ = comparison.vs_default
    if not keep_given or gap_ is None or gap_.apart is not False:
        return top, False
    return next(t for t in trials if t.number == gap_.other.trial), True


def kept_note(comparison: Comparison, folder: Any) -> str:
    """What keeping the config as given means, in one sentence."""
    gap_ = comparison.vs_default
    assert gap_ is not None and gap_.se is not None
    return (
        f"best.yaml keeps the config as given (trial {gap_.other.trial}): the top trial "
        f"{comparison.best.trial} leads it by {gap_.gain:+.4f} ± {gap_.se:.4f} over "
        f"{comparison.folds} folds, within the noise; {folder}/{TOP_FILE} holds trial "
        f"{comparison.best.trial} (tune.keep_given: false makes it best.yaml)"
    )
