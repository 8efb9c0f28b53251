"""Where gradwise's training loop spends its time, per epoch and per step, on the MLP benchmark.

Companion to train_overhead.py: it explains the gap between `gradwise fit (wall_s)` and the
hand-written loop there.

1. Per-epoch sections: the functions `gradwise.training.loop.fit` calls are wrapped with timers
   (nothing under src/ is edited; the wrappers are swapped into the module for the run), and
   whatever is left of `wall_s` is the inline work (metrics.jsonl append, log line, bookkeeping).
2. Per step: a ladder of loops over the same batches, from the bare minimum up to gradwise's own
   `_train_epoch`, adding one thing gradwise does at a time.
3. One checkpoint, piece by piece: gathering state, serialising, the atomic rename.
4. What if: gradwise with its saving and diagnostics switches turned, each run paired with a
   fused-Adam hand loop.
5. Optionally (--cprofile) the top functions of one whole `gradwise.train` call.

    .venv/bin/python benchmarks/profile_train_loop.py                 # digits, ~3 min
    .venv/bin/python benchmarks/profile_train_loop.py --only table
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import statistics
import tempfile
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

# train_overhead.py is a script, not a package: import its setups by path.
from train_overhead import (
    Setup,
    gradwise_config,
    hand_loop,
    load_arrays,
    wait_for_quiet,
    write_table,
)

import gradwise
import gradwise.pipeline
from gradwise.config import load_config
from gradwise.data.batcher import Batcher
from gradwise.pipeline import prepare
from gradwise.training import checkpoint, loop
from gradwise.training import epoch as epoch_module
from gradwise.training.checkpoint import pack_optimizer, save_tensors, save_weights
from gradwise.training.epoch import train_epoch
from gradwise.training.losses import make_loss
from gradwise.training.objectives import Supervised
from gradwise.training.optim import Schedule, make_optimizer
from gradwise.training.position import Position, loss_sum

# What fit calls once per epoch, as (label, owner, attribute). The loop module is edited often:
# a name that is gone is reported as skipped rather than guessed at.
SECTIONS: tuple[tuple[str, Any, str], ...] = (
    ("train_epoch (all steps)", loop, "train_epoch"),
    ("check_divergence", loop, "check_divergence"),
    ("validation: objective.metrics(val)", Supervised, "metrics"),
    ("layer_grad_norms (diagnostics)", epoch_module, "layer_grad_norms"),
    ("dead_relu_fraction (diagnostics)", loop, "dead_relu_fraction"),
    ("expert_shares", loop, "expert_shares"),
    ("_copy_state (best weights in memory)", loop, "_copy_state"),
    ("save_tensors (model.safetensors, checkpoint)", loop, "save_tensors"),
    ("_epoch_line", loop, "_epoch_line"),
)


# ------------------------------------------------------------------ 1. per-epoch sections


@contextlib.contextmanager
def timed_sections(spent: dict[str, list[float]]) -> Iterator[list[str]]:
    """Swap timers in for the sections (counting only calls made inside `fit`); restore after.

    Yields:
        The labels of sections that no longer exist in the loop, hence not timed.
    """
    present = [(label, owner, attr) for label, owner, attr in SECTIONS if hasattr(owner, attr)]
    missing = [label for label, owner, attr in SECTIONS if not hasattr(owner, attr)]
    originals = [(owner, attr, getattr(owner, attr)) for _, owner, attr in present]
    inside_fit = [False]

    def wrap(label: str | None, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if label is None:  # fit itself: marks the calls that count
                inside_fit[0] = True
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if label is None:
                    inside_fit[0] = False
                elif inside_fit[0]:
                    spent[label].append(time.perf_counter() - t0)

        return timed

    for (label, owner, attr), (_, _, fn) in zip(present, originals):
        setattr(owner, attr, wrap(label, fn))
    pipeline_fit = gradwise.pipeline.fit  # type: ignore[attr-defined]
    gradwise.pipeline.fit = wrap(None, pipeline_fit)  # type: ignore[attr-defined]
    try:
        yield missing
    finally:
        gradwise.pipeline.fit = pipeline_fit  # type: ignore[attr-defined]
        for owner, attr, fn in originals:
            setattr(owner, attr, fn)


def epoch_sections(setup: Setup, tmp: Path, runs: int) -> None:
    """Median over `runs` of each section's seconds per epoch (and per call), with defaults on."""
    per_run: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, int] = {}
    for _ in range(runs):
        spent: dict[str, list[float]] = defaultdict(list)
        wait_for_quiet()
        with timed_sections(spent) as missing:
            gradwise.train(gradwise_config(setup), out=tmp / "run", overwrite=True)
        summary = json.loads((tmp / "run" / "metrics.json").read_text())
        epochs = summary["epochs"]
        per_run["wall_s"].append(summary["wall_s"] / epochs)
        listed = 0.0
        for label, _, _ in SECTIONS:
            if label in missing:
                continue
            per_run[label].append(sum(spent[label]) / epochs)
            calls[label] = len(spent[label])
            listed += sum(spent[label])
        per_run["rest (metrics.jsonl, log line, bookkeeping)"].append(
            (summary["wall_s"] - listed) / epochs
        )
    if missing:
        print(f"\n(not in this version of the loop, so not timed: {', '.join(missing)})")
    wall = statistics.median(per_run["wall_s"])
    print(f"\n### {setup.name}: per-epoch sections of fit (median of {runs} runs)\n")
    print("| section | ms per epoch | share of wall_s | calls per run |")
    print("|---|---:|---:|---:|")
    for name, values in per_run.items():
        ms = statistics.median(values) * 1e3
        print(f"| {name} | {ms:.2f} | {ms / 1e3 / wall:.1%} | {calls.get(name, '')} |")


# ------------------------------------------------------------------ 2. per step


def step_ladder(setup: Setup, epochs: int, runs: int) -> None:
    """Microseconds per training step as gradwise's per-step extras are added one at a time."""
    cfg = load_config(gradwise_config(setup))
    torch.manual_seed(cfg.seed)
    data, _, model, _ = prepare(cfg)
    x, y = data.train.x, data.train.y
    bs = setup.batch_size
    tc = cfg.train
    n_steps = -(-len(x) // bs)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        perm = torch.randperm(len(x))
        xs, ys = x[perm], y[perm]
        for start in range(0, len(xs), bs):
            yield xs[start : start + bs], ys[start : start + bs]

    def index_batches() -> Iterator[tuple[Tensor, Tensor]]:  # the hand loop's way
        perm = torch.randperm(len(x))
        for start in range(0, len(x), bs):
            idx = perm[start : start + bs]
            yield x[idx], y[idx]

    def one_group(fused: bool) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)

    def plain(opt: torch.optim.Optimizer, source: Callable[[], Iterator[Any]]) -> Callable[[], Any]:
        def epoch() -> None:
            for xb, yb in source():
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        return epoch

    def with_losses(opt: torch.optim.Optimizer, sched: Schedule | None) -> Any:
        def epoch() -> None:
            losses, sizes = [], []
            for xb, yb in batches():
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                losses.append(loss.detach())
                sizes.append(len(xb))
                if sched is not None:
                    sched.apply(opt)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if sched is not None:
                    sched.step += 1
            loss_sum(losses, sizes)

        return epoch

    # fused; one param group when weight_decay is 0 (as here), else decay / no decay
    grouped = make_optimizer(model, tc.optimizer)
    sched = Schedule(tc.schedule, tc.optimizer.lr, n_steps, n_steps * tc.epochs)
    batcher = Batcher(data.train, bs, shuffle=True, order=torch.Generator().manual_seed(0))
    criterion = make_loss(tc.loss, "cross_entropy", y, data.schema.n_outputs)
    # Everything _train_epoch may ask for, bound by parameter name: its signature changes often.
    available = {
        "forward": model,
        "model": model,
        "batches": batcher,
        "opt": grouped,
        "sched": sched,
        "objective": Supervised(criterion, data.schema),
        "loss_fn": criterion,
        "gen": torch.Generator().manual_seed(1),
        "amp": contextlib.nullcontext,
        "penalty": None,
        "ddp": None,
        "progress": None,
    }

    def gradwise_epoch(diagnostics: bool) -> Callable[[], None]:
        tc_now = tc.model_copy(update={"diagnostics": diagnostics})
        state = types.SimpleNamespace(  # the fields of epoch.Loop that train_epoch reads
            **{k: available[k] for k in ("forward", "model", "batches", "opt", "sched", "amp")},
            noise=available["gen"],
            penalty=None,
            ddp=None,
            bf16=None,
        )
        objective = available["objective"]
        return lambda: train_epoch(state, objective, tc_now, None, Position(1))  # type: ignore[arg-type]

    ladder: list[tuple[str, Callable[[], None]]] = [
        ("hand loop: Adam (for-loop), index per batch", plain(one_group(False), index_batches)),
        ("hand loop: fused Adam, index per batch", plain(one_group(True), index_batches)),
        ("fused Adam, one gather per epoch + slices", plain(one_group(True), batches)),
        ("  + make_optimizer's param groups", plain(grouped, batches)),
        ("  + per-batch losses kept for the epoch's mean", with_losses(grouped, None)),
        ("  + sched.apply per step", with_losses(grouped, sched)),
        ("gradwise train_epoch, diagnostics off", gradwise_epoch(False)),
        ("gradwise train_epoch (as run)", gradwise_epoch(True)),
    ]
    for _, epoch in ladder:  # warm up every variant once
        epoch()
    timings: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):  # interleaved: each run times every rung once
        for name, epoch in ladder:
            wait_for_quiet()
            t0 = time.perf_counter()
            for _ in range(epochs):
                epoch()
            timings[name].append((time.perf_counter() - t0) / (epochs * n_steps))
    reference = timings[ladder[1][0]]  # the fused hand loop of the same run
    print(
        f"\n### {setup.name}: microseconds per training step ({n_steps} steps per epoch, "
        f"batch {bs}; {runs} interleaved runs of {epochs} epochs)\n"
    )
    print("| loop | min µs/step | median µs/step | vs fused hand loop (median of runs) |")
    print("|---|---:|---:|---:|")
    for name, values in timings.items():
        ratio = statistics.median(v / r for v, r in zip(values, reference))
        print(
            f"| {name} | {min(values) * 1e6:.0f} | {statistics.median(values) * 1e6:.0f} "
            f"| {ratio:.3f} |"
        )


def checkpoint_anatomy(setup: Setup, tmp: Path, runs: int) -> None:
    """What one `_save_checkpoint` and one `save_weights` cost, piece by piece."""
    cfg = load_config(gradwise_config(setup))
    torch.manual_seed(cfg.seed)
    data, _, model, _ = prepare(cfg)
    opt = make_optimizer(model, cfg.train.optimizer)
    F.cross_entropy(model(data.train.x[:64]), data.train.y[:64]).backward()
    opt.step()  # creates the Adam state a real checkpoint carries
    order, noise = torch.Generator(), torch.Generator()
    history = [{"epoch": float(e), "val.loss": 0.1, "val.accuracy": 0.9} for e in range(1, 31)]
    target = tmp / "anatomy" / "last.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)

    def gather() -> dict[str, Tensor]:
        opt_tensors, _ = pack_optimizer(opt)
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update(opt_tensors)
        tensors.update(checkpoint._rng_tensors(order, noise))
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    plain = gather()
    meta = {"gradwise": json.dumps({"history": history})}
    n_bytes = sum(v.numel() * v.element_size() for v in plain.values())
    scratch = target.with_name("scratch.safetensors")
    fresh = [target.with_name(f"fresh{i}.safetensors") for i in range(runs)]

    def write_and_replace() -> None:
        save_file(plain, scratch, meta)
        os.replace(scratch, target)

    steps: dict[str, Callable[[int], Any]] = {
        "gather state (state_dict, pack_optimizer, RNG)": lambda i: gather(),
        "json.dumps(history of 30 epochs)": lambda i: json.dumps({"history": history}),
        "safetensors save_file to a new file": lambda i: save_file(plain, fresh[i], meta),
        "os.replace onto the existing checkpoint": lambda i: write_and_replace(),
        "whole save_tensors (temp file + rename)": lambda i: save_tensors(target, plain),
        "save_weights(model.safetensors)": lambda i: save_weights(target.with_name("m"), model),
    }
    save_tensors(target, plain)
    spent: dict[str, list[float]] = defaultdict(list)
    for i in range(runs):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(i)
            spent[name].append(time.perf_counter() - t0)
    print(
        f"\n### {setup.name}: one checkpoint, piece by piece ({n_bytes / 1e6:.2f} MB of tensors; "
        f"median of {runs})\n"
    )
    print("| piece | ms |")
    print("|---|---:|")
    for name, values in spent.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} |")
    print("\n(the os.replace row includes writing the scratch file first)")


# ------------------------------------------------------------------ 4. what if


def what_if(setup: Setup, runs: int, tmp: Path) -> None:
    """gradwise with its saving and diagnostics switches turned, each run paired with a fused
    hand loop. `checkpoint_every_s: 0` saves weights and checkpoint after every epoch."""
    arrays = load_arrays(setup)
    variants: dict[str, dict[str, Any]] = {
        "as shipped (a save every 30 s and after the last epoch)": {},
        "checkpoint_every_s: 0": {"checkpoint_every_s": 0},
        "checkpoint: false": {"checkpoint": False},
        "  + diagnostics: false": {"checkpoint": False, "diagnostics": False},
    }
    walls: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        for name, train in variants.items():
            wait_for_quiet()
            t0 = time.perf_counter()
            hand_loop(setup, arrays, fused=True)
            hand_s = time.perf_counter() - t0
            gradwise.train(gradwise_config(setup, **train), out=tmp / "run", overwrite=True)
            wall = json.loads((tmp / "run" / "metrics.json").read_text())["wall_s"]
            walls[name].append(wall)
            ratios[name].append(wall / hand_s)
    print(
        f"\n### {setup.name}: what the switches cost (wall_s; {runs} runs, each "
        "paired with a fused-Adam hand loop run)\n"
    )
    print("| gradwise variant | median wall_s | ratio to fused hand loop (median of pairs) |")
    print("|---|---:|---:|")
    for name in variants:
        print(
            f"| {name} | {statistics.median(walls[name]):.3f} "
            f"| {statistics.median(ratios[name]):.3f} |"
        )


# ------------------------------------------------------------------ 3. cProfile


def profile_call(setup: Setup, tmp: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    gradwise.train(gradwise_config(setup), out=tmp / "run", overwrite=True)
    profiler.disable()
    print(f"\n### {setup.name}: cProfile of one gradwise.train call (top {top} by own time)\n")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["digits", "table"], default="digits")
    parser.add_argument("--runs", type=int, default=5, help="repeats of each measurement")
    parser.add_argument("--cprofile", action="store_true", help="also cProfile one train call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gradwise-profile-") as name:
        tmp = Path(name)
        if args.only == "digits":
            setup = Setup("digits", "builtin:digits", (256, 256), 64, epochs=30)
            ladder_epochs = 10
        else:
            write_table(tmp / "table.npz", 200_000)
            setup = Setup("table", f"npz:{tmp / 'table.npz'}", (256, 256), 256, epochs=3)
            ladder_epochs = 1
        gradwise.train(gradwise_config(setup), out=tmp / "run", overwrite=True)  # warm up
        epoch_sections(setup, tmp, args.runs)
        step_ladder(setup, ladder_epochs, args.runs)
        checkpoint_anatomy(setup, tmp, 15)
        what_if(setup, args.runs, tmp)
        if args.cprofile:
            profile_call(setup, tmp, 30)


if __name__ == "__main__":
    main()
