"""Write a seeded CSV of dates as people write them (source) and in ISO 8601 (target).

    python examples/make_dates.py [PATH] [--rows 20000] [--seed 0]

Each row draws a calendar date between 1900-01-01 and 2099-12-31 and writes it in one of the
formats below, with the true weekday where one is named. Every format is unambiguous:
numeric dates with two small numbers put the day first (24/11/2026, 24-11-2026, 24.11.2026),
and year-first forms say so by their four-digit year (2026/11/24, 2026.11.24, 20261124).
Sources are unique, so no test row repeats a training row. The task for a model is to
rewrite the source as YYYY-MM-DD (exact-match accuracy can be measured).
"""

from __future__ import annotations

import argparse
import csv
import datetime
from collections.abc import Callable
from pathlib import Path

import numpy as np

FIRST, LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


def _month(d: datetime.date) -> str:
    return d.strftime("%B")


def _mon(d: datetime.date) -> str:
    return d.strftime("%b")


def _weekday(d: datetime.date) -> str:
    return d.strftime("%A")


def _wkd(d: datetime.date) -> str:
    return d.strftime("%a")


FORMATS: list[Callable[[datetime.date], str]] = [
    lambda d: f"{d.day} {_month(d)} {d.year}",  # 24 November 2026
    lambda d: f"{d.day} {_mon(d)} {d.year}",  # 24 Nov 2026
    lambda d: f"{_month(d)} {d.day}, {d.year}",  # November 24, 2026
    lambda d: f"{_mon(d)} {d.day}, {d.year}",  # Nov 24, 2026
    lambda d: f"{_mon(d)}. {d.day}, {d.year}",  # Nov. 24, 2026
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",  # 24/11/2026
    lambda d: f"{d.day}/{d.month}/{d.year}",  # 24/11/2026, 3/2/2026
    lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",  # 24-11-2026
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",  # 24.11.2026
    lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",  # 2026.11.24
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",  # 2026/11/24
    lambda d: f"{d.year}{d.month:02d}{d.day:02d}",  # 20261124
    lambda d: f"{_weekday(d)}, {_ordinal(d.day)} of {_month(d)} {d.year}",
    lambda d: f"{_wkd(d)} {d.day} {_mon(d)} {d.year}",  # Tue 24 Nov 2026
    lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",  # Tuesday, November 24, 2026
    lambda d: f"the {_ordinal(d.day)} of {_month(d)}, {d.year}",
    lambda d: f"{_ordinal(d.day)} {_mon(d)} {d.year}",  # 24th Nov 2026
    lambda d: f"{_month(d)} {_ordinal(d.day)} {d.year}",  # November 24th 2026
    lambda d: f"{_month(d).upper()} {d.day} {d.year}",  # NOVEMBER 24 2026
    lambda d: f"{d.day} {_mon(d).lower()} {d.year}",  # 24 nov 2026
    lambda d: f"{d.year}, {_month(d)} {d.day}",  # 2026, November 24
]


def make_dates(n_rows: int, seed: int) -> list[tuple[str, str]]:
    """`n_rows` unique (source, ISO target) pairs, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    n_days = (LAST - FIRST).days + 1
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    while len(rows) < n_rows:
        date = FIRST + datetime.timedelta(days=int(rng.integers(n_days)))
        source = FORMATS[int(rng.integers(len(FORMATS)))](date)
        if source not in seen:
            seen.add(source)
            rows.append((source, date.isoformat()))
    return rows


def write_dates(path: Path, n_rows: int = 20_000, seed: int = 0) -> Path:
    """Write the CSV (columns source, target) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "target"])
        writer.writerows(make_dates(n_rows, seed))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=Path("examples/data/dates.csv"))
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.rows} rows written to {write_dates(args.path, args.rows, args.seed)}")


if __name__ == "__main__":
    main()
