"""The abstention guarantee, certified again for each optimised variant.

A variant scores inputs a little differently from the run it was made from (int8 rounding,
another engine, a smaller distilled student), so the base run's certified threshold promises
nothing about it. When the base run holds a certified guarantee (the selective check's,
`run.calibration.selective`), each variant is certified the way the check certified the base:
on the same validation rows, with the same alpha, delta and score, by Learn-then-Test
(`auditing.risk_control.certify`), with what the score needs fitted on the variant itself:

    classification  the score of the variant's probabilities at its own refitted temperature
                    (the one `optimize` stores in the variant); the set-size score needs
                    conformal sets the variant does not have, so it is not certified;
    regression      the difficulty estimate sigma(x) refitted on the variant's own features
                    of the training split (as the check fits it), the same tolerance.

The variant keeps its guarantee in its model.json, in the check's format, so `predict
--abstain` and `serve --abstain` on the variant apply its own threshold; the trade-off table
shows the share each variant answers on validation beside the base's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gradwise.auditing.conformal import absolute_scores, target_values
from gradwise.auditing.risk_control import ASSUMPTION, METHOD, Certificate, certify, rows_hash
from gradwise.auditing.uncertainty import fit_run_difficulty
from gradwise.data.dataset import Dataset
from gradwise.errors import GradwiseError
from gradwise.run import Run
from gradwise.run_conformal import (
    class_probabilities,
    classifier_score,
    regression_outputs,
    selective_guarantee,
)


def base_guarantee(run: Run) -> tuple[dict[str, Any] | None, str]:
    """The base run's guarantee in force (the selective check's stored dict), or None and
    why none applies (none stored, not certified, or its temperature refitted since)."""
    if run.schema.task not in ("classification", "regression"):
        return None, "abstention is certified for classifiers and regressions only"
    try:
        return selective_guarantee(run), ""
    except GradwiseError as exc:
        return None, str(exc)


def recertify(
    variant: Run, base: dict[str, Any], temperature: float | None, data: Dataset
) -> dict[str, Any]:
    """Certify the base's (alpha, delta) pairs again on the variant's own scores.

    Args:
        base: the base run's guarantee (`base_guarantee`).
        temperature: the variant's refitted temperature, None when the base run has none
            (classifiers; the variant is then scored as the base was, without one).
        data: the base run's dataset: the same validation rows (and training rows, where the
            difficulty estimate is refitted).

    Returns:
        The variant's guarantee in the selective check's format (`Run.set_selective`): the
        first pair's certificate, the others under "others", and the base's coverage and
        date under "recertified_from".
    """
    pairs = [(base["alpha"], base["delta"])]
    pairs += [(o["alpha"], o["delta"]) for o in base.get("others") or []]
    kept, scores, errors, expected = _scores_and_errors(variant, base, temperature, data)
    if scores is None:
        why = (
            "the base run ranks inputs by the size of its conformal prediction sets, and this "
            "variant has no conformal sets of its own; certify it with `gradwise audit "
            f"{variant.path} --checks uncertainty,selective`"
        )
        n = len(errors)
        certificates = [
            Certificate(a, d, None, n, 0, 0, 0.0, 1.0, tested=0, level=d, reason=why)
            for a, d in pairs
        ]
    else:
        certificates = [certify(scores, errors, a, d, expected) for a, d in pairs]
    return {
        **kept,
        **certificates[0].to_dict(),
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "validation_rows_sha256": rows_hash(data.rows["val"], data.val.y.numpy()),
        "others": [c.to_dict() for c in certificates[1:]],
        "method": METHOD,
        "assumption": ASSUMPTION,
        "recertified_from": {"coverage": base["coverage"], "fitted_at": base.get("fitted_at")},
    }


def _scores_and_errors(
    variant: Run, base: dict[str, Any], temperature: float | None, data: Dataset
) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(what the score is stored with, validation scores, validation errors, the variant's
    own chance of being wrong per row or None) of a variant, computed as the selective check
    computes them; scores None for the set-size score, which needs conformal sets the
    variant does not have."""
    val = data.val
    if base["task"] == "classification":
        probs = class_probabilities(variant, val.x, temperature)
        kept = {"task": "classification", "score": base["score"], "temperature": temperature}
        wrong = probs.argmax(axis=1) != val.y.numpy()
        expected = 1.0 - probs.max(axis=1)
        if base["score"] == "set_size":
            return kept, None, wrong, expected
        return kept, classifier_score(probs, base["score"], kept), wrong, expected
    difficulty = fit_run_difficulty(variant, data.train.x, data.train.y, variant.config.seed)
    kept = {
        "task": "regression",
        "score": "difficulty",
        "tolerance": base["tolerance"],
        "difficulty": difficulty.to_dict(),
    }
    sigma = difficulty.sigma(variant.embed(val.x).double().numpy())
    residual = absolute_scores(regression_outputs(variant, val.x), target_values(variant, val.y))
    wrong = np.asarray((residual > base["tolerance"]).any(axis=1), dtype=bool)
    return kept, -sigma.max(axis=1), wrong, None
