"""Diffusion: noise schedules, the U-Net, the denoising objective, DDIM sampling with
classifier-free guidance, and the run / CLI round trip."""

import math
from pathlib import Path

import pytest
import torch
from pydantic import TypeAdapter
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.config import DiffusionConfig, ModelConfig
from gradwise.data.dataset import Split
from gradwise.data.schema import Schema
from gradwise.data.target import TargetSpec
from gradwise.errors import ConfigError
from gradwise.evaluate.evaluator import EvalSettings
from gradwise.models import InputSpec, build_model
from gradwise.models.diffusion import (
    alphas_cumprod,
    ddim_timesteps,
    make_betas,
    q_sample,
    sample_images,
)
from gradwise.training.checkpoint import load_weights, save_weights
from gradwise.training.denoising import Denoising
from tests.conftest import tiny_config

DIGITS = InputSpec("image", (1, 8, 8), 10)
TINY = {"arch": "diffusion", "channels": [8, 16], "timesteps": 50}


def _config(**fields) -> DiffusionConfig:
    cfg = TypeAdapter(ModelConfig).validate_python({**TINY, **fields})
    assert isinstance(cfg, DiffusionConfig)
    return cfg


def _model(spec: InputSpec = DIGITS, **fields):
    torch.manual_seed(0)
    return build_model(_config(**fields), spec)


def _schema(n_classes: int = 10) -> Schema:
    target = TargetSpec(classes=list(range(n_classes)))
    return Schema("image", "classification", [1, 8, 8], n_classes, target, "test")


def _digits_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct, learnable images: class k lights pixel row k % 8."""
    y = torch.arange(n) % 10
    x = -torch.ones(n, 1, 8, 8)
    x[torch.arange(n), 0, y % 8] = 1.0
    return x, y


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alphas_cumprod_falls_from_one_towards_zero(schedule):
    a = alphas_cumprod(schedule, 1000)
    assert a.shape == (1000,)
    assert (a[1:] < a[:-1]).all()
    assert a[0] > 0.999 and a[-1] < 1e-4


def test_linear_schedule_runs_from_ho_et_al_endpoints_scaled_to_its_length():
    betas = make_betas("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)
    short = make_betas("linear", 250)
    assert short[0].item() == pytest.approx(4e-4)
    assert short[-1].item() == pytest.approx(0.08)


def test_cosine_schedule_follows_its_formula_and_clips_betas():
    T, s = 1000, 0.008

    def f(t: int) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    betas = make_betas("cosine", T)
    a = alphas_cumprod("cosine", T)
    for t in [0, 1, 10, 250, 500, 900, 990]:
        assert a[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-4)
    assert betas.max().item() == pytest.approx(0.999)


def test_q_sample_has_the_forward_process_mean_and_variance():
    a = alphas_cumprod("cosine", 100)
    t = 40
    x0 = torch.full((20_000, 1, 2, 2), 1.5)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    x_t = q_sample(x0, torch.full((len(x0),), t), noise, a)
    assert x_t.mean().item() == pytest.approx(a[t].sqrt().item() * 1.5, abs=0.01)
    assert x_t.var().item() == pytest.approx(1 - a[t].item(), rel=0.02)


def test_ddim_visits_evenly_spaced_levels_from_high_to_zero():
    assert ddim_timesteps(1000, 4).tolist() == [750, 500, 250, 0]
    assert ddim_timesteps(10, 50).tolist() == list(range(9, -1, -1))


# ---------------------------------------------------------------- the U-Net


@pytest.mark.parametrize(
    ("spec", "channels"),
    [
        (DIGITS, [8, 16]),
        (InputSpec("image", (1, 28, 28), 10), [8, 16, 16]),
        (InputSpec("image", (3, 5, 7), 4), [8, 8, 16]),  # odd sizes, too small to halve twice
    ],
    ids=["8x8", "28x28", "3x5x7"],
)
def test_unet_predicts_noise_of_the_input_shape(spec, channels):
    model = _model(spec, channels=channels)
    x = torch.randn(3, *spec.shape)
    out = model(x, torch.tensor([0, 10, 49]), torch.tensor([0, 1, spec.n_outputs]))
    assert out.shape == x.shape


def test_diffusion_refuses_tables_with_a_hint():
    with pytest.raises(ConfigError, match="generates images"):
        build_model(_config(), InputSpec("tabular", (5,), 2))


def test_architecture_contract_builds_learns_and_round_trips(tmp_path: Path):
    model = _model()
    x, y = _digits_batch()
    objective = Denoising(_config(), _schema())
    assert model(x, torch.zeros(len(x), dtype=torch.long), y).shape == x.shape

    def batch_loss() -> torch.Tensor:  # fixed noise: the same batch each step
        return objective.loss(model, x, y, torch.Generator().manual_seed(0))

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = batch_loss().item()
    for _ in range(40):
        opt.zero_grad()
        batch_loss().backward()
        opt.step()
    assert batch_loss().item() < 0.7 * first

    save_weights(tmp_path / "w.safetensors", model)
    again = _model()
    load_weights(tmp_path / "w.safetensors", again)
    model.eval(), again.eval()
    t = torch.randint(0, 50, (len(x),), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again(x, t, y), model(x, t, y))


# ---------------------------------------------------------------- the objective


def test_objective_draws_all_randomness_from_the_generator():
    model = _model()
    x, y = _digits_batch()
    objective = Denoising(_config(), _schema())
    first = objective.loss(model, x, y, torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global RNG must not matter
    again = objective.loss(model, x, y, torch.Generator().manual_seed(3))
    assert first.item() == again.item()


def test_metrics_are_deterministic_and_leave_training_mode_alone():
    model = _model().train()
    x, y = _digits_batch(40)
    objective = Denoising(_config(), _schema())
    settings = EvalSettings(batch_size=16)
    first = objective.metrics(model, Split(x, y), settings)
    assert set(first) == {"loss", "loss_uncond"}
    assert first == objective.metrics(model, Split(x, y), settings)
    assert model.training


def test_conditioning_needs_class_labels():
    regression = Schema("image", "regression", [1, 8, 8], 1, TargetSpec(mean=[0.0], std=[1.0]), "t")
    with pytest.raises(ConfigError, match="model.conditional: false"):
        Denoising(_config(), regression)
    assert Denoising(_config(conditional=False), regression).metrics  # unconditional is fine


# ---------------------------------------------------------------- sampling


def test_ddim_sampling_is_finite_shaped_and_seeded():
    model = _model()
    labels = torch.tensor([0, 3, 3, 9])
    a = sample_images(model, 4, labels, 10, 2.0, torch.Generator().manual_seed(0))
    b = sample_images(model, 4, labels, 10, 2.0, torch.Generator().manual_seed(0))
    c = sample_images(model, 4, labels, 10, 2.0, torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 8, 8) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_guidance_zero_samples_the_unconditional_model():
    model = _model().eval()
    with torch.no_grad():  # zero-initialised layers would hide the label: perturb them all
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    labels = torch.tensor([1, 2, 3, 4])
    guided = sample_images(model, 4, labels, 10, 0.0, torch.Generator().manual_seed(0))
    uncond = sample_images(model, 4, None, 10, 0.0, torch.Generator().manual_seed(0))
    cond = sample_images(model, 4, labels, 10, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(guided, uncond, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(cond, uncond, atol=1e-3)


def test_an_unconditional_model_refuses_labels():
    model = _model(conditional=False)
    with pytest.raises(ConfigError, match="unconditional"):
        sample_images(model, 2, torch.tensor([1, 2]), 5, 2.0)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diffusion") / "run"
    cfg = tiny_config(
        model={**TINY, "sample_steps": 5},
        train={"epochs": 2, "batch_size": 64, "diagnostics": True},
    )
    run = gradwise.train(cfg, out=out)
    assert set(run.metrics["test"]) == {"loss", "loss_uncond"}
    assert run.history[-1]["train.loss"] < 1.0  # below predicting zero noise
    return out


def test_resumed_training_draws_the_same_noise_as_an_uninterrupted_run(tmp_path: Path):
    def config(epochs: int) -> dict:
        train = {"epochs": epochs, "schedule": {"name": "constant"}}
        return tiny_config(model=TINY, train=train)

    gradwise.train(config(1), out=tmp_path / "resumed")
    resumed = gradwise.train(config(2), out=tmp_path / "resumed", resume=True)
    straight = gradwise.train(config(2), out=tmp_path / "straight")
    assert [r["train.loss"] for r in resumed.history] == [r["train.loss"] for r in straight.history]
    assert resumed.metrics["test"] == straight.metrics["test"]


def test_a_trained_run_samples_a_requested_class(diffusion_run: Path):
    images = gradwise.load(diffusion_run).sample(4, label=3, seed=0)
    assert images.shape == (4, 1, 8, 8)
    again = gradwise.load(diffusion_run).sample(4, label=3, seed=0)
    assert (images == again).all()


def test_cli_writes_a_png_grid_and_refuses_an_unknown_label(diffusion_run: Path, tmp_path: Path):
    runner = CliRunner()
    png = tmp_path / "threes.png"
    args = ["sample", str(diffusion_run), "--n", "4", "--label", "3", "--steps", "3"]
    result = runner.invoke(app, [*args, "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    result = runner.invoke(app, ["sample", str(diffusion_run), "--label", "12"])
    assert result.exit_code == 2, result.output
    assert "not a class of this run" in result.output
    assert "Traceback" not in result.output
