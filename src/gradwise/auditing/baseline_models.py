"""The classical baselines of the baseline check, one builder per kind of data; each returns
the baselines and notes on what they were given (see `audit/baseline.py`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.classical import ClassicalBaseline

if TYPE_CHECKING:
    from gradwise.config import BaselineAudit
    from gradwise.run import Run, SplitView

RIDGE_ALPHAS = np.logspace(-3, 3, 13)
Notes = dict[str, Any]


def _quietly(fit: Callable[[], np.ndarray], notes: Notes, name: str) -> np.ndarray:
    """Run a fit, turning scikit-learn's convergence warnings into a note."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pred = fit()
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.setdefault("warnings", []).append(f"{name}: stopped at max_iter, not converged")
    return pred


def _subsample(n: int, cap: int, seed: int) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _targets(run: Run, split: SplitView) -> np.ndarray:
    if run.schema.task == "classification":
        return split.y.numpy()
    enc = split.y.double().numpy().reshape(len(split.y), -1)
    return np.asarray(run.schema.target.decode(enc), dtype=np.float64)


def level_offset(run: Run, split: SplitView) -> np.ndarray:
    """(N, 1) what turns a split's decoded targets and outputs into the target's units: each
    window's last value for a forecaster of changes (data.difference), else 0; so the
    network, the baselines and the truth are compared in levels."""
    series = run.schema.series
    if series is None or not series.difference:
        return np.zeros((len(split), 1))
    return series.last_levels(np.asarray(split.raw))[:, None]


def _boosting_is_random(n: int) -> bool:
    """HistGradientBoosting draws at random only for its early-stopping split (on by default
    above 10,000 rows) and its binning subsample (above 200,000): below, every seed fits the
    same model."""
    return n > 10_000


def matrix_baselines(
    run: Run,
    settings: BaselineAudit,
    x_train: np.ndarray,
    train: SplitView,
    x_test: np.ndarray,
    what: str,
    with_boosting: bool = True,
) -> tuple[list[ClassicalBaseline], Notes]:
    """Logistic regression (or ridge) and gradient boosting on feature matrices."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.multioutput import MultiOutputRegressor

    keep = _subsample(len(x_train), settings.max_train_rows, run.config.seed)
    x, y = x_train[keep], _targets(run, train)[keep]
    notes: Notes = {"features": what, "n_fitted": len(keep)}
    if len(keep) < len(x_train):
        notes["subsample"] = f"{len(keep):,} of {len(x_train):,} training rows (seeded)"
    out: list[ClassicalBaseline] = []
    if run.schema.task == "classification":
        out.append(
            ClassicalBaseline(
                "logistic regression",
                lambda seed: _quietly(
                    lambda: LogisticRegression(max_iter=2000).fit(x, y).predict(x_test),
                    notes,
                    "logistic regression",
                ),
                stochastic=False,
            )
        )
        if with_boosting:
            out.append(
                ClassicalBaseline(
                    "gradient boosting",
                    lambda seed: (
                        HistGradientBoostingClassifier(random_state=seed).fit(x, y).predict(x_test)
                    ),
                    stochastic=_boosting_is_random(len(x)),
                )
            )
        return out, notes

    out.append(
        ClassicalBaseline(
            "ridge",
            lambda seed: (
                RidgeCV(alphas=RIDGE_ALPHAS).fit(x, y).predict(x_test).reshape(len(x_test), -1)
            ),
            stochastic=False,
        )
    )
    if with_boosting:

        def boosting(seed: int) -> np.ndarray:
            model = HistGradientBoostingRegressor(random_state=seed)
            if y.shape[1] == 1:
                return model.fit(x, y[:, 0]).predict(x_test)[:, None]
            return MultiOutputRegressor(model).fit(x, y).predict(x_test)

        out.append(ClassicalBaseline("gradient boosting", boosting, _boosting_is_random(len(x))))
    return out, notes


def text_baselines(
    run: Run, settings: BaselineAudit, train: SplitView, test: SplitView
) -> tuple[list[ClassicalBaseline], Notes]:
    """TF-IDF of words and word pairs, then logistic regression (ridge for a regression)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline

    column = run.schema.text_column
    assert column is not None
    keep = _subsample(len(train), settings.max_train_rows, run.config.seed)
    texts = train.raw[column].astype(str).to_numpy()[keep]
    test_texts = test.raw[column].astype(str).to_numpy()
    y = _targets(run, train)[keep]
    notes: Notes = {"features": f"raw texts of column {column!r}", "n_fitted": len(keep)}

    def tfidf() -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)

    if run.schema.task == "classification":

        def fit(seed: int) -> np.ndarray:
            model = make_pipeline(tfidf(), LogisticRegression(C=10.0, max_iter=2000))
            return _quietly(lambda: model.fit(texts, y).predict(test_texts), notes, "tf-idf")

        return [ClassicalBaseline("tf-idf + logistic regression", fit, stochastic=False)], notes

    def fit_ridge(seed: int) -> np.ndarray:
        model = make_pipeline(tfidf(), RidgeCV(alphas=RIDGE_ALPHAS))
        return model.fit(texts, y).predict(test_texts).reshape(len(test_texts), -1)

    return [ClassicalBaseline("tf-idf + ridge", fit_ridge, stochastic=False)], notes


def forecasting_baselines(
    run: Run, settings: BaselineAudit, train: SplitView, test: SplitView
) -> tuple[list[ClassicalBaseline], Notes]:
    """Last value, seasonal naive and ridge on the lags, for windows of a series; their
    forecasts in the target's units (ridge, like the run, fits changes under data.difference
    and adds each window's last value back)."""
    from sklearn.linear_model import RidgeCV

    series = run.schema.series
    assert series is not None
    horizon, window = run.schema.n_outputs, series.window
    cols = series.features.columns
    y_train = _targets(run, train)  # changes from the window's last value under difference
    x_lags = train.x.flatten(1).double().numpy()
    x_lags_test = test.x.flatten(1).double().numpy()
    offset_test = level_offset(run, test)
    out = [
        ClassicalBaseline(
            "ridge on lags",
            lambda seed: (
                RidgeCV(alphas=RIDGE_ALPHAS).fit(x_lags, y_train).predict(x_lags_test) + offset_test
            ),
            stochastic=False,
        )
    ]
    notes: Notes = {"features": f"the {window} past rows of {', '.join(cols)}"}
    if series.target not in cols:
        notes["naive"] = (
            f"the target {series.target!r} is not among the model's inputs, so the last value "
            "and seasonal naive forecasts cannot be read from the windows"
        )
        return out, notes
    raw_test = _raw_series_column(run, test.raw, series.target)  # (N, T)
    last = raw_test[:, -1:]
    out.insert(0, ClassicalBaseline("last value", lambda seed: np.repeat(last, horizon, 1), False))
    levels = y_train[:, 0] + level_offset(run, train)[:, 0]  # the series, one step ahead
    period, how = _season(settings.season, levels, window)
    notes["season"] = how
    if period is not None:
        # step k ahead takes the value a whole number of seasons back, inside the window
        back = [window + k - period * ((k // period) + 1) for k in range(horizon)]
        out.insert(
            1, ClassicalBaseline(f"seasonal naive ({period})", lambda s: raw_test[:, back], False)
        )
    return out, notes


def _raw_series_column(run: Run, raw: np.ndarray, name: str) -> np.ndarray:
    """(N, T) values of one numeric column of raw series windows. The windows hold the
    columns in data.features order (text columns too), not the preprocessor's."""
    series = run.schema.series
    assert series is not None
    order = run.config.data.features or [series.target]
    return np.asarray(raw[:, :, order.index(name)], dtype=np.float64)


def _season(setting: int | None, y: np.ndarray, window: int) -> tuple[int | None, str]:
    """The season length: the setting, or the lag (2..window) of the highest autocorrelation
    of the differenced training series when it is above 0.3."""
    if setting is not None:
        if setting > window:
            return None, (
                f"season {setting} (audit.baseline.season) is longer than the window "
                f"({window}): the seasonal naive forecast cannot be read from it"
            )
        return setting, f"season {setting} (audit.baseline.season)"
    d = np.diff(y)
    d = d - d.mean()
    denom = float(d @ d)
    lags = range(2, min(window, len(d) // 2) + 1)
    if denom == 0 or not lags:
        return None, "no season: the training series is too short or constant"
    acf = {lag: float(d[lag:] @ d[:-lag]) / denom for lag in lags}
    best = max(acf, key=acf.__getitem__)
    if acf[best] < 0.3:
        return None, (
            f"no season found (the highest autocorrelation of the differenced training series "
            f"for lags 2-{max(lags)} is {acf[best]:.2f} at lag {best}, below 0.3)"
        )
    return best, (
        f"season {best}, inferred: the highest autocorrelation ({acf[best]:.2f}) of the "
        f"differenced training series for lags 2-{max(lags)}"
    )
