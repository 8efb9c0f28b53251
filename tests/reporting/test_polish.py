"""What the report says matches what was run: captions name only drawn panels, the train
column says it is a sample, static int8 on a recurrent model says what stayed float, an
LSTM's FLOPs are counted, and the LSTM export does not repeat torch's batch-size warning."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from gradwise.auditing.base import CheckResult
from gradwise.deploy.levers import _rnn_flops, flops_per_sample
from gradwise.deploy.onnx import export_onnx
from gradwise.pipeline import TRAIN_METRICS_CAP
from gradwise.reporting.blocks import Table, Text
from gradwise.reporting.sections import metrics_section
from gradwise.reporting.sections_audit import _caption
from gradwise.reporting.sections_ops import _static_int8_notes


def test_the_generalisation_caption_names_no_learning_curve_when_none_was_run():
    split_only = CheckResult("generalisation", "pass", "", "", {"metric": "rmse", "train": 1.0})
    assert "Left" not in _caption(split_only) and "not run" in _caption(split_only)
    curve = {"metric": "rmse", "learning_curve": {"points": [{"n_train": 10, "value": 1.0}]}}
    assert _caption(CheckResult("generalisation", "pass", "", "", curve)).startswith("Left:")


def test_the_robustness_caption_says_no_attack_was_run():
    only_corruptions = CheckResult("robustness", "pass", "", "", {"corruptions": [{"x": 1}]})
    assert "no adversarial attack" in _caption(only_corruptions)


def _metrics_headers(n_train: int) -> tuple[str, ...]:
    metrics = {"train": {"loss": 0.1}, "test": {"loss": 0.2}, "n_train": n_train}
    (table,) = metrics_section(SimpleNamespace(metrics=metrics)).blocks  # type: ignore[arg-type]
    assert isinstance(table, Table)
    return table.headers


def test_the_train_column_says_when_it_is_a_sample():
    n = TRAIN_METRICS_CAP + 5
    assert _metrics_headers(n)[1] == f"train (a sample of {TRAIN_METRICS_CAP:,} of {n:,} rows)"
    assert _metrics_headers(100)[1] == "train"


def _tradeoff(*variants: str) -> dict[str, Any]:
    return {"rows": [{"variant": v} for v in variants]}


def test_static_int8_of_a_recurrent_model_says_its_recurrent_layers_stayed_float():
    lstm = SimpleNamespace(config={"model": {"arch": "lstm"}})
    (note,) = _static_int8_notes(lstm, _tradeoff("fp32", "onnx-int8-static"))  # type: ignore[arg-type]
    assert isinstance(note, Text) and "recurrent layers stay float32" in note.text
    mlp = SimpleNamespace(config={"model": {"arch": "mlp"}})
    assert _static_int8_notes(mlp, _tradeoff("fp32", "onnx-int8-static")) == []  # type: ignore[arg-type]
    assert _static_int8_notes(lstm, _tradeoff("fp32", "onnx-int8-dynamic")) == []  # type: ignore[arg-type]


class _Forecaster(nn.Module):
    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize(
    ("rnn", "gates"),
    [
        (nn.LSTM(5, 16, batch_first=True), 4),
        (nn.GRU(5, 16, num_layers=2, bidirectional=True, batch_first=True), 3),
    ],
)
def test_the_recurrent_matmuls_are_counted(rnn: nn.RNNBase, gates: int):
    steps, h, dirs = 12, 16, 2 if rnn.bidirectional else 1
    by_hand = sum(
        steps * dirs * 2 * gates * h * ((5 if layer == 0 else h * dirs) + h)
        for layer in range(rnn.num_layers)
    )
    assert _rnn_flops(rnn, torch.zeros(1, steps, 5)) == by_hand
    model = _Forecaster(rnn).eval()
    run = SimpleNamespace(
        backend=None, model=model, split=lambda name: SimpleNamespace(x=torch.zeros(3, steps, 5))
    )
    head = 2 * h * dirs  # the Linear head, counted by torch's counter
    assert flops_per_sample(run) == by_hand + head  # type: ignore[arg-type]


def test_exporting_an_lstm_raises_no_warning(tmp_path: Path):
    model = _Forecaster(nn.LSTM(5, 8, batch_first=True)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model, torch.zeros(2, 6, 5), tmp_path / "m.onnx", with_features=False)
    assert [str(w.message) for w in caught] == []
