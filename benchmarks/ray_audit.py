"""What `audit --backend ray` costs or saves on one machine: a learning-curve + data_quality
audit of a small digits run, with its retrains in this process (one after another) against
the same retrains as Ray tasks on a local cluster. Both are timed in the same process,
interleaved (local, ray, local, ray...), and the learning-curve points and the out-of-fold
label flags are checked equal before any time is reported.

    python benchmarks/ray_audit.py [--epochs 10] [--repeats 3] [--cpus 2]

Prints the CPU flags, the local median, the first Ray call (its workers start and import
torch) and the later calls' median as ratios to the local median, and the time to start the
local cluster; `gradwise audit --backend ray` without --address pays the start and the
first call every time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

import gradwise

CHECKS = ["generalisation", "data_quality"]


def _config(epochs: int) -> dict[str, Any]:
    """A digits MLP and an audit with 3 learning-curve retrains and 3 out-of-fold retrains."""
    return {
        "name": "bench",
        "seed": 0,
        "data": {"source": "builtin:digits"},
        "model": {"arch": "mlp", "hidden": [128, 128], "dropout": 0.0},
        "train": {"epochs": epochs, "batch_size": 64, "early_stopping": {"patience": epochs}},
        "audit": {
            "generalisation": {"fractions": [0.25, 0.5, 1.0], "seeds": 2, "scale_epochs": False},
            "data_quality": {"folds": 3, "epochs": epochs},
        },
    }


def _numbers(report: Any) -> tuple[list[float], list[int]]:
    """The learning curve's values and the flagged rows: what must not change with Ray."""
    curve = report["generalisation"].metrics["learning_curve"]["points"]
    return [p["value"] for p in curve], report["data_quality"].metrics["labels"]["rows"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="2 or more")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster
    import ray

    folder = Path(tempfile.mkdtemp(prefix="ray-audit-"))
    run = gradwise.train(_config(args.epochs), out=folder / "run")
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - started
    local_s, ray_s = [], []
    try:
        for _ in range(args.repeats):
            t = time.perf_counter()
            local = gradwise.audit(run, checks=CHECKS, backend="local")
            local_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            on_ray = gradwise.audit(run, checks=CHECKS, backend="ray")
            ray_s.append(time.perf_counter() - t)
            (lv, lrows), (rv, rrows) = _numbers(local), _numbers(on_ray)
            assert lrows == rrows, "the Ray audit flagged other rows than the local audit"
            assert max(abs(a - b) for a, b in zip(lv, rv, strict=True)) <= 1e-6, (lv, rv)
    finally:
        ray.shutdown()
    local_m, warm_m = statistics.median(local_s), statistics.median(ray_s[1:])
    print(f"cpu: {cpu_flags()}; os.cpu_count(): {os.cpu_count()}")
    print(
        f"audit {','.join(CHECKS)}: 3 curve + 3 fold retrains of {args.epochs} epochs; "
        f"repeats: {args.repeats} (numbers equal to 1e-6 on every repeat)"
    )
    print(f"local, one after another (median): {local_m:.2f} s  {[round(s, 2) for s in local_s]}")
    print(f"ray, {args.cpus}-CPU local cluster: {[round(s, 2) for s in ray_s]} s")
    print(f"  first call (starts the workers): {ray_s[0]:.2f} s, {ray_s[0] / local_m:.2f}x local")
    print(f"  later calls (median, warm workers): {warm_m:.2f} s, {warm_m / local_m:.2f}x local")
    print(f"local cluster start (ray.init): {start_s:.1f} s")


if __name__ == "__main__":
    main()
