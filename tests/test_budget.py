"""Time-budgeted training (burstjdd.train.budget), device synthesis and the speed switches in
the training loop."""

from __future__ import annotations

import copy
import csv
import math
import time

import pytest
import torch

from burstjdd.errors import ConfigError
from burstjdd.models.jddb import build_model
from burstjdd.train.accel import apply_speed_switches
from burstjdd.train.budget import TimeBudget, check_budget, steps_that_fit
from burstjdd.train.checkpoint import export_run, load_checkpoint, read_run_info
from burstjdd.train.config import RunSection, TrainConfig, apply_overrides, load_config
from burstjdd.train.schedule import CosineRestartScheduler, lr_at

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _scheduler(total: int = 1000) -> CosineRestartScheduler:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    return CosineRestartScheduler(opt, total)


def _budget_cfg(**run) -> TrainConfig:
    return apply_overrides(TrainConfig(), ["schedule.total_steps=100000"] +
                           [f"run.{k}={v}" for k, v in run.items()])


def test_steps_that_fit():
    assert steps_that_fit(100.0, 0.5, evals=2, eval_s=10.0) == 160
    assert steps_that_fit(5.0, 0.5, evals=2, eval_s=10.0) == 0
    with pytest.raises(ConfigError):
        steps_that_fit(1.0, 0.0, evals=0, eval_s=0.0)


def test_fix_lays_the_schedule_over_the_steps_that_fit():
    clock = FakeClock()
    cfg = _budget_cfg(time_budget_s=100, budget_probe_steps=4, budget_validations=3)
    budget = TimeBudget.from_config(cfg, clock.t, clock=clock, eval_s=2.0)
    budget.mark()
    for dt in (5.0, 3.0, 0.5, 0.5, 0.7, 0.5):  # two slow warm-up steps, then ~0.5 s
        assert not budget.ready()
        clock.t += dt
        budget.tick()
    assert budget.ready() and budget.measured_step_s() == 0.5
    sched = _scheduler()
    fixed = budget.fix(cfg, 6, sched)
    # 100 s − 10.2 s elapsed − 4 s margin − 4 rounds × 2 s = 77.8 s → 155 more steps
    assert fixed.schedule.total_steps == 6 + 155 == budget.total
    assert fixed.run.time_budget_s is None
    assert fixed.run.val_every == fixed.run.checkpoint_every == math.ceil(161 / 4)
    assert sched.total_steps == 161
    assert "total_steps fixed to 161" in budget.describe(6)
    assert not budget.out_of_time()
    clock.t += 80.0  # 90.2 s in: one more step (0.5), the final round (2) and the margin (4) fit
    assert not budget.out_of_time()
    clock.t += 5.0  # 95.2 s in: they do not
    assert budget.out_of_time()


def test_fix_respects_the_cap_and_never_goes_back():
    clock = FakeClock()
    cfg = apply_overrides(_budget_cfg(time_budget_s=1000), ["schedule.total_steps=50"])
    budget = TimeBudget.from_config(cfg, clock.t, clock=clock, warmup=0)
    budget.mark()
    for _ in range(8):
        clock.t += 0.01
        budget.tick()
    assert budget.fix(cfg, 8, _scheduler()).schedule.total_steps == 50
    late = TimeBudget(10.0, clock.t - 9.5, 1, clock=clock, warmup=0)
    late.mark()
    clock.t += 0.2
    late.tick()
    assert late.out_of_time()
    assert late.fix(cfg, 12, _scheduler()).schedule.total_steps == 12


def test_retime_keeps_the_position():
    sched = _scheduler(1000)
    for _ in range(7):
        sched.step()
    sched.retime(120)
    assert sched.next_step == 7 and sched.total_steps == 120
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(7, 120, 1e-3))


def test_budget_needs_one_process_and_a_positive_value():
    check_budget(_budget_cfg(time_budget_s=60), 1)
    with pytest.raises(ConfigError, match="single process"):
        check_budget(_budget_cfg(time_budget_s=60), 2)
    with pytest.raises(ConfigError, match="run.time_budget_s"):
        _budget_cfg(time_budget_s=0)


# ------------------------------------------------------------------ in the training loop


def test_a_budgeted_run_stops_inside_its_budget(stills, tmp_path):
    from test_train_loop import quiet_train, tiny_config

    budget = 9.0
    cfg = tiny_config(stills, total_steps=100000, run={
        "time_budget_s": budget, "budget_probe_steps": 3, "log_every": 1})
    t0 = time.perf_counter()
    result = quiet_train(cfg, tmp_path / "run")
    elapsed = time.perf_counter() - t0
    assert elapsed <= budget + 0.5  # + pytest's own call overhead
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.run.time_budget_s is None
    total = saved.schedule.total_steps
    # the fixed length; the guard may stop a few steps early when steps turn slower
    assert 5 <= result.step <= total
    info = read_run_info(tmp_path / "run")
    assert info["time_budget"]["total_steps"] == total
    fixed_at = 2 + 3  # warm-up + probe steps
    with open(tmp_path / "run" / "scalars.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["lr_g"]]
    assert len(rows) == result.step
    for r in rows[fixed_at:]:  # the lr of update s-1, on the schedule of the fixed length
        want = lr_at(int(r["step"]) - 1, total, cfg.optim.lr_g)
        assert float(r["lr_g"]) == pytest.approx(want, rel=1e-6)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt.scheduler["total_steps"] == total and ckpt.step == result.step
    export_run(tmp_path / "run", tmp_path / "w")


def test_device_synthesis_and_channels_last_train(stills, tmp_path):
    from test_train_loop import quiet_train, read_scalars, tiny_config

    cfg = tiny_config(stills, total_steps=3, run={"synthesis": "device", "channels_last": True})
    result = quiet_train(cfg, tmp_path / "run")
    assert result.step == 3
    rows = read_scalars(tmp_path / "run")
    assert all(math.isfinite(float(r["total"])) for r in rows if r["total"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "device synthesis" in log and "frames cached on cpu" in log


def test_channels_last_computes_the_same_function():
    model = build_model("compact", seed=0, nf=8, deformable_groups=2, extract_blocks=1,
                        dsnet_width=4)
    fast = apply_speed_switches(copy.deepcopy(model), RunSection(channels_last=True))
    assert fast.feature_extract.simple_block[0].weight.is_contiguous(
        memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 32, 32, generator=g)
    noise = 0.05 * torch.rand(2, 3, 4, 32, 32, generator=g)
    kwargs = {"origins": torch.tensor([[8, 8], [4, 8]]), "size": 16, "search_radius": 8,
              "temperature": 0.01, "interp": True}
    a, b = model(x, noise, 1, **kwargs), fast(x, noise, 1, **kwargs)
    assert torch.allclose(a.image, b.image, atol=1e-5)
    assert torch.allclose(a.interp, b.interp, atol=1e-5)
    assert apply_speed_switches(model, RunSection()) is model
