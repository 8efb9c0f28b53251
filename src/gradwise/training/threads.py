"""How many CPU threads torch uses: chosen by what pays, set in one place, stated in the run.

torch starts with one thread per core. For the small models gradwise trains most often (a
tabular MLP, a small LSTM) the work in one matrix product is too small to split: the threads
spend their time waiting at OpenMP barriers, and when another job holds one of the cores the
waits become scheduler time slices. On 2 shared cores, 5 epochs of an adult MLP took 147.8 s
with torch's default 2 threads against 1.8 s with one thread (same metrics). Large matrix
products (transformers, CNNs with many parameters, big batches) do gain from every core.

The rule (`choose_threads`): the work of one training step is about parameters x batch size
multiply-adds; below `PARALLEL_WORK` one thread; above it every core this process may use
(`os.sched_getaffinity`, capped by OMP_NUM_THREADS when that is set) that other work is not
running on right now (the runnable tasks in /proc/loadavg, sampled a few times).
`benchmarks/threads_contention.py` measured both halves (benchmarks/RESULTS.md, 2026-12-07):
quiet, a second thread paid from about 1e8 (1.5x at 8e7); beside a busy process, a second
thread on 2 cores lost 2-12x at every size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from gradwise.errors import ConfigError

THREADS_ENV = "GRADWISE_THREADS"
# parameters x batch size from which a step's matrix products gain from several threads
# (benchmarks/threads_contention.py, 2 cores, quiet: 1 thread 1.7x faster at 1.9e6, 2 threads
# 1.5x faster at 8.1e7 and 1.2x at 1.2e9)
PARALLEL_WORK = 50_000_000


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why: `reason` is the sentence the run states."""

    n: int
    reason: str


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), capped by OMP_NUM_THREADS if set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) >= 1:
        cores = min(cores, int(omp))
    return max(1, cores)


def choose_threads(setting: int | None = None, work: int | None = None) -> ThreadChoice:
    """The thread count for a job: the user's setting, else GRADWISE_THREADS, else the rule.

    Args:
        setting: `train.threads` or `--threads`; None: automatic.
        work: parameters x batch size of the job (about the multiply-adds of one step);
            None when unknown (then one thread: the models gradwise trains are mostly
            small, and one thread never loses more than the core count).

    Returns:
        The count (>= 1) and the reason, e.g. "1 (auto: parameters x batch = 3.1e+06 is
        below 5e+07, where a second thread starts to pay)".

    Raises:
        ConfigError: GRADWISE_THREADS is not a positive integer.
    """
    if setting is not None:
        return ThreadChoice(setting, f"{setting} (set by train.threads / --threads)")
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(
                f"{THREADS_ENV}={env!r} must be a positive integer (threads); unset it for "
                "the automatic choice."
            )
        return ThreadChoice(int(env), f"{int(env)} (set by {THREADS_ENV})")
    if work is None:
        return ThreadChoice(1, "1 (auto: the model's size is not known here)")
    if work < PARALLEL_WORK:
        return ThreadChoice(
            1,
            f"1 (auto: parameters x batch = {work:.1e} is below {PARALLEL_WORK:.0e}, "
            "where a second thread starts to pay)",
        )
    cores = available_cores()
    busy = min(cores - 1, busy_cores())
    if busy:
        return ThreadChoice(
            cores - busy,
            f"{cores - busy} (auto: parameters x batch = {work:.1e} gains from several "
            f"threads, and {busy} of {cores} cores run other work)",
        )
    return ThreadChoice(
        cores, f"{cores} (auto: parameters x batch = {work:.1e} gains from every core)"
    )


def busy_cores(samples: int = 3, pause_s: float = 0.005) -> int:
    """Cores other work runs on now: the fewest runnable tasks /proc/loadavg showed over a
    few samples, less this one (0 where there is no /proc/loadavg)."""
    import time

    counts = []
    for i in range(samples):
        try:
            fields = Path("/proc/loadavg").read_text().split()
        except OSError:
            return 0
        counts.append(int(fields[3].split("/")[0]))
        if i + 1 < samples:
            time.sleep(pause_s)
    return max(0, min(counts) - 1)


@contextlib.contextmanager
def use_threads(n: int) -> Iterator[None]:
    """torch uses `n` intra-op threads inside the block; the previous count comes back after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
