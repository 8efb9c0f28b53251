"""Overlapping windows: the test error gradwise reports against the error on machines the
model has never seen, with and without grouping.

Run-to-failure series (a degradation signal plus machine-specific offsets and noise) are
cut into overlapping windows and saved as npz, the way sensor sequences are often prepared.
Three ways to split them:

- groups:   the npz carries a `groups` array (the machine): whole machines per split;
- default:  no groups: gradwise detects the overlap and splits in time order with a gap;
- leaky:    data.split.order: random with allow_overlap: true (the old behaviour).

For each, the reported test RMSE and the RMSE and 90% conformal coverage on windows of
newly generated machines (the same process, a fresh seed), over several seeds.

    python benchmarks/leakage_windows.py [--machines 100] [--seeds 3] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import gradwise

WINDOW = 30


def machines(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows (N, WINDOW, 3), remaining useful life (N,) and the machine of each window."""
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for m in range(n):
        life = int(rng.integers(120, 260))
        t = np.arange(life)
        wear = (t / life) ** 2
        offset = rng.normal(0, 1.0, size=3)  # each machine reads a little differently
        signal = np.stack(
            [
                3 * wear + offset[0] + rng.normal(0, 0.3, life),
                2 * wear + 0.5 * np.sin(t / 7) + offset[1] + rng.normal(0, 0.3, life),
                offset[2] + rng.normal(0, 0.5, life),
            ],
            axis=1,
        )
        views = np.lib.stride_tricks.sliding_window_view(signal, WINDOW, axis=0)
        xs.append(views.transpose(0, 2, 1))
        ys.append((life - t)[WINDOW - 1 :].astype(np.float32))
        gs.append(np.full(len(ys[-1]), m))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(gs)


def one(kind: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    x, y, groups = machines(args.machines, seed)
    arrays = {"X": x, "y": y} | ({"groups": groups} if kind == "groups" else {})
    np.savez(folder / f"{kind}.npz", **arrays)
    split: dict[str, object] = {}
    if kind == "leaky":
        split = {"order": "random", "allow_overlap": True}
    config = {
        "name": kind,
        "seed": seed,
        "data": {"source": f"npz:{folder / kind}.npz", "split": split},
        "model": {"arch": "lstm", "hidden": 32},
        "train": {"epochs": args.epochs, "batch_size": 128},
    }
    run = gradwise.train(config, out=folder / f"{kind}-{seed}", overwrite=True)
    report = gradwise.audit(run, checks=["uncertainty", "generalisation"])
    new_x, new_y, _ = machines(args.machines, 10_000 + seed)
    pred, low, high = run.predict_intervals(new_x)
    uncertainty = report["uncertainty"].metrics
    test = run.split("test")
    band = _machine_bootstrap(run.predict(test.raw) - y[test.rows], groups[test.rows], seed)
    return {
        "reported_rmse_band": band,
        "reported_rmse": float(run.metrics["test"]["rmse"]),
        "new_rmse": float(np.sqrt(np.mean((pred - new_y) ** 2))),
        "reported_coverage": float(uncertainty[uncertainty["chosen"]]["coverage"]),
        "new_coverage": float(np.mean((new_y >= low) & (new_y <= high))),
        "generalisation": report["generalisation"].verdict,
        "split": run.split_rule["method"],
    }


def _machine_bootstrap(errors: np.ndarray, machine: np.ndarray, seed: int) -> list[float]:
    """95% interval of the test RMSE when the test machines are resampled (1,000 draws)."""
    rng = np.random.default_rng(seed)
    names = np.unique(machine)
    per = {m: errors[machine == m] for m in names}
    draws = []
    for _ in range(1000):
        picked = rng.choice(names, size=len(names))
        e = np.concatenate([per[m] for m in picked])
        draws.append(float(np.sqrt(np.mean(e**2))))
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--kinds", default="groups,default,leaky")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for kind in args.kinds.split(","):
                r = one(kind, seed, args, Path(tmp))
                results.setdefault(kind, []).append(r)
                print(kind, seed, json.dumps(r))
    print(f"\n{args.machines} machines, windows of {WINDOW} steps, {args.seeds} seeds")
    print(
        "split    | reported RMSE | new-machine RMSE | ratio | coverage reported -> new | "
        "new RMSE inside the reported test RMSE's 95% machine-bootstrap band"
    )
    for kind, rows in results.items():
        rep = np.mean([r["reported_rmse"] for r in rows])
        new = np.mean([r["new_rmse"] for r in rows])
        cov_r = np.mean([r["reported_coverage"] for r in rows])
        cov_n = np.mean([r["new_coverage"] for r in rows])
        inside = sum(
            r["reported_rmse_band"][0] <= r["new_rmse"] <= r["reported_rmse_band"][1] for r in rows
        )
        print(
            f"{kind:8s} | {rep:13.2f} | {new:16.2f} | {new / rep:5.2f} | "
            f"{cov_r:.1%} -> {cov_n:.1%} | {inside} of {len(rows)} seeds"
        )


if __name__ == "__main__":
    main()
