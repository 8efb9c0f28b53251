"""Arrays (npz, images, idx, built-in digits): per-channel standardisation fitted on train."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
