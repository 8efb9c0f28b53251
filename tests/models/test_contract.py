"""One contract for every architecture: builds, right shape, learns one batch, saves and loads."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter

from gradwise.config import ModelConfig
from gradwise.data.text import BOS, N_SPECIAL, PAD
from gradwise.errors import ConfigError
from gradwise.models import Embedder, InputSpec, build_model
from gradwise.training.checkpoint import load_weights, save_weights

CASES = [
    ({"arch": "mlp", "hidden": [16, 16], "norm": "batch"}, InputSpec("tabular", (6,), 3)),
    ({"arch": "mlp", "hidden": [16], "norm": "layer"}, InputSpec("image", (1, 8, 8), 10)),
    ({"arch": "mlp", "hidden": [16]}, InputSpec("tabular", (5,), 2, categorical=(4, 7))),
    ({"arch": "cnn", "channels": [8, 16]}, InputSpec("image", (1, 8, 8), 10)),
    (
        {"arch": "cnn", "channels": [4], "pool": "avg", "head": [8]},
        InputSpec("image", (3, 12, 12), 4),
    ),
    ({"arch": "rnn", "hidden": 16}, InputSpec("sequence", (7, 3), 2)),
    (
        {"arch": "lstm", "hidden": 16, "layers": 2, "bidirectional": True},
        InputSpec("sequence", (7, 3), 1),
    ),
    ({"arch": "gru", "hidden": 16, "pool": "mean"}, InputSpec("image", (1, 8, 8), 10)),
    ({"arch": "lstm", "hidden": 16}, InputSpec("tokens", (9,), 11, vocab_size=11, per_token=True)),
    (
        {"arch": "vit", "patch_size": 2, "n_layer": 2, "n_head": 2, "d_model": 16},
        InputSpec("image", (1, 8, 8), 10),
    ),
    (
        {"arch": "vit", "patch_size": 4, "n_layer": 1, "n_head": 2, "d_model": 16, "pool": "mean"},
        InputSpec("image", (3, 12, 12), 3),
    ),
    (
        {"arch": "gpt", "n_layer": 2, "n_head": 2, "d_model": 16},
        InputSpec("tokens", (9,), 11, vocab_size=11, per_token=True),
    ),
    (
        {
            "arch": "gpt",
            "n_layer": 2,
            "n_head": 2,
            "d_model": 16,
            "positions": "rotary",
            "moe": {"experts": 4, "top_k": 2},
            "dropout": 0.0,
        },
        InputSpec("tokens", (9,), 11, vocab_size=11, per_token=True),
    ),
    (
        {"arch": "bert", "n_layer": 2, "n_head": 2, "d_model": 16, "dropout": 0.0},
        InputSpec("tokens", (9,), 3, vocab_size=11),
    ),
    (
        {
            "arch": "bert",
            "n_layer": 2,
            "n_head": 2,
            "d_model": 16,
            "dropout": 0.0,
            "positions": "rotary",
            "pool": "mean",
            "moe": {"experts": 4, "top_k": 2},
        },
        InputSpec("tokens", (9,), 2, vocab_size=11),
    ),
    (
        {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0},
        InputSpec("tokens", (9,), 11, vocab_size=11, per_token=True),
    ),
    (
        {"arch": "gpt", "n_layer": 2, "n_head": 2, "d_model": 16, "positions": "rotary"},
        InputSpec("tokens", (9,), 3, vocab_size=11),
    ),
]


def _batch(spec: InputSpec, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n = 16
    if spec.kind == "tokens" and not spec.per_token:  # labelled text: <bos> text <pad>...
        x = torch.randint(N_SPECIAL, spec.vocab_size, (n, *spec.shape), generator=g)
        x[:, 0] = BOS
        lengths = torch.randint(2, spec.shape[0] + 1, (n, 1), generator=g)
        x[torch.arange(spec.shape[0]) >= lengths] = PAD
        return x, torch.randint(0, spec.n_outputs, (n,), generator=g)
    if spec.kind == "tokens":
        x = torch.randint(0, spec.vocab_size, (n, *spec.shape), generator=g)
        return x, torch.randint(0, spec.vocab_size, (n, *spec.shape), generator=g)
    x = torch.randn(n, *spec.shape, generator=g)
    if spec.categorical:
        n_num = spec.shape[0] - len(spec.categorical)
        for i, card in enumerate(spec.categorical):
            x[:, n_num + i] = torch.randint(0, card, (n,), generator=g).float()
    if spec.n_outputs == 1:
        return x, torch.randn(n, 1, generator=g)
    return x, torch.randint(0, spec.n_outputs, (n,), generator=g)


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.is_floating_point():
        return F.mse_loss(out, y)
    return F.cross_entropy(out.flatten(0, -2), y.flatten())


@pytest.mark.parametrize(
    ("raw", "spec"), CASES, ids=lambda c: str(c.get("arch", "")) if isinstance(c, dict) else c.kind
)
def test_architecture_contract(raw, spec, tmp_path: Path):
    cfg = TypeAdapter(ModelConfig).validate_python(raw)
    torch.manual_seed(0)
    model = build_model(cfg, spec)
    g = torch.Generator().manual_seed(1)
    x, y = _batch(spec, g)

    out = model(x)
    expected = (16, *spec.shape, spec.n_outputs) if spec.per_token else (16, spec.n_outputs)
    assert out.shape == expected
    assert isinstance(model, Embedder)
    model.eval()
    with torch.no_grad():
        features = model.features(x)
        assert features.shape[0] == 16 and features.dim() == 2
        if not spec.per_token:  # the head reads exactly the features
            torch.testing.assert_close(model.head(features), model(x))
    model.train()

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = _loss(model(x), y).item()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = _loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Adam at lr 1e-2 on one batch may spike for a step (how far depends on the CPU's
    # kernels and thread count): the loss must have come down over the last ten steps
    assert min(losses[-10:]) < 0.7 * first

    save_weights(tmp_path / "w.safetensors", model)
    again = build_model(cfg, spec)
    load_weights(tmp_path / "w.safetensors", again)
    model.eval(), again.eval()
    torch.testing.assert_close(again(x), model(x))


def test_cnn_refuses_tables_with_a_hint():
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "cnn"})
    with pytest.raises(ConfigError, match="arch: mlp for tables"):
        build_model(cfg, InputSpec("tabular", (5,), 2))


def test_language_model_cannot_be_bidirectional():
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "gru", "bidirectional": True})
    with pytest.raises(ConfigError, match="left to right"):
        build_model(cfg, InputSpec("tokens", (8,), 5, vocab_size=5, per_token=True))


@pytest.mark.parametrize(
    ("scheme", "expected_std"), [("he", (2 / 200) ** 0.5), ("xavier", (2 / (200 + 300)) ** 0.5)]
)
def test_initialisation_scales_weights_by_fan(scheme, expected_std):
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "mlp", "hidden": [300], "init": scheme})
    torch.manual_seed(0)
    model = build_model(cfg, InputSpec("tabular", (200,), 2))
    w = model.body[0].weight
    assert w.std().item() == pytest.approx(expected_std, rel=0.05)
    assert model.body[0].bias.abs().max().item() == 0.0
