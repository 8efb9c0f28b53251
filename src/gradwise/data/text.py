"""Text: character, byte or BPE tokenizers fitted on the training text, a pretrained model's
own tokenizer, and token windows.

gradwise's tokenizers reserve the same special ids: 0 <pad>, 1 <unk>, 2 <bos> (also the class
token of encoders), 3 <eos>, 4 <mask>; the text's own tokens follow. A pretrained model's
tokenizer (kind "hf") keeps that model's ids ([PAD], [UNK], [CLS], [SEP], [MASK]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from gradwise.config import DataConfig
from gradwise.data.dataset import SPLITS, Dataset, Split
from gradwise.data.schema import Schema
from gradwise.data.split import split_sizes, split_table
from gradwise.data.tabular import pick_target
from gradwise.data.target import TargetSpec, infer_task
from gradwise.errors import DataError

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>"]
IGNORE = -100  # target positions the loss and the metrics skip (padding, unmasked tokens)
PAD, UNK, BOS, EOS, MASK = range(len(SPECIALS))
N_SPECIAL = len(SPECIALS)
UNKNOWN = "\ufffd"  # how an unseen character decodes


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens: gradwise's own 0-4, or a pretrained model's."""

    pad: int = PAD
    unk: int = UNK
    bos: int = BOS  # the class token of encoders ([CLS])
    eos: int = EOS  # [SEP] for a pretrained encoder
    mask: int = MASK

    def all(self) -> tuple[int, ...]:
        return (self.pad, self.unk, self.bos, self.eos, self.mask)


@dataclass(frozen=True)
class Tokenizer:
    """Text to ids and back.

    Attributes:
        kind: "char" (vocabulary of the training text's characters), "byte" (UTF-8 bytes,
            always 256 + specials), "bpe" (byte-level BPE trained on the training text
            with the `tokenizers` library) or "hf" (a pretrained model's tokenizer.json).
        chars: the character vocabulary (char).
        bpe: the trained BPE tokenizer as JSON (bpe).
        hf: the pretrained model's tokenizer.json (hf).
        hf_specials: that model's ids of pad, unk, bos, eos and mask, as `SpecialIds` fields.
    """

    kind: Literal["char", "byte", "bpe", "hf"]
    chars: list[str] | None = None
    bpe: str | None = None
    hf: str | None = None
    hf_specials: dict[str, int] | None = None

    @staticmethod
    def pretrained(tokenizer_json: str, specials: SpecialIds) -> Tokenizer:
        """A pretrained model's tokenizer from its tokenizer.json text and special ids."""
        return Tokenizer(kind="hf", hf=tokenizer_json, hf_specials=asdict(specials))

    @staticmethod
    def fit(
        texts: str | Sequence[str], kind: Literal["char", "byte", "bpe"], vocab_size: int = 1000
    ) -> Tokenizer:
        corpus = [texts] if isinstance(texts, str) else list(texts)
        match kind:
            case "byte":
                return Tokenizer(kind="byte")
            case "char":
                chars: set[str] = set()
                for text in corpus:
                    chars.update(text)
                return Tokenizer(kind="char", chars=sorted(chars))
            case "bpe":
                return Tokenizer(kind="bpe", bpe=_train_bpe(corpus, vocab_size))

    @property
    def vocab_size(self) -> int:
        match self.kind:
            case "byte":
                return N_SPECIAL + 256
            case "char":
                return N_SPECIAL + len(self.chars or [])
            case "bpe" | "hf":
                return int(self._backend.get_vocab_size())

    @property
    def specials(self) -> SpecialIds:
        """The ids of <pad>, <unk>, <bos>, <eos> and <mask> (a pretrained model's own for hf)."""
        return SpecialIds(**self.hf_specials) if self.hf_specials else SpecialIds()

    @cached_property
    def _index(self) -> dict[str, int]:
        return {c: i + N_SPECIAL for i, c in enumerate(self.chars or [])}

    @cached_property
    def _backend(self) -> Any:
        """The `tokenizers` Tokenizer behind bpe and hf, without padding or truncation
        (a pretrained tokenizer.json may pad everything to a fixed length; we pad ourselves)."""
        from tokenizers import Tokenizer as HFTokenizer

        tok = HFTokenizer.from_str(self.bpe or self.hf or "")
        tok.no_padding()
        tok.no_truncation()
        return tok

    def encode(self, text: str) -> np.ndarray:
        """Ids of the text's tokens (no special tokens added)."""
        match self.kind:
            case "byte":
                raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
                return raw.astype(np.int64) + N_SPECIAL
            case "char":
                index = self._index
                return np.array([index.get(c, UNK) for c in text], dtype=np.int64)
            case "bpe" | "hf":
                ids = self._backend.encode(text, add_special_tokens=False).ids
                return np.array(ids, dtype=np.int64)

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        if self.kind in ("bpe", "hf"):
            encoded = self._backend.encode_batch(list(texts), add_special_tokens=False)
            return [np.array(e.ids, dtype=np.int64) for e in encoded]
        return [self.encode(t) for t in texts]

    def encode_rows(self, texts: Sequence[str], length: int) -> np.ndarray:
        """(N, length) ids of texts as an encoder reads them: <bos> (the class token) +
        tokens, cut or padded to `length`. A pretrained model's tokenizer (kind hf) gives
        [CLS] text [SEP] [PAD]..., with that model's ids, as the model saw text in
        pretraining."""
        return pad_rows(
            self.encode_many(texts), length, bos=True, eos=self.kind == "hf", specials=self.specials
        )

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of the ids; special tokens are dropped, unseen characters shown as U+FFFD."""
        plain = [int(i) for i in ids]
        match self.kind:
            case "byte":
                data = bytes(i - N_SPECIAL for i in plain if i >= N_SPECIAL)
                return data.decode("utf-8", errors="replace")
            case "char":
                chars = self.chars or []
                return "".join(
                    chars[i - N_SPECIAL] if i >= N_SPECIAL else (UNKNOWN if i == UNK else "")
                    for i in plain
                )
            case "bpe":
                return str(self._backend.decode([i for i in plain if i >= N_SPECIAL]))
            case "hf":
                return str(self._backend.decode(plain, skip_special_tokens=True))

    def token_text(self, token: int) -> str:
        """How one id reads (for per-token scores)."""
        if self.kind in ("bpe", "hf"):
            return self.decode([token])
        return self.decode([token]) if token >= N_SPECIAL else SPECIALS[token]


def _train_bpe(corpus: list[str], vocab_size: int) -> str:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_chunks(corpus), trainer)
    return str(tok.to_str())


def _chunks(corpus: list[str], size: int = 1 << 16) -> list[str]:
    return [text[i : i + size] for text in corpus for i in range(0, len(text), size)]


def read_text(path: Path, limit: int | None) -> str:
    if not path.is_file():
        raise DataError(f"Text file {path} not found; check data.source.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it or use another source.") from None
    if limit is not None:
        text = text[:limit]
    return text


TEXT_COLUMN, LABEL_COLUMN = "text", "label"  # the columns of a folder of labelled texts


def read_text_source(path: Path, limit: int | None) -> str | pd.DataFrame:
    """What text:PATH holds: a file is one corpus; a folder with a subfolder of files per
    class (two or more, like txt_sentoken/pos and txt_sentoken/neg) is labelled text, a frame
    of `text` and `label` (the subfolder's name); any other folder is its files, in name
    order, joined by a blank line into one corpus. Hidden files are skipped.

    Args:
        limit: a corpus keeps its first `limit` characters; labelled text its first `limit`
            files, taken from the classes in turn.

    Raises:
        DataError: nothing there, a folder without files, or a file that is not UTF-8.
    """
    if path.is_file():
        return read_text(path, limit)
    if not path.is_dir():
        raise DataError(f"Text file or folder {path} not found; check data.source.")
    classes = {d.name: _files(d) for d in sorted(path.iterdir()) if _visible(d) and d.is_dir()}
    classes = {name: files for name, files in classes.items() if files}
    if len(classes) >= 2:
        rows = [
            (name, files[i])
            for i in range(max(len(files) for files in classes.values()))
            for name, files in classes.items()
            if i < len(files)
        ][:limit]
        texts = [_read_utf8(f) for _, f in rows]
        return pd.DataFrame({TEXT_COLUMN: texts, LABEL_COLUMN: [name for name, _ in rows]})
    files = sorted(f for f in path.rglob("*") if f.is_file() and _visible(f))
    if not files:
        raise DataError(f"The folder {path} holds no text files; check data.source.")
    text = "\n\n".join(_read_utf8(f) for f in files)
    return text[:limit] if limit is not None else text


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and _visible(f))


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it or remove it.") from None


def windows(ids: np.ndarray, block_size: int) -> np.ndarray:
    """Non-overlapping (block_size + 1)-token windows; input = w[:, :-1], target = w[:, 1:]."""
    n = (len(ids) - 1) // block_size
    if n < 1:
        raise DataError(
            f"The text is {len(ids)} tokens long, too short for windows of data.block_size="
            f"{block_size}; use a longer text or a smaller block_size."
        )
    starts = np.arange(n) * block_size
    return ids[starts[:, None] + np.arange(block_size + 1)]


def pad_rows(
    rows: Sequence[np.ndarray],
    length: int,
    bos: bool = False,
    eos: bool = False,
    specials: SpecialIds = SpecialIds(),
) -> np.ndarray:
    """(N, length) ids: [<bos>] + tokens (cut to fit) + [<eos>], then <pad>, with the
    tokenizer's `specials` ids."""
    out = np.full((len(rows), length), specials.pad, dtype=np.int64)
    room = length - int(bos) - int(eos)
    for i, ids in enumerate(rows):
        seq = list(ids[:room])
        if bos:
            seq = [specials.bos, *seq]
        if eos:
            seq = [*seq, specials.eos]
        out[i, : len(seq)] = seq
    return out


# ------------------------------------------------------------------ building a dataset


def build_text(text: str, cfg: DataConfig, tokenizer: Tokenizer | None = None) -> Dataset:
    """Contiguous train/val/test parts of the corpus, cut into non-overlapping windows.

    `lm` (the default) predicts each next token; `mlm` keeps the windows whole for masked-token
    pretraining (the objective masks them batch by batch).
    """
    if cfg.task not in ("auto", "lm", "mlm"):
        raise DataError(
            f"data.task {cfg.task} does not apply to a text corpus (text:); for labelled text "
            "use csv: with data.text_column and data.target."
        )
    n_train, n_val, _ = split_sizes(len(text), cfg.split)
    parts = text[:n_train], text[n_train : n_train + n_val], text[n_train + n_val :]
    tok = tokenizer or Tokenizer.fit(parts[0], cfg.tokenizer, cfg.vocab_size)
    splits: list[Split] = []
    raw: list[np.ndarray] = []
    rows: dict[str, np.ndarray] = {}
    for name, part in zip(SPLITS, parts):
        try:
            w = torch.from_numpy(windows(tok.encode(part), cfg.block_size))
        except DataError:
            raise DataError(
                f"The {name} part of the text ({len(part)} characters) is shorter than one "
                f"window of data.block_size={cfg.block_size}; use more text or a smaller "
                "block_size."
            ) from None
        if cfg.task == "mlm":
            splits.append(Split(w[:, :-1].contiguous(), w[:, :-1].contiguous()))
        else:
            splits.append(Split(w[:, :-1], w[:, 1:]))
        start = int(sum(len(r) for r in raw))
        rows[name] = np.arange(start, start + len(w))
        raw.append(w.numpy())
    schema = Schema(
        kind="tokens",
        task="mlm" if cfg.task == "mlm" else "lm",
        input_shape=[cfg.block_size],
        n_outputs=tok.vocab_size,
        target=TargetSpec(),
        source=cfg.source,
        tokenizer=tok,
    )
    train, val, test = splits
    return Dataset(train, val, test, schema=schema, rows=rows, raw=np.concatenate(raw))


def build_text_source(
    path: Path, cfg: DataConfig, seed: int, tokenizer: Tokenizer | None = None
) -> Dataset:
    """text:PATH (see `read_text_source`): a corpus for language modelling, or a folder of
    class subfolders as labelled text classification (text -> the subfolder's name)."""
    read = read_text_source(path, cfg.limit)
    if isinstance(read, str):
        return build_text(read, cfg, tokenizer)
    labelled = cfg.model_copy(update={"text_column": TEXT_COLUMN, "target": LABEL_COLUMN})
    return build_text_table(read, labelled, seed, tokenizer)


def build_text_table(
    df: pd.DataFrame,
    cfg: DataConfig,
    seed: int,
    tokenizer: Tokenizer | None = None,
) -> Dataset:
    """Labelled text: `data.text_column` -> a class or value, or (seq2seq) another text.

    Inputs become <bos> + tokens, cut or padded to `data.block_size`; seq2seq targets become
    <bos> + tokens + <eos> in `data.target_block_size`, and x packs source and target input.
    """
    column = cfg.text_column
    assert column is not None
    if column not in df.columns:
        raise DataError(
            f"Text column {column!r} not found in {cfg.source}. Columns: {', '.join(df.columns)}."
        )
    target = pick_target(df, cfg.target, cfg.source)
    texts = df[column].fillna("").astype(str).tolist()
    if cfg.task == "seq2seq":
        return _build_seq2seq(
            df, texts, df[target].fillna("").astype(str).tolist(), cfg, seed, tokenizer
        )
    y_raw = df[target].to_numpy()
    if pd.isna(df[target]).any():
        raise DataError(f"Target column {target!r} has missing values; drop or fill those rows.")
    task = infer_task(y_raw, cfg.task)
    split = split_table(
        df, cfg.split, seed, df[[column]], stratify=y_raw if task == "classification" else None
    )
    tr, va, te = split.indices
    tok = tokenizer or Tokenizer.fit([texts[i] for i in tr], cfg.tokenizer, cfg.vocab_size)
    spec = (
        TargetSpec.fit_classes(y_raw, target)
        if task == "classification"
        else TargetSpec.fit_regression(y_raw[tr].astype(np.float64), target)
    )
    schema = Schema(
        kind="tokens",
        task=task,  # type: ignore[arg-type]
        input_shape=[cfg.block_size],
        n_outputs=len(spec.classes) if spec.classes else 1,
        target=spec,
        source=cfg.source,
        tokenizer=tok,
        text_column=column,
    )
    x = schema.encode_texts(texts)
    return Dataset.from_arrays(
        x,
        spec.encode(y_raw),
        (tr, va, te),
        schema,
        split.notes,
        raw=df,
        split_rule=split.rule,
        fold_key=split.fold_key,
    )


def _build_seq2seq(
    df: pd.DataFrame,
    sources: list[str],
    targets: list[str],
    cfg: DataConfig,
    seed: int,
    tokenizer: Tokenizer | None,
) -> Dataset:
    split = split_table(df, cfg.split, seed, df[[cfg.text_column]])
    tr, va, te = split.indices
    tok = tokenizer or Tokenizer.fit(
        [sources[i] for i in tr] + [targets[i] for i in tr], cfg.tokenizer, cfg.vocab_size
    )
    s_len, t_len = cfg.block_size, cfg.target_block_size
    schema = Schema(
        kind="tokens",
        task="seq2seq",
        input_shape=[s_len + t_len - 1],
        n_outputs=tok.vocab_size,
        target=TargetSpec(name=cfg.target),
        source=cfg.source,
        tokenizer=tok,
        text_column=cfg.text_column,
        source_len=s_len,
    )
    src = schema.encode_texts(sources)  # (N, S)
    tgt = pad_rows(tok.encode_many(targets), t_len, bos=True, eos=True)  # (N, T)
    x = np.concatenate([src, tgt[:, :-1]], axis=1)  # source + decoder input
    y = np.where(tgt[:, 1:] == PAD, IGNORE, tgt[:, 1:])  # next target tokens
    return Dataset.from_arrays(
        x,
        y,
        (tr, va, te),
        schema,
        split.notes,
        raw=df,
        split_rule=split.rule,
        fold_key=split.fold_key,
    )
