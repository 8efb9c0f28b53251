"""scikit-learn estimators over gradwise's own machinery: `NeuralClassifier` and
`NeuralRegressor` build a config from their parameters and train it with the pipeline.

    from gradwise.sklearn import NeuralClassifier
    clf = NeuralClassifier(hidden=(64,), lr=3e-3, epochs=20).fit(X, y)
    clf.predict_proba(X_new)

They work in `Pipeline`, `GridSearchCV` and `cross_val_score`, and `clone` them like any
estimator. Each parameter is a config key (`lr` is train.optimizer.lr, `hidden`
model.hidden, ...); `config={"train.grad_clip": None}` sets any other key. Arrays or
DataFrames come in (a DataFrame's categorical columns are one-hot encoded, its gaps
imputed, as for a CSV); `validation_fraction` of the rows is held out for the per-epoch
validation, early stopping and the best epoch. Training runs in a temporary folder that is
removed afterwards: nothing is written to disk unless `run_dir` is given, and then that
folder holds a normal run (predict, serve, audit on new data).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from gradwise.config import Config, load_config
from gradwise.run import Run

__all__ = ["NeuralClassifier", "NeuralRegressor"]

ARCHS = ("mlp", "cnn", "rnn", "lstm", "gru")
_NDIM = {"mlp": 2, "cnn": 4, "rnn": 3, "lstm": 3, "gru": 3}  # the X each architecture takes


class _NeuralEstimator(BaseEstimator):
    """What both estimators share: parameters -> Config -> pipeline -> Run."""

    _task: Literal["classification", "regression"]

    def __init__(
        self,
        hidden: tuple[int, ...] = (128,),
        arch: str = "mlp",
        activation: str = "relu",
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        schedule: str = "cosine",
        epochs: int = 30,
        batch_size: int = 64,
        patience: int | None = 10,
        validation_fraction: float = 0.1,
        random_state: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        config: dict[str, Any] | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        self.hidden = hidden
        self.arch = arch
        self.activation = activation
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.schedule = schedule
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.threads = threads
        self.config = config
        self.run_dir = run_dir

    # ------------------------------------------------------------ config

    def to_config(self, seed: int = 0) -> Config:
        """The gradwise config these parameters stand for (what `fit` trains).

        Raises:
            ConfigError: a parameter (or a `config` key) is invalid, with the fix.
        """
        from gradwise.errors import ConfigError

        if self.arch not in ARCHS:
            raise ConfigError(
                f"arch={self.arch!r}: the estimators build {', '.join(ARCHS)}; train the "
                "others from a config with gradwise.train."
            )
        hidden = [int(h) for h in np.atleast_1d(self.hidden)]
        model: dict[str, Any] = {
            "arch": self.arch,
            "activation": self.activation,
            "dropout": self.dropout,
        }
        match self.arch:
            case "mlp":
                model["hidden"] = hidden
            case "cnn":
                model["channels"] = hidden
            case _:  # recurrent: one width, one layer per entry
                model = {"arch": self.arch, "hidden": hidden[0], "layers": len(hidden)}
                model["dropout"] = self.dropout
        raw = {
            "name": type(self).__name__,
            "seed": seed,
            "data": {"source": f"memory:{type(self).__name__}", "task": self._task},
            "model": model,
            "train": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "optimizer": {
                    "name": self.optimizer,
                    "lr": self.lr,
                    "weight_decay": self.weight_decay,
                },
                "schedule": {"name": self.schedule},
                "early_stopping": {"patience": self.patience},
                "device": self.device,
                "threads": self.threads,
                "diagnostics": False,
                "checkpoint": self.run_dir is not None,
            },
        }
        return load_config(raw, dict(self.config or {}))

    # ------------------------------------------------------------ fitting

    def _fit(self, X: Any, y: Any) -> Run:
        from gradwise.data.memory import memory_dataset
        from gradwise.pipeline import train_run

        seed = self._seed()
        cfg = self.to_config(seed)
        data = memory_dataset(X, y, cfg.data, seed, self.validation_fraction)
        if self.run_dir is not None:
            run = train_run(cfg, self.run_dir, overwrite=True, data=data)
        else:
            with tempfile.TemporaryDirectory(prefix="gradwise-sklearn-") as tmp:
                run = train_run(cfg, Path(tmp) / "run", data=data)
                self._learned(run)
            return run
        self._learned(run)
        return run

    def _learned(self, run: Run) -> None:
        """What the run wrote that outlives its folder."""
        self.history_ = run.history
        self.best_epoch_ = int(run.metrics["best_epoch"])

    def _threads(self) -> contextlib.AbstractContextManager[None]:
        """Predict with the thread count training chose (the same rule and setting)."""
        from gradwise.training.threads import choose_threads, use_threads

        n_params = sum(p.numel() for p in self.run_.model.parameters())
        work = n_params * self.run_.config.train.batch_size
        return use_threads(choose_threads(self.threads, work).n)

    def _seed(self) -> int:
        if isinstance(self.random_state, int | np.integer):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _check_X_y(self, X: Any, y: Any) -> tuple[Any, np.ndarray]:
        """X as the data layer takes it (a DataFrame stays one), y as an array."""
        multi = self._task == "regression"
        if isinstance(X, pd.DataFrame):  # the tabular builder checks and encodes its columns
            y = validate_data(self, "no_validation", y, multi_output=multi, y_numeric=multi)
            validate_data(self, X, reset=True, skip_check_array=True)  # after y: names stay
            check_consistent_length(X, y)
            return X, y
        X, y = validate_data(
            self,
            X,
            y,
            dtype=(np.float64, np.float32),
            allow_nd=_NDIM[self.arch] > 2,
            multi_output=multi,
            y_numeric=multi,
        )
        self._check_ndim(X)
        return X, y

    def _check_X(self, X: Any) -> Any:
        check_is_fitted(self)
        if isinstance(X, pd.DataFrame) or self.run_.schema.tabular is not None:
            if not isinstance(X, pd.DataFrame):  # fitted on a frame: name the columns again
                X = validate_data(self, X, reset=False, dtype=None, ensure_all_finite=False)
                return pd.DataFrame(X, columns=self.feature_names_in_)
            validate_data(self, X, reset=False, skip_check_array=True)
            return X
        X = validate_data(
            self, X, reset=False, dtype=(np.float64, np.float32), allow_nd=_NDIM[self.arch] > 2
        )
        self._check_ndim(X)
        return X

    def _check_ndim(self, X: np.ndarray) -> None:
        want = _NDIM[self.arch]
        if X.ndim != want:
            shapes = {
                2: "(n_samples, n_features)",
                3: "(n_samples, steps, features)",
                4: "(n_samples, channels, height, width)",
            }
            raise ValueError(f"arch={self.arch!r} takes X of shape {shapes[want]}; got {X.shape}.")


class NeuralClassifier(ClassifierMixin, _NeuralEstimator):
    """A gradwise network as a scikit-learn classifier.

    Args:
        hidden: layer widths (mlp: model.hidden; cnn: model.channels; rnn/lstm/gru: one
            width, len(hidden) layers).
        arch: mlp (X of shape (N, F)), cnn (N, C, H, W), rnn, lstm or gru (N, T, F).
        activation: model.activation.
        dropout: model.dropout.
        lr: train.optimizer.lr.
        weight_decay: train.optimizer.weight_decay.
        optimizer: train.optimizer.name.
        schedule: train.schedule.name (constant, cosine, onecycle, ...).
        epochs: train.epochs.
        batch_size: train.batch_size.
        patience: train.early_stopping.patience (on the validation loss); None: off.
        validation_fraction: rows held out for validation; 0 (or under 20 rows)
            validates on the training rows.
        random_state: the run's seed (None: a fresh one per fit).
        device: train.device (auto, cpu, cuda).
        threads: CPU threads for training and prediction (train.threads); None: the
            GRADWISE_THREADS variable, else 1 for small models and every core for large ones
            (gradwise.training.threads.choose_threads).
        config: any other config keys, dotted: {"train.loss.label_smoothing": 0.1}.
        run_dir: write the run there (replacing what was there); None: nothing on disk.

    Attributes:
        classes_: the labels, sorted; predict_proba's columns are in this order.
        n_features_in_, feature_names_in_: as scikit-learn sets them.
        run_: the trained gradwise Run (its model, schema and config).
        history_: one record per epoch (train and validation metrics).
        best_epoch_: the epoch whose weights the model holds (best validation loss).
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> NeuralClassifier:
        X, y = self._check_X_y(X, y)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"NeuralClassifier needs at least 2 classes in y; got 1 class ({classes[0]!r})."
            )
        self.classes_ = classes
        self.run_ = self._fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) class probabilities, columns in the order of `classes_`."""
        X = self._check_X(X)
        with self._threads():
            return self.run_.predict_proba(X).astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


class NeuralRegressor(RegressorMixin, _NeuralEstimator):
    """A gradwise network as a scikit-learn regressor; y may hold several targets (N, K).

    Takes the same parameters as NeuralClassifier; targets are standardised with the
    training rows' mean and std for training and predicted in their own units.

    Attributes:
        n_features_in_, feature_names_in_, run_, history_, best_epoch_: as for
            NeuralClassifier.
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> NeuralRegressor:
        X, y = self._check_X_y(X, y)
        self.run_ = self._fit(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        X = self._check_X(X)
        with self._threads():
            return np.asarray(self.run_.predict(X), dtype=np.float64)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
