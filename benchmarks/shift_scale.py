"""Claim: the shift detectors run on two 100k x 100 tables in under 10 s on 2 cores with
bounded memory; a user's usual peer (alibi-detect) is compared on the same data.

The data: a reference and a current table of `--rows` rows and `--cols` columns (the last
tenth categorical, codes 0..4), seeded; in the current table a tenth of the numeric columns
moves by 0.1 standard deviations and one categorical column changes its frequencies.

Every contender runs in its own child process (which makes the same data from the same seed),
so each peak RSS (resource.getrusage) is its own; "extra" is the peak minus the RSS right
after the data was made. Threads are capped at `--threads` for numpy/BLAS/OpenMP and torch.

    gradwise  detect(): KS + PSI + Wasserstein per numeric column, chi-squared + PSI per
              categorical column (every row), MMD (random Fourier features, 200 permutations)
              and the domain classifier (3 folds) on 10,000 rows per side (max_rows).
    gradwise MMD, all rows: the MMD alone with max_rows = --rows (memory grows with rows x
              256 features, not rows^2).
    alibi-detect: KSDrift on the numeric columns (scipy's ks_2samp per column, Bonferroni),
              ChiSquareDrift on the categorical ones, ClassifierDrift with the same
              classifier (scikit-learn backend, 3 folds) on every row; MMDDrift (PyTorch
              backend, 100 permutations) builds the full kernel matrix, so it runs on
              `--mmd-rows` rows per side only and the size of its 2n x 2n matrix at full
              size is printed instead (4 bytes per entry).

    python benchmarks/shift_scale.py                  # 100k x 100, about 2 minutes
    python benchmarks/shift_scale.py --rows 20000     # a quick check

alibi-detect 0.13 pins numpy < 2, pandas < 3 and transformers < 5, so it is not in the
`bench` extra; its drift detectors run beside gradwise's versions when installed without
its pins (the contenders that need it are skipped, with a note, when it is missing):

    pip install --no-deps alibi-detect==0.13.0 numba llvmlite catalogue dill toml
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

SEED = 0


def make_data(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(SEED)
    n_cat = max(1, cols // 10)
    n_num = cols - n_cat
    ref = np.empty((rows, cols))
    cur = np.empty((rows, cols))
    ref[:, :n_num] = rng.standard_normal((rows, n_num))
    cur[:, :n_num] = rng.standard_normal((rows, n_num))
    cur[:, : max(1, n_num // 10)] += 0.1
    probs = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    ref[:, n_num:] = rng.choice(5, (rows, n_cat), p=probs)
    cur[:, n_num:] = rng.choice(5, (rows, n_cat), p=probs)
    cur[:, n_num] = rng.choice(5, rows, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    return ref, cur, list(range(n_num, cols))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(which: str, rows: int, cols: int, mmd_rows: int) -> dict[str, Any]:
    """Run one contender on freshly made data; return its seconds, RSS and findings. The
    libraries are imported before the data is made, so neither the clock nor "extra"
    memory counts imports."""
    import sklearn.linear_model  # noqa: F401

    from gradwise.auditing.drift import DriftSettings, detect
    from gradwise.auditing.drift_multivariate import mmd_test

    if which.startswith("alibi"):
        import alibi_detect.cd  # noqa: F401

    ref, cur, cat = make_data(rows, cols)
    num = [j for j in range(cols) if j not in cat]
    base = _rss_mb()
    started = time.perf_counter()
    found: dict[str, Any] = {}
    if which == "gradwise":  # detect(), timed in its three parts
        times, results = {}, []
        for part, detectors in (
            ("per-feature", ("ks", "chi2", "psi", "wasserstein")),
            ("mmd", ("mmd",)),
            ("domain", ("domain_auc",)),
        ):
            t = time.perf_counter()
            report = detect(ref, cur, DriftSettings(detectors=detectors), categorical=cat)
            times[part] = time.perf_counter() - t
            results += report.results
        found = {r.detector: [r.drifted, r.n_drifted, round(r.effect, 4)] for r in results}
        found["ks_statistic"] = results[0].features.statistic.tolist()
        found["seconds_by_part"] = times
    elif which == "gradwise-mmd-all-rows":
        r = mmd_test(ref, cur, DriftSettings(max_rows=rows))
        found = {"mmd": [r.drifted, None, round(r.effect, 5)]}
    elif which == "gradwise-mmd-small":
        r = mmd_test(ref[:mmd_rows], cur[:mmd_rows], DriftSettings(permutations=100))
        found = {"mmd": [r.drifted, None, round(r.effect, 5)]}
    elif which == "alibi-detect":
        found = _alibi(ref, cur, num, cat)
    elif which == "alibi-detect-mmd-small":
        from alibi_detect.cd import MMDDrift

        x, y = ref[:mmd_rows].astype(np.float32), cur[:mmd_rows].astype(np.float32)
        out = MMDDrift(x, backend="pytorch", p_val=0.05, n_permutations=100).predict(y)
        found = {"mmd": [bool(out["data"]["is_drift"]), None, float(out["data"]["distance"])]}
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": _rss_mb(),
        "extra_rss_mb": _rss_mb() - base,
        "found": found,
    }


def _alibi(ref: np.ndarray, cur: np.ndarray, num: list[int], cat: list[int]) -> dict[str, Any]:
    from alibi_detect.cd import ChiSquareDrift, ClassifierDrift, KSDrift
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from gradwise.auditing.drift_multivariate import _with_squares

    times = {}
    t = time.perf_counter()
    ks = KSDrift(ref[:, num], p_val=0.05, correction="bonferroni").predict(cur[:, num])
    times["ks"] = time.perf_counter() - t
    t = time.perf_counter()
    chi = ChiSquareDrift(ref[:, cat], p_val=0.05).predict(cur[:, cat])
    times["chi2"] = time.perf_counter() - t
    t = time.perf_counter()
    model = make_pipeline(
        FunctionTransformer(_with_squares),
        StandardScaler(),
        LogisticRegression(C=0.1, tol=1e-3, max_iter=200),
    )
    clf = ClassifierDrift(ref, model, backend="sklearn", p_val=0.05, n_folds=3).predict(cur)
    times["domain"] = time.perf_counter() - t
    return {
        "ks": [bool(ks["data"]["is_drift"]), int((ks["data"]["p_val"] < 0.05 / len(num)).sum())],
        "chi2": [
            bool(chi["data"]["is_drift"]),
            int((chi["data"]["p_val"] < 0.05 / len(cat)).sum()),
        ],
        # alibi's distance for the classifier is its KS statistic on out-of-fold scores
        "domain_auc": [bool(clf["data"]["is_drift"]), None, float(clf["data"]["distance"])],
        "ks_statistic": np.asarray(ks["data"]["distance"]).tolist(),
        "seconds_by_part": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mmd-rows", type=int, default=2000, help="alibi MMD rows per side")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.cols, args.mmd_rows)))
        return
    env = {**os.environ}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    results = {}
    contenders = [
        "gradwise",
        "alibi-detect",
        "gradwise-mmd-all-rows",
        "gradwise-mmd-small",
        "alibi-detect-mmd-small",
    ]
    try:
        import alibi_detect  # noqa: F401
    except ImportError:
        print("alibi-detect is not installed: its contenders are skipped (see --help)")
        contenders = [c for c in contenders if not c.startswith("alibi")]
    for which in contenders:
        cmd = [sys.executable, __file__, "--child", which, "--rows", str(args.rows)]
        cmd += ["--cols", str(args.cols), "--mmd-rows", str(args.mmd_rows)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode or not lines:
            print(f"{which}: failed\n{done.stderr[-2000:]}")
            continue
        results[which] = json.loads(lines[-1])
    _report(results, args)


def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"{args.rows:,} x {args.cols} per side, {args.threads} threads")
    print(f"{'contender':28} {'seconds':>8} {'peak RSS MB':>12} {'extra MB':>9}")
    for name, r in results.items():
        print(f"{name:28} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f} {r['extra_rss_mb']:9.0f}")
    ours, peer = results.get("gradwise"), results.get("alibi-detect")
    if ours and peer:
        gap = np.abs(np.array(ours["found"]["ks_statistic"]) - peer["found"]["ks_statistic"])
        print(f"KS statistics: largest difference from alibi-detect (scipy) {gap.max():.2e}")
        print(
            f"time ratio alibi-detect / gradwise (same detectors minus MMD, plus PSI and "
            f"Wasserstein for gradwise): {peer['seconds'] / ours['seconds']:.2f}; "
            f"extra memory ratio {peer['extra_rss_mb'] / max(ours['extra_rss_mb'], 1):.2f}"
        )
        for name, r in (("gradwise", ours), ("alibi-detect", peer)):
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in r["found"]["seconds_by_part"].items())
            print(f"{name} parts: {parts}")
        for k in ("ks", "chi2", "psi", "wasserstein", "domain_auc"):
            print(f"  {k:12} gradwise {ours['found'].get(k)}  alibi-detect {peer['found'].get(k)}")
    small, small_peer = results.get("gradwise-mmd-small"), results.get("alibi-detect-mmd-small")
    if small and small_peer:
        print(
            f"MMD at {args.mmd_rows:,} rows per side: gradwise {small['seconds']:.2f} s, "
            f"alibi-detect {small_peer['seconds']:.2f} s (ratio "
            f"{small_peer['seconds'] / small['seconds']:.1f}); extra memory "
            f"{small['extra_rss_mb']:.0f} vs {small_peer['extra_rss_mb']:.0f} MB"
        )
    full = 2 * args.rows
    print(
        f"alibi-detect's MMD at {args.rows:,} rows per side would hold a {full:,} x {full:,} "
        f"kernel matrix: {full * full * 4 / 2**30:.0f} GiB"
    )


if __name__ == "__main__":
    main()
