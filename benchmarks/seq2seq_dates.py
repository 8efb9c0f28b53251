"""Seq2seq on date normalisation: exact match on held-out rows, greedy and beam search.

    python benchmarks/seq2seq_dates.py [--rows 20000] [--threads N] [--beam 4]

Claim: the example config (examples/dates-seq2seq.yaml, a 2 + 2 block character-level
encoder-decoder) rewrites held-out human-written dates ("Tue 24 Nov 2026", "the 24th of
November, 2026", "24/11/2026", ...) as ISO 8601 with exact match >= 0.95 on the test split,
trained on this CPU in a few minutes. The data are generated at run time by
examples/make_dates.py into a temporary directory (nothing is written to the repository).
Reports test exact match with greedy decoding and with beam search, training tokens/s, decoding
sources/s and wall times. Run from the repository root.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import gradwise
from gradwise.data.text import PAD
from gradwise.models.seq2seq import Seq2Seq, translate
from gradwise.training.seq2seq import reference_ids

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "dates-seq2seq.yaml"
sys.path.insert(0, str(ROOT / "examples"))
from make_dates import write_dates  # noqa: E402


def exact_match(model: Seq2Seq, x: torch.Tensor, y: torch.Tensor, beam_size: int) -> tuple:
    """Exact match of decoded test targets and the decoding time in seconds."""
    started = time.perf_counter()
    predicted = translate(model, x[:, : model.source_len], model.target_len, beam_size, 512)
    wall_s = time.perf_counter() - started
    hits = sum(p == r for p, r in zip(predicted, reference_ids(y), strict=True))
    return hits / len(predicted), wall_s


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--beam", type=int, default=4)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# seq2seq_dates, {datetime.date.today()}, {cpu_name()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_dates(Path(tmp) / "dates.csv", args.rows, seed=0)
        started = time.perf_counter()
        run = gradwise.train(CONFIG, out=Path(tmp) / "run", **{"data.source": f"csv:{csv}"})
        call_s = time.perf_counter() - started
        m, history = run.metrics, run.history
        data = run.dataset()
    model, test = run.model, data.test
    assert isinstance(model, Seq2Seq)
    greedy, greedy_s = exact_match(model, test.x, test.y, 1)
    beam, beam_s = exact_match(model, test.x, test.y, args.beam)

    rows_seen = m["n_train"] * m["epochs"]
    positions = rows_seen * test.x.shape[1]
    real = int((data.train.x != PAD).sum()) * m["epochs"]  # padding left out
    print(
        f"{m['n_params']:,} parameters; {m['n_train']} train / {m['n_val']} val / "
        f"{m['n_test']} test rows; {m['epochs']} epochs (best {m['best_epoch']})"
    )
    for r in history:
        print(
            f"  epoch {r['epoch']}: val.loss {r['val.loss']:.4f}  val.exact_match "
            f"{r['val.exact_match']:.4f}  ({r['epoch_s']:.1f} s)"
        )
    print(
        f"training: {m['wall_s']:.0f} s in the loop (whole call with data and final metrics "
        f"{call_s:.0f} s); {positions / m['wall_s']:,.0f} token positions/s "
        f"({real / m['wall_s']:,.0f} non-padding tokens/s)"
    )
    print(
        f"test exact match: greedy {greedy:.4f} ({len(test) / greedy_s:,.0f} sources/s), "
        f"beam {args.beam} {beam:.4f} ({len(test) / beam_s:,.0f} sources/s); "
        f"metrics.json test.exact_match {m['test']['exact_match']:.4f}"
    )
    ok = min(greedy, beam) >= 0.95
    print(f"claim exact match >= 0.95 on held-out rows: {'met' if ok else 'NOT met'}")
    print(
        json.dumps(
            {
                "greedy": greedy,
                "beam": beam,
                "train_wall_s": m["wall_s"],
                "call_s": call_s,
                "positions_per_s": positions / m["wall_s"],
            }
        )
    )


if __name__ == "__main__":
    main()
