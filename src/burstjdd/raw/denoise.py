"""Single-image raw denoising: the generalised Anscombe transform, scikit-image's non-local
means and the closed-form unbiased inverse, then the inverse of the clipped mean.

One implementation serves two users: the single-frame and HDR+ baselines
(:mod:`burstjdd.eval.baselines`) and the residual base of ``compact`` and ``classical``
(:func:`burstjdd.raw.merge.merge_and_denoise`), each after its own merge, at the noise variance
that merge leaves. Mosaics are RGGB (H, W) with even H, W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from burstjdd.raw.cfa import pack, unpack
from burstjdd.raw.noise import NoiseLevel, invert_clipped_mean

__all__ = ["NlmParams", "anscombe", "denoise_raw", "inverse_anscombe"]


@dataclass(frozen=True)
class NlmParams:
    """Non-local means settings (skimage ``denoise_nl_means``, fast mode) on the stabilised
    packed raw, where the noise standard deviation is 1: ``h`` is in units of it."""

    patch_size: int = 5
    patch_distance: int = 6
    h: float = 0.8


def anscombe(y: Tensor, shot: float | Tensor, read: float | Tensor) -> Tensor:
    """Generalised Anscombe transform for Var(y) = shot * x + read^2, shot > 0 (Starck,
    Murtagh and Bijaoui 1998): f(y) = 2 sqrt(max(y / shot + 3/8 + (read / shot)^2, 0)),
    so that Var(f(y)) ~ 1. shot/read: floats or tensors broadcastable to y; dtype follows y.
    """
    return 2.0 * (y / shot + 0.375 + (read / shot) ** 2).clamp_min(0.0).sqrt()


def inverse_anscombe(d: Tensor, shot: float | Tensor, read: float | Tensor) -> Tensor:
    """Closed-form approximation of the exact unbiased inverse of :func:`anscombe`
    (Makitalo and Foi, IEEE TIP 2011, extended to Poisson-Gaussian noise in TIP 2013):

    x / shot = max(d^2/4 + sqrt(3/2)/4 d^-1 - 11/8 d^-2 + 5/8 sqrt(3/2) d^-3 - 1/8 - s^2, 0),
    s = read / shot. It inverts the *expectation* of f(y), which a denoiser estimates, and so
    avoids the bias of the algebraic inverse at low signal.
    """
    d = d.clamp_min(1.0)  # f(y) >= 2 sqrt(3/8) ~ 1.22; keeps the negative powers finite
    k = math.sqrt(1.5)
    x = d**2 / 4 + k / 4 / d - 11 / 8 / d**2 + 5 / 8 * k / d**3 - 1 / 8 - (read / shot) ** 2
    return shot * x.clamp_min(0.0)


def denoise_raw(
    raw: Tensor,
    noise: NoiseLevel,
    variance_scale: Tensor | None = None,
    params: NlmParams = NlmParams(),
) -> Tensor:
    """Denoise one clipped RGGB mosaic (H, W) with noise Var(y) = shot * x + read^2.

    Packs to the four Bayer planes (4, H/2, W/2), stabilises the variance with
    :func:`anscombe` (plain scaling by 1 / read when shot = 0), runs non-local means jointly
    over the planes with noise sigma 1, inverts with :func:`inverse_anscombe` and finally
    removes the clipping bias with :func:`invert_clipped_mean`. ``variance_scale`` (H, W),
    if given, multiplies the noise variance per pixel (e.g. the remaining variance after a
    temporal merge) for the denoising, while the clipping bias stays that of ``noise``.
    Returns (H, W) in [0, 1], raw's dtype/device; a noise-free level returns raw unchanged.
    """
    if noise.shot == 0.0 and noise.read == 0.0:
        return raw
    from skimage.restoration import denoise_nl_means

    y = pack(raw).double().cpu()  # (4, h, w)
    scale = torch.ones_like(y) if variance_scale is None else pack(variance_scale).double().cpu()
    shot, read = noise.shot * scale, noise.read * scale.sqrt()
    stabilised = anscombe(y, shot, read) if noise.shot > 0.0 else y / read
    out = denoise_nl_means(
        stabilised.permute(1, 2, 0).numpy(),
        patch_size=params.patch_size,
        patch_distance=params.patch_distance,
        h=params.h,
        sigma=1.0,
        fast_mode=True,
        channel_axis=-1,
    )  # (h, w, 4)
    out = torch.from_numpy(out).permute(2, 0, 1)
    planes = inverse_anscombe(out, shot, read) if noise.shot > 0.0 else out * read
    return invert_clipped_mean(unpack(planes).clamp(0.0, 1.0), noise).to(raw)
