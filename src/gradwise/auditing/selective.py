"""The selective check: a confidence threshold certified on the validation split, so that the
model answers only where it can promise an error rate and hands the rest to a person.

Learn-then-Test picks the threshold (see `auditing/risk_control.py` for the procedure, its
reference and its assumption); the test split then measures what the guarantee delivers: the
share answered, the error rate among answered inputs with its exact interval, and the
risk-coverage curve. The threshold is stored in model.json beside the temperature and the
conformal quantiles (`Run.set_selective`); `predict --abstain`, `Run.predict_selective` and
`serve --abstain` apply it (`gradwise.run_conformal`).

    classification  wrong = the top class is not the label; score: the top-class probability
                    at the run's stored temperature (or the top-two margin, or minus the
                    conformal set size)
    regression      wrong = |y - prediction| > tolerance (target's units); score: minus the
                    difficulty estimate sigma(x), so easy inputs are answered first
    language model  the risk-coverage curve of next-token accuracy, described, not certified:
                    tokens of one window are not independent draws
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, Verdict, task_name
from gradwise.auditing.conformal import absolute_scores, target_values
from gradwise.auditing.risk_control import (
    ASSUMPTION,
    METHOD,
    Certificate,
    aurc,
    certify,
    clopper_pearson,
    coverage_at,
    curve_points,
    risk_coverage,
    rows_hash,
)
from gradwise.run_conformal import class_probabilities, classifier_score, regression_outputs

if TYPE_CHECKING:
    from gradwise.config import SelectiveAudit
    from gradwise.run import Run

PLOT = "selective.png"
SCORE_NAMES = {
    "probability": "the top-class probability",
    "margin": "the margin between the two likeliest classes",
    "set_size": "the size of the conformal prediction set",
    "difficulty": "the difficulty estimate sigma(x)",
}


def check(run: Run, settings: SelectiveAudit, ctx: AuditContext) -> CheckResult:
    """Certify an abstention threshold on validation, measure it on test, store it.

    Raises:
        NotApplicable: the run neither classifies, regresses nor models language, or a
            regression has no `tolerance`.
    """
    from gradwise.config import DiffusionConfig

    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it gives no answer to hold back.")
    try:
        pairs = settings.pairs()
    except ValueError as exc:
        from gradwise.errors import ConfigError

        raise ConfigError(str(exc) + ".") from None
    match run.schema.task:
        case "classification":
            return _classifier(run, settings, pairs, ctx)
        case "regression":
            return _regression(run, settings, pairs, ctx)
        case "lm":
            return _language_model(run, settings, pairs, ctx)
    raise NotApplicable(
        f"abstention is certified for classifiers and regressions; this run is "
        f"{task_name(run.schema.task)} (exact-match abstention for generated sequences is "
        "not measured yet)."
    )


# ---------------------------------------------------------------- classification


def _classifier(
    run: Run, settings: SelectiveAudit, pairs: list[tuple[float, float]], ctx: AuditContext
) -> CheckResult:
    val, test = run.split("val"), run.split("test")
    t = run.calibration.temperature
    p_val, p_test = class_probabilities(run, val.x, t), class_probabilities(run, test.x, t)
    score = "probability" if settings.score == "auto" else settings.score
    extra: dict[str, Any] = {}
    if score == "set_size":
        conformal = run.calibration.conformal
        if not conformal or conformal.get("task") != "classification":
            raise NotApplicable(
                "score set_size needs the conformal sets the uncertainty check stores; run "
                f"`gradwise audit {run.path} --checks uncertainty,selective`, or use "
                "audit.selective.score: probability."
            )
        extra = {
            "conformal_method": conformal["method"],
            "conformal_quantile": conformal["quantile"],
            "seed": conformal["seed"],
            "randomised": conformal["randomised"],
        }
    s_val, s_test = (classifier_score(p, score, extra) for p in (p_val, p_test))
    e_val = p_val.argmax(axis=1) != val.y.numpy()
    e_test = p_test.argmax(axis=1) != test.y.numpy()
    stored = {"task": "classification", "score": score, "temperature": t, **extra}
    wrong = "the top class is not the label"
    expected = 1.0 - p_val.max(axis=1)  # the model's own chance of being wrong, labels unseen
    return _result(
        run, settings, pairs, ctx, (s_val, e_val), (s_test, e_test), stored, wrong, expected
    )


# ---------------------------------------------------------------- regression


def _regression(
    run: Run, settings: SelectiveAudit, pairs: list[tuple[float, float]], ctx: AuditContext
) -> CheckResult:
    from gradwise.auditing.uncertainty import fit_run_difficulty

    if settings.tolerance is None:
        raise NotApplicable(
            "a regression's answer is right or wrong only against a tolerance: set "
            "audit.selective.tolerance (in the target's units; an answer is wrong when "
            "|y - prediction| exceeds it), e.g. --set audit.selective.tolerance=5."
        )
    train, val, test = run.split("train"), run.split("val"), run.split("test")
    difficulty = fit_run_difficulty(run, train.x, train.y, ctx.seed)

    def scores_and_errors(split: Any) -> tuple[np.ndarray, np.ndarray]:
        residual = absolute_scores(regression_outputs(run, split.x), target_values(run, split.y))
        sigma = difficulty.sigma(run.embed(split.x).double().numpy())
        wrong = np.asarray((residual > settings.tolerance).any(axis=1), dtype=bool)
        return -sigma.max(axis=1), wrong

    stored = {
        "task": "regression",
        "score": "difficulty",
        "tolerance": settings.tolerance,
        "difficulty": difficulty.to_dict(),
    }
    wrong = f"|y - prediction| > {settings.tolerance:g} (the tolerance, in the target's units)"
    return _result(
        run, settings, pairs, ctx, scores_and_errors(val), scores_and_errors(test), stored, wrong
    )


# ---------------------------------------------------------------- the common part


def _result(
    run: Run,
    settings: SelectiveAudit,
    pairs: list[tuple[float, float]],
    ctx: AuditContext,
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    stored: dict[str, Any],
    wrong: str,
    expected: np.ndarray | None = None,
) -> CheckResult:
    (s_val, e_val), (s_test, e_test) = validation, test
    certificates = [certify(s_val, e_val, a, d, expected) for a, d in pairs]
    measured = [_on_test(c, s_test, e_test) for c in certificates]
    coverage, risk = risk_coverage(s_test, e_test)
    area = aurc(s_test, e_test)
    first, on_test = certificates[0], measured[0]
    val_split = run.split("val")
    if settings.store:
        run.set_selective(
            {
                **stored,
                **first.to_dict(),
                "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "validation_rows_sha256": rows_hash(val_split.rows, val_split.y.numpy()),
                "others": [c.to_dict() for c in certificates[1:]],
                "method": METHOD,
                "assumption": ASSUMPTION,
            }
        )
    _plot(ctx.out / PLOT, coverage, risk, certificates, measured, stored["score"])
    verdict, summary = _verdict(first, on_test, len(s_test), score_meaning(stored))
    summary += _others(certificates[1:])
    return CheckResult(
        check="selective",
        verdict=verdict,
        headline=_headline(first),
        summary=summary,
        metrics={
            "certificates": [
                {**c.to_dict(), "test": m} for c, m in zip(certificates, measured, strict=True)
            ],
            "aurc": area,
            "test_error": float(e_test.mean()),
            "risk_coverage": curve_points(coverage, risk),
            "n_val": len(s_val),
            "n_test": len(s_test),
            "stored": settings.store and first.certified,
            "score": stored["score"],
        },
        settings={
            **settings.model_dump(mode="json"),
            "pairs": [list(p) for p in pairs],
            "score": stored["score"],
            "score_meaning": score_meaning(stored),
            "wrong": wrong,
            "method": METHOD,
            "assumption": ASSUMPTION,
            "fitted_on": "val",
            "reported_on": "test",
            "test_interval": "exact (Clopper-Pearson) 95% interval of the error among answered",
            "oracle": "the widest coverage whose test error among answered is at most alpha, "
            "chosen with the test labels (no deployed threshold can know them)",
        },
        plots=(PLOT,),
    )


def _on_test(cert: Certificate, s: np.ndarray, e: np.ndarray) -> dict[str, Any]:
    """What the certified threshold does on the test split, beside the oracle."""
    oracle, _ = coverage_at(s, e, cert.alpha)
    if not cert.certified:
        return {"coverage": 0.0, "answered": 0, "errors": 0, "oracle_coverage": oracle}
    answer = s >= cert.threshold
    k, m = int(e[answer].sum()), int(answer.sum())
    lo, hi = clopper_pearson(k, m)
    return {
        "coverage": m / len(s),
        "answered": m,
        "errors": k,
        "error": k / m if m else 0.0,
        "error_interval": [lo, hi],
        "oracle_coverage": oracle,
    }


def score_meaning(stored: dict[str, Any]) -> str:
    """What the score is, in words, with the temperature the probabilities carry."""
    meaning = SCORE_NAMES[stored["score"]]
    t = stored.get("temperature")
    if stored["score"] in ("probability", "margin"):
        meaning += f" at the stored temperature {t:.2f}" if t is not None else ", no temperature"
    return meaning


def _verdict(
    cert: Certificate, test: dict[str, Any], n_test: int, meaning: str
) -> tuple[Verdict, str]:
    if not cert.certified:
        return "warn", (
            f"No abstention threshold could be certified at most {cert.alpha:.1%} errors with "
            f"{1 - cert.delta:.0%} confidence: {cert.reason}. The model answers everything, "
            "with no promise."
        )
    sentence = (
        f"Answers {cert.coverage:.0%} of cases with at most {cert.alpha:.1%} errors "
        f"({1 - cert.delta:.0%} confidence); {1 - cert.coverage:.0%} go to a person."
    )
    lo, hi = test["error_interval"]
    detail = (
        f" Certified on {cert.n:,} validation rows (score: {meaning}; threshold "
        f"{cert.threshold:.4g}); on {n_test:,} test rows it answered {test['coverage']:.0%} "
        f"and {test['error']:.1%} of those answers were wrong (95% interval {lo:.1%}-{hi:.1%}); "
        f"a threshold chosen with the test labels could answer {test['oracle_coverage']:.0%}."
    )
    if lo > cert.alpha:
        return "fail", (
            f"The guarantee does not hold on the test split: answered test cases are wrong "
            f"{test['error']:.1%} of the time (95% interval {lo:.1%}-{hi:.1%}), above the "
            f"promised {cert.alpha:.1%}; validation and test rows may differ (shift), which "
            "breaks the exchangeability the guarantee rests on." + detail
        )
    return "pass", sentence + detail


def _others(certificates: list[Certificate]) -> str:
    """One clause per further (alpha, delta) pair: the share it answers, or that it failed."""
    if not certificates:
        return ""
    parts = [
        f"at most {c.alpha:.1%} errors ({1 - c.delta:.0%}): "
        + (f"answers {c.coverage:.0%}" if c.certified else "not certified")
        for c in certificates
    ]
    return " Other promises (validation): " + "; ".join(parts) + "."


def _headline(cert: Certificate) -> str:
    if not cert.certified:
        return f"not certified at alpha {cert.alpha:g}"
    return f"answers {cert.coverage:.0%} at alpha {cert.alpha:g}"


def _plot(
    path: Any,
    coverage: np.ndarray,
    risk: np.ndarray,
    certificates: list[Certificate],
    measured: list[dict[str, Any]],
    score: str,
) -> None:
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.plot(coverage, risk, color="tab:blue", label="test: error among answered")
    for i, (c, m) in enumerate(zip(certificates, measured, strict=True)):
        label = "alpha: the error rate promised" if i == 0 else None
        ax.axhline(c.alpha, color="tab:gray", linestyle="--", linewidth=1, label=label)
        if c.certified:
            ax.scatter([m["coverage"]], [m["error"]], color="tab:red", zorder=3)
            ax.annotate(
                f"alpha {c.alpha:g}: answers {m['coverage']:.0%}",
                (m["coverage"], m["error"]),
                textcoords="offset points",
                xytext=(-6, 6),
                ha="right",
                fontsize=8,
            )
    ax.set_xlabel("share of test inputs answered (coverage)")
    ax.set_ylabel("error rate among answered")
    ax.set_xlim(0, 1.0)
    top = max([float(np.max(risk))] + [c.alpha for c in certificates])
    ax.set_ylim(-0.02 * top, 1.25 * top)
    ax.set_title(f"risk-coverage, ranked by {SCORE_NAMES[score]}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    write_png(path, fig)


# ---------------------------------------------------------------- language models


def _language_model(
    run: Run, settings: SelectiveAudit, pairs: list[tuple[float, float]], ctx: AuditContext
) -> CheckResult:
    from gradwise.auditing.calibration import token_measures

    test = run.split("test")
    max_tokens = run.config.audit.calibration.max_tokens
    ((conf, correct, _),) = token_measures(run, test.x, test.y, max_tokens, (1.0,))
    errors = ~np.asarray(correct, dtype=bool)
    coverage, risk = risk_coverage(conf, errors)
    area = aurc(conf, errors)
    at = {f"{a:g}": coverage_at(conf, errors, a)[0] for a, _ in pairs}
    _plot(ctx.out / PLOT, coverage, risk, [], [], "probability")
    a0 = pairs[0][0]
    summary = (
        f"Next-token predictions on {len(conf):,} test tokens: ranked by the top token's "
        f"probability, the surest {at[f'{a0:g}']:.0%} are wrong at most {a0:.1%} of the time "
        f"(a description of these tokens, not a guarantee: tokens of one window are not "
        f"independent draws, and free text has no single right answer); AURC {area:.3f}, "
        f"overall next-token error {errors.mean():.1%}."
    )
    return CheckResult(
        check="selective",
        verdict="n/a",
        headline=f"token AURC {area:.3f}",
        summary=summary,
        metrics={
            "aurc": area,
            "test_error": float(errors.mean()),
            "coverage_at_alpha": at,
            "risk_coverage": curve_points(coverage, risk),
            "n_test_tokens": len(conf),
            "certified": False,
        },
        settings={
            **settings.model_dump(mode="json"),
            "wrong": "the likeliest next token is not the one in the text",
            "score_meaning": "the top next-token probability (no temperature)",
            "reported_on": "test",
            "not_certified": "tokens of one window are dependent; no threshold is stored",
        },
        plots=(PLOT,),
    )
