"""A user's script over gradwise's public API, for `mypy --strict` (tests/test_public_api.py).

It is type-checked, never run: it calls every verb with typed arguments and reads typed
results, so an `Any` or a missing annotation in the public API shows up as a mypy error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, assert_type

import numpy as np

import gradwise


def on_epoch(record: dict[str, float]) -> None:
    print(record["train.loss"])


def every_verb(config: Path, run_dir: Path, rows: np.ndarray) -> list[str]:
    overrides: dict[str, Any] = {"train.epochs": 2}  # dotted keys: typed by the config
    run = gradwise.train(config, out=run_dir, on_epoch_end=on_epoch, **overrides)
    assert_type(run, gradwise.Run)
    run = gradwise.load(run_dir)
    labels: np.ndarray = run.predict(rows)
    probabilities: np.ndarray = run.predict_proba(rows)
    assert_type(gradwise.lr_find(config, steps=50).suggestion, float)
    comparison = gradwise.compare(config, config, seeds=2)
    winners = [v.winner for v in comparison.verdicts]
    assert_type(winners, list[str | None])

    audit = gradwise.audit(run, gradwise.AuditSettings(checks=["calibration"]))
    audit = gradwise.audit(run, on_done=lambda check: print(check.headline), checks=["shift"])
    verdicts = [check.verdict for check in audit.checks]
    explanation = gradwise.explain(run, gradwise.ExplainSettings(), method="ig")
    assert_type(explanation.files, tuple[str, ...])

    study = gradwise.tune(config, settings=gradwise.TuneSettings(trials=4), seeds=0)
    assert_type(study.best_value, float)
    assert_type(study.best_config, str)
    bench = gradwise.bench(run, gradwise.BenchSettings(), seconds=0.5)
    assert_type(bench.costs[0].usd_per_million, float)
    tradeoff = gradwise.optimize(run, gradwise.OptimizeSettings(), quantize="int8")
    assert_type(tradeoff.choice, str | None)

    batching = gradwise.serve(run, gradwise.ServeSettings(tune=True), on_listening=lambda: None)
    best_batch = None if batching is None or batching.best is None else batching.best.max_batch
    assert_type(best_batch, int | None)
    watched = gradwise.monitor(run, gradwise.MonitorSettings(), on_window=lambda w: print(w.end))
    assert_type(watched.alerted, bool)
    page = gradwise.report(run, gradwise.ReportSettings(), out=run_dir / "report.html")
    assert_type(page.path, Path)

    try:
        gradwise.load(run_dir / "missing")
    except gradwise.NotTrainedError as exc:
        print(exc)
    return [*verdicts, str(labels.shape), str(probabilities.shape), page.decision.sentence]
