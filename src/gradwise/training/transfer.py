"""Transfer learning: start from another run's weights, freeze parts, reuse its vocabulary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from gradwise.config import Config, HFEncoderConfig
from gradwise.data.text import Tokenizer
from gradwise.errors import ConfigError, NotTrainedError
from gradwise.training.checkpoint import load_tensors

log = logging.getLogger("gradwise")


@dataclass(frozen=True)
class TransferReport:
    """What `model.init_from` did, tensor by tensor."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    unused: list[str] = field(default_factory=list)  # in the source, not in this model

    def summary(self) -> str:
        text = (
            f"init_from {self.source}: loaded {len(self.loaded)} tensors, "
            f"skipped {len(self.skipped)}, left {len(self.unused)} of the source unused"
        )
        for name, why in list(self.skipped.items())[:8]:
            text += f"\n  skipped {name}: {why}"
        return text

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "loaded": self.loaded,
                "skipped": self.skipped,
                "unused": self.unused,
            },
            indent=1,
        )


def init_from(model: nn.Module, run_dir: str) -> TransferReport:
    """Copy every tensor of `run_dir`'s weights whose name and shape match this model's.

    Raises:
        NotTrainedError: `run_dir` has no trained weights.
    """
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        raise NotTrainedError(
            f"model.init_from: {run_dir} holds no model.safetensors; train that run first."
        )
    source, _ = load_tensors(path)
    own = model.state_dict()
    report = TransferReport(source=str(run_dir))
    for name, tensor in own.items():
        if name not in source:
            report.skipped[name] = "not in the source model"
        elif tuple(source[name].shape) != tuple(tensor.shape):
            report.skipped[name] = (
                f"shape {tuple(source[name].shape)} in the source, {tuple(tensor.shape)} here"
            )
        else:
            report.loaded.append(name)
    report.unused.extend(n for n in source if n not in own)
    if not report.loaded:
        raise ConfigError(
            f"model.init_from {run_dir}: no tensor matches this model by name and shape; "
            "the source must have the same architecture (arch, d_model, n_layer, ...)."
        )
    model.load_state_dict({n: source[n] for n in report.loaded}, strict=False)
    return report


def freeze(model: nn.Module, prefixes: list[str]) -> int:
    """Stop gradients for parameters whose names start with any prefix; returns how many.

    Raises:
        ConfigError: a prefix matches no parameter (the message lists the model's parts).
    """
    if not prefixes:
        return 0
    named = dict(model.named_parameters())
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in named):
            parts = sorted({n.split(".")[0] for n in named})
            raise ConfigError(
                f"train.freeze: {prefix!r} names no part of this model; its parts are "
                f"{', '.join(parts)}."
            )
    count = 0
    for name, p in named.items():
        if any(name == pre or name.startswith(pre + ".") for pre in prefixes):
            p.requires_grad_(False)
            count += p.numel()
    return count


def unfreeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(True)


def source_tokenizer(cfg: Config) -> Tokenizer | None:
    """The vocabulary a pretrained start point dictates, if any: a local Hugging Face model's
    tokenizer, or the tokenizer of the run named by `model.init_from`."""
    if isinstance(cfg.model, HFEncoderConfig):
        from gradwise.models.hf_encoder import hf_tokenizer

        return hf_tokenizer(cfg.model)
    if cfg.model.init_from is None:
        return None
    meta_path = Path(cfg.model.init_from) / "model.json"
    if not meta_path.is_file():
        raise NotTrainedError(
            f"model.init_from: {cfg.model.init_from} holds no model.json; train that run first."
        )
    from gradwise.data.stored_schema import schema_from_dict

    schema = schema_from_dict(json.loads(meta_path.read_text())["schema"])
    return schema.tokenizer
