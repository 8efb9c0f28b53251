"""explain: attributions against their defining properties, importance on a table with a
known answer, attention maps and activation statistics against direct computations."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.config import BERTConfig, GPTConfig, MLPConfig, ViTConfig
from gradwise.errors import ConfigError, GradwiseError
from gradwise.explaining.activations import activation_stats
from gradwise.explaining.attention import attention_maps, attention_weights, self_attention_modules
from gradwise.explaining.attributions import baseline, input_attributions
from gradwise.models import InputSpec, build_model
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    out = tmp_path_factory.mktemp("explain") / "mlp"
    return gradwise.train(tiny_config(train={"epochs": 4}), out=out)


def test_integrated_gradients_add_up_to_the_change_of_the_output(digits_mlp: gradwise.Run):
    run = digits_mlp
    x = run.split("test").x[:8]
    x_train = run.split("train").x
    a = input_attributions(run, x, "ig", x_train, seed=0)
    with torch.no_grad():
        out = run.model(x)
        out_base = run.model(baseline(run, x_train))
    rows = torch.arange(len(x))
    expected = out[rows, a.targets] - out_base[0, a.targets]  # f(x) - f(baseline), by hand
    np.testing.assert_allclose(a.values.flatten(1).sum(1), expected, rtol=0.02, atol=0.02)
    assert a.gaps is not None and float(a.gaps.max()) < 0.05
    assert torch.equal(a.targets, out.argmax(1))  # the predicted class is explained


def test_explain_writes_json_and_pictures_and_picks_source_rows(digits_mlp: gradwise.Run):
    test_rows = digits_mlp.split("test").rows
    wanted = [int(test_rows[5]), int(test_rows[2])]
    result = gradwise.explain(digits_mlp, rows=wanted)
    assert [r.row for r in result.rows] == wanted
    folder = Path(digits_mlp.path) / "explain"
    assert {"attributions.png", "activations.png", "explain.json"} <= set(result.files)
    saved = gradwise.artifacts.read_json(folder / "explain.json")
    assert saved["settings"]["rows"] == wanted and saved["settings"]["ig_steps"] >= 64
    assert saved["rows"][0]["top"][0][0].startswith("pixel (")
    with pytest.raises(gradwise.DataError, match="not in the test split"):
        gradwise.explain(digits_mlp, rows=[int(digits_mlp.split("train").rows[0])])
    with pytest.raises(ConfigError, match="KernelSHAP explains tables"):
        gradwise.explain(digits_mlp, method="kernelshap")


def _decided_table(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "noise_a": rng.normal(size=n),
            "decides": rng.normal(size=n),
            "noise_b": rng.normal(10, 3, size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    df["label"] = np.where(df["decides"] > 0, "yes", "no")
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    folder = tmp_path_factory.mktemp("explain-table")
    cfg = tiny_config(
        data={"source": f"csv:{_decided_table(folder / 't.csv')}", "target": "label"},
        train={"epochs": 25, "optimizer": {"lr": 1e-2}},
    )
    return gradwise.train(cfg, out=folder / "r")


@pytest.mark.parametrize("method", ["ig", "kernelshap"])
def test_both_importances_find_the_feature_that_decides_the_label(table_run, method):
    result = gradwise.explain(table_run, method=method)
    imp = result.importance
    assert imp is not None
    assert imp.features == ("noise_a", "decides", "noise_b", "colour")  # one-hot grouped
    assert imp.features[int(np.argmax(imp.mean_abs_attribution))] == "decides"
    assert imp.features[int(np.argmax(imp.permutation))] == "decides"
    assert imp.top_agree
    firsts = [row.top[0][0].split("=")[0] for row in result.rows]  # rows near 0 may differ
    assert firsts.count("decides") * 2 >= len(firsts), firsts
    assert (Path(table_run.path) / "explain" / "importance.png").is_file()


def test_kernelshap_groups_one_hot_columns_into_their_feature(table_run):
    x = table_run.split("test").x[:3]
    a = input_attributions(table_run, x, "kernelshap", table_run.split("train").x, seed=0)
    onehot = a.values[:, 3:]  # colour=<other>, blue, green, red share one attribution
    assert torch.allclose(onehot, onehot[:, :1].expand_as(onehot))


def test_saliency_picture_of_a_tiny_cnn_is_not_constant(tmp_path: Path):
    cfg = tiny_config(model={"arch": "cnn", "channels": [4]}, train={"epochs": 1})
    run = gradwise.train(cfg, out=tmp_path / "cnn")
    result = gradwise.explain(run, method="saliency", rows=None)
    a = input_attributions(run, run.split("test").x[:4], "saliency", run.split("train").x, 0)
    heat = a.values.sum(dim=1)  # what the picture shows, per row
    assert all(float(h.std()) > 0 for h in heat)
    png = np.asarray(Image.open(Path(run.path) / "explain" / "attributions.png").convert("L"))
    assert png.std() > 10 and "attributions.png" in result.files


def test_attention_rows_sum_to_one_and_give_back_the_layer_output():
    torch.manual_seed(0)
    vit = build_model(
        ViTConfig(arch="vit", n_layer=2, n_head=2, d_model=16, dropout=0.0),
        InputSpec(kind="image", shape=(1, 8, 8), n_outputs=10),
    ).eval()
    x = torch.randn(3, 1, 8, 8)
    before = vit(x)
    maps = attention_maps(vit, x)
    assert list(maps) == ["blocks.0.attn", "blocks.1.attn"]
    for w in maps.values():
        assert w.shape == (3, 2, 17, 17)  # 16 patches + the class token
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 17))
    assert torch.equal(vit(x), before)  # hooks gone, numerics untouched
    # the recomputed weights reproduce the module's own (SDPA) output
    name, attn = self_attention_modules(vit)[0]
    h = torch.randn(3, 17, 16)
    w = attention_weights(attn, h, None)
    _, _, v = attn.qkv_proj(h).split(16, dim=2)
    v = v.view(3, 17, 2, 8).transpose(1, 2)
    mixed = (w @ v).transpose(1, 2).reshape(3, 17, 16)
    torch.testing.assert_close(attn.out_proj(mixed), attn(h), atol=1e-5, rtol=1e-4)


def test_attention_respects_causality_and_padding():
    torch.manual_seed(0)
    spec = InputSpec(kind="tokens", shape=(10,), n_outputs=2, vocab_size=20)
    gpt = build_model(GPTConfig(arch="gpt", n_layer=1, n_head=2, d_model=16), spec).eval()
    ids = torch.randint(5, 20, (2, 10))
    w = attention_maps(gpt, ids)["blocks.0.attn"]
    assert float(w.triu(diagonal=1).abs().max()) == 0.0  # no query sees a later key
    bert = build_model(BERTConfig(arch="bert", n_layer=1, n_head=2, d_model=16), spec).eval()
    padded = ids.clone()
    padded[0, 6:] = 0  # <pad>
    w = attention_maps(bert, padded)["blocks.0.attn"]
    assert float(w[0, :, :, 6:].max()) == 0.0 and float(w[1, :, :, 6:].min()) > 0.0
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 10))


def test_activation_stats_find_a_layer_forced_dead_and_a_saturated_one():
    spec = InputSpec(kind="tabular", shape=(6,), n_outputs=3)
    mlp = build_model(MLPConfig(hidden=[16, 8], dropout=0.0), spec).eval()
    with torch.no_grad():
        mlp.body[2].bias.fill_(-1e3)  # every unit of the second layer below zero
    x = torch.randn(64, 6)
    stats = {s.layer: s for s in activation_stats(mlp, x)}
    assert stats["body.3"].dead == 1.0 and stats["body.3"].n_units == 8
    assert stats["body.1"].dead is not None and stats["body.1"].dead < 0.5
    tanh = build_model(MLPConfig(hidden=[8], activation="tanh", dropout=0.0), spec).eval()
    with torch.no_grad():
        tanh.body[0].weight.mul_(1e3)
        tanh.body[0].bias.zero_()
    t = activation_stats(tanh, x)[0]
    assert t.kind == "tanh" and t.dead is None
    assert t.saturated_values is not None and t.saturated_values > 0.95


def test_text_rows_get_token_scores_that_add_up(tmp_path: Path):
    rng = np.random.default_rng(0)
    words = {"good": ["great fun", "lovely day"], "bad": ["awful mess", "sad news"]}
    rows = [(" ".join(rng.choice(words[k], 2)), k) for k in rng.choice(["good", "bad"], 120)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"csv:{tmp_path / 't.csv'}",
            "target": "label",
            "text_column": "text",
            "block_size": 24,
        },
        model={"arch": "bert", "n_layer": 1, "n_head": 2, "d_model": 16, "dropout": 0.0},
        train={"epochs": 2, "optimizer": {"lr": 1e-2}},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = gradwise.explain(run)
    assert result.kind == "tokens" and result.attention  # BERT: maps too
    for r in result.rows:
        assert r.completeness_gap is not None and r.completeness_gap < 0.05
        assert all(name.startswith("'") for name, _ in r.top)  # token texts
    with pytest.raises(ConfigError, match="use --method ig"):
        gradwise.explain(run, method="gradshap")


def test_cli_prints_the_rows_and_importance_and_bad_rows_exit_2(table_run):
    runner = CliRunner()
    row = int(table_run.split("test").rows[0])
    result = runner.invoke(app, ["explain", str(table_run.path), "--rows", str(row)])
    assert result.exit_code == 0, result.output
    assert "top features" in result.output and "feature importance" in result.output
    assert "decides=" in result.output and "agree" in result.output
    bad = runner.invoke(app, ["explain", str(table_run.path), "--rows", "x"])
    assert bad.exit_code == 2 and "explain.rows.0: Input should be a valid integer" in bad.output


def test_a_diffusion_run_says_why_it_cannot_be_explained(tmp_path: Path):
    cfg = tiny_config(
        data={"source": "builtin:digits", "limit": 120},
        model={"arch": "diffusion", "channels": [4, 8], "timesteps": 10, "sample_steps": 2},
        train={"epochs": 1},
    )
    run = gradwise.train(cfg, out=tmp_path / "d")
    with pytest.raises(GradwiseError, match="predicts nothing"):
        gradwise.explain(run)


def test_ig_holds_embedded_category_codes_and_still_adds_up(tmp_path: Path):
    cfg = tiny_config(
        data={
            "source": f"csv:{_decided_table(tmp_path / 't.csv', n=200)}",
            "target": "label",
            "categorical": "embed",
        },
        train={"epochs": 5, "optimizer": {"lr": 1e-2}},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = gradwise.explain(run)
    for r in result.rows:
        assert r.completeness_gap is not None and r.completeness_gap < 0.02
        assert dict((k.split("=")[0], v) for k, v in r.top).get("colour", 0.0) == 0.0
    assert any("embedded category codes have none" in n for n in result.notes)
