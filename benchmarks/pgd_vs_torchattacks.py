"""gradwise's PGD against torchattacks' PGD on the same model, epsilon, steps and step size.

    python benchmarks/pgd_vs_torchattacks.py [--eps 1.0] [--steps 10] [--repeats 10]

Claim: robust accuracy within 1 point of torchattacks, in at most torchattacks' time.

Trains a digits MLP and a digits CNN with gradwise (seconds), then attacks the whole test
split (359 images) with L-inf PGD both ways:

- gradwise: `gradwise.auditing.robustness.pgd` on the model's inputs (standardised pixels), with
  eps in raw pixel levels (scale = the normaliser's std, bounds = the 0..16 pixel range in
  model units), as the robustness audit calls it;
- torchattacks: `torchattacks.PGD` told the normalisation (`set_normalization_used(mean/16,
  std/16)`): it maps the model inputs back to pixels in [0, 1] (its required range), attacks
  them there, and returns model inputs.

The threat set is the same: eps pixel levels = eps / 16 in torchattacks' units = eps / std in
the model's units; both clip to the valid pixel range. Step size 2.5 * eps / steps. Without
random start both are deterministic; with random start the uniform noise comes from the same
seed (torchattacks draws from the global generator, gradwise from a seeded Generator: the same
stream). Each of `--repeats` rounds times the whole attack on the test split both ways, one
after the other; the table gives each one's best time and the median over rounds of the
paired ratio (both halves of a pair see the same load on a shared machine). Robust accuracy
is re-scored by the model on each attack's returned images.

torchattacks is installed with `pip install --no-deps torchattacks` (its dependencies pull a
torchvision that breaks beside the CPU torch); its PGD imports torch alone.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchattacks

import gradwise
from gradwise.auditing.robustness import pgd
from gradwise.training.adversarial import attack_budget

CONFIGS = {
    "mlp": {"arch": "mlp", "hidden": [256, 256], "dropout": 0.1},
    "cnn": {"arch": "cnn", "channels": [32, 64], "dropout": 0.1},
}


def train(arch: str, out: Path) -> gradwise.Run:
    cfg = {
        "name": f"digits-{arch}",
        "seed": 0,
        "data": {"source": "builtin:digits"},
        "model": CONFIGS[arch],
        "train": {"epochs": 30, "batch_size": 64, "diagnostics": False, "checkpoint": False},
    }
    return gradwise.train(cfg, out=out / arch, overwrite=True)


def timed_alternately(
    repeats: int, fns: dict[str, Callable[[], torch.Tensor]]
) -> dict[str, tuple[list[float], torch.Tensor]]:
    """Each function's wall times over `repeats` rounds, the functions taking turns in every
    round (so a busy spell on the shared machine hits both alike), and its last output."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - started)
    return {name: (times[name], outs[name]) for name in fns}


def compare(run: gradwise.Run, eps: float, steps: int, repeats: int, random_start: bool) -> dict:
    model = run.model.eval()
    test = run.split("test")
    x, y = test.x, test.y
    norm = run.schema.array
    assert norm is not None
    span = norm.pixel_high - norm.pixel_low  # 16 pixel levels
    budget = attack_budget(run.schema)
    alpha = 2.5 * eps / steps
    mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
    std = torch.tensor(norm.std).view(1, -1, 1, 1)

    attack = torchattacks.PGD(
        model, eps=eps / span, alpha=alpha / span, steps=steps, random_start=random_start
    )
    attack.set_normalization_used(
        mean=[(m - norm.pixel_low) / span for m in norm.mean], std=[s / span for s in norm.std]
    )

    def theirs() -> torch.Tensor:
        # told the normalisation, torchattacks takes model inputs, attacks the [0, 1] pixels
        # behind them (inverse_normalize), and returns model inputs again
        torch.manual_seed(0)
        return attack(x, y)

    def ours() -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return pgd(
            model,
            x,
            y,
            eps,
            steps,
            alpha,
            "linf",
            budget.scale,
            budget.low,
            budget.high,
            random_start=random_start,
            generator=g,
        )

    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    theirs(), ours()  # warm-up: first-call allocations
    timed = timed_alternately(repeats, {"theirs": theirs, "ours": ours})
    (times_theirs, adv_theirs), (times_ours, adv) = timed["theirs"], timed["ours"]
    paired = [o / t for o, t in zip(times_ours, times_theirs)]  # same round, same load
    with torch.no_grad():
        acc_theirs = float((model(adv_theirs).argmax(1) == y).float().mean())
        acc_ours = float((model(adv).argmax(1) == y).float().mean())
        ours_pixels = adv * std + mean
        max_change = float((ours_pixels - (x * std + mean)).abs().max())
        same_images = float((ours_pixels - (adv_theirs * std + mean)).abs().max())
    return {
        "clean": clean,
        "ours": acc_ours,
        "theirs": acc_theirs,
        "t_ours": min(times_ours),
        "t_theirs": min(times_theirs),
        "median_ratio": float(torch.tensor(paired).median()),
        "max_change": max_change,
        "max_image_gap": same_images,
        "eps_model": eps / float(std.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eps", type=float, default=1.0, help="pixel levels of 16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"torch {torch.__version__}  torchattacks {torchattacks.__version__}  "
        f"threads {args.threads}"
    )
    print(
        f"digits test split (359 images), L-inf PGD, eps {args.eps:g} pixel level(s) of 16 "
        f"(= {args.eps / 16:.4f} in [0, 1] pixels), {args.steps} steps of "
        f"{2.5 * args.eps / args.steps:g} levels\n"
    )
    print(
        "| model | random start | clean acc | gradwise robust acc | torchattacks robust acc "
        "| gap (points) | largest image difference (levels) | gradwise s (best) "
        "| torchattacks s (best) | ratio of bests | median ratio of paired rounds |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok, eps_model = True, float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in CONFIGS:
            run = train(arch, Path(tmp))
            for random_start in (False, True):
                r = compare(run, args.eps, args.steps, args.repeats, random_start)
                gap = 100 * (r["ours"] - r["theirs"])
                ratio = r["t_ours"] / r["t_theirs"]
                ok = ok and abs(gap) <= 1.0 and r["median_ratio"] <= 1.0
                print(
                    f"| {arch} | {'yes (same seed)' if random_start else 'no'} | "
                    f"{r['clean']:.4f} | {r['ours']:.4f} | {r['theirs']:.4f} | {gap:+.2f} | "
                    f"{r['max_image_gap']:.2e} | {r['t_ours']:.4f} | {r['t_theirs']:.4f} | "
                    f"{ratio:.3f} | {r['median_ratio']:.3f} |"
                )
                assert r["max_change"] <= args.eps + 1e-4, r["max_change"]
                eps_model = r["eps_model"]
    print(
        f"\neps {args.eps:g} pixel level = {args.eps / 16:.4f} in torchattacks' [0, 1] pixels = "
        f"{eps_model:.4f} in the model's standardised units (std {args.eps / eps_model:.3f})"
    )
    verdict = "holds" if ok else "FAILS"
    print(f"claim (within 1 point; median paired time ratio <= 1): {verdict}")


if __name__ == "__main__":
    main()
