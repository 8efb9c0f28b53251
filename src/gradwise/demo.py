"""`make demo`: the whole flow on built-in data in a few minutes on 2 CPU cores.

Train the digits MLP and CNN and a small GPT; then take the MLP through the judgment half:
audit it (every check; the verdict table, and the certified abstention in one sentence),
optimise it (ONNX Runtime fp32 and int8, and OpenVINO when installed; the trade-off table,
each variant's abstention re-certified), measure what it costs (the cost and latency tables),
and write its report, whose path is printed last. Nothing here starts a server.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import gradwise
from gradwise.cli.console import make_console
from gradwise.config import load_config
from gradwise.errors import GradwiseError

DEFAULT_CONFIGS = ["examples/digits-mlp.yaml", "examples/digits-cnn.yaml"]
LANGUAGE_MODEL = "examples/demo-gpt.yaml"
AUDITED = "examples/digits-mlp.yaml"
# The audit's defaults take about 80 s on this run on 2 cores, most of it the learning
# curve's 9 retrains and data quality's 5 folds; the demo asks for fewer. Every check runs.
# The selective check keeps its defaults (alpha 0.02, delta 0.1): on this run's 270
# validation rows they certify a threshold that answers about 97% of cases.
DEMO_AUDIT = {
    "audit.generalisation.fractions": [0.25, 0.5, 1.0],
    "audit.generalisation.seeds": 1,
    "audit.data_quality.folds": 3,
}
BENCH_BATCHES = (1, 8, 64)


def main(argv: list[str] | None = None) -> int:
    console = make_console()
    paths = [Path(p) for p in (argv if argv else DEFAULT_CONFIGS)]
    started = time.perf_counter()
    table = Table(title="test split (held out, never seen in training)", title_justify="left")
    for col in (
        "model",
        "accuracy",
        "macro-F1",
        "log-loss",
        "params",
        "epochs",
        "seconds",
        "run directory",
    ):
        table.add_column(col, justify="left" if col in ("model", "run directory") else "right")
    for path in paths:
        cfg = load_config(path)
        out = Path("runs") / cfg.name
        console.print(f"training [bold]{cfg.name}[/] ({cfg.model.arch} on {cfg.data.source}) ...")
        began = time.perf_counter()
        run = gradwise.train(path, out=out, overwrite=True)
        m = run.metrics
        test = m["test"]
        table.add_row(
            cfg.name,
            f"{test['accuracy']:.4f}",
            f"{test['f1_macro']:.4f}",
            f"{test['log_loss']:.4f}",
            f"{m['n_params']:,}",
            f"{m['epochs']} (best {m['best_epoch']})",
            f"{time.perf_counter() - began:.1f}",
            str(out),
        )
    console.print(table)
    if argv:
        return 0
    if Path(LANGUAGE_MODEL).is_file():
        _language_model(console, Path(LANGUAGE_MODEL))
    run_dir = Path("runs") / load_config(AUDITED).name
    _judge(console, run_dir)
    report = gradwise.report(run_dir)
    console.print(f"the whole demo took {time.perf_counter() - started:.0f} s")
    console.print(_decision_line(report), highlight=False)
    console.print(f"report: {report.path}", highlight=False, soft_wrap=True)
    return 0


def _language_model(console: Console, path: Path) -> None:
    """Train the small GPT and print what it writes."""
    cfg = load_config(path)
    out = Path("runs") / cfg.name
    console.print(
        f"training [bold]{cfg.name}[/] ({cfg.model.arch}, a character-level "
        "transformer, on tiny Shakespeare; about a minute) ..."
    )
    try:
        run = gradwise.train(path, out=out, overwrite=True)
    except GradwiseError as exc:  # e.g. the corpus is not where the config says
        console.print(f"skipped {cfg.name}: {exc}", markup=False, highlight=False)
        return
    m = run.metrics
    console.print(
        f"{cfg.name}: {m['n_params']:,} parameters, {m['epochs']} epochs in {m['wall_s']:.0f} s; "
        f"validation loss {m['val']['loss']:.3f} nats/char (perplexity "
        f"{m['val']['perplexity']:.2f}); run directory {out}"
    )
    sample = run.generate_scored("ROMEO:", 300, temperature=0.8, seed=0)
    console.print(
        "[bold]gradwise generate runs/demo-gpt --prompt 'ROMEO:' --tokens 300 --seed 0[/]"
    )
    console.print("ROMEO:" + sample.text, markup=False, highlight=False)
    console.print(f"(perplexity of the sample under the model: {sample.perplexity:.2f})")


def _unprefixed(keys: dict[str, object]) -> dict[str, object]:
    return {k.removeprefix("audit."): v for k, v in keys.items()}


def _judge(console: Console, run_dir: Path) -> None:
    """Audit, optimise and cost the run, printing each table as its verb does."""
    from gradwise.cli.audit import overall_line, verdict_table
    from gradwise.cli.optimize import cost_table, latency_table, machine_text, tradeoff_table
    from gradwise.config import settings_with
    from gradwise.engines.openvino_runtime import has_openvino

    run = gradwise.load(run_dir)
    lighter = ", ".join(f"{k}={_value(v)}" for k, v in DEMO_AUDIT.items())
    console.print(
        f"[bold]gradwise audit {run_dir}[/] (every check; lighter than the defaults so the demo "
        f"stays short: {lighter}) ...",
        highlight=False,
    )
    lighter_settings = settings_with(run.config.audit, "audit", _unprefixed(DEMO_AUDIT))
    report = gradwise.audit(run, lighter_settings)
    console.print(verdict_table(report, f"audit of {run_dir}"))
    console.print(overall_line(report))
    console.print(_abstention_line(report), markup=False, highlight=False)

    openvino = has_openvino()
    flags = "--quantize int8 --onnx" + (" --openvino" if openvino else "")
    console.print(f"[bold]gradwise optimize {run_dir} {flags}[/] ...", highlight=False)
    if not openvino:
        console.print("(OpenVINO is not installed: pip install 'gradwise[openvino]' adds it)")
    trade = gradwise.optimize(run_dir, quantize="int8", onnx=True, openvino=openvino)
    console.print(tradeoff_table(trade, f"trade-off of {run_dir}"))
    for row in trade.rows[1:]:
        console.print(f"- {row.recommendation}", markup=False, highlight=False)
    console.print(trade.verdict, markup=False, highlight=False)

    batches = ",".join(map(str, BENCH_BATCHES))
    console.print(f"[bold]gradwise bench {run_dir} --variants all --batches {batches}[/] ...")
    cost = gradwise.bench(run_dir, variants="all", batches=BENCH_BATCHES, seconds=0.5)
    console.print(cost_table(cost, f"cost of {run_dir}"))
    console.print(latency_table(cost))
    console.print(f"measured on {machine_text(cost.machine)}; price 0.05 USD per core-hour.")
    console.print(f"[bold]gradwise report {run_dir}[/] ...")


def _value(v: Any) -> str:
    return "[" + ",".join(map(str, v)) + "]" if isinstance(v, list) else str(v)


def _abstention_line(report: Any) -> str:
    """The selective check's plain sentence: what share the model answers under its certified
    error rate, and what share goes to a person."""
    try:
        selective = report["selective"]
    except KeyError:
        return "abstention: the selective check did not run."
    return f"abstention (gradwise predict {report.run} --abstain applies it): {selective.summary}"


def _decision_line(report: Any) -> str:
    decision = report.decision
    said = [r.text for r in decision.reasons]
    if decision.abstention is not None:
        said.append(decision.abstention.text)
    reasons = "; ".join(said)
    return f"decision: {decision.label}" + (f" ({reasons})" if reasons else "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
