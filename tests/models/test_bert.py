"""BERT: both heads, padding, BERT masking, pretraining then fine-tuning, labelled text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import TypeAdapter

import gradwise
from gradwise.config import BERTConfig, GPTConfig, ModelConfig
from gradwise.data.sources import load_dataset
from gradwise.data.text import IGNORE, MASK, N_SPECIAL, PAD, SpecialIds
from gradwise.errors import ConfigError, DataError
from gradwise.evaluate.evaluator import EvalSettings
from gradwise.models import InputSpec, build_model
from gradwise.run import Run, input_spec
from gradwise.training.masked_lm import MaskedLM, mask_tokens
from gradwise.training.transfer import init_from
from tests.data.conftest import data_config

WORDS = ["the cat sat", "a dog ran", "birds sing", "fish swim", "cows moo", "bees buzz"]
TINY = {"n_layer": 2, "n_head": 2, "d_model": 32, "dropout": 0.0}


def _bert(spec: InputSpec, **fields) -> torch.nn.Module:
    cfg = TypeAdapter(ModelConfig).validate_python({"arch": "bert", **TINY, **fields})
    torch.manual_seed(0)
    return build_model(cfg, spec).eval()


def _corpus(path: Path, n_lines: int = 600) -> Path:
    rng = np.random.default_rng(0)
    path.write_text("\n".join(rng.choice(WORDS) for _ in range(n_lines)) + "\n")
    return path


def _labelled_csv(path: Path, n: int = 240) -> Path:
    """Texts of corpus words; the label says whether an animal that swims or buzzes appears."""
    rng = np.random.default_rng(1)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        pool = WORDS[3:] if label else WORDS[:3]
        texts.append(" ".join(rng.choice(pool, rng.integers(1, 4))))
        labels.append("wet" if label else "dry")
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def _mlm_config(corpus: Path, epochs: int) -> dict:
    return {
        "name": "mlm",
        "data": {
            "source": f"text:{corpus}",
            "task": "mlm",
            "tokenizer": "char",
            "block_size": 32,
            "split": {"val": 0.1, "test": 0.1},
        },
        "model": {"arch": "bert", **TINY, "mask_prob": 0.2},
        "train": {"epochs": epochs, "batch_size": 32, "optimizer": {"lr": 3e-3}},
    }


def _classifier_config(csv: Path, **model) -> dict:
    return {
        "name": "clf",
        "data": {
            "source": f"csv:{csv}",
            "target": "label",
            "text_column": "text",
            "tokenizer": "char",
            "block_size": 32,
        },
        "model": {"arch": "bert", **TINY, "pool": "mean", **model},
        "train": {"epochs": 8, "batch_size": 32, "optimizer": {"lr": 3e-3}},
    }


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize(
    "fields",
    [{}, {"positions": "rotary", "pool": "mean"}, {"moe": {"experts": 4, "top_k": 2}}],
    ids=["learned-cls", "rotary-mean", "moe"],
)
def test_bert_gives_token_logits_or_one_row_of_outputs_per_text(fields):
    x = torch.randint(N_SPECIAL, 20, (3, 12))
    mlm = _bert(InputSpec("tokens", (12,), 20, vocab_size=20, per_token=True), **fields)
    assert mlm(x).shape == (3, 12, 20)
    classifier = _bert(InputSpec("tokens", (12,), 4, vocab_size=20), **fields)
    assert classifier(x).shape == (3, 4)


def test_the_masked_token_head_is_tied_to_the_token_embedding():
    mlm = _bert(InputSpec("tokens", (12,), 20, vocab_size=20, per_token=True))
    assert mlm.mlm_head.weight is mlm.tok_emb.weight


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_appending_padding_does_not_change_the_pooled_logits(pool):
    model = _bert(InputSpec("tokens", (16,), 3, vocab_size=20), pool=pool)
    x = torch.randint(N_SPECIAL, 20, (4, 9))
    x[:, 0] = 2  # <bos>, the class token
    x[1, 6:] = PAD  # one text already shorter than the others
    padded = torch.cat([x, torch.full((4, 7), PAD)], dim=1)  # (4, 16)
    torch.testing.assert_close(model(padded), model(x), rtol=1e-5, atol=1e-6)


def test_bert_refuses_images_and_inputs_longer_than_block_size():
    with pytest.raises(ConfigError, match="model.arch bert reads text"):
        _bert(InputSpec("image", (1, 8, 8), 10))
    model = _bert(InputSpec("tokens", (8,), 2, vocab_size=20))
    with pytest.raises(DataError, match="at most 8"):
        model(torch.randint(N_SPECIAL, 20, (1, 9)))


# ---------------------------------------------------------------- masking


def test_masking_picks_mask_prob_of_ordinary_tokens_and_splits_them_80_10_10():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(N_SPECIAL, 100, (256, 128), generator=g)
    x[:, 0], x[:, -8:] = 2, PAD  # <bos> first, padding last
    inputs, labels = mask_tokens(x, 0.15, SpecialIds(), 100, g)
    special = x < N_SPECIAL
    picked = labels != IGNORE
    assert not (picked & special).any()  # specials are never picked ...
    assert torch.equal(inputs[special], x[special])  # ... nor changed
    assert torch.equal(labels[picked], x[picked])  # labels hold the original ids
    assert torch.equal(inputs[~picked], x[~picked])  # unpicked tokens are untouched
    n_picked = int(picked.sum())
    assert n_picked / int((~special).sum()) == pytest.approx(0.15, abs=0.005)
    masked = (inputs == MASK) & picked
    changed = picked & (inputs != x) & ~masked
    kept = picked & (inputs == x)
    assert masked.sum() / n_picked == pytest.approx(0.8, abs=0.015)
    assert changed.sum() / n_picked == pytest.approx(0.1, abs=0.015)
    assert kept.sum() / n_picked == pytest.approx(0.1, abs=0.015)  # kept or drew itself
    assert (inputs[changed] >= N_SPECIAL).all()  # random replacements are ordinary tokens


def test_masking_is_reproducible_from_the_generator():
    x = torch.randint(N_SPECIAL, 50, (8, 32))
    first = mask_tokens(x, 0.3, SpecialIds(), 50, torch.Generator().manual_seed(7))
    again = mask_tokens(x, 0.3, SpecialIds(), 50, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_masked_lm_loss_decreases_on_a_tiny_corpus(tmp_path: Path):
    cfg = data_config(f"text:{_corpus(tmp_path / 'c.txt')}", task="mlm", block_size=32)
    data = load_dataset(cfg, seed=0)
    model_cfg = BERTConfig(arch="bert", **TINY)
    torch.manual_seed(0)
    model = build_model(model_cfg, input_spec(data.schema, "cross_entropy"))
    objective = MaskedLM(data.schema, model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    settings = EvalSettings(batch_size=64)
    before = objective.metrics(model, data.val, settings)
    for step in range(200):
        batch = data.train.x[(step * 32) % len(data.train) :][:32]
        opt.zero_grad()
        objective.loss(model, batch, batch, gen).backward()
        opt.step()
    after = objective.metrics(model, data.val, settings)
    assert after["loss"] < 0.8 * before["loss"]
    assert after["accuracy"] > before["accuracy"]
    assert after["perplexity"] == pytest.approx(np.exp(after["loss"]))
    assert objective.metrics(model, data.val, settings) == after  # fixed masks


def test_masked_lm_needs_an_encoder(tmp_path: Path):
    cfg = data_config(f"text:{_corpus(tmp_path / 'c.txt')}", task="mlm", block_size=32)
    schema = load_dataset(cfg, seed=0).schema
    with pytest.raises(ConfigError, match="set model.arch: bert"):
        MaskedLM(schema, GPTConfig(arch="gpt"))


# ---------------------------------------------------------------- end to end


def test_pretraining_then_fine_tuning_loads_the_encoder_but_not_the_mlm_head(tmp_path: Path):
    pretrained = gradwise.train(_mlm_config(_corpus(tmp_path / "c.txt"), 2), out=tmp_path / "mlm")
    assert pretrained.history[-1]["val.loss"] < pretrained.history[0]["val.loss"]
    assert {"val.accuracy", "val.perplexity"} <= pretrained.history[0].keys()
    reloaded = gradwise.load(tmp_path / "mlm").model
    assert reloaded.mlm_head.weight is reloaded.tok_emb.weight  # still tied after loading

    csv = _labelled_csv(tmp_path / "l.csv")
    cfg = _classifier_config(csv, init_from=str(tmp_path / "mlm"))
    tuned = gradwise.train({**cfg, "train": {"epochs": 1}}, out=tmp_path / "tuned")
    assert tuned.schema.tokenizer == pretrained.schema.tokenizer  # the vocabulary is reused
    log = (tmp_path / "tuned" / "train.log").read_text()
    n_encoder = len([n for n in pretrained.model.state_dict() if not n.startswith("mlm_head")])
    assert f"loaded {n_encoder} tensors, skipped 2, left 2 of the source unused" in log

    fresh = build_model(tuned.config.model, input_spec(tuned.schema, tuned.loss))
    report = init_from(fresh, str(tmp_path / "mlm"))
    assert sorted(report.skipped) == ["head.bias", "head.weight"]
    assert sorted(report.unused) == ["mlm_head.bias", "mlm_head.weight"]
    for name in ("tok_emb.weight", "pos_emb.weight", "blocks.1.attn.qkv_proj.weight"):
        torch.testing.assert_close(fresh.state_dict()[name], pretrained.model.state_dict()[name])


@pytest.fixture(scope="module")
def text_classifier(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("clf")
    return gradwise.train(_classifier_config(_labelled_csv(tmp / "l.csv")), out=tmp / "run")


def test_bert_learns_to_classify_labelled_text(text_classifier):
    assert text_classifier.metrics["test"]["accuracy"] >= 0.95


def test_predict_takes_a_dataframe_of_texts_and_returns_labels(text_classifier):
    texts = pd.DataFrame({"text": ["fish swim bees buzz", "the cat sat a dog ran"]})
    assert text_classifier.predict(texts).tolist() == ["wet", "dry"]
    again = gradwise.load(text_classifier.path)
    assert again.predict(texts).tolist() == ["wet", "dry"]
