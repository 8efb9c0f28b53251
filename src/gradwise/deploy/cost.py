"""What a model costs to run: size, FLOPs, memory, latency, throughput, money.

Latency is measured on this machine, on real test inputs, after warm-up. When several
models are measured together, their timings are interleaved round by round, so a
neighbour's load on a shared CPU falls on all of them alike and their ratios stay fair.
Rounds are repeated until the median is stable (its 95% bootstrap interval over the rounds'
medians within +-STABLE of it) or MAX_SECONDS_FACTOR x the measuring time has passed; a
point that did not settle says so (`stable`, `spread`), with the machine's load. One
function, `latency_sweep`, measures for bench, optimize's trade-off table and the report,
with the thread count `gradwise.training.threads.choose_threads` gives the model.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradwise.run import Run

BATCHES = (1, 8, 32, 128)
STABLE = 0.05  # target relative half-width of the p50's 95% interval
MAX_SECONDS_FACTOR = 5.0  # keep repeating rounds for at most this many times `seconds`
PRICE_PER_CORE_HOUR = 0.05  # USD; about the on-demand price of one vCPU of a general VM


@dataclass(frozen=True)
class LatencyPoint:
    """Latency at one batch size: p50 / p95 over the timed calls, and the throughput the
    p50 gives (samples per second); `spread`: the relative half-width of the p50's 95%
    bootstrap interval over the rounds' medians; `stable`: spread <= STABLE."""

    batch: int
    p50_ms: float
    p95_ms: float
    throughput: float
    calls: int
    spread: float = 0.0
    stable: bool = True


@dataclass(frozen=True)
class Cost:
    """One model's running cost (see `bench`)."""

    variant: str
    path: str
    backend: str
    n_params: int | None
    size_mb: float
    flops_per_sample: int | None
    peak_memory_mb: float | None
    threads: int
    latency: list[LatencyPoint]
    best_batch: int
    best_throughput: float
    usd_per_million: float
    usd_per_million_batch1: float
    language_model: dict[str, Any] | None = None


@dataclass(frozen=True)
class BenchReport:
    settings: dict[str, Any]
    machine: dict[str, Any]
    costs: list[Cost] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. that the latencies are noisy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine(threads: int | None = None) -> dict[str, Any]:
    """The CPU the numbers were measured on, and the threads they were measured with."""
    from gradwise.training.loop import cpu_has_native_bf16

    name = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": name,
        "cores": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
        "load_average": load_average(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
    }


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def batch_of(x: Tensor, n: int) -> Tensor:
    """n samples of x (repeated when x has fewer)."""
    return x[torch.arange(n) % len(x)].contiguous()


def time_interleaved(
    calls: Mapping[str, Callable[[], object]], seconds: float, rounds: int = 8, warmup: int = 2
) -> dict[str, list[float]]:
    """Wall seconds of each call, measured in `rounds` rounds that visit every call in
    turn, each for about seconds / rounds (at least once per round), after `warmup` calls.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    slot = seconds / rounds
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                if time.perf_counter() - start >= slot:
                    break
    return times


@dataclass(frozen=True)
class Timing:
    """Every timed call's wall seconds and the median of each round."""

    times: list[float]
    round_medians: list[float]

    @property
    def spread(self) -> float:
        return median_half_width(self.round_medians)


def time_until_stable(
    calls: Mapping[str, Callable[[], object]],
    seconds: float,
    rounds: int = 8,
    warmup: int = 2,
    max_seconds: float | None = None,
) -> dict[str, Timing]:
    """Like `time_interleaved`, then more rounds until every call's median is stable (spread
    <= STABLE) or `max_seconds` (default MAX_SECONDS_FACTOR x seconds) have passed."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    limit = max_seconds if max_seconds is not None else MAX_SECONDS_FACTOR * seconds
    timings = {name: Timing([], []) for name in calls}
    slot = seconds / rounds
    started = time.perf_counter()
    while True:
        for name, fn in calls.items():
            times: list[float] = []
            start = time.perf_counter()
            while not times or time.perf_counter() - start < slot:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            timings[name].times.extend(times)
            timings[name].round_medians.append(float(np.median(times)))
        done = len(next(iter(timings.values())).round_medians)
        if done >= rounds and (
            all(t.spread <= STABLE for t in timings.values())
            or time.perf_counter() - started >= limit
        ):
            return timings


def median_half_width(values: Sequence[float], n_boot: int = 400) -> float:
    """Half the width of the 95% bootstrap interval of the median of `values`, relative to
    the median (0 for fewer than 2 values)."""
    arr = np.asarray(values, dtype=float)
    centre = float(np.median(arr)) if len(arr) else 0.0
    if len(arr) < 2 or centre <= 0:
        return 0.0
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(arr, size=(n_boot, len(arr))), axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float((high - low) / 2 / centre)


def point(batch: int, times: Sequence[float], spread: float = 0.0) -> LatencyPoint:
    arr = np.asarray(times) * 1e3
    p50 = float(np.percentile(arr, 50))
    return LatencyPoint(
        batch,
        p50,
        float(np.percentile(arr, 95)),
        batch / p50 * 1e3,
        len(arr),
        round(spread, 4),
        spread <= STABLE,
    )


def latency_threads(run: Run, batches: Sequence[int], threads: int | None = None) -> int:
    """The thread count latency is measured with: `threads`, else GRADWISE_THREADS, else the
    training rule on the run's parameters x the largest batch."""
    from gradwise.training.threads import choose_threads

    n_params = _n_params(run) or 0
    return choose_threads(threads, n_params * max(batches)).n


def latency_sweep(
    runs: dict[str, Run],
    x: Tensor,
    batches: Sequence[int],
    seconds: float,
    threads: int | None = None,
) -> dict[str, list[LatencyPoint]]:
    """p50/p95 latency of each run's forward pass at each batch size, interleaved and
    repeated until stable, with `latency_threads` threads (the first run decides)."""
    from gradwise.training.threads import use_threads

    n = latency_threads(next(iter(runs.values())), batches, threads)
    out: dict[str, list[LatencyPoint]] = {name: [] for name in runs}
    with torch.no_grad(), use_threads(n):
        for b in batches:
            xb = batch_of(x, b)
            calls = {name: _forward(run, xb) for name, run in runs.items()}
            for name, timing in time_until_stable(calls, seconds).items():
                out[name].append(point(b, timing.times, timing.spread))
    return out


def noise_note(points: Mapping[str, Sequence[LatencyPoint]], seconds: float) -> str | None:
    """A sentence when some latency did not settle: how far apart, and the machine's load."""
    noisy = [(name, p) for name, ps in points.items() for p in ps if not p.stable]
    if not noisy:
        return None
    worst = max(p.spread for _, p in noisy)
    load = (load_average() or [float("nan")])[0]
    cores = os.cpu_count() or 1
    return (
        f"latency is noisy on this machine: {len(noisy)} of "
        f"{sum(len(ps) for ps in points.values())} points did not settle within "
        f"+-{STABLE:.0%} after {MAX_SECONDS_FACTOR * seconds:g} s (worst +-{worst:.0%}; load "
        f"average {load:.1f} on {cores} cores); compare the variants' ratios (measured "
        "interleaved), not absolute times, or measure on a quiet machine"
    )


def _forward(run: Run, xb: Tensor) -> Callable[[], object]:
    model = run.model.eval()
    return lambda: model(xb)


def peak_memory_mb(fn: Callable[[], object], repeats: int = 3) -> float | None:
    """The largest growth of this process's resident memory over its level before, while
    `fn` runs (polled every millisecond from another thread; Linux only)."""
    statm = Path("/proc/self/statm")
    if not statm.is_file():
        return None
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(statm.read_text().split()[1]) * page

    before = rss()
    peak = before
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.001)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        for _ in range(repeats):
            fn()
    finally:
        done.set()
        watcher.join()
    return max(peak - before, 0) / 2**20


def bench(
    runs: dict[str, Run],
    batches: Sequence[int] = BATCHES,
    price_per_core_hour: float = PRICE_PER_CORE_HOUR,
    seconds: float = 1.0,
    threads: int | None = None,
) -> BenchReport:
    """Measure each run's cost on the first run's test inputs.

    Args:
        runs: name -> Run (the base run and its variants).
        batches: batch sizes of the latency sweep.
        price_per_core_hour: USD per CPU core-hour, for the cost per million predictions.
        seconds: measuring time per run and batch size (repeated up to MAX_SECONDS_FACTOR
            times until the p50 is stable).
        threads: CPU threads; None: `latency_threads` (the training rule).
    """
    from gradwise.deploy.levers import flops_per_sample
    from gradwise.deploy.variants import size_on_disk

    first = next(iter(runs.values()))
    x = first.split("test").x
    sweep = latency_sweep(runs, x, batches, seconds, threads)
    threads = latency_threads(first, batches, threads)
    costs = []
    for name, run in runs.items():
        points = sweep[name]
        best = max(points, key=lambda p: p.throughput)
        one = min(points, key=lambda p: p.batch)
        with torch.no_grad():
            memory = peak_memory_mb(_forward(run, batch_of(x, max(batches))))
        costs.append(
            Cost(
                variant=name,
                path=str(run.path),
                backend=run.backend["name"] if run.backend else "torch",
                n_params=_n_params(run),
                size_mb=size_on_disk(run) / 2**20,
                flops_per_sample=flops_per_sample(run),
                peak_memory_mb=memory,
                threads=threads,
                latency=points,
                best_batch=best.batch,
                best_throughput=best.throughput,
                usd_per_million=usd_per_million(best.throughput, threads, price_per_core_hour),
                usd_per_million_batch1=usd_per_million(
                    one.throughput, threads, price_per_core_hour
                ),
                language_model=_language_model_cost(run, seconds) if _is_lm(run) else None,
            )
        )
    settings = {
        "batches": list(batches),
        "seconds_per_point": seconds,
        "price_per_core_hour_usd": price_per_core_hour,
        "inputs": f"test split of {first.path} (repeated to fill a batch)",
        "latency": "p50/p95 wall time of one forward pass after 2 warm-up calls, runs "
        f"interleaved round by round, with {threads} thread(s); rounds repeated until the "
        f"p50's 95% bootstrap interval is within +-{STABLE:.0%} (spread) or "
        f"{MAX_SECONDS_FACTOR:g} x seconds_per_point have passed",
        "throughput": "batch / p50 latency",
        "cost": "price_per_core_hour x threads / (throughput x 3600) x 1e6, at the batch "
        "with the best throughput (and at batch 1)",
        "peak_memory": "largest growth of resident memory during 3 forward passes at the "
        "largest batch, polled every ms",
        "flops": "torch.utils.flop_counter on one sample of the source fp32 model",
    }
    note = noise_note(sweep, seconds)
    return BenchReport(settings, machine(threads), costs, [note] if note else [])


def usd_per_million(throughput: float, threads: int, price_per_core_hour: float) -> float:
    """USD for a million predictions at `throughput` samples/s on `threads` cores."""
    return price_per_core_hour * threads / (throughput * 3600) * 1e6


def _n_params(run: Run) -> int | None:
    if run.backend is None:
        return sum(p.numel() for p in run.model.parameters())
    value = run.metrics.get("n_params")
    return int(value) if value is not None else None


def _is_lm(run: Run) -> bool:
    from gradwise.models.gpt import GPT
    from gradwise.models.rnn import RNN

    return run.schema.task == "lm" and isinstance(run.model, GPT | RNN)


def _language_model_cost(run: Run, seconds: float) -> dict[str, Any]:
    """Forward latency against sequence length, and decode speed with and without the
    key/value cache (GPT) or carried state (RNN)."""
    model = run.model.eval()
    block = run.schema.input_shape[0]
    lengths = sorted({min(block, 2**k) for k in range(4, int(math.log2(block)) + 2)})
    x = run.split("test").x
    prompt = x[:1, : min(16, block // 2)]
    with torch.no_grad():
        calls = {str(t): (lambda t=t: model(x[:1, :t])) for t in lengths}
        times = time_interleaved(calls, seconds)
        by_length = [{"tokens": t, "p50_ms": point(1, times[str(t)]).p50_ms} for t in lengths]
        n_new = max(1, min(64, block - prompt.shape[1]))
        cached = _decode_rate(model, prompt, n_new, cached=True)
        uncached = _decode_rate(model, prompt, n_new, cached=False)
    return {
        "latency_by_length": by_length,
        "decode_tokens": n_new,
        "decode_tokens_per_s_cached": cached,
        "decode_tokens_per_s_uncached": uncached,
        "cache_speedup": cached / uncached,
        "note": "batch 1, greedy; uncached re-reads the whole context for every new token",
    }


def _decode_rate(model: Any, prompt: Tensor, n_new: int, cached: bool) -> float:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        if cached:
            logits, state = model.step(prompt, None)
            for _ in range(n_new):
                token = logits[:, -1].argmax(-1, keepdim=True)
                logits, state = model.step(token, state)
        else:
            ids = prompt
            for _ in range(n_new):
                logits = model(ids)
                token = logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, token], dim=1)[:, -prompt.shape[1] - n_new :]
        best = max(best, n_new / (time.perf_counter() - start))
    return best


def plot_latency_throughput(report: BenchReport, path: Path) -> None:
    """Latency (p50, ms) against throughput per model, one point per batch size."""
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(6.5, 4.2)
    ax = fig.add_subplot()
    for cost in report.costs:
        lat = [p.p50_ms for p in cost.latency]
        thr = [p.throughput for p in cost.latency]
        ax.plot(lat, thr, marker="o", label=cost.variant)
        for p in cost.latency:
            ax.annotate(
                str(p.batch),
                (p.p50_ms, p.throughput),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency per batch, p50 (ms)")
    ax.set_ylabel("throughput (samples/s)")
    ax.set_title("what batching buys (labels: batch size)")
    ax.legend(fontsize=7)
    write_png(path, fig)
