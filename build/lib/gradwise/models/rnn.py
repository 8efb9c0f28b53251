"""Recurrent networks (RNN, LSTM, GRU): sequence classification, forecasting, language models."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gradwise.config import RNNConfig
from gradwise.errors import ConfigError
from gradwise.models.blocks import init_weights
from gradwise.models.spec import Embedder, InputSpec

_CELLS: dict[str, type[nn.RNN] | type[nn.LSTM] | type[nn.GRU]] = {
    "rnn": nn.RNN,
    "lstm": nn.LSTM,
    "gru": nn.GRU,
}


class RNN(nn.Module, Embedder):
    """A recurrent stack over time.

    Inputs: (B, T, F) sequences, (B, C, H, W) images read row by row as (B, H, C*W), or
    (B, T) token ids through an embedding. Language models give logits per step
    (B, T, V); the others pool the steps (last or mean) into (B, n_outputs).
    """

    def __init__(self, cfg: RNNConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind == "tabular":
            raise ConfigError(
                f"model.arch {cfg.arch} needs sequences; this data is a table. Use arch: mlp, "
                "or timeseries:/npz (N, T, F) data."
            )
        if spec.per_token and cfg.bidirectional:
            raise ConfigError(
                "A language model reads left to right; set model.bidirectional: false."
            )
        self.per_token = spec.per_token
        self.pool = cfg.pool
        if spec.kind == "tokens":
            self.embed: nn.Embedding | None = nn.Embedding(spec.vocab_size, cfg.embed_dim)
            n_in = cfg.embed_dim
        else:
            self.embed = None
            n_in = spec.shape[-1] if spec.kind == "sequence" else spec.shape[0] * spec.shape[2]
        self.rnn = _CELLS[cfg.arch](
            n_in,
            cfg.hidden,
            num_layers=cfg.layers,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            bidirectional=cfg.bidirectional,
            batch_first=True,
        )
        width = cfg.hidden * (2 if cfg.bidirectional else 1)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(width, spec.n_outputs)
        init_weights(self, cfg.init, "tanh")

    def forward(self, x: Tensor) -> Tensor:
        logits, _ = self.step(x, None)
        return logits

    def features(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (B, H): the pooled outputs (the mean over time for a language
        model)."""
        out, _ = self._run(x, None)  # (B, T, H)
        if self.per_token or self.pool == "mean":
            return out.mean(dim=1)
        return out[:, -1]

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Run over x from `state` (None: zeros); returns outputs and the state to continue from."""
        out, state = self._run(x, state)
        if self.per_token:
            return self.head(out), state  # (B, T, V)
        pooled = out[:, -1] if self.pool == "last" else out.mean(dim=1)
        return self.head(pooled), state  # (B, n_outputs)

    def _run(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        if self.embed is not None:
            x = self.embed(x)  # (B, T, E)
        elif x.dim() == 4:
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, H, C*W): rows as time steps
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.drop(out), state
