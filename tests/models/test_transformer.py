"""Attention, positions, the KV cache and mixture-of-experts, checked against references."""

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter

from gradwise.config import ModelConfig
from gradwise.errors import ConfigError
from gradwise.models import InputSpec, build_model
from gradwise.models.blocks import Attention, LayerCache, Rotary
from gradwise.models.moe import MoEFeedForward, expert_shares


def _manual_attention(att: Attention, x: torch.Tensor, causal: bool, pad=None) -> torch.Tensor:
    b, t, c = x.shape
    q, k, v = att.qkv_proj(x).split(c, dim=2)
    heads = lambda z: z.view(b, t, att.n_head, -1).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(att.head_dim)
    if causal:
        scores = scores.masked_fill(torch.ones(t, t).triu(1).bool(), float("-inf"))
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    y = scores.softmax(-1) @ v
    return att.out_proj(y.transpose(1, 2).reshape(b, t, c))


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_a_hand_written_softmax_attention(causal):
    torch.manual_seed(0)
    att = Attention(32, 4, 0.0, causal).eval()
    x = torch.randn(2, 7, 32)
    pad = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    torch.testing.assert_close(att(x), _manual_attention(att, x, causal), rtol=1e-4, atol=1e-5)
    if not causal:
        torch.testing.assert_close(
            att(x, key_padding=pad), _manual_attention(att, x, False, pad), rtol=1e-4, atol=1e-5
        )


def test_cached_attention_equals_full_causal_attention():
    torch.manual_seed(0)
    att = Attention(16, 2, 0.0, causal=True, rotary=Rotary(8, 32)).eval()
    x = torch.randn(1, 9, 16)
    full = att(x)
    cache = LayerCache(torch.zeros(1, 2, 32, 8), torch.zeros(1, 2, 32, 8))
    parts = [att(x[:, :4], cache=cache)] + [att(x[:, i : i + 1], cache=cache) for i in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-4, atol=1e-5)


def test_rotary_makes_scores_depend_on_relative_position_only():
    rot = Rotary(8, 64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    s1 = (rot(q, 3) * rot(k, 1)).sum()
    s2 = (rot(q, 13) * rot(k, 11)).sum()
    assert s1.item() == pytest.approx(s2.item(), rel=1e-4)


def test_heads_must_divide_the_width_with_a_suggestion():
    with pytest.raises(Exception, match=r"divisible by model.n_head \(5\); try n_head=4"):
        TypeAdapter(ModelConfig).validate_python({"arch": "gpt", "d_model": 64, "n_head": 5})


def _gpt(**kw):
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"arch": "gpt", "n_layer": 2, "n_head": 2, "d_model": 32, **kw}
    )
    torch.manual_seed(0)
    return build_model(cfg, InputSpec("tokens", (16,), 11, vocab_size=11, per_token=True)).eval()


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_incremental_decoding_equals_the_full_pass(positions):
    model = _gpt(positions=positions)
    x = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        full = model(x)
        logits, state = model.step(x[:, :5], None)
        parts = [logits]
        for i in range(5, 12):
            logits, state = model.step(x[:, i : i + 1], state)
            parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-4, atol=1e-5)


def test_gpt_is_causal_future_tokens_do_not_change_the_past():
    model = _gpt()
    x = torch.randint(0, 11, (1, 10))
    y = x.clone()
    y[0, 6:] = (y[0, 6:] + 1) % 11
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :6], model(y)[:, :6])


def test_gpt_keeps_generating_past_its_context():
    from gradwise.models.sampling import generate

    out, _ = generate(_gpt(), torch.tensor([1, 2, 3]), 40, temperature=0)
    assert out.shape == (40,)


def test_gpt_refuses_labelled_tables():
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "gpt"})
    with pytest.raises(ConfigError, match="language model"):
        build_model(cfg, InputSpec("tabular", (4,), 2))


def test_tied_weights_survive_save_and_load(tmp_path):
    from gradwise.training.checkpoint import load_weights, save_weights

    model = _gpt()
    assert model.head.weight is model.tok_emb.weight
    save_weights(tmp_path / "w.safetensors", model)
    again = _gpt()
    torch.nn.init.zeros_(again.tok_emb.weight)
    load_weights(tmp_path / "w.safetensors", again)
    x = torch.randint(0, 11, (1, 8))
    torch.testing.assert_close(again(x), model(x))
    assert again.head.weight is again.tok_emb.weight


def test_moe_with_one_expert_routed_equals_that_experts_mlp():
    torch.manual_seed(0)
    moe = MoEFeedForward(8, 16, experts=4, top_k=1, dropout=0.0, aux_weight=0.01)
    x = torch.randn(5, 8)
    probs = moe.router(x).softmax(-1)
    chosen = probs.argmax(-1)
    expected = torch.stack(
        [F.gelu(x[i] @ moe.in_proj[e]) @ moe.out_proj[e] for i, e in enumerate(chosen.tolist())]
    )
    torch.testing.assert_close(moe(x), expected, rtol=1e-4, atol=1e-5)


def test_moe_balancing_loss_is_minimal_for_a_uniform_router():
    moe = MoEFeedForward(8, 16, experts=4, top_k=2, dropout=0.0, aux_weight=1.0)
    torch.nn.init.zeros_(moe.router.weight)  # uniform probabilities
    moe(torch.randn(64, 8))
    assert moe.aux_loss.item() == pytest.approx(1.0, rel=1e-5)  # experts * sum(1/E * 1/E) * E
    with torch.no_grad():
        moe.router.weight[0] = 10.0  # every token prefers expert 0
    moe(torch.ones(64, 8))
    assert moe.aux_loss.item() > 1.5


def test_expert_shares_are_logged_and_reset():
    model = _gpt(moe={"experts": 4, "top_k": 2})
    model.train()
    model(torch.randint(0, 11, (4, 16)))
    shares = expert_shares(model)
    layer_shares = [v for k, v in shares.items() if k.startswith("moe.blocks.0")]
    assert len(layer_shares) == 4 and sum(layer_shares) == pytest.approx(1.0)
    assert expert_shares(model) == {}


def test_vit_patch_size_must_divide_the_image():
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "vit", "patch_size": 3})
    with pytest.raises(ConfigError, match="must divide the image size 8x8; try 2"):
        build_model(cfg, InputSpec("image", (1, 8, 8), 10))


def test_vit_class_token_sees_every_patch():
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"arch": "vit", "patch_size": 2, "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0}
    )
    torch.manual_seed(0)
    model = build_model(cfg, InputSpec("image", (1, 8, 8), 4)).eval()
    x = torch.randn(1, 1, 8, 8)
    y = x.clone()
    y[..., 6:, 6:] += 1.0  # change only the last patch
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y))
