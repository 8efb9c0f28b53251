"""What the Ray path costs on one machine: `predict --backend ray` against the local
streaming path (`predict_file`) on the same table and run, and the time to start a local Ray
cluster. Both paths are timed in the same process, interleaved (local, ray, local, ray...),
and the outputs are checked equal before any time is reported.

    python benchmarks/ray_overhead.py [--rows 200000] [--repeats 3]

Prints the CPU flags, the rows per second of each path, and the ratio ray / local.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

import gradwise
from gradwise.backends.ray_predict import predict_ray
from gradwise.run_predict import predict_file


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"x{i}" for i in range(8)])
    frame["color"] = rng.choice(["red", "green", "blue"], n)
    frame["label"] = np.where(frame["x0"] + (frame["color"] == "red") > 0.5, "yes", "no")
    return frame


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster
    import ray

    folder = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    _table(2000, 0).to_csv(folder / "train.csv", index=False)
    cfg = {
        "name": "bench",
        "seed": 0,
        "data": {"source": f"csv:{folder / 'train.csv'}", "target": "label"},
        "model": {"arch": "mlp", "hidden": [64, 64]},
        "train": {"epochs": 2},
    }
    run = gradwise.train(cfg, out=folder / "run")
    _table(args.rows, 1).drop(columns="label").to_parquet(folder / "new.parquet", index=False)
    source = str(folder / "new.parquet")

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - started
    local_s, ray_s = [], []
    try:
        for _ in range(args.repeats):
            t = time.perf_counter()
            predict_file(run, source, folder / "local.csv")
            local_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            predict_ray(run, source, folder / "ray.csv")
            ray_s.append(time.perf_counter() - t)
            same = (folder / "local.csv").read_bytes() == (folder / "ray.csv").read_bytes()
            assert same, "the Ray path wrote other rows than the local path"
    finally:
        ray.shutdown()
    local, on_ray = statistics.median(local_s), statistics.median(ray_s)
    print(f"cpu: {cpu_flags()}")
    print(f"rows: {args.rows:,}; repeats: {args.repeats} (medians; outputs identical)")
    print(f"local streaming predict: {local:.2f} s ({args.rows / local:,.0f} rows/s)")
    print(f"ray predict (2 CPUs):    {on_ray:.2f} s ({args.rows / on_ray:,.0f} rows/s)")
    print(f"ratio ray / local: {on_ray / local:.2f}x; local cluster start: {start_s:.1f} s")


if __name__ == "__main__":
    main()
