"""The top trial's lead, measured again on fresh folds.

The top of 30 trials is the one whose fold scores came out highest, so its lead over the
config as given, measured on those same folds, is inflated by the choice itself (the
winner's curse): with enough trials some configuration leads by two standard errors by luck.
Before best.yaml moves away from the config as given, both are trained again on folds drawn
with another seed, which the search never saw, and the lead must hold there too (paired
over the new folds, beyond two standard errors). It costs 2 x k retrains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gradwise.config import Config
from gradwise.tuning.crossval import TWO_SE, FoldScores, fold_datasets, fold_seed


@dataclass(frozen=True)
class Confirmation:
    """The top trial and the config as given on `folds` fresh folds (drawn with `seed`): each
    one's fold scores, the top's paired lead (`gain`, positive: better) and its standard
    error, and whether the lead holds (`apart`)."""

    trial: int
    folds: int
    seed: int
    top: tuple[float, ...]
    given: tuple[float, ...]
    gain: float
    se: float
    apart: bool

    @property
    def sentence(self) -> str:
        verdict = (
            "it holds"
            if self.apart
            else "within the noise: best.yaml keeps the config as given (the lead on the "
            "search's folds was the luck of being picked)"
        )
        return (
            f"on {self.folds} fresh folds (seed {self.seed}, unseen by the search) trial "
            f"{self.trial} leads the config as given by {self.gain:+.4f} ± {self.se:.4f} "
            f"(paired): {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sentence": self.sentence}


def confirm(
    given: Config, top: Config, trial: int, metric: str, maximize: bool, k: int, out: Path
) -> Confirmation:
    """Train `given` and `top` on k folds of train+val drawn with a seed the search did not
    use, and compare them fold by fold (the test split is never touched)."""
    seed = fold_seed(given.data.split.seed, given.seed) + 1
    given_scores = _scores(given, metric, k, seed, out / "given")
    top_scores = _scores(top, metric, k, seed, out / f"trial-{trial}")
    sign = 1.0 if maximize else -1.0
    diff = top_scores.minus(given_scores)
    gain, se = sign * diff.mean, diff.se
    return Confirmation(
        trial, k, seed, top_scores.values, given_scores.values, gain, se, gain > TWO_SE * se
    )


def _scores(cfg: Config, metric: str, k: int, seed: int, out: Path) -> FoldScores:
    from gradwise.data.sources import load_dataset
    from gradwise.pipeline import train_run
    from gradwise.training.transfer import source_tokenizer

    data = load_dataset(cfg.data, cfg.seed, tokenizer=source_tokenizer(cfg))
    split, _, name = metric.partition(".")
    scores = []
    for i, fold in enumerate(fold_datasets(data, k, seed)):
        run = train_run(cfg, out / f"fold-{i}", overwrite=True, data=fold)
        scores.append(float(run.metrics[split][name]))
    return FoldScores(tuple(scores))
