"""The selective guarantee watched on served traffic.

A run served with `--abstain` answers where its score reaches the threshold certified on the
validation rows (at most a share alpha of the answers wrong, with confidence 1 - delta) and
hands the rest to a person; each served instance's output carries its `decision`. Here the
monitor checks that promise three ways:

- labels: the answered instances whose label came back feed a confidence sequence of the
  error rate (`monitoring/guarantee.py`); its lower bound reaching alpha is the alert
  "guarantee likely broken", valid at every look;
- abstentions: a window that abstains significantly more often than validation did (Fisher's
  exact test at the monitor's alpha) is an early sign of shift, before any label arrives;
- drift: the guarantee assumes inputs drawn like the validation rows; in a window whose inputs
  drifted it is void, whatever the labels say so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gradwise.errors import GradwiseError
from gradwise.monitoring.alerts import Alert
from gradwise.monitoring.guarantee import METHOD, ErrorSequence, abstention_p_value
from gradwise.monitoring.stream import Ledger, Tally
from gradwise.run import Run
from gradwise.run_conformal import selective_guarantee

VALIDITY = (
    "valid at every look: the chance that the lower bound ever exceeds the true error rate, "
    "however often and however long the monitor looks, is at most delta (Ville's inequality)"
)
ASSUMPTION = (
    "the labelled answers are wrong as often as all answers (labels are not chosen or timed "
    "by whether the answer was wrong)"
)


@dataclass(frozen=True)
class Promise:
    """The certified guarantee the server abstained with, as the monitor checks it.

    Attributes:
        alpha: the error rate promised among answered inputs, at most.
        delta: the confidence sequence's chance of a false alarm over the whole stream.
        certified_delta: the delta the threshold was certified with.
        coverage: the share of the `n_val` validation rows the threshold answered
            (`accepted` of them); 1 - coverage is the abstention rate expected.
        tolerance: regression: an answer is wrong when |y - prediction| exceeds it.
    """

    alpha: float
    delta: float
    certified_delta: float
    coverage: float
    n_val: int
    accepted: int
    task: str
    tolerance: float | None

    def wrong(self, prediction: Any, label: Any) -> bool:
        """Whether one answer was wrong, as the selective audit counts it."""
        if self.task == "regression":
            assert self.tolerance is not None
            p = np.ravel(np.asarray(prediction, dtype=np.float64))
            y = np.ravel(np.asarray(label, dtype=np.float64))
            return bool((np.abs(y - p) > self.tolerance).any())
        return str(prediction) != str(label)

    def words(self) -> str:
        """The promise in words: "at most 5.0% of answers wrong"."""
        return f"at most {self.alpha:.1%} of answers wrong"


def load_promise(run: Run, delta: float | None) -> tuple[Promise | None, str]:
    """The run's certified guarantee (with the monitor's `delta`, else the certified one),
    or None and why none applies."""
    if run.schema.task == "lm":
        return None, "a language model's abstention is described, not certified"
    try:
        stored = selective_guarantee(run)
    except GradwiseError as exc:
        return None, str(exc)
    promise = Promise(
        alpha=float(stored["alpha"]),
        delta=float(stored["delta"] if delta is None else delta),
        certified_delta=float(stored["delta"]),
        coverage=float(stored["coverage"]),
        n_val=int(stored["n"]),
        accepted=int(stored["accepted"]),
        task=str(stored["task"]),
        tolerance=stored.get("tolerance"),
    )
    return promise, ""


@dataclass(frozen=True)
class Answers:
    """The answered instances whose label arrived, in the order the labels arrived.

    Attributes:
        index: (n,) the served instance of each label.
        sequence: the confidence sequence of their error rate.
        crossing: the count of labels at which its lower bound first reached alpha, or None.
    """

    index: np.ndarray
    sequence: ErrorSequence
    crossing: int | None

    def look(self, end: int) -> int:
        """Labels counted at the end of the window that ends before instance `end`: those that
        arrived before the first label of a later instance."""
        reached = np.maximum.accumulate(self.index) if len(self.index) else self.index
        return int(np.searchsorted(reached, end, side="left"))

    def at(self, look: int) -> dict[str, Any]:
        """The sequence after the first `look` labels: labelled, errors, the last labels the
        bet was sized from (recent, recent_errors) and the lower bound."""
        recent, recent_errors = self.sequence.recent(look)
        return {
            "labelled": look,
            "errors": int(self.sequence.errors[:look].sum()),
            "recent": recent,
            "recent_errors": recent_errors,
            "lower_bound": float(self.sequence.lower_bounds([look])[0]),
        }


def labelled_answers(
    ledger: Ledger, labels: dict[tuple[str, int], Any], promise: Promise
) -> Answers:
    """The answered instances of `ledger` with a label in `labels` (ordered by arrival)."""
    answered = {
        (r, i): k
        for k, (r, i, d) in enumerate(zip(ledger.request_id, ledger.row, ledger.decision))
        if d == "answer"
    }
    index, errors = [], []
    for key, label in labels.items():
        k = answered.get(key)
        if k is not None:
            index.append(ledger.index[k])
            errors.append(promise.wrong(ledger.prediction[k], label))
    sequence = ErrorSequence(np.asarray(errors, dtype=bool), promise.alpha, promise.delta)
    return Answers(np.asarray(index, dtype=np.int64), sequence, sequence.crossing())


Status = Literal["consistent", "void", "broken"]


def window_guarantee(
    promise: Promise,
    answers: Answers,
    decisions: list[str | None],
    window: tuple[int, int],
    drift: str | None,
    alpha: float,
) -> dict[str, Any] | None:
    """One window's part of the guarantee (None where no instance carries a decision).

    Args:
        decisions: the window's decisions; window: its (start, end) instance indices.
        drift: where the window's inputs drifted ("raw features (most: age)"), None: no drift.
        alpha: the level of the abstention test.
    """
    decided = [d for d in decisions if d is not None]
    if not decided:
        return None
    n, abstained = len(decided), sum(d == "abstain" for d in decided)
    p_value = abstention_p_value(abstained, n, promise.n_val - promise.accepted, promise.n_val)
    a, b = window
    mine = (answers.index >= a) & (answers.index < b)
    look = answers.look(b)
    broken = answers.crossing is not None and look >= answers.crossing
    status: Status = "broken" if broken else "void" if drift else "consistent"
    out = {
        "status": status,
        "decided": n,
        "answered": n - abstained,
        "abstained": abstained,
        "abstention_rate": abstained / n,
        "expected_abstention_rate": 1 - promise.coverage,
        "abstention_p_value": p_value,
        "abstention_rise": p_value < alpha,
        "labelled": int(mine.sum()),
        "errors": int(answers.sequence.errors[mine].sum()),
        "look": answers.at(look),
    }
    return {**out, "why": _why(promise, out, drift, alpha)}


def _seen(look: dict[str, Any]) -> str:
    """The labels at a look and the bound, in words."""
    return (
        f"after {look['labelled']} labelled answers ({look['errors']} wrong; "
        f"{look['recent_errors']} of the last {look['recent']}) the lower confidence bound of "
        f"the error rate among answered instances is {look['lower_bound']:.3f}"
    )


def _why(promise: Promise, w: dict[str, Any], drift: str | None, alpha: float) -> str:
    seen = _seen(w["look"])
    if w["status"] == "broken":
        why = (
            f"guarantee likely broken ({promise.words()}): {seen}, at least alpha: the error "
            "rate rose above alpha"
        )
        if drift:
            why += f"; these inputs also drifted from the training data in {drift}"
    elif drift:
        why = (
            f"the guarantee ({promise.words()}) does not hold here: it assumes inputs drawn like "
            f"the validation rows, and these drifted from the training data in {drift}"
        )
    else:
        why = f"no evidence against the guarantee ({promise.words()}): no drift, and {seen}"
    if w["abstention_rise"]:
        why += (
            f"; abstentions rose to {w['abstention_rate']:.1%} of {w['decided']} (validation: "
            f"{w['expected_abstention_rate']:.1%}, Fisher's exact test p = "
            f"{w['abstention_p_value']:.2g} < {alpha:g}), an early sign of input shift"
        )
    return why


def rise_alert(index: int, w: dict[str, Any], alpha: float) -> Alert:
    """The alert "abstentions rose" for window `index` (`w`: its `window_guarantee`)."""
    return Alert(
        "abstention_rise",
        index,
        f"the model abstained on {w['abstained']} of {w['decided']} instances "
        f"({w['abstention_rate']:.1%}), more than on validation "
        f"({w['expected_abstention_rate']:.1%}; one-sided Fisher's exact test p = "
        f"{w['abstention_p_value']:.2g} < {alpha:g}): an early sign that inputs shifted, "
        "before labels arrive; the certified error rate may no longer hold",
        w["abstention_rate"],
        w["expected_abstention_rate"],
    )


def broken_alert(promise: Promise, look: dict[str, Any], window: int) -> Alert:
    """The alert "guarantee likely broken" at the look (`Answers.at`) where the bound first
    reached alpha."""
    return Alert(
        "guarantee_broken",
        window,
        f"guarantee likely broken: after {look['labelled']} labelled answered instances, "
        f"{look['errors']} wrong ({look['recent_errors']} of the last {look['recent']}), the "
        f"lower confidence bound of the error rate among answered instances is "
        f"{look['lower_bound']:.3f}, at least the certified alpha {promise.alpha:g}: the "
        "error rate rose above alpha; the bound is valid at every look (a false alarm at any "
        f"look has probability at most {promise.delta:g})",
        look["lower_bound"],
        promise.alpha,
    )


@dataclass(frozen=True)
class GuaranteeReport:
    """The guarantee over the whole watch.

    Attributes:
        state: watched (decisions stored and a certified guarantee applies), off (the server
            ran without --abstain: no decision stored), none (decisions stored, but no
            guarantee applies: `sentence` says why).
        labelled / errors / lower_bound: over every labelled answered instance so far.
        broken: where the bound first reached alpha (labels counted, errors, bound, window,
            request id and row of the label that crossed), else None.
    """

    state: Literal["watched", "off", "none"]
    sentence: str
    promise: Promise | None
    decided: int
    abstained: int
    labelled: int
    errors: int
    lower_bound: float | None
    broken: dict[str, Any] | None
    void_windows: tuple[int, ...]
    abstention_rise_windows: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        p = self.promise
        return {
            "state": self.state,
            "sentence": self.sentence,
            "alpha": None if p is None else p.alpha,
            "delta": None if p is None else p.delta,
            "certified_delta": None if p is None else p.certified_delta,
            "coverage": None if p is None else p.coverage,
            "expected_abstention_rate": None if p is None else 1 - p.coverage,
            "n_val": None if p is None else p.n_val,
            "decided": self.decided,
            "answered": self.decided - self.abstained,
            "abstained": self.abstained,
            "abstention_rate": self.abstained / self.decided if self.decided else None,
            "labelled": self.labelled,
            "errors": self.errors,
            "error_rate": self.errors / self.labelled if self.labelled else None,
            "lower_bound": self.lower_bound,
            "broken": self.broken,
            "void_windows": list(self.void_windows),
            "abstention_rise_windows": list(self.abstention_rise_windows),
            "method": METHOD if self.state == "watched" else None,
            "validity": VALIDITY if self.state == "watched" else None,
            "assumption": ASSUMPTION if self.state == "watched" else None,
        }


def guarantee_report(
    promise: Promise | None,
    reason: str,
    served: Tally,
    answers: Answers | None,
    windows: list[tuple[int, dict[str, Any] | None]],
    broken: dict[str, Any] | None,
) -> GuaranteeReport:
    """The whole watch's guarantee section.

    Args:
        reason: why `promise` is None.
        served: the counts of the instances served (and of their decisions).
        windows: (index, `window_guarantee`) of each window.
        broken: where the bound first reached alpha, or None.
    """
    decided, abstained = served.decided, served.abstained
    void = tuple(i for i, w in windows if w and w["status"] == "void")
    rise = tuple(i for i, w in windows if w and w["abstention_rise"])
    if decided == 0:
        why = "" if promise is not None else f" (and no guarantee applies: {reason})"
        sentence = (
            f"abstention was off: none of the {served.n} served instances carries a decision "
            f"(the server ran without --abstain), so there is no certified error rate to "
            f"watch{why}"
        )
        return GuaranteeReport("off", sentence, None, 0, 0, 0, 0, None, None, (), ())
    if promise is None or answers is None:
        sentence = (
            f"{decided} served instances carry a decision ({abstained} abstained), but no "
            f"guarantee applies to check them against: {reason}"
        )
        return GuaranteeReport("none", sentence, None, decided, abstained, 0, 0, None, None, (), ())
    now = answers.at(answers.sequence.n)
    sentence = _sentence(promise, now, broken, void, rise)
    return GuaranteeReport(
        "watched",
        sentence,
        promise,
        decided,
        abstained,
        now["labelled"],
        now["errors"],
        now["lower_bound"],
        broken,
        void,
        rise,
    )


def _sentence(
    promise: Promise,
    now: dict[str, Any],
    broken: dict[str, Any] | None,
    void: tuple[int, ...],
    rise: tuple[int, ...],
) -> str:
    seen = f"{_seen(now)} (alpha {promise.alpha:g}, delta {promise.delta:g}, valid at every look)"
    if broken is not None:
        out = (
            f"guarantee likely broken ({promise.words()}): the bound first reached alpha after "
            f"{broken['labelled']} labelled answers, in window {broken['window']}; now {seen}"
        )
    else:
        out = f"no evidence the guarantee ({promise.words()}) is broken: {seen}"
    if void:
        out += f"; it does not hold in the drifted window(s) {_listed(void)}"
    if rise:
        out += f"; abstentions rose above validation's in window(s) {_listed(rise)}"
    return out


def _listed(indices: tuple[int, ...], most: int = 8) -> str:
    shown = ", ".join(str(i) for i in indices[:most])
    return shown + (f" and {len(indices) - most} more" if len(indices) > most else "")
