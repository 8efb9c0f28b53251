"""Shift power on token inputs: each message is represented once per noise magnitude, the
noise is still noticed, and unshifted rows are read from the cached representation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.drift import DriftSettings
from gradwise.auditing.shift import _embed_by_length, shift_view
from gradwise.auditing.shift_power import ShiftSpace, detection_power

VOCAB, SPECIALS = 50, (0, 1)


class CountingMeanId:
    """Each message's mean token id and its share of tokens above 11 as the representation,
    counting the rows it is asked for."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.rows += len(x)
        return np.stack([x.mean(axis=1), (x > 11).mean(axis=1)], axis=1).astype(np.float64)


def _space(n: int, rng: np.random.Generator, represent: CountingMeanId) -> ShiftSpace:
    # messages use the first 10 ordinary tokens; noise brings in all the others
    x = rng.integers(2, 12, size=(2 * n, 16))
    x[:, 0] = 1  # a <bos> that noise never touches
    return ShiftSpace("tokens", x[:n], x[n:], represent, specials=SPECIALS, vocab_size=VOCAB)


def test_each_row_is_represented_at_most_once_per_noise_magnitude():
    represent = CountingMeanId()
    space = _space(300, np.random.default_rng(0), represent)
    report = detection_power(space, DriftSettings(detectors=("ks",)), n=100, repeats=10, seed=1)
    (noise,) = report.curves
    magnitudes_run = sum(1 for p in noise.power["ks"] if p is not None)
    pool = 600
    assert magnitudes_run >= 1
    # the pool once (unshifted), then at most the pool per magnitude; fresh noise per repeat
    # would be repeats x n = 1,000 rows per magnitude
    assert represent.rows <= pool * (1 + magnitudes_run)


def test_token_noise_is_noticed_and_the_null_stays_quiet():
    represent = CountingMeanId()
    space = _space(400, np.random.default_rng(2), represent)
    settings = DriftSettings(detectors=("ks", "mmd"), permutations=50)
    report = detection_power(space, settings, n=150, repeats=10, seed=3)
    (noise,) = report.curves
    for detector in ("ks", "mmd"):
        noticed = noise.noticed_at[detector]
        assert noticed is not None
        assert noise.power[detector][noise.magnitudes.index(noticed)] >= 0.8
    assert all(rate <= 0.3 for rate in report.false_alarm.values())


def test_unshifted_rows_come_from_the_pooled_representation_when_given():
    represent = CountingMeanId()
    plain = _space(50, np.random.default_rng(4), represent)
    pooled = represent(np.concatenate([plain.train, plain.test]))
    cached = ShiftSpace(
        "tokens",
        plain.train,
        plain.test,
        represent,
        specials=SPECIALS,
        vocab_size=VOCAB,
        pooled=pooled,
    )
    rows = np.array([3, 0, 49, 7])
    before = represent.rows
    for split in ("train", "test"):
        np.testing.assert_array_equal(cached.unshifted(split, rows), plain.unshifted(split, rows))
    assert represent.rows == before + 2 * len(rows)  # only the uncached space embedded
    np.testing.assert_array_equal(cached.pool_representation(), pooled)


def _text_run(tmp_path: Path) -> gradwise.Run:
    rng = np.random.default_rng(5)
    words = ["free", "win", "call", "now", "hi", "see", "you", "later", "ok", "lunch"]
    rows = []
    for i in range(240):
        spam = i % 4 == 0
        pick = words[:5] if spam else words[4:]
        text = " ".join(rng.choice(pick, int(rng.integers(1, 12))))  # 1 to 11 words
        rows.append(("spam" if spam else "ham", text))
    pd.DataFrame(rows, columns=["label", "text"]).to_csv(tmp_path / "sms.csv", index=False)
    cfg = {
        "name": "sms",
        "data": {
            "source": f"csv:{tmp_path / 'sms.csv'}",
            "target": "label",
            "text_column": "text",
            "tokenizer": "char",
            "block_size": 48,
        },
        "model": {"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 32},
        "audit": {
            "shift": {"sample_size": 40, "power_repeats": 3, "permutations": 20},
        },
    }
    return gradwise.train(cfg, out=tmp_path / "r")


def test_bert_text_check_embeds_without_padding_and_reads_the_cache(tmp_path: Path):
    run = _text_run(tmp_path)
    x = run.split("train").x
    # the oracle: the padded pass, every row at the full block size
    padded = run.embed(x).numpy()
    np.testing.assert_allclose(_embed_by_length(run, x), padded, rtol=0, atol=1e-5)
    assert _embed_by_length(run, x[:0]).shape[0] == 0
    space = shift_view(run, components=4, seed=0).space
    assert space.pooled is not None
    pool = np.concatenate([space.train, space.test])
    np.testing.assert_allclose(space.pooled, space.represent(pool), rtol=0, atol=1e-5)
    result = run_checks(run, ["shift"])["shift"]
    assert "train_vs_test" in result.metrics
    (noise, _prior) = result.metrics["power"]["curves"]
    assert noise["shift"] == "noise" and noise["unit"] == "share of tokens replaced"
