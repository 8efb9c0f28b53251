"""Checkpoints and weights in safetensors + JSON, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from gradwise.artifacts import atomic_path
from gradwise.errors import ConfigError, DataError

if TYPE_CHECKING:
    from gradwise.training.early_stopping import EarlyStopping
    from gradwise.training.optim import Schedule

CHECKPOINT = Path("checkpoints") / "last.safetensors"


def save_tensors(
    path: Path, tensors: dict[str, Tensor], meta: dict[str, Any] | None = None
) -> None:
    """Save tensors (and JSON metadata) to one safetensors file, atomically."""
    with atomic_path(path) as tmp:
        save_file(_unshared(tensors), str(tmp), metadata={"gradwise": json.dumps(meta or {})})


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and metadata from a safetensors file; never unpickles anything."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("gradwise", "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable safetensors file: {exc}") from None
    return tensors, meta


def save_weights(path: Path, model: nn.Module) -> None:
    save_tensors(path, model.state_dict())


def load_weights(path: Path, model: nn.Module) -> None:
    tensors, _ = load_tensors(path)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise DataError(
            f"{path} does not match the model in model.json (missing: {', '.join(missing[:5])}; "
            f"unexpected: {', '.join(unexpected[:5])}); the run directory is inconsistent."
        )


def pack_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state as flat tensors plus JSON-able groups and scalars."""
    state = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"groups": state["param_groups"], "scalars": scalars}


def unpack_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Load the state `pack_optimizer` made, each moment in its parameter's memory layout."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, entries in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entries)
    opt.load_state_dict({"state": state, "param_groups": meta["groups"]})
    _match_param_layouts(opt)


def _match_param_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each per-element state tensor (moments, momentum) its parameter's strides.

    safetensors stores tensors contiguous, while a channels_last parameter is not; the fused
    and foreach kernels walk a parameter and its moments as flat memory, so moments in another
    layout would be paired with the wrong elements. Scalars such as `step` are left alone.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            entries = opt.state.get(p, {})
            for key, value in entries.items():
                is_moment = isinstance(value, Tensor) and value.dim() > 0 and value.shape == p.shape
                if is_moment and value.stride() != p.stride():
                    entries[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _unshared(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous tensors; a tensor sharing memory with an earlier one (tied weights) is
    copied, since safetensors stores each buffer once."""
    seen: set[int] = set()
    out = {}
    for name, value in tensors.items():
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


# ------------------------------------------------------------------ resumable state


def _rng_tensors(order: torch.Generator, noise: torch.Generator) -> dict[str, Tensor]:
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.order": order.get_state(),
        "rng.noise": noise.get_state(),
    }
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors


def save_checkpoint(
    out: Path,
    model: nn.Module,
    best_state: dict[str, Tensor] | None,
    opt: torch.optim.Optimizer,
    sched: Schedule,
    early: EarlyStopping,
    order: torch.Generator,
    noise: torch.Generator,
    history: list[dict[str, float]],
    wall_s: float,
    within: dict[str, Any] | None = None,
) -> None:
    """Everything needed to continue exactly where this epoch ended, in one atomic file.

    Args:
        best_state: the best epoch's weights when they are not the model's current ones
            (restore_best and an earlier best epoch); None otherwise.
        within: the position inside the epoch after the last complete one
            (`gradwise.training.position.Position`), for a checkpoint between steps.
    """
    opt_tensors, opt_meta = pack_optimizer(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    tensors.update(opt_tensors)
    tensors.update(_rng_tensors(order, noise))
    meta = {
        "epoch": int(history[-1]["epoch"]) if history else 0,
        "within": within,
        "optimizer": opt_meta,
        "schedule": sched.state_dict(),
        "early_stopping": early.state_dict(),
        "history": history,
        "wall_s": wall_s,
    }
    save_tensors(out / CHECKPOINT, tensors, meta)


def restore_checkpoint(
    out: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Schedule,
    early: EarlyStopping,
    order: torch.Generator,
    noise: torch.Generator,
) -> tuple[int, float, list[dict[str, float]], dict[str, Tensor], dict[str, Any] | None]:
    """Load a checkpoint into the model, optimizer, schedule, early stopping and generators.

    Returns:
        The epoch to start from, the wall time so far, the history, the best epoch's
        weights when they differ from the model's (empty: the checkpoint's epoch was best),
        and the position inside the epoch to start from (None: its start).
    """
    path = out / CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            f"--resume: no checkpoint at {path}; the run stopped before its first one (saved "
            "every train.checkpoint_every_s seconds and after the last epoch), or ran with "
            "train.checkpoint: false. Start it again without --resume."
        )
    tensors, meta = load_tensors(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    unpack_optimizer(opt, tensors, meta["optimizer"])
    sched.load_state_dict(meta["schedule"])
    early.load_state_dict(meta["early_stopping"])
    torch.set_rng_state(tensors["rng.torch"])
    order.set_state(tensors["rng.order"])
    noise.set_state(tensors["rng.noise"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    history = meta["history"]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    # Without best.* tensors the checkpoint's epoch was the best one (or restore_best is off).
    best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    within = meta.get("within")
    return int(meta["epoch"]) + 1, float(meta["wall_s"]), history, best_state, within
