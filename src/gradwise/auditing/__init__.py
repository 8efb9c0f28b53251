"""Audits: measured evidence about a trained run, one check per module.

    gradwise audit RUN [--checks a,b,...] [--against DATA]
    gradwise.audit(run, checks=["calibration", "robustness"])

Each check writes RUN/audit/<check>.json (numbers, settings, verdict, one sentence, seconds).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradwise.artifacts import write_json
from gradwise.audit_config import AuditSettings
from gradwise.auditing.base import AuditContext, AuditReport, CheckResult, NotApplicable
from gradwise.auditing.retrains import IN_PROCESS, RetrainMap
from gradwise.data.split import leak_of, leak_warning
from gradwise.errors import ConfigError, GradwiseError
from gradwise.logs import LOG
from gradwise.run import Run

log = logging.getLogger(LOG)

CHECKS = (
    "generalisation",
    "baseline",
    "calibration",
    "uncertainty",
    "selective",
    "slices",
    "fairness",
    "robustness",
    "shift",
    "data_quality",
)
AUDIT_FOLDER = "audit"

__all__ = ["CHECKS", "AuditReport", "CheckResult", "run_checks"]


def _check_fn(name: str) -> Callable[[Run, Any, AuditContext], CheckResult]:
    """The check function of `name`; each module loads only when its check runs."""
    match name:  # each branch names its import: one module loads, and mypy sees no redefinition
        case "generalisation":
            from gradwise.auditing.generalisation import check as generalisation

            return generalisation
        case "baseline":
            from gradwise.auditing.baseline import check as baseline

            return baseline
        case "calibration":
            from gradwise.auditing.calibration import check as calibration

            return calibration
        case "uncertainty":
            from gradwise.auditing.uncertainty import check as uncertainty

            return uncertainty
        case "selective":
            from gradwise.auditing.selective import check as selective

            return selective
        case "slices":
            from gradwise.auditing.slices import check as slices

            return slices
        case "fairness":
            from gradwise.auditing.fairness import check as fairness

            return fairness
        case "robustness":
            from gradwise.auditing.robustness import check as robustness

            return robustness
        case "shift":
            from gradwise.auditing.shift import check as shift

            return shift
        case "data_quality":
            from gradwise.auditing.data_quality import check as data_quality

            return data_quality
    raise ConfigError(f"unknown check {name!r}; choose from {', '.join(CHECKS)}.")


def parse_checks(text: str | None) -> list[str]:
    """`a,b,...` (or None: every check) as a list of check names; a typo is an error."""
    if not text:
        return list(CHECKS)
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        import difflib

        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, CHECKS, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]}?)" if close else ""))
        raise ConfigError(f"--checks names {', '.join(hints)}; the checks are {', '.join(CHECKS)}.")
    return names


def run_checks(
    run: Run,
    checks: list[str] | None = None,
    against: str | None = None,
    on_done: Callable[[CheckResult], None] | None = None,
    settings: AuditSettings | None = None,
    retrains: RetrainMap = IN_PROCESS,
) -> AuditReport:
    """Run the named checks (default: all) on `run`, each writing RUN/audit/<check>.json.

    A check that cannot apply to this run is reported as n/a with the reason, not an error.
    Each check reads its section of `settings` (default: the run's config `audit:`); the
    checks that retrain run their retrains through `retrains` (default: in this process).
    """
    sections = settings or run.config.audit
    names = parse_checks(",".join(checks)) if checks else list(CHECKS)
    out = Path(run.path) / AUDIT_FOLDER
    ctx = AuditContext(out=out, against=against, seed=run.config.seed, retrains=retrains)
    rule = run.split_rule
    results = []
    for name in names:
        fn = _check_fn(name)
        section = getattr(sections, name)
        started = time.perf_counter()
        try:
            result = fn(run, section, ctx)
        except NotApplicable as exc:
            result = _not_applicable(name, str(exc), section.model_dump(mode="json"))
        except GradwiseError:
            raise  # bad input (a config, --against data): one message, exit code 2
        except Exception as exc:  # a bug in one check must not cost the others their results
            result = _crashed(name, exc, out, section.model_dump(mode="json"))
        result = _on_leaky_split(result, rule)
        result = dataclasses.replace(result, wall_s=round(time.perf_counter() - started, 3))
        write_json(out / f"{name}.json", result.to_dict())
        log.info("%s: %s (%s) in %.1f s", name, result.headline, result.verdict, result.wall_s)
        if on_done is not None:
            on_done(result)
        results.append(result)
    return AuditReport(str(run.path), tuple(results))


# checks whose numbers come from the held-out splits: a leaky split makes them optimistic
HELD_OUT_CHECKS = (
    "generalisation",
    "baseline",
    "calibration",
    "uncertainty",
    "selective",
    "slices",
    "fairness",
)


def _on_leaky_split(result: CheckResult, rule: dict[str, Any]) -> CheckResult:
    """A check measured on a split known to leak does not pass: its verdict becomes at
    least warn, and its sentence starts with why."""
    if not rule.get("leaky") or result.check not in HELD_OUT_CHECKS or result.verdict == "n/a":
        return result
    why = leak_warning(rule)
    return dataclasses.replace(
        result,
        verdict="fail" if result.verdict == "fail" else "warn",
        summary=f"Not a pass: {why}. {result.summary}",
        metrics={**result.metrics, "leaky_split": leak_of(rule)},
    )


def _not_applicable(name: str, reason: str, settings: dict[str, Any]) -> CheckResult:
    return CheckResult(check=name, verdict="n/a", headline="n/a", summary=reason, settings=settings)


def _crashed(name: str, exc: Exception, out: Path, settings: dict[str, Any]) -> CheckResult:
    """An unexpected error in one check: its traceback kept in RUN/audit/<check>.error.txt,
    the other checks go on."""
    import traceback

    from gradwise.artifacts import atomic_write_text

    atomic_write_text(out / f"{name}.error.txt", traceback.format_exc())
    log.error("%s stopped with %s: %s", name, type(exc).__name__, exc)
    summary = (
        f"The check stopped with an error ({type(exc).__name__}: {exc}); the other checks ran. "
        f"The traceback is in audit/{name}.error.txt; please report it."
    )
    return dataclasses.replace(_not_applicable(name, summary, settings), headline="error")


def read_audit(run_dir: str | Path) -> dict[str, CheckResult]:
    """The checks already written in RUN/audit, by name."""
    from gradwise.artifacts import read_json

    folder = Path(run_dir) / AUDIT_FOLDER
    found = {}
    for name in CHECKS:
        path = folder / f"{name}.json"
        if path.is_file():
            found[name] = CheckResult.from_dict(read_json(path))
    return found
