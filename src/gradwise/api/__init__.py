"""The Python face of gradwise: thin functions over the packages below; the CLI calls these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from gradwise.api.common import as_run as _run
from gradwise.api.common import config_of as _config_of
from gradwise.api.common import where as _where
from gradwise.api.files import evaluate_file, explain_file, predict_file
from gradwise.api.ship import bench, monitor, optimize, serve
from gradwise.config import (
    AuditSettings,
    Config,
    ExplainSettings,
    ReportSettings,
    TuneSettings,
    load_config,
    parse_overrides,
    settings_with,
)
from gradwise.run import Run

if TYPE_CHECKING:
    from gradwise.auditing import AuditReport, CheckResult
    from gradwise.evaluate.compare import Comparison
    from gradwise.explaining import Explanation
    from gradwise.reporting import Report
    from gradwise.reporting.documents import Document, DocumentTemplate
    from gradwise.training.loop import Parallel, ProgressFn
    from gradwise.training.lr_find import LRFindResult
    from gradwise.tuning import ProgressFn as TuneProgress
    from gradwise.tuning import TuneResult

__all__ = [
    "audit",
    "bench",
    "compare",
    "evaluate_file",
    "explain",
    "explain_file",
    "load",
    "lr_find",
    "monitor",
    "optimize",
    "predict_file",
    "report",
    "serve",
    "train",
    "tune",
]

ConfigSource = str | Path | dict[str, Any] | Config
Backend = Literal["local", "ray"]


def load(path: str | Path) -> Run:
    """Rebuild a trained run from its directory (model.json + model.safetensors)."""
    return Run.load(path)


def train(
    config: ConfigSource,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    progress: ProgressFn | None = None,
    parallel: Parallel | None = None,
    backend: Backend | None = None,
    address: str | None = None,
    workers: int = 2,
    **overrides: Any,
) -> Run:
    """Train a model from a config and write its run directory.

    Args:
        config: a YAML path, a dict, or a Config. Relative data paths in a YAML file are
            read from the file's folder.
        out: run directory; default runs/<name> (a free name is picked if that exists).
        resume: continue the interrupted run in `out` from its last checkpoint.
        overwrite: replace an existing run in `out`.
        quiet: no log lines on stderr (the run's train.log is always written).
        on_epoch_end: called with each epoch's record (a dict of floats).
        backend: "ray" trains with Ray Train's TorchTrainer on `workers` workers, through
            the same DDP path as torchrun, into the same run directory; None: the
            config's `backend:` key (default local).
        address: with backend "ray", the cluster (or "auto"); None: the config's
            `address:`, else RAY_ADDRESS, else a local cluster started and stopped for the call.
        **overrides: dotted keys, e.g. `**{"train.epochs": 5}`.

    Returns:
        The trained Run.

    Raises:
        ConfigError, DataError: bad config or data, before any training starts.
        TrainingDiverged: the loss became NaN or the gradients exploded.
    """
    from gradwise.pipeline import given_text, train_run
    from gradwise.training.loop import Parallel

    cfg = load_config(config, overrides)
    where, address = _where(backend, address, cfg)
    if where == "ray":
        from gradwise.backends.ray_train import train_ray

        return train_ray(
            config,
            out,
            overrides=overrides,
            resume=resume,
            overwrite=overwrite,
            workers=workers,
            address=address,
        )
    return train_run(
        cfg,
        out,
        resume=resume,
        overwrite=overwrite,
        quiet=quiet,
        on_epoch_end=on_epoch_end,
        progress=progress,
        parallel=parallel or Parallel(),
        given=given_text(config, overrides),
    )


def lr_find(
    config: ConfigSource,
    out: str | Path | None = None,
    *,
    steps: int = 200,
    **overrides: Any,
) -> LRFindResult:
    """Run the learning-rate range test; writes lr_find.png and lr_find.json to `out`
    (default runs/<name>-lr-find), replacing an earlier result there.

    Returns:
        An LRFindResult with the sweep, the suggested LR and the LR of the lowest loss.
    """
    import torch

    from gradwise.artifacts import write_json
    from gradwise.pipeline import prepare
    from gradwise.training.lr_find import lr_find as sweep
    from gradwise.training.lr_find import plot_lr_find
    from gradwise.training.objectives import run_objective

    cfg = load_config(config, overrides)
    out_dir = Path(out) if out is not None else lr_find_folder(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        data, loss_name, model, _ = prepare(cfg)
        objective = run_objective(cfg, data.schema, loss_name, model, data.train.y)
        result = sweep(model, data, cfg, objective, steps=steps)
    plot_lr_find(result, out_dir / "lr_find.png")
    write_json(
        out_dir / "lr_find.json",
        {
            "suggestion": result.suggestion,
            "min_loss_lr": result.min_loss_lr,
            "lrs": result.lrs,
            "losses": result.losses,
        },
    )
    return result


def lr_find_folder(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.name}-lr-find"


def compare(
    config_a: ConfigSource,
    config_b: ConfigSource,
    *,
    seeds: int = 3,
    fractions: tuple[float, ...] = (1.0,),
    metric: str | None = None,
    out: str | Path | None = None,
) -> Comparison:
    """Train two configs over `seeds` seeds (and data `fractions`) on the same splits.

    Returns:
        A Comparison: each arm's metric values, and per fraction a verdict that names a
        winner only when the difference is larger than the seed-to-seed noise.
    """
    from gradwise.evaluate.compare import compare as run_compare
    from gradwise.pipeline import run_logging, train_run

    a, b = load_config(config_a), load_config(config_b)
    folder = Path(out) if out is not None else Path("runs") / f"compare-{a.name}-vs-{b.name}"
    with run_logging(None, quiet=True):
        return run_compare(
            a,
            b,
            lambda cfg, run_dir: train_run(cfg, run_dir, overwrite=True).metrics,
            folder,
            seeds=seeds,
            fractions=fractions,
            metric=metric,
        )


def audit(
    run: Run | str | Path,
    settings: AuditSettings | None = None,
    *,
    on_done: Callable[[CheckResult], None] | None = None,
    backend: Backend | None = None,
    address: str | None = None,
    **changes: Any,
) -> AuditReport:
    """Measure the run: each check writes RUN/audit/<check>.json with its numbers, settings,
    verdict and one plain sentence (see `gradwise.auditing.CHECKS`).

    Args:
        run: a Run or its directory.
        settings: an AuditSettings; default: the run's config `audit:` section.
        on_done: called with each check's result as it finishes.
        backend: "ray" runs the retrains of the learning curve (generalisation) and of the
            out-of-fold labels (data_quality) as Ray tasks, each planned grid as one batch,
            with the same results; the rest of the audit runs here. None: the config's
            `backend:` (default local).
        address: with backend "ray", the cluster (or "auto"); None: the config's
            `address:`, else RAY_ADDRESS, else a local cluster started and stopped for the
            call.
        **changes: AuditSettings fields to change, e.g. `checks=["calibration"]`,
            `against="csv:new.csv"`, `calibration={"bins": 10}` or
            `**{"uncertainty.coverage": 0.95}`; validated once (ConfigError names the key).
    """
    from gradwise.auditing import run_checks

    loaded = _run(run)
    chosen = settings_with(settings or loaded.config.audit, "audit", changes)
    names: list[str] | None = None if chosen.checks is None else [str(c) for c in chosen.checks]
    where, address = _where(backend, address, loaded.config)
    if where == "ray":
        from gradwise.backends.ray_audit import ray_retrains

        with ray_retrains(address) as retrains:
            return run_checks(loaded, names, chosen.against, on_done, chosen, retrains)
    return run_checks(loaded, names, chosen.against, on_done, settings=chosen)


def explain(
    run: Run | str | Path,
    settings: ExplainSettings | None = None,
    **changes: Any,
) -> Explanation:
    """Why the run decides what it decides; writes RUN/explain/explain.json and its pictures.

    Args:
        run: a Run or its directory.
        settings: an ExplainSettings; default: the run's config `explain:` section.
        **changes: ExplainSettings fields to change: `rows` (source row numbers, 0-based, in
            `split`; None: its first four), `method` (ig, gradshap, kernelshap for tables,
            saliency), `split` (train, val or test), `seed` (None: the run's).

    Returns:
        An Explanation: per-row attributions, global importance (tables), attention per
        layer and head (transformers), activation statistics per layer, the files written.
    """
    from gradwise.explaining import explain_with

    loaded = _run(run)
    return explain_with(
        loaded, settings_with(settings or loaded.config.explain, "explain", changes)
    )


def tune(
    config: ConfigSource,
    out: str | Path | None = None,
    settings: TuneSettings | None = None,
    *,
    overrides: dict[str, Any] | list[str] | None = None,
    progress: TuneProgress | None = None,
    backend: Backend | None = None,
    address: str | None = None,
    **changes: Any,
) -> TuneResult:
    """Search hyperparameters (Optuna TPE, pruning on the per-epoch validation metric; scored
    over k folds of train+val when validation is small, `tune.cv`), then retrain the best
    over seeds and measure which hyperparameters mattered and how sensitive the optimum is.

    The study lives in `out` (study.sqlite3), so a second call after a crash or `kill -9`
    continues it: finished trials are kept, trials left running are queued again.

    Args:
        config: the config to start from (a YAML path, a dict or a Config); its `tune:`
            section holds the default settings.
        out: output folder (default runs/<name>-tune): study, trials/<number>/ (one run
            directory per trial), best.yaml, best/, sensitivity/, plots and tune.json.
        settings: a TuneSettings; default: the config's `tune:` section.
        overrides: config keys to change first, `{"train.epochs": 20}` or
            `["train.epochs=20", "tune.trials=10"]` (as --set gives them).
        progress: called with (trials done, budget, best value so far) as trials finish.
        backend: "ray" runs the trials as Ray Tune trials driven by the same Optuna sampler
            (one at a time unless `nproc` > 1: then the same best trial is not promised);
            None: the config's `backend:` key (default local).
        address: with backend "ray", the cluster (or "auto"); None: the config's
            `address:`, else RAY_ADDRESS, else a local cluster started and stopped for the call.
        **changes: TuneSettings fields to change (`trials=10`, `pruner="none"`,
            `budget_s=600`, ...); dotted keys change the config itself first, e.g.
            `**{"train.epochs": 20}` (and `**{"tune.trials": 10}` its tune: section).

    Returns:
        A TuneResult (also written to out/tune.json).

    Raises:
        ConfigError, DataError: bad config, settings, space, metric or data, before any
            trial runs.
        GradwiseError: no trial finished.
    """
    from gradwise.tuning import run_tune

    dotted = {k: v for k, v in changes.items() if "." in k}
    cfg = load_config(config, {**parse_overrides(overrides), **dotted})
    plain = {k: v for k, v in changes.items() if "." not in k}
    chosen = settings_with(settings or cfg.tune, "tune", plain)
    where, address = _where(backend, address, cfg)
    if where == "ray":
        from gradwise.backends.ray_tune import tune_ray

        return tune_ray(cfg, out, chosen, address=address, concurrent=chosen.nproc)
    return run_tune(cfg, out, chosen, progress)


@overload
def report(
    run: Run | str | Path,
    settings: ReportSettings | None = None,
    *,
    out: str | Path | None = None,
    template: Literal["page"] = "page",
    pdf: bool = False,
    **changes: Any,
) -> Report: ...


@overload
def report(
    run: Run | str | Path,
    settings: ReportSettings | None = None,
    *,
    out: str | Path | None = None,
    template: DocumentTemplate,
    pdf: bool = False,
    **changes: Any,
) -> Document: ...


def report(
    run: Run | str | Path,
    settings: ReportSettings | None = None,
    *,
    out: str | Path | None = None,
    template: Literal["page"] | DocumentTemplate = "page",
    pdf: bool = False,
    **changes: Any,
) -> Report | Document:
    """Write the run's report: one self-contained HTML page (CSS inline, every plot a base64
    PNG drawn from the run's JSON) with a ship / ship with care / do not ship decision; or,
    with `template`, a document for regulated use filled from the run's files.

    Args:
        run: a Run or its directory.
        settings: a ReportSettings; default: the run's config `report:` section.
        out: the HTML file (default RUN/report.html, or RUN/<template>.html).
        template: "page" (the report), or "model-card", "annex-iv", "sr11-7": each item
            filled from the run (file and number quoted), from the `context` file, or
            marked as needing a person.
        pdf: also print the HTML to PDF beside it with headless Chromium.
        **changes: ReportSettings fields to change: `tune` (a tuning study's folder;
            default: the study the run lies inside, if any), `compare` (a comparison's
            folder whose seeds give the noise; default: the one the run lies inside),
            `context` (a YAML of item id -> text for the documents).

    Returns:
        A Report (the page: the file, the decision with its reasons, the sections and which
        have data) or a Document (the template's items and the coverage counts).

    Raises:
        NotTrainedError: no finished run there. ConfigError: `tune` / `compare` is not a
        study's folder, or the context file names an unknown item. DataError: a file the
        report reads is damaged. GradwiseError: `pdf` without Chromium installed.
    """
    from gradwise.reporting import write_report
    from gradwise.reporting.documents import print_pdf, write_document

    run_dir = run.path if isinstance(run, Run) else Path(run)
    chosen = settings_with(settings or _config_of(run).report, "report", changes)
    if template != "page":
        return write_document(run_dir, template, chosen.context, out, pdf)
    page = write_report(run_dir, chosen, out)
    if pdf:
        print_pdf(page.path)
    return page
