"""Images: folders of PNG/JPG files (one sub-folder per class) and the MNIST idx format."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from gradwise.errors import DataError

log = logging.getLogger("gradwise")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_image_folder(
    root: Path, size: int | None, color: Literal["auto", "gray", "rgb"]
) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Read DIR/<class>/<image> files.

    Returns:
        x: (N, C, H, W) uint8 pixels; y: (N,) class names; the colour mode used; the size.
    """
    if not root.is_dir():
        raise DataError(f"Image folder {root} not found; check data.source (images:DIR).")
    # hidden folders (.ipynb_checkpoints, .git) are tool leftovers, not classes
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, c.name) for c in classes for f in sorted(c.iterdir()) if _is_image(f)]
    if not files:
        raise DataError(
            f"No images found under {root}; expected one sub-folder per class holding "
            f"{'/'.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} files."
        )
    if len({name for _, name in files}) < 2:
        raise DataError(f"{root} holds images of only one class; classification needs two or more.")
    if color == "auto":
        color = "gray" if all(_is_gray(f) for f, _ in files[:200]) else "rgb"
    if size is None:
        size = max(_image_size(files[0][0]))
        log.info("images resized to %dx%d (set data.image_size to change)", size, size)
    x = np.stack([load_image(f, size, color) for f, _ in files])
    y = np.array([name for _, name in files])
    return x, y, color, size


def load_image(path: Path, size: int, color: Literal["gray", "rgb"]) -> np.ndarray:
    """One image as (C, size, size) uint8."""
    try:
        with Image.open(path) as img:
            pixels = img.convert("L" if color == "gray" else "RGB")
            if pixels.size != (size, size):
                pixels = pixels.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(pixels, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"Cannot read image {path}: {exc}. Remove or replace the file.") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_paths(path: Path, size: int, color: Literal["gray", "rgb"]) -> np.ndarray:
    """A single image file or a folder (searched recursively) as (N, C, size, size) uint8."""
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if _is_image(f))
    if not files:
        raise DataError(f"No images found at {path}.")
    return np.stack([load_image(f, size, color) for f in files])


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"Cannot read image {path}: {exc}. Remove or replace the file.") from None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _is_gray(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.mode in ("L", "1", "I", "I;16", "F", "LA")
    except (UnidentifiedImageError, OSError):
        return True


# ------------------------------------------------------------------ idx (MNIST)

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_file(path: Path) -> np.ndarray:
    """Read one idx file (gzip or not) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # a cut-off .gz ends in EOFError
        raise DataError(f"Cannot read idx file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an idx file (bad magic number).")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path} is truncated: the header of {ndim} dimensions is cut off.")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    n_bytes = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != n_bytes:
        raise DataError(
            f"{path} is truncated or corrupt: header says shape {dims} ({n_bytes} bytes of "
            f"data), the file holds {len(raw) - offset}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)


def idx_files(prefix: str) -> list[Path]:
    """The images file and the labels file of an idx prefix."""
    return [_find(prefix, "images-idx3-ubyte"), _find(prefix, "labels-idx1-ubyte")]


def read_idx(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from PREFIX-images-idx3-ubyte[.gz] and PREFIX-labels-idx1-ubyte[.gz].

    Returns:
        x: (N, 1, H, W) uint8; y: (N,) labels.
    """
    images, labels = idx_files(prefix)
    x = read_idx_file(images)
    y = read_idx_file(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"idx files disagree: images {x.shape}, labels {y.shape}.")
    return x[:, None], y.astype(np.int64)


def _find(prefix: str, stem: str) -> Path:
    for sep in ("-", "_", "."):
        for suffix in ("", ".gz"):
            p = Path(f"{prefix}{sep}{stem}{suffix}")
            if p.is_file():
                return p
    raise DataError(
        f"No idx file {prefix}-{stem}[.gz] found; data.source idx:PREFIX points at the common "
        "prefix, e.g. idx:data/mnist/t10k."
    )
