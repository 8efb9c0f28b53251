"""The training loop: every choice from the config, diagnostics, resumable checkpoints."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradwise.config import Config, TrainConfig
from gradwise.data.augment import make_augment
from gradwise.data.batcher import Batcher
from gradwise.data.dataset import Dataset
from gradwise.data.stream_train import StreamBatcher
from gradwise.errors import ConfigError
from gradwise.evaluate.evaluator import EvalSettings
from gradwise.models.moe import expert_shares
from gradwise.training.checkpoint import (
    restore_checkpoint,
    save_checkpoint,
    save_tensors,
)
from gradwise.training.diagnostics import dead_relu_fraction
from gradwise.training.early_stopping import EarlyStopping
from gradwise.training.epoch import Loop, check_divergence, train_epoch
from gradwise.training.epochs import epochs_reason, resolved_epochs
from gradwise.training.objectives import Objective
from gradwise.training.optim import Schedule, decay_groups, make_optimizer
from gradwise.training.position import Position, SaveWithin
from gradwise.training.precision import (
    Bf16Weights,
    cpu_has_native_bf16,
    takes_bf16_weights,
)
from gradwise.training.transfer import unfreeze

log = logging.getLogger("gradwise")

ProgressFn = Callable[[int, int, int], None]  # (epoch, batches done, batches in epoch)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel job (rank 0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class StopTraining(Exception):
    """Raised by an `on_epoch_end` callback to end training after this epoch.

    The run then ends as after an early stop: the weights and checkpoint are saved, the best
    epoch's weights restored, and the run summarised; `TrainResult.stop_reason` (and
    metrics.json's `stop_reason`) holds the message. The search prunes trials this way.
    """


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    epochs: int
    stopped_early: bool
    wall_s: float
    restored_best: bool = False
    notes: list[str] = field(default_factory=list)
    stop_reason: str | None = None  # why an on_epoch_end callback stopped training


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no GPU is visible; use auto or cpu.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(cfg: TrainConfig, device: torch.device) -> Callable[[], Any]:
    """A context-manager factory: bf16 autocast when asked, else a no-op."""
    if cfg.precision == "bf16":
        if device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "train.precision is bf16, but this CPU has no native bf16 matrix multiply "
                "(no AVX512-BF16 or AMX), so bf16 runs slower than fp32 here; "
                "set train.precision: fp32 (or train.compile: true for speed)"
            )
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def logged_metrics(objective: Objective) -> tuple[str, ...]:
    """The metric names every epoch's record holds, which early stopping may watch."""
    return ("train.loss", *(f"val.{name}" for name in objective.metric_names()))


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: Config,
    objective: Objective,
    out: Path | None = None,
    resume: bool = False,
    parallel: Parallel = Parallel(),
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train `model` on `data.train`, validating on `data.val` after every epoch.

    Args:
        model: built for the data's schema; trained in place and left holding the best (or
            last) weights.
        out: run directory for metrics.jsonl, model.safetensors and checkpoints (rank 0
            writes); None keeps everything in memory. metrics.jsonl grows every epoch; the
            weights and checkpoint are saved every `train.checkpoint_every_s` seconds, after
            the last epoch and at an early stop.
        resume: continue from `out/checkpoints/last.safetensors`.
        parallel: rank and world size under DDP.
        on_epoch_end: called with each epoch's record; raising StopTraining from it ends
            training after that epoch, saved and summarised like an early stop.

    Raises:
        TrainingDiverged: the loss became NaN/inf or the gradient norm exploded.
    """
    tc = cfg.train
    loop = _set_up(model, data, cfg, parallel)
    past = _start(loop, tc, out, resume, writes=out is not None and parallel.is_main)
    saver = _Saver(out, loop, past, tc) if out is not None and parallel.is_main else None
    early = loop.early
    stopped_early, stop_reason, last_epoch = early.should_stop, None, past.start_epoch - 1
    within = _within_saver(saver, loop)
    for epoch in range(past.start_epoch, loop.epochs + 1) if not stopped_early else ():
        start, past.within = past.within, None
        record = _one_epoch(loop, data, objective, tc, epoch, progress, start, within)
        _keep(record, epoch, loop, past, tc, out if saver else None)
        last_epoch = epoch
        is_last = epoch == loop.epochs or early.should_stop
        if saver is not None and saver.is_due(is_last):
            saver.save(epoch)
        log.info(_epoch_line(record, loop.epochs, early.metric))
        stop_reason = _epoch_end(on_epoch_end, record)
        if stop_reason is not None:
            if saver is not None and not is_last:  # the run ends here: saved as its last epoch
                saver.save(epoch)
            stopped_early = True
            log.info("stopped after epoch %d: %s", epoch, stop_reason)
            break
        if early.should_stop:
            stopped_early = True
            _log_early_stop(early, epoch)
            break
    return TrainResult(
        history=past.records,
        best_epoch=early.best_epoch if tc.early_stopping.restore_best else last_epoch,
        epochs=last_epoch,
        stopped_early=stopped_early,
        wall_s=past.wall_before + time.perf_counter() - past.started,
        restored_best=_restore_best(loop, past, last_epoch),
        stop_reason=stop_reason,
    )


def _within_saver(saver: _Saver | None, loop: Loop) -> SaveWithin | None:
    """Checkpoints inside an epoch, every train.checkpoint_every_s seconds: for a streamed
    table only (an epoch in memory is short, and its order is drawn once at its start)."""
    if saver is None or not saver.tc.checkpoint or not isinstance(loop.batches, StreamBatcher):
        return None

    def save_within(position: Callable[[], Position]) -> None:
        if saver.is_due(False):
            saver.save(None, position())

    return save_within


@dataclass
class _Past:
    """The epochs so far: their records, the best weights (restore_best) and the clock."""

    records: list[dict[str, float]]
    best_state: dict[str, Tensor] | None  # a copy of the best epoch's weights
    start_epoch: int
    wall_before: float  # training seconds before a resume
    within: Position | None = None  # a part-done epoch to finish first (a resume)
    started: float = field(default_factory=time.perf_counter)


def _set_up(model: nn.Module, data: Dataset, cfg: Config, parallel: Parallel) -> Loop:
    """Move the model to its device and build the batches, optimizer and schedule."""
    tc = cfg.train
    device = resolve_device(tc.device)
    memory_format = _memory_format(model, data, tc)
    model.to(device)
    if memory_format is not None:
        model.to(memory_format=memory_format)  # type: ignore[call-overload]
    forward: nn.Module = model
    ddp = None
    if parallel.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(model)
        forward = ddp
    if tc.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    amp = autocast_for(tc, device)
    bf16 = _bf16_weights(model, tc, parallel)
    if bf16 is not None:
        forward = bf16.forward
    order = torch.Generator().manual_seed(cfg.seed)
    noise = torch.Generator().manual_seed(cfg.seed + 1 + parallel.rank)
    batches = _batches(data, cfg, device, order, noise, parallel)
    opt = make_optimizer(model, tc.optimizer)
    steps = max(1, math.ceil(len(batches) / tc.accumulate))
    epochs = resolved_epochs(tc, steps)
    if tc.epochs is None:
        log.info(epochs_reason(tc, steps))
    return Loop(
        model=model,
        forward=forward,
        ddp=ddp,
        device=device,
        memory_format=memory_format,
        amp=amp,
        settings=EvalSettings(tc.eval_batch_size, device, amp, memory_format),
        batches=batches,
        opt=opt,
        sched=Schedule(tc.schedule, tc.optimizer.lr, steps, steps * epochs),
        early=EarlyStopping.from_config(tc.early_stopping),
        epochs=epochs,
        order=order,
        noise=noise,
        penalty=_penalty(model, tc),
        bf16=bf16,
    )


def _batches(
    data: Dataset,
    cfg: Config,
    device: torch.device,
    order: torch.Generator,
    noise: torch.Generator,
    parallel: Parallel,
) -> Batcher | StreamBatcher:
    """The training batches: slices of the tensors in memory, or a streamed table's rows."""
    augment = make_augment(cfg.data.augment, data.schema.kind)
    rank, world = parallel.rank, parallel.world_size
    if data.stream is not None:
        bs = cfg.train.batch_size
        return StreamBatcher(data.stream, bs, cfg.seed, device, augment, noise, rank, world)
    train_split = data.train
    if device.type != "cpu":
        train_split = type(train_split)(train_split.x.to(device), train_split.y.to(device))
    return Batcher(train_split, cfg.train.batch_size, True, order, augment, noise, rank, world)


def _start(loop: Loop, tc: TrainConfig, out: Path | None, resume: bool, writes: bool) -> _Past:
    """The state to start from: the checkpoint's (resume), or nothing (metrics.jsonl is
    emptied when this process writes)."""
    if resume:
        assert out is not None
        start_epoch, wall_before, records, best_state, within = restore_checkpoint(
            out, loop.model, loop.opt, loop.sched, loop.early, loop.order, loop.noise
        )
        keep_best = tc.early_stopping.restore_best
        best = (best_state or _copy_state(loop.model)) if keep_best else None
        at = Position.from_dict(within)
        if at is not None:
            log.info(
                "resumed in epoch %d of %d after batch %d of %d",
                at.epoch,
                loop.epochs,
                at.batches,
                len(loop.batches),
            )
        else:
            log.info("resumed from epoch %d of %d", start_epoch - 1, loop.epochs)
        return _Past(records, best, start_epoch, wall_before, at)
    if writes:
        assert out is not None
        (out / "metrics.jsonl").write_text("")
    return _Past([], None, 1, 0.0)


def _one_epoch(
    loop: Loop,
    data: Dataset,
    objective: Objective,
    tc: TrainConfig,
    epoch: int,
    progress: ProgressFn | None,
    start: Position | None = None,
    save_within: SaveWithin | None = None,
) -> dict[str, float]:
    """Train one epoch (or the rest of one, from `start`) and validate: the epoch's record
    (metrics.jsonl's line)."""
    t0 = time.perf_counter()
    if tc.unfreeze_epoch is not None and epoch >= tc.unfreeze_epoch and tc.freeze:
        unfreeze(loop.model)
        if epoch == tc.unfreeze_epoch:
            log.info("epoch %d: unfroze %s", epoch, ", ".join(tc.freeze))
    start = start or Position(epoch)
    loop.batches.begin(epoch, start.batches)
    train_loss, max_norm, grad_norms = train_epoch(
        loop, objective, tc, _bind(progress, epoch), start, save_within
    )
    check_divergence(train_loss, max_norm, epoch, loop.sched, tc)
    val = objective.metrics(loop.model, data.val, loop.settings)
    record: dict[str, float] = {
        "epoch": epoch,
        "lr": loop.sched.lr(max(loop.sched.step - 1, 0)),
        "train.loss": train_loss,
        **{f"val.{k}": v for k, v in val.items()},
    }
    if tc.diagnostics:
        record.update(grad_norms)
        probe = data.val.x[:256].to(loop.device)
        if loop.memory_format is not None:
            probe = probe.contiguous(memory_format=loop.memory_format)
        with loop.amp():
            record.update(dead_relu_fraction(loop.model, probe))
    record.update(expert_shares(loop.model))
    record["epoch_s"] = time.perf_counter() - t0
    return record


def _keep(
    record: dict[str, float],
    epoch: int,
    loop: Loop,
    past: _Past,
    tc: TrainConfig,
    out: Path | None,
) -> None:
    """Add the epoch to the history (and to metrics.jsonl when `out` is given), let early
    stopping and the schedule see it, and copy the weights when it is the best so far."""
    past.records.append(record)
    if loop.early.update(record, epoch) and tc.early_stopping.restore_best:
        past.best_state = _copy_state(loop.model)
    loop.sched.epoch_end(record.get(loop.early.metric), loop.early.minimize)
    if out is not None:
        with (out / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")


class _Saver:
    """Writes the weights and the checkpoint of a run directory (rank 0), and says when they
    are due: after the last epoch, and every `train.checkpoint_every_s` seconds."""

    def __init__(self, out: Path, loop: Loop, past: _Past, tc: TrainConfig) -> None:
        self.out, self.loop, self.past, self.tc = out, loop, past, tc
        self.saved_at = past.started
        self.weights_epoch = -1  # the best epoch whose weights model.safetensors holds

    def is_due(self, is_last: bool) -> bool:
        return is_last or time.perf_counter() - self.saved_at >= self.tc.checkpoint_every_s

    def save(self, epoch: int | None, within: Position | None = None) -> None:
        """model.safetensors holds the weights the run would end with now: the best epoch's
        (restore_best; written again only when a new epoch is best) or the latest; then the
        checkpoint (`within`: inside an epoch, at that position; `epoch` is then None)."""
        loop, past, early = self.loop, self.past, self.loop.early
        if past.best_state is None or self.weights_epoch != early.best_epoch:
            weights = loop.model.state_dict() if past.best_state is None else past.best_state
            save_tensors(self.out / "model.safetensors", weights)
            self.weights_epoch = early.best_epoch
        if self.tc.checkpoint:
            best_apart = past.best_state if epoch is None or early.best_epoch != epoch else None
            wall_s = past.wall_before + time.perf_counter() - past.started
            save_checkpoint(
                self.out,
                loop.model,
                best_apart,
                loop.opt,
                loop.sched,
                early,
                loop.order,
                loop.noise,
                past.records,
                wall_s,
                within.to_dict() if within is not None else None,
            )
        self.saved_at = time.perf_counter()


def _log_early_stop(early: EarlyStopping, epoch: int) -> None:
    log.info(
        "early stopping after epoch %d: %s has not improved for %d epochs (best %.4g at epoch %d)",
        epoch,
        early.metric,
        early.bad_epochs,
        early.best_value,
        early.best_epoch,
    )


def _restore_best(loop: Loop, past: _Past, last_epoch: int) -> bool:
    """Load the best epoch's weights when training ended on another; whether it did."""
    early = loop.early
    if past.best_state is None or early.best_epoch == last_epoch:
        return False
    loop.model.load_state_dict(past.best_state)
    log.info(
        "restored the weights of epoch %d, the best by %s (%.4g); set "
        "train.early_stopping.restore_best: false to keep the last epoch's",
        early.best_epoch,
        early.metric,
        early.best_value,
    )
    return True


def _epoch_end(
    on_epoch_end: Callable[[dict[str, float]], None] | None, record: dict[str, float]
) -> str | None:
    """Call the epoch callback; the reason it gives when it raises StopTraining, else None."""
    if on_epoch_end is None:
        return None
    try:
        on_epoch_end(record)
    except StopTraining as stop:
        return str(stop) or "stopped by the epoch callback"
    return None


def _bf16_weights(model: nn.Module, tc: TrainConfig, parallel: Parallel) -> Bf16Weights | None:
    """bf16 copies of the weights beside the fp32 ones (train.precision: bf16), where they
    apply: one process, no torch.compile, and a model without batch norm or recurrent layers;
    elsewhere bf16 autocast alone."""
    if tc.precision != "bf16" or tc.compile or parallel.world_size > 1:
        return None
    return Bf16Weights(model) if takes_bf16_weights(model) else None


def _penalty(model: nn.Module, tc: TrainConfig) -> Callable[[], Tensor] | None:
    """L1/L2 penalties on the weights (not biases or norm scales), added to the loss."""
    if tc.l1 == 0 and tc.l2 == 0:
        return None
    weights, _ = decay_groups(model)

    def penalty() -> Tensor:
        total = torch.zeros((), device=weights[0].device)
        if tc.l1:
            total = total + tc.l1 * sum(w.abs().sum() for w in weights)
        if tc.l2:
            total = total + tc.l2 * sum(w.pow(2).sum() for w in weights)
        return total

    return penalty


def _memory_format(model: nn.Module, data: Dataset, tc: TrainConfig) -> torch.memory_format | None:
    is_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if tc.channels_last and is_conv and data.schema.kind == "image":
        return torch.channels_last
    return None


def _copy_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bind(progress: ProgressFn | None, epoch: int) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(epoch, done, total)


def _epoch_line(record: dict[str, float], epochs: int, metric: str) -> str:
    keys = ["train.loss", "val.loss", "val.accuracy", "val.rmse", "val.perplexity", metric]
    shown = dict.fromkeys(k for k in keys if k in record)
    parts = [f"{k} {record[k]:.4g}" for k in shown]
    return (
        f"epoch {int(record['epoch'])}/{epochs}  "
        + "  ".join(parts)
        + f"  lr {record['lr']:.2e}  ({record['epoch_s']:.2f} s)"
    )
