"""How soon the monitor says "guarantee likely broken", and how rarely it says so falsely.

    python benchmarks/monitor_guarantee.py [--streams 200]

A digits MLP is certified at alpha 0.05 (delta 0.1) by the selective audit. Its answered test
instances (the threshold answers about 59% of the 359 test rows, about 2% of those wrongly)
are drawn at random into streams of labelled answers: `pre` labels as the model really did,
then labels of which a share `flip` is replaced by another class (the world changed: the
model's answers are now wrong at about 2% + flip). For each stream the alert's delay is the
number of labelled answers after the drop until the confidence sequence's lower bound
reaches alpha; a false alarm is an alert before the drop. Reported: median and 90th
percentile of the delay, the share of streams caught within the 1000 labels after the drop,
the false-alarm rate before the drop, and the false-alarm rate over 10,000 labels without a
drop (at the model's own rate and at exactly alpha, the hardest rate the guarantee allows).

Beside it, Robbins' beta-binomial mixture on all labels so far (one-sided: a uniform prior on
[alpha, 1]; closed form with the regularised incomplete beta function, checked here against
numerical integration): a bound on the whole stream, which after a long good stretch reacts
late. Then the abstention test on windows of 150 drawn from the test rows, as served and at
60% contrast (false alarms and detections at the monitor's alpha 0.01), and one served
stream end to end through the prediction store and `gradwise.monitor`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import integrate
from scipy.special import betainc, betaln

import gradwise
from gradwise.monitoring.guarantee import ErrorSequence, abstention_p_value
from gradwise.serving.store import FeedbackRecord, PredictionRecord, PredictionStore

ALPHA, DELTA, AFTER = 0.05, 0.1, 1000


def certified(folder: Path) -> gradwise.Run:
    cfg = {
        "name": "guarantee-bench",
        "seed": 0,
        "data": {"source": "builtin:digits"},
        "model": {"arch": "mlp", "hidden": [32], "dropout": 0.0},
        "train": {"epochs": 10, "batch_size": 64},
    }
    run = gradwise.train(cfg, out=folder / "run", overwrite=True)
    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": ALPHA})
    return run


def robbins_log_wealth(errors: np.ndarray, m: float) -> np.ndarray:
    """log K_t(m) of the one-sided mixture: the likelihood ratio of Bernoulli(theta) against
    Bernoulli(m), averaged over theta uniform on [m, 1]."""
    s = np.cumsum(errors)
    f = np.arange(1, len(errors) + 1) - s
    tail = np.log(np.maximum(1 - betainc(s + 1, f + 1, m), 1e-300))
    return betaln(s + 1, f + 1) + tail - math.log(1 - m) - s * math.log(m) - f * math.log1p(-m)


def check_robbins() -> float:
    """Largest relative gap between the closed form and scipy.integrate.quad of the mixture."""
    gaps = []
    for s, f in [(0, 10), (3, 40), (12, 60), (30, 300)]:
        errors = np.r_[np.ones(s), np.zeros(f)]

        def ratio(theta: float, s: int = s, f: int = f) -> float:
            return (theta / ALPHA) ** s * ((1 - theta) / (1 - ALPHA)) ** f / (1 - ALPHA)

        exact = integrate.quad(ratio, ALPHA, 1, limit=200, epsabs=0, epsrel=1e-12)[0]
        closed = math.exp(robbins_log_wealth(errors, ALPHA)[-1])
        gaps.append(abs(closed - exact) / exact)
    return max(gaps)


def first(log_wealth: np.ndarray) -> int | None:
    hits = np.nonzero(log_wealth >= math.log(1 / DELTA))[0]
    return int(hits[0]) + 1 if len(hits) else None


def detectors(errors: np.ndarray) -> dict[str, int | None]:
    return {
        "betting": ErrorSequence(errors, ALPHA, DELTA).crossing(),
        "robbins": first(robbins_log_wealth(errors, ALPHA)),
    }


def drop_streams(
    wrong: np.ndarray, pre: int, flip: float, n: int, rng: np.random.Generator
) -> dict[str, dict[str, float]]:
    delays: dict[str, list[float]] = {"betting": [], "robbins": []}
    early = {"betting": 0, "robbins": 0}
    for _ in range(n):
        before = wrong[rng.integers(0, len(wrong), pre)]
        after = wrong[rng.integers(0, len(wrong), AFTER)] | (rng.random(AFTER) < flip)
        for name, t in detectors(np.r_[before, after]).items():
            if t is not None and t <= pre:
                early[name] += 1
            else:
                delays[name].append(np.inf if t is None else t - pre)
    out = {}
    for name, d in delays.items():
        caught = np.isfinite(d)
        out[name] = {  # empirical quantiles (no interpolation: a stream never caught is inf)
            "median": float(np.quantile(d, 0.5, method="inverted_cdf")),
            "p90": float(np.quantile(d, 0.9, method="inverted_cdf")),
            "caught": float(caught.mean()),
            "false_alarms": early[name] / n,
        }
    return out


def no_drop(rate_of: np.ndarray | float, n: int, rng: np.random.Generator) -> dict[str, float]:
    alarms = {"betting": 0, "robbins": 0}
    for _ in range(n):
        if isinstance(rate_of, np.ndarray):
            errors = rate_of[rng.integers(0, len(rate_of), 10_000)]
        else:
            errors = rng.random(10_000) < rate_of
        for name, t in detectors(errors).items():
            alarms[name] += t is not None
    return {k: v / n for k, v in alarms.items()}


def abstention(run: gradwise.Run, n: int, rng: np.random.Generator) -> dict[str, float]:
    g = run.calibration.selective
    val_abstained, val_n = g["n"] - g["accepted"], g["n"]
    x = np.asarray(run.split("test").raw)
    out = {}
    for name, shown in (("as served", x), ("60% contrast", x * 0.6)):
        abstains = ~run.predict_selective(shown).answer
        hits = 0
        for _ in range(n):
            k = int(abstains[rng.integers(0, len(x), 150)].sum())
            hits += abstention_p_value(k, 150, val_abstained, val_n) < 0.01
        out[name] = hits / n
        out[f"{name} abstained"] = float(abstains.mean())
    out["validation abstained"] = val_abstained / val_n
    return out


def write_stream(run: gradwise.Run, store: Path, x: np.ndarray, labels: np.ndarray) -> None:
    """`x` stored as `serve --abstain` stores it (ten instances per request, each output with
    its decision), each request's labels right after it."""
    chosen = run.predict_selective(x)
    writer = PredictionStore(f"sqlite:///{store}", "bench", flush_interval_s=0.05)
    writer.start()
    for a in range(0, len(x), 10):
        rows = range(a, min(a + 10, len(x)))
        outputs = [
            {
                "prediction": chosen.prediction[i].item(),
                "confidence": float(chosen.probabilities[i].max()),
                "decision": chosen.decision[i],
                "abstain_score": float(chosen.score[i]),
            }
            for i in rows
        ]
        body = json.dumps({"instances": [{"pixels": x[i].tolist()} for i in rows]})
        rid = f"r{a:06d}"
        record = PredictionRecord(rid, 1.7e9 + a, "v1", len(rows), body, json.dumps(outputs), None)
        writer.put(record)
        for j, i in enumerate(rows):
            writer.put(FeedbackRecord(rid, j, 1.7e9 + a + 0.5, labels[i].item()))
    writer.close()


def end_to_end(run: gradwise.Run, folder: Path) -> dict[str, object]:
    """The test images four times over (1436 instances); from instance 720 on, 30% of the
    labels fed back are another class; `gradwise.monitor` with windows of 150."""
    test = run.split("test")
    rng = np.random.default_rng(1)
    order = np.concatenate([rng.permutation(len(test.y)) for _ in range(4)])
    x, y = np.asarray(test.raw)[order], run.schema.target.decode(test.y.numpy())[order]
    fed = y.copy()
    flip = (np.arange(len(y)) >= 720) & (rng.random(len(y)) < 0.3)
    fed[flip] = (fed[flip] + 1 + rng.integers(0, 9, flip.sum())) % 10
    store = folder / "p.sqlite"
    write_stream(run, store, x, fed)
    start = time.perf_counter()
    report = gradwise.monitor(run, store=str(store), window=150)
    wall = time.perf_counter() - start
    before = int(run.predict_selective(x[:720]).answer.sum())
    g = report.guarantee
    assert g is not None and g.broken is not None
    return {
        "instances": len(x),
        "labelled answers before the drop": before,
        "delay (labelled answers)": g.broken["labelled"] - before,
        "alert window": g.broken["window"],
        "monitor wall s": round(wall, 1),
    }


def scale() -> dict[str, float]:
    rng = np.random.default_rng(0)
    errors = np.r_[rng.random(95_000) < 0.02, rng.random(5_000) < 0.3]
    seq = ErrorSequence(errors, ALPHA, DELTA)
    start = time.perf_counter()
    seq.crossing()
    seq.lower_bounds(np.arange(0, 100_001, 1000))
    return {"labels": 100_000, "crossing + 101 bounds s": round(time.perf_counter() - start, 2)}


def _labels(delay: float) -> str:
    return f"{delay:6.0f}" if np.isfinite(delay) else f">{AFTER:5d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"Robbins closed form vs quad: largest relative gap {check_robbins():.1e}")
    with tempfile.TemporaryDirectory() as tmp:
        run = certified(Path(tmp))
        g = run.calibration.selective
        test = run.split("test")
        chosen = run.predict_selective(np.asarray(test.raw))
        y = run.schema.target.decode(test.y.numpy())
        wrong = (chosen.prediction != y)[chosen.answer]
        print(
            f"certified: threshold {g['threshold']:.3f}, validation coverage {g['coverage']:.3f}"
            f" ({g['accepted']} of {g['n']}); test: {len(wrong)} answered, error "
            f"{wrong.mean():.3f}"
        )
        rows = []
        for pre in (200, 1000, 5000):
            for flip in (0.1, 0.2, 0.3, 1.0):
                found = drop_streams(wrong, pre, flip, args.streams, rng)
                for name, r in found.items():
                    rows.append({"pre": pre, "flip": flip, "method": name, **r})
                    print(
                        f"pre {pre:5d} flip {flip:.1f} {name:8s}: delay median "
                        f"{_labels(r['median'])} p90 {_labels(r['p90'])}, caught within {AFTER} "
                        f"{r['caught']:.1%}, false alarms before the drop {r['false_alarms']:.1%}"
                    )
        quiet = {
            "model's own rate": no_drop(wrong, args.streams, rng),
            "exactly alpha": no_drop(ALPHA, args.streams, rng),
        }
        for name, r in quiet.items():
            print(f"no drop, 10,000 labels at the {name}: false-alarm rate {r}")
        signal = abstention(run, 1000, rng)
        print(f"abstention test, windows of 150 (share with p < 0.01): {signal}")
        e2e = end_to_end(run, Path(tmp))
        print(f"end to end: {e2e}")
        big = scale()
        print(f"scale: {big}")
    print(json.dumps({"drops": rows, "no_drop": quiet, "abstention": signal}))


if __name__ == "__main__":
    main()
