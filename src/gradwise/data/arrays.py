"""Arrays (npz, images, idx, built-in digits): read, split, then standardise per channel with
statistics from the training samples only."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradwise.config import DataConfig
from gradwise.data.dataset import Dataset
from gradwise.data.schema import Schema
from gradwise.data.split import SplitResult, split_samples
from gradwise.data.target import TargetSpec, infer_task
from gradwise.errors import DataError


@dataclass(frozen=True)
class ArrayNormaliser:
    """Per-channel mean/std over the training split.

    Attributes:
        sample_shape: shape of one raw sample: (F,), (C, H, W) or (T, F).
        channel_axis: the axis of a batch that holds channels/features (1 for images, -1 else).
    """

    sample_shape: list[int]
    channel_axis: int
    mean: list[float]
    std: list[float]
    pixel_low: float = 0.0  # the raw value range of the training split (e.g. 0..16, 0..255)
    pixel_high: float = 1.0

    @staticmethod
    def fit(x: np.ndarray) -> ArrayNormaliser:
        axis = 1 if x.ndim == 4 else x.ndim - 1
        reduce = tuple(a for a in range(x.ndim) if a != axis)
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=reduce)
        std = x64.std(axis=reduce)
        std[std < 1e-8] = 1.0
        return ArrayNormaliser(
            sample_shape=list(x.shape[1:]),
            channel_axis=1 if x.ndim == 4 else -1,
            mean=mean.tolist(),
            std=std.tolist(),
            pixel_low=float(x.min()),
            pixel_high=float(x.max()),
        )

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        shape = list(self.sample_shape)
        if list(x.shape) == shape:  # a single sample
            x = x[None]
        elif len(shape) == 3 and shape[0] == 1 and list(x.shape[-2:]) == shape[1:]:
            x = x.reshape(-1, *shape)  # (H, W) or (N, H, W) grayscale
        elif x.ndim <= 2 and x.shape[-1] == int(np.prod(shape)) and len(shape) > 1:
            x = x.reshape(-1, *shape)  # flattened samples
        if list(x.shape[1:]) != self.sample_shape:
            raise DataError(
                f"Input has shape {tuple(x.shape[1:])} per sample but the model was trained on "
                f"{tuple(self.sample_shape)}; reshape or resize the input to match."
            )
        if x.dtype.kind not in "iufb":
            raise DataError(f"Input must be numeric, got dtype {x.dtype}.")
        shape = [1] * x.ndim
        shape[self.channel_axis] = -1
        mean = np.array(self.mean, dtype=np.float32).reshape(shape)
        std = np.array(self.std, dtype=np.float32).reshape(shape)
        out = (x.astype(np.float32) - mean) / std
        if not np.isfinite(out).all():
            raise DataError("Input holds NaN or infinite values; fill or drop those samples.")
        return out


def check_arrays(x: np.ndarray, y: np.ndarray, origin: str) -> None:
    """Shapes and values a model can train on, or a DataError that says what is wrong."""
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{origin}: X has shape {x.shape}; expected (N, F) table, (N, T, F) sequences "
            "or (N, C, H, W) images."
        )
    if len(x) != len(y):
        raise DataError(f"{origin}: X has {len(x)} samples but y has {len(y)}; they must match.")
    if x.dtype.kind not in "iufb":
        raise DataError(f"{origin}: X must be numeric, got dtype {x.dtype}.")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise DataError(f"{origin}: {bad} samples of X hold NaN or inf; fill or drop them.")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise DataError(
            f"{origin}: the target y has {int(np.isnan(y).sum())} NaN values; drop those samples."
        )


# ------------------------------------------------------------------ building a dataset


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays X (or x) and y from an .npz archive; object arrays are refused (no pickles)."""
    x, y, _ = read_npz_arrays(path)
    return x, y


SPLIT_ARRAYS = ("groups", "time")  # optional npz arrays that say how the samples were made


def read_npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """X (or x), y and the optional per-sample arrays `groups` (a machine, a patient: each
    kept in one split) and `time` (orders the samples) of an .npz archive."""
    if not path.is_file():
        raise DataError(f"npz file {path} not found; check data.source.")
    arrays = load_numpy(path)
    if not isinstance(arrays, dict) or "y" not in arrays or not {"X", "x"} & arrays.keys():
        found = ", ".join(sorted(arrays)) if isinstance(arrays, dict) else "a single array"
        raise DataError(
            f"{path} must be an .npz archive holding arrays named X and y; found {found}. "
            "Write it with np.savez(path, X=X, y=y) (and groups=..., time=... per sample)."
        )
    x = arrays["X"] if "X" in arrays else arrays["x"]
    extras = {k: arrays[k] for k in SPLIT_ARRAYS if k in arrays}
    for name, values in extras.items():
        if values.ndim != 1 or len(values) != len(x):
            raise DataError(
                f"{path}: the array {name!r} has shape {values.shape}; it must hold one value "
                f"per sample of X, shape ({len(x)},)."
            )
    return x, arrays["y"], extras


def load_numpy(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """The array in an .npy file, or every array in an .npz archive by name.

    Raises:
        DataError: the file is missing, is not numpy data, or holds object arrays.
    """
    if not path.is_file():
        raise DataError(f"numpy file {path} not found; check the path.")
    # our own handle: np.load(path) leaves the file open when the archive is corrupt
    with path.open("rb") as fh:
        if not fh.read(6).startswith((b"PK", b"\x93NUMPY")):  # zip (.npz) or .npy header
            raise DataError(f"{path} is not numpy data; write it with np.savez(path, X=X, y=y).")
        fh.seek(0)
        try:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                return {k: np.asarray(loaded[k]) for k in loaded.files}
        except ValueError as exc:
            if "pickle" in str(exc) or "Object arrays" in str(exc):
                raise DataError(
                    f"{path} holds object (pickled) arrays, which are refused because loading "
                    "them can run code; save plain numeric or string arrays."
                ) from None
            raise DataError(f"Cannot read {path} as numpy data: {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"Cannot read {path} as numpy data: {exc}") from None


def build_arrays(
    x: np.ndarray,
    y: np.ndarray,
    cfg: DataConfig,
    seed: int,
    image_size: int | None = None,
    color: str | None = None,
    indices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    extras: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """Arrays X (N, ...) and targets y as a Dataset, standardised with train statistics.

    Args:
        indices: the train, val and test sample positions; None: drawn from cfg.split.
        extras: an npz archive's per-sample `groups` and `time` arrays, if any.
    """
    extras = extras or {}
    if cfg.limit is not None:
        x, y = x[: cfg.limit], y[: cfg.limit]
        extras = {k: v[: cfg.limit] for k, v in extras.items()}
    check_arrays(x, y, cfg.source)
    y = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    task = infer_task(y, cfg.task)
    if task == "regression" and y.dtype.kind not in "iufb":
        raise DataError(
            f"{cfg.source}: the target y holds labels ({', '.join(map(str, np.unique(y)[:3]))}, "
            "...), not numbers, but the task is regression; set data.task: classification."
        )
    if task == "classification" and y.ndim != 1:
        raise DataError(
            f"{cfg.source}: classification takes one label per sample, but y has shape "
            f"{y.shape}; for several numeric targets set data.task: regression."
        )
    if indices is None:
        stratify = y if task == "classification" else None
        split = _split_arrays(x, cfg, seed, stratify, extras)
    else:
        split = SplitResult(*indices, rule={"method": "given"})
    tr, va, te = split.indices
    norm = ArrayNormaliser.fit(x[tr])
    spec = (
        TargetSpec.fit_classes(y) if task == "classification" else TargetSpec.fit_regression(y[tr])
    )
    kind = {2: "tabular", 3: "sequence", 4: "image"}[x.ndim]
    n_out = len(spec.classes) if spec.classes else (y.shape[1] if y.ndim == 2 else 1)
    schema = Schema(
        kind=kind,  # type: ignore[arg-type]
        task=task,  # type: ignore[arg-type]
        input_shape=list(x.shape[1:]),
        n_outputs=n_out,
        target=spec,
        source=cfg.source,
        array=norm,
        image_size=image_size,
        color=color,  # type: ignore[arg-type]
    )
    return Dataset.from_arrays(
        norm.transform(x),
        spec.encode(y),
        (tr, va, te),
        schema,
        notes=split.notes,
        raw=x,
        split_rule=split.rule,
        fold_key=split.fold_key,
    )


def _split_arrays(
    x: np.ndarray,
    cfg: DataConfig,
    seed: int,
    stratify: np.ndarray | None,
    extras: dict[str, np.ndarray],
) -> SplitResult:
    """The split of array samples: by the npz `groups` array when it is there (or named by
    data.split.by), in the order of its `time` array for order: time."""
    by, order_by = cfg.split.by, cfg.split.time
    for key, name in (("by", by), ("time", order_by)):
        if name is not None and name not in extras:
            have = ", ".join(extras) or "none"
            raise DataError(
                f"data.split.{key}: {name!r} names no per-sample array of {cfg.source} "
                f"(found: {have}). Save it in the archive: np.savez(path, X=X, y=y, "
                f"{name}=...) with one value per sample."
            )
    group_key = by or ("groups" if "groups" in extras and cfg.split.order != "time" else None)
    time_key = order_by or ("time" if "time" in extras else None)
    return split_samples(
        len(x),
        cfg.split,
        seed,
        stratify=stratify,
        inputs=x,
        groups=extras.get(group_key) if group_key else None,
        group_name=f"{group_key} (npz array)" if group_key else None,
        time=extras.get(time_key) if time_key else None,
        time_name=f"{time_key} (npz array)" if time_key else None,
    )
