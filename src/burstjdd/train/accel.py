"""Speed switches of a training run (``run.channels_last``, ``run.compile``): off by default,
since they pay on some devices only (measure first: ``benchmarks/train_speed.py``,
``benchmarks/gpu_leg.sh``)."""

from __future__ import annotations

import torch

from burstjdd.models.jddb import TwoStageJDDB
from burstjdd.train.config import RunSection

__all__ = ["apply_speed_switches"]


def apply_speed_switches(model: TwoStageJDDB, run: RunSection) -> TwoStageJDDB:
    """``model`` (changed in place) with the switches of ``run``: ``channels_last`` stores the
    4-D weights NHWC, so the convolutions run in that memory format (cuDNN's tensor-core
    layout); ``compile`` replaces ``model.reconstruct`` (features, refined alignment, fusion,
    decoder: the static-shape part; the coarse alignment's data-dependent matching stays eager)
    by its ``torch.compile`` version. The state dict is unchanged either way."""
    if run.channels_last:
        model.to(memory_format=torch.channels_last)
    if run.compile:
        model.reconstruct = torch.compile(model.reconstruct)  # instance attribute: the method
    return model
