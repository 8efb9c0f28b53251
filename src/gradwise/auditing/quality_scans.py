"""The measurements of the data-quality check, each a plain function on arrays.

fold_plan(run, settings)                               folds and epochs that fit the budget
out_of_fold_probabilities(run, folds, epochs, seed)   k-fold retrains (in order, or on Ray)
head_out_of_fold_probabilities(run, emb, folds, seed)  k-fold heads on frozen embeddings
label_issues(labels, probs)                            cleanlab over those probabilities
row_keys(raw)                                          a 64-bit hash of each raw sample
duplicate_groups(keys)                                 samples that are exactly equal
near_duplicate_pairs(a, b, threshold)                  cosine >= threshold, blocked
feature_health(df, columns, missing_warn)              constant and missing-heavy columns
outlier_scores(embeddings, seed)                       IsolationForest anomaly scores
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradwise.auditing import progress
from gradwise.auditing.head_retrain import head_out_of_fold
from gradwise.auditing.retrain_budget import FoldPlan, plan_folds, run_pace
from gradwise.auditing.retrain_jobs import FoldJob, fold_retrain
from gradwise.auditing.retrains import IN_PROCESS, RetrainMap, stepwise
from gradwise.config import DataQualityAudit
from gradwise.data.leakage import sample_keys
from gradwise.run import Run

CHUNK = 1 << 22  # similarities held at once (block x rows)
MAX_PAIRS = 100_000  # near-duplicate pairs kept (the count goes on)


def out_of_fold_probabilities(
    run: Run,
    folds: int,
    epochs: int | None,
    seed: int,
    fold_s: float | None = None,
    retrains: RetrainMap = IN_PROCESS,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, K) class probabilities of each training sample from a model that never saw
    it: the run's config retrained `folds` times, each time without one fold of the training
    split (same preprocessing, val split and seed), quietly, into a temporary folder.

    Args:
        epochs: epochs per retrain; None: the run's best epoch (metrics.json), since its
            early stopping would otherwise spend its patience on every fold too.
        fold_s: estimated seconds of one retrain, for the time left that each fold reports
            as a step (`gradwise.auditing.progress`); None: estimated from the folds done.
        retrains: where the folds' retrains run (`gradwise.auditing.retrains`); a batch
            (Ray) runs them all at once and reports one step.

    Returns:
        The probabilities (uncalibrated softmax), and each sample's fold.
    """
    from gradwise.data.split import fold_splits

    train = run.split("train")
    y = train.y.numpy()
    if epochs is None:
        epochs = max(1, int(run.metrics.get("best_epoch") or run.config.train.epochs or 1))
    update: dict[str, Any] = {"checkpoint": False, "diagnostics": False, "epochs": epochs}
    cfg = run.config.model_copy(update={"train": run.config.train.model_copy(update=update)})
    data = run.dataset()
    # the folds keep the split's rule: a group (or a sample's copies) in one fold, time in order
    folds_of = fold_splits(data.split_rule, data.fold_key, train.rows, y, folds, seed)
    run_dir = str(Path(run.path).resolve())
    jobs = [FoldJob(run_dir, cfg, k, keep, held) for k, (keep, held) in enumerate(folds_of)]
    if retrains.batch:
        what = f"{len(jobs)} folds as one batch on {retrains.where}"
        left_s = fold_s * len(jobs) if fold_s else None
        progress.report(progress.Step("data_quality", 0, 1, what, left_s))
        held_probs = retrains(fold_retrain, jobs)
    else:
        planned = [fold_s or 0.0] * len(jobs)

        def which(job: FoldJob) -> str:
            return f"fold {job.fold + 1} of {len(jobs)}"

        step = stepwise(fold_retrain, "data_quality", planned, which)
        held_probs = retrains(step, jobs)
    probs = np.zeros((len(y), max(run.schema.n_outputs, 2)))
    fold_of = np.zeros(len(y), dtype=np.int64)
    for job, found in zip(jobs, held_probs, strict=True):
        probs[job.held_out] = found
        fold_of[job.held_out] = job.fold
    done = 1 if retrains.batch else len(jobs)
    what = "duplicates, leakage, outliers"
    progress.report(progress.Step("data_quality", done, done, what, None))
    return probs, fold_of


def head_out_of_fold_probabilities(
    run: Run, emb: np.ndarray, folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, K) probabilities of each training sample from a fresh head fitted on the
    frozen embeddings of the other folds (`gradwise.auditing.head_retrain`): the folds are
    those `out_of_fold_probabilities` retrains on, but the encoder saw every row.

    Args:
        emb: (n_train, D) embeddings of the training split by the run's trained encoder.

    Returns:
        The probabilities, and each sample's fold.
    """
    from gradwise.data.split import fold_splits

    train = run.split("train")
    y = train.y.numpy()
    data = run.dataset()
    folds_of = fold_splits(data.split_rule, data.fold_key, train.rows, y, folds, seed)
    progress.report(progress.Step("data_quality", 0, 1, f"{folds} head-only folds", None))
    found = head_out_of_fold(emb, y, folds_of, run.schema.n_outputs)
    progress.report(progress.Step("data_quality", 1, 1, "duplicates, leakage, outliers", None))
    return found


def fold_plan(run: Run, settings: DataQualityAudit) -> FoldPlan:
    """The folds and epochs per fold of the out-of-fold retrains: settings.folds and epochs
    where set, else as many as fit settings.budget_s at the run's own pace (what was
    reduced, and why, is in the plan's `reduced`)."""
    return plan_folds(run_pace(run), settings)


def label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Positions of likely label errors, most likely first (cleanlab's find_label_issues:
    confident learning, pruned by noise rate, ranked by self-confidence)."""
    from cleanlab.filter import find_label_issues

    return np.asarray(
        find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1),
        dtype=np.int64,
    )


def row_keys(raw: Any) -> np.ndarray:
    """(N,) uint64: a hash of each raw sample (a table row, an array sample); equal samples
    get equal keys (`gradwise.data.leakage.sample_keys`, as the split's own scan)."""
    return sample_keys(raw)


def duplicate_groups(keys: np.ndarray) -> list[np.ndarray]:
    """Positions of samples that share a key, one array per group of two or more, the
    largest groups first."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    groups = [g for g in np.split(order, bounds) if len(g) > 1]
    return sorted(groups, key=len, reverse=True)


@dataclass(frozen=True)
class Pairs:
    """Near-duplicate pairs: positions in a and in b, their cosine, and how many there were
    (`count` goes on past the MAX_PAIRS kept)."""

    a: np.ndarray
    b: np.ndarray
    cosine: np.ndarray
    count: int


def near_duplicate_pairs(a: np.ndarray, b: np.ndarray | None, threshold: float) -> Pairs:
    """Pairs with cosine similarity >= threshold between rows of a and rows of b (b None:
    within a, each pair once), computed a block of rows at a time so that at most CHUNK
    similarities exist at once; the strongest MAX_PAIRS pairs are kept."""
    an = _unit(a)
    bn = an if b is None else _unit(b)
    step = max(1, CHUNK // max(1, len(bn)))
    found_a, found_b, found_cos, count = [], [], [], 0
    for s in range(0, len(an), step):
        sims = an[s : s + step] @ bn.T  # (block, len(b))
        if b is None:  # only j > i
            sims = np.where(
                np.arange(len(bn))[None, :] > np.arange(s, s + len(sims))[:, None], sims, -1.0
            )
        i, j = np.nonzero(sims >= threshold)
        count += len(i)
        found_a.append(i + s)
        found_b.append(j)
        found_cos.append(sims[i, j])
        if sum(len(x) for x in found_a) > 2 * MAX_PAIRS:
            found_a, found_b, found_cos = _strongest(found_a, found_b, found_cos)
    fa, fb, fc = _strongest(found_a, found_b, found_cos)
    return Pairs(fa[0], fb[0], fc[0], count)


def _strongest(
    a: list[np.ndarray], b: list[np.ndarray], cos: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    ca, cb, cc = (np.concatenate(x) if x else np.zeros(0) for x in (a, b, cos))
    keep = np.argsort(-cc, kind="stable")[:MAX_PAIRS]
    return [ca[keep].astype(np.int64)], [cb[keep].astype(np.int64)], [cc[keep]]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def feature_health(
    df: pd.DataFrame, columns: list[str], missing_warn: float
) -> tuple[list[str], dict[str, float]]:
    """Columns that hold a single value (constant) and those missing in at least
    `missing_warn` of the rows, with their missing share."""
    constant = [c for c in columns if df[c].nunique(dropna=True) <= 1]
    share = df[columns].isna().mean()
    heavy = {str(c): float(v) for c, v in share.items() if v >= missing_warn}
    return constant, heavy


def outlier_scores(embeddings: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """IsolationForest (100 trees, contamination "auto") on the embeddings: an anomaly score
    per sample (higher: more isolated) and whether the forest calls it an outlier."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=100, random_state=seed % 2**32).fit(embeddings)
    return -forest.score_samples(embeddings), forest.predict(embeddings) == -1
