"""Head-only retrains: the learning curve and the out-of-fold labels of a text encoder
without retraining the encoder.

Retraining a BERT for every fraction or fold costs minutes to hours; its classifier is one
linear layer on the encoder's features. In head mode the run embeds every training and test
row once with its trained encoder (`Run.embed`), and each retrain fits only a fresh linear
head on those frozen embeddings: a multinomial logistic regression (scikit-learn, L2 with
C = 1, lbfgs, up to 1000 iterations) on embeddings standardised with the fitted rows' mean
and standard deviation, the same shape as the model's own `nn.Linear` classifier.

The trade (TRADE, written into each check's settings and summary): the encoder saw every
training row, so the curve measures what the head gains from more rows, and the out-of-fold
labels come from a head that never saw a row but an encoder that did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gradwise.auditing.retrain_budget import FULL_FRACTIONS, CurvePlan, Retrain
from gradwise.errors import ConfigError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from gradwise.config import GeneralisationAudit
    from gradwise.run import Run

RetrainMode = Literal["full", "head"]
ENCODERS = ("bert", "hf_encoder")  # auto picks head mode for these text encoders
HEAD = (
    "a fresh logistic regression (scikit-learn, L2, C = 1, lbfgs, up to 1000 iterations) on "
    "the trained encoder's embeddings (Run.embed), standardised on the rows it is fitted on"
)
TRADE = (
    "the encoder was trained on every training row, so this curve measures what the head "
    "gains from more rows; out-of-fold labels are less independent than with full retrains"
)


def retrain_mode(run: Run, setting: str, key: str) -> RetrainMode:
    """The retrain mode a check uses: `setting` (full | head | auto); auto is head for a
    text encoder (model.arch bert or hf_encoder) that classifies, else full.

    Raises:
        ConfigError: head was asked of a run that does not classify (`key` names the setting).
    """
    classifies = run.schema.task == "classification"
    if setting == "auto":
        return "head" if classifies and run.config.model.arch in ENCODERS else "full"
    if setting == "head" and not classifies:
        raise ConfigError(
            f"{key}=head fits a logistic-regression head, which needs a classification run "
            f"(this one is {run.schema.task}); set {key}=full."
        )
    return "head" if setting == "head" else "full"


def fit_head(emb: np.ndarray, y: np.ndarray) -> Pipeline:
    """A fresh head fitted on (N, D) embeddings and (N,) integer labels (see HEAD); rows of
    one class alone (a tiny fraction or fold) get that class's prior, since a logistic
    regression needs two."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y)) < 2:
        return make_pipeline(DummyClassifier(strategy="prior")).fit(emb, y)
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(emb, y)


def head_probabilities(head: Pipeline, emb: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) probabilities of a fitted head; classes it never saw get 0."""
    probs = np.zeros((len(emb), n_classes))
    probs[:, head.classes_] = head.predict_proba(emb)
    return probs


def fraction_rows(n_train: int, share: float, seed: int) -> np.ndarray:
    """Sorted positions of round(share * n_train) training rows (at least 2), drawn without
    replacement with numpy's default_rng(seed); every row when share >= 1."""
    size = max(2, min(n_train, round(share * n_train)))
    if size >= n_train:
        return np.arange(n_train)
    return np.sort(np.random.default_rng(seed).choice(n_train, size=size, replace=False))


def embeddings(run: Run, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float64 embeddings of one split by the trained encoder, and its (N,) labels."""
    part = run.split(split)
    return run.embed(part.x).numpy().astype(np.float64), part.y.numpy()


def head_curve_value(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    share: float,
    seed: int,
) -> tuple[int, float]:
    """Training rows used and test accuracy of a head fitted on `share` of the training
    embeddings (rows drawn by `fraction_rows` with `seed`)."""
    (emb, y), (test_emb, test_y) = train, test
    rows = fraction_rows(len(y), share, seed)
    head = fit_head(emb[rows], y[rows])
    return len(rows), float((head.predict(test_emb) == test_y).mean())


def head_out_of_fold(
    emb: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) probabilities of each training row from a head fitted without its fold, and
    each row's fold; `folds` are (kept, held-out) positions (`data.split.fold_splits`)."""
    probs = np.zeros((len(y), max(n_classes, 2)))
    fold_of = np.zeros(len(y), dtype=np.int64)
    for k, (keep, held_out) in enumerate(folds):
        head = fit_head(emb[keep], y[keep])
        probs[held_out] = head_probabilities(head, emb[held_out], probs.shape[1])
        fold_of[held_out] = k
    return probs, fold_of


def head_record(mode: RetrainMode) -> dict[str, Any]:
    """What a check's settings say about its retrains in `mode`."""
    if mode == "full":
        return {"retrain_used": "full"}
    return {"retrain_used": "head", "head": HEAD, "trade": TRADE}


def head_plan(settings: GeneralisationAudit) -> CurvePlan:
    """The head-mode learning curve: settings.fractions (null: FULL_FRACTIONS) and seeds
    (null: 2) below 0.5, every point a head fit (none reused: the run's own point is the
    fine-tuned model, not a head on frozen embeddings); head fits cost next to nothing, so
    budget_s does not reduce them."""
    fractions = tuple(sorted(set(settings.fractions or FULL_FRACTIONS)))
    seeds = settings.seeds or 2
    points = tuple(
        Retrain(f, k, False, 0.0) for f in fractions for k in range(seeds if f < 0.5 else 1)
    )
    return CurvePlan(fractions, seeds, points)
