"""Common corruptions: how the model fares on inputs that are worse, not adversarial.

Images: gaussian noise, blur, lower contrast, an occluding square. Tables: noise on the
numeric columns (in standard deviations) and missing values, imputed as the preprocessor
does (raw cells set to missing go through `run.transform`). Text: character edits (swap,
delete, insert) at a rate per character, through `run.transform`. Sequences and arrays read
as tables: gaussian noise in standard deviations. Series (sensor readings) also get held
readings: a share of the time steps lose their numeric readings, which repeat the last one
(a sensor that drops out). Every corruption is seeded and applied to the raw values, in the
data's own units, so severities read as the user's data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from gradwise.run import Run

# severities, mildest first; the middle one is the reference the summary quotes
NOISE_OF_RANGE = (0.04, 0.08, 0.16)  # images: noise std as a fraction of the value range
BLUR_SIGMA_PX = (0.5, 1.0, 1.5)
CONTRAST = (0.6, 0.4, 0.2)  # contrast kept (1: unchanged)
OCCLUDED_SIDE = (0.25, 0.375, 0.5)  # side of the square as a fraction of the image side
NOISE_STD = (0.1, 0.25, 0.5)  # tables and sequences: noise in standard deviations
MISSING_SHARE = (0.1, 0.25, 0.5)
EDIT_RATE = (0.02, 0.05, 0.1)  # text: character edits per character
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Corrupted:
    """One corruption at one severity, ready to score.

    Attributes:
        name: gaussian_noise, blur, contrast, occlusion, feature_noise, missing_values or
            char_edits.
        severity: its strength, in `unit`.
        unit: what the severity measures.
        x: (N, ...) corrupted inputs in model units.
    """

    name: str
    severity: float
    unit: str
    x: Tensor


def corruptions(run: Run, x: Tensor, raw: Any, seed: int) -> tuple[list[Corrupted], list[str]]:
    """Every corruption that applies to this run's data, at each severity.

    Args:
        x: (N, ...) clean inputs in model units; raw: the same samples as read (the split's
            raw rows), for tables and text.

    Returns:
        The corrupted inputs, and notes on corruptions that do not apply and why.
    """
    schema = run.schema
    gen = np.random.default_rng(seed)
    if schema.kind == "image" and schema.array is not None:
        return list(_image(run, x, gen)), []
    if schema.kind == "tokens":
        if schema.text_column is None:
            return [], ["character edits apply to labelled text; this run reads a corpus"]
        return list(_text(run, raw, schema.text_column, gen)), []
    if schema.tabular is not None:
        return list(_table(run, raw, gen)), []
    notes = []
    if schema.kind == "tabular":
        notes.append("missing values: array data has no imputer (npz X must be complete)")
    if schema.series is not None:
        n_numeric = len(schema.series.features.numeric)
        return [*_noise(x, gen, n_numeric), *_held_readings(x, gen, n_numeric)], notes
    return list(_noise(x, gen, None)), notes


# ------------------------------------------------------------------ images


def _image(run: Run, x: Tensor, gen: np.random.Generator) -> Iterator[Corrupted]:
    norm = run.schema.array
    assert norm is not None
    mean = torch.tensor(norm.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=x.dtype).view(1, -1, 1, 1)
    low, high = norm.pixel_low, norm.pixel_high
    span = high - low
    raw = x * std + mean  # (N, C, H, W) in the data's own units

    def model_units(images: Tensor) -> Tensor:
        return (images.clamp(low, high) - mean) / std

    for level in NOISE_OF_RANGE:
        noise = torch.from_numpy(gen.normal(0.0, level * span, raw.shape)).to(raw.dtype)
        yield Corrupted(
            "gaussian_noise",
            level,
            "std as a fraction of the value range",
            model_units(raw + noise),
        )
    for sigma in BLUR_SIGMA_PX:
        yield Corrupted("blur", sigma, "gaussian sigma in pixels", model_units(_blur(raw, sigma)))
    for kept in CONTRAST:
        centre = raw.mean(dim=(2, 3), keepdim=True)
        yield Corrupted(
            "contrast",
            kept,
            "contrast kept (1 = unchanged)",
            model_units(centre + kept * (raw - centre)),
        )
    for side in OCCLUDED_SIDE:
        yield Corrupted(
            "occlusion",
            side,
            "square side as a fraction of the image side",
            model_units(_occlude(raw, side, mean, gen)),
        )


def _blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (N, C, H, W) images, edges repeated."""
    n, c, h, w = images.shape
    radius = max(1, min(math.ceil(2 * sigma), min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _occlude(images: Tensor, side: float, fill: Tensor, gen: np.random.Generator) -> Tensor:
    """A square of `side` x the image side at a random place in each image, filled with the
    training mean of each channel."""
    out = images.clone()
    n, _, h, w = images.shape
    sh, sw = max(1, round(side * h)), max(1, round(side * w))
    tops = gen.integers(0, h - sh + 1, n)
    lefts = gen.integers(0, w - sw + 1, n)
    for i, (top, left) in enumerate(zip(tops, lefts)):
        out[i, :, top : top + sh, left : left + sw] = fill[0]
    return out


# ------------------------------------------------------------------ tables and sequences


def _table(run: Run, raw: pd.DataFrame, gen: np.random.Generator) -> Iterator[Corrupted]:
    prep = run.schema.tabular
    assert prep is not None
    stds = np.array(prep.stds)
    for level in NOISE_STD:
        noisy = raw.copy()
        if prep.numeric:
            values = noisy[prep.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(float)
            noisy[prep.numeric] = values + gen.normal(0.0, 1.0, values.shape) * stds * level
        yield Corrupted(
            "feature_noise",
            level,
            "standard deviations of each numeric column",
            run.transform(noisy),
        )
    for share in MISSING_SHARE:
        holed = raw.copy()
        for col in prep.columns:
            gone = gen.random(len(holed)) < share
            holed[col] = holed[col].astype(object).where(~gone, np.nan)
        yield Corrupted(
            "missing_values",
            share,
            "share of cells missing (imputed as trained)",
            run.transform(holed.infer_objects()),
        )


def _noise(x: Tensor, gen: np.random.Generator, n_numeric: int | None) -> Iterator[Corrupted]:
    """Arrays read as tables or sequences, and series windows: their model units are
    standard deviations. A series' one-hot columns (after its `n_numeric` numeric ones) stay."""
    for level in NOISE_STD:
        noise = torch.from_numpy(gen.normal(0.0, level, x.shape)).to(x.dtype)
        if n_numeric is not None:
            noise[..., n_numeric:] = 0
        yield Corrupted("feature_noise", level, "standard deviations of each feature", x + noise)


def _held_readings(x: Tensor, gen: np.random.Generator, n_numeric: int) -> Iterator[Corrupted]:
    """Series windows (N, T, F): a share of the time steps after the first keep the numeric
    readings of the step before (a sensor that drops out repeats its last value)."""
    for share in MISSING_SHARE:
        lost = gen.random(x.shape[:2]) < share  # (N, T)
        lost[:, 0] = False
        out = x.clone()
        for t in range(1, x.shape[1]):
            hold = torch.from_numpy(lost[:, t])
            out[hold, t, :n_numeric] = out[hold, t - 1, :n_numeric]
        yield Corrupted(
            "held_readings", share, "share of time steps repeating the last reading", out
        )


# ------------------------------------------------------------------ text


def _text(
    run: Run, raw: pd.DataFrame, column: str, gen: np.random.Generator
) -> Iterator[Corrupted]:
    texts = raw[column].fillna("").astype(str).tolist()
    for rate in EDIT_RATE:
        edited = raw.copy()
        edited[column] = [char_edits(t, rate, gen) for t in texts]
        yield Corrupted(
            "char_edits", rate, "edits per character (swap, delete, insert)", run.transform(edited)
        )


def char_edits(text: str, rate: float, gen: np.random.Generator) -> str:
    """`text` with each character, at probability `rate`, swapped with the next one, deleted,
    or followed by a random letter (one of the three at random)."""
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        if gen.random() >= rate:
            out.append(chars[i])
            i += 1
            continue
        match int(gen.integers(3)):
            case 0 if i + 1 < len(chars):  # swap
                out += [chars[i + 1], chars[i]]
                i += 2
            case 1:  # delete
                i += 1
            case _:  # insert after (a swap at the last character inserts instead)
                out += [chars[i], LETTERS[int(gen.integers(len(LETTERS)))]]
                i += 1
    return "".join(out)
