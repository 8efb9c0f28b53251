"""Denoising diffusion for images: noise schedules, a class-conditional U-Net, DDIM sampling.

Training (Ho et al. 2020, DDPM; see `training/denoising.py`) mixes an image x0 with gaussian
noise at a random level t and teaches the U-Net to predict that noise. Sampling starts from
pure noise and runs the deterministic DDIM update (Song et al. 2021, eta = 0) over a few
evenly spaced levels. Classifier-free guidance (Ho & Salimans 2022) needs no classifier: the
labels are sometimes replaced by a "null" class in training, so one network predicts the
noise both with and without the label, and sampling extrapolates from the second to the first.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.config import DiffusionConfig
from gradwise.errors import ConfigError
from gradwise.models.blocks import eval_mode
from gradwise.models.spec import InputSpec

__all__ = [
    "Diffusion",
    "alphas_cumprod",
    "ddim_timesteps",
    "guided_noise",
    "make_betas",
    "q_sample",
    "sample_images",
]

MAX_BETA = 0.999  # Nichol & Dhariwal clip the cosine schedule's last betas here


# ---------------------------------------------------------------- noise schedules


def make_betas(schedule: Literal["linear", "cosine"], timesteps: int) -> Tensor:
    """The variance of the noise added at each step of the forward process.

    linear: Ho et al. (2020), 1e-4 to 0.02 over 1000 steps, scaled by 1000 / timesteps so
        that other lengths destroy the image to the same degree.
    cosine: Nichol & Dhariwal (2021): alphas_cumprod follows f(t) / f(0) with
        f(t) = cos((t / T + s) / (1 + s) * pi / 2) ** 2, s = 0.008; betas are clipped at 0.999.

    Returns:
        (timesteps,) float64 betas in (0, 1).
    """
    if schedule == "linear":
        scale = 1000 / timesteps
        return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64).clamp(
            max=MAX_BETA
        )
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2  # (T+1,)
    return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)


def alphas_cumprod(schedule: Literal["linear", "cosine"], timesteps: int) -> Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s): the share of the image's variance left at t.

    Returns:
        (timesteps,) float32, decreasing from about 1 to about 0.
    """
    return torch.cumprod(1 - make_betas(schedule, timesteps), dim=0).float()


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """Jump straight to noise level t: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise.

    Args:
        x0: (B, C, H, W) clean images.
        t: (B,) integer noise levels in [0, T).
        noise: (B, C, H, W) standard gaussian noise.
        alpha_bar: (T,) the schedule's `alphas_cumprod`.

    Returns:
        (B, C, H, W) noisy images x_t.
    """
    a = alpha_bar.to(x0.device)[t].view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


# ---------------------------------------------------------------- the U-Net


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of the noise level, as positions are embedded in transformers.

    Args:
        t: (B,) noise levels (integers or floats).

    Returns:
        (B, dim) float features: cosines then sines of t at geometrically spaced frequencies.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # (B, 2*half)
    return F.pad(emb, (0, dim - 2 * half))  # (B, dim)


def _groups(channels: int) -> int:
    """GroupNorm groups: the largest divisor of `channels` up to 8."""
    return max(g for g in range(1, 9) if channels % g == 0)


class DiffusionResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the (time, label) embedding, then once more; residual.

    The second convolution starts at zero, so every block starts as the identity.
    """

    def __init__(self, c_in: int, c_out: int, d_emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(d_emb, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        for p in self.conv2.parameters():
            nn.init.zeros_(p)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Diffusion(nn.Module):
    """A U-Net that predicts the noise in x_t, given the noise level t and a class label.

    Each entry of `model.channels` is one resolution: a residual block, then a strided
    convolution halves the size (rounding up, so 7x7 becomes 4x4) while it is at least 4x4;
    the way up mirrors it, upsampling to the skip connection's exact size. So 8x8 digits and
    28x28 MNIST both work, and a level too small to halve simply keeps its size.

    Attributes:
        conditional: whether the model takes class labels (`model.conditional`).
        null_label: the class index meaning "no label" (= n_classes), for classifier-free
            guidance; unconditional models always use it.
        betas, alphas_cumprod: (T,) buffers, the noise schedule (see `make_betas`); derived
            from the config, so they are not saved with the weights.
    """

    betas: Tensor
    alphas_cumprod: Tensor

    def __init__(self, cfg: DiffusionConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(
                f"model.arch diffusion generates images (N, C, H, W); this data is {spec.kind} "
                f"with samples of shape {tuple(spec.shape)}. Use an image source "
                "(builtin:digits, images:DIR, idx:PREFIX, or npz with (N, C, H, W) arrays)."
            )
        c_image, h, w = spec.shape
        self.image_shape = (c_image, h, w)
        self.timesteps = cfg.timesteps
        self.conditional = cfg.conditional
        self.null_label = spec.n_outputs
        self.register_buffer("betas", make_betas(cfg.noise_schedule, cfg.timesteps).float(), False)
        self.register_buffer(
            "alphas_cumprod", alphas_cumprod(cfg.noise_schedule, cfg.timesteps), False
        )

        channels = list(cfg.channels)
        self.d_time = channels[0]
        d_emb = 4 * channels[0]
        self.time_mlp = nn.Sequential(
            nn.Linear(self.d_time, d_emb), nn.SiLU(), nn.Linear(d_emb, d_emb)
        )
        self.label_embed = nn.Embedding(spec.n_outputs + 1, d_emb) if cfg.conditional else None

        self.stem = nn.Conv2d(c_image, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = channels[0]
        for i, c in enumerate(channels):
            self.down.append(DiffusionResBlock(c_prev, c, d_emb))
            halves = i < len(channels) - 1 and min(h, w) >= 4
            self.downsample.append(
                nn.Conv2d(c, c, 3, stride=2, padding=1) if halves else nn.Identity()
            )
            if halves:
                h, w = (h + 1) // 2, (w + 1) // 2
            c_prev = c
        self.mid = nn.ModuleList(
            [DiffusionResBlock(c_prev, c_prev, d_emb), DiffusionResBlock(c_prev, c_prev, d_emb)]
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            resized = isinstance(self.downsample[i], nn.Conv2d)
            self.upsample.append(
                nn.Conv2d(c_prev, c_prev, 3, padding=1) if resized else nn.Identity()
            )
            self.up.append(DiffusionResBlock(c_prev + channels[i], channels[i], d_emb))
            c_prev = channels[i]
        self.out_norm = nn.GroupNorm(_groups(c_prev), c_prev)
        self.out = nn.Conv2d(c_prev, c_image, 3, padding=1)
        for p in self.out.parameters():  # predicts zero noise at first: the loss starts at 1
            nn.init.zeros_(p)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The predicted noise in x_t.

        Args:
            x_t: (B, C, H, W) noisy images.
            t: (B,) integer noise levels in [0, timesteps).
            labels: (B,) class indices, `null_label` for "no label"; None means all null.
                Unconditional models ignore them.

        Returns:
            (B, C, H, W) predicted noise.
        """
        emb = self.time_mlp(timestep_embedding(t, self.d_time))  # (B, D_emb)
        if self.label_embed is not None:
            if labels is None:
                labels = torch.full_like(t, self.null_label, dtype=torch.long)
            emb = emb + self.label_embed(labels)
        h = self.stem(x_t)  # (B, C_0, H, W)
        skips = []
        for block, downsample in zip(self.down, self.downsample):
            h = block(h, emb)  # (B, C_i, H_i, W_i)
            skips.append(h)
            h = downsample(h)  # (B, C_i, ceil(H_i/2), ceil(W_i/2)) or unchanged
        for block in self.mid:
            h = block(h, emb)
        for block, upsample in zip(self.up, self.upsample):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = upsample(h)
            h = block(torch.cat([h, skip], dim=1), emb)  # (B, C_i, H_i, W_i)
        return self.out(F.silu(self.out_norm(h)))  # (B, C, H, W)


# ---------------------------------------------------------------- sampling


def guided_noise(
    model: Diffusion, x_t: Tensor, t: Tensor, labels: Tensor | None, guidance: float
) -> Tensor:
    """Classifier-free guided noise: eps_uncond + guidance * (eps_cond - eps_uncond).

    guidance 0 is the unconditional model, 1 the plain conditional one, and larger values
    push samples further towards what distinguishes the class (sharper, less varied).

    Args:
        x_t: (B, C, H, W) noisy images; t: (B,) noise levels.
        labels: (B,) class indices, or None for unconditional noise (guidance is then unused).

    Returns:
        (B, C, H, W) noise estimate.
    """
    if labels is None:
        return model(x_t, t, None)
    if guidance == 1:
        return model(x_t, t, labels)
    null = torch.full_like(labels, model.null_label)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null]))
    cond, uncond = both.chunk(2)  # (B, C, H, W) each
    return uncond + guidance * (cond - uncond)


def ddim_timesteps(timesteps: int, steps: int) -> Tensor:
    """The noise levels DDIM visits: every (T / steps)-th level, highest first, ending at 0.

    This is the uniform spacing of Song et al. (2021). It avoids the last level of the cosine
    schedule, where almost no signal is left and dividing by sqrt(alpha_bar) would blow up
    the network's small errors (unless steps == timesteps).

    Returns:
        (min(steps, timesteps),) long, strictly decreasing.
    """
    steps = min(steps, timesteps)
    return (torch.arange(steps, dtype=torch.float64) * timesteps / steps).long().flip(0)


@torch.no_grad()
def sample_images(
    model: Diffusion,
    n: int,
    labels: Tensor | None,
    steps: int,
    guidance: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate images by DDIM (eta = 0) from pure noise, with classifier-free guidance.

    Args:
        model: a trained `Diffusion`; it runs in eval mode here and is left as it was.
        n: images to generate.
        labels: (n,) class indices to generate, or None to draw unconditionally.
        steps: denoising steps, evenly spaced over the model's timesteps (at most that many).
        guidance: the scale s in eps_uncond + s * (eps_cond - eps_uncond); 0 ignores the
            label, 1 is the conditional model without guidance.
        generator: CPU generator for the starting noise (the only randomness); None uses
            torch's global generator.

    Returns:
        (n, C, H, W) float32 images on the CPU, in the model's (standardised) input space.

    Raises:
        ConfigError: labels were given to an unconditional model.
    """
    if labels is not None and not model.conditional:
        raise ConfigError(
            "This diffusion model is unconditional (model.conditional: false), so it cannot "
            "generate a chosen class; leave out the label, or train with model.conditional: true."
        )
    assert labels is None or labels.shape == (n,), "labels must be (n,) class indices"
    alpha_bar = model.alphas_cumprod
    device = alpha_bar.device
    x = torch.randn((n, *model.image_shape), generator=generator).to(device)  # (n, C, H, W)
    if labels is not None:
        labels = labels.to(device)
    levels = ddim_timesteps(model.timesteps, steps).tolist()
    with eval_mode(model):
        for i, level in enumerate(levels):
            t = torch.full((n,), level, dtype=torch.long, device=device)
            a = alpha_bar[level]
            a_prev = alpha_bar[levels[i + 1]] if i + 1 < len(levels) else torch.ones_like(a)
            eps = guided_noise(model, x, t, labels, guidance).float()
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()  # the clean image the noise implies
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x.float().cpu()
