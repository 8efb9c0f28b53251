"""Training from a parquet folder bigger than the memory the process may use.

    python benchmarks/stream_train.py [--gib 3.75] [--limit-mib 1280] [--epochs 2] [--work DIR]

Claims (issue 22):
- `gradwise train` with `data.stream: true` on a parquet folder of --gib GiB (float64 columns
  of random numbers, which do not compress: the folder's bytes are the table's bytes in
  memory) completes with its resident memory held under --limit-mib MiB, a third of the
  table: no cgroup is available here, and RLIMIT_DATA/RLIMIT_AS count address space that
  torch and pyarrow reserve but never touch (1.4 GiB of VmData at import, 0.4 GiB resident),
  so the limit is on what the process really holds: a watchdog reads its RSS every 10 ms and
  kills it above the limit, and the true peak (wait4's ru_maxrss) must be under it too;
- its test metrics are within noise of training the same rows in memory (the same config
  with `data.stream: false` and `data.split.order: hash`, so the same train/val/test rows;
  no limit): the difference is compared with the binomial standard error of the accuracy
  on the test rows;
- a run killed with SIGKILL inside an epoch (after its first checkpoint there) and resumed
  with `--resume` ends with the same weights, byte for byte, as the run never killed.

Peak RSS of each child is read from wait4. The data: --gib GiB of 32 float64 features and a
label from a fixed nonlinear rule with 10% label noise, as shards of 1M rows. Everything
generated lives in --work and is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

N_FEATURES = 32
SHARD_ROWS = 1_000_000
ROW_GROUP = 131_072  # rows per parquet row group (34 MiB here): a reader decodes one at a time
ROW_BYTES = (N_FEATURES + 1) * 8


def make_table(folder: Path, gib: float, seed: int = 0) -> int:
    """Shards of random features and a label from a fixed rule; the rows written."""
    folder.mkdir(parents=True)
    n = int(gib * 2**30 / ROW_BYTES)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=N_FEATURES)
    for i, start in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - start)
        x = rng.normal(size=(rows, N_FEATURES))
        score = x @ w / math.sqrt(N_FEATURES) + 0.5 * x[:, 0] * x[:, 1]
        y = (score > 0).astype(np.int64)
        flip = rng.random(rows) < 0.1
        y[flip] = 1 - y[flip]
        df = pd.DataFrame(x, columns=[f"x{j}" for j in range(N_FEATURES)])
        df["label"] = y.astype(np.float64)  # 8 bytes like the rest; read as 2 classes
        df.to_parquet(folder / f"part-{i:04d}.parquet", compression=None, row_group_size=ROW_GROUP)
    return n


def config(folder: Path, stream: bool, epochs: int) -> dict[str, object]:
    data: dict[str, object] = {"source": f"parquet:{folder}", "target": "label"}
    data |= {"stream": True} if stream else {"split": {"order": "hash"}}
    return {
        "seed": 0,
        "data": data,
        "model": {"arch": "mlp", "hidden": [64], "dropout": 0.0},
        "train": {
            "epochs": epochs,
            "batch_size": 1024,
            "checkpoint_every_s": 20,
            "early_stopping": {"patience": 100},
        },
    }


def train(
    cfg_path: Path,
    out: Path,
    limit_mib: int | None,
    resume: bool = False,
    kill_inside_epoch: bool = False,
) -> tuple[float, int, str]:
    """Run `gradwise train` in a child (under the limit when given); wall s, peak RSS MiB and
    how it ended. With kill_inside_epoch, SIGKILL once a checkpoint inside an epoch exists."""
    cmd = [sys.executable, "-m", "gradwise", "train", str(cfg_path), "--out", str(out)]
    cmd += ["--resume"] if resume else ["--overwrite"]
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    ended = "finished"
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # poll() would reap it first
        if pid:
            break
        if limit_mib is not None and _rss_mib(child.pid) > limit_mib:
            ended = "over the limit"
        elif kill_inside_epoch and _checkpoint_inside_epoch(out):
            ended = "killed"
        if ended != "finished":
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.01)
    assert child.stderr is not None
    err = child.stderr.read().decode()
    peak = usage.ru_maxrss // 1024
    if ended == "over the limit" or (limit_mib is not None and peak > limit_mib):
        raise SystemExit(f"training went over {limit_mib} MiB (peak {peak} MiB)")
    if ended == "finished" and status != 0:
        raise SystemExit(f"training failed ({status}): {err[-2000:]}")
    return time.perf_counter() - t0, peak, ended


def _rss_mib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((ln for ln in status.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) // 1024


def _checkpoint_inside_epoch(out: Path) -> bool:
    from safetensors import safe_open

    path = out / "checkpoints" / "last.safetensors"
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("gradwise", "{}"))
    except Exception:  # not written yet, or being renamed into place
        return False
    return bool(meta.get("within"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=3.75)
    ap.add_argument("--limit-mib", type=int, default=1280)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.work, prefix="stream_train_"))
    try:
        run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace) -> None:
    import yaml

    print(f"{datetime.date.today()}  {cpu_flags()}")
    t0 = time.perf_counter()
    n = make_table(work / "table", args.gib)
    size = sum(f.stat().st_size for f in (work / "table").iterdir()) / 2**30
    print(
        f"table: {n:,} rows, {size:.2f} GiB of parquet in {time.perf_counter() - t0:.0f} s; "
        f"resident memory limit {args.limit_mib} MiB (the table is "
        f"{size * 1024 / args.limit_mib:.1f}x it)"
    )
    paths = {}
    for name, stream in (("stream", True), ("memory", False)):
        paths[name] = work / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config(work / "table", stream, args.epochs)))
    results = {}
    wall, rss, _ = train(paths["stream"], work / "stream", args.limit_mib)
    results["stream"] = _metrics(work / "stream")
    print(f"streamed, limited:  {wall:6.0f} s, peak RSS {rss} MiB, test {results['stream']}")
    wall, rss, ended = train(paths["stream"], work / "cut", args.limit_mib, kill_inside_epoch=True)
    print(
        f"killed (SIGKILL) once a checkpoint inside an epoch was on disk, after {wall:.0f} s: "
        f"{ended}"
    )
    wall, rss, _ = train(paths["stream"], work / "cut", args.limit_mib, resume=True)
    log = (work / "cut" / "train.log").read_text()
    where = next((ln.split("INFO ")[-1] for ln in log.splitlines() if "resumed" in ln), "?")
    same = (work / "cut/model.safetensors").read_bytes() == (
        work / "stream/model.safetensors"
    ).read_bytes()
    print(f"resumed ({where}): {wall:.0f} s, peak RSS {rss} MiB; weights identical: {same}")
    wall, rss, _ = train(paths["memory"], work / "memory", None)
    results["memory"] = _metrics(work / "memory")
    print(f"in memory, no limit: {wall:6.0f} s, peak RSS {rss} MiB, test {results['memory']}")
    acc_s, acc_m = results["stream"]["accuracy"], results["memory"]["accuracy"]
    n_test = json.loads((work / "stream/metrics.json").read_text())["n_test"]
    se = math.sqrt(acc_m * (1 - acc_m) / n_test)
    print(
        f"test accuracy streamed - in memory = {acc_s - acc_m:+.4f} "
        f"({(acc_s - acc_m) / se:+.2f} binomial standard errors of {se:.4f}, n={n_test:,})"
    )


def _metrics(run: Path) -> dict[str, float]:
    m = json.loads((run / "metrics.json").read_text())["test"]
    return {k: round(m[k], 4) for k in ("accuracy", "loss", "roc_auc")}


if __name__ == "__main__":
    main()
