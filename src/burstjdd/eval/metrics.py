"""Image quality metrics of the evaluation protocol (docs/protocol.md "Metrics";
docs/official-network.md §6 "Metrics").

Both metrics take gamma-encoded sRGB float images in [0, 1] of shape (3, H, W) (PyTorch
tensors or NumPy arrays), scale them by 255 and compute in float64, as the official test
scripts do: no uint8 rounding, no clipping beyond the ISP clamps of :func:`protocol_srgb`.

* :func:`psnr`: peak 255, MSE over all pixels and channels, no border crop.
* :func:`ssim`: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2,
  C2 = (0.03*255)^2, per channel, averaged. The official code filters with ``cv2.filter2D`` and
  then drops 5 pixels on each side (``[5:-5, 5:-5]``), which keeps exactly the window positions
  that lie fully inside the image; here the window is applied as a 'valid' convolution, which
  gives the same (H-10) x (W-10) map without any padding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.checks import check_shape
from burstjdd.errors import DataError
from burstjdd.raw.color import render

__all__ = ["PEAK", "SSIM_WINDOW", "SSIM_SIGMA", "protocol_srgb", "psnr", "ssim"]

PEAK = 255.0  # images are compared on the 0..255 scale
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def protocol_srgb(rgb_linear_camera: Tensor, wb: Tensor, ccm: Tensor) -> Tensor:
    """The protocol's output ISP: linear camera RGB -> gamma sRGB in [0, 1].

    gains ``wb`` (already multiplied by the rgb gain) -> clamp [0, 1] -> ``ccm`` (cam2rgb) ->
    clamp [0, 1] -> x^(1/2.2); exactly :func:`burstjdd.raw.color.render`. Apply it to the output
    and to the ground truth alike. rgb (..., 3, H, W), wb (3,), ccm (3, 3) -> (..., 3, H, W).
    """
    return render(rgb_linear_camera, wb, ccm)


def _as_float64_pair(
    pred: Tensor | np.ndarray, target: Tensor | np.ndarray
) -> tuple[Tensor, Tensor]:
    """Both images as float64 tensors (3, H, W) on pred's device, checked for equal shapes."""
    a = torch.as_tensor(np.asarray(pred) if not isinstance(pred, Tensor) else pred)
    b = torch.as_tensor(np.asarray(target) if not isinstance(target, Tensor) else target)
    check_shape(a, ("3", "H", "W"), what="metrics: image", error=DataError)
    if a.shape != b.shape:
        raise DataError(f"metrics: image shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    a = a.detach().to(torch.float64)
    return a, b.detach().to(device=a.device, dtype=torch.float64)


def psnr(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """PSNR in dB of two sRGB images (3, H, W) in [0, 1]: 10 log10(255^2 / MSE).

    MSE is the float64 mean over all pixels and channels of the images x 255; no rounding,
    no border crop. Identical images give ``inf``.
    """
    a, b = _as_float64_pair(pred, target)
    mse = float(((a - b) * PEAK).square().mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(PEAK**2 / mse)


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    """(size, size) normalised Gaussian, the outer product of cv2.getGaussianKernel(size, sigma)."""
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """SSIM (Wang et al. 2004, Eq. 13) of two sRGB images (3, H, W) in [0, 1], H, W >= 11.

    On the images x 255, per channel: local means, variances and covariance with an 11x11
    Gaussian window (sigma 1.5, population statistics), SSIM map
    ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (0.01*255)^2, C2 = (0.03*255)^2, over the 'valid' window positions only (the official
    filter-then-crop-5-px). Returns the mean over the three channels' maps.
    """
    a, b = _as_float64_pair(pred, target)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise DataError(
            f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a.shape)}"
        )
    a, b = a * PEAK, b * PEAK
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, a)[None, None]  # (1, 1, 11, 11)

    def filt(x: Tensor) -> Tensor:  # (3, H, W) -> (3, H-10, W-10), each channel on its own
        return F.conv2d(x[:, None], window)[:, 0]

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (_K1 * PEAK) ** 2, (_K2 * PEAK) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())
