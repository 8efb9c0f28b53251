"""The audit's settings: which checks, against what, and one class per check with its
thresholds of pass / warn / fail; `AuditSettings` holds them all (the config's `audit:`).

Every setting is written into the check's RUN/audit/<check>.json, because numbers compare
only with their settings. `gradwise.config` re-exports every name here.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator

from gradwise.settings import Strict as _Strict

CheckName = Literal[
    "generalisation",
    "baseline",
    "calibration",
    "uncertainty",
    "selective",
    "slices",
    "fairness",
    "robustness",
    "shift",
    "data_quality",
]
CHECK_NAMES: tuple[str, ...] = get_args(CheckName)


class GeneralisationAudit(_Strict):
    fractions: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(
        None,
        description="training-data fractions of the learning curve; null: 0.1, 0.2, 0.3, "
        "0.5, 0.75, 1.0, or fewer when their retrains would not fit budget_s",
    )
    seeds: int | None = Field(
        None,
        ge=1,
        description="seeds per fraction below 0.5 (one above); null: 2, or 1 when the "
        "retrains would not fit budget_s",
    )
    budget_s: float = Field(
        60.0,
        gt=0,
        description="seconds of retraining that null fractions and seeds aim at, estimated "
        "from the run's own training time (metrics.json) and data size",
    )
    epochs: int | None = Field(None, ge=1, description="epochs per retrain; null: the run's")
    scale_epochs: bool = Field(
        True,
        description="multiply a retrain's epochs by 1 / fraction, so it takes as many "
        "optimiser steps as the run (early stopping still ends it)",
    )
    learning_curve: bool = Field(True, description="retrain on the fractions (false: gap only)")
    retrain: Literal["full", "head", "auto"] = Field(
        "auto",
        description="full: retrain the whole model per point; head: embed once with the trained "
        "encoder and fit a fresh logistic-regression head per point (the curve then measures "
        "what the head gains from more rows); auto: head for text encoders (bert, hf_encoder) "
        "that classify, else full",
    )
    gap_warn: float = Field(
        0.05, ge=0, description="train - test gap of a higher-is-better metric (accuracy)"
    )
    gap_fail: float = Field(0.15, ge=0)
    relative_gap_warn: float = Field(
        0.2, ge=0, description="(test - train) / test of a lower-is-better metric (RMSE, loss)"
    )
    relative_gap_fail: float = Field(0.5, ge=0)


class BaselineAudit(_Strict):
    seeds: int = Field(3, ge=1, description="seeds of each stochastic baseline (its noise)")
    metric: Literal["auto", "accuracy", "f1_macro", "rmse", "mae"] = Field(
        "auto",
        description="test metric compared; auto: accuracy (classes; macro-F1 when a class "
        "holds under 10% of the training rows) or rmse (values)",
    )
    margin_warn: float = Field(
        0.0, ge=0, description="warn when the network beats the best baseline by less than this"
    )
    max_train_rows: int = Field(
        50_000, ge=10, description="training rows the baselines are fitted on (seeded subsample)"
    )
    season: int | None = Field(
        None,
        ge=2,
        description="forecasting: season length of the seasonal naive forecast; "
        "null: inferred from the training series' autocorrelation",
    )


class CalibrationAudit(_Strict):
    bins: int = Field(15, ge=2, description="confidence bins (equal width and equal mass)")
    ece_warn: float = Field(0.05, ge=0)
    ece_fail: float = Field(0.15, ge=0)
    store_temperature: bool = Field(
        True, description="store the fitted temperature in the run (predict applies it)"
    )
    max_tokens: int = Field(
        200_000, ge=1, description="language models: test tokens whose predictions are scored"
    )


class UncertaintyAudit(_Strict):
    coverage: float = Field(0.9, gt=0, lt=1, description="target coverage of sets/intervals")
    method: Literal["aps", "lac"] = Field(
        "aps", description="classification score: adaptive sets (aps) or 1 - p(true) (lac)"
    )
    randomised: bool = Field(
        True,
        description="aps: randomised sets (exact coverage); false: every class up to the one "
        "that crosses the quantile (never empty, coverage at or above the target)",
    )
    regression_score: Literal["absolute", "normalised"] = Field(
        "normalised",
        description="regression: |residual| (one width), or |residual| / difficulty estimate "
        "(narrower where the model is usually right)",
    )
    coverage_tolerance: float = Field(
        0.03, ge=0, description="warn when test coverage falls this far below the target"
    )
    coverage_fail: float = Field(
        0.1, ge=0, description="fail when test coverage falls this far below the target"
    )
    store: bool = Field(True, description="store the quantiles in the run (predict uses them)")
    per_class: bool = Field(
        False,
        description="classification: one quantile per class (Mondrian conformal): coverage "
        "holds within every class, at the price of larger sets",
    )
    min_class: int = Field(
        20, ge=1, description="classes with fewer test rows are listed, not graded"
    )


Rate = Annotated[float, Field(gt=0, lt=1)]


class SelectiveAudit(_Strict):
    alpha: Rate | list[Rate] = Field(
        0.02,
        description="the error rate promised among the answered inputs, at most; a list "
        "certifies several (the first is the one predict and serve apply)",
    )
    delta: Rate | list[Rate] = Field(
        0.1,
        description="the chance the promise is wrong (over the draw of validation rows): "
        "0.1 is 90% confidence; a list pairs with alpha's",
    )
    score: Literal["auto", "probability", "margin", "set_size"] = Field(
        "auto",
        description="what ranks inputs from sure to unsure: the top-class probability, with "
        "the run's stored temperature if any (auto, for classifiers), the top-two margin, "
        "or the conformal set size (needs the uncertainty check's stored sets); regression "
        "always ranks by the "
        "difficulty estimate sigma(x)",
    )
    tolerance: float | None = Field(
        None,
        gt=0,
        description="regression: an answer is wrong when |y - prediction| exceeds this, in "
        "the target's units (required for regression)",
    )
    store: bool = Field(
        True, description="store the certified threshold in the run (predict and serve use it)"
    )

    def pairs(self) -> list[tuple[float, float]]:
        """The (alpha, delta) pairs to certify, in order: lists pair up; one number goes with
        each of the other's."""
        alphas = self.alpha if isinstance(self.alpha, list) else [self.alpha]
        deltas = self.delta if isinstance(self.delta, list) else [self.delta]
        if len(alphas) > 1 and len(deltas) > 1 and len(alphas) != len(deltas):
            raise ValueError(
                f"audit.selective has {len(alphas)} alphas and {len(deltas)} deltas; give one "
                "delta for all, or one per alpha"
            )
        n = max(len(alphas), len(deltas))
        return [
            (alphas[i if len(alphas) > 1 else 0], deltas[i if len(deltas) > 1 else 0])
            for i in range(n)
        ]

    @field_validator("alpha", "delta")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one value")
        return value


class SlicesAudit(_Strict):
    min_size: int = Field(
        30, ge=5, description="rows a slice must hold (in each half) to be reported"
    )
    q: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="false-discovery rate of the Benjamini-Hochberg correction over every "
        "candidate slice tested",
    )
    bins: int = Field(8, ge=2, description="quantile bins of each number column")
    pairs: bool = Field(True, description="also test pairs of conditions (a and b)")
    clusters: int = Field(
        8, ge=2, description="images, text, sequences: clusters of the run's own embeddings"
    )
    max_candidates: int = Field(
        5000, ge=1, description="candidate slices tested, at most (the largest first)"
    )
    bootstrap: int = Field(1000, ge=100, description="resamples of each reported gap's interval")
    max_listed: int = Field(10, ge=1, description="slices described in the sentence and report")
    gap_warn: float = Field(
        0.05,
        ge=0,
        description="a confirmed slice whose error exceeds the rest's by this warns "
        "(classifiers: error-rate points; regressions: relative, slice MAE / rest MAE - 1)",
    )
    gap_fail: float = Field(0.15, ge=0)


class FairnessAudit(_Strict):
    groups: list[str] = Field(
        default_factory=list,
        description="columns that name the groups to compare (e.g. [sex, race]); kept among "
        "the model's inputs or not, as the data config says; empty: the check is n/a",
    )
    positive: str | None = Field(
        None,
        description="the class counted as selected (selection rate, true/false-positive "
        "rates); null: the second class of a binary target, the rarest of several",
    )
    parity_warn: float = Field(
        0.1, ge=0, description="demographic-parity difference (selection rates) that warns"
    )
    parity_fail: float = Field(0.2, ge=0)
    odds_warn: float = Field(
        0.1, ge=0, description="equalised-odds difference (largest TPR or FPR gap) that warns"
    )
    odds_fail: float = Field(0.2, ge=0)
    accuracy_gap_warn: float = Field(0.05, ge=0, description="largest accuracy gap that warns")
    accuracy_gap_fail: float = Field(0.1, ge=0)
    error_gap_warn: float = Field(
        0.1,
        ge=0,
        description="regression: relative MAE gap that warns: (largest minus smallest group "
        "MAE) / the MAE of all test rows, over the groups of at least min_group test rows",
    )
    error_gap_fail: float = Field(0.25, ge=0)
    min_group: int = Field(
        30, ge=1, description="groups with fewer test rows are listed but not graded"
    )
    bootstrap: int = Field(1000, ge=100, description="resamples of each interval")
    mitigation: Literal["demographic_parity", "true_positive_rate_parity", "off"] = Field(
        "demographic_parity",
        description="binary classifiers: the rate that group thresholds, fitted on the "
        "validation split, equalise (selection rate, or true-positive rate); they are written "
        "as a variant, RUN/artifacts/fair-<constraint>/, never applied to the run; off: none",
    )


class RobustnessAudit(_Strict):
    eps: list[Annotated[float, Field(ge=0)]] | None = Field(
        None,
        description="attack radii in `units` (0 is always added); null: 0 and 1/64 .. 1/4 of "
        "the raw value range (arrays, images), 0 .. 1 standard deviation (tables)",
    )
    reference_eps: float | None = Field(
        None,
        gt=0,
        description="the radius the verdict reads; null: 1/16 of the raw value range "
        "(arrays, images) or 0.25 standard deviations (tables)",
    )
    units: Literal["auto", "raw", "std"] = Field(
        "auto",
        description="raw: the data's own units (normalisation undone first); std: standard "
        "deviations of each column; auto: raw for arrays and images, std for tables",
    )
    steps: int = Field(10, ge=1, description="PGD steps")
    step_size: float | None = Field(
        None, gt=0, description="PGD step as a fraction of eps; null: 2.5 / steps"
    )
    restarts: int = Field(
        1, ge=1, description="PGD runs per radius: the first from x, the others from random starts"
    )
    norm: Literal["linf", "l2", "both"] = Field(
        "both", description="L2 radii are eps * sqrt(d): at most eps root-mean-square per value"
    )
    max_samples: int = Field(1000, ge=1, description="test samples attacked (seeded sample)")
    attacks: Literal["auto", "on", "off"] = Field(
        "auto",
        description="gradient attacks (FGSM, PGD) in the threat model; auto: on for images, "
        "off for tables and series, whose verdict then reads corruptions and sensor noise "
        "(categorical columns are never attacked)",
    )
    corruptions: bool = Field(True, description="also measure common corruptions")
    drop_warn: float = Field(
        0.1,
        ge=0,
        description="accuracy lost at the reference eps, or under the worst corruption at its "
        "middle severity when attacks are off (regression: RMSE increase)",
    )
    drop_fail: float = Field(0.3, ge=0)


class ShiftAudit(_Strict):
    alpha: float = Field(0.05, gt=0, lt=1, description="false-alarm rate of every test")
    sample_size: int = Field(
        1000, ge=10, description="rows per side for the detectors (a random sample of more)"
    )
    permutations: int = Field(200, ge=10, description="MMD permutation test")
    correction: Literal["bh", "holm"] = Field(
        "bh", description="per-feature multiple-testing correction: Benjamini-Hochberg or Holm"
    )
    bins: int = Field(10, ge=2, description="PSI bins, cut at training-data quantiles")
    psi_warn: float = Field(0.1, ge=0, description="population stability index")
    psi_fail: float = Field(0.25, ge=0)
    auc_warn: float = Field(0.6, ge=0.5, le=1, description="domain-classifier ROC-AUC")
    auc_fail: float = Field(0.75, ge=0.5, le=1)
    ks_warn: float = Field(0.1, ge=0, le=1, description="Kolmogorov-Smirnov D")
    chi2_warn: float = Field(0.1, ge=0, le=1, description="Cramer's V of a categorical column")
    wasserstein_warn: float = Field(0.1, ge=0, description="W1 distance, in training stds")
    mmd_warn: float = Field(0.002, description="MMD^2 (RBF kernel, median bandwidth)")
    classifier: Literal["quadratic", "hgb"] = Field(
        "quadratic",
        description="domain classifier: logistic regression on x and x^2, or gradient boosting",
    )
    embedding_components: int = Field(
        32,
        ge=0,
        description="images, text, sequences: the detectors compare this many principal "
        "components of the embeddings (fitted on training embeddings); 0: every dimension",
    )
    power: bool = Field(True, description="measure detection power with simulated shifts")
    power_repeats: int = Field(20, ge=2, description="repeats per simulated shift (power)")
    power_target: float = Field(
        0.8, gt=0, le=1, description="share of repeats a detector must flag to notice a shift"
    )


class DataQualityAudit(_Strict):
    folds: int | None = Field(
        None,
        ge=2,
        description="k-fold retrains for out-of-fold probabilities; null: 5, or 4 or 3 when "
        "5 would not fit budget_s",
    )
    epochs: int | None = Field(
        None,
        ge=1,
        description="epochs per fold; null: the run's best epoch (metrics.json), or fewer "
        "when 3 folds of it would not fit budget_s",
    )
    budget_s: float = Field(
        60.0,
        gt=0,
        description="seconds of fold retraining that null folds and epochs aim at, estimated "
        "from the run's own training time (metrics.json) and data size",
    )
    retrain: Literal["full", "head", "auto"] = Field(
        "full",
        description="full: retrain the whole model per fold; head: embed once with the trained "
        "encoder and fit a fresh logistic-regression head per fold, 8x faster on the spam BERT "
        "but it hides most label errors (the encoder saw every row: 3 flagged against full "
        "retrains' 30), so it is not the default; auto: head for text encoders (bert, "
        "hf_encoder) that classify, else full",
    )
    label_issue_warn: float = Field(0.01, ge=0, description="share of likely label errors")
    label_issue_fail: float = Field(0.05, ge=0)
    near_duplicate_cosine: float = Field(
        0.999,
        gt=0,
        le=1,
        description="cosine of centred embeddings that counts as a near copy (0.995 also "
        "pairs distinct samples whose embeddings a trained model has collapsed together)",
    )
    leakage_fail: float = Field(
        0.01, ge=0, description="share of val/test samples exactly in training that fails"
    )
    missing_warn: float = Field(
        0.3, gt=0, le=1, description="share of missing values that makes a column missing-heavy"
    )
    imbalance_warn: float = Field(
        10.0, ge=1, description="largest / smallest class count that warns"
    )
    max_listed: int = Field(20, ge=1, description="worst rows listed by row number")


class AuditSettings(_Strict):
    checks: list[CheckName] | None = Field(
        None,
        description="the checks to run, in this order; null: all of them (generalisation, "
        "baseline, calibration, uncertainty, selective, slices, fairness, robustness, shift, "
        "data_quality)",
    )
    against: str | None = Field(
        None,
        description="other data for the shift check (KIND:PATH, or a path): is it like the "
        "training data? null: the test split against training",
    )
    generalisation: GeneralisationAudit = GeneralisationAudit()
    baseline: BaselineAudit = BaselineAudit()
    calibration: CalibrationAudit = CalibrationAudit()
    uncertainty: UncertaintyAudit = UncertaintyAudit()
    selective: SelectiveAudit = SelectiveAudit()
    slices: SlicesAudit = SlicesAudit()
    fairness: FairnessAudit = FairnessAudit()
    robustness: RobustnessAudit = RobustnessAudit()
    shift: ShiftAudit = ShiftAudit()
    data_quality: DataQualityAudit = DataQualityAudit()

    @field_validator("checks", mode="before")
    @classmethod
    def _check_names(cls, value: Any) -> Any:
        """`a,b` or a list; data-quality reads as data_quality; a typo names the check meant."""
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            return value
        names = [v.strip().replace("-", "_") if isinstance(v, str) else v for v in value]
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown:
            hints = []
            for n in unknown:
                close = difflib.get_close_matches(str(n), CHECK_NAMES, n=1)
                hints.append(f"{n!r}" + (f" (did you mean {close[0]}?)" if close else ""))
            raise ValueError(
                f"audit.checks names {', '.join(hints)}; the checks are {', '.join(CHECK_NAMES)}"
            )
        return names or None
