"""The training loop: accumulation, early stopping, divergence, penalties, diagnostics."""

import json
from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.config import load_config
from gradwise.errors import ConfigError, TrainingDiverged
from gradwise.pipeline import prepare
from gradwise.run import Run
from gradwise.training.loop import fit
from tests.conftest import tiny_config


def _one_step_params(cfg_dict) -> list[torch.Tensor]:
    """Weights after exactly one optimizer step (epochs=1 on a 32-sample training split)."""
    cfg = load_config(cfg_dict)
    torch.manual_seed(0)
    data, loss_name, model, _ = prepare(cfg)
    small = type(data)(
        type(data.train)(data.train.x[:32], data.train.y[:32]), data.val, data.test, data.schema
    )
    objective = Run(Path("."), cfg, data.schema, model, loss_name).objective(small.train.y)
    fit(model, small, cfg, objective)
    return [p.detach().clone() for p in model.parameters()]


def test_accumulated_micro_batches_equal_one_large_batch():
    common = {
        "epochs": 1,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
        "schedule": {"name": "constant"},
        "grad_clip": None,
        "diagnostics": False,
    }
    big = _one_step_params(tiny_config(train={**common, "batch_size": 32, "accumulate": 1}))
    small = _one_step_params(tiny_config(train={**common, "batch_size": 8, "accumulate": 4}))
    start = _one_step_params(
        tiny_config(train={**common, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 1e-12}})
    )
    assert any((a - s).abs().max() > 1e-3 for a, s in zip(big, start))  # a real update happened
    for a, b in zip(big, small):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path):
    cfg = tiny_config(
        train={
            "epochs": 40,
            "optimizer": {"lr": 0.05},
            "schedule": {"name": "constant"},
            "early_stopping": {"metric": "val.loss", "patience": 2},
        }
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    history = run.history
    losses = [r["val.loss"] for r in history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert run.metrics["stopped_early"] is True
    assert len(history) == best + 1 + 2  # patience 2 after the best epoch
    assert run.metrics["best_epoch"] == best + 1
    assert run.metrics["val"]["loss"] == pytest.approx(losses[best], rel=1e-5)
    assert "restored the weights of epoch" in (tmp_path / "r" / "train.log").read_text()


def test_early_stopping_on_a_maximised_metric(tmp_path: Path):
    cfg = tiny_config(train={"epochs": 4, "early_stopping": {"metric": "val.accuracy"}})
    run = gradwise.train(cfg, out=tmp_path / "r")
    accs = [r["val.accuracy"] for r in run.history]
    assert run.metrics["best_epoch"] == 1 + max(range(len(accs)), key=accs.__getitem__)


def test_a_diverging_run_stops_with_a_message_naming_the_fix(tmp_path: Path):
    cfg = tiny_config(
        train={
            "epochs": 3,
            "grad_clip": None,
            "optimizer": {"name": "sgd", "lr": 1.0e4, "momentum": 0.9},
            "schedule": {"name": "constant"},
        }
    )
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        gradwise.train(cfg, out=tmp_path / "r")


def test_exploding_gradients_stop_the_run(tmp_path: Path):
    cfg = tiny_config(train={"epochs": 3, "grad_clip": 1.0, "explode_threshold": 1e-3})
    with pytest.raises(TrainingDiverged, match="gradient norm reached"):
        gradwise.train(cfg, out=tmp_path / "r")


def test_l1_penalty_shrinks_the_weights(tmp_path: Path):
    def weight_l1(l1: float) -> float:
        cfg = tiny_config(train={"epochs": 5, "l1": l1, "optimizer": {"lr": 1e-2}})
        run = gradwise.train(cfg, out=tmp_path / str(l1))
        return sum(p.abs().sum().item() for p in run.model.parameters() if p.ndim >= 2)

    assert weight_l1(1e-2) < 0.7 * weight_l1(0.0)


def test_diagnostics_log_layer_gradient_norms_and_dead_relus(tmp_path: Path):
    run = gradwise.train(tiny_config(), out=tmp_path / "r")
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    record = lines[-1]
    assert {"grad_norm.body.0", "grad_norm.head"} <= record.keys()
    assert record["grad_norm.head"] > 0
    assert 0.0 <= record["dead_relu"] <= 1.0
    assert {"train.loss", "val.loss", "val.accuracy", "val.f1_macro", "lr"} <= record.keys()
    assert run.metrics["epochs"] == 2


def test_dead_relu_fraction_sees_units_killed_by_a_negative_bias():
    from gradwise.training.diagnostics import dead_relu_fraction

    net = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.ReLU(), torch.nn.Linear(10, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias[:] = torch.tensor([-1.0] * 3 + [1.0] * 7)
    assert dead_relu_fraction(net, torch.randn(32, 4))["dead_relu"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "sgd", "lr": 0.05, "nesterov": True, "momentum": 0.9},
        {"name": "adam", "lr": 3e-3},
        {"name": "adamw", "lr": 3e-3},
        {"name": "rmsprop", "lr": 1e-3},
    ],
)
def test_every_optimizer_learns(optimizer, tmp_path: Path):
    run = gradwise.train(tiny_config(train={"epochs": 3, "optimizer": optimizer}), out=tmp_path)
    hist = run.history
    assert (
        hist[-1]["train.loss"] < 0.5 * hist[0]["train.loss"] or run.metrics["val"]["accuracy"] > 0.9
    )


def test_regression_losses_and_metrics_in_target_units(tmp_path: Path):
    for loss in ("mse", "mae", "huber"):
        cfg = tiny_config(
            data={"source": "builtin:diabetes"},
            train={"epochs": 40, "loss": {"name": loss}, "optimizer": {"lr": 1e-2}},
        )
        run = gradwise.train(cfg, out=tmp_path / loss)
        test = run.metrics["test"]
        assert {"rmse", "mae", "r2"} <= test.keys()
        assert 30 < test["rmse"] < 80  # diabetes targets span 25..346; a mean guess gives ~77
        assert test["r2"] > 0.2


def test_bce_uses_one_logit_and_gives_two_column_probabilities(tmp_path: Path):
    cfg = tiny_config(
        data={"source": "builtin:breast_cancer"},
        train={
            "epochs": 30,
            "optimizer": {"lr": 3e-3},
            "loss": {"name": "bce", "class_weights": "balanced"},
        },
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    assert run.model.head.out_features == 1
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    proba = run.predict_proba(frame.iloc[:10])
    assert proba.shape == (10, 2)
    assert run.metrics["test"]["roc_auc"] > 0.95


def test_a_typo_in_the_early_stopping_metric_stops_before_training(tmp_path: Path):
    cfg = tiny_config(train={"epochs": 2, "early_stopping": {"metric": "val.acuracy"}})
    with pytest.raises(ConfigError, match="'val.acuracy' is not logged.*did you mean val.accuracy"):
        gradwise.train(cfg, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # nothing was created
