"""Alerts: a log line, an optional webhook POST, and the exit code of `gradwise monitor`.

Exit codes of `gradwise monitor`: 0 no alert, 2 bad input (as every verb), 3 an alert
fired (drift, prediction shift, confidence or accuracy drop, a group's accuracy drop,
abstention rise, guarantee broken), 1 anything unexpected.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gradwise.logs import LOG

log = logging.getLogger(LOG)

ALERT_EXIT_CODE = 3
AlertKind = Literal[
    "drift",
    "prediction_shift",
    "confidence_drop",
    "accuracy_drop",
    "group_accuracy_drop",
    "abstention_rise",
    "guarantee_broken",
]


@dataclass(frozen=True)
class Alert:
    """One threshold crossed in one window.

    Attributes:
        kind: drift (inputs), prediction_shift (outputs), confidence_drop (label-free
            accuracy estimate), accuracy_drop (where feedback exists), group_accuracy_drop (a
            named group's accuracy significantly below its audited accuracy); served with
            --abstain: abstention_rise (more abstentions than on validation: an early sign of
            shift), guarantee_broken (the error rate among answered instances is above the
            certified alpha, by a confidence sequence valid at every look).
        window: the window's index; message: what was crossed, in one sentence.
    """

    kind: AlertKind
    window: int
    message: str
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def announce(alerts: list[Alert], run_dir: str, webhook: str | None) -> None:
    """Log each alert; POST them to `webhook` as JSON (a failed POST is logged, not fatal)."""
    for alert in alerts:
        log.warning("ALERT %s in window %d: %s", alert.kind, alert.window, alert.message)
    if webhook and alerts:
        post_webhook(webhook, {"run": run_dir, "alerts": [a.to_dict() for a in alerts]})


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = 5.0) -> bool:
    """POST `payload` as JSON; True when the receiver answered 2xx."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("webhook %s failed: %s", url, exc)
        return False
    if not ok:
        log.warning("webhook %s answered %d", url, response.status)
    return ok
