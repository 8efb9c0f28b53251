"""`explain`: attributions for chosen rows, global importance (tables), attention maps
(transformers) and activation statistics, written to RUN/explain/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradwise.artifacts import write_json
from gradwise.config import DiffusionConfig
from gradwise.errors import ConfigError, DataError, GradwiseError
from gradwise.explaining import attention as attn
from gradwise.explaining import attributions as attr
from gradwise.explaining import plots
from gradwise.explaining.activations import activation_stats
from gradwise.explaining.base import METHODS, Explanation, HeadAttention, Method, RowExplanation
from gradwise.explaining.importance import feature_importance, grouped
from gradwise.run import Run, SplitView

EXPLAIN_FOLDER = "explain"
DEFAULT_ROWS = 4
N_TOP = 6
ACTIVATION_BATCH = 256  # validation samples the activation statistics are taken on


def explain_run(
    run: Run,
    rows: list[int] | None = None,
    method: Method = "ig",
    split: str = "test",
    seed: int | None = None,
) -> Explanation:
    """Explain `run` and write RUN/explain/explain.json and its pictures.

    Args:
        rows: row numbers of the source (0-based) to explain, all in `split`; None: the
            split's first four.
        method: ig (integrated gradients), gradshap, kernelshap (tables) or saliency.
        split: train, val or test.
        seed: for the sampled parts (GradientSHAP, KernelSHAP, importance); None: the run's.

    Raises:
        ConfigError: an unknown method, or one that does not apply to this data.
        DataError: a row is not in the split.
        GradwiseError: a diffusion run, which has no prediction to explain.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not one of {', '.join(METHODS)}.")
    if isinstance(run.config.model, DiffusionConfig):
        raise GradwiseError(
            f"{run.path} is a diffusion model: it turns noise into images and predicts nothing "
            "from an input, so there is no decision to attribute, and its U-Net has no "
            "attention to read. Explain the classifier that judges its samples instead."
        )
    seed = run.config.seed if seed is None else seed
    view = run.split(split)
    positions = _positions(view, rows, split)
    out = Path(run.path) / EXPLAIN_FOLDER
    x = view.x[torch.from_numpy(positions)]
    notes: list[str] = []
    files: list[str] = []
    explained: tuple[RowExplanation, ...] = ()
    importance = None
    used_method: str | None = method
    baseline_text: str | None = None
    x_train = run.split("train").x
    ig_steps: int | None = None
    if run.schema.task in ("lm", "mlm", "seq2seq"):
        used_method = None
        notes.append(
            f"attributions explain one decision per input (a class or a value); task "
            f"{run.schema.task} predicts every token, so its attention maps and activation "
            "statistics are given instead."
        )
    elif run.schema.kind == "tokens":
        a = attr.token_attributions(run, x, method)
        ig_steps = a.steps
        explained = _token_rows(run, view, positions, x, a)
        baseline_text = "every token but the special ones replaced by <unk> (padding kept)"
    else:
        a = attr.input_attributions(run, x, method, x_train, seed)
        ig_steps = a.steps
        explained = _input_rows(run, view, positions, x, a)
        baseline_text = _baseline_text(run, method)
        prep = run.schema.tabular
        if (
            prep is not None
            and prep.encoding == "embed"
            and prep.categorical
            and method != "kernelshap"
        ):
            notes.append(
                f"{method} follows gradients, and embedded category codes have none: the "
                f"categorical columns ({', '.join(prep.categorical[:4])}, ...) get 0 here"
                + (
                    " (integrated gradients hold them at each row's own values)"
                    if method == "ig"
                    else ""
                )
                + "; --method kernelshap attributes them."
            )
        if run.schema.kind == "image":
            heat = a.values.sum(dim=1).numpy()  # (N, H, W): channels summed
            plots.image_attributions(out / "attributions.png", _raw_images(run, x), heat, explained)
            files.append("attributions.png")
        if run.schema.kind == "tabular":
            importance = feature_importance(run, run.split("test"), method, x_train, seed)
            plots.importance(out / "importance.png", importance, method)
            files.append("importance.png")
    if explained and run.schema.kind != "image":
        plots.bars(out / "attributions.png", explained, f"{method} attributions")
        files.append("attributions.png")
    heads: tuple[HeadAttention, ...] = ()
    if attn.self_attention_modules(run.model):
        maps = attn.attention_maps(run.model, x.to(run.device))
        heads = attn.summarise(maps)
        plots.attention(out / "attention.png", maps)
        files.append("attention.png")
    else:
        notes.append(_no_attention(run))
    probe = run.split("val").x[:ACTIVATION_BATCH].to(run.device)
    layers = activation_stats(run.model, probe)
    if layers:
        plots.activations(out / "activations.png", layers)
        files.append("activations.png")
    else:
        notes.append("the model has no activation layers gradwise reads")
    result = Explanation(
        run=str(run.path),
        kind=run.schema.kind,
        method=used_method,
        split=split,
        baseline=baseline_text,
        rows=explained,
        importance=importance,
        attention=heads,
        activations=layers,
        files=tuple([*files, "explain.json"]),
        notes=tuple(notes),
        settings=_settings(method, split, positions, view, seed, len(probe), ig_steps),
        wall_s=round(time.perf_counter() - started, 3),
    )
    write_json(out / "explain.json", result.to_dict())
    return result


def _positions(view: SplitView, rows: list[int] | None, split: str) -> np.ndarray:
    """Positions in the split of the requested source rows (default: its first rows)."""
    if not rows:
        return np.arange(min(DEFAULT_ROWS, len(view)))
    where = {int(r): i for i, r in enumerate(view.rows)}
    missing = [r for r in rows if r not in where]
    if missing:
        shown = ", ".join(str(int(r)) for r in view.rows[:8])
        raise DataError(
            f"row(s) {', '.join(map(str, missing))} are not in the {split} split, which holds "
            f"{len(view)} rows ({shown}, ...); pick rows from it, or pass --split train / val."
        )
    return np.array([where[r] for r in rows])


def _prediction(run: Run, logits: Tensor, raw: Any) -> tuple[Any, str]:
    """The decoded prediction of one row's logits (1, K) and what its attributions explain;
    a forecaster of changes (data.difference) adds back the last value of its raw window."""
    task, classes = run.schema.task, run.schema.classes
    if task == "classification" and classes is not None:
        label = run.schema.target.decode(run.probabilities(logits, False).argmax(axis=1))[0]
        if logits.shape[1] == 1:
            return _plain(label), f"logit of class {classes[1]}"
        return _plain(label), f"logit of class {label}"
    value = run.schema.target.decode(logits.numpy())
    name = run.schema.target.name or "the target"
    series = run.schema.series
    if series is not None and series.difference:
        level = series.to_levels(value, np.asarray(raw)[None])[0, 0]
        return round(float(level), 4), f"standardised change of {name} from the window's last value"
    return round(float(value[0, 0]), 4), f"standardised prediction of {name}"


def _input_rows(
    run: Run, view: SplitView, positions: np.ndarray, x: Tensor, a: attr.Attributions
) -> tuple[RowExplanation, ...]:
    logits = run.logits(x)
    names, values = _named_values(run, view, positions, a.values)
    out = []
    for i, pos in enumerate(positions):
        prediction, explained = _prediction(run, logits[i : i + 1], _window(run, view, pos))
        order = np.argsort(-np.abs(values[i]))[:N_TOP]
        out.append(
            RowExplanation(
                row=int(view.rows[pos]),
                prediction=prediction,
                explained=explained,
                top=tuple((names[i][j], round(float(values[i][j]), 6)) for j in order),
                total=float(a.values[i].sum()),
                completeness_gap=None if a.gaps is None else float(a.gaps[i]),
            )
        )
    return tuple(out)


def _window(run: Run, view: SplitView, pos: int) -> Any:
    """(T, F) a forecaster's raw window at `pos` (a forecaster of changes adds its last value
    back); None for other runs."""
    return None if run.schema.series is None else np.asarray(view.raw[pos])


def _named_values(
    run: Run, view: SplitView, positions: np.ndarray, values: Tensor
) -> tuple[list[list[str]], np.ndarray]:
    """Per row, a name per attributed feature (with its raw value) and the attributions:
    raw columns (tables), feature@lag (sequences), pixels (images)."""
    n = len(positions)
    kind = run.schema.kind
    if kind == "tabular":
        found = attr.feature_groups(run)
        assert found is not None
        columns, groups = found
        per_column = grouped(values.flatten(1), groups, len(columns)).numpy()
        raw = view.raw
        names = []
        for pos in positions:
            if run.schema.tabular is not None:
                rec = raw.iloc[int(pos)]
                names.append([f"{c}={_short(rec[c])}" for c in columns])
            else:
                names.append([f"{c}={_short(v)}" for c, v in zip(columns, np.asarray(raw)[pos])])
        return names, per_column
    if kind == "sequence":
        t, f = values.shape[1], values.shape[2]
        features = run.schema.feature_names or [f"x{j}" for j in range(f)]
        labels = [f"{features[j]}@t-{t - 1 - s}" for s in range(t) for j in range(f)]
        return [labels] * n, values.reshape(n, -1).numpy()
    heat = values.sum(dim=1)  # images: (N, H, W)
    h, w = heat.shape[1:]
    labels = [f"pixel ({r}, {c})" for r in range(h) for c in range(w)]
    return [labels] * n, heat.reshape(n, -1).numpy()


def _token_rows(
    run: Run, view: SplitView, positions: np.ndarray, ids: Tensor, a: attr.Attributions
) -> tuple[RowExplanation, ...]:
    tok = run.schema.tokenizer
    assert tok is not None
    specials = set(tok.specials.all())
    logits = run.logits(ids)
    out = []
    for i, pos in enumerate(positions):
        prediction, explained = _prediction(run, logits[i : i + 1], None)
        real = [j for j, t in enumerate(ids[i].tolist()) if t not in specials]
        scores = a.values[i]
        order = sorted(real, key=lambda j: -abs(float(scores[j])))[:N_TOP]
        top = tuple(
            (f"{tok.token_text(int(ids[i, j]))!r} @{j}", round(float(scores[j]), 6)) for j in order
        )
        out.append(
            RowExplanation(
                row=int(view.rows[pos]),
                prediction=prediction,
                explained=explained,
                top=top,
                total=float(scores.sum()),
                completeness_gap=None if a.gaps is None else float(a.gaps[i]),
            )
        )
    return tuple(out)


def _raw_images(run: Run, x: Tensor) -> np.ndarray:
    norm = run.schema.array
    assert norm is not None
    mean = np.array(norm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(norm.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return x.numpy() * std + mean


def _baseline_text(run: Run, method: Method) -> str:
    match method:
        case "gradshap":
            return f"{attr.GRADSHAP_BACKGROUND} random training inputs"
        case "saliency":
            return "none (saliency is the gradient's magnitude at the input)"
    base = "the training mean in model units (0 for standardised values"
    prep = run.schema.tabular
    if prep is not None and prep.categorical:
        if prep.encoding == "onehot":
            base += ", category frequencies for one-hot columns"
        elif method == "ig":
            base += ", each row's own embedded category codes"
        else:
            base += ", the most frequent code of each embedded category"
    return base + ")"


def _no_attention(run: Run) -> str:
    if run.config.model.arch == "hf_encoder":
        return (
            "attention maps read gradwise's own attention layers; a Hugging Face encoder "
            "computes its attention inside transformers"
        )
    return f"model.arch {run.config.model.arch} has no attention layers"


def _settings(
    method: Method,
    split: str,
    positions: np.ndarray,
    view: SplitView,
    seed: int,
    n_probe: int,
    ig_steps: int | None,
) -> dict[str, Any]:
    from gradwise.explaining.importance import N_REPEATS, N_ROWS, N_ROWS_KERNELSHAP

    return {
        "method": method,
        "split": split,
        "rows": [int(view.rows[p]) for p in positions],
        "seed": seed,
        "ig_steps": ig_steps,
        "ig_integration": f"gauss-legendre, {attr.N_STEPS} steps doubled while a row's "
        f"completeness gap exceeds {attr.GAP_TOLERANCE} x max(1, |f(x) - f(baseline)|), "
        f"up to {attr.MAX_STEPS}",
        "gradshap": {"background": attr.GRADSHAP_BACKGROUND, "samples": attr.GRADSHAP_SAMPLES},
        "kernelshap_samples": attr.KERNELSHAP_SAMPLES,
        "importance": {
            "rows": N_ROWS_KERNELSHAP if method == "kernelshap" else N_ROWS,
            "permutation_repeats": N_REPEATS,
        },
        "activation_batch": f"the first {n_probe} validation samples",
        "top": N_TOP,
    }


def _short(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
