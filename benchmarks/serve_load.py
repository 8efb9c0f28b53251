"""Serving under load: gradwise serve against the HTTP stack's limit, a hand-written endpoint
and LitServe, on the digits MLP and the MNIST CNN.

    python benchmarks/serve_load.py [--seconds 10] [--connections 64] [--threads 1]

For each model, in one run and one after the other, every server is loaded with wrk
(64 keep-alive connections, 2 threads, >= 10 s after a 2 s warm-up) posting one real test
image per request:

  noop       FastAPI endpoint that parses the body and answers a constant (R_http)
  plain      a pydantic body and one forward pass per request (what users write by hand)
  litserve   LitServe with its batching (max_batch_size 32, batch_timeout 2 ms)
  gradwise   `gradwise serve` with its defaults (max-batch 32, max-wait 2 ms, SQLite store)
  no store   the same with --store off (the store's cost)

R_model is the model's offline batched throughput (transform + forward + calibrated
probabilities on batches of 256 rows, one thread), and the ceiling 1 / (1/R_http +
1/R_model) what a server that adds nothing to either could reach. A single unloaded request
(wrk, one connection) is compared with the raw forward pass of one row. Every server gets
the same torch thread count (--threads). Numbers printed are ratios against peers measured
in the same run, so they survive a shared CPU better than the absolute rates.

Abstention's cost (claim: under 1 ms per request): the run's abstention threshold is
certified (`gradwise audit --checks calibration,selective`), then two servers run side by
side, one plain and one with `--abstain` (both --store off), and one client posts one
instance at a time to each in turn (the order alternating), `--abstain-requests` times each,
so both see the same machine at the same moment; the median of the paired latency
differences is the cost. Each server's CPU time over those requests (its process tree) gives
the work abstention adds per request even where a busy machine stretches the latencies; the
load average is reported beside them. In-process, the server's batch function (`Predictor`)
on one instance, alternating with and without abstention, isolates the added work from the
HTTP path and the scheduler. `--abstain-only` measures these alone (no wrk, no peers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

import gradwise
from gradwise.serving.load import LoadResult, run_wrk
from gradwise.serving.runner import free_port

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (the examples' relative paths), or one level further up
# from a worktree
SHARED = next(
    (p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared") if (p / "data").is_dir()),
    ROOT.parent / "shared",
)
MODELS = {
    "digits-mlp": ("examples/digits-mlp.yaml", {}),
    # 2 epochs: throughput does not depend on accuracy, and the CPU is shared
    "mnist-cnn": (
        "examples/defects-mnist-cnn.yaml",
        {"train.epochs": 2, "data.source": f"idx:{SHARED / 'data' / 'mnist' / 't10k'}"},
    ),
}


def get_run(name: str, folder: Path) -> gradwise.Run:
    config, overrides = MODELS[name]
    out = folder / name
    if (out / "model.json").is_file():
        return gradwise.load(out)
    print(f"training {name} ({config}, {overrides or 'as configured'}) ...", flush=True)
    return gradwise.train(ROOT / config, out=out, overwrite=True, **overrides)


def offline(run: gradwise.Run, images: np.ndarray, threads: int) -> tuple[float, float]:
    """(rows/s of transform + forward + probabilities on batches of 256, p50 ms of the raw
    forward pass of one transformed row)."""
    torch.set_num_threads(threads)
    batch = np.repeat(images, max(1, 256 // len(images) + 1), axis=0)[:256]
    with torch.inference_mode():
        run.probabilities(run.logits(run.transform(batch)))
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3.0:
            run.probabilities(run.logits(run.transform(batch)))
            n += len(batch)
        rate = n / (time.perf_counter() - started)
        one = run.transform(images[:1])
        times = []
        for _ in range(300):
            t = time.perf_counter()
            run.model(one)
            times.append(time.perf_counter() - t)
    return rate, 1000 * float(np.median(times))


def start(cmd: list[str], port: int, body: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    # a session of its own: LitServe's inference workers are its children, stopped with it
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        try:
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/predict",
                content=body,
                headers={"content-type": "application/json"},
                timeout=2,
            )
            if r.status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{cmd} did not answer")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (its own children included), then wait;
    SIGKILL what is left after 30 s."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is still there
    proc.wait(30)


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a process and all its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    if pid not in stats:
        return None
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats[p][1]
        todo += [c for c, (parent, _) in stats.items() if parent == p]
    return total


def measure(cmd: list[str], port: int, body: str, args: argparse.Namespace, single: bool = False):
    """(load result, server CPU microseconds per answered request, unloaded result)."""
    proc = start(cmd, port, body)
    url = f"http://127.0.0.1:{port}/v1/predict"
    try:
        run_wrk(url, body, args.connections, 2, threads=2)  # warm-up
        before = tree_cpu_s(proc.pid)
        loaded = run_wrk(url, body, args.connections, args.seconds, threads=2)
        after = tree_cpu_s(proc.pid)
        cpu_us = None
        if before is not None and after is not None and loaded.requests:
            cpu_us = round(1e6 * (after - before) / loaded.requests, 1)
        alone = run_wrk(url, body, 1, 5, threads=1) if single else None
    finally:
        stop(proc)
    return loaded, cpu_us, alone


def abstain_overhead(run: gradwise.Run, body: str, args: argparse.Namespace) -> dict:
    """Client-side latency of one-instance requests, abstention off against on: the two
    servers up at once, requests alternating between them; medians and the median of the
    paired differences, in ms; each server's CPU microseconds per request."""
    from gradwise.run_conformal import selective_guarantee

    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": args.alpha})
    run = gradwise.load(run.path)
    guarantee = selective_guarantee(run)  # raises, saying why, when nothing certified
    gw = [sys.executable, "-m", "gradwise", "serve", str(run.path), "--store", "off"]
    gw += ["--threads", str(args.threads)]
    ports = {"off": free_port(), "on": free_port()}
    procs = {}
    ms: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for label, extra in (("off", []), ("on", ["--abstain"])):
            cmd = [*gw, *extra, "--port", str(ports[label])]
            procs[label] = start(cmd, ports[label], body)
        headers = {"content-type": "application/json"}
        cpu_s: dict[str, float | None] = {}
        with httpx.Client(timeout=10) as http:  # keep-alive: one connection per server
            warmup = 50
            for i in range(warmup + args.abstain_requests):
                if i == warmup:
                    cpu_s = {k: tree_cpu_s(p.pid) for k, p in procs.items()}
                for label in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    url = f"http://127.0.0.1:{ports[label]}/v1/predict"
                    started = time.perf_counter()
                    r = http.post(url, content=body, headers=headers)
                    took = 1000 * (time.perf_counter() - started)
                    assert r.status_code == 200 and ("decision" in r.text) == (label == "on")
                    if i >= warmup:
                        ms[label].append(took)
        cpu_us = {k: _cpu_us(tree_cpu_s(p.pid), cpu_s[k], len(ms[k])) for k, p in procs.items()}
    finally:
        for proc in procs.values():
            stop(proc)
    off, on = np.array(ms["off"]), np.array(ms["on"])
    return {
        "requests_each": len(off),
        "alpha": guarantee["alpha"],
        "coverage_val": round(guarantee["coverage"], 3),
        "p10_off_ms": round(float(np.percentile(off, 10)), 3),  # the least disturbed
        "p10_on_ms": round(float(np.percentile(on, 10)), 3),
        "p50_off_ms": round(float(np.median(off)), 3),
        "p50_on_ms": round(float(np.median(on)), 3),
        "p95_off_ms": round(float(np.percentile(off, 95)), 3),
        "p95_on_ms": round(float(np.percentile(on, 95)), 3),
        "median_paired_diff_ms": round(float(np.median(on - off)), 3),
        "server_cpu_us_per_request": cpu_us,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "predictor": predictor_overhead(run, body, 5 * args.abstain_requests, args.threads),
    }


def predictor_overhead(run: gradwise.Run, body: str, n: int, threads: int) -> dict:
    """Microseconds per call of the server's batch function on one one-instance request,
    without and with abstention, calls alternating: medians and the median paired
    difference."""
    from gradwise.serving.abstention import Abstention
    from gradwise.serving.predictor import Predictor
    from gradwise.serving.schemas import instance_codec

    torch.set_num_threads(threads)  # as the servers run
    codec = instance_codec(run.schema)
    batch = [codec.request.model_validate_json(body).instances]  # type: ignore[attr-defined]
    plain = Predictor(run, codec)
    abstaining = Predictor(run, codec, abstention=Abstention.of(run))
    us: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(100 + n):
        for label, predictor in (("off", plain), ("on", abstaining))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            predictor(batch)
            if i >= 100:
                us[label].append(1e6 * (time.perf_counter() - started))
    off, on = np.array(us["off"]), np.array(us["on"])
    return {
        "calls_each": n,
        "p50_off_us": round(float(np.median(off)), 1),
        "p50_on_us": round(float(np.median(on)), 1),
        "median_paired_diff_us": round(float(np.median(on - off)), 1),
    }


def _cpu_us(after: float | None, before: float | None, n: int) -> float | None:
    """CPU microseconds per request between two readings of `tree_cpu_s`."""
    if after is None or before is None or not n:
        return None
    return round(1e6 * (after - before) / n, 1)


def store_overhead(gw: list[str], body: str, args: argparse.Namespace, tmp: str) -> dict:
    """The store's cost from `repeats` alternating pairs (store on, store off): the median
    of the pairs' throughput and CPU-per-request differences."""
    rps, cpu = [], []
    for i in range(args.store_repeats):
        pair = {}
        for label, store in (("on", str(Path(tmp) / f"o{i}.sqlite")), ("off", "off")):
            port = free_port()
            loaded, cpu_us, _ = measure(
                [*gw, "--store", store, "--port", str(port)], port, body, args
            )
            pair[label] = (loaded.rps, cpu_us)
        rps.append(100 * (pair["off"][0] - pair["on"][0]) / pair["off"][0])
        if pair["on"][1] and pair["off"][1]:
            cpu.append(100 * (pair["on"][1] - pair["off"][1]) / pair["off"][1])
        print(f"    store on/off pair {i}: {pair}", flush=True)
    return {
        "pairs": args.store_repeats,
        "throughput_cost_pct": round(float(np.median(rps)), 1),
        "cpu_per_request_cost_pct": round(float(np.median(cpu)), 1) if cpu else None,
    }


def bench_model(name: str, folder: Path, args: argparse.Namespace) -> dict:
    run = get_run(name, folder)
    test = run.split("test")
    images = np.asarray(test.raw[:64], dtype=np.float32)
    body = json.dumps({"instances": [{"pixels": images[0].tolist()}]})
    if args.abstain_only:
        return {"model": name, "abstain": abstain_overhead(run, body, args)}
    r_model, forward_ms = offline(run, images, args.threads)
    peers = [sys.executable, str(ROOT / "benchmarks" / "serve_peers.py")]
    gw = [sys.executable, "-m", "gradwise", "serve", str(run.path), "--threads", str(args.threads)]
    results: dict[str, LoadResult] = {}
    cpu: dict[str, float | None] = {}
    single = None
    with tempfile.TemporaryDirectory() as tmp:
        for label, cmd in [
            ("noop", [*peers, "noop"]),
            ("plain", [*peers, "plain"]),
            ("litserve", [*peers, "litserve"]),
            ("gradwise", [*gw, "--store", str(Path(tmp) / "p.sqlite")]),
            ("no store", [*gw, "--store", "off"]),
        ]:
            port = free_port()
            extra = ["--port", str(port)]
            if cmd[:2] == peers:
                extra += ["--run", str(run.path), "--threads", str(args.threads)]
            loaded, cpu_us, alone = measure(
                [*cmd, *extra], port, body, args, single=label == "gradwise"
            )
            results[label], cpu[label] = loaded, cpu_us
            single = alone or single
            print(
                f"  {name:>10} {label:>9}: {loaded.rps:7.0f} req/s  p50 {loaded.p50_ms:6.1f} ms  "
                f"p95 {loaded.p95_ms:6.1f} ms  errors {loaded.errors}  server CPU "
                f"{cpu_us} us/request",
                flush=True,
            )
        store = store_overhead(gw, body, args, tmp) if args.store_repeats else None
    abstain = abstain_overhead(run, body, args) if args.abstain_requests else None
    r_http = results["noop"].rps
    ceiling = 1 / (1 / r_http + 1 / r_model)
    g, lit, plain, off = (
        results["gradwise"],
        results["litserve"],
        results["plain"],
        results["no store"],
    )
    assert single is not None
    return {
        "model": name,
        "R_model_rows_per_s": round(r_model),
        "R_http": r_http,
        "ceiling": round(ceiling),
        "forward_one_row_p50_ms": round(forward_ms, 3),
        "single_request_p50_ms": single.p50_ms,
        "servers": {k: {**v.to_dict(), "cpu_us_per_request": cpu[k]} for k, v in results.items()},
        "gradwise_over_ceiling": round(g.rps / ceiling, 3),
        "gradwise_over_litserve": round(g.rps / lit.rps, 3) if lit.rps else None,
        "p95_gradwise_vs_litserve_ms": [g.p95_ms, lit.p95_ms],
        "batching_gain_over_plain": round(g.rps / plain.rps, 3) if plain.rps else None,
        "store_overhead_pct": round(100 * (off.rps - g.rps) / off.rps, 1) if off.rps else None,
        "store_pairs": store,
        "single_minus_forward_ms": round(single.p50_ms - forward_ms, 3),
        "errors": sum(v.errors for v in results.values()),
        "abstain": abstain,
    }


def _store_pct(s: dict) -> float:
    pairs = s.get("store_pairs")
    return pairs["throughput_cost_pct"] if pairs else s["store_overhead_pct"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--store-repeats", type=int, default=3, help="alternating store on/off pairs per model"
    )
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench-serve"))
    parser.add_argument(
        "--abstain-requests",
        type=int,
        default=2000,
        help="one-instance requests to each of the abstention off/on servers (0: skip)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="abstention error bound")
    parser.add_argument(
        "--abstain-only", action="store_true", help="measure abstention's cost alone"
    )
    args = parser.parse_args()
    folder = Path(args.runs)
    summary = []
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        summary.append(bench_model(name, folder, args))
    for s in summary:
        if a := s["abstain"]:
            print(
                f"{s['model']:>10} abstention, {a['requests_each']} one-instance requests each: "
                f"p10 {a['p10_off_ms']:.3f} ms off, {a['p10_on_ms']:.3f} ms on; "
                f"p50 {a['p50_off_ms']:.3f} ms off, {a['p50_on_ms']:.3f} ms on; median paired "
                f"difference {a['median_paired_diff_ms']:+.3f} ms; server CPU per request "
                f"{a['server_cpu_us_per_request']} us; 1-min load average "
                f"{a['load_average_1min']} on {os.cpu_count()} CPUs; in-process batch function "
                f"p50 {a['predictor']['p50_off_us']} us off, {a['predictor']['p50_on_us']} us "
                f"on (median paired difference {a['predictor']['median_paired_diff_us']} us)",
                flush=True,
            )
    if args.abstain_only:
        print(json.dumps(summary, indent=1))
        return
    print()
    print(
        f"{'model':>10} {'R_model':>9} {'R_http':>8} {'ceiling':>8} {'gradwise':>9} "
        f"{'/ceiling':>8} {'/litserve':>9} {'/plain':>7} {'store %':>8} {'1 req - fwd':>11}"
    )
    # store %: the median over alternating on/off pairs when measured, else the single pair
    for s in summary:
        g = s["servers"]["gradwise"]["rps"]
        print(
            f"{s['model']:>10} {s['R_model_rows_per_s']:>9} {s['R_http']:>8.0f} "
            f"{s['ceiling']:>8} {g:>9.0f} {s['gradwise_over_ceiling']:>8.2f} "
            f"{s['gradwise_over_litserve']:>9.2f} {s['batching_gain_over_plain']:>7.2f} "
            f"{_store_pct(s):>8.1f} {s['single_minus_forward_ms']:>9.2f} ms"
        )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
