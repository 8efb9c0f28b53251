"""Training beside a competing CPU-bound process: torch's default threads against gradwise's.

    python benchmarks/threads_contention.py [--rows 20000] [--epochs 3] [--reps 2] [--sweep]

Trains a small tabular MLP (`NeuralClassifier`, hidden 128-128, on synthetic rows) three
ways, interleaved `--reps` times: quiet with gradwise's choice; beside a busy Python loop
(one subprocess, bounded in time) with torch's default (one thread per core, forced with
GRADWISE_THREADS); and beside the same loop with gradwise's choice. Prints each time and the
ratio contended / quiet (the claim: gradwise's choice stays below 2x its quiet time).

`--sweep` also times plain MLP training steps at several sizes (parameters x batch) with 1
thread and with every core, quiet and contended: where `PARALLEL_WORK` in
gradwise/training/threads.py comes from.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from gradwise.sklearn import NeuralClassifier
from gradwise.training.threads import THREADS_ENV, available_cores, choose_threads, use_threads

BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


@contextlib.contextmanager
def busy_neighbour(max_s: float = 600.0) -> Iterator[None]:
    """A CPU-bound Python loop in a subprocess for the length of the block (at most max_s)."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY.format(s=max_s)])
    time.sleep(0.3)  # let it start spinning
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def threads_env(value: str | None) -> Iterator[None]:
    old = os.environ.pop(THREADS_ENV, None)
    if value is not None:
        os.environ[THREADS_ENV] = value
    try:
        yield
    finally:
        os.environ.pop(THREADS_ENV, None)
        if old is not None:
            os.environ[THREADS_ENV] = old


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_mlp(rows: int, epochs: int) -> tuple[Callable[[], object], NeuralClassifier]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 100)).astype(np.float32)
    y = (x[:, :5].sum(axis=1) > 0).astype(int)
    clf = NeuralClassifier(hidden=(128, 128), epochs=epochs, patience=None, random_state=0)
    return (lambda: clf.fit(x, y)), clf


def contention(rows: int, epochs: int, reps: int) -> None:
    fit, clf = train_mlp(rows, epochs)
    default = str(available_cores())
    times: dict[str, list[float]] = {"quiet": [], "default": [], "gradwise": []}
    fit()  # warm-up: imports, allocator
    for _ in range(reps):  # interleaved, so a change in the machine's load hits all three
        with threads_env(None):
            times["quiet"].append(timed(fit))
        with busy_neighbour(), threads_env(default):
            times["default"].append(timed(fit))
        with busy_neighbour(), threads_env(None):
            times["gradwise"].append(timed(fit))
    quiet = statistics.median(times["quiet"])
    print(f"\n## adult-sized MLP: {rows:,} rows x 100 features, hidden 128-128, {epochs} epochs")
    work = sum(p.numel() for p in clf.run_.model.parameters()) * clf.batch_size
    with threads_env(None):
        print(f"gradwise's choice: {choose_threads(None, work).reason}")
    print("| condition | threads | wall s (each rep) | median s | / quiet |")
    print("|---|---:|---|---:|---:|")
    rows_ = [
        ("quiet", "gradwise", times["quiet"]),
        ("beside a busy process", f"torch default ({default})", times["default"]),
        ("beside a busy process", "gradwise", times["gradwise"]),
    ]
    for name, threads, values in rows_:
        each = ", ".join(f"{v:.1f}" for v in values)
        med = statistics.median(values)
        print(f"| {name} | {threads} | {each} | {med:.1f} | {med / quiet:.1f}x |")


def steps(width: int, batch: int, n_steps: int) -> Callable[[], object]:
    model = nn.Sequential(nn.Linear(100, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
    model.append(nn.Linear(width, 2))
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(batch, 100), torch.randint(0, 2, (batch,))

    def run() -> None:
        for _ in range(n_steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    return run


def sweep(reps: int) -> None:
    cores = available_cores()
    print(f"\n## training steps: 1 thread vs {cores}, quiet and beside a busy process")
    print("| hidden | batch | params x batch | steps | quiet 1 / all s | busy 1 / all s |")
    print("|---:|---:|---:|---:|---|---|")
    sizes = ((128, 64, 400), (256, 128, 150), (384, 256, 60), (512, 256, 60), (1024, 1024, 10))
    for width, batch, n_steps in sizes:
        run = steps(width, batch, n_steps)
        model_params = 100 * width + width * width + 2 * width + 3 * width + 2
        run()
        t: dict[tuple[bool, int], list[float]] = {}
        for _ in range(reps):
            for busy in (False, True):
                for n in (1, cores):
                    ctx = busy_neighbour() if busy else contextlib.nullcontext()
                    with ctx, use_threads(n):
                        t.setdefault((busy, n), []).append(timed(run))
        med = {k: statistics.median(v) for k, v in t.items()}
        print(
            f"| {width} | {batch} | {model_params * batch:.1e} | {n_steps} | "
            f"{med[(False, 1)]:.2f} / {med[(False, cores)]:.2f} | "
            f"{med[(True, 1)]:.2f} / {med[(True, cores)]:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--only-sweep", action="store_true")
    args = parser.parse_args()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# threads under contention, {datetime.date.today()}, {available_cores()} cores,")
    print(f"# torch {torch.__version__}, load average before: {load}")
    if not args.only_sweep:
        contention(args.rows, args.epochs, args.reps)
    if args.sweep or args.only_sweep:
        sweep(args.reps)


if __name__ == "__main__":
    main()
