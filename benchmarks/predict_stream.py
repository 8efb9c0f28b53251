"""Streaming predict: memory bounded by the batch, not the input; speed of the in-memory path.

    python benchmarks/predict_stream.py [--rows 20000000] [--repeats 2] [--batch-rows 65536]
                                        [--work DIR] [--threads 1]

Claims (issue 22), on a parquet table written as shards of 500k rows:
- `gradwise predict RUN SHARDS --out out.parquet` on --rows rows peaks at <= 1.2x the
  resident memory it peaks at on 1M rows (peak RSS of the child process, from wait4);
- on 1M rows, its throughput is >= 0.9x the in-memory path's (the whole table read with
  pandas, `prediction_frame` on it, one parquet written: what `predict` did before
  streaming), measured in the same run, interleaved, best of --repeats each; each child
  times its own data work (read, predict, write), so start-up noise is left out;
- the two outputs on 1M rows are identical (every column, every digit).

The model is a tiny tabular MLP (12 numeric features and a 3-valued category, hidden [64],
3 classes) trained for 3 epochs on 20k synthetic rows: the point is the data path, not the
model. Everything generated lives in --work and is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
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

import gradwise

SHARD_ROWS = 500_000
N_NUMERIC = 12
IN_MEMORY = """
import sys, time, pandas as pd, torch, gradwise
from gradwise.run_predict import prediction_frame
torch.set_num_threads(int(sys.argv[4]))
run = gradwise.load(sys.argv[1])
started = time.perf_counter()
raw = pd.read_parquet(sys.argv[2])
prediction_frame(run, raw, ["id"]).to_parquet(sys.argv[3], index=False)
print(f"in {time.perf_counter() - started:.2f} s")
"""


def table(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    """Synthetic rows: the label depends on two numeric features and the category."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_NUMERIC)).astype(np.float32)
    colour = rng.choice(np.array(["red", "green", "blue"]), n)
    score = x[:, 0] + 0.5 * x[:, 1] + (colour == "red")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(N_NUMERIC)])
    frame.insert(0, "id", np.arange(start, start + n))
    frame["colour"] = colour
    frame["label"] = np.digitize(score, [-0.5, 0.8])
    return frame


def write_shards(folder: Path, n_rows: int, seed: int) -> Path:
    """`n_rows` rows as parquet shards of SHARD_ROWS, written one shard at a time."""
    folder.mkdir(parents=True)
    for i, start in enumerate(range(0, n_rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, n_rows - start)
        table(n, seed + i, start).to_parquet(folder / f"part-{i:04d}.parquet", index=False)
    return folder


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """Seconds the child spent on the data (from its "in X s": reading, predicting, writing;
    not the start-up, which is the same for both paths and noisy on a shared machine), its
    peak RSS in MiB (wait4: RUSAGE_CHILDREN would keep the largest child so far), and its
    stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
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


def stream_cmd(run: Path, source: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "gradwise", "predict", str(run), str(source), "--out", str(out),
        "--keep", "id", "--batch-rows", str(args.batch_rows), "--threads", str(args.threads),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the big table")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (deleted)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predict-stream-", dir=args.work))
    try:
        report(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(work: Path, args: argparse.Namespace) -> None:
    train = work / "train.parquet"
    table(20_000, seed=0).to_parquet(train, index=False)
    cfg = {
        "name": "stream-mlp",
        "seed": 0,
        "data": {"source": f"parquet:{train}", "target": "label", "drop": ["id"]},
        "model": {"arch": "mlp", "hidden": [64], "dropout": 0.0},
        "train": {"epochs": 3, "batch_size": 256},
    }
    run = gradwise.train(cfg, out=work / "run").path
    small = write_shards(work / "rows-1m", 1_000_000, seed=100)
    print(f"date {datetime.date.today()}; {cpu_flags()}; threads {args.threads}")
    streamed, in_memory = [], []
    for _ in range(args.repeats):  # interleaved: the machine's speed drifts
        streamed.append(measured(stream_cmd(run, small, work / "s.parquet", args)))
        script = [sys.executable, "-c", IN_MEMORY, str(run), str(small), str(work / "m.parquet")]
        in_memory.append(measured([*script, str(args.threads)]))
    s_wall, s_rss, s_out = min(streamed)
    m_wall, m_rss, _ = min(in_memory)
    got, expected = pd.read_parquet(work / "s.parquet"), pd.read_parquet(work / "m.parquet")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    print(s_out.strip())
    print(
        f"1M rows: streamed {s_wall:.1f} s ({1e6 / s_wall:,.0f} rows/s, peak RSS {s_rss:.0f} "
        f"MiB); in memory {m_wall:.1f} s ({1e6 / m_wall:,.0f} rows/s, peak RSS {m_rss:.0f} "
        f"MiB); throughput streamed/in-memory {m_wall / s_wall:.2f} (claim >= 0.9); outputs "
        "identical"
    )
    shutil.rmtree(small)
    big = write_shards(work / "rows-big", args.rows, seed=200)
    b_wall, b_rss, b_out = measured(stream_cmd(run, big, work / "b.parquet", args))
    print(b_out.strip())
    print(
        f"{args.rows:,} rows: streamed {b_wall:.1f} s ({args.rows / b_wall:,.0f} rows/s), peak "
        f"RSS {b_rss:.0f} MiB; peak RSS {args.rows:,} rows / 1M rows {b_rss / s_rss:.2f} "
        "(claim <= 1.2)"
    )


if __name__ == "__main__":
    main()
