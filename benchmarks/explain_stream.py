"""Streaming explain: memory bounded by the batch, not the table; its cost against predict.

    python benchmarks/explain_stream.py [--small 200000] [--rows 2000000] [--repeats 2]
                                        [--batch-rows 4096] [--work DIR]

Claims (issue 22), on parquet tables written as shards of 500k rows:
- `gradwise explain RUN --data SHARDS --out out.parquet` (integrated gradients) on --rows
  rows peaks at <= 1.2x the resident memory it peaks at on --small rows (peak RSS of each
  child process from wait4, the per-child `ru_maxrss`; RUSAGE_CHILDREN would report the
  largest child so far, hiding a smaller second one);
- its throughput in rows/s, and the same as a ratio to `gradwise predict RUN SHARDS --out`
  on the --small table (the peer, measured in the same run, interleaved, best of
  --repeats): what attributing a row costs over predicting it;
- the importance printed equals the mean |attribution| of the written file (--small).

Each child runs one torch thread (OMP_NUM_THREADS=1) and times its own data work (the
"in X s" of its closing line), so start-up noise is left out. The model is a tiny tabular
MLP (12 numeric features and a 3-valued category, hidden [64], 3 classes) trained for 3
epochs on 20k synthetic rows. Everything generated lives in --work and is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)
from predict_stream import table, write_shards  # the same synthetic table

import gradwise


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """Seconds the child spent on the data (its "in X s"), its peak RSS in MiB (wait4) and
    its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADWISE_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()}")
        text = out.read()
        seconds = re.search(r"\bin ([0-9.]+) s\b", text)
        if seconds is None:
            raise SystemExit(f"no time in the output of {' '.join(cmd)}:\n{text}")
        return float(seconds[1]), usage.ru_maxrss / 1024, text


def explain_cmd(run: Path, source: Path, out: Path, batch_rows: int) -> list[str]:
    return [
        sys.executable, "-m", "gradwise", "explain", str(run), "--data", str(source),
        "--out", str(out), "--batch-rows", str(batch_rows),
    ]  # fmt: skip


def predict_cmd(run: Path, source: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "gradwise", "predict", str(run), str(source), "--out", str(out),
        "--threads", "1",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200_000, help="rows of the small table")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the big table")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=4096)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (deleted)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="explain-stream-", dir=args.work))
    try:
        report(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(work: Path, args: argparse.Namespace) -> None:
    train = work / "train.parquet"
    table(20_000, seed=0).to_parquet(train, index=False)
    cfg = {
        "name": "explain-stream-mlp",
        "seed": 0,
        "data": {"source": f"parquet:{train}", "target": "label", "drop": ["id"]},
        "model": {"arch": "mlp", "hidden": [64], "dropout": 0.0},
        "train": {"epochs": 3, "batch_size": 256},
    }
    run = gradwise.train(cfg, out=work / "run").path
    small = write_shards(work / "rows-small", args.small, seed=100)
    print(f"date {datetime.date.today()}; {cpu_flags()}; torch threads 1")
    explained, predicted = [], []
    for _ in range(args.repeats):  # interleaved: the machine's speed drifts
        explained.append(measured(explain_cmd(run, small, work / "e.parquet", args.batch_rows)))
        predicted.append(measured(predict_cmd(run, small, work / "p.parquet")))
    e_wall, e_rss, e_out = min(explained)
    p_wall, p_rss, _ = min(predicted)
    written = pd.read_parquet(work / "e.parquet")
    saved = json.loads((run / "explain" / "stream.json").read_text())
    attributions = written[[f"attr_{c}" for c in saved["features"]]].to_numpy(np.float64)
    by_hand = np.abs(attributions).mean(axis=0)
    np.testing.assert_allclose(saved["mean_abs_attribution"], by_hand, rtol=1e-9)
    print(e_out.strip().splitlines()[-1])
    print(
        f"{args.small:,} rows: explain (ig) {e_wall:.1f} s ({args.small / e_wall:,.0f} rows/s, "
        f"peak RSS {e_rss:.0f} MiB); predict {p_wall:.1f} s ({args.small / p_wall:,.0f} rows/s, "
        f"peak RSS {p_rss:.0f} MiB); explain/predict time {e_wall / p_wall:.1f}x; importance "
        "equals the file's mean |attribution|"
    )
    shutil.rmtree(small)
    big = write_shards(work / "rows-big", args.rows, seed=200)
    b_wall, b_rss, b_out = measured(explain_cmd(run, big, work / "b.parquet", args.batch_rows))
    print(b_out.strip().splitlines()[-1])
    print(
        f"{args.rows:,} rows: explain (ig) {b_wall:.1f} s ({args.rows / b_wall:,.0f} rows/s), "
        f"peak RSS {b_rss:.0f} MiB; peak RSS {args.rows:,} / {args.small:,} rows "
        f"{b_rss / e_rss:.2f} (claim <= 1.2)"
    )


if __name__ == "__main__":
    main()
