from __future__ import annotations

import math

import pytest
import torch

from burstjdd.errors import ConfigError
from burstjdd.train.schedule import (
    CosineRestartScheduler,
    bm_loss_active,
    cycle_bounds,
    lr_at,
    milestone_step,
    temperature_at,
)

TOTAL = 600_000
ETA_MIN = 1e-7
OFFICIAL_BOUNDS = (0, 50_000, 150_000, 300_000, 450_000, 600_000)


def test_cycle_bounds_are_the_official_restarts() -> None:
    assert cycle_bounds(TOTAL) == OFFICIAL_BOUNDS
    assert cycle_bounds(1200) == (0, 100, 300, 600, 900, 1200)
    assert cycle_bounds(10, (0.5, 0.5)) == (0, 5, 10)


@pytest.mark.parametrize("base", [1e-4, 1e-5])  # G and DSNet
def test_lr_restarts_to_base_and_anneals_to_eta_min(base: float) -> None:
    for start, end in zip(OFFICIAL_BOUNDS[:-1], OFFICIAL_BOUNDS[1:]):
        period = end - start
        assert lr_at(start, TOTAL, base) == base  # warm restart: back to the initial lr
        assert lr_at(start + period // 2, TOTAL, base) == pytest.approx((base + ETA_MIN) / 2)
        # last step of the cycle: eta_min + (base − eta_min)(1 − cos(π/T))/2, i.e. sin²(π/2T)
        last = lr_at(end - 1, TOTAL, base)
        assert last - ETA_MIN == pytest.approx(
            (base - ETA_MIN) * math.sin(math.pi / (2 * period)) ** 2, rel=1e-6)
        steps = range(start, end, period // 10)
        lrs = [lr_at(s, TOTAL, base) for s in steps]
        assert all(a > b for a, b in zip(lrs, lrs[1:]))  # decreasing inside a cycle
    assert lr_at(TOTAL, TOTAL, base) == ETA_MIN  # the end of the run
    assert lr_at(TOTAL + 5, TOTAL, base) == ETA_MIN


def test_lr_schedule_scales_with_the_run_length() -> None:
    for frac in (0.0, 0.05, 0.1, 0.3, 0.55, 0.9):
        assert lr_at(round(frac * 1200), 1200, 1e-4) == pytest.approx(
            lr_at(round(frac * TOTAL), TOTAL, 1e-4))


def test_bad_schedules_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        cycle_bounds(100, (0.5, 0.4))
    with pytest.raises(ConfigError, match="> 0"):
        cycle_bounds(100, (1.5, -0.5))
    with pytest.raises(ConfigError, match="total_steps"):
        lr_at(0, 0, 1e-4)
    with pytest.raises(ConfigError, match="step"):
        lr_at(-1, 100, 1e-4)
    with pytest.raises(ConfigError, match="fraction"):
        milestone_step(100, 1.5)


def test_temperature_and_bm_milestones() -> None:
    assert temperature_at(0, TOTAL) == 1e-2
    assert temperature_at(299_999, TOTAL) == 1e-2
    assert temperature_at(300_000, TOTAL) == 1e-3  # step change at 1/2
    assert temperature_at(TOTAL, TOTAL) == 1e-3
    assert temperature_at(49, 100, switch_at=0.5) == 1e-2
    assert temperature_at(25, 100, temperatures=(1.0, 0.5), switch_at=0.25) == 0.5
    assert bm_loss_active(0, TOTAL) and bm_loss_active(199_999, TOTAL)
    assert not bm_loss_active(200_000, TOTAL)  # off from 1/3
    assert not bm_loss_active(10, 100, until=0.1) and bm_loss_active(9, 100, until=0.1)


def _optimizer() -> torch.optim.Optimizer:
    g, ds = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.Adam([{"params": [g], "lr": 1e-4}, {"params": [ds], "lr": 1e-5}],
                            betas=(0.9, 0.99))


def test_scheduler_sets_each_group_from_its_base_lr() -> None:
    opt = _optimizer()
    sched = CosineRestartScheduler(opt, 120)  # cycles (0, 10, 30, 60, 90, 120)
    seen = []
    for step in range(125):
        assert sched.next_step == step
        seen.append([g["lr"] for g in opt.param_groups])
        assert seen[-1] == [lr_at(step, 120, 1e-4), lr_at(step, 120, 1e-5)]
        sched.step()
    for restart in (0, 10, 30, 60, 90):
        assert seen[restart] == [1e-4, 1e-5]


def test_scheduler_resume_is_exact() -> None:
    opt = _optimizer()
    sched = CosineRestartScheduler(opt, 120)
    for _ in range(37):
        sched.step()
    state = sched.state_dict()
    opt2 = _optimizer()
    resumed = CosineRestartScheduler(opt2, 5)  # a different schedule: the state replaces it
    resumed.load_state_dict(state)
    for _ in range(60):
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
        sched.step()
        resumed.step()
    with pytest.raises(ConfigError, match="malformed"):
        resumed.load_state_dict({"last_step": 3})
    with pytest.raises(ConfigError, match="parameter groups"):
        CosineRestartScheduler(opt, 120, base_lrs=[1e-4])
