"""burstjdd: joint denoising and demosaicking of raw bursts with large shifts.

Implements the two-stage alignment method of Guo et al., "A Differentiable Two-stage Alignment
Scheme for Burst Image Reconstruction with Large Shift", CVPR 2022.

The public names below are imported on first use, so ``import burstjdd`` (and the command line's
``--help``) do not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

from burstjdd._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "RawBurst": "burstjdd.raw.burst",
    "read_burst": "burstjdd.raw.io",
    "write_npz": "burstjdd.raw.npz",
    "write_image": "burstjdd.raw.writers",
    "render_srgb": "burstjdd.raw.writers",
    "NoiseLevel": "burstjdd.raw.noise",
    "estimate_noise": "burstjdd.raw.noise",
    "simulate_burst": "burstjdd.synth.burst",
    "build_model": "burstjdd.models.jddb",
    "Restorer": "burstjdd.restore",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'burstjdd' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
