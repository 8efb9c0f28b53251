"""The audit's sections: per check its verdict and plain sentence, the plot redrawn from its
JSON, the key numbers and every setting; a check not run yet names the command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradwise.auditing import CHECKS
from gradwise.auditing.base import CheckResult
from gradwise.auditing.fairness_mitigation import RATE_GAP
from gradwise.reporting.blocks import (
    Block,
    Facts,
    Plot,
    Section,
    Settings,
    Table,
    Text,
    Verdict,
    flat,
    num,
)
from gradwise.reporting.evidence import Evidence
from gradwise.reporting.figures import data_uri
from gradwise.reporting.plots_audit import plot_check
from gradwise.reporting.ship import check_anchor

TITLES = {
    "generalisation": "Generalisation: learning or memorising? Would more data help?",
    "baseline": "Baseline: does the network beat a classical method?",
    "calibration": "Calibration: is the confidence honest?",
    "uncertainty": "Uncertainty: prediction sets and intervals",
    "selective": "Selective prediction: where can it promise an error rate?",
    "slices": "Slices: where does it fail?",
    "fairness": "Fairness: how does it do for the groups named?",
    "robustness": "Robustness: adversarial perturbations and corruptions",
    "shift": "Shift: would we notice when the data changes?",
    "data_quality": "Data quality: labels, duplicates, leakage, outliers",
}
READ = {
    "generalisation": "The gap between train and test shows memorising; the learning curve "
    "says what more data of the same kind would buy.",
    "baseline": "A network that does not clearly beat a classical method on the same split "
    "is hard to justify.",
    "calibration": "When the model says 90%, it should be right 90% of the time: bars on the "
    "diagonal are honest confidence.",
    "uncertainty": "Conformal sets and intervals hold the true answer at the target rate on "
    "data like the validation split.",
    "selective": "The model answers only where its score reaches a threshold certified on the "
    "validation split, so that among answered inputs at most alpha are wrong (with "
    "confidence 1 - delta), and hands the rest to a person; the test split shows what the "
    "promise delivered.",
    "slices": "Subgroups of the held-out rows (column values and ranges, or clusters of the "
    "model's embeddings) whose error is significantly above the rest, found on one half and "
    "confirmed on the other, with the false-discovery rate controlled.",
    "fairness": "Accuracy, selection rate and error rates per group the config names, with "
    "intervals; demographic-parity and equalised-odds differences against thresholds.",
    "robustness": "How fast accuracy falls under small worst-case changes and common "
    "corruptions of the inputs.",
    "shift": "Without new data, the check measures which simulated shifts the detectors "
    "would notice (power); with --against DATA, whether that data drifted.",
    "data_quality": "Likely label errors, copies, train/test leakage and outliers cap what "
    "any model can learn from this data.",
}


def check_section(ev: Evidence, name: str, notes: list[str]) -> Section:
    """One check's section, or the command that makes it."""
    result = ev.audit.get(name)
    anchor, title = check_anchor(name), TITLES[name]
    if result is None:
        return Section(
            anchor,
            title,
            missing=f"no {name} audit yet: gradwise audit {ev.path} --checks {name}",
        )
    blocks: list[Block] = [Verdict(result.verdict, result.headline, result.summary, result.wall_s)]
    if result.verdict != "n/a":
        blocks.append(Text(READ[name], note=True))
        blocks += _plot(result, notes)
        numbers = _key_numbers(result)
        if numbers:
            blocks.append(Facts(numbers))
        if name == "selective":
            blocks += _guarantee_blocks(result)
    if result.settings:
        blocks.append(Settings(flat(result.settings), f"settings of the {name} check"))
    return Section(anchor, title, tuple(blocks), verdict=result.verdict)


def audit_sections(ev: Evidence, notes: list[str]) -> tuple[Section, ...]:
    """Every check but the baseline (which has a section of its own), in the audit's order."""
    return tuple(check_section(ev, name, notes) for name in CHECKS if name != "baseline")


def _plot(result: CheckResult, notes: list[str]) -> list[Block]:
    """The check's plot; a JSON this version cannot draw leaves a note instead of no report."""
    try:
        fig = plot_check(result)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        note = f"{result.check}.json: plot not drawn ({type(exc).__name__}: {exc})"
        notes.append(note)
        return [Text(note, note=True)]
    if fig is None:
        return []
    return [Plot(data_uri(fig), f"{result.check} plot", _caption(result))]


def _caption(result: CheckResult) -> str:
    """The plot's caption, naming only the panels that were drawn."""
    m = result.metrics
    if result.check == "generalisation" and not (m.get("learning_curve") or {}).get("points"):
        return (
            "The run's metric per split (no learning curve: it was not run; "
            "audit.generalisation.learning_curve: true draws it)."
        )
    if result.check == "robustness":
        attacked, corrupted = bool(m.get("curves")), bool(m.get("corruptions"))
        if attacked and not corrupted:
            return "The metric under attacks of growing radius (no corruptions were run)."
        if corrupted and not attacked:
            return (
                "Right: the metric under common corruptions of growing severity. Left: no "
                "adversarial attack in this threat model (audit.robustness.attacks adds them)."
            )
    return _CAPTIONS.get(result.check, "")


_CAPTIONS = {
    "generalisation": "Left: test metric of retrains on fractions of the training data (or, "
    "with retrain=head, of fresh heads on the trained encoder's frozen embeddings), the "
    "fitted power law and its reads at larger sizes (90% bands). Right: the run's metric per "
    "split.",
    "baseline": "Error bars: for the network the comparison noise (test bootstrap and the "
    "baseline's seeds), for the baselines their seed-to-seed spread.",
    "calibration": "Reliability diagrams on the test split before and after temperature "
    "scaling; below, how many predictions fall in each confidence bin.",
    "uncertainty": "Dashed: the target coverage.",
    "selective": "Left: the error rate among the test inputs answered, answering from the "
    "surest down; dashed: each promised alpha; points: where each certified threshold landed "
    "on test, with its exact 95% interval. Right: the share answered, as certified on "
    "validation, realised on test, and at best (a threshold chosen with the test labels).",
    "slices": "The reported slices, worst on top (rules cut to 50 characters; the summary and "
    "slices.json hold them whole). Left: the error in each slice and in the rest of the "
    "confirmation half of the held-out rows. Right: their gap, with its 95% bootstrap interval.",
    "fairness": "Per graded grouping, each group's measure on the test split with its 95% "
    "bootstrap interval (hollow: fewer than min_group rows, listed but not compared).",
    "robustness": "Left: the metric under attacks of growing radius. Right: under common "
    "corruptions of growing severity.",
    "shift": "Share of repeats in which each detector flags a simulated shift (dashed: the "
    "power that counts as noticed), or each detector's effect against its threshold.",
    "data_quality": "Shares of the training rows each scan flagged.",
}


def _key_numbers(result: CheckResult) -> tuple[tuple[str, str], ...]:
    pick = _PICKERS.get(result.check)
    try:
        return tuple((k, num(v)) for k, v in pick(result.metrics)) if pick else ()
    except (KeyError, TypeError):
        return ()


def _generalisation(m: dict[str, Any]) -> list[tuple[str, Any]]:
    out = [
        (
            f"{m['metric']} on train / val / test",
            f"{num(m.get('train'))} / {num(m.get('val'))} / {num(m.get('test'))}",
        ),
        ("gap", m.get("gap")),
    ]
    turn = m.get("turn") or {}
    if turn:
        out.append(("best epoch", f"{turn.get('best_epoch')} of {turn.get('epochs')}"))
    for key, p in ((m.get("learning_curve") or {}).get("predictions") or {}).items():
        band = p.get("band") or [None, None]
        out.append(
            (
                f"predicted at {key} the data ({p['n']:,} samples)",
                f"{num(p['value'])} (90% band {num(band[0])} to {num(band[1])})",
            )
        )
    return out


def _baseline(m: dict[str, Any]) -> list[tuple[str, Any]]:
    out = [("network", m["network"])]
    out += [(b["name"], b["mean"]) for b in m.get("baselines", [])]
    return out + [("margin over the best", m.get("margin")), ("noise (1 std)", m.get("noise"))]


def _calibration(m: dict[str, Any]) -> list[tuple[str, Any]]:
    b, a = m["before"], m["after"]
    out = [
        (f"{k} before / after", f"{num(b.get(k))} / {num(a.get(k))}")
        for k in ("ece", "ece_mass", "mce", "brier", "nll")
        if k in b
    ]
    return out + [
        ("temperature", m.get("temperature")),
        ("temperature stored in the run", m.get("temperature_stored")),
    ]


def _uncertainty(m: dict[str, Any]) -> list[tuple[str, Any]]:
    chosen = m.get("chosen")
    c = m.get(chosen, {}) if chosen else {}
    out = [("score", chosen), ("coverage", c.get("coverage"))]
    for key in ("mean_size", "singletons", "empty", "mean_width", "median_width"):
        if key in c:
            out.append((key.replace("_", " "), c[key]))
    return out + [("calibrated on (val samples)", m.get("n_val"))]


def _selective(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """The guarantee in force (the first (alpha, delta) pair) and what it did on test."""
    c = m["certificates"][0]
    test = c["test"]
    out: list[tuple[str, Any]] = [
        (
            "guarantee",
            f"at most {c['alpha']:.1%} errors among answered inputs, with {1 - c['delta']:.0%} "
            f"confidence (alpha {c['alpha']:g}, delta {c['delta']:g})",
        ),
        ("score", m.get("score")),
        ("validation rows", m.get("n_val")),
    ]
    if not c["certified"]:
        return out + [
            ("threshold", f"not certified: {c.get('reason', '')}"),
            ("test error answering everything", _share(m.get("test_error"))),
            ("oracle coverage on test", _share(test.get("oracle_coverage"))),
        ]
    lo, hi = test["error_interval"]
    return out + [
        ("threshold", c["threshold"]),
        (
            "answered on validation",
            f"{c['accepted']:,} ({_share(c['coverage'])}), {c['errors']} wrong; "
            f"p-value {num(c['p_value'])}",
        ),
        ("coverage on test", f"{_share(test['coverage'])} of {m.get('n_test', 0):,} rows"),
        (
            "test error among answered",
            f"{_share(test['error'])} ({test['errors']} of {test['answered']:,}; 95% interval "
            f"{_share(lo)} to {_share(hi)})",
        ),
        ("oracle coverage on test", _share(test["oracle_coverage"])),
        ("test error answering everything", _share(m.get("test_error"))),
        ("AURC on test", m.get("aurc")),
        ("stored in the run", m.get("stored")),
    ]


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _guarantee_blocks(result: CheckResult) -> list[Block]:
    """Every (alpha, delta) pair when more than one was asked for, and the method and the
    assumption the guarantee rests on."""
    blocks: list[Block] = []
    certificates = result.metrics.get("certificates") or []
    try:
        rows = tuple(_pair_row(c) for c in certificates)
    except (KeyError, TypeError, ValueError):
        rows = ()  # a selective.json this version does not read: its settings still show
    if len(rows) > 1:
        headers = (
            "alpha",
            "delta",
            "threshold",
            "coverage (val)",
            "coverage (test)",
            "test error among answered (95% interval)",
            "oracle coverage (test)",
        )
        blocks.append(
            Table(headers, rows, "every promise asked for; the first is the one in force")
        )
    s = result.settings
    if s.get("method"):
        blocks.append(
            Text(
                f"Method: {s['method']}. Wrong means: {s.get('wrong', 'n/a')}. Assumption: "
                f"{s.get('assumption', 'n/a')}.",
                note=True,
            )
        )
    return blocks


def _pair_row(c: dict[str, Any]) -> tuple[str, ...]:
    test = c["test"]
    if not c["certified"]:
        return (f"{c['alpha']:g}", f"{c['delta']:g}", "not certified", "0%", "0%", "n/a",
                _share(test.get("oracle_coverage")))  # fmt: skip
    lo, hi = test["error_interval"]
    return (
        f"{c['alpha']:g}",
        f"{c['delta']:g}",
        num(c["threshold"]),
        _share(c["coverage"]),
        _share(test["coverage"]),
        f"{_share(test['error'])} ({_share(lo)} to {_share(hi)})",
        _share(test["oracle_coverage"]),
    )


def _slices(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """How many candidates were tested and reported, and the worst reported slice."""
    out: list[tuple[str, Any]] = [
        ("candidates tested", m["n_candidates"]),
        ("slices reported", m["n_weak"]),
    ]
    if not m.get("listed"):
        return out
    worst = next(s for s in m["slices"] if s["rule"] == m["listed"][0])
    lo, hi = worst["gap_interval"]
    return out + [
        ("worst slice", worst["rule"]),
        ("its error vs the rest", f"{num(worst['error'])} vs {num(worst['rest_error'])}"),
        ("gap (95% interval)", f"{num(worst['gap'])} ({num(lo)} to {num(hi)})"),
        ("n (confirmation half)", worst["n"]),
    ]


FAIRNESS_GAPS = {
    "accuracy_gap": "accuracy gap",
    "demographic_parity_difference": "demographic-parity difference",
    "equalized_odds_difference": "equalised-odds difference",
    "relative_mae_gap": "relative MAE gap",
}


def _fairness(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """Per graded grouping its between-group differences with intervals, then the variant
    with group thresholds, if one was written, and what it re-measured on test."""
    graded = dict.fromkeys(f["grouping"] for f in m.get("graded", []))
    out: list[tuple[str, Any]] = []
    for g in m["groupings"]:
        if g["grouping"] not in graded:
            continue
        out += [
            (f"{name} by {g['grouping']}", _with_interval(g["between"][key]))
            for key, name in FAIRNESS_GAPS.items()
            if key in g["between"]
        ]
    mitigation = m.get("mitigation") or {}
    written = mitigation.get("variant")
    if written:
        p = next(p for p in mitigation["proposals"] if p["grouping"] == written["grouping"])
        key, name = RATE_GAP[p["constraint"]]
        out += [
            (f"variant with group thresholds by {p['grouping']}", written["path"]),
            (
                f"its {name} on test (the run's)",
                f"{num(p['test'][key])} ({num(p['original'][key])})",
            ),
        ]
    return out


def _with_interval(d: dict[str, Any]) -> str:
    if d["low"] is None:
        return num(d["value"])
    return f"{num(d['value'])} (95% interval {num(d['low'])} to {num(d['high'])})"


def _robustness(m: dict[str, Any]) -> list[tuple[str, Any]]:
    ref = m.get("at_reference") or {}
    out = [("clean", m.get("clean")), ("reference eps", ref.get("eps"))]
    out += [(f"{norm} at the reference eps", ref[norm]) for norm in ("linf", "l2") if norm in ref]
    rows = m.get("corruptions") or []
    metric = m.get("metric", "accuracy")
    if rows:
        worst = min(rows, key=lambda r: r.get(metric, float("inf")))
        out.append((f"worst corruption ({worst['name']} {worst['severity']:g})", worst[metric]))
    return out + [("samples attacked", m.get("n_samples"))]


def _shift(m: dict[str, Any]) -> list[tuple[str, Any]]:
    if "against" in m:
        a = m["against"]
        out = [("compared with", a.get("data")), ("drifted", a.get("drifted"))]
        out += [
            (f"{d} effect (threshold)", f"{num(r['effect'])} ({num(r['threshold'])})")
            for d, r in a.get("detectors", {}).items()
        ]
        return out
    power = m.get("power") or {}
    out = [("rows per side", power.get("n"))]
    for c in power.get("curves", []):
        noticed = {d: v for d, v in c.get("noticed_at", {}).items() if v is not None}
        if noticed:
            d = min(noticed, key=lambda k: noticed[k])
            out.append((f"{c['shift']} noticed at", f"{noticed[d]:g} {c['unit']} ({d})"))
        else:
            out.append((f"{c['shift']} noticed at", "not within the grid"))
    split = m.get("train_vs_test") or {}
    if split:
        out.append(("train and test drifted apart", split.get("drifted")))
    return out


def _data_quality(m: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if "labels" in m:
        lab = m["labels"]
        out += [
            ("likely label errors", f"{lab['n_issues']} ({100 * lab['share']:.1f}%)"),
            ("out-of-fold accuracy", lab.get("out_of_fold_accuracy")),
        ]
    dup = m.get("duplicates") or {}
    if "n_exact_rows" in dup:
        out.append(("exact duplicate rows", dup["n_exact_rows"]))
    leak = m.get("leakage") or {}
    for split in ("val", "test"):
        if split in leak:
            out.append((f"{split} rows copied from train", leak[split].get("n_exact")))
    if "outliers" in m:
        out.append(("outliers", m["outliers"].get("n_outliers")))
    return out


_PICKERS: dict[str, Callable[[dict[str, Any]], list[tuple[str, Any]]]] = {
    "generalisation": _generalisation,
    "baseline": _baseline,
    "calibration": _calibration,
    "uncertainty": _uncertainty,
    "selective": _selective,
    "slices": _slices,
    "fairness": _fairness,
    "robustness": _robustness,
    "shift": _shift,
    "data_quality": _data_quality,
}
