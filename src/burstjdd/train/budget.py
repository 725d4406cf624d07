"""Time-budgeted training (``run.time_budget_s``): fit the whole schedule into a wall-clock budget.

A lent GPU comes for minutes, not for a number of steps. With a budget, ``schedule.total_steps``
is only a cap. The run starts as usual (the first updates of any schedule are alike: the first
cosine cycle at its base lr, the first DPBM temperature, L_BM on), times its steps, and after
``warmup`` untimed steps (worker start-up, cuDNN autotuning, compilation) and
``run.budget_probe_steps`` timed ones fixes

    total_steps = done + (remaining − reserve) / (median seconds per step)

where ``remaining`` is what is left of the budget, counted from the start of ``train`` (data
set-up, model, the step-0 validation included) and ``reserve`` pays for the validations and
checkpoints still to come (the step-0 validation is timed; a checkpoint is estimated from the
model size) and a safety margin. The learning-rate restarts, the temperature switch and the L_BM
window are then laid over that many steps (:meth:`~burstjdd.train.schedule.
CosineRestartScheduler.retime`), the run's config.yaml records the fixed schedule (so a resume
or an export sees an ordinary run), and a guard stops the run cleanly (final validation and
checkpoint) should the steps turn slower than measured. Single process only.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from burstjdd.errors import ConfigError
from burstjdd.train.config import TrainConfig
from burstjdd.train.schedule import CosineRestartScheduler

__all__ = ["TimeBudget", "check_budget", "checkpoint_seconds", "steps_that_fit"]

WARMUP_STEPS = 2  # untimed: DataLoader start-up, cuDNN autotuning, compilation
SAFETY = 0.04  # fraction of the budget kept free of planned work
MIN_MARGIN_S = 1.0  # seconds kept free at least


def check_budget(cfg: TrainConfig, world_size: int) -> None:
    """ConfigError when ``run.time_budget_s`` is set for a multi-process run (each process would
    time its own steps and fix another length)."""
    if cfg.run.time_budget_s is not None and world_size > 1:
        raise ConfigError("run.time_budget_s needs a single process (got "
                          f"{world_size}); give schedule.total_steps instead")


def checkpoint_seconds(model: torch.nn.Module) -> float:
    """Rough seconds of one checkpoint write: weights and two Adam moments in float32 at
    100 MB/s, plus 0.2 s."""
    n = sum(p.numel() for p in model.parameters())
    return 0.2 + 3 * 4 * n / 100e6


def steps_that_fit(remaining_s: float, step_s: float, *, evals: int, eval_s: float) -> int:
    """How many more steps of ``step_s`` seconds fit in ``remaining_s`` when ``evals``
    validation + checkpoint rounds of ``eval_s`` seconds each must fit too (>= 0)."""
    if step_s <= 0:
        raise ConfigError(f"step time must be > 0 s, got {step_s}")
    return max(int((remaining_s - evals * eval_s) // step_s), 0)


@dataclass
class TimeBudget:
    """The clock of one budgeted ``train`` call (see the module docstring).

    ``budget_s``: wall-clock seconds from ``start`` (a ``clock()`` reading at the start of
    ``train``); ``probe_steps``: timed steps before the length is fixed; ``validations``:
    ``run.budget_validations``; ``eval_s``: seconds of one validation plus its checkpoints
    (set by the loop once the step-0 validation was timed). Call :meth:`tick` after every
    update; :meth:`ready` says when to :meth:`fix`; :meth:`out_of_time` guards every step.
    """

    budget_s: float
    start: float
    probe_steps: int
    validations: int = 0
    eval_s: float = 0.0
    warmup: int = WARMUP_STEPS
    clock: Callable[[], float] = time.perf_counter
    step_s: float | None = None
    total: int | None = None
    intervals: list[float] = field(default_factory=list)
    _last: float | None = None

    @classmethod
    def from_config(cls, cfg: TrainConfig, start: float, **kwargs: object) -> TimeBudget | None:
        """The budget of ``cfg.run`` (None without ``time_budget_s``)."""
        run = cfg.run
        if run.time_budget_s is None:
            return None
        return cls(run.time_budget_s, start, run.budget_probe_steps, run.budget_validations,
                   **kwargs)

    def elapsed(self) -> float:
        return self.clock() - self.start

    def mark(self) -> None:
        """Start timing the next step here (before the first update: the loop's start)."""
        self._last = self.clock()

    def tick(self) -> None:
        """Record the seconds since the previous tick (or :meth:`mark`): one update, data
        waiting and logging included."""
        now = self.clock()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now

    def ready(self) -> bool:
        """Enough steps timed to fix the length (and not fixed yet)."""
        return self.total is None and len(self.intervals) >= self.warmup + self.probe_steps

    def measured_step_s(self) -> float | None:
        """Median seconds per step over the timed steps (the warm-up ones when nothing else
        is there yet); None before the first tick."""
        timed = self.intervals[self.warmup:] or self.intervals
        return statistics.median(timed) if timed else None

    def margin(self) -> float:
        return max(SAFETY * self.budget_s, MIN_MARGIN_S)

    def out_of_time(self) -> bool:
        """Whether one more step, then the final validation and checkpoint, would overrun."""
        step = self.measured_step_s() or 0.0
        return self.elapsed() + step + self.eval_s + self.margin() > self.budget_s

    def fix(self, cfg: TrainConfig, done: int, scheduler: CosineRestartScheduler) -> TrainConfig:
        """Fix the run's length from the steps timed so far: total_steps = ``done`` + what
        fits (at least ``done``, at most the configured cap); retime ``scheduler``; return the
        config of the fixed run (total_steps set, time_budget_s null, and with
        ``budget_validations`` > 0 val_every = checkpoint_every = total / (validations + 1))."""
        step = self.measured_step_s()
        if step is None:
            raise ConfigError("no step was timed yet: cannot fix the run length")
        self.step_s = step
        cap = cfg.schedule.total_steps
        remaining = self.budget_s - self.elapsed() - self.margin()
        every = cfg.run.val_every
        if self.validations:
            evals = self.validations + 1  # spaced rounds, then the final one
        else:
            evals = 1  # the final one, plus those the step cadence reaches (first guess)
        more = steps_that_fit(remaining, step, evals=evals, eval_s=self.eval_s)
        if not self.validations:  # the cadence adds a round every `every` steps
            rounds = (done + more) // every - done // every
            more = steps_that_fit(remaining, step, evals=1 + rounds, eval_s=self.eval_s)
        total = min(max(done + more, max(done, 1)), cap)
        self.total = total
        run = dataclasses.replace(cfg.run, time_budget_s=None)
        if self.validations:
            every = max(math.ceil(total / (self.validations + 1)), 1)
            run = dataclasses.replace(run, val_every=every, checkpoint_every=every)
        schedule = dataclasses.replace(cfg.schedule, total_steps=total)
        scheduler.retime(total)
        return dataclasses.replace(cfg, schedule=schedule, run=run)

    def describe(self, done: int) -> str:
        """One log line about the fixed length."""
        timed = len(self.intervals[self.warmup:])
        return (f"time budget {self.budget_s:.0f} s: {self.step_s:.3f} s/step (median of "
                f"{timed} timed steps after {self.warmup} warm-up), validation + checkpoints "
                f"{self.eval_s:.1f} s each; total_steps fixed to {self.total} at step {done}, "
                f"{self.elapsed():.1f} s in")

    def record(self) -> dict[str, float | int | None]:
        """The budget's figures for run.json."""
        return {"budget_s": self.budget_s, "step_s": self.step_s, "total_steps": self.total,
                "probe_steps": self.probe_steps, "warmup_steps": self.warmup,
                "eval_s": self.eval_s, "fixed_at_s": self.elapsed()}
