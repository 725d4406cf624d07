"""burstjdd: joint denoising and demosaicking of raw bursts with large shifts.

Implements the two-stage alignment method of Guo et al., "A Differentiable Two-stage Alignment
Scheme for Burst Image Reconstruction with Large Shift", CVPR 2022.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
