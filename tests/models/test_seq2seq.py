"""The encoder-decoder transformer: teacher forcing, masks, cached decoding, beam search, and
training end to end on a tiny string task."""

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import TypeAdapter
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.config import ModelConfig
from gradwise.data.text import BOS, EOS, PAD
from gradwise.errors import ConfigError
from gradwise.models import InputSpec, build_model
from gradwise.models.seq2seq import Seq2Seq, beam_search, greedy_decode, translate
from gradwise.training.seq2seq import Seq2SeqObjective, reference_ids

S, T1 = 8, 6  # source length (with <bos>), decoder positions (target length - 1)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: on a busy shared CPU a second thread only waits (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(positions: str = "learned", vocab: int = 12, seed: int = 0, std: float = 0.0):
    """A tiny seq2seq in eval mode; `std` > 0 redraws every weight for peaked distributions."""
    cfg = TypeAdapter(ModelConfig).validate_python(
        {
            "arch": "seq2seq",
            "n_layer": 2,
            "n_decoder_layer": 2,
            "n_head": 2,
            "d_model": 16,
            "positions": positions,
        }
    )
    spec = InputSpec("tokens", (S + T1,), vocab, vocab_size=vocab, per_token=True, source_len=S)
    torch.manual_seed(seed)
    model = build_model(cfg, spec)
    assert isinstance(model, Seq2Seq)
    if std > 0:
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, std)
    return model.eval()


def _sources(n: int, lengths: list[int], vocab: int = 12, seed: int = 1) -> torch.Tensor:
    """(n, S) ids: <bos>, `lengths[i]` random text tokens, then <pad>."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, S), PAD)
    x[:, 0] = BOS
    for i, length in enumerate(lengths):
        x[i, 1 : 1 + length] = torch.randint(5, vocab, (length,), generator=g)
    return x


def _target_in(n: int, vocab: int = 12, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(5, vocab, (n, T1), generator=g)
    t[:, 0] = BOS
    return t


def _mean_log_probs(
    model: Seq2Seq, source: torch.Tensor, hypotheses: list[list[int]]
) -> list[float]:
    """Teacher-forced mean log-probability of each decoded hypothesis (<eos> included)."""
    n, longest = len(hypotheses), max(len(h) for h in hypotheses)
    target = torch.full((n, longest), PAD)
    for i, h in enumerate(hypotheses):
        target[i, : len(h)] = torch.tensor(h)
    target_in = torch.cat([torch.full((n, 1), BOS), target[:, :-1]], dim=1)
    sources = source.expand(n, -1)
    with torch.no_grad():
        logits = model.decode(target_in, model.encode(sources), sources == PAD)
    logp = logits.log_softmax(-1).gather(2, target[..., None])[..., 0]  # (n, longest)
    return [logp[i, : len(h)].mean().item() for i, h in enumerate(hypotheses)]


def _hypothesis(row: torch.Tensor) -> list[int]:
    """A decoded row up to and including its <eos> (all of it if it has none)."""
    ids = row.tolist()
    return ids[: ids.index(EOS) + 1] if EOS in ids else ids


# ---------------------------------------------------------------- the model


def test_forward_gives_one_logit_row_per_decoder_position():
    model = _model()
    x = torch.cat([_sources(3, [2, 5, 7]), _target_in(3)], dim=1)
    assert model(x).shape == (3, T1, 12)


def test_non_seq2seq_data_is_a_config_error_with_a_hint():
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "seq2seq"})
    with pytest.raises(ConfigError, match="data.task: seq2seq"):
        build_model(cfg, InputSpec("tokens", (9,), 11, vocab_size=11, per_token=True))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_decoder_is_causal(positions):
    model = _model(positions)
    source, target_in = _sources(2, [3, 6]), _target_in(2)
    changed = target_in.clone()
    changed[:, 3:] = torch.randint(5, 12, (2, T1 - 3), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        before = model(torch.cat([source, target_in], dim=1))
        after = model(torch.cat([source, changed], dim=1))
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3:], before[:, 3:])


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_source_padding_does_not_change_the_logits(positions):
    model = _model(positions)
    source, target_in = _sources(2, [3, 3]), _target_in(2)  # 4 real ids, then 4 <pad>
    short = source[:, :4]
    with torch.no_grad():
        padded = model.decode(target_in, model.encode(source), source == PAD)
        unpadded = model.decode(target_in, model.encode(short), short == PAD)
    torch.testing.assert_close(padded, unpadded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_incremental_decoding_equals_the_teacher_forced_pass(positions):
    model = _model(positions)
    source, target_in = _sources(3, [1, 4, 7]), _target_in(3)
    with torch.no_grad():
        full = model(torch.cat([source, target_in], dim=1))
        state = model.new_state(model.encode(source), source == PAD, T1)
        first = model.step(target_in[:, :2], state)  # a prefix at once, then one at a time
        rest = [model.step(target_in[:, t : t + 1], state) for t in range(2, T1)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- decoding


def test_beam_search_with_one_beam_is_greedy_decoding():
    model = _model(std=0.5)
    source = _sources(6, [1, 2, 3, 4, 5, 7])
    with torch.no_grad():
        greedy = greedy_decode(model, source, T1)
        beam = beam_search(model, source, T1, beam_size=1)
    torch.testing.assert_close(beam, greedy)


def test_greedy_decoding_picks_the_likeliest_token_given_its_own_prefix():
    model = _model(std=0.5)
    source = _sources(4, [2, 3, 5, 7])
    with torch.no_grad():
        out = greedy_decode(model, source, T1)
        target_in = torch.cat([torch.full((4, 1), BOS), out[:, :-1]], dim=1)
        logits = model.decode(target_in, model.encode(source), source == PAD)
    for i, row in enumerate(out):
        hypothesis = _hypothesis(row)
        assert hypothesis == logits[i, : len(hypothesis)].argmax(-1).tolist()


def test_beam_search_scores_at_least_as_well_as_greedy():
    model = _model(std=0.5)
    source = _sources(8, [1, 2, 3, 4, 5, 6, 7, 3])
    with torch.no_grad():
        greedy = greedy_decode(model, source, T1)
        beam = beam_search(model, source, T1, beam_size=4)
    for i in range(len(source)):
        found, greedy_score = _mean_log_probs(
            model, source[i], [_hypothesis(beam[i]), _hypothesis(greedy[i])]
        )
        assert found >= greedy_score - 1e-5


def test_a_beam_wide_enough_to_keep_everything_finds_the_best_sequence():
    """Oracle: enumerate every sequence of up to 3 tokens over a 7-token vocabulary."""
    vocab, max_len = 7, 3
    model = _model(vocab=vocab, std=0.5)
    source = _sources(2, [3, 6], vocab=vocab)
    with torch.no_grad():
        beam = beam_search(model, source, max_len, beam_size=vocab**max_len)
    candidates = sorted(
        {
            tuple(_hypothesis(torch.tensor(seq)))
            for seq in itertools.product(range(vocab), repeat=max_len)
        }
    )
    for i in range(len(source)):
        best = max(_mean_log_probs(model, source[i], [list(c) for c in candidates]))
        (found,) = _mean_log_probs(model, source[i], [_hypothesis(beam[i])])
        assert found == pytest.approx(best, abs=1e-5)


def test_translate_strips_special_tokens_and_restores_training_mode():
    model = _model(std=0.5).train()
    ids = translate(model, _sources(5, [1, 2, 3, 4, 5]), T1, beam_size=2, batch_size=2)
    assert len(ids) == 5
    assert all(PAD not in row and BOS not in row and EOS not in row for row in ids)
    assert model.training


def test_reference_ids_stop_at_eos_and_skip_padding():
    y = torch.tensor([[7, 8, EOS, -100, -100], [9, EOS, -100, -100, -100]])
    assert reference_ids(y) == [[7, 8], [9]]


def test_seq2seq_data_with_another_architecture_is_a_config_error():
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "gpt"})
    with pytest.raises(ConfigError, match="model.arch: seq2seq"):
        Seq2SeqObjective(lambda logits, y: logits.sum(), None, cfg)  # type: ignore[arg-type]


# ---------------------------------------------------------------- end to end


def _reversal_pairs(path: Path, n: int = 600, seed: int = 0) -> Path:
    """Unique strings of 2-5 letters over 'abcd' and their reversals."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    while len(seen) < n:
        seen.add("".join(rng.choice(list("abcd"), size=int(rng.integers(2, 6)))))
    sources = sorted(seen)
    pd.DataFrame({"source": sources, "target": [s[::-1] for s in sources]}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture(scope="module")
def reversal_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reverse")
    config = {
        "name": "reverse",
        "seed": 0,
        "data": {
            "source": f"csv:{_reversal_pairs(tmp / 'pairs.csv')}",
            "task": "seq2seq",
            "text_column": "source",
            "target": "target",
            "block_size": 8,
            "target_block_size": 8,
            "split": {"val": 0.1, "test": 0.2},
        },
        "model": {
            "arch": "seq2seq",
            "n_layer": 2,
            "n_decoder_layer": 2,
            "n_head": 2,
            "d_model": 32,
            "dropout": 0.0,
        },
        "train": {
            "epochs": 8,
            "batch_size": 16,
            "optimizer": {"name": "adamw", "lr": 5e-3},
            "schedule": {"name": "cosine", "warmup_steps": 20},
            "early_stopping": {"metric": "val.exact_match", "patience": None},
            "diagnostics": False,
            "checkpoint": False,
        },
    }
    gradwise.train(config, out=tmp / "run")
    return tmp / "run"


def test_a_tiny_model_learns_to_reverse_strings(reversal_run: Path):
    metrics = json.loads((reversal_run / "metrics.json").read_text())
    assert metrics["test"]["exact_match"] >= 0.9
    run = gradwise.load(reversal_run)
    texts = ["abcd", "dcab", "bba"]
    predicted = run.predict(texts)
    assert all(isinstance(p, str) for p in predicted)
    assert np.mean([p == t[::-1] for p, t in zip(predicted, texts)]) >= 2 / 3
    frame = pd.DataFrame({"source": texts, "other": [1, 2, 3]})
    assert list(run.predict(frame)) == list(predicted)


def test_cli_predict_writes_a_prediction_per_csv_row(reversal_run: Path, tmp_path: Path):
    texts = ["abcd", "dcab", "bba"]
    inputs = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "source": texts}).to_csv(inputs, index=False)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(reversal_run), str(inputs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["prediction"]
    assert list(frame["prediction"]) == list(gradwise.load(reversal_run).predict(texts))
