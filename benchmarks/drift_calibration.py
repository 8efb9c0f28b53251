"""Claim: the drift detectors hold a 5% false-alarm rate on unshifted samples (at least 100
repeats) and detect a 0.5-standard-deviation mean shift in 10% of the features at n = 1000
rows per side with power >= 0.9; with the default settings (MMD with 200 permutations and
the cross-validated domain classifier included).

Unshifted pairs: (a) two gaussian samples of 1000 x 20 (18 numeric columns, 2 categorical
with 4 codes), (b) two disjoint random samples of 1000 rows of the UCI Adult training table
(../shared/data/adult: 6 numeric columns with many ties, 8 categorical; '?' is missing).
Shifted pairs: 1000 x 100 gaussian samples, the first 10 columns moved by 0.5.

Each detector's rate is given twice: its verdict with the default effect-size thresholds
(what `detect` reports), and its test alone (p < alpha, every threshold at 0), which is the
p-value's calibration: near 5% is right, far below is a wasteful test, above is a broken one.

    python benchmarks/drift_calibration.py              # 300 repeats each, about 3 minutes
    python benchmarks/drift_calibration.py --repeats 100
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from gradwise.auditing.drift import DETECTORS, DriftReport, DriftSettings, detect

# the shared data sets: GRADWISE_SHARED_DATA, else ../shared/data beside the checkout
SHARED = Path(
    os.environ.get("GRADWISE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ADULT = SHARED / "adult" / "adult-train.csv"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


def gaussian_null(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    a, b = rng.standard_normal((1000, 20)), rng.standard_normal((1000, 20))
    a[:, 18:], b[:, 18:] = rng.integers(0, 4, (1000, 2)), rng.integers(0, 4, (1000, 2))
    return a, b, [18, 19]


def adult_null() -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, list[int]]]:
    df = pd.read_csv(ADULT, header=None, names=ADULT_COLUMNS, skipinitialspace=True)
    df = df.drop(columns="income").replace("?", np.nan)
    cat_cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    x = np.column_stack(
        [
            df[c].to_numpy(dtype=np.float64)
            if c not in cat_cols
            else np.where(df[c].isna(), np.nan, pd.factorize(df[c])[0])
            for c in df.columns
        ]
    )
    cats = [i for i, c in enumerate(df.columns) if c in cat_cols]

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
        rows = rng.choice(len(x), 2000, replace=False)
        return x[rows[:1000]], x[rows[1000:]], cats

    return draw


def shifted(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    a, b = rng.standard_normal((1000, 100)), rng.standard_normal((1000, 100))
    b[:, :10] += 0.5
    return a, b, []


def rates(
    draw: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, list[int]]],
    repeats: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, float], float]:
    rng = np.random.default_rng(seed)
    settings = DriftSettings()
    verdicts = dict.fromkeys(DETECTORS, 0)
    tests = dict.fromkeys(DETECTORS, 0)
    ran: set[str] = set()
    started = time.perf_counter()
    for r in range(repeats):
        a, b, cats = draw(rng)
        report: DriftReport = detect(a, b, settings, categorical=cats, seed=r)
        for res in report.results:
            ran.add(res.detector)
            verdicts[res.detector] += res.drifted
            tests[res.detector] += res.p_value is not None and res.p_value < settings.alpha
    per_repeat = (time.perf_counter() - started) / repeats
    keep = [d for d in DETECTORS if d in ran]
    return (
        {d: verdicts[d] / repeats for d in keep},
        {d: tests[d] / repeats for d in keep},
        per_repeat,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    cases: list[tuple[str, Callable]] = [("gaussian, unshifted", gaussian_null)]
    if ADULT.is_file():
        cases.append(("Adult rows, unshifted", adult_null()))
    cases.append(("0.5 sd in 10% of 100 columns", shifted))
    sd = np.sqrt(0.05 * 0.95 / args.repeats)
    print(f"{args.repeats} repeats per case, n = 1000 per side, alpha 0.05 (binomial sd {sd:.3f})")
    print(f"{'case':32} {'detector':12} {'verdict':>8} {'test only':>10}")
    for i, (name, draw) in enumerate(cases):
        verdict, test, per_repeat = rates(draw, args.repeats, seed=i)
        for d in verdict:
            print(f"{name:32} {d:12} {verdict[d]:8.3f} {test[d]:10.3f}")
        print(f"{'':32} ({per_repeat:.2f} s per repeat, all detectors)")


if __name__ == "__main__":
    main()
