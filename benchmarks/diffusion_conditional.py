"""Class-conditional diffusion on digits: does it draw the digit it is asked for?

    .venv/bin/python benchmarks/diffusion_conditional.py [--per-class 50] [--out DIR] [--threads 1]

Run from the repository root (the example configs use relative paths). Trains
`examples/digits-diffusion.yaml` and, separately, the classifier `examples/digits-cnn.yaml`;
generates `--per-class` samples of every digit with `run.sample` and lets the CNN read them.
Claim: at least 90% of the generated samples are classified as the requested class (at the
config's guidance). Guidance 0 (the label ignored: about 10% expected by chance) and 1 (no
guidance) are reported as controls, and the CNN's accuracy on real test digits as its ceiling.
To check that the model does not just copy its training images, the distance from each sample
to its nearest training image is compared with the same distance for the real test digits.
Writes a grid with one row per class to OUT/samples.png.

Torch runs on `--threads` threads (default 1): on a shared 2-core machine, two OpenMP threads
wait on each other whenever a neighbour's process holds a core, and small convolutions then run
up to 50 times slower, which would make the wall times measure the neighbours.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import numpy as np
import torch

import gradwise
from gradwise.config import DiffusionConfig
from gradwise.reporting.images import save_grid
from gradwise.run import Run

DIFFUSION = "examples/digits-diffusion.yaml"
CLASSIFIER = "examples/digits-cnn.yaml"
CLAIM = 0.90


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=50, help="samples of each class")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/diffusion_conditional"))
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# diffusion_conditional, {datetime.date.today()}, {_cpu()}, torch {torch.__version__}")

    diffusion, diffusion_s = _train(DIFFUSION, args.out / "diffusion")
    cnn, cnn_s = _train(CLASSIFIER, args.out / "cnn")
    print(
        f"diffusion: {diffusion_s:.1f} s to train, {diffusion.metrics['epochs']} epochs, "
        f"{diffusion.metrics['n_params']:,} parameters, test {diffusion.metrics['test']}"
    )
    print(
        f"classifier: {cnn_s:.1f} s to train, test accuracy "
        f"{cnn.metrics['test']['accuracy']:.4f} (its ceiling on real digits)"
    )

    classes = list(cnn.schema.classes or [])
    model_cfg = diffusion.config.model
    assert isinstance(model_cfg, DiffusionConfig)
    rows = {}  # guidance -> ((K * per_class, C, H, W) samples, (K, per_class) hits, wall s)
    for guidance in sorted({0.0, 1.0, model_cfg.guidance}):
        started = time.perf_counter()
        images, hits = _sample_and_classify(diffusion, cnn, classes, args, guidance)
        rows[guidance] = (images, hits, time.perf_counter() - started)

    print(
        f"\n{len(classes) * args.per_class} samples, {args.per_class} per class, "
        f"{model_cfg.sample_steps} DDIM steps"
    )
    print(
        f"| guidance | classified as requested | {' | '.join(map(str, classes))} | "
        "sampling wall s |"
    )
    print("|---:|---:|" + "---:|" * len(classes) + "---:|")
    for guidance, (_, hits, wall_s) in rows.items():
        per_class = " | ".join(f"{h.mean():.2f}" for h in hits)
        print(f"| {guidance:g} | {np.mean(hits):.4f} | {per_class} | {wall_s:.1f} |")

    guided, hits, _ = rows[model_cfg.guidance]
    verdict = "met" if np.mean(hits) >= CLAIM else "NOT met"
    print(
        f"\nclaim (>= {CLAIM:.0%} at guidance {model_cfg.guidance:g}): {verdict} "
        f"({np.mean(hits):.2%})"
    )
    test_d, sample_d = _nearest_train_distances(diffusion, guided)
    print(
        "distance to the nearest training image (raw pixel units), median [10th percentile]: "
        f"real test digits {np.median(test_d):.1f} [{np.percentile(test_d, 10):.1f}], "
        f"samples {np.median(sample_d):.1f} [{np.percentile(sample_d, 10):.1f}]"
    )
    _save_rows(diffusion, guided, len(classes), args.out / "samples.png")
    print(f"grid of the first 10 samples per class: {args.out / 'samples.png'}")


def _train(config: str, out: Path) -> tuple[Run, float]:
    started = time.perf_counter()
    run = gradwise.train(config, out=out, overwrite=True)
    return run, time.perf_counter() - started


def _sample_and_classify(
    diffusion: Run, cnn: Run, classes: list, args: argparse.Namespace, guidance: float
) -> tuple[np.ndarray, np.ndarray]:
    """(K * per_class, C, H, W) raw-scale samples and (K, per_class) booleans: read as asked."""
    images, hits = [], []
    for i, label in enumerate(classes):
        batch = diffusion.sample(args.per_class, label=label, guidance=guidance, seed=args.seed + i)
        images.append(batch)
        hits.append(cnn.predict(batch) == label)
    return np.concatenate(images), np.stack(hits)


def _save_rows(run: Run, images: np.ndarray, n_classes: int, path: Path) -> None:
    """A PNG with one row per class: the first 10 samples of each."""
    per_class = images.reshape(n_classes, -1, *images.shape[1:])[:, :10]
    norm = run.schema.array
    assert norm is not None
    save_grid(
        per_class.reshape(-1, *images.shape[1:]),
        path,
        norm.pixel_low,
        norm.pixel_high,
        columns=per_class.shape[1],
    )


def _nearest_train_distances(run: Run, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2 distance from each real test image, and from each sample, to its nearest training
    image, in raw pixel units: samples much closer than test images would be copies."""
    data = run.dataset()
    norm = run.schema.array
    assert norm is not None
    mean = np.array(norm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(norm.std, dtype=np.float32).reshape(1, -1, 1, 1)
    train = torch.from_numpy((data.train.x.numpy() * std + mean).reshape(len(data.train), -1))
    test = torch.from_numpy((data.test.x.numpy() * std + mean).reshape(len(data.test), -1))
    generated = torch.from_numpy(samples.reshape(len(samples), -1))
    return (
        torch.cdist(test, train).min(dim=1).values.numpy(),
        torch.cdist(generated, train).min(dim=1).values.numpy(),
    )


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x{torch.get_num_threads()} threads"
    return platform.processor()


if __name__ == "__main__":
    main()
