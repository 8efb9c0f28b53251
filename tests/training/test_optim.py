import math

import pytest
import torch

from gradwise.config import OptimizerConfig, ScheduleConfig
from gradwise.training.optim import Schedule, decay_groups, make_optimizer


def _lrs(cfg: ScheduleConfig, steps_per_epoch=10, epochs=10) -> list[float]:
    s = Schedule(cfg, 1.0, steps_per_epoch, steps_per_epoch * epochs)
    return [s.lr(i) for i in range(steps_per_epoch * epochs)]


def test_linear_warmup_then_cosine_to_the_floor():
    lrs = _lrs(ScheduleConfig(name="cosine", warmup_steps=10, min_lr=0.1))
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_step_and_exponential_decay_per_epoch():
    step = _lrs(ScheduleConfig(name="step", step_size=3, gamma=0.5))
    assert step[29] == 1.0 and step[30] == 0.5 and step[60] == 0.25
    expo = _lrs(ScheduleConfig(name="exponential", gamma=0.9))
    assert expo[20] == pytest.approx(0.81)


def test_one_cycle_rises_to_the_peak_then_falls_far_below():
    lrs = _lrs(ScheduleConfig(name="onecycle", pct_start=0.3))
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert peak == pytest.approx(30, abs=1)
    assert lrs[0] == pytest.approx(1 / 25, rel=0.05)
    assert lrs[-1] < 1e-3


def test_one_cycle_matches_torch():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=1.0,
        total_steps=100,
        pct_start=0.3,
        anneal_strategy="cos",
        cycle_momentum=False,
        three_phase=False,
    )
    theirs = []
    for _ in range(100):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    ours = _lrs(ScheduleConfig(name="onecycle", pct_start=0.3))
    # torch's phases end at step pct*total - 1 and total - 1; ours at pct*total and total
    assert ours[0] == pytest.approx(theirs[0])
    assert max(ours) == pytest.approx(max(theirs))
    assert ours[50] == pytest.approx(theirs[50], rel=0.05)


def test_plateau_decays_after_patience_epochs_without_improvement():
    s = Schedule(ScheduleConfig(name="plateau", patience=1, factor=0.5), 1.0, 10, 100)
    for value in [1.0, 0.9, 0.95, 0.95]:
        s.epoch_end(value, lower_is_better=True)
    assert s.lr() == 0.5
    restored = Schedule(ScheduleConfig(name="plateau", patience=1, factor=0.5), 1.0, 10, 100)
    restored.load_state_dict(s.state_dict())
    assert restored.lr() == 0.5 and restored.plateau_best == s.plateau_best


def test_weight_decay_spares_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    decay, no_decay = decay_groups(model)
    assert [p.shape for p in decay] == [torch.Size([4, 3]), torch.Size([2, 4])]
    assert len(no_decay) == 4
    opt = make_optimizer(model, OptimizerConfig(name="adamw", weight_decay=0.1))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_sgd_momentum_defaults_and_rmsprop_without_momentum():
    model = torch.nn.Linear(2, 2)
    assert make_optimizer(model, OptimizerConfig(name="sgd")).defaults["momentum"] == 0.9
    assert make_optimizer(model, OptimizerConfig(name="rmsprop")).defaults["momentum"] == 0.0
    assert math.isclose(
        make_optimizer(model, OptimizerConfig(name="adam", lr=0.5)).defaults["lr"], 0.5
    )
