"""What the optimisation levers buy on this CPU: `gradwise optimize --auto` on four models.

    python benchmarks/optimize_speed.py [--only transformer,mnist,digits-mlp,digits-cnn]
                                        [--seconds 1.0] [--cache DIR] [--threads 1] [--reuse]

Claims (every candidate measured beside eager fp32 in the same process, interleaved):
- transformer encoder classifier (BERT arch, 4 layers, d_model 256, sequence 128, SMS spam)
  and the MNIST CNN of examples/defects-mnist-cnn.yaml: the best variant at batch 64 is
  >= 3x faster than eager fp32 with <= 0.5 point of test accuracy lost;
- digits MLP and digits CNN: ONNX Runtime or OpenVINO at batch 1 is >= 2x faster than eager.

Training is kept short (the claims are about inference): the runs are cached in --cache and
reused when present. For the CNNs, eager fp32 is also timed in channels_last (gradwise
predicts with contiguous tensors), beside the winner, to show the stricter ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

import gradwise
from gradwise.config import load_config
from gradwise.deploy.cost import batch_of, point, time_interleaved
from gradwise.deploy.optimize import Levers, plan
from gradwise.deploy.tradeoff import TradeOff, tradeoff
from gradwise.run import Run

ROOT = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout (a worktree may sit one folder deeper)
DATA = next(
    (p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
    ROOT.parent / "shared" / "data",
)
SMS = DATA / "sms_spam" / "SMSSpamCollection"
MNIST = DATA / "mnist" / "t10k"

TRANSFORMER = {
    "name": "sms-bert-4x256",
    "seed": 0,
    "data": {
        "source": f"csv:{SMS}",
        "separator": "\t",
        "quoting": "none",
        "columns": ["label", "text"],
        "target": "label",
        "text_column": "text",
        "tokenizer": "bpe",
        "vocab_size": 2000,
        "block_size": 128,
        "split": {"val": 0.1, "test": 0.2},
    },
    "model": {
        "arch": "bert",
        "n_layer": 4,
        "n_head": 4,
        "d_model": 256,
        "ffn_mult": 4,
        "dropout": 0.1,
        "pool": "mean",
    },
    "train": {
        "epochs": 2,
        "batch_size": 32,
        "optimizer": {"name": "adamw", "lr": 5.0e-4, "weight_decay": 0.01},
        "schedule": {"name": "cosine", "warmup_steps": 50},
        "early_stopping": {"patience": None},
    },
}


def cases() -> dict[str, tuple[object, dict[str, object], str]]:
    """name -> (config, overrides, claim: b64 or b1)."""
    mnist = load_config(ROOT / "examples" / "defects-mnist-cnn.yaml")
    mnist = mnist.model_copy(
        update={"data": mnist.data.model_copy(update={"source": f"idx:{MNIST}"})}
    )
    return {
        "transformer": (TRANSFORMER, {}, "b64"),
        "mnist": (mnist, {"train.epochs": 3}, "b64"),
        "digits-mlp": (ROOT / "examples" / "digits-mlp.yaml", {}, "b1"),
        "digits-cnn": (ROOT / "examples" / "digits-cnn.yaml", {}, "b1"),
    }


def trained(name: str, config: object, overrides: dict[str, object], cache: Path) -> Run:
    out = cache / name
    if (out / "metrics.json").is_file():
        return gradwise.load(out)
    return gradwise.train(config, out=out, overwrite=True, **overrides)  # type: ignore[arg-type]


def auto(run: Run, seconds: float, reuse: bool) -> TradeOff:
    """`gradwise optimize --auto`, or (--reuse) its measuring half on the variants already
    made, when every candidate is there."""
    names = plan(Levers(auto=True), run.model)
    folders = [run.path / "artifacts" / n for n in names]
    if reuse and all((f / "metrics.json").is_file() for f in folders):
        return tradeoff(run, [gradwise.load(f) for f in folders], 0.5, None, seconds)
    return gradwise.optimize(run, auto=True, budget_pt=0.5, seconds=seconds)


def channels_last_check(run: Run, winner: Run, seconds: float) -> dict[str, float]:
    """p50 at batch 64: eager contiguous, eager channels_last, the winner; interleaved."""
    x = batch_of(run.split("test").x, 64)
    xc = x.contiguous(memory_format=torch.channels_last)
    import copy

    model_cl = copy.deepcopy(run.model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    calls = {
        "eager": lambda: run.model(x),
        "eager channels_last": lambda: model_cl(xc),
        "winner": lambda: winner.model(x),
    }
    with torch.no_grad():
        times = time_interleaved(calls, seconds * 2)
    return {k: point(64, v).p50_ms for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="transformer,mnist,digits-mlp,digits-cnn")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/gradwise-bench-optimize"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch, ONNX Runtime and OpenVINO alike; 1 keeps ratios stable on a "
        "CPU shared with other jobs (a thread that waits for a descheduled sibling stalls)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="measure the variants already in the cache"
    )
    args = parser.parse_args()
    train_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    print(
        f"# optimize_speed, {datetime.date.today()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    summary = {}
    for name, (config, overrides, claim) in cases().items():
        if name not in args.only.split(","):
            continue
        torch.set_num_threads(train_threads)
        run = trained(name, config, overrides, args.cache)
        torch.set_num_threads(args.threads)
        table = auto(run, args.seconds, args.reuse)
        print(f"\n## {name}: {run.path}, test accuracy {run.metrics['test']['accuracy']:.4f}")
        print(
            "| variant | accuracy % | Δ pt | ECE Δ | b1 ms | b64 ms | speed-up b1 | speed-up b64 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in table.rows:
            ece = "n/a" if r.ece_delta is None else f"{r.ece_delta:+.4f}"
            print(
                f"| {r.variant} | {r.metric:.2f} | {r.metric_delta:+.2f} | {ece} | "
                f"{r.latency_b1_ms:.3f} | {r.latency_b64_ms:.3f} | {r.speedup_b1:.2f}x | "
                f"{r.speedup_b64:.2f}x |"
            )
        print(table.verdict)
        rows = {r.variant: r for r in table.rows}
        if claim == "b64":
            best = rows[table.choice] if table.choice else None
            ok = best is not None and best.speedup_b64 >= 3 and best.metric_delta >= -0.5
            line = (
                f"claim (best at batch 64 >= 3x, <= 0.5 pt lost): {ok}; best "
                f"{best.variant if best else None} {best.speedup_b64 if best else 0:.2f}x, "
                f"{best.metric_delta if best else 0:+.2f} pt"
            )
            if best is not None and run.schema.kind == "image":
                p50 = channels_last_check(run, gradwise.load(best.path), args.seconds)
                strict = p50["eager channels_last"] / p50["winner"]
                line += (
                    f"; against eager channels_last: {strict:.2f}x "
                    f"(p50 ms: eager {p50['eager']:.2f}, channels_last "
                    f"{p50['eager channels_last']:.2f}, {best.variant} {p50['winner']:.2f})"
                )
            summary[name] = {
                "best": table.choice,
                "speedup_b64": best.speedup_b64 if best else None,
            }
        else:
            engines = [r for r in table.rows if r.variant.startswith(("onnx", "openvino"))]
            best = max(engines, key=lambda r: r.speedup_b1)
            ok = best.speedup_b1 >= 2
            line = (
                f"claim (ONNX Runtime or OpenVINO at batch 1 >= 2x eager): {ok}; best "
                f"{best.variant} {best.speedup_b1:.2f}x ({best.latency_b1_ms * 1e3:.0f} vs "
                f"{rows['fp32'].latency_b1_ms * 1e3:.0f} microseconds)"
            )
            summary[name] = {"best_b1": best.variant, "speedup_b1": best.speedup_b1}
        print(line)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
