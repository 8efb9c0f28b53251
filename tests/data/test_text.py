"""Text: char, byte and BPE tokenizers, chronological parts, shifted windows, labelled text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gradwise.data.readers import load_labelled, read_inputs
from gradwise.data.sources import load_dataset
from gradwise.data.text import BOS, EOS, N_SPECIAL, PAD, UNK, UNKNOWN, Tokenizer, windows
from gradwise.errors import DataError
from tests.data.conftest import data_config
from tests.shared import need_shared

SPLIT = {"val": 0.1, "test": 0.1}


def _corpus(n: int = 2000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("abcdefgh ij\n"), n))


def _load(text: str, tmp_path: Path, **fields):
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return load_dataset(data_config(f"text:{path}", split=SPLIT, **fields), seed=0)


def test_char_tokenizer_round_trips_text_it_was_fitted_on():
    text = "To be, or not to be:\nthat is the question.\n"
    tok = Tokenizer.fit(text, "char")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.vocab_size == len(set(text)) + N_SPECIAL
    assert ids.min() >= N_SPECIAL  # the special ids are kept for <pad>, <unk>, <bos>, ...


def test_unseen_characters_map_to_unk():
    tok = Tokenizer.fit("abc", "char")
    ids = tok.encode("abzc€")
    a = N_SPECIAL
    assert ids.tolist() == [a, a + 1, UNK, a + 2, UNK]
    assert tok.decode(ids) == f"ab{UNKNOWN}c{UNKNOWN}"


def test_byte_tokenizer_handles_utf8():
    text = "héllo ✓ 日本"
    tok = Tokenizer.fit("", "byte")
    ids = tok.encode(text)
    assert tok.vocab_size == 256 + N_SPECIAL
    assert ids.tolist() == [b + N_SPECIAL for b in text.encode("utf-8")]
    assert len(ids) > len(text)  # multi-byte characters
    assert tok.decode(ids) == text


def test_windows_are_contiguous_and_do_not_overlap():
    w = windows(np.arange(23), block_size=5)
    assert w.shape == (4, 6)  # (23 - 1) // 5 windows of block_size + 1 tokens
    inputs, targets = w[:, :-1], w[:, 1:]
    assert np.array_equal(inputs.ravel(), np.arange(20))  # each input token once, in order
    assert np.array_equal(targets, inputs + 1)


def test_text_dataset_targets_are_inputs_shifted_by_one(tmp_path: Path):
    data = _load(_corpus(), tmp_path, block_size=16)
    assert data.schema.kind == "tokens" and data.schema.task == "lm"
    for split in (data.train, data.val, data.test):
        assert split.x.shape[1] == split.y.shape[1] == 16
        assert torch.equal(split.x[:, 1:], split.y[:, :-1])
        assert torch.equal(split.x[1:, 0], split.y[:-1, -1])  # the next window carries on


def test_parts_are_chronological_and_vocabulary_comes_from_train(tmp_path: Path):
    text = _corpus(1800) + "#" * 200  # '#' only at the end: in the test part alone
    data = _load(text, tmp_path, block_size=16)
    tok = data.schema.tokenizer
    assert "#" not in tok.chars
    assert data.schema.n_outputs == tok.vocab_size
    train_text = tok.decode(data.train.x.reshape(-1))
    assert text.startswith(train_text)
    val_text = tok.decode(data.val.x.reshape(-1))
    assert val_text in text[1600:1800]
    assert torch.all(data.test.x == UNK)  # '#' unseen in training


def test_byte_dataset_windows_hold_the_utf8_bytes(tmp_path: Path):
    text = "ünïcödé text " * 100
    data = _load(text, tmp_path, tokenizer="byte", block_size=8)
    assert data.schema.n_outputs == 256 + N_SPECIAL
    raw = [i - N_SPECIAL for i in data.train.x[:3].reshape(-1).tolist()]
    assert bytes(raw) == text.encode("utf-8")[:24]


def test_too_short_a_part_names_block_size(tmp_path: Path):
    with pytest.raises(DataError, match="The val part of the text.*data.block_size=64"):
        _load(_corpus(300), tmp_path, block_size=64)


def test_missing_and_non_utf8_files_are_named(tmp_path: Path):
    with pytest.raises(DataError, match=f"Text file or folder {tmp_path / 'none.txt'} not found"):
        load_dataset(data_config(f"text:{tmp_path / 'none.txt'}"), seed=0)
    (tmp_path / "latin.txt").write_bytes("café".encode("latin-1") * 100)
    with pytest.raises(DataError, match="latin.txt is not UTF-8 text"):
        load_dataset(data_config(f"text:{tmp_path / 'latin.txt'}"), seed=0)


def test_load_labelled_and_read_inputs_reuse_the_training_vocabulary(tmp_path: Path):
    cfg = data_config(f"text:{tmp_path / 'corpus.txt'}", split=SPLIT, block_size=8)
    schema = _load("abcabc" * 100, tmp_path, block_size=8).schema
    (tmp_path / "new.txt").write_text("abxabx" * 10)
    split = load_labelled(f"text:{tmp_path / 'new.txt'}", schema, cfg)
    assert split.x.shape[1] == 8
    assert schema.tokenizer.decode(split.x[0]) == f"ab{UNKNOWN}ab{UNKNOWN}ab"
    assert schema.tokenizer.vocab_size == 3 + N_SPECIAL
    assert read_inputs(str(tmp_path / "new.txt"), schema) == "abxabx" * 10
    with pytest.raises(DataError, match="takes text; pass a string"):
        schema.transform([1, 2, 3])


def test_tiny_shakespeare_prefix():
    corpus = need_shared("tinyshakespeare", "input.txt")
    cfg = data_config(f"text:{corpus}", limit=3000, block_size=32, split=SPLIT)
    data = load_dataset(cfg, seed=0)
    text = corpus.read_text()[:3000]
    assert data.schema.tokenizer.decode(data.train.x[0]) == text[:32]
    assert len(data.train) == (2400 - 1) // 32


def test_bpe_learns_merges_on_the_training_text_and_round_trips():
    text = "the theory of the thermal theatre " * 50
    tok = Tokenizer.fit(text, "bpe", vocab_size=300)
    ids = tok.encode("the theatre")
    assert tok.decode(ids) == "the theatre"
    assert len(ids) < len("the theatre")  # merges shorten the sequence
    assert tok.vocab_size <= 300
    assert min(tok.encode(text)) >= N_SPECIAL  # special ids never come from text
    again = Tokenizer(**{"kind": "bpe", "chars": None, "bpe": tok.bpe})
    assert again.encode("thermal").tolist() == tok.encode("thermal").tolist()


def test_labelled_text_csv_gives_padded_ids_with_a_class_token(tmp_path: Path):
    import pandas as pd

    texts = ["good fine great" if i % 2 else "bad awful poor" for i in range(200)]
    labels = ["pos" if i % 2 else "neg" for i in range(200)]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "t.csv", index=False)
    cfg = data_config(
        f"csv:{tmp_path / 't.csv'}", target="label", text_column="text", block_size=20
    )
    data = load_dataset(cfg, seed=0)
    assert data.schema.kind == "tokens" and data.schema.task == "classification"
    assert data.train.x.shape[1] == 20
    assert torch.all(data.train.x[:, 0] == BOS)
    assert torch.all(data.train.x[:, 16:] == PAD)  # 14 characters + <bos>, then padding
    again = data.schema.transform(pd.DataFrame({"text": ["good fine great"]}))
    assert data.schema.tokenizer.decode(again[0]) == "good fine great"


def test_seq2seq_packs_source_and_shifted_target(tmp_path: Path):
    import pandas as pd

    pd.DataFrame(
        {"src": [f"{i} plus one" for i in range(60)], "tgt": [str(i + 1) for i in range(60)]}
    ).to_csv(tmp_path / "s.csv", index=False)
    cfg = data_config(
        f"csv:{tmp_path / 's.csv'}",
        target="tgt",
        text_column="src",
        task="seq2seq",
        block_size=16,
        target_block_size=6,
    )
    data = load_dataset(cfg, seed=0)
    x, y = data.train.x, data.train.y
    assert data.schema.source_len == 16 and x.shape[1] == 16 + 5 and y.shape[1] == 5
    decoder_in = x[:, 16:]
    assert torch.all(decoder_in[:, 0] == BOS)
    valid = y != -100
    assert torch.equal(decoder_in[:, 1:][valid[:, :-1]], y[:, :-1][valid[:, :-1]])
    assert torch.all((y == EOS).sum(dim=1) == 1)  # each target ends once


def _tab_separated(path: Path, closed: bool = True) -> list[str]:
    """label<TAB>text lines, no header; message 5 opens a quote, message 12 may hold another."""
    texts = [f"message {i}, short" if i % 4 else f"WIN prize {i} now" for i in range(40)]
    texts[5] = '"Quoted at the start, unclosed'
    if closed:
        texts[12] = 'she said "ok'
    labels = ["ham" if i % 4 else "spam" for i in range(40)]
    path.write_text("".join(f"{y}\t{t}\n" for y, t in zip(labels, texts)), encoding="utf-8")
    return texts


def test_tab_separated_text_with_stray_quotes_reads_one_message_per_line(tmp_path: Path):
    from gradwise.data.tabular import read_table

    path = tmp_path / "messages.tsv"
    texts = _tab_separated(path)
    fields = {"separator": "\t", "columns": ["label", "text"], "target": "label"}
    cfg = data_config(f"csv:{path}", quoting="none", text_column="text", split=SPLIT, **fields)
    assert read_table(path, "csv", cfg)["text"].tolist() == texts
    data = load_dataset(cfg, seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 40
    assert data.schema.classes == ["ham", "spam"]
    assert '"' in data.schema.tokenizer.chars  # the quote is ordinary text
    # with quotes honoured, a stray quote swallows the lines up to the next one, silently
    assert len(read_table(path, "csv", data_config(f"csv:{path}", **fields))) < 40
    _tab_separated(path, closed=False)
    with pytest.raises(DataError, match="never closes: .* set data.quoting: none"):
        read_table(path, "csv", data_config(f"csv:{path}", **fields))


def test_sms_spam_collection_reads_directly():
    from gradwise.data.tabular import read_table

    path = need_shared("sms_spam", "SMSSpamCollection")
    cfg = data_config(f"csv:{path}", separator="\t", quoting="none", columns=["label", "text"])
    frame = read_table(path, "csv", cfg)
    assert len(frame) == 5574  # one message per line, as SOURCE.md says
    assert frame["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert frame["text"].notna().all()
