"""Augmentation of training batches, vectorised, driven by an explicit Generator."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gradwise.config.data import (
    Augment,
    CropAugment,
    FlipAugment,
    NoiseAugment,
    RotateAugment,
    ShiftAugment,
)
from gradwise.errors import ConfigError

AugmentFn = Callable[[Tensor, torch.Generator], Tensor]


def make_augment(cfgs: Sequence[Augment], kind: str) -> AugmentFn | None:
    """One function applying every configured augmentation to a batch, or None for none.

    Raises:
        ConfigError: an image augmentation was asked for data that is not images.
    """
    if not cfgs:
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
