"""Claim: gradwise trains an MLP within 5% of a hand-written PyTorch loop over pre-made tensors,
and faster than a DataLoader loop, PyTorch Lightning and scikit-learn's MLPClassifier.

Every contender trains the same MLP (Linear-ReLU per hidden layer, then a linear head; PyTorch's
default init, no dropout, no norm) with Adam at a constant learning rate, no weight decay, no
gradient clipping, the same batch size and number of epochs, on the same standardised train
split that gradwise makes, and (except scikit-learn) validates once per epoch.

gradwise runs as a user gets it: `gradwise.train(config, out=..., overwrite=True)` with per-epoch
diagnostics, resumable checkpoints (the default train.checkpoint_every_s: every 30 s and after
the last epoch), metrics.jsonl and best-weights tracking left ON. Its fit time
is metrics.json's `wall_s` (the loop incl. validation, checkpoints and logging); the whole call
(data loading, run directory, final train/val/test metrics) is timed separately.

Runs are interleaved (the order rotates each repeat) and each contender's run follows a run of
the plain hand loop: the table gives median and min seconds, the median of those pairwise ratios
and the ratio of the fastest runs. Runs during which other processes were busy are repeated.

    .venv/bin/python benchmarks/train_overhead.py                 # both data sets, ~7 min
    .venv/bin/python benchmarks/train_overhead.py --only digits   # ~1.5 min
    .venv/bin/python benchmarks/train_overhead.py --quick         # smoke run, ~20 s
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import gradwise
from gradwise.config import load_config
from gradwise.data.sources import load_dataset

SEED = 0
EVAL_BATCH_SIZE = 1024  # gradwise's default train.eval_batch_size; used by every contender
BASELINE = "hand loop"


@dataclass(frozen=True)
class Setup:
    """One data set and the training budget every contender gets on it."""

    name: str
    source: str  # gradwise data.source
    hidden: tuple[int, ...]
    batch_size: int
    epochs: int
    lr: float = 1e-3
    n_rows: int = 0  # synthetic table only


@dataclass(frozen=True)
class Arrays:
    """The train/val split gradwise made, flattened to (N, F) for the other contenders."""

    x_train: Tensor  # (N, F) float32, standardised on train
    y_train: Tensor  # (N,) int64
    x_val: Tensor
    y_val: Tensor
    n_classes: int


@dataclass(frozen=True)
class Sample:
    """One timed run: seconds per row of the table it feeds, and the final val accuracy."""

    seconds: dict[str, float]
    val_accuracy: float


Contender = Callable[[Setup, Arrays, Path], Sample]


# ------------------------------------------------------------------ data


def write_table(path: Path, n_rows: int, n_features: int = 64, n_classes: int = 10) -> float:
    """A seeded classification table: a random linear teacher's argmax over noisy logits.

    Returns:
        The teacher's own accuracy on these labels: about the best any model can reach.
    """
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    teacher = rng.standard_normal((n_features, n_classes)).astype(np.float32)
    clean = x @ teacher  # (N, K)
    noisy = clean + 2.0 * rng.standard_normal((n_rows, n_classes), dtype=np.float32)
    y = noisy.argmax(axis=1).astype(np.int64)
    np.savez(path, X=x, y=y)
    return float((clean.argmax(axis=1) == y).mean())


def gradwise_config(setup: Setup, **train: Any) -> dict[str, Any]:
    """The config that matches the hand-written contenders; everything else at its default."""
    return {
        "name": f"bench-{setup.name}",
        "seed": SEED,
        "data": {"source": setup.source},
        "model": {
            "arch": "mlp",
            "hidden": list(setup.hidden),
            "dropout": 0,
            "norm": "none",
            "init": "default",
        },
        "train": {
            "epochs": setup.epochs,
            "batch_size": setup.batch_size,
            "optimizer": {"name": "adam", "lr": setup.lr, "weight_decay": 0},
            "schedule": {"name": "constant"},
            "grad_clip": None,
            "early_stopping": {"patience": None},
            **train,
        },
    }


def load_arrays(setup: Setup) -> Arrays:
    """Exactly the split and standardisation gradwise.train will use (same config, same seed)."""
    cfg = load_config(gradwise_config(setup))
    data = load_dataset(cfg.data, cfg.seed)
    return Arrays(
        x_train=data.train.x.flatten(1).contiguous(),
        y_train=data.train.y,
        x_val=data.val.x.flatten(1).contiguous(),
        y_val=data.val.y,
        n_classes=data.schema.n_outputs,
    )


def make_mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


@torch.no_grad()
def validate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Val loss and accuracy in eval mode, in batches, as any real loop does each epoch."""
    model.eval()
    logits = torch.cat(
        [model(x[i : i + EVAL_BATCH_SIZE]) for i in range(0, len(x), EVAL_BATCH_SIZE)]
    )
    model.train()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


# ------------------------------------------------------------------ contenders


def run_gradwise(setup: Setup, arrays: Arrays, tmp: Path, **train: Any) -> Sample:
    out = tmp / "gradwise-run"
    started = time.perf_counter()
    gradwise.train(gradwise_config(setup, **train), out=out, overwrite=True)
    total_s = time.perf_counter() - started
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n_train"] == len(arrays.x_train), "gradwise trained on another split"
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return Sample({"fit": summary["wall_s"], "call": total_s}, last["val.accuracy"])


def gradwise_default(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    sample = run_gradwise(setup, arrays, tmp)
    seconds = {
        "gradwise fit (wall_s)": sample.seconds["fit"],
        "gradwise whole train() call": sample.seconds["call"],
    }
    return Sample(seconds, sample.val_accuracy)


def gradwise_lean(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    sample = run_gradwise(setup, arrays, tmp, diagnostics=False, checkpoint=False)
    return Sample(
        {"gradwise fit, diagnostics+checkpoint off": sample.seconds["fit"]}, sample.val_accuracy
    )


def hand_loop(setup: Setup, arrays: Arrays, fused: bool) -> float:
    """Pre-made tensors: a permutation per epoch, index slices, forward/backward/step, validate."""
    torch.manual_seed(SEED)
    x, y = arrays.x_train, arrays.y_train
    model = make_mlp(x.shape[1], setup.hidden, arrays.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=setup.lr, fused=fused or None)
    order = torch.Generator().manual_seed(SEED)
    val_accuracy = 0.0
    for _ in range(setup.epochs):
        perm = torch.randperm(len(x), generator=order)
        total = torch.zeros(())
        for start in range(0, len(x), setup.batch_size):
            idx = perm[start : start + setup.batch_size]
            xb, yb = x[idx], y[idx]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(xb)
        _train_loss = (total / len(x)).item()  # logged by a real loop; syncs like gradwise
        _val_loss, val_accuracy = validate(model, arrays.x_val, arrays.y_val)
    return val_accuracy


def hand_loop_plain(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    started = time.perf_counter()
    val_accuracy = hand_loop(setup, arrays, fused=False)
    return Sample({BASELINE: time.perf_counter() - started}, val_accuracy)


def hand_loop_fused(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    started = time.perf_counter()
    val_accuracy = hand_loop(setup, arrays, fused=True)
    return Sample({"hand loop, fused Adam": time.perf_counter() - started}, val_accuracy)


def dataloader_loop(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    """The textbook loop: TensorDataset + DataLoader(shuffle=True), validating each epoch."""
    started = time.perf_counter()
    torch.manual_seed(SEED)
    model = make_mlp(arrays.x_train.shape[1], setup.hidden, arrays.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=setup.lr)
    train = DataLoader(
        TensorDataset(arrays.x_train, arrays.y_train),
        batch_size=setup.batch_size,
        shuffle=True,
        num_workers=0,
    )
    val = DataLoader(TensorDataset(arrays.x_val, arrays.y_val), batch_size=EVAL_BATCH_SIZE)
    val_accuracy = 0.0
    for _ in range(setup.epochs):
        model.train()
        for xb, yb in train:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct, loss_sum = 0, 0.0
        with torch.no_grad():
            for xb, yb in val:
                logits = model(xb)
                loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
                correct += int((logits.argmax(1) == yb).sum())
        val_accuracy = correct / len(arrays.y_val)
    return Sample({"DataLoader loop": time.perf_counter() - started}, val_accuracy)


def lightning_fit(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    """A LightningModule over DataLoaders; Trainer with logging, checkpoints and bars off."""
    import lightning as L

    for name in ("lightning.pytorch", "lightning.fabric"):  # set to INFO when first imported
        logging.getLogger(name).setLevel(logging.WARNING)

    class LitMLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_mlp(arrays.x_train.shape[1], setup.hidden, arrays.n_classes)

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            xb, yb = batch
            return F.cross_entropy(self.model(xb), yb)

        def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
            xb, yb = batch
            logits = self.model(xb)
            self.log("val_loss", F.cross_entropy(logits, yb))
            self.log("val_acc", (logits.argmax(1) == yb).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=setup.lr)

    started = time.perf_counter()
    torch.manual_seed(SEED)
    module = LitMLP()
    train = DataLoader(
        TensorDataset(arrays.x_train, arrays.y_train),
        batch_size=setup.batch_size,
        shuffle=True,
        num_workers=0,
    )
    val = DataLoader(TensorDataset(arrays.x_val, arrays.y_val), batch_size=EVAL_BATCH_SIZE)
    trainer = L.Trainer(
        max_epochs=setup.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp,
    )
    trainer.fit(module, train, val)
    seconds = time.perf_counter() - started
    # val_acc is logged on_epoch: the size-weighted mean over val batches, i.e. the accuracy.
    return Sample({"PyTorch Lightning": seconds}, float(trainer.callback_metrics["val_acc"]))


def sklearn_fit(setup: Setup, arrays: Arrays, tmp: Path) -> Sample:
    """MLPClassifier with Adam for exactly `epochs` passes (no tolerance stop); no per-epoch val."""
    clf = MLPClassifier(
        hidden_layer_sizes=setup.hidden,
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=setup.batch_size,
        learning_rate_init=setup.lr,
        max_iter=setup.epochs,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=setup.epochs + 1,
        early_stopping=False,
        random_state=SEED,
    )
    x, y = arrays.x_train.numpy(), arrays.y_train.numpy()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, as intended
        clf.fit(x, y)
    seconds = time.perf_counter() - started
    assert clf.n_iter_ == setup.epochs, clf.n_iter_
    accuracy = float(clf.score(arrays.x_val.numpy(), arrays.y_val.numpy()))
    return Sample({"scikit-learn MLPClassifier": seconds}, accuracy)


CONTENDERS: dict[str, Contender] = {
    "hand loop": hand_loop_plain,
    "hand loop fused": hand_loop_fused,
    "gradwise": gradwise_default,
    "gradwise lean": gradwise_lean,
    "dataloader": dataloader_loop,
    "lightning": lightning_fit,
    "sklearn": sklearn_fit,
}


# ------------------------------------------------------------------ measuring

QUIET_CORES = 0.1  # other processes may use at most this many cores during a timed run


@dataclass(frozen=True)
class Measured:
    seconds: float
    val_accuracy: float
    other_cores: float  # CPU used by other processes (and steal) during the run, in cores
    ratio: float  # seconds / seconds of the hand-loop run just before it


def _busy_s() -> float:
    """CPU seconds the whole machine has spent busy (incl. steal) since boot."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, fh.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    t = os.times()
    return t.user + t.system


def wait_for_quiet(max_wait_s: float = 300.0) -> float:
    """Block until other processes use under QUIET_CORES for one second; returns seconds waited.

    Two threads on two cores stall whenever anything else runs (a parallel region waits for
    its slowest thread), so one busy neighbour can double a timing.
    """
    started = time.perf_counter()
    while True:
        busy, own, t0 = _busy_s(), _own_s(), time.perf_counter()
        time.sleep(1.0)
        other = (_busy_s() - busy - (_own_s() - own)) / (time.perf_counter() - t0)
        waited = time.perf_counter() - started
        if other < QUIET_CORES or waited > max_wait_s:
            return waited


def run_quietly(
    contender: Contender, setup: Setup, arrays: Arrays, tmp: Path, attempts: int
) -> tuple[Sample, float]:
    """Run once on a quiet machine; if something else ran meanwhile, retry (keep the quietest)."""
    best: tuple[Sample, float] | None = None
    for _ in range(attempts):
        waited = wait_for_quiet()
        if waited > 2:
            print(f"  (waited {waited:.0f} s for other processes to finish)", flush=True)
        busy, own, t0 = _busy_s(), _own_s(), time.perf_counter()
        threads = torch.get_num_threads()
        sample = contender(setup, arrays, tmp)
        assert torch.get_num_threads() == threads, f"{contender.__name__} changed torch's threads"
        elapsed = time.perf_counter() - t0
        other = max(0.0, (_busy_s() - busy - (_own_s() - own)) / elapsed)
        if best is None or other < best[1]:
            best = (sample, other)
        if other * elapsed <= max(QUIET_CORES * elapsed, 0.02):  # /proc/stat counts 10 ms ticks
            break
        print(f"  (other processes used {other:.2f} cores meanwhile; running again)", flush=True)
    assert best is not None
    return best


def measure(setup: Setup, repeats: int, attempts: int, tmp: Path) -> dict[str, list[Measured]]:
    """Every table row `repeats` times, interleaved, the contender order rotating each repeat.

    Each contender's run comes right after a run of the hand loop, and its ratio is taken to
    that run: the speed of this (virtual) machine drifts by tens of percent over minutes with
    load on its host that nothing inside it can see, and a ratio of neighbours cancels most of it.
    """
    arrays = load_arrays(setup)
    print(
        f"\n## {setup.name}: {len(arrays.x_train)} train / {len(arrays.x_val)} val, "
        f"{arrays.x_train.shape[1]} features, {arrays.n_classes} classes; "
        f"MLP {list(setup.hidden)}, batch {setup.batch_size}, {setup.epochs} epochs, "
        f"Adam lr {setup.lr:g}",
        flush=True,
    )
    names = [name for name in CONTENDERS if CONTENDERS[name] is not hand_loop_plain]
    rows: dict[str, list[Measured]] = {}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            base, base_other = run_quietly(hand_loop_plain, setup, arrays, tmp, attempts)
            base_s = base.seconds[BASELINE]
            rows.setdefault(BASELINE, []).append(
                Measured(base_s, base.val_accuracy, base_other, 1.0)
            )
            sample, other = run_quietly(CONTENDERS[name], setup, arrays, tmp, attempts)
            for row, seconds in sample.seconds.items():
                measured = Measured(seconds, sample.val_accuracy, other, seconds / base_s)
                rows.setdefault(row, []).append(measured)
                print(
                    f"  repeat {rep + 1}: {row:<42} {seconds:8.3f} s  hand loop {base_s:7.3f} s  "
                    f"ratio {measured.ratio:.3f}  (others used {max(other, base_other):.2f} cores)",
                    flush=True,
                )
    return rows


def table(rows: dict[str, list[Measured]]) -> str:
    """Markdown: median and min seconds, both ratios to the hand loop, every run, val accuracy."""

    def median_ratio(samples: list[Measured]) -> float:
        return statistics.median(m.ratio for m in samples)

    base_min = min(m.seconds for m in rows[BASELINE])
    lines = [
        "| contender | median s | min s | ratio to hand loop (median of pairs) | ratio of mins "
        "| runs (s) | val accuracy | others' load (cores, max) |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row, samples in sorted(rows.items(), key=lambda kv: median_ratio(kv[1])):
        seconds = [m.seconds for m in samples]
        runs = ", ".join(f"{s:.3f}" for s in seconds) if row != BASELINE else "(one per pair)"
        accuracy = statistics.median(m.val_accuracy for m in samples)
        other = max(m.other_cores for m in samples)
        lines.append(
            f"| {row} | {statistics.median(seconds):.3f} | {min(seconds):.3f} "
            f"| {median_ratio(samples):.3f} | {min(seconds) / base_min:.3f} | {runs} "
            f"| {accuracy:.4f} | {other:.2f} |"
        )
    return "\n".join(lines)


def gradwise_revision() -> str:
    """The commit gradwise was measured at, and whether src/ held uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return commit + (" + uncommitted changes in src/" if dirty else "")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import lightning

        lightning_version = lightning.__version__
    except ImportError:
        lightning_version = "not installed"
    return (
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; {cpu}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"lightning {lightning_version}, scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}"
    )


def warm_up(tmp: Path) -> None:
    """One untimed epoch of every contender, so lazy imports and kernel set-up are not timed."""
    setup = Setup("warm-up", "builtin:digits", (256, 256), 64, epochs=1)
    arrays = load_arrays(setup)
    for contender in CONTENDERS.values():
        contender(setup, arrays, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few epochs and rows: a smoke run")
    parser.add_argument("--only", choices=["digits", "table"], help="one data set")
    parser.add_argument("--repeats", type=int, help="runs per contender (default 3, quick 1)")
    parser.add_argument(
        "--attempts", type=int, default=4, help="tries per run to get one without other load"
    )
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # lightning 2.6 on torch 2.13

    print(f"# train_overhead  ({machine()})", flush=True)
    print(f"gradwise {gradwise.__version__} at {gradwise_revision()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gradwise-bench-") as name:
        tmp = Path(name)
        table_rows = 20_000 if args.quick else 200_000
        setups = [
            Setup("digits", "builtin:digits", (256, 256), 64, epochs=3 if args.quick else 30),
            Setup(
                "table",
                f"npz:{tmp / 'table.npz'}",
                (256, 256),
                256,
                epochs=1 if args.quick else 3,
                n_rows=table_rows,
            ),
        ]
        setups = [s for s in setups if args.only in (None, s.name)]
        warm_up(tmp)
        results = []
        for setup in setups:
            if setup.n_rows:
                ceiling = write_table(tmp / "table.npz", setup.n_rows)
                print(f"\n(table labels: the noise-free teacher scores {ceiling:.4f})", flush=True)
            rows = measure(setup, repeats, args.attempts, tmp)
            results.append((setup, rows))
    for setup, rows in results:
        print(f"\n### {setup.name} (median of {repeats})\n\n{table(rows)}")


if __name__ == "__main__":
    main()
