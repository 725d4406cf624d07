"""Pairwise Wiener merge of aligned raw frames (HDR+, Hasinoff et al. SIGGRAPH Asia 2016, Sec. 5).

Used by the residual ``compact`` model as the image its decoder corrects (frames already
coarsely aligned by the block matching) and, through :func:`raised_cosine`, by the HDR+-style
baseline, which adds its own tile alignment.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Keeps 0 / 0 (identical tiles of a noise-free burst) at 0: such tiles are fully merged.
TINY = 1e-20


def raised_cosine(tile: int, like: Tensor) -> Tensor:
    """(tile, tile) window 1/2 - 1/2 cos(2 pi (x + 1/2) / tile) per axis (HDR+ Sec. 5):
    half-overlapping copies sum to exactly 1."""
    x = torch.arange(tile, dtype=like.dtype, device=like.device)
    w = 0.5 - 0.5 * torch.cos(2.0 * math.pi * (x + 0.5) / tile)
    return w[:, None] * w[None, :]


def wiener_merge(frames: Tensor, noise: Tensor, ref: int, tile: int = 16,
                 c: float = 16.0) -> Tensor:
    """Merge aligned packed frames (B, N, C, h, w) onto frame ``ref`` → (B, C, h, w).

    noise (B, N, C, h, w): per-pixel noise standard deviation (the noise map); only the
    reference's is used. Each plane is cut into half-overlapping ``tile``-pixel tiles with a
    raised-cosine window and merged per orthonormal-DFT frequency with the pairwise Wiener
    weights of HDR+ Sec. 5:
        A_z = |D_z|² / (|D_z|² + c σ²),  D_z = T_ref − T_z,
        merged = 1/N Σ_z (T_z + A_z D_z),
    σ² = the tile's mean noise variance times the window's mean square, so that a frame that
    differs from the reference by more than the noise (residual misalignment, occlusion) is
    rejected frequency by frequency. Identical frames, and N = 1, return the reference
    (up to rounding). Borders replicate. Differentiable; dtype and device follow ``frames``.
    """
    b, n, ch, h, w = frames.shape
    step = tile // 2
    # pad so that every pixel lies in two tiles per axis and the tiles fit exactly
    ph, pw = step + (-h % step), step + (-w % step)
    x = F.pad(frames.reshape(b * n, ch, h, w), (step, pw, step, ph), mode="replicate")
    hp, wp = x.shape[-2:]
    window = raised_cosine(tile, frames)

    def tiles(img: Tensor) -> Tensor:  # (M, ch, hp, wp) -> (M, ch, L, tile, tile)
        cols = F.unfold(img.reshape(-1, 1, hp, wp), tile, stride=step)  # (M·ch, T², L)
        return cols.transpose(1, 2).reshape(img.shape[0], ch, -1, tile, tile)

    t = tiles(x).view(b, n, ch, -1, tile, tile)
    var = F.pad(noise[:, ref].square(), (step, pw, step, ph), mode="replicate")
    sigma2 = tiles(var).mean((-2, -1), keepdim=True) * window.square().mean()  # (B, ch, L, 1, 1)
    spectra = torch.fft.fft2(t * window, norm="ortho")  # (B, N, ch, L, T, T)
    s0 = spectra[:, ref]
    diff = s0[:, None] - spectra
    power = diff.real.square() + diff.imag.square()
    keep = 1.0 - power / (power + c * sigma2[:, None] + TINY)  # 1 - A_z; 1 for z = ref
    merged = torch.fft.ifft2((s0[:, None] - keep * diff).mean(1), norm="ortho").real
    cols = merged.reshape(b * ch, -1, tile * tile).transpose(1, 2)  # (B·ch, T², L)
    out = F.fold(cols, (hp, wp), tile, stride=step)  # windows sum to 1 inside the padding
    return out.view(b, ch, hp, wp)[..., step : step + h, step : step + w]
