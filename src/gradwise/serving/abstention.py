"""Serving with abstention (`serve --abstain`): each instance answered or handed to a person.

The run's certified threshold (`gradwise audit RUN --checks selective`, stored in model.json)
is read once, when the server starts, and checked there (`selective_guarantee`), so a run
without a guarantee, or one whose temperature was refitted since, fails at start and not on
the first request. Each row then gets the score the threshold was certified on and the
decision `score >= threshold`, as `Run.predict_selective` decides offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradwise.run import Run
from gradwise.run_conformal import (
    GUARANTEE_KEYS,
    classifier_score,
    selective_guarantee,
    selective_scores,
)


@dataclass(frozen=True)
class Abstention:
    """The certified threshold a server applies to every row it answers.

    Attributes:
        stored: what the selective audit stored in the run (score kind, threshold, ...).
        guarantee: what a response says once: alpha, delta, threshold, n, score, coverage,
            fitted_at.
        guarantee_json: `guarantee` encoded once, for every response.
    """

    stored: dict[str, Any]
    guarantee: dict[str, Any]
    guarantee_json: str

    @classmethod
    def of(cls, run: Run) -> Abstention:
        """The run's abstention threshold.

        Raises:
            GradwiseError: none is certified, or the calibration it was certified on has been
                refitted since (the message says which, and how to certify one).
        """
        stored = selective_guarantee(run)
        guarantee = {k: stored.get(k) for k in GUARANTEE_KEYS}
        return cls(stored, guarantee, json.dumps(guarantee, separators=(",", ":")))

    def scores(self, run: Run, x: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
        """(N,) the certified score of each row (higher: surer).

        A classifier's score comes from the batch's own logits, in float64 as certified (the
        run's temperature is the certified one: `of` checked it). A regressor's comes from
        `selective_scores`, which recomputes the embedding it needs: one more forward pass.

        Args:
            x: (N, ...) the model-ready batch.
            logits: (N, K) the model's outputs for `x`.
        """
        if self.stored["task"] == "classification":
            probs = run.probabilities(logits.double())
            return classifier_score(probs, self.stored["score"], self.stored)
        return selective_scores(run, x, self.stored)[1]

    def answers(self, scores: np.ndarray) -> np.ndarray:
        """(N,) True where a score reaches the certified threshold (answer), else False."""
        return scores >= self.stored["threshold"]
