"""Colour processing as forward/inverse pairs: white balance, CCM, gamma, tone curve.

Images are (..., 3, H, W); gains (..., 3) and matrices (..., 3, 3) broadcast against the
leading dims (NumPy rules, right-aligned). Parameters may be tensors or sequences; they are
cast to the image's dtype and device, so outputs follow the image. Following Brooks et al.,
"Unprocessing Images for Learned Raw Denoising" (CVPR 2019), and the official JDD-B code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from burstjdd.checks import check_shape

_EPS = 1e-8  # floor before fractional powers: keeps gradients finite at 0 (as Brooks et al.)
_IMAGE = ("*", "3", "H", "W")


def _gains_like(gains: Tensor | Sequence[float], rgb: Tensor, what: str) -> Tensor:
    """Gains (..., 3) as (..., 3, 1, 1) in rgb's dtype/device, ready to broadcast."""
    check_shape(rgb, _IMAGE, what=f"{what}: rgb")
    g = torch.as_tensor(gains, dtype=rgb.dtype, device=rgb.device)
    check_shape(g, ("*", "3"), what=f"{what}: gains")
    return g[..., :, None, None]


def _ccm_like(ccm: Tensor | Sequence[Sequence[float]], rgb: Tensor, what: str) -> Tensor:
    check_shape(rgb, _IMAGE, what=f"{what}: rgb")
    m = torch.as_tensor(ccm, dtype=rgb.dtype, device=rgb.device)
    check_shape(m, ("*", "3", "3"), what=f"{what}: ccm")
    return m


def apply_gains(rgb: Tensor, gains: Tensor | Sequence[float]) -> Tensor:
    """White balance and brightening: out_c = gains_c * rgb_c.

    rgb (..., 3, H, W), gains (..., 3) -> (..., 3, H, W).
    """
    return rgb * _gains_like(gains, rgb, "apply_gains")


def invert_gains(rgb: Tensor, gains: Tensor | Sequence[float]) -> Tensor:
    """Exact inverse of :func:`apply_gains`: out_c = rgb_c / gains_c."""
    return rgb / _gains_like(gains, rgb, "invert_gains")


def safe_invert_gains(
    rgb: Tensor, gains: Tensor | Sequence[float], inflection: float = 0.9
) -> Tensor:
    """Brooks et al.'s highlight-preserving inverse of the white-balance gains.

    ``gains`` are the FORWARD gains (e.g. [red, 1, blue] * rgb_gain). With g = 1 / gains,
    gray = channel mean of the pixel and mu = (max(gray - inflection, 0) / (1 - inflection))^2,
    out = rgb * max(mu + (1 - mu) * g, g).

    Where gray <= inflection this is exactly :func:`invert_gains`. Above, the per-channel
    factor blends continuously towards 1, so a white pixel stays white instead of turning into
    a tinted grey that no forward gain could saturate again; these pixels are not inverted
    exactly (they are the "saturated" ones). For forward gains >= 1 the output of a grey ramp
    is continuous and increasing in brightness. rgb (..., 3, H, W), gains (..., 3).
    """
    g = 1.0 / _gains_like(gains, rgb, "safe_invert_gains")  # (..., 3, 1, 1)
    gray = rgb.mean(dim=-3, keepdim=True)  # (..., 1, H, W)
    mu = ((gray - inflection).clamp_min(0.0) / (1.0 - inflection)) ** 2
    return rgb * torch.maximum(mu + (1.0 - mu) * g, g)


def apply_ccm(rgb: Tensor, ccm: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Colour matrix per pixel: out_c = sum_k ccm[c, k] * rgb_k.

    rgb (..., 3, H, W), ccm (..., 3, 3) -> (..., 3, H, W).
    """
    m = _ccm_like(ccm, rgb, "apply_ccm")
    return torch.einsum("...ck,...khw->...chw", m, rgb)


def invert_ccm(rgb: Tensor, ccm: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Inverse of :func:`apply_ccm`: applies ccm^-1 (computed in the image's dtype)."""
    m = _ccm_like(ccm, rgb, "invert_ccm")
    return torch.einsum("...ck,...khw->...chw", torch.linalg.inv(m), rgb)


def gamma_compress(x: Tensor, gamma: float = 2.2) -> Tensor:
    """Linear -> gamma space: max(x, 1e-8)^(1/gamma) (so 0 maps to 1e-8^(1/gamma), not 0)."""
    return x.clamp_min(_EPS) ** (1.0 / gamma)


def gamma_expand(x: Tensor, gamma: float = 2.2) -> Tensor:
    """Gamma -> linear space: max(x, 1e-8)^gamma (inverts :func:`gamma_compress` for x >= 1e-8)."""
    return x.clamp_min(_EPS) ** gamma


def smoothstep(x: Tensor) -> Tensor:
    """Global tone curve 3x^2 - 2x^3 of Brooks et al. (monotone on [0, 1], fixes 0, 1/2, 1)."""
    return x * x * (3.0 - 2.0 * x)


def inverse_smoothstep(x: Tensor) -> Tensor:
    """Inverse of :func:`smoothstep`: 0.5 - sin(asin(1 - 2x) / 3), x clamped to [0, 1] first."""
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x.clamp(0.0, 1.0)) / 3.0)


def render(
    rgb: Tensor, wb: Tensor | Sequence[float], ccm: Tensor | Sequence[Sequence[float]]
) -> Tensor:
    """The metric ISP Γ (docs/protocol.md "Rendering to sRGB"; official ``process_test``):
    camera RGB -> sRGB.

    gains ``wb`` -> clamp [0, 1] -> ``ccm`` (white-balanced camera RGB -> linear sRGB) ->
    clamp [0, 1] -> x^(1/2.2). No tone curve. rgb (..., 3, H, W) linear camera RGB,
    wb (..., 3), ccm (..., 3, 3) -> (..., 3, H, W) in [0, 1].
    """
    balanced = apply_gains(rgb, wb).clamp(0.0, 1.0)
    return gamma_compress(apply_ccm(balanced, ccm).clamp(0.0, 1.0))
