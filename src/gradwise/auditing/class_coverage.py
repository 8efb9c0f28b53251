"""Per-class coverage of conformal sets, graded by its n, and what per-class quantiles and
empty sets mean, in the uncertainty check's sentences.

Split conformal promises coverage on average over classes; one class can be covered far less
(a hard class, a rare one). Each class with at least `min_class` test rows is tested against
the target with a one-sided binomial test, Bonferroni-corrected over the graded classes
(`CLASS_RULE`); smaller classes are listed with their n, not graded.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gradwise.config import UncertaintyAudit

CLASS_LEVEL = 0.05  # false-alarm rate of the per-class coverage test, over the graded classes
CLASS_RULE = (
    "a class with at least min_class test rows is under-covered when P(Binomial(n, coverage) "
    f"<= covered) < {CLASS_LEVEL} / (classes graded): a one-sided binomial test at the target, "
    "Bonferroni over the graded classes; an under-covered class makes the verdict at least warn"
)


def class_coverage(
    covered: np.ndarray, y: np.ndarray, classes: list[str], coverage: float, min_class: int
) -> dict[str, dict[str, Any]]:
    """Per class present in `y`: its coverage with n, and whether it falls short of the
    target by more than its n explains (see `CLASS_RULE`); classes with fewer than
    `min_class` rows are listed, not graded.

    Args:
        covered: (N,) booleans: the set held the true class.
        y: (N,) labels, indices into `classes`.
    """
    from scipy.stats import binom

    counts = np.bincount(y, minlength=len(classes))
    hits = np.bincount(y, weights=covered.astype(np.float64), minlength=len(classes))
    n_graded = int((counts >= min_class).sum())
    found = {}
    for k in np.flatnonzero(counts):
        n, c = int(counts[k]), int(round(hits[k]))
        graded = n >= min_class
        p = float(binom.cdf(c, n, coverage)) if graded else None
        found[classes[k]] = {
            "coverage": c / n,
            "covered": c,
            "n": n,
            "graded": graded,
            "p_value": p,
            "under_covered": p is not None and p < CLASS_LEVEL / n_graded,
        }
    return found


def class_sentence(per_class: dict[str, dict[str, Any]], settings: UncertaintyAudit) -> str:
    """What the per-class coverage shows: the class covered less than chance allows, or the
    least covered graded class, each with its n; and which classes are too small to grade."""
    graded = {c: v for c, v in per_class.items() if v["graded"]}
    under = sorted(
        (c for c, v in graded.items() if v["under_covered"]), key=lambda c: graded[c]["coverage"]
    )
    if under:
        v = graded[under[0]]
        also = under[1:6] + (["..."] if len(under) > 6 else [])
        more = f"; so are class{'es' if len(also) > 1 else ''} {', '.join(also)}" if also else ""
        text = (
            f" Class {under[0]} is covered only {v['coverage']:.1%} ({v['covered']} of {v['n']} "
            f"test rows), less than chance allows at the {settings.coverage:.0%} target "
            f"(one-sided binomial p={v['p_value']:.2g}, below {CLASS_LEVEL} / {len(graded)} "
            f"classes){more}."
        )
        if not settings.per_class:
            text += (
                " audit.uncertainty.per_class: true fits one quantile per class, so that every "
                "class is covered at the target (with larger sets)."
            )
    elif graded:
        worst, v = min(graded.items(), key=lambda kv: kv[1]["coverage"])
        text = (
            f" The least covered class with at least {settings.min_class} test rows, {worst}, "
            f"is covered {v['coverage']:.1%} (n = {v['n']}), within what chance allows at the "
            f"{settings.coverage:.0%} target."
        )
    else:
        text = (
            f" No class holds {settings.min_class} test rows (audit.uncertainty.min_class), "
            "so none is graded on its own coverage."
        )
    small = [c for c, v in per_class.items() if not v["graded"]]
    if graded and small:
        names = ", ".join(small[:6]) + (", ..." if len(small) > 6 else "")
        many = len(small) > 1
        text += (
            f" {len(small)} class{'es' if many else ''} with fewer than {settings.min_class} "
            f"test rows ({names}) {'are' if many else 'is'} listed in the metrics, not graded."
        )
    return text


def unfitted_classes_sentence(
    quantile: float | list[float | None], classes: list[str], coverage: float
) -> str:
    """Per-class quantiles (Mondrian): the classes whose validation rows were too few for a
    quantile of their own; empty for one quantile, or when every class has its own."""
    if not isinstance(quantile, list):
        return ""
    missing = [c for c, q in zip(classes, quantile) if q is None]
    if not missing:
        return ""
    need = math.ceil(coverage / (1 - coverage) - 1e-9)
    names = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
    if len(missing) == 1:
        return (
            f" Class {names} has fewer than {need} validation rows, too few for a quantile of "
            "its own, so it enters every set."
        )
    return (
        f" Classes {names} have fewer than {need} validation rows each, too few for a quantile "
        "of their own, so they enter every set."
    )


def empty_sets_sentence(empty: float, accuracy: float, settings: UncertaintyAudit) -> str:
    """What empty sets mean here: room the model leaves when it is right more often than the
    target asks, or, when it is not, misses that the score's rule makes."""
    if empty <= 0.01:
        return ""
    share = f" {empty:.0%} of the sets are empty"
    if accuracy > settings.coverage:
        return (
            f"{share}: the model's top class is right for {accuracy:.1%} of the test samples, "
            f"more than the {settings.coverage:.0%} target asks, so the sets can leave some "
            "inputs without a class and still meet it; a higher audit.uncertainty.coverage "
            "gives sets that grow where it is unsure instead."
        )
    if settings.method == "lac":
        why = (
            "a LAC set is empty when no class is likely enough to pass the quantile; "
            "audit.uncertainty.method: aps with randomised: false gives sets that are never empty"
        )
    else:
        why = (
            "randomised APS empties a set when even its top class's score, U * p, lands above "
            "the quantile; audit.uncertainty.randomised: false gives sets that are never empty "
            "(coverage at or above the target)"
        )
    return (
        f"{share}, although the model's top class is right for only {accuracy:.1%} of the test "
        f"samples (not above the {settings.coverage:.0%} target): each empty set counts as a "
        f"miss; {why}."
    )
