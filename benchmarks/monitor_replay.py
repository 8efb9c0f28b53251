"""Replaying a table through the monitor: memory bounded by the window, not the table.

    python benchmarks/monitor_replay.py [--small 100000] [--big 2000000] [--window 5000]
                                        [--repeats 2] [--work DIR]

Claim (issue 22): `gradwise monitor RUN --replay SHARDS --window N --labels label` peaks at
about the same resident memory on --big rows as on --small rows (peak RSS of the child
process, from wait4; the ratio big / small is printed), because the monitor holds the open
window plus at most `retrain_windows` drifted windows, and the reader one window of rows.

The table is synthetic (12 numeric features and a 3-valued category, parquet shards of 500k
rows, no drift); the model a tiny tabular MLP (hidden [64], 3 classes, 3 epochs on 20k rows):
the point is the monitor's memory, not the model. The repeats are interleaved (small, big,
small, big ...) and each size's largest peak is kept. Everything generated lives in --work
and is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)
from predict_stream import table, write_shards

import gradwise


def peak_rss_mib(cmd: list[str]) -> float:
    """The child's peak resident memory in MiB (wait4, so only this child counts); exit codes
    0 (no alert) and 3 (an alert fired) are both a finished watch."""
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, 3):
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()}")
    return usage.ru_maxrss / 1024


def replay_cmd(run: Path, shards: Path, window: int) -> list[str]:
    return [
        sys.executable, "-m", "gradwise", "monitor", str(run), "--replay", str(shards),
        "--window", str(window), "--labels", "label", "--quiet",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000, help="rows of the small table")
    parser.add_argument("--big", type=int, default=2_000_000, help="rows of the big table")
    parser.add_argument("--window", type=int, default=5000, help="instances per window")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (deleted)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="monitor-replay-", dir=args.work))
    try:
        report(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(work: Path, args: argparse.Namespace) -> None:
    train = work / "train.parquet"
    table(20_000, seed=0).drop(columns=["id"]).to_parquet(train, index=False)
    cfg = {
        "name": "replay-mlp",
        "seed": 0,
        "data": {"source": f"parquet:{train}", "target": "label"},
        "model": {"arch": "mlp", "hidden": [64]},
        "train": {"epochs": 3, "batch_size": 256},
    }
    run = work / "run"
    gradwise.train(cfg, out=run)
    sizes = {"small": args.small, "big": args.big}
    shards = {k: write_shards(work / k, n, seed=1) for k, n in sizes.items()}
    peaks: dict[str, list[float]] = {k: [] for k in sizes}
    windows: dict[str, int] = {}
    for _ in range(args.repeats):
        for k in sizes:  # interleaved, so drift in the machine's load hits both
            peaks[k].append(peak_rss_mib(replay_cmd(run, shards[k], args.window)))
            saved = json.loads((run / "monitor" / "report.json").read_text())
            assert saved["served"] == sizes[k], saved["served"]
            windows[k] = saved["n_windows"]
    small, big = max(peaks["small"]), max(peaks["big"])
    print(f"monitor --replay, window {args.window}, {datetime.date.today()}")
    print(f"cpu: {cpu_flags()}")
    for k in sizes:
        shown = ", ".join(f"{p:.0f}" for p in peaks[k])
        print(f"{sizes[k]:>9} rows ({windows[k]} windows): peak RSS {max(peaks[k]):.0f} MiB "
              f"(runs: {shown})")  # fmt: skip
    print(f"peak RSS ratio big / small: {big / small:.3f} for {args.big / args.small:.0f}x rows")


if __name__ == "__main__":
    main()
