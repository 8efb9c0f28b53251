"""Small image sets: gradwise's default CNN against a plain PyTorch CNN on the same split.

    python benchmarks/small_images.py [--seeds 3] [--only mnist,digits,shapes] [--set k=v ...]

Three small image sets, each `--seeds` seeds:

- mnist: 3,000 of the shared MNIST images (about 1,950 to train), averaged down to 14x14 so
  that three seeds of both arms fit in minutes on a shared CPU; skipped, saying why, where
  the shared data is absent.
- digits: `builtin:digits`, 8x8 grey.
- shapes: generated here, unlike both: circles, squares and triangles at random position,
  size and rotation, in random colours on a random background with pixel noise, 16x16 RGB,
  2,400 images (about 1,560 to train).

Two arms per seed, on exactly the same train / val / test tensors (the split gradwise drew,
read back with `run.split`):

- defaults: the user's config, `data.source` and `model: {arch: cnn}` and nothing else (plus
  any `--set` overrides, to try a candidate default).
- plain: a hand-written peer: two conv blocks (conv 3x3, batch norm, ReLU, 2x2 max pool; 32
  and 64 channels), a 128-unit hidden layer with dropout 0.5, Adam lr 1e-3, batch 64,
  30 epochs, the epoch with the best validation accuracy kept.

Prints mean ± sd test accuracy per arm, the difference (defaults - plain) with the sd of the
per-seed differences, and the CPU flags. Both arms use one CPU thread.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gzip
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradwise
from gradwise.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_flags  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
N_MNIST = 3000
N_SHAPES = 2400
PLAIN_EPOCHS = 30


def shared_mnist() -> Path | None:
    """The shared MNIST test-set images (idx, gzip): GRADWISE_SHARED_DATA, else ../shared/data."""
    import os

    given = os.environ.get("GRADWISE_SHARED_DATA")
    folder = Path(given) if given else ROOT.parent / "shared" / "data"
    path = folder / "mnist" / "t10k-images-idx3-ubyte.gz"
    return path if path.is_file() else None


def write_mnist_subset(images: Path, out: Path) -> None:
    """N_MNIST images (a fixed random subset), 2x2-averaged, as an npz of (N, 1, 14, 14)."""
    raw_x = gzip.decompress(images.read_bytes())
    raw_y = gzip.decompress((images.parent / "t10k-labels-idx1-ubyte.gz").read_bytes())
    x = np.frombuffer(raw_x, np.uint8, offset=16).reshape(-1, 1, 28, 28)
    y = np.frombuffer(raw_y, np.uint8, offset=8).astype(np.int64)
    keep = np.random.default_rng(0).permutation(len(x))[:N_MNIST]
    small = x[keep].astype(np.float32).reshape(-1, 1, 14, 2, 14, 2).mean(axis=(3, 5))
    np.savez(out, X=small, y=y[keep])


def draw_shapes(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` RGB images (n, 3, size, size) in [0, 1] of a circle (0), square (1) or triangle (2).

    Each has a random centre, radius, rotation, foreground and background colour (at least
    0.3 apart in mean brightness, so the shape is visible) and gaussian pixel noise.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    xs = np.empty((n, 3, size, size), np.float32)
    ys = rng.integers(0, 3, n)
    for i, label in enumerate(ys):
        r = rng.uniform(0.18, 0.35) * size
        cx, cy = rng.uniform(r, size - r, 2)
        angle = rng.uniform(0, 2 * math.pi)
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
        if label == 0:
            mask = u**2 + v**2 <= r**2
        elif label == 1:
            half = r / math.sqrt(2) * 1.2
            mask = (np.abs(u) <= half) & (np.abs(v) <= half)
        else:  # the intersection of three half-planes, 120 degrees apart
            mask = np.ones_like(u, bool)
            for k in range(3):
                a = 2 * math.pi * k / 3
                mask &= u * math.cos(a) + v * math.sin(a) <= r / 2
        fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        while abs(fg.mean() - bg.mean()) < 0.3:
            fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        img = np.where(mask[None], fg[:, None, None], bg[:, None, None])
        xs[i] = np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1)
    return xs, ys.astype(np.int64)


class PlainCNN(nn.Module):
    """The hand-written peer: two conv blocks, a flattened hidden layer, dropout."""

    def __init__(self, c: int, h: int, w: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def plain_cnn(run: Any, seed: int) -> float:
    """The peer trained on the run's own split tensors; test accuracy of its best val epoch."""
    tr, va, te = (run.split(name) for name in ("train", "val", "test"))
    torch.manual_seed(seed)
    c, h, w = tr.x.shape[1:]
    model = PlainCNN(c, h, w, int(tr.y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    best_val, best_state = -1.0, copy.deepcopy(model.state_dict())
    for _ in range(PLAIN_EPOCHS):
        model.train()
        for idx in torch.randperm(len(tr.x), generator=g).split(64):
            loss = F.cross_entropy(model(tr.x[idx]), tr.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = accuracy(model, va.x, va.y)
        if val > best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return accuracy(model, te.x, te.y)


def one_seed(source: str, seed: int, overrides: list[str], tmp: Path) -> tuple[float, float]:
    """(defaults, plain) test accuracy for one seed, on the split gradwise drew."""
    cfg = load_config({"name": "small", "data": {"source": source}, "model": {"arch": "cnn"}})
    cfg = load_config(cfg, overrides) if overrides else cfg
    run = gradwise.train(cfg, out=tmp / f"{Path(source).stem}-{seed}", seed=seed)
    pair = float(run.metrics["test"]["accuracy"]), plain_cnn(run, seed)
    print(f"  {source} seed {seed}: defaults {pair[0]:.4f}, plain {pair[1]:.4f}", file=sys.stderr)
    return pair


def sources(tmp: Path, only: list[str]) -> dict[str, str]:
    """name -> data.source for each set asked for; the npz files are written into `tmp`."""
    found: dict[str, str] = {}
    if "mnist" in only:
        images = shared_mnist()
        if images is None:
            print("mnist: skipped, no shared data (GRADWISE_SHARED_DATA or ../shared/data)")
        else:
            write_mnist_subset(images, tmp / "mnist.npz")
            found["mnist"] = f"npz:{tmp / 'mnist.npz'}"
    if "digits" in only:
        found["digits"] = "builtin:digits"
    if "shapes" in only:
        x, y = draw_shapes(N_SHAPES)
        np.savez(tmp / "shapes.npz", X=x, y=y)
        found["shapes"] = f"npz:{tmp / 'shapes.npz'}"
    return found


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="mnist,digits,shapes", help="comma-separated sets")
    parser.add_argument("--set", action="append", default=[], help="override the defaults arm")
    args = parser.parse_args()
    torch.set_num_threads(1)  # gradwise picks one thread for models this small; so does the peer
    print(f"# small image sets, {datetime.date.today()}, {cpu_flags()}, torch {torch.__version__}")
    print(f"# defaults arm overrides: {args.set or 'none'}")
    print("| set | defaults | plain CNN | defaults - plain (sd) | per seed (defaults / plain) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name, source in sources(tmp, args.only.split(",")).items():
            pairs = [one_seed(source, seed, args.set, tmp) for seed in range(args.seeds)]
            ours, peer = [p[0] for p in pairs], [p[1] for p in pairs]
            diff = [a - b for a, b in pairs]
            per_seed = ", ".join(f"{a:.4f}/{b:.4f}" for a, b in pairs)
            print(
                f"| {name} | {statistics.mean(ours):.4f} ± {spread(ours):.4f} | "
                f"{statistics.mean(peer):.4f} ± {spread(peer):.4f} | "
                f"{statistics.mean(diff):+.4f} ({spread(diff):.4f}) | {per_seed} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
