"""Augmentation of training batches, vectorised, driven by an explicit Generator; and what
`data.augment: auto` (the default) chooses for a data set."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gradwise.config.data import (
    Augment,
    AugmentSetting,
    CropAugment,
    FlipAugment,
    NoiseAugment,
    RotateAugment,
    ShiftAugment,
)
from gradwise.errors import ConfigError

AugmentFn = Callable[[Tensor, torch.Generator], Tensor]

SMALL_IMAGE_SET = 10_000  # below this many training images, `auto` shifts a CNN's
SHIFT_SHARE = 12  # `auto` shifts by up to 1/12 of the smaller side: none at 8, 1 px at 14 or 16,
# 2 at 28 or 32 (one pixel of 8x8 digits cost 0.8 point, benchmarks/small_images.py)


def auto_augment(
    setting: AugmentSetting, arch: str, kind: str, task: str, n_train: int, shape: Sequence[int]
) -> tuple[list[Augment], str | None]:
    """The augmentations to train with and, for `auto`, why: a whole-pixel shift when a CNN
    classifies a small set of images at least 12 pixels a side, none otherwise (the cases
    measured). A given list is kept as it is (reason None).

    A shift keeps every label that a position does not decide (digits, letters, shapes,
    defects, photos), where a flip or a rotation can change one (a 6 and a 9). Measured by
    benchmarks/small_images.py: see docs/guides/models.md, "Small image sets".

    Args:
        shape: one sample's shape, (C, H, W) for images.
    """
    if setting != "auto":
        return list(setting), None
    small_images = kind == "image" and task == "classification" and n_train < SMALL_IMAGE_SET
    pixels = min(shape[-2:]) // SHIFT_SHARE if kind == "image" else 0
    if arch != "cnn" or not small_images or pixels == 0:
        return [], None
    reason = (
        f"data.augment: auto chose [{{name: shift, pixels: {pixels}}}]: {n_train:,} training "
        f"images (< {SMALL_IMAGE_SET:,}) are a small set; set data.augment: [] for none"
    )
    return [ShiftAugment(name="shift", pixels=pixels)], reason


def make_augment(cfgs: AugmentSetting, kind: str) -> AugmentFn | None:
    """One function applying every configured augmentation to a batch, or None for none.

    `auto` is resolved before training (`auto_augment`, in the resolved config); one left
    here (a config that bypassed the pipeline) means no augmentation.

    Raises:
        ConfigError: an image augmentation was asked for data that is not images.
    """
    if cfgs == "auto" or not cfgs:
        return None
    if kind == "tokens":
        raise ConfigError("data.augment does not apply to token sequences; remove it.")
    geometric = [c for c in cfgs if not isinstance(c, NoiseAugment)]
    if kind != "image" and geometric:
        raise ConfigError(
            f"data.augment {geometric[0].name!r} applies to images only; for {kind} data use "
            "[{name: noise, std: 0.05}]."
        )
    shift = max(
        [c.pixels for c in cfgs if isinstance(c, ShiftAugment)]
        + [c.padding for c in cfgs if isinstance(c, CropAugment)]
        + [0]
    )
    degrees = max([c.degrees for c in cfgs if isinstance(c, RotateAugment)] + [0.0])
    flips = [c for c in cfgs if isinstance(c, FlipAugment)]
    noise = [c.std for c in cfgs if isinstance(c, NoiseAugment)]

    def augment(x: Tensor, gen: torch.Generator) -> Tensor:
        if shift or degrees:
            x = _affine(x, shift, degrees, gen)
        for flip in flips:
            if flip.horizontal:
                x = _random_flip(x, -1, gen)
            if flip.vertical:
                x = _random_flip(x, -2, gen)
        for std in noise:
            # drawn where the generator lives (the CPU), so a GPU batch gets the same noise
            z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=gen.device)
            x = x + std * z.to(x.device)
        return x

    return augment


def _affine(x: Tensor, shift: int, degrees: float, gen: torch.Generator) -> Tensor:
    """Random whole-pixel translation (up to `shift`) and rotation (up to `degrees`) per image."""
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    tx = torch.randint(-shift, shift + 1, (n,), generator=gen) * (2.0 / w)
    ty = torch.randint(-shift, shift + 1, (n,), generator=gen) * (2.0 / h)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # border padding: the edge of a digit or photo is background, a constant 0 is not
    return F.grid_sample(x, grid.to(x.device), padding_mode="border", align_corners=False)


def _random_flip(x: Tensor, dim: int, gen: torch.Generator) -> Tensor:
    mask = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1).to(x.device), x.flip(dim), x)
