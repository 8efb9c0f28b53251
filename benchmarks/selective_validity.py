"""Claims (issue 19, certified abstention): over 200 random calibration / test splits on six
real data sets (tables, images, text), the threshold `certify` picks at alpha in {0.01, 0.02,
0.05} and delta = 0.1 (1) breaks its promise, a test selective error above alpha, on at most
delta of the splits, up to binomial noise (2 standard errors, sqrt(delta (1 - delta) / 200));
(2) answers within 5 points of the oracle, the widest coverage a threshold chosen with the test
labels reaches at the same alpha.

    python benchmarks/selective_validity.py                 # about 3 minutes on 2 cores
    python benchmarks/selective_validity.py --splits 50 --only digits,sms_spam

One model per data set, trained once on rows that are never calibrated or tested on (a
scikit-learn logistic regression: honest probabilities, seconds to fit); the score is its top
class probability and an answer is wrong when the top class is not the label. The other rows
form the pool; each split draws min(2000, half the pool) of them at random to certify on, and
the rest are the test part, where the certified threshold's coverage and selective error are
measured and the oracle is computed. Data: ../shared/data (or GRADWISE_SHARED_DATA): UCI Adult
(official train / test), mammography (2.3% positives), MNIST (the official test split, 10,000
images), SMS spam, the Pang & Lee movie reviews; and scikit-learn's digits. A missing shared
set is skipped, and said so.

What "true selective error" means here: the calibration rows are drawn from the pool, so
the pool is the population the promise is about, and the error among the pool's rows the
threshold answers is the true selective error (`viol. pool`). The error on the test part
alone (`viol. test`, the pool minus the calibration rows) reads higher, for two reasons that
are not the procedure's: it is a sample, with its own noise; and it is what the calibration
draw left behind, so a draw that happened to hold few errors among the surest rows (which is
what lets a threshold go low) leaves the test part with more of them. The pull grows with the
calibration share of the pool: a third for MNIST, half for digits, SMS and movie reviews.
The oracle sees the test labels, so it also fits their noise, and answers more than any
threshold chosen before seeing them could.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import math
import os
import platform
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from gradwise.auditing.risk_control import (
    MAX_THRESHOLDS,
    accepted_and_errors,
    binomial_p_values,
    certify,
    chain_starts,
    coverage_at,
    thresholds,
)

# the shared data sets: GRADWISE_SHARED_DATA, else ../shared/data beside the checkout
SHARED = Path(
    os.environ.get("GRADWISE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ALPHAS = (0.01, 0.02, 0.05)
DELTA = 0.1
MAX_CAL = 2000
GAP_POINTS = 5.0
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


@dataclass(frozen=True)
class Pool:
    """A model's scores and right/wrong on the rows it was not trained on."""

    name: str
    kind: str
    scores: np.ndarray  # (n,) top-class probability
    errors: np.ndarray  # (n,) the top class is not the label
    n_train: int


def _pool(name: str, kind: str, model: object, x_train, y_train, x_pool, y_pool) -> Pool:
    model.fit(x_train, y_train)  # type: ignore[attr-defined]
    probs = model.predict_proba(x_pool)  # type: ignore[attr-defined]
    classes = model.classes_  # type: ignore[attr-defined]
    wrong = classes[probs.argmax(axis=1)] != np.asarray(y_pool)
    return Pool(name, kind, probs.max(axis=1), wrong, len(y_train))


def _split(n: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    return idx[:n_train], idx[n_train:]


# ---------------------------------------------------------------- the data sets


def adult() -> Pool:
    """UCI Adult: income above 50K from 14 mixed columns; trained on the official training
    file (32,561 rows), pooled on the official test file (16,281)."""

    def read(name: str) -> pd.DataFrame:
        path = SHARED / "adult" / name
        return pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True)

    train, test = read("adult-train.csv"), read("adult-test.csv")
    numeric = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = [c for c in ADULT_COLUMNS[:-1] if c not in numeric]
    prep = make_column_transformer(
        (StandardScaler(), numeric), (OneHotEncoder(handle_unknown="ignore"), categorical)
    )
    model = make_pipeline(prep, LogisticRegression(max_iter=2000))
    label = lambda df: df["income"].str.rstrip(".") == ">50K"  # noqa: E731
    return _pool("adult", "table", model, train, label(train), test, label(test))


def mammography() -> Pool:
    """Mammography calcifications, 11,183 rows, 2.3% malignant; 5,000 rows to train."""
    df = pd.read_csv(SHARED / "mammography" / "mammography.csv", header=None)
    x, y = df.iloc[:, :-1].to_numpy(), (df.iloc[:, -1] == "'1'").to_numpy()
    train, pool = _split(len(y), 5000, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return _pool("mammography", "table", model, x[train], y[train], x[pool], y[pool])


def mnist() -> Pool:
    """MNIST's official test split (10,000 images): 4,000 to train, 6,000 pooled."""
    folder = SHARED / "mnist"
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784) / 255.0
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    train, pool = _split(len(y), 4000, seed=0)
    model = LogisticRegression(max_iter=300, C=0.1)
    return _pool("mnist", "image", model, x[train], y[train], x[pool], y[pool])


def digits() -> Pool:
    """scikit-learn's 8x8 digits (1,797 images): 600 to train, 1,197 pooled."""
    x, y = load_digits(return_X_y=True)
    train, pool = _split(len(y), 600, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    return _pool("digits", "image", model, x[train], y[train], x[pool], y[pool])


def sms_spam() -> Pool:
    """SMS Spam Collection (5,574 messages): TF-IDF words, 2,000 to train."""
    df = pd.read_csv(SHARED / "sms_spam" / "SMSSpamCollection", sep="\t", header=None, quoting=3)
    texts, y = df[1].to_numpy(), (df[0] == "spam").to_numpy()
    train, pool = _split(len(y), 2000, seed=0)
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(C=10.0))
    return _pool("sms_spam", "text", model, texts[train], y[train], texts[pool], y[pool])


def movie_reviews() -> Pool:
    """Pang & Lee polarity v2.0 (2,000 reviews): TF-IDF words and pairs, 1,000 to train."""
    texts, labels = [], []
    with tarfile.open(SHARED / "movie_review_polarity" / "review_polarity.tar.gz") as tar:
        for member in tar.getmembers():
            polarity = Path(member.name).parent.name
            if member.isfile() and member.name.endswith(".txt") and polarity in ("pos", "neg"):
                f = tar.extractfile(member)
                assert f is not None
                texts.append(io.TextIOWrapper(f, encoding="latin-1").read())
                labels.append(polarity == "pos")
    x, y = np.array(texts, dtype=object), np.array(labels)
    train, pool = _split(len(y), 1000, seed=0)
    vectoriser = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    model = make_pipeline(vectoriser, LogisticRegression(C=10.0, max_iter=2000))
    return _pool("movie_reviews", "text", model, x[train], y[train], x[pool], y[pool])


DATA: dict[str, tuple[Callable[[], Pool], str | None]] = {
    "adult": (adult, "adult/adult-test.csv"),
    "mammography": (mammography, "mammography/mammography.csv"),
    "mnist": (mnist, "mnist/t10k-images-idx3-ubyte.gz"),
    "digits": (digits, None),
    "sms_spam": (sms_spam, "sms_spam/SMSSpamCollection"),
    "movie_reviews": (movie_reviews, "movie_review_polarity/review_polarity.tar.gz"),
}


# ---------------------------------------------------------------- the splits


@dataclass(frozen=True)
class Row:
    """One data set at one alpha, over the splits."""

    pool: Pool
    alpha: float
    n_cal: int
    n_test: int
    certified: float  # share of splits with a certified threshold
    violated: float  # share of splits whose true (pool) selective error exceeds alpha
    violated_test: float  # share of splits whose test-part selective error exceeds alpha
    coverage: float  # mean test coverage (0 where nothing was certified)
    oracle: float  # mean oracle coverage on the test part
    no_stop: float  # diagnostic: coverage of the lowest threshold passing its own test
    first_stop: float  # share of splits whose walk failed at its first threshold

    @property
    def gap_points(self) -> float:
        return 100 * (self.oracle - self.coverage)


def _lowest_passing(s: np.ndarray, e: np.ndarray, alpha: float) -> float:
    """The lowest threshold whose own p-value is at most delta, ignoring the fixed sequence:
    not a valid procedure (no multiplicity control), only a measure of what the walk's stop
    costs."""
    lams = thresholds(s, MAX_THRESHOLDS)
    m, k = accepted_and_errors(s, e, lams)
    passing = np.flatnonzero(binomial_p_values(k, m, alpha) <= DELTA)
    return float(lams[passing[-1]]) if len(passing) else math.inf


def measure(pool: Pool, alpha: float, splits: int) -> Row:
    n = len(pool.scores)
    n_cal = min(MAX_CAL, n // 2)
    certified = violated = violated_test = first_stop = 0
    coverage, oracle, no_stop = [], [], []
    for seed in range(splits):
        idx = np.random.default_rng(seed).permutation(n)
        cal, test = idx[:n_cal], idx[n_cal:]
        s_cal, e_cal, s_test, e_test = (
            pool.scores[cal], pool.errors[cal], pool.scores[test], pool.errors[test]
        )  # fmt: skip
        # the model's own chance of being wrong (1 - top probability), labels unseen
        cert = certify(s_cal, e_cal, alpha, DELTA, expected=1 - s_cal)
        oracle.append(coverage_at(s_test, e_test, alpha)[0])
        no_stop.append(np.mean(s_test >= _lowest_passing(s_cal, e_cal, alpha)))
        if not cert.certified:
            coverage.append(0.0)
            lams = thresholds(s_cal, MAX_THRESHOLDS)
            first_stop += cert.tested <= len(chain_starts(s_cal, lams, alpha, DELTA, 1 - s_cal))
            continue
        answered = s_test >= cert.threshold
        certified += 1
        coverage.append(answered.mean())
        violated_test += answered.any() and e_test[answered].mean() > alpha
        violated += pool.errors[pool.scores >= cert.threshold].mean() > alpha
    return Row(
        pool, alpha, n_cal, n - n_cal, certified / splits, violated / splits,
        violated_test / splits,
        float(np.mean(coverage)), float(np.mean(oracle)), float(np.mean(no_stop)),
        first_stop / splits,
    )  # fmt: skip


# ---------------------------------------------------------------- the report


def print_table(rows: list[Row], bound: float) -> None:
    print(
        f"{'data set':14} {'kind':5} {'train':>6} {'cal':>5} {'test':>6} {'error':>6} "
        f"{'alpha':>5} {'cert.':>6} {'viol.':>6} {'test':>6} {'cover':>6} {'oracle':>6} "
        f"{'gap':>5} {'stop1':>6} {'nostop':>6}"
    )
    for r in rows:
        flag = " <" if r.violated > bound else ""
        print(
            f"{r.pool.name:14} {r.pool.kind:5} {r.pool.n_train:6d} {r.n_cal:5d} {r.n_test:6d} "
            f"{r.pool.errors.mean():6.1%} {r.alpha:5.2f} {r.certified:6.0%} {r.violated:6.1%} "
            f"{r.violated_test:6.1%} {r.coverage:6.1%} {r.oracle:6.1%} {r.gap_points:5.1f} "
            f"{r.first_stop:6.0%} {r.no_stop:6.1%}{flag}"
        )


def print_verdicts(rows: list[Row], bound: float, splits: int) -> None:
    worst = max(rows, key=lambda r: r.violated)
    ok = worst.violated <= bound
    print(
        f"claim 1 (validity): {'PASS' if ok else 'FAIL'}: the share of splits whose true (pool) "
        f"selective error exceeds alpha is at most {worst.violated:.1%} ({worst.pool.name}, "
        f"alpha {worst.alpha:g}) over {len(rows)} data set x alpha cells of {splits} splits; "
        f"the bound is delta + 2 standard errors = {bound:.1%}"
    )
    over = [r for r in rows if r.violated_test > bound]
    worst_test = max(rows, key=lambda r: r.violated_test)
    print(
        f"  on the test part alone: at most {worst_test.violated_test:.1%} "
        f"({worst_test.pool.name}, alpha {worst_test.alpha:g}); above the bound in {len(over)} "
        f"of {len(rows)} cells" + "".join(f"; {r.pool.name} alpha {r.alpha:g}" for r in over)
    )
    far = [r for r in rows if r.gap_points > GAP_POINTS]
    print(
        f"claim 2 (efficiency): {'PASS' if not far else 'FAIL'}: mean coverage within "
        f"{GAP_POINTS:g} points of the test-label oracle in {len(rows) - len(far)} of "
        f"{len(rows)} cells; largest gap {max(r.gap_points for r in rows):.1f} points"
    )
    for r in far:
        print(
            f"  {r.pool.name} alpha {r.alpha:g}: answers {r.coverage:.1%}, oracle {r.oracle:.1%} "
            f"({r.gap_points:.1f} points) on {r.n_cal} calibration rows, base error "
            f"{r.pool.errors.mean():.1%}; certified in {r.certified:.0%} of splits, the walk "
            f"failed at its first threshold in {r.first_stop:.0%}, and the lowest threshold "
            f"passing its own test answers {r.no_stop:.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--only", default=",".join(DATA), help="comma-separated data sets")
    args = parser.parse_args()
    bound = DELTA + 2 * math.sqrt(DELTA * (1 - DELTA) / args.splits)
    print(
        f"# certified abstention over {args.splits} calibration/test splits, delta {DELTA}, "
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cpus, shared data "
        f"{'found' if SHARED.is_dir() else 'missing'}"
    )
    rows = []
    for name in args.only.split(","):
        build, needs = DATA[name]
        if needs is not None and not (SHARED / needs).is_file():
            print(f"skipped {name}: {SHARED / needs} is not here")
            continue
        started = time.perf_counter()
        pool = build()
        fitted = time.perf_counter() - started
        rows += [measure(pool, alpha, args.splits) for alpha in ALPHAS]
        print(
            f"{name}: {len(pool.scores):,} pooled rows, model fitted in {fitted:.1f} s, "
            f"splits in {time.perf_counter() - started - fitted:.1f} s"
        )
    print()
    print(
        "columns: error = the model's error on the pool; cert. = splits certified; viol. = "
        "splits whose true selective error (on the whole pool) > alpha; test = splits whose "
        "selective error on the test part > alpha; cover = mean test coverage (0 when not "
        "certified); oracle = mean widest test coverage within alpha, chosen with the test "
        "labels; gap = oracle - cover in points; stop1 = splits where the walk failed at its "
        "first threshold; nostop = coverage of the lowest threshold passing its own test "
        "(a diagnostic, not a valid procedure); < marks a viol. share above the bound"
    )
    print_table(rows, bound)
    print()
    print_verdicts(rows, bound, args.splits)


if __name__ == "__main__":
    main()
