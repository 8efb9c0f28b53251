import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from gradwise.config import ModelConfig
from gradwise.models import InputSpec, build_model
from gradwise.models.sampling import generate, sample_next


def _lm(arch: str):
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": arch, "hidden": 24, "layers": 2})
    torch.manual_seed(0)
    return build_model(cfg, InputSpec("tokens", (8,), 13, vocab_size=13, per_token=True)).eval()


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_stepping_with_carried_state_equals_one_full_pass(arch):
    model = _lm(arch)
    x = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(x)
        state, parts = None, []
        for t in range(10):
            out, state = model.step(x[:, t : t + 1], state)
            parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_greedy_generation_picks_the_argmax_each_step():
    model = _lm("lstm")
    prompt = torch.tensor([1, 2, 3])
    out, _ = generate(model, prompt, 5, temperature=0)
    seq = prompt.tolist()
    with torch.no_grad():
        for _ in range(5):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert out.tolist() == seq[3:]


def test_top_k_only_samples_the_k_likeliest():
    logits = torch.tensor([[5.0, 4.0, 3.0, -1.0, -2.0]])
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, 2, None, g)) for _ in range(200)}
    assert draws == {0, 1}


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(probs.log(), 1.0, None, 0.75, g)) for _ in range(300)}
    assert draws == {0, 1}


def test_seeded_sampling_is_reproducible():
    model = _lm("gru")
    a, _ = generate(model, torch.tensor([0]), 20, 1.0, generator=torch.Generator().manual_seed(3))
    b, _ = generate(model, torch.tensor([0]), 20, 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_token_probabilities_are_the_models_own():
    model = _lm("gru")
    prompt = torch.tensor([1, 2])
    ids, probs = generate(model, prompt, 6, temperature=0)
    seq = prompt.tolist()
    with torch.no_grad():
        for token, p in zip(ids.tolist(), probs.tolist()):
            dist = model(torch.tensor([seq]))[0, -1].softmax(-1)
            assert p == pytest.approx(dist.max().item(), rel=1e-5)  # greedy: the top token
            seq.append(token)


def test_low_confidence_spans_and_perplexity():
    from gradwise.models.sampling import Generation

    g = Generation.of(["a", "b", "c", "d", "e"], [0.9, 0.05, 0.02, 0.8, 0.01], threshold=0.1)
    assert g.low_confidence == [(1, 3), (4, 5)]
    assert g.marked() == "a[[bc]]d[[e]]"
    expected = np.exp(-np.mean(np.log([0.9, 0.05, 0.02, 0.8, 0.01])))
    assert g.perplexity == pytest.approx(expected)
