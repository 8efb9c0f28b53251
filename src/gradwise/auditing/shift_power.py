"""Detection power: the smallest simulated shift each drift detector notices.

Each repeat draws two disjoint samples of `n` rows from the training and test rows together
(so that, unshifted, both come from one distribution), applies one simulated shift at one
magnitude to the second, and runs the detectors (`gradwise.auditing.drift`) on the pair. A
detector *notices* a magnitude when it flags drift in at least `target` of the repeats; the
same repeats without any shift give its false-alarm rate.
Magnitudes are tried from small to large; a detector that has noticed one is not run on the
larger ones, and at each magnitude it stops once its verdict is settled.
Token noise is drawn once per pool row and magnitude (`_NoisedTokens`): the repeats resample
one noised copy of the pool, so that each message goes through the encoder once per magnitude.

Shifts and their grids (the unit of each magnitude):

    noise     gaussian noise of m feature standard deviations added to every numeric value
              (tokens: a share m of the tokens replaced by random ones)
    scale     every numeric value multiplied by 1 + m (images: clipped to the pixel range)
              (after noise or scaling, columns of whole numbers are rounded to whole numbers)
    drop      a share m of the features lost: missing in tables, the background value in
              images, the training mean in sequences (at least one feature)
    rotation  images turned by m degrees
    prior     a share m of the current rows drawn from the rarest class only
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gradwise.auditing.drift import DriftSettings, detect, prepare

Shift = Literal["noise", "scale", "drop", "rotation", "prior"]
GRIDS: dict[Shift, tuple[float, ...]] = {
    "noise": (0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
    "scale": (0.02, 0.05, 0.1, 0.2, 0.3, 0.5),
    "drop": (0.02, 0.05, 0.1, 0.2, 0.5),
    "rotation": (2.0, 5.0, 10.0, 15.0, 30.0, 45.0),
    "prior": (0.05, 0.1, 0.2, 0.3, 0.5),
}
TOKEN_NOISE_GRID = (0.02, 0.05, 0.1, 0.2, 0.3)
UNITS: dict[str, str] = {
    "noise": "feature std",
    "scale": "factor 1 + m",
    "drop": "share of features",
    "rotation": "degrees",
    "prior": "share from the rarest class",
    "token_noise": "share of tokens replaced",
}


@dataclass(frozen=True)
class ShiftSpace:
    """The data the simulated shifts change and how the detectors see it.

    Attributes:
        kind: table (raw columns), image (N, C, H, W) raw pixels, sequence (N, T, F) raw
            windows, or tokens (N, T) ids.
        train, test: the training and test split in that raw form.
        represent: raw rows to the (n, d) array the detectors test (identity for tables,
            the model's embeddings otherwise).
        labels: class indices of the training rows, then the test rows (the prior shift);
            None: no classes.
        categorical: categorical columns of a table or of series windows (their codes are
            left alone by the numeric shifts).
        specials: token ids the token noise never writes or replaces.
        vocab_size: token vocabulary size.
        pooled: `represent` of the training rows then the test rows, when whoever built the
            space computed it already (an encoder pass per row is what a text audit costs);
            None: computed when needed.
    """

    kind: Literal["table", "image", "sequence", "tokens"]
    train: np.ndarray
    test: np.ndarray
    represent: Callable[[np.ndarray], np.ndarray]
    labels: np.ndarray | None = None
    categorical: tuple[int, ...] = ()
    specials: tuple[int, ...] = ()
    vocab_size: int = 0
    pooled: np.ndarray | None = None

    def pool_representation(self) -> np.ndarray:
        """`represent` of the training rows, then the test rows."""
        if self.pooled is not None:
            return self.pooled
        return self.represent(np.concatenate([self.train, self.test]))

    def unshifted(self, split: Literal["train", "test"], rows: np.ndarray) -> np.ndarray:
        """`represent` of these rows of a split, read from `pooled` when it is there."""
        if self.pooled is None:
            return self.represent((self.train if split == "train" else self.test)[rows])
        return self.pooled[rows if split == "train" else len(self.train) + rows]

    @property
    def detector_categorical(self) -> tuple[int, ...]:
        """Categorical columns of what the detectors test: a table's raw columns; none for
        the embeddings of the other kinds."""
        return self.categorical if self.kind == "table" else ()

    @property
    def shifts(self) -> tuple[Shift, ...]:
        base: tuple[Shift, ...]
        match self.kind:
            case "table" | "sequence" if len(self.categorical) == self.train.shape[-1]:
                base = ()  # every column is categorical: nothing for noise, scale or drop
            case "table" | "sequence":
                base = ("noise", "scale", "drop")
            case "image":
                base = ("noise", "scale", "drop", "rotation")
            case "tokens":
                base = ("noise",)
        return (*base, "prior") if self.labels is not None else base

    def grid(self, shift: Shift) -> tuple[float, ...]:
        return TOKEN_NOISE_GRID if self.kind == "tokens" and shift == "noise" else GRIDS[shift]

    def unit(self, shift: Shift) -> str:
        return UNITS["token_noise" if self.kind == "tokens" and shift == "noise" else shift]


@dataclass(frozen=True)
class PowerCurve:
    """One shift's power per detector over its grid.

    Attributes:
        power: share of repeats flagged at each magnitude; None: not measured (the
            detector noticed a smaller magnitude already).
        trials: repeats run at each magnitude (fewer than asked once the verdict was settled).
        noticed_at: the smallest magnitude flagged in at least `target` of the repeats.
    """

    shift: str
    unit: str
    magnitudes: tuple[float, ...]
    power: dict[str, tuple[float | None, ...]]
    trials: dict[str, tuple[int, ...]]
    noticed_at: dict[str, float | None]

    @property
    def best(self) -> tuple[float, str] | None:
        """The smallest magnitude any detector noticed, and that detector."""
        found = [(m, d) for d, m in self.noticed_at.items() if m is not None]
        return min(found) if found else None


@dataclass(frozen=True)
class PowerReport:
    """Detection power of every detector against every simulated shift."""

    n: int
    repeats: int
    target: float
    false_alarm: dict[str, float]
    curves: tuple[PowerCurve, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def detection_power(
    space: ShiftSpace,
    settings: DriftSettings,
    n: int,
    repeats: int,
    target: float = 0.8,
    seed: int = 0,
) -> PowerReport:
    """Measure what each detector notices at `n` rows per side (see the module docstring).

    A detector stops being run at a magnitude once its verdict there is settled: when it
    has flagged `target` of `repeats` already, or missed too often to get there. Its power
    at that magnitude is the share of the repeats it ran (`PowerCurve.trials`).
    """
    from threadpoolctl import ThreadpoolController

    pool = np.concatenate([space.train, space.test])
    if 2 * n > len(pool):
        raise ValueError(f"n = {n} needs {2 * n} rows; the splits hold {len(pool)}")
    # every unshifted sample is drawn from the pool: represent it once (for images and tokens
    # the model's embeddings, one batched pass with every thread) instead of twice per repeat
    pooled = space.pool_representation()
    # the detectors are many small problems whose BLAS threads only wait on each other: one
    # thread for them, while the model that embeds a shifted sample keeps every thread
    threads = ThreadpoolController()  # found once; limit() per detection is then cheap
    return _detection_power(space, settings, n, repeats, target, seed, pool, pooled, threads)


def _detection_power(
    space: ShiftSpace,
    settings: DriftSettings,
    n: int,
    repeats: int,
    target: float,
    seed: int,
    pool: np.ndarray,
    pooled: np.ndarray,
    threads: Any,
) -> PowerReport:
    rng = np.random.default_rng(seed)
    stats = _PoolStats.of(space)
    need = int(np.ceil(target * repeats - 1e-9))

    def hits(shift: Shift | None, m: float, wanted: tuple[str, ...]) -> dict[str, list[int]]:
        """Per detector: [flagged, repeats run]."""
        count: dict[str, list[int]] = {}
        running = wanted
        tokens = space.kind == "tokens"
        noised = _NoisedTokens(space, pool, pooled.shape[1], m, rng) if tokens else None
        for _ in range(repeats):
            order = rng.permutation(len(pool))
            rows = _rows(space, order[n:], shift, m, n, rng)
            if shift is None or shift == "prior":  # unshifted rows: their representation
                cur = pooled[rows]
            elif noised is not None:  # token noise: each row noised and embedded once
                cur = noised(rows)
            else:
                cur = space.represent(_current(space, stats, pool[rows], shift, m, rng))
            with threads.limit(limits=1):
                report = detect(
                    prepare(pooled[order[:n]], space.detector_categorical),
                    cur,
                    dataclasses.replace(settings, detectors=running),  # type: ignore[arg-type]
                    seed=rng,
                )
            for r in report.results:
                c = count.setdefault(r.detector, [0, 0])
                c[0] += r.drifted
                c[1] += 1
            if shift is not None:  # the null runs every repeat: it is the false-alarm rate
                running = tuple(
                    d for d, (h, t) in count.items() if h < need and t - h <= repeats - need
                )
                if not running:
                    break
        return count

    null = hits(None, 0.0, settings.detectors)
    ran = tuple(null)  # the detectors that apply (chi2 needs categorical columns)
    curves = []
    for shift in space.shifts:
        grid = space.grid(shift)
        power: dict[str, list[float | None]] = {d: [None] * len(grid) for d in ran}
        trials: dict[str, list[int]] = {d: [0] * len(grid) for d in ran}
        noticed: dict[str, float | None] = dict.fromkeys(ran)
        for i, m in enumerate(grid):
            pending = tuple(d for d in ran if noticed[d] is None)
            if not pending:
                break
            for d, (h, t) in hits(shift, m, pending).items():
                power[d][i], trials[d][i] = h / t, t
                if h >= need:
                    noticed[d] = m
        curves.append(
            PowerCurve(
                shift,
                space.unit(shift),
                grid,
                {d: tuple(p) for d, p in power.items()},
                {d: tuple(t) for d, t in trials.items()},
                noticed,
            )
        )
    false_alarm = {d: h / t for d, (h, t) in null.items()}
    return PowerReport(n, repeats, target, false_alarm, tuple(curves))


class _NoisedTokens:
    """Token noise of one magnitude on the pool: each row noised once, when a repeat first
    draws it, and represented (embedded) once.

    Fresh noise for every repeat would put repeats x n messages through the encoder at each
    magnitude (20,000 at the defaults); here a magnitude costs at most the pool, like the
    unshifted rows, which are embedded once. The trade: the repeats resample one noised copy
    of the pool (as they resample the one unshifted pool), so a row drawn by two repeats
    carries the same noise in both; each row's noise is still independent of every other's.
    """

    def __init__(
        self, space: ShiftSpace, pool: np.ndarray, d: int, m: float, rng: np.random.Generator
    ) -> None:
        self.space, self.pool, self.m, self.rng = space, pool, m, rng
        self.rep = np.empty((len(pool), d))
        self.done = np.zeros(len(pool), dtype=bool)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), d): the represented noised copies of these pool rows."""
        new = np.unique(rows[~self.done[rows]])
        if len(new):
            noised = _token_noise(self.pool[new], self.m, self.space, self.rng)
            self.rep[new] = self.space.represent(noised)
            self.done[new] = True
        return self.rep[rows]


@dataclass(frozen=True)
class _PoolStats:
    """What the shifts scale by, measured on the training pool."""

    std: np.ndarray  # broadcastable to a batch: per column / channel / feature
    low: float
    high: float
    mean: np.ndarray
    numeric: np.ndarray  # (d,) bool: table / series columns the numeric shifts touch
    integer: np.ndarray  # bool, broadcastable: values that are whole numbers stay so

    @staticmethod
    def of(space: ShiftSpace) -> _PoolStats:
        x = space.train.astype(np.float64)
        match space.kind:
            case "table":
                axes: tuple[int, ...] = (0,)
            case "image":
                axes = (0, 2, 3)
            case "sequence":
                axes = (0, 1)
            case "tokens":
                axes = tuple(range(x.ndim))
        finite = np.where(np.isfinite(x), x, np.nan)
        with warnings.catch_warnings():  # a column with no values at all: std and mean 0
            warnings.simplefilter("ignore", RuntimeWarning)
            std = np.nan_to_num(np.nanstd(finite, axis=axes, keepdims=True)[0])
            mean = np.nan_to_num(np.nanmean(finite, axis=axes, keepdims=True)[0])
            low, high = float(np.nanmin(finite)), float(np.nanmax(finite))
        whole = np.isnan(finite) | (finite == np.round(finite))
        columns = space.kind in ("table", "sequence")
        numeric = np.ones(x.shape[-1] if columns else 1, dtype=bool)
        if columns:
            numeric[list(space.categorical)] = False
            integer = whole.all(axis=tuple(range(x.ndim - 1)))
        else:
            integer = np.array(whole.all())
        return _PoolStats(std, low, high, mean, numeric, integer)


def _rows(
    space: ShiftSpace,
    rest: np.ndarray,
    shift: Shift | None,
    m: float,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """n of the `rest` pool rows (in random order) for the current sample; for the prior
    shift, a share m of them from the rarest class (repeated if it has too few rows)."""
    if shift != "prior":
        return rest[:n]
    assert space.labels is not None
    classes, counts = np.unique(space.labels, return_counts=True)
    is_rare = space.labels == classes[np.argmin(counts)]
    k = int(round(m * n))
    others, spare = rest[: n - k], rest[n - k :]  # a random sample, and rows it left out
    rare = spare[is_rare[spare]]
    chosen = rare[:k] if k <= len(rare) else rng.choice(rest[is_rare[rest]], k)
    return np.concatenate([chosen, others])


def _current(
    space: ShiftSpace,
    stats: _PoolStats,
    x: np.ndarray,
    shift: Shift | None,
    m: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The current rows x with `shift` of magnitude m applied (prior: chosen already)."""
    if shift is None or shift == "prior":
        return x
    if space.kind == "tokens":
        return _token_noise(x, m, space, rng)
    x = x.astype(np.float64)
    match shift:
        case "noise":
            noise = rng.standard_normal(x.shape) * m * stats.std
            x = x + np.where(stats.numeric, noise, 0.0)  # categorical codes stay
        case "scale":
            x = x * np.where(stats.numeric, 1.0 + m, 1.0)
        case "drop":
            return _drop(x, m, space, stats, rng)
        case "rotation":
            from scipy.ndimage import rotate

            x = rotate(x, m, axes=(2, 3), reshape=False, order=1, mode="constant", cval=stats.low)
    if space.kind == "image":
        x = np.clip(x, stats.low, stats.high)
    # counts and pixel levels stay whole numbers: tiny noise on an integer column would
    # otherwise be trivially visible to any test (its ties break)
    return np.where(stats.integer, np.round(x), x)


def _drop(
    x: np.ndarray, m: float, space: ShiftSpace, stats: _PoolStats, rng: np.random.Generator
) -> np.ndarray:
    x = x.copy()
    match space.kind:
        case "table":
            cols = np.flatnonzero(stats.numeric)
            lost = rng.choice(cols, max(1, int(round(m * len(cols)))), replace=False)
            x[:, lost] = np.nan
        case "image":
            h, w = x.shape[2:]
            lost = rng.choice(h * w, max(1, int(round(m * h * w))), replace=False)
            x.reshape(*x.shape[:2], h * w)[:, :, lost] = stats.low
        case "sequence":
            cols = np.flatnonzero(stats.numeric)
            lost = rng.choice(cols, max(1, int(round(m * len(cols)))), replace=False)
            x[:, :, lost] = stats.mean[..., lost]
    return x


def _token_noise(
    x: np.ndarray, m: float, space: ShiftSpace, rng: np.random.Generator
) -> np.ndarray:
    x = x.copy()
    specials = np.array(space.specials, dtype=np.int64)
    open_ = ~np.isin(x, specials)
    hit = open_ & (rng.random(x.shape) < m)
    allowed = np.setdiff1d(np.arange(space.vocab_size), specials)
    x[hit] = rng.choice(allowed, int(hit.sum()))
    return x


def describe(kind: str, shift: str, m: float) -> str:
    """A shift of magnitude m in words ("noise of 0.3 std")."""
    match shift:
        case "noise" if kind == "tokens":
            return f"{m:.0%} of tokens replaced"
        case "noise":
            return f"noise of {m:g} std"
        case "scale":
            return f"scaling by {m:.0%}"
        case "drop":
            return f"{m:.0%} of features lost"
        case "rotation":
            return f"rotation by {m:g} degrees"
        case "prior":
            return f"{m:.0%} of rows from the rarest class"
    return f"{shift} {m:g}"


# ---------------------------------------------------------------- showing it


def power_table(report: PowerReport) -> str:
    """A plain-text table: per shift, the smallest magnitude each detector noticed."""
    detectors = list(report.false_alarm)
    head = ["shift (unit)", *detectors]
    rows = [["false alarms", *(f"{report.false_alarm[d]:.0%}" for d in detectors)]]
    for c in report.curves:
        cells = [f"{c.noticed_at[d]:g}" if c.noticed_at[d] is not None else "-" for d in detectors]
        rows.append([f"{c.shift} ({c.unit})", *cells])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = (
        f"smallest magnitude noticed (drift flagged in >= {report.target:.0%} of "
        f"{report.repeats} repeats at n = {report.n} rows per side); -: none on the grid"
    )
    return "\n".join([note, *lines]) + "\n"


def plot_power(report: PowerReport, path: Path) -> None:
    """One panel per shift: power against magnitude (the grid evenly spaced), a line per
    detector; the dashed line is the power that counts as noticed."""
    from gradwise.artifacts import new_figure, write_png

    k = len(report.curves)
    fig = new_figure(2.8 * max(k, 1), 2.8)
    for i, c in enumerate(report.curves):
        ax = fig.add_subplot(1, k, i + 1)
        for d, p in c.power.items():
            pts = [(j, v) for j, v in enumerate(p) if v is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=d)
        ax.axhline(report.target, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(c.magnitudes)), [f"{m:g}" for m in c.magnitudes], fontsize=7)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(c.shift, fontsize=9)
        ax.set_xlabel(c.unit, fontsize=8)
        if i == 0:
            ax.set_ylabel(f"power at n = {report.n}", fontsize=8)
    if k:
        fig.axes[0].legend(fontsize=6)
    write_png(path, fig)
