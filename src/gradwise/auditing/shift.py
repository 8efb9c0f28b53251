"""Shift: has the data changed since training, and would we notice if it did?

    gradwise audit RUN --checks shift                      # power against simulated shifts
    gradwise audit RUN --checks shift --against new.csv    # is new.csv like the training data?

The detectors (`gradwise.auditing.drift`) compare the training split with other data: on the raw
columns for tables (numeric columns with KS, PSI and Wasserstein; categorical columns with
chi-squared and PSI; all with MMD and a domain classifier), on the model's embeddings
(`Run.embed`, reduced to principal components) for images, sequences and text. The check
also measures detection power: what the detectors notice at the chosen sample size when rows
of the training and test splits are shifted on purpose (`gradwise.auditing.shift_power`).
Without --against, that power (and the test split against the training split) is the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.artifacts import atomic_write_text
from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, Verdict
from gradwise.auditing.drift import DriftReport, DriftSettings, detect, prepare
from gradwise.auditing.shift_power import (
    PowerReport,
    ShiftSpace,
    describe,
    detection_power,
    plot_power,
    power_table,
)
from gradwise.config import BERTConfig, DiffusionConfig, ShiftAudit
from gradwise.data.tabular import TabularPreprocessor
from gradwise.data.text import PAD
from gradwise.errors import DataError
from gradwise.run import Run
from gradwise.run_predict import BATCH_ROWS

PLOT = "shift_power.png"
TABLE = "shift_power.txt"
_LISTED = 10  # most-drifted features named in the JSON
_PCA_ROWS = 5000  # training rows the embeddings' principal components are fitted on
_LENGTH_BATCH = 256  # texts per encoder pass when their padding is cut (similar lengths)
_NOISY_LEVEL = 0.01  # false alarms beyond chance at this level make the power verdict warn


def check(run: Run, settings: ShiftAudit, ctx: AuditContext) -> CheckResult:
    """The shift check (see the module docstring)."""
    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model has no embeddings to compare; shift needs one")
    view = shift_view(run, settings.embedding_components, ctx.seed)
    space = view.space
    drift = drift_settings(settings)
    rng = np.random.default_rng(ctx.seed)
    metrics: dict[str, Any] = {"space": "raw columns" if space.kind == "table" else view.what}
    current = None  # read before the power measurement, so bad --against data fails at once
    if ctx.against is not None:
        current = against_sample(run, view, ctx.against, settings.sample_size, rng)
    plots: tuple[str, ...] = ()
    power: PowerReport | None = None
    no_power = "audit.shift.power is off"
    if settings.power and not space.shifts:
        no_power = (
            "every input column is categorical, so no simulated shift (noise, scale, drop) "
            "applies and power cannot be measured"
        )
        metrics["power"] = {"skipped": no_power}
    elif settings.power:
        n = min(settings.sample_size, (len(space.train) + len(space.test)) // 2)
        if n < 10:
            raise NotApplicable(f"train and test hold {2 * n} rows; power needs 20")
        power = detection_power(
            space, drift, n, settings.power_repeats, settings.power_target, ctx.seed
        )
        ctx.out.mkdir(parents=True, exist_ok=True)
        plot_power(power, ctx.out / PLOT)
        atomic_write_text(ctx.out / TABLE, power_table(power))
        metrics["power"] = power.to_dict()
        plots = (PLOT,)
    reference = space.unshifted("train", _sample(len(space.train), settings.sample_size, rng))
    if ctx.against is None or current is None:
        if power is None:
            raise NotApplicable(f"no --against data and {no_power}: nothing to measure")
        test = space.unshifted("test", _sample(len(space.test), settings.sample_size, rng))
        split = detect(prepare(reference, space.detector_categorical), test, drift, seed=rng)
        metrics["train_vs_test"] = split.to_dict()
        verdict, headline, summary = _power_verdict(power, drift, space.kind, split)
    else:
        rows, n_rows = current
        report = detect(prepare(reference, space.detector_categorical), rows, drift, seed=rng)
        metrics["against"] = {"data": ctx.against, "rows": n_rows, **report.to_dict()}
        metrics["most_drifted"] = _most_drifted(report, view.names)
        verdict, headline, summary = _against_verdict(report, settings, ctx.against, view, n_rows)
    return CheckResult(
        check="shift",
        verdict=verdict,
        headline=headline,
        summary=summary,
        metrics=metrics,
        settings=settings.model_dump(mode="json"),
        plots=plots,
    )


def drift_settings(settings: ShiftAudit) -> DriftSettings:
    """The detectors' settings from the config's audit.shift section."""
    return DriftSettings(
        alpha=settings.alpha,
        correction=settings.correction,
        bins=settings.bins,
        ks_threshold=settings.ks_warn,
        chi2_threshold=settings.chi2_warn,
        psi_threshold=settings.psi_warn,
        wasserstein_threshold=settings.wasserstein_warn,
        mmd_threshold=settings.mmd_warn,
        auc_threshold=settings.auc_warn,
        permutations=settings.permutations,
        classifier=settings.classifier,
    )


# ---------------------------------------------------------------- where the detectors look


@dataclass(frozen=True)
class View:
    """What the detectors compare for a run.

    Attributes:
        space: the splits in the form the simulated shifts change, and how the detectors
            see such rows.
        names: the tested columns' names (tables); None for embeddings.
        from_inputs: model-ready inputs to the detectors' space (embeddings, then their
            principal components); None for tables, which are compared on raw columns.
        what: what one tested feature is, in words.
    """

    space: ShiftSpace
    names: list[str] | None
    from_inputs: Callable[[Tensor], np.ndarray] | None
    what: str


def shift_view(run: Run, components: int, seed: int) -> View:
    """The run's training and test splits as the detectors see them (see `View`).

    Args:
        components: principal components of the embeddings kept (fitted on the training
            embeddings); 0 keeps every dimension.
    """
    schema = run.schema
    train, test = run.split("train"), run.split("test")
    labels = None
    if schema.task == "classification" and test.y.ndim == 1:
        labels = np.concatenate([train.y.numpy(), test.y.numpy()])
    if schema.tabular is not None:
        prep = schema.tabular
        categorical = tuple(range(len(prep.numeric), len(prep.columns)))
        pools = table_matrix(train.raw, prep), table_matrix(test.raw, prep)
        space = ShiftSpace("table", *pools, lambda x: x, labels, categorical)
        return View(space, list(prep.columns), None, "features")

    fit_rows = torch.from_numpy(_sample(len(train), _PCA_ROWS, np.random.default_rng(seed)))
    # text: embed every training and test message once, here; the principal components, the
    # power simulation's unshifted rows and the split comparison all read these (an encoder
    # pass is the audit's cost: the spam BERT embeds a few hundred messages a second)
    train_emb = _embed(run, train.x) if schema.kind == "tokens" else None
    fit = train_emb[fit_rows.numpy()] if train_emb is not None else _embed(run, train.x[fit_rows])
    project, what = _projection(fit, components)

    def from_inputs(x: Tensor) -> np.ndarray:
        return project(_embed(run, x))

    def from_raw(x: np.ndarray) -> np.ndarray:
        return from_inputs(run.transform(x.astype(np.float32)))

    def from_ids(x: np.ndarray) -> np.ndarray:
        return from_inputs(torch.as_tensor(x))

    if schema.kind == "image":
        space = ShiftSpace("image", _floats(train.raw), _floats(test.raw), from_raw, labels)
        return View(space, None, from_inputs, what)
    if schema.kind == "sequence" and schema.series is not None:
        prep = schema.series.features
        order = run.config.data.features or [schema.series.target]
        categorical = tuple(range(len(prep.numeric), len(prep.columns)))

        def from_windows(x: np.ndarray) -> np.ndarray:
            return from_inputs(torch.from_numpy(series_inputs(x, prep)))

        pools = series_matrix(train.raw, order, prep), series_matrix(test.raw, order, prep)
        space = ShiftSpace("sequence", *pools, from_windows, labels, categorical)
        return View(space, None, from_inputs, what)
    tok = schema.tokenizer
    if schema.kind != "tokens" or tok is None:
        raise NotApplicable(f"shift does not know how to read {schema.kind} inputs of this run")
    space = ShiftSpace(
        "tokens",
        train.x.numpy(),
        test.x.numpy(),
        from_ids,
        labels,
        specials=tuple(tok.specials.all()),
        vocab_size=tok.vocab_size,
        pooled=project(np.concatenate([train_emb, _embed(run, test.x)])),
    )
    return View(space, None, from_inputs, what)


def _embed(run: Run, x: Tensor) -> np.ndarray:
    if isinstance(run.config.model, BERTConfig):
        return _embed_by_length(run, x)
    return run.embed(x).numpy().astype(np.float64)


def _embed_by_length(run: Run, x: Tensor) -> np.ndarray:
    """A BERT's embeddings of (N, T) token rows, in batches of similar length with their
    trailing padding cut off.

    BERT masks padding out of attention and out of its mean (models/bert.py), so a text's
    encoding does not depend on the padding after it: the cut changes the embeddings by
    float rounding only (4.8e-7 at most on the spam BERT). SMS messages fill 29 of its 64
    positions on average, and the cut made the encoder 2-3x faster here.
    """
    if len(x) == 0:
        return run.embed(x).numpy().astype(np.float64)
    last = torch.where(x != PAD, torch.arange(x.shape[1]), -1).amax(dim=1) + 1  # (N,)
    order = torch.argsort(last, stable=True)
    parts = []
    for start in range(0, len(x), _LENGTH_BATCH):
        rows = order[start : start + _LENGTH_BATCH]
        parts.append(run.embed(x[rows, : max(1, int(last[rows].max()))]))
    by_length = torch.cat(parts)  # (N, D) in `order`
    out = torch.empty_like(by_length)
    out[order] = by_length
    return out.numpy().astype(np.float64)


def _projection(
    embeddings: np.ndarray, components: int
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Centring and projection onto the top principal components of training embeddings
    (fewer, decorrelated features: fewer tests to correct for, faster multivariate tests)."""
    d = embeddings.shape[1]
    if components == 0 or d <= components:
        return (lambda z: z), "embedding dimensions"
    mean = embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
    basis = vt[:components].T  # (d, components)
    return (lambda z: (z - mean) @ basis), f"principal components of the {d}-d embeddings"


def _floats(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def table_matrix(df: pd.DataFrame, prep: TabularPreprocessor) -> np.ndarray:
    """Raw rows as an (N, columns) float matrix: numeric columns as numbers, categorical
    columns as codes of the training vocabulary (-1: a category training never saw);
    missing values are NaN.

    Raises:
        DataError: a column the model was trained on is missing.
    """
    missing = [c for c in prep.columns if c not in df.columns]
    if missing:
        raise DataError(
            f"The data lacks the column(s) {', '.join(missing)} the model was trained on; "
            f"expected columns: {', '.join(prep.columns)}."
        )
    num = df[prep.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    parts = [num.reshape(len(df), len(prep.numeric))]
    for col, vocab in zip(prep.categorical, prep.vocab):
        index = {v: float(i) for i, v in enumerate(vocab)}
        values = df[col]
        text = values.astype(object).astype(str).str.strip()
        codes = text.map(lambda v, index=index: index.get(v, -1.0)).to_numpy(dtype=np.float64)
        parts.append(np.where(values.isna().to_numpy(), np.nan, codes)[:, None])
    return np.concatenate(parts, axis=1)


def table_rows(m: np.ndarray, prep: TabularPreprocessor) -> pd.DataFrame:
    """The inverse of `table_matrix`: codes back to the training vocabulary (-1: <other>)."""
    n_num = len(prep.numeric)
    frame = pd.DataFrame(m[:, :n_num], columns=prep.numeric)
    for j, (col, vocab) in enumerate(zip(prep.categorical, prep.vocab)):
        codes = m[:, n_num + j]
        known = np.nan_to_num(codes, nan=0.0).astype(np.int64).clip(0, len(vocab) - 1)
        frame[col] = np.where(np.isnan(codes), None, np.asarray(vocab, dtype=object)[known])
    return frame


def series_matrix(raw: np.ndarray, order: list[str], prep: TabularPreprocessor) -> np.ndarray:
    """(N, T, F) raw series windows (columns in data.features order, text included) as
    (N, T, columns) floats in the preprocessor's column order (see `table_matrix`)."""
    n, t, f = raw.shape
    rows = table_matrix(pd.DataFrame(raw.reshape(n * t, f), columns=order), prep)
    return rows.reshape(n, t, -1)


def series_inputs(m: np.ndarray, prep: TabularPreprocessor) -> np.ndarray:
    """(N, T, columns) windows from `series_matrix` to (N, T, features) model inputs."""
    n, t, c = m.shape
    return prep.transform(table_rows(m.reshape(n * t, c), prep)).reshape(n, t, -1)


def against_sample(
    run: Run, view: View, location: str, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """A uniform sample of at most `size` rows of the --against data as the detectors see
    them, and the rows the data held. A table (file, folder of shards or glob) is streamed:
    memory holds the sample plus one batch, not the table. Other data is read whole.

    Raises:
        DataError: the data cannot be read, lacks the run's columns or shape, or holds
            fewer than 2 samples.
    """
    from gradwise.data.readers import load_labelled, model_columns, read_inputs
    from gradwise.data.stream import sample_table

    schema, cfg = run.schema, run.config.data
    if view.from_inputs is not None:
        try:
            x = load_labelled(location, schema, cfg, flag="--against").x
        except DataError:
            x = run.transform(read_inputs(location, schema, cfg))
        if len(x) < 2:
            raise DataError(f"--against {location} holds {len(x)} samples; give at least 2.")
        return view.from_inputs(x[torch.from_numpy(_sample(len(x), size, rng))]), len(x)
    assert schema.tabular is not None
    sampled = sample_table(location, cfg, model_columns(schema), size, rng, BATCH_ROWS)
    if sampled is None:  # not a table by its name (an .npz, say): read whole
        whole = read_inputs(location, schema, cfg)
        if not isinstance(whole, pd.DataFrame):
            raise DataError(
                f"--against {location} is an array, but this run reads a table (columns "
                f"{', '.join(model_columns(schema) or [])}); give a CSV or parquet table."
            )
        sampled = whole.iloc[_sample(len(whole), size, rng)], len(whole)
    raw, n_rows = sampled
    if n_rows < 2:
        raise DataError(f"--against {location} holds {n_rows} rows; give at least 2.")
    return table_matrix(raw, schema.tabular), n_rows


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, k, replace=False)) if n > k else np.arange(n)


# ---------------------------------------------------------------- verdicts and sentences


def _against_verdict(
    report: DriftReport, settings: ShiftAudit, location: str, view: View, n_rows: int = 0
) -> tuple[Verdict, str, str]:
    """Verdict, headline, summary; `n_rows`: rows --against held (report.n_current sampled)."""
    psi, auc, mmd = report.get("psi"), report.get("domain_auc"), report.get("mmd")
    verdict: Verdict = "warn" if report.drifted else "pass"
    psi_fails = (
        psi is not None
        and psi.features is not None
        and bool((psi.features.drifted & (psi.features.effect >= settings.psi_fail)).any())
    )
    if psi_fails or (auc is not None and auc.drifted and auc.effect >= settings.auc_fail):
        verdict = "fail"
    flagged = _flagged_columns(report)
    top = _most_drifted_flagged(report, flagged, view.names)
    numbers = []
    if top is not None:
        numbers.append(f"most: {top[0]}, PSI {top[1]:.2f}")
    if psi is not None and (top is None or psi.effect > top[1]):
        numbers.append(f"largest PSI of any {_feature_word(view)} {psi.effect:.2f}")
    if auc is not None:
        numbers.append(f"domain AUC {auc.effect:.2f}")
    summary = (
        f"against {location}: {len(flagged)} of {report.n_features} {view.what} drifted "
        f"({'; '.join(numbers)})"
    )
    if mmd is not None:
        on = "" if view.from_inputs is None else " on embeddings"
        summary += f"; MMD{on} {_p_text(mmd.p_value)}, MMD^2 {mmd.effect:.4f}"
    drawn = f" of {n_rows}" if n_rows > report.n_current else ""
    summary += f" ({report.n_reference} vs {report.n_current}{drawn} rows)."
    parts = [f"{top[0]} PSI {top[1]:.2f}" if top else f"0/{report.n_features} drifted"]
    if auc is not None:
        parts.append(f"AUC {auc.effect:.2f}")
    return verdict, ", ".join(parts), summary


def _most_drifted_flagged(
    report: DriftReport, flagged: set[int], names: list[str] | None
) -> tuple[str, float] | None:
    """The flagged column with the largest PSI, by name, and that PSI; None when no column
    is flagged or PSI did not run."""
    psi = report.get("psi")
    if not flagged or psi is None or psi.features is None:
        return None
    f = psi.features
    candidates = [j for j, col in enumerate(f.columns) if int(col) in flagged]
    if not candidates:
        return None
    j = max(candidates, key=lambda i: float(f.effect[i]))
    col = int(f.columns[j])
    return (names[col] if names else f"feature {col}"), float(f.effect[j])


def _feature_word(view: View) -> str:
    return "column" if view.names else "feature"


def _flagged_columns(report: DriftReport) -> set[int]:
    flagged: set[int] = set()
    for r in report.results:
        if r.features is not None:
            flagged.update(int(c) for c in r.features.columns[r.features.drifted])
    return flagged


def _most_drifted(report: DriftReport, names: list[str] | None) -> list[dict[str, Any]]:
    """The columns with the largest PSI, with their per-detector effects."""
    psi = report.get("psi")
    if psi is None or psi.features is None:
        return []
    order = np.argsort(-psi.features.effect)[:_LISTED]
    rows = []
    for i in order:
        col = int(psi.features.columns[i])
        row: dict[str, Any] = {"column": names[col] if names else col}
        for r in report.results:
            if r.features is not None and col in r.features.columns:
                j = int(np.flatnonzero(r.features.columns == col)[0])
                row[r.detector] = float(r.features.effect[j])
                row[f"{r.detector}_drifted"] = bool(r.features.drifted[j])
        rows.append(row)
    return rows


def _power_verdict(
    power: PowerReport, drift: DriftSettings, kind: str, split: DriftReport
) -> tuple[Verdict, str, str]:
    from scipy.stats import binom

    noticed = [c for c in power.curves if c.best is not None]
    # more false alarms than chance allows: a binomial test at 1%, Bonferroni over detectors
    level = _NOISY_LEVEL / max(1, len(power.false_alarm))
    noisy = sorted(
        d
        for d, rate in power.false_alarm.items()
        if binom.sf(round(rate * power.repeats) - 1, power.repeats, drift.alpha) < level
    )
    parts = []
    for c in power.curves:
        best = c.best
        parts.append(
            f"{describe(kind, c.shift, best[0])} ({best[1]})"
            if best
            else f"no {c.shift} up to {describe(kind, c.shift, c.magnitudes[-1])}"
        )
    summary = (
        f"no --against data, so this measures power: at {power.n} rows per side the "
        f"detectors notice {', '.join(parts)}"
    )
    worst = max(power.false_alarm.values(), default=0.0)
    if noisy:
        summary += (
            f"; but unshifted samples are flagged more often than alpha {drift.alpha:g} "
            f"allows by {', '.join(noisy)} (up to {worst:.0%} of repeats)"
        )
    else:
        summary += (
            f"; false alarms on unshifted data at most {worst:.0%} of {power.repeats} repeats "
            f"(within chance at alpha {drift.alpha:g})"
        )
    if split.drifted:
        flagged = ", ".join(r.detector for r in split.results if r.drifted)
        summary += f"; the test split itself differs from training ({flagged})"
    summary += "."
    verdict: Verdict = "pass"
    if noisy or split.drifted or len(noticed) < len(power.curves):
        verdict = "warn"
    if not noticed:
        verdict = "fail"
    headline = f"{len(noticed)}/{len(power.curves)} shifts noticed at n={power.n}"
    return verdict, headline, summary


def _p_text(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return f"p<{max(p, 0.001):.3f}" if p <= 0.005 else f"p={p:.3f}"
