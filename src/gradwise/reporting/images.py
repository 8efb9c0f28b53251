"""Image grids: many (C, H, W) images tiled into one PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def save_grid(
    images: np.ndarray,
    path: Path,
    low: float,
    high: float,
    columns: int | None = None,
    scale: int = 0,
) -> None:
    """Tile (N, C, H, W) images into a PNG, mapping [low, high] to [0, 255].

    Args:
        columns: images per row (default: a square grid).
        scale: enlarge each pixel this many times (default: so small images reach ~64 px).
    """
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    scale = scale or max(1, 64 // max(h, w))
    pixels = np.clip((images - low) / max(high - low, 1e-8), 0, 1) * 255
    pad = 1
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i].transpose(1, 2, 0).astype(np.uint8)
    img = Image.fromarray(grid[..., 0] if c == 1 else grid, mode="L" if c == 1 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
