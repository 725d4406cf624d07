"""Training schedule: learning rate, DPBM temperature and the L_BM switch (docs/method.md §6).

Everything is a fraction of the run, so the one knob most users change (the number of steps)
scales the whole schedule. The official run (docs/official-network.md §7) is 600k steps:

* cosine annealing with warm restarts, cycles of [1/12, 1/6, 1/4, 1/4, 1/4] of the run
  (50k, 100k, 150k, 150k, 150k): restarts at 50k, 150k, 300k, 450k, each back to the initial lr,
  annealing towards eta_min = 1e-7; G starts at 1e-4, the DSNet at 1e-5 (one scheduler per
  optimiser, or one over both parameter groups: each group keeps its own base lr);
* the softmax temperature of the coarse alignment steps from 1e-2 to 1e-3 at 1/2 of the run;
* L_BM is on during the first third of the run.

``step`` is 0-based: the number of optimiser updates already done, i.e. the update about to be
made. Restarts happen AT a cycle boundary: ``lr_at(boundary) == base_lr``.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch

from burstjdd.errors import ConfigError

RESTART_PERIODS = (1 / 12, 1 / 6, 1 / 4, 1 / 4, 1 / 4)
ETA_MIN = 1e-7
TEMPERATURES = (1e-2, 1e-3)
TEMPERATURE_SWITCH = 1 / 2
BM_LOSS_UNTIL = 1 / 3


def check_fraction(value: float, what: str) -> float:
    """value as a float in [0, 1], else ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{what} must be a fraction of the run in [0, 1], got {value!r}")
    return float(value)


def _check_total(total_steps: int) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"total_steps must be an integer >= 1, got {total_steps!r}")


def milestone_step(total_steps: int, fraction: float) -> int:
    """The step at ``fraction`` of a run of ``total_steps`` (rounded to the nearest step)."""
    _check_total(total_steps)
    return round(total_steps * check_fraction(fraction, "milestone"))


def cycle_bounds(total_steps: int, periods: tuple[float, ...] = RESTART_PERIODS) -> tuple[int, ...]:
    """Cycle boundaries in steps: (0, end of cycle 1, ..., total_steps), len(periods) + 1 values.

    ``periods`` are the cycle lengths as fractions of the run; they must be > 0 and sum to 1.
    Boundaries are rounded from the cumulative fractions, so they never drift: 600k steps give
    (0, 50k, 150k, 300k, 450k, 600k). A very short run can have empty cycles (skipped).
    """
    _check_total(total_steps)
    if not periods or any(isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0
                          for p in periods):
        raise ConfigError(f"restart periods must be fractions > 0, got {list(periods)!r}")
    if not math.isclose(math.fsum(periods), 1.0, abs_tol=1e-9):
        raise ConfigError(f"restart periods must sum to 1, got {list(periods)!r} "
                          f"(sum {math.fsum(periods):.12g})")
    cum = [round(total_steps * math.fsum(periods[: i + 1])) for i in range(len(periods) - 1)]
    return (0, *cum, total_steps)


def lr_at(step: int, total_steps: int, base_lr: float, *,
          periods: tuple[float, ...] = RESTART_PERIODS, eta_min: float = ETA_MIN) -> float:
    """Learning rate at ``step``: cosine annealing with warm restarts (SGDR, official
    CosineAnnealingLR_Restart with restart weights 1).

    In the cycle [b_i, b_{i+1}) with τ = step − b_i and T = b_{i+1} − b_i:
    lr = eta_min + (base_lr − eta_min)·(1 + cos(π τ / T)) / 2. So lr = base_lr at every restart
    (τ = 0) and tends to eta_min at the end of every cycle; from ``total_steps`` on, lr = eta_min.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"step must be an integer >= 0, got {step!r}")
    bounds = cycle_bounds(total_steps, periods)
    if step >= total_steps:
        return float(eta_min)
    i = bisect.bisect_right(bounds, step) - 1  # last cycle starting at or before step
    tau, period = step - bounds[i], bounds[i + 1] - bounds[i]
    # (1 + cos θ)/2 written as cos²(θ/2): no cancellation near the end of a cycle
    return eta_min + (base_lr - eta_min) * math.cos(math.pi * tau / (2 * period)) ** 2


def temperature_at(step: int, total_steps: int, *, temperatures: tuple[float, float] = TEMPERATURES,
                   switch_at: float = TEMPERATURE_SWITCH) -> float:
    """Softmax temperature T of the coarse alignment (paper Eq. 2): temperatures[0] (1e-2) before
    ``switch_at`` of the run, temperatures[1] (1e-3) from then on: a step change, as the official
    code (docs/official-network.md §3.2)."""
    before = step < milestone_step(total_steps, switch_at)
    return float(temperatures[0] if before else temperatures[1])


def bm_loss_active(step: int, total_steps: int, *, until: float = BM_LOSS_UNTIL) -> bool:
    """Whether L_BM (paper Eq. 6) is on at ``step``: only before ``until`` of the run (1/3)."""
    return step < milestone_step(total_steps, until)


class CosineRestartScheduler:
    """Sets the lr of every parameter group of ``optimizer`` to :func:`lr_at` of its own base lr.

    base lrs: ``base_lrs`` if given (one per group), else each group's lr at construction (so one
    scheduler over a G group at 1e-4 and a DSNet group at 1e-5 keeps both). Construction sets the
    lrs of step ``last_step + 1`` (the next update); call :meth:`step` after each optimiser
    update. ``state_dict`` / ``load_state_dict`` restore the exact position for a resume.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, *,
                 periods: tuple[float, ...] = RESTART_PERIODS, eta_min: float = ETA_MIN,
                 base_lrs: list[float] | None = None, last_step: int = -1) -> None:
        cycle_bounds(total_steps, periods)  # validates
        groups = optimizer.param_groups
        if base_lrs is not None and len(base_lrs) != len(groups):
            raise ConfigError(
                f"scheduler: {len(base_lrs)} base lrs for {len(groups)} parameter groups")
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.periods = tuple(periods)
        self.eta_min = eta_min
        self.base_lrs = [float(g["lr"]) for g in groups] if base_lrs is None else list(base_lrs)
        self.last_step = last_step
        self._apply()

    @property
    def next_step(self) -> int:
        """The step whose lrs are set in the optimiser now (the update about to be made)."""
        return self.last_step + 1

    def lrs(self, step: int | None = None) -> list[float]:
        """Per-group learning rates at ``step`` (default: the next update)."""
        step = self.next_step if step is None else step
        return [lr_at(step, self.total_steps, base, periods=self.periods, eta_min=self.eta_min)
                for base in self.base_lrs]

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.lrs()):
            group["lr"] = lr

    def step(self) -> None:
        """Advance by one update and set the lrs for the next one."""
        self.last_step += 1
        self._apply()

    def retime(self, total_steps: int) -> None:
        """Lay the schedule over ``total_steps`` instead, keeping the position (updates done)
        and the base lrs, and set the lrs of the next update (a time-budgeted run fixes its
        length after a few measured steps: :mod:`burstjdd.train.budget`)."""
        cycle_bounds(total_steps, self.periods)  # validates
        self.total_steps = total_steps
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs),
                "total_steps": self.total_steps, "periods": list(self.periods),
                "eta_min": self.eta_min}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict` (also its schedule) and set the lrs."""
        try:
            total, periods = int(state["total_steps"]), tuple(state["periods"])
            base_lrs, last_step = [float(x) for x in state["base_lrs"]], int(state["last_step"])
            eta_min = float(state["eta_min"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"scheduler state is malformed: {exc!r}") from None
        cycle_bounds(total, periods)
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ConfigError(f"scheduler state has {len(base_lrs)} base lrs for "
                              f"{len(self.optimizer.param_groups)} parameter groups")
        self.total_steps, self.periods, self.eta_min = total, periods, eta_min
        self.base_lrs, self.last_step = base_lrs, last_step
        self._apply()


__all__ = [
    "BM_LOSS_UNTIL", "CosineRestartScheduler", "ETA_MIN", "RESTART_PERIODS", "TEMPERATURES",
    "TEMPERATURE_SWITCH", "bm_loss_active", "check_fraction", "cycle_bounds", "lr_at",
    "milestone_step", "temperature_at",
]
