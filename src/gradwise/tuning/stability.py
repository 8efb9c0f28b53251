"""Whether the top of the importance ranking is a finding or an accident of which trials the
sampler happened to draw: fANOVA again on bootstrap resamples of the finished trials.

Two sampler seeds give two sets of trials, and with a few dozen trials they can name
different top parameters (benchmarks/RESULTS.md); resampling the trials one study drew
shows that spread without a second study. The top parameter "holds" when it ranks first in
at least AGREE of the resamples; otherwise the result says it cannot be told apart from the
parameter that took first place most often besides it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from gradwise.tuning.importance import LABELS

RESAMPLES = 20
AGREE = 0.8  # share of resamples the top parameter must lead to count as stable
N_TREES = 64  # per resample (the study's own ranking uses importance.N_TREES)


@dataclass(frozen=True)
class TopAgreement:
    """How often `top` (the study's top parameter by fANOVA) ranks first over `resamples`
    bootstrap resamples of its finished trials; `rival` leads most often besides it."""

    top: str
    first: int  # resamples in which `top` ranks first
    resamples: int
    rival: str | None
    rival_first: int
    holds: bool
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_agreement(study: optuna.Study, top: str, seed: int = 0) -> TopAgreement:
    """Rank by fANOVA on RESAMPLES bootstrap resamples (seeded by `seed`) of the study's
    complete trials and count how often `top` comes first (a resample whose importances
    cannot be computed, every value equal, counts for no parameter)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rng = np.random.default_rng(seed)
    firsts: Counter[str] = Counter()
    for b in range(RESAMPLES):
        picked = [complete[i] for i in rng.integers(0, len(complete), len(complete))]
        leader = _leader(study.direction, picked, seed + b)
        if leader is not None:
            firsts[leader] += 1
    rivals = [(n, c) for n, c in firsts.most_common() if n != top]
    rival, rival_first = rivals[0] if rivals else (None, 0)
    holds = firsts[top] >= AGREE * RESAMPLES
    return TopAgreement(
        top, firsts[top], RESAMPLES, rival, rival_first, holds,
        _sentence(top, firsts[top], rival, rival_first, holds, len(complete)),
    )  # fmt: skip


def _leader(direction: Any, trials: list[Any], seed: int) -> str | None:
    """The parameter with the largest fANOVA share on `trials`, or None."""
    copy = optuna.create_study(direction=direction)
    copy.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=N_TREES, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            shares = optuna.importance.get_param_importances(
                copy, evaluator=evaluator, normalize=False
            )
        except (RuntimeError, ValueError):  # no variance, or a parameter drawn once
            return None
    return max(shares, key=lambda k: shares[k]) if shares else None


def _sentence(
    top: str, first: int, rival: str | None, rival_first: int, holds: bool, n: int
) -> str:
    name = LABELS.get(top, top)
    seen = f"{name} ranks first by fANOVA in {first} of {RESAMPLES} bootstrap resamples of the "
    seen += f"{n} finished trials"
    if holds:
        return f"{seen}: the top parameter holds (at least {AGREE:.0%} of resamples)."
    other = LABELS.get(rival, rival) if rival else "another parameter"
    return (
        f"{seen} ({other} in {rival_first}): the top parameter cannot be told apart from "
        f"{other} on these trials (it leads in fewer than {AGREE:.0%} of resamples)."
    )
