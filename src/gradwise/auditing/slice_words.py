"""What the slices check says: its headline, its summary and the settings it states.

Plain words from the numbers the check measured (`auditing/slices.py`); nothing here
measures anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradwise.audit_config import SlicesAudit
    from gradwise.auditing.slice_candidates import SliceSearch
    from gradwise.run import Run

WELCH = "Welch's t-test on the absolute errors"


def _gap_text(s: dict[str, Any], binary: bool) -> str:
    if binary:
        return f"+{100 * s['gap']:.0f} pts"
    return f"MAE +{100 * s['graded_gap']:.0f}%"


def headline(listed: list[dict[str, Any]], n_weak: int, binary: bool, n_tested: int) -> str:
    """The verdict's few words: how many weak slices, and the worst one's gap."""
    if not listed:
        return f"no weak slice ({n_tested:,} tested)"
    many = "slice" if n_weak == 1 else "slices"
    return f"{n_weak} weak {many}, worst {_gap_text(listed[0], binary)}"


def summary(
    listed: list[dict[str, Any]],
    n_weak: int,
    found: SliceSearch,
    n_heldout: int,
    settings: SlicesAudit,
    binary: bool,
) -> str:
    """The check's sentences: the worst listed slice with its numbers and interval, or why
    none was listed (nothing discovered, or nothing confirmed on the second half)."""
    n_tested, n_disc = len(found.candidates), len(found.discovered)
    first, second = int(found.in_discovery.sum()), n_heldout - int(found.in_discovery.sum())
    how = f"Benjamini-Hochberg q = {settings.q:g}"
    if not listed:
        if n_disc == 0:
            return (
                f"No weak slice: none of the {n_tested:,} candidate slices has a significantly "
                f"higher error than the rest on the discovery half ({first:,} of {n_heldout:,} "
                f"held-out rows, {how})."
            )
        return (
            f"No weak slice confirmed: {n_disc} of {n_tested:,} candidate slices looked weaker "
            f"on the discovery half ({first:,} held-out rows), but none held up on the other "
            f"{second:,} rows ({how} in each half)."
        )
    worst = listed[0]
    what = "error" if binary else "mean absolute error"
    fmt = (lambda v: f"{v:.0%}") if binary else (lambda v: f"{v:.3g}")
    lo, hi = worst["gap_interval"]
    interval = (
        f"{100 * lo:+.0f} to {100 * hi:+.0f} pts"
        if binary
        else f"{lo:+.3g} to {hi:+.3g} in the target's units"
    )
    about = f" ({worst['about']['text']})" if "about" in worst else ""
    many = "slice" if n_weak == 1 else "slices"
    unlisted = len(found.confirmed) - n_weak
    return (
        f"{n_weak} weak {many} confirmed on the second half of the held-out rows ({second:,}"
        f" rows; {n_tested:,} candidates, {how} in each half). "
        f"{'It' if n_weak == 1 else 'The worst'} is {worst['rule']}{about}, with {what} "
        f"{fmt(worst['error'])} vs {fmt(worst['rest_error'])} for the rest (n = {worst['n']:,}; "
        f"gap {_gap_text(worst, binary)}, 95% interval {interval})."
        + (
            f" {unlisted:,} more confirmed {'slice is' if unlisted == 1 else 'slices are'} "
            "unlisted: nested in or around better supported ones, they add no evidence "
            "of their own."
            if unlisted
            else ""
        )
    )


def stated(
    run: Run, settings: SlicesAudit, seed: int, binary: bool, by_cluster: bool, max_rows: int
) -> dict[str, Any]:
    """Every setting of the check and how each number was measured, in words: what a reader
    of the JSON needs to redo it (`max_rows`: row numbers listed per reported slice)."""
    if by_cluster:
        candidates = (
            f"k-means clusters (scikit-learn, 4 starts, seed {seed}) of the run's penultimate "
            "embeddings of the held-out rows"
        )
    else:
        candidates = (
            "every column of the source but the target: each category value (and each value of "
            "a number column with at most 10 distinct values), each range of a number column "
            "below, above or between its quantile edges (`bins` bins of the held-out rows, "
            "edges rounded to 3 significant digits), 'is missing'"
        )
        if settings.pairs:
            candidates += ", and pairs of these on two different columns"
    return {
        **settings.model_dump(mode="json"),
        "rows": "held-out: the validation and test splits (the model never trained on them)",
        "error": "1 when the top class is not the label"
        if binary
        else "|y - prediction| in the target's units, averaged over outputs",
        "halves": f"held-out rows split in two with seed {seed}"
        + (", stratified by label" if binary else "")
        + ": discovery, then confirmation of the discovered candidates",
        "candidates": candidates,
        "test": "one-sided, slice worse than the rest of the half: "
        + ("Fisher's exact test (hypergeometric tail)" if binary else WELCH),
        "correction": "Benjamini-Hochberg at q over every candidate tested on the discovery "
        "half, then over the discovered candidates on the confirmation half",
        "reported_on": "the confirmation half (n, errors, p-values, gap and its interval)",
        "gap": "error in the slice minus the rest (points)"
        if binary
        else "graded as relative: MAE in the slice / MAE of the rest - 1; gap in target units",
        "gap_interval": "95% percentile bootstrap (scipy.stats.bootstrap; rows in and out of "
        f"the slice resampled separately, seed {seed})",
        "coverage_and_ece": "on the slice's test-split rows in the confirmation half (the "
        "temperature and conformal quantile were fitted on validation); per class: all "
        f"test rows; ECE over {run.config.audit.calibration.bins} equal-width bins; coverage "
        "where the run stores conformal sets or intervals (the uncertainty check)",
        "row_numbers": f"source rows: each listed slice's held-out rows (at most {max_rows}); "
        "`confirmation_rows`, the confirmation half",
        "redundant": "of two nested confirmed slices the one with the smaller p-value is "
        "listed, the other only if it adds evidence of its own (one-sided test on the "
        "confirmation half, p <= q); the unlisted keep `redundant_with` in `slices`",
    }
