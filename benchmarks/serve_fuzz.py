"""Property-based fuzzing of the served OpenAPI document at full size: no request gets a 5xx.

    python benchmarks/serve_fuzz.py [--examples 400]

Trains three small runs (digits images, a table with named numeric and categorical columns,
a character GPT), builds each one's app, and lets schemathesis generate valid and invalid
requests for every operation of its OpenAPI document (tests/serving/test_fuzz.py does the
same with fewer examples). Prints the number of requests sent and their status codes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import gradwise
import gradwise.serving

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.serving.test_fuzz holds the fuzzing loop

from tests.serving.test_fuzz import fuzz  # noqa: E402


def runs(folder: Path) -> dict[str, gradwise.Run]:
    base = {"seed": 0, "train": {"epochs": 2, "batch_size": 64}}
    rng = np.random.default_rng(0)
    n = 300
    table = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "monthly income": np.where(rng.random(n) < 0.1, np.nan, rng.normal(50, 15, n)),
            "city": rng.choice(["Lyon", "Paris", "Nice"], n),
        }
    )
    table["churn"] = np.where(table["age"] > 50, "yes", "no")
    table.to_csv(folder / "churn.csv", index=False)
    (folder / "c.txt").write_text("abcabcabd " * 300)
    configs = {
        "digits": {"data": {"source": "builtin:digits"}, "model": {"arch": "mlp", "hidden": [32]}},
        "table": {
            "data": {"source": f"csv:{folder / 'churn.csv'}", "target": "churn"},
            "model": {"arch": "mlp", "hidden": [32]},
        },
        "gpt": {
            "data": {"source": f"text:{folder / 'c.txt'}", "block_size": 16},
            "model": {"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 32},
        },
    }
    return {
        name: gradwise.train({"name": name, **base, **cfg}, out=folder / name)
        for name, cfg in configs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=400, help="per operation and mode")
    args = parser.parse_args()
    torch.set_num_threads(1)
    total: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs(Path(tmp)).items():
            app = gradwise.serving.app(run, store=str(Path(tmp) / f"{name}.sqlite"), max_wait_ms=0)
            started = time.perf_counter()
            codes = fuzz(app, args.examples if name != "gpt" else max(5, args.examples // 4))
            by_status = Counter()
            for (_, status), count in codes.items():
                by_status[status] += count
            total.update(by_status)
            print(
                f"{name}: {sum(codes.values())} requests in {time.perf_counter() - started:.0f} s, "
                f"status codes {dict(sorted(by_status.items()))}",
                flush=True,
            )
    print(
        f"all: {sum(total.values())} requests, {sum(v for k, v in total.items() if k >= 500)} 5xx"
    )


if __name__ == "__main__":
    main()
