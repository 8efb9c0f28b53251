"""After the search: the best config over several seeds (so the winner is not a lucky seed),
and its sensitivity: each important hyperparameter moved one step either side of the best
value, trained over the same seeds, against the seed-to-seed noise.

Every run keeps the data split of the search (data.split.seed fixed), so the seeds vary
initialisation and batch order only, and a neighbour differs from the best by one value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gradwise.config import Config, apply_overrides, load_config
from gradwise.tuning.space import Space

TrainFn = Callable[[Config, Path], dict[str, Any]]  # config, run dir -> metrics.json


@dataclass(frozen=True)
class SeedRuns:
    """One config trained over seeds; `val` is the searched metric, `test` the same metric
    on the test split."""

    seeds: tuple[int, ...]
    val: tuple[float, ...]
    test: tuple[float, ...]

    @property
    def val_mean(self) -> float:
        return statistics.fmean(self.val)

    @property
    def val_std(self) -> float:
        return statistics.stdev(self.val) if len(self.val) > 1 else 0.0

    @property
    def test_mean(self) -> float:
        return statistics.fmean(self.test) if self.test else math.nan

    @property
    def test_std(self) -> float:
        return statistics.stdev(self.test) if len(self.test) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "val": list(self.val),
            "test": list(self.test),
            "val_mean": self.val_mean,
            "val_std": self.val_std,
            "test_mean": self.test_mean,
            "test_std": self.test_std,
        }


Verdict = Literal["within noise", "worse", "better", "no noise estimate"]


@dataclass(frozen=True)
class Step:
    """One neighbour of the best value.

    Attributes:
        step: how it moved: /2 or x2 (log scales), -1 or +1 (integers), -d or +d with d a
            tenth of the range (linear floats), previous or next (choices).
        value: the neighbour's value.
        delta: its mean metric minus the best's (over the same seeds).
        threshold: |delta| at or below this is inside the seed noise: two standard errors
            of a difference of two means over n seeds, 2 * std * sqrt(2 / n), with std the
            seed standard deviation pooled over the best config and its neighbours.
    """

    param: str
    best: Any
    value: Any
    step: str
    runs: SeedRuns
    delta: float
    threshold: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "best": self.best,
            "value": self.value,
            "step": self.step,
            "mean": self.runs.val_mean,
            "values": list(self.runs.val),
            "delta": self.delta,
            "threshold": self.threshold,
            "verdict": self.verdict,
        }


def seed_configs(cfg: Config, n_seeds: int) -> list[Config]:
    """`cfg` with seeds cfg.seed, cfg.seed + 1, ...; the split stays the one of cfg.seed."""
    split = cfg.data.split.seed if cfg.data.split.seed is not None else cfg.seed
    pinned = apply_overrides(cfg, {"data.split.seed": split}, "the seeds")
    return [pinned.model_copy(update={"seed": cfg.seed + i}) for i in range(n_seeds)]


def train_seeds(cfg: Config, n_seeds: int, folder: Path, metric: str, train: TrainFn) -> SeedRuns:
    """Train `cfg` over `n_seeds` seeds into folder/seed-<k>; reuses finished runs of the
    same config (a rerun after a kill does not train them again)."""
    split, _, name = metric.partition(".")
    seeds, val, test = [], [], []
    for seeded in seed_configs(cfg, n_seeds):
        metrics = train_or_reuse(seeded, folder / f"seed-{seeded.seed}", train)
        seeds.append(seeded.seed)
        val.append(float(metrics[split][name]))
        if name in metrics.get("test", {}):
            test.append(float(metrics["test"][name]))
    return SeedRuns(tuple(seeds), tuple(val), tuple(test))


def train_or_reuse(cfg: Config, run_dir: Path, train: TrainFn) -> dict[str, Any]:
    from gradwise.artifacts import read_json

    done = run_dir / "metrics.json"
    saved = run_dir / "config.given.yaml"  # config.yaml is the resolved config, not the asked
    if done.is_file() and saved.is_file() and load_config(saved) == cfg:
        return dict(read_json(done))
    return train(cfg, run_dir)


def sensitivity(
    base: Config,
    best_values: dict[str, Any],
    best_runs: SeedRuns,
    space: Space,
    names: list[str],
    folder: Path,
    metric: str,
    maximize: bool,
    train: TrainFn,
) -> list[Step]:
    """Each named parameter one step either side of its best value, over the best's seeds.

    The seed noise is the pooled seed-to-seed standard deviation of the best config and
    every neighbour (each trained over the same n seeds), so it rests on more than n runs;
    a change within 2 * noise * sqrt(2 / n), two standard errors of a difference of two
    means, is within noise.

    Args:
        base: the config the search started from (the values go on top).
        best_values: the best trial's values of every searched parameter.
        best_runs: the best config over seeds: the reference mean.
        names: parameters to move (the important ones).
        folder: DIR/sensitivity; each neighbour trains into folder/<param>=<value>/.
    """
    n = len(best_runs.val)
    moved: list[tuple[str, Any, str, SeedRuns]] = []
    for name in names:
        for step, value in space.param(name).neighbours(best_values[name]):
            values = {**best_values, name: value}
            cfg = apply_overrides(base, space.overrides(values), "the sensitivity step")
            shown = f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")
            runs = train_seeds(cfg, n, folder / f"{name}={shown}", metric, train)
            moved.append((name, value, step, runs))
    noise = pooled_std([best_runs, *(runs for *_, runs in moved)])
    threshold = 2 * noise * math.sqrt(2 / n) if n > 1 else math.nan
    steps = []
    for name, value, step, runs in moved:
        delta = runs.val_mean - best_runs.val_mean
        verdict = _verdict(delta, threshold, maximize)
        steps.append(Step(name, best_values[name], value, step, runs, delta, threshold, verdict))
    return steps


def pooled_std(groups: list[SeedRuns]) -> float:
    """The seed-to-seed standard deviation pooled over configs (each over the same seeds)."""
    variances = [statistics.variance(g.val) for g in groups if len(g.val) > 1]
    return math.sqrt(statistics.fmean(variances)) if variances else math.nan


def _verdict(delta: float, threshold: float, maximize: bool) -> Verdict:
    if math.isnan(threshold):
        return "no noise estimate"
    if abs(delta) <= threshold:
        return "within noise"
    return "better" if (delta > 0) == maximize else "worse"
