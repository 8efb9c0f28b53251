"""Augmentation: whole-pixel shifts, flips, gaussian noise; seeded; images only where it matters."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter

from gradwise.config.data import Augment
from gradwise.data.augment import make_augment
from gradwise.errors import ConfigError

_AUGMENTS = TypeAdapter(list[Augment])


def _augment(*cfgs: dict, kind: str = "image"):
    return make_augment(_AUGMENTS.validate_python(list(cfgs)), kind)


def _images(n: int = 32, size: int = 12, margin: int = 3) -> torch.Tensor:
    """Random content inside a zero border of `margin` pixels: shifts stay clear of the edges."""
    x = torch.zeros(n, 1, size, size)
    inner = torch.rand(
        n, 1, size - 2 * margin, size - 2 * margin, generator=torch.Generator().manual_seed(0)
    )
    x[:, :, margin:-margin, margin:-margin] = inner + 0.1
    return x


def _whole_pixel_shift(
    before: torch.Tensor, after: torch.Tensor, most: int
) -> tuple[int, int] | None:
    for dy in range(-most, most + 1):
        for dx in range(-most, most + 1):
            if torch.allclose(torch.roll(before, (dy, dx), dims=(-2, -1)), after, atol=1e-5):
                return dy, dx
    return None


@pytest.mark.parametrize("cfg", [{"name": "shift", "pixels": 2}, {"name": "crop", "padding": 2}])
def test_shift_moves_each_image_by_whole_pixels(cfg: dict):
    x = _images()
    out = _augment(cfg)(x, torch.Generator().manual_seed(0))
    shifts = [_whole_pixel_shift(a, b, most=2) for a, b in zip(x, out)]
    assert None not in shifts
    assert len(set(shifts)) > 5  # shifts vary from image to image
    assert any(s != (0, 0) for s in shifts)


def test_flip_mirrors_about_half_of_the_images():
    x = torch.rand(64, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    out = _augment({"name": "flip"})(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(b, a.flip(-1)) for a, b in zip(x, out)]
    kept = [torch.equal(b, a) for a, b in zip(x, out)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_vertical_flip_mirrors_rows():
    x = torch.rand(64, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    out = _augment({"name": "flip", "horizontal": False, "vertical": True})(
        x, torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(b, a) or torch.equal(b, a.flip(-2)) for a, b in zip(x, out))
    assert not torch.equal(out, x)


def test_noise_has_the_requested_std():
    x = torch.full((64, 1, 16, 16), 3.0)
    out = _augment({"name": "noise", "std": 0.3}, kind="tabular")(
        x, torch.Generator().manual_seed(0)
    )
    noise = out - x
    assert noise.std().item() == pytest.approx(0.3, rel=0.03)  # 16384 draws: ~0.6% std error
    assert abs(noise.mean().item()) < 0.01


def test_rotation_keeps_shape_and_moves_pixels():
    x = _images()
    out = _augment({"name": "rotate", "degrees": 30})(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert not torch.allclose(out, x, atol=1e-3)


def test_the_same_generator_seed_gives_the_same_batch():
    augment = _augment({"name": "shift"}, {"name": "flip"}, {"name": "noise"})
    x = _images()
    first = augment(x, torch.Generator().manual_seed(7))
    again = augment(x, torch.Generator().manual_seed(7))
    other = augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("kind", ["tabular", "sequence"])
@pytest.mark.parametrize("name", ["shift", "crop", "rotate", "flip"])
def test_image_augments_on_other_data_are_config_errors(kind: str, name: str):
    with pytest.raises(ConfigError, match=f"'{name}' applies to images only.*name: noise"):
        _augment({"name": name}, kind=kind)


def test_no_augment_applies_to_tokens():
    for cfg in ({"name": "noise"}, {"name": "flip"}):
        with pytest.raises(ConfigError, match="does not apply to token sequences"):
            _augment(cfg, kind="tokens")


def test_no_augments_means_no_function():
    assert make_augment([], "image") is None
