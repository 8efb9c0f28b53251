"""`audit --against` streamed: memory bounded by the sample plus a batch, not the table.

    python benchmarks/against_stream.py [--rows 4000000] [--work DIR]

Claims, on a parquet table written as shards of 500k rows (6 numeric columns, 1 category):
- `gradwise audit RUN --checks shift --against SHARDS` on --rows rows peaks at <= 1.2x the
  resident memory it peaks at on --rows / 10 rows (peak RSS of the child, from wait4);
- the peer is what the check did before streaming, up to its sample: load the run, build
  the detectors' view of the training split, read the whole table (`pd.read_parquet` of the
  folder), draw 1000 rows; measured in the same run on the same rows (it stops before the
  detectors, so it flatters the peer): the ratio streamed / whole says what streaming saves.

The model is a tiny tabular MLP trained for 2 epochs on 5k rows: the point is the data path.
Everything generated lives in --work and is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

SHARD_ROWS = 500_000
WHOLE = """
import sys, numpy as np, pandas as pd, gradwise
from gradwise.auditing.shift import shift_view, table_matrix
run = gradwise.load(sys.argv[2])
view = shift_view(run, 0, 0)
df = pd.read_parquet(sys.argv[1])
rows = np.sort(np.random.default_rng(0).choice(len(df), 1000, replace=False))
print(table_matrix(df.iloc[rows], run.schema.tabular).shape)
"""


def _table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    df = pd.DataFrame(rng.standard_normal((n, 6)), columns=[f"x{i}" for i in range(6)])
    df["color"] = rng.choice(["red", "green", "blue"], n)
    df["label"] = np.where(df.x0 + df.x1 > 0.3, "yes", "no")
    return df


def _shards(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, n, SHARD_ROWS)):
        _table(min(SHARD_ROWS, n - start), rng).to_parquet(folder / f"part-{i:04d}.parquet")
    return folder


def _peak_mib(cmd: list[str]) -> float:
    """Peak resident memory of a child process, in MiB (Linux reports ru_maxrss in KiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.work))
    try:
        _table(5000, np.random.default_rng(1)).to_csv(work / "train.csv", index=False)
        config = work / "config.yaml"
        config.write_text(
            f"data: {{source: 'csv:{work / 'train.csv'}', target: label}}\n"
            "model: {arch: mlp, hidden: [32]}\ntrain: {epochs: 2}\n"
            "audit: {shift: {power: false, permutations: 50}}\n"
        )
        gw = [sys.executable, "-m", "gradwise"]
        subprocess.run(
            [*gw, "train", str(config), "--out", str(work / "run"), "--quiet"], check=True
        )
        small = _shards(work / "small", args.rows // 10, 2)
        large = _shards(work / "large", args.rows, 3)
        audit = [*gw, "audit", str(work / "run"), "--checks", "shift", "--quiet", "--against"]
        streamed_small = _peak_mib([*audit, str(small)])
        streamed = _peak_mib([*audit, str(large)])
        whole = _peak_mib([sys.executable, "-c", WHOLE, str(large), str(work / "run")])
        print(f"# {datetime.date.today()}, {os.cpu_count()} CPUs, flags: {cpu_flags()}")
        print(f"streamed audit, {args.rows // 10} rows: peak {streamed_small:.0f} MiB")
        print(f"streamed audit, {args.rows} rows: peak {streamed:.0f} MiB")
        print(f"  ratio large / small: {streamed / streamed_small:.2f}x (claim <= 1.2x)")
        print(f"whole read + sample (peer), {args.rows} rows: peak {whole:.0f} MiB")
        print(f"  ratio streamed audit / whole read: {streamed / whole:.2f}x")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
