"""Compare two configs with evidence: the same splits, several seeds, fractions of the data.

A verdict names a winner only when the difference is larger than the seed-to-seed noise
(Welch's t-test at 5%); otherwise it says the two cannot be told apart.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from gradwise.artifacts import atomic_write_text
from gradwise.config import Config, load_config
from gradwise.evaluate.metrics import lower_is_better

log = logging.getLogger("gradwise")

PRIMARY = {
    "classification": "accuracy",
    "regression": "rmse",
    "lm": "loss",
    "seq2seq": "exact_match",
    "mlm": "loss",
}

TrainFn = Callable[[Config, Path], dict[str, Any]]  # config, run dir -> metrics.json


@dataclass(frozen=True)
class Arm:
    """One config at one data fraction, over seeds."""

    name: str
    fraction: float
    values: list[float]
    wall_s: list[float]
    n_params: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass(frozen=True)
class Verdict:
    fraction: float
    winner: str | None  # None: inside the noise
    difference: float  # b.mean - a.mean
    p_value: float | None
    text: str


@dataclass(frozen=True)
class Comparison:
    metric: str
    a: str
    b: str
    seeds: list[int]
    arms: list[Arm] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "metric": self.metric,
                "a": self.a,
                "b": self.b,
                "seeds": self.seeds,
                "arms": [asdict(a) | {"mean": a.mean, "std": a.std} for a in self.arms],
                "verdicts": [asdict(v) for v in self.verdicts],
            },
            indent=1,
        )


def compare(
    config_a: Config,
    config_b: Config,
    train: TrainFn,
    out: Path,
    seeds: int = 3,
    fractions: tuple[float, ...] = (1.0,),
    metric: str | None = None,
) -> Comparison:
    """Train both configs for every seed and fraction on the same splits; weigh the results.

    Args:
        train: trains one config into a run directory and returns its metrics.json.
        out: folder for the runs (out/<a|b>/f<fraction>/s<seed>) and compare.json.
        metric: e.g. test.f1_macro; default: the task's primary test metric.
    """
    split_seed = config_a.seed
    names = _names(config_a, config_b)
    arms: list[Arm] = []
    chosen = metric
    for fraction in fractions:
        for name, cfg in zip(names, (config_a, config_b)):
            values, walls, n_params = [], [], 0
            for seed in range(seeds):
                run_cfg = _variant(cfg, seed, split_seed, fraction)
                run_dir = out / name / f"f{fraction:g}" / f"s{seed}"
                summary = train(run_cfg, run_dir)
                chosen = chosen or f"test.{PRIMARY.get(summary['task'], 'loss')}"
                values.append(_lookup(summary, chosen))
                walls.append(float(summary["wall_s"]))
                n_params = int(summary["n_params"])
                log.info(
                    "%s, %g of the training data, seed %d: %s %.4f",
                    name,
                    fraction,
                    seed,
                    chosen,
                    values[-1],
                )
            arms.append(Arm(name, fraction, values, walls, n_params))
    assert chosen is not None
    verdicts = [_verdict(a, b, chosen) for a, b in zip(arms[0::2], arms[1::2])]
    result = Comparison(chosen, names[0], names[1], list(range(seeds)), arms, verdicts)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.json", result.to_json())
    return result


def _verdict(a: Arm, b: Arm, metric: str) -> Verdict:
    diff = b.mean - a.mean
    lower = lower_is_better(metric)
    if len(a.values) < 2 or len(b.values) < 2:
        return Verdict(
            a.fraction,
            None,
            diff,
            None,
            "no verdict: one seed cannot show the noise; use --seeds 3 or more",
        )
    better_b = diff < 0 if lower else diff > 0
    winner = b.name if better_b else a.name
    if statistics.pvariance(a.values) + statistics.pvariance(b.values) == 0:
        # every seed gave the same value on each side: nothing to test, the gap is exact
        if diff == 0:
            text = "no difference: both configs gave the same value at every seed (no test run)"
            return Verdict(a.fraction, None, diff, None, text)
        text = (
            f"{winner} is better by {abs(diff):.4f} {metric} at every seed; neither arm "
            "varied from seed to seed, so no test was run"
        )
        return Verdict(a.fraction, winner, diff, None, text)
    p = float(stats.ttest_ind(b.values, a.values, equal_var=False).pvalue)
    noise = max(a.std, b.std)
    if p >= 0.05:
        return Verdict(
            a.fraction,
            None,
            diff,
            p,
            f"no clear winner: the difference {diff:+.4f} is within the seed-to-seed "
            f"noise (std up to {noise:.4f}, Welch p={p:.2f})",
        )
    return Verdict(
        a.fraction,
        winner,
        diff,
        p,
        f"{winner} is better by {abs(diff):.4f} {metric} (noise std up to "
        f"{noise:.4f}, Welch p={p:.3f})",
    )


def _variant(cfg: Config, seed: int, split_seed: int, fraction: float) -> Config:
    return load_config(
        cfg, {"seed": seed, "data.split.seed": split_seed, "data.split.train_fraction": fraction}
    )


def _names(a: Config, b: Config) -> tuple[str, str]:
    if a.name != b.name:
        return a.name, b.name
    return f"{a.name}-a", f"{b.name}-b"


def _lookup(summary: dict[str, Any], metric: str) -> float:
    split, _, name = metric.partition(".")
    try:
        return float(summary[split][name])
    except (KeyError, TypeError):
        from gradwise.errors import ConfigError

        known = [f"{s}.{k}" for s in ("val", "test") for k in summary.get(s, {})]
        raise ConfigError(
            f"--metric {metric} is not in the runs' metrics; choose one of {', '.join(known)}."
        ) from None
