"""Every architecture through the Run: train, save, load, identical outputs, embeddings, and
the exact splits (test metrics recomputed from Run.split equal metrics.json)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.errors import GradwiseError
from gradwise.models import Embedder
from tests.conftest import tiny_config

TRANSFORMER = {"n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0}


def _texts(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("ab "), 14)) for _ in range(90)]
    labels = ["a" if t.count("a") > t.count("b") else "b" for t in texts]
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    return path


def _pairs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    words = ["".join(rng.choice(list("abc"), 5)) for _ in range(90)]
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"src": words, "tgt": [w[::-1] for w in words]}).to_csv(path, index=False)
    return path


def _case(name: str, tmp_path: Path) -> dict:
    digits = {"source": "builtin:digits", "limit": 400}
    labelled = {"source": f"csv:{_texts(tmp_path)}", "target": "label", "text_column": "text"}
    match name:
        case "mlp":
            return tiny_config(data=digits)
        case "cnn":
            return tiny_config(data=digits, model={"arch": "cnn", "channels": [4, 8]})
        case "rnn" | "lstm" | "gru":
            return tiny_config(data=digits, model={"arch": name, "hidden": 8})
        case "vit":
            return tiny_config(data=digits, model={"arch": "vit", "patch_size": 4, **TRANSFORMER})
        case "gpt-lm":
            text = {"source": f"text:{_corpus(tmp_path)}", "block_size": 16}
            return tiny_config(data=text, model={"arch": "gpt", **TRANSFORMER})
        case "gpt-classifier":
            return tiny_config(
                data={**labelled, "block_size": 16}, model={"arch": "gpt", **TRANSFORMER}
            )
        case "bert":
            return tiny_config(
                data={**labelled, "block_size": 16}, model={"arch": "bert", **TRANSFORMER}
            )
        case "bert-mlm":
            text = {"source": f"text:{_corpus(tmp_path)}", "block_size": 16, "task": "mlm"}
            return tiny_config(data=text, model={"arch": "bert", **TRANSFORMER})
        case "seq2seq":
            pairs = {
                "source": f"csv:{_pairs(tmp_path)}",
                "text_column": "src",
                "target": "tgt",
                "task": "seq2seq",
                "block_size": 8,
                "target_block_size": 8,
            }
            model = {"arch": "seq2seq", "n_decoder_layer": 1, **TRANSFORMER}
            return tiny_config(data=pairs, model=model)
        case "diffusion":
            model = {"arch": "diffusion", "channels": [8, 16], "timesteps": 20, "sample_steps": 2}
            return tiny_config(data={**digits, "limit": 200}, model=model)
    raise AssertionError(name)


ARCHS = [
    "mlp",
    "cnn",
    "rnn",
    "lstm",
    "gru",
    "vit",
    "gpt-lm",
    "gpt-classifier",
    "bert",
    "bert-mlm",
    "seq2seq",
    "diffusion",
]


@pytest.mark.parametrize("name", ARCHS)
def test_every_architecture_round_trips_through_the_run(name: str, tmp_path: Path):
    cfg = _case(name, tmp_path)
    cfg["train"] = {**cfg["train"], "epochs": 1, "diagnostics": False}
    run = gradwise.train(cfg, out=tmp_path / "r")
    again = gradwise.load(run.path)
    test = again.split("test")
    if name == "diffusion":
        with pytest.raises(GradwiseError, match="gradwise sample"):
            again.logits(test.x)
        for a, b in zip(run.model.state_dict().values(), again.model.state_dict().values()):
            torch.testing.assert_close(a, b)
        return
    torch.testing.assert_close(again.logits(test.x), run.logits(test.x))
    assert isinstance(again.model, Embedder)
    features = again.embed(test.x)
    assert features.shape[0] == len(test) and features.dim() == 2
    if again.schema.task in ("classification", "regression"):
        torch.testing.assert_close(again.model.head(features), again.logits(test.x))


@pytest.mark.parametrize(
    "data",
    [
        {"source": "builtin:digits"},
        {"source": "builtin:wine"},
        {"source": "builtin:diabetes"},
    ],
    ids=["images", "table", "regression"],
)
def test_metrics_recomputed_from_the_test_split_equal_metrics_json(data, tmp_path: Path):
    run = gradwise.train(tiny_config(data=data, train={"epochs": 2}), out=tmp_path / "r")
    loaded = gradwise.load(run.path)
    test = loaded.split("test")
    again = loaded.objective(loaded.split("train").y).metrics(
        loaded.model, test.tensors, loaded.eval_settings
    )
    assert again == run.metrics["test"]  # to the last digit
    assert len(test.rows) == run.metrics["n_test"]
    # the raw rows, preprocessed again, are exactly the tensors training used
    raw = test.raw.drop(columns=["target"]) if isinstance(test.raw, pd.DataFrame) else test.raw
    torch.testing.assert_close(loaded.transform(raw), test.x, rtol=0, atol=0)


def test_the_test_rows_of_a_table_are_its_row_numbers(tmp_path: Path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=150), "id": np.arange(150)})
    frame["y"] = (frame["x"] > 0).astype(int)
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(data={"source": f"csv:{tmp_path / 't.csv'}", "target": "y", "drop": ["id"]})
    test = gradwise.train(cfg, out=tmp_path / "r").split("test")
    assert test.raw["id"].tolist() == test.rows.tolist()  # row i of the file is id i
