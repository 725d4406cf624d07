"""Global pre-alignment: one translation per frame against the reference, by phase correlation.

Whole-image restore (:mod:`burstjdd.restore`, docs/method.md §7.1) runs this ahead of the
coarse alignment, so that the coarse alignment's search radius only has to cover the motion that
a translation of the whole frame leaves (local motion, rotation, parallax). It is not used in
training (the training crops carry their own context for the search radius) and is not
differentiable: integer shifts, chosen by an argmax.

Method, per non-reference frame t (packed RGGB frames in, (N, 4, h, w)):

1. grey = mean of the four packed planes, minus its mean, average-pooled by
   f = ceil(max(h, w) / MAX_WORK_SIDE) (1 working pixel = f packed = 2f full-res pixels); the
   pooling averages the noise away;
2. a Tukey window (raised-cosine taper over TAPER of each side, flat inside) removes the
   discontinuity at the frame borders without weighting the centre, so frames shifted by a
   large fraction of their size still overlap under the window;
3. phase correlation: the cross-power spectrum F_t · conj(F_ref) whitened to unit magnitude
   (every frequency counts the same, so large uniform areas or a strong edge do not dominate),
   multiplied by a Gaussian low-pass (σ = SMOOTH_SIGMA working px in the image domain: the
   noise lives at high frequencies, whitening would otherwise amplify it), inverse FFT. The
   surface peaks at d with frame_t(y + d) ≈ ref(y) (d is the displacement of the reference's
   content into frame t, the sign of a simulated burst's ``flow``);
4. candidates: the CANDIDATES highest peaks, PEAK_EXCLUSION full-res px apart. A moving object
   makes a peak of its own, sometimes the highest (a textured object on a smooth background);
   the correlation is circular, so each peak at d also stands for d − H and d − W (a shift
   past half the frame). The candidate kept is the one whose shift gives the smallest mean
   |frame_t − ref| over the part the two frames share (at least MIN_OVERLAP of the frame), the
   translation that explains most of the frame;
5. its peak is refined by a parabola through its neighbours on each axis, converted to
   full-res px and rounded to a multiple of LR_GRID (8 full-res px = 4 packed = 1 LR pixel), so
   the Bayer phase and the coarse alignment's grid are kept;
6. confidence = the second-smallest candidate error over the smallest: near 1 when no
   candidate explains the frame better than another (no texture, nothing in common, an object
   as large as the background), 2 to 5 for a clear translation. Below MIN_CONFIDENCE the
   estimate is reported as unreliable, and the restore does not use it (it widens the search
   radius instead, docs/method.md §7.1).

Frames that share less than MIN_OVERLAP of their area get no usable estimate (confidence 1).
Only a translation: a rotation or zoom is left to the coarse alignment (per tile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.checks import check_shape
from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import LR_GRID

__all__ = [
    "MIN_CONFIDENCE",
    "GlobalMotion",
    "best_translation",
    "estimate_global_motion",
    "grey_frames",
    "overlap_error",
    "phase_correlation",
    "refine_peak",
    "shift_frames",
    "surface_peaks",
    "tukey_window",
]

MAX_WORK_SIDE = 512  # longer side (px) of the grey frames that are correlated
TAPER = 0.125  # fraction of each side over which the window tapers to 0
SMOOTH_SIGMA = 1.0  # Gaussian smoothing of the correlation surface, working px
PEAK_EXCLUSION = 32  # full-res px around a peak that the next candidate may not come from
CANDIDATES = 4  # correlation peaks checked by their match error
MIN_OVERLAP = 0.25  # least fraction of the frame a candidate shift must keep in common
# Error ratio below which an estimate is not trusted: on 26 Kodak bursts at high noise (shifts
# up to 200 px on 512 px, with and without a moving object of 10 %; the stress curve's
# 504 x 248 crops at 0-256 px) every wrong estimate scored at most 1.25, most right ones 1.4-6.
MIN_CONFIDENCE = 1.3


@dataclass(frozen=True)
class GlobalMotion:
    """Per-frame global translation against the reference ``ref``.

    shifts: (N, 2) long, (dy, dx) full-res px, multiples of LR_GRID; frame_t(y + shift) ≈
        ref(y); the reference's row is 0;
    confidence: (N,) float error ratio (module docstring); the reference's is +inf.
    """

    ref: int
    shifts: Tensor
    confidence: Tensor

    @property
    def reliable(self) -> Tensor:
        """(N,) bool: the estimates at or above MIN_CONFIDENCE (the reference always)."""
        return self.confidence >= MIN_CONFIDENCE


def grey_frames(packed: Tensor) -> tuple[Tensor, int]:
    """Packed frames (N, 4, h, w) → zero-mean grey frames (N, h', w') average-pooled by
    f = ceil(max(h, w) / MAX_WORK_SIDE) (floor division of the size), and f."""
    check_shape(packed, ("N", "4", "h", "w"), what="global alignment: packed frames")
    factor = max(1, math.ceil(max(packed.shape[-2:]) / MAX_WORK_SIDE))
    grey = packed.float().mean(1, keepdim=True)
    if factor > 1:
        grey = F.avg_pool2d(grey, factor)
    grey = grey[:, 0]
    return grey - grey.mean((-2, -1), keepdim=True), factor


def tukey_window(length: int, taper: float = TAPER, device: torch.device | None = None) -> Tensor:
    """1-D Tukey window (length,): a raised-cosine ramp from 0 over ``taper``·length samples at
    each end, 1 in between."""
    ramp = max(1, round(taper * length))
    w = torch.ones(length, device=device)
    j = torch.arange(min(ramp, length), device=device, dtype=torch.float32)
    rise = torch.sin(0.5 * math.pi * j / ramp) ** 2
    w[: rise.numel()] = rise
    w[length - rise.numel():] = torch.minimum(w[length - rise.numel():], rise.flip(0))
    return w


def phase_correlation(ref: Tensor, frames: Tensor, sigma: float = SMOOTH_SIGMA) -> Tensor:
    """Phase-correlation surfaces of ``frames`` (N, H, W) against ``ref`` (H, W), both already
    windowed: (N, H, W), peaking at the circular displacement d with frame(y + d) ≈ ref(y),
    smoothed by a Gaussian of ``sigma`` px (a low-pass on the whitened spectrum)."""
    h, w = ref.shape
    spec_ref = torch.fft.rfft2(ref)
    cross = torch.fft.rfft2(frames) * spec_ref.conj()
    cross = cross / cross.abs().clamp_min(1e-12)  # whitened: unit magnitude
    fy = torch.fft.fftfreq(h, device=ref.device)[:, None]
    fx = torch.fft.rfftfreq(w, device=ref.device)[None, :]
    lowpass = torch.exp(-2 * (math.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    return torch.fft.irfft2(cross * lowpass, s=(h, w))


def _parabola(left: float, centre: float, right: float) -> float:
    """Sub-sample offset in [-0.5, 0.5] of the vertex of the parabola through three samples."""
    curvature = left - 2 * centre + right
    if curvature >= 0:  # not a maximum (flat or a valley): keep the sample
        return 0.0
    return max(-0.5, min(0.5, 0.5 * (left - right) / curvature))


def surface_peaks(surface: Tensor, exclusion: int,
                  count: int = CANDIDATES) -> list[tuple[int, int]]:
    """The ``count`` highest peaks of a circular correlation surface (H, W), highest first,
    each more than ``exclusion`` px (circular, on both axes) from the higher ones: (dy, dx)
    signed (indices past the half are negative shifts)."""
    h, w = surface.shape
    rows = torch.arange(h, device=surface.device)
    cols = torch.arange(w, device=surface.device)
    rest = surface.clone()
    peaks = []
    for _ in range(count):
        idx = int(rest.argmax())
        py, px = divmod(idx, w)
        if rest[py, px] == -math.inf:
            break
        peaks.append((py - h if py > h // 2 else py, px - w if px > w // 2 else px))
        dist_y = torch.minimum((rows - py) % h, (py - rows) % h)
        dist_x = torch.minimum((cols - px) % w, (px - cols) % w)
        rest.masked_fill_((dist_y[:, None] <= exclusion) & (dist_x[None, :] <= exclusion),
                          -math.inf)
    return peaks


def refine_peak(surface: Tensor, dy: int, dx: int) -> tuple[float, float]:
    """A peak (dy, dx) of a circular surface (H, W) refined by a parabola on each axis."""
    h, w = surface.shape
    at = lambda y, x: float(surface[y % h, x % w])
    return (dy + _parabola(at(dy - 1, dx), at(dy, dx), at(dy + 1, dx)),
            dx + _parabola(at(dy, dx - 1), at(dy, dx), at(dy, dx + 1)))


def overlap_error(ref: Tensor, frame: Tensor, dy: int, dx: int) -> float:
    """Mean |frame(y + dy, x + dx) − ref(y, x)| over the part of ref (H, W) that the shifted
    frame covers; +inf when that part is less than MIN_OVERLAP of the frame. (The mean, not a
    robust statistic: on photos with large flat areas the median cannot tell candidates apart;
    measured on Kodak bursts with a moving object of 10 % of the frame.)"""
    h, w = ref.shape
    rows, cols = h - abs(dy), w - abs(dx)
    if rows <= 0 or cols <= 0 or rows * cols < MIN_OVERLAP * h * w:
        return math.inf
    r0, c0 = max(0, -dy), max(0, -dx)
    a = ref[r0 : r0 + rows, c0 : c0 + cols]
    b = frame[r0 + dy : r0 + dy + rows, c0 + dx : c0 + dx + cols]
    return float((a - b).abs().mean())


def _aliases(d: int, length: int) -> tuple[int, ...]:
    """The shifts a circular correlation cannot tell from d along an axis of ``length`` px:
    d and, when d != 0, d − length·sign(d)."""
    return (d,) if d == 0 else (d, d - length if d > 0 else d + length)


def best_translation(ref: Tensor, frame: Tensor, surface: Tensor,
                     exclusion: int) -> tuple[float, float, float]:
    """(dy, dx, confidence) of ``frame`` against ``ref`` (grey, (H, W), not windowed) from
    their correlation surface: of the CANDIDATES highest peaks (``exclusion`` px apart) and
    their circular aliases (:func:`_aliases`), the one with the smallest
    :func:`overlap_error` (the translation that explains most of the frame: a moving object
    can make the highest peak, not the best match), refined by
    :func:`refine_peak`; confidence = the second-smallest error / the smallest (near 1 when no
    candidate stands out)."""
    h, w = ref.shape
    scored = sorted((overlap_error(ref, frame, ay, ax), ay, ax)
                    for dy, dx in surface_peaks(surface, exclusion)
                    for ay in _aliases(dy, h) for ax in _aliases(dx, w))
    best, dy, dx = scored[0]
    if best == math.inf:  # no candidate overlaps enough: no estimate
        return 0.0, 0.0, 1.0
    second = scored[1][0] if len(scored) > 1 else math.inf
    confidence = second / best if best > 0 else math.inf
    return (*refine_peak(surface, dy, dx), confidence)


def estimate_global_motion(packed: Tensor, ref: int) -> GlobalMotion:
    """Global translation of every frame of packed RGGB frames (N, 4, h, w) against frame
    ``ref`` (module docstring): :class:`GlobalMotion` with full-res shifts that are multiples
    of LR_GRID, and their confidence."""
    n = packed.shape[0]
    if not 0 <= ref < n:
        raise BurstFormatError(f"global alignment: reference {ref} out of range for {n} frames")
    grey, factor = grey_frames(packed)
    hw, ww = grey.shape[-2:]
    window = tukey_window(hw, device=grey.device)[:, None] * tukey_window(ww, device=grey.device)
    plain = grey
    windowed = grey * window
    surfaces = phase_correlation(windowed[ref], windowed)
    full_res = 2 * factor  # full-res px per working px
    exclusion = max(1, PEAK_EXCLUSION // full_res)
    shifts = torch.zeros(n, 2, dtype=torch.long)
    confidence = torch.full((n,), math.inf)
    for t in range(n):
        if t == ref:
            continue
        dy, dx, ratio = best_translation(plain[ref], plain[t], surfaces[t], exclusion)
        shifts[t, 0] = LR_GRID * round(dy * full_res / LR_GRID)
        shifts[t, 1] = LR_GRID * round(dx * full_res / LR_GRID)
        confidence[t] = ratio
    return GlobalMotion(ref, shifts, confidence)


def shift_frames(frames: Tensor, shifts: Tensor) -> Tensor:
    """Frames (N, C, h, w) moved by integer ``shifts`` (N, 2) (dy, dx) in their own pixels:
    out[t](y, x) = frames[t](y + dy, x + dx), positions clamped to the frame (replicate
    padding: the part that comes from outside repeats the border, so the merge, which compares
    with the reference, rejects it). A frame with shift (0, 0) is returned as it is."""
    check_shape(frames, ("N", "C", "h", "w"), what="shift_frames: frames")
    check_shape(shifts, ("N", "2"), what="shift_frames: shifts", sizes={"N": frames.shape[0]})
    h, w = frames.shape[-2:]
    out = []
    for frame, (dy, dx) in zip(frames, shifts.tolist()):
        if dy == 0 and dx == 0:
            out.append(frame)
            continue
        rows = (torch.arange(h, device=frames.device) + int(dy)).clamp(0, h - 1)
        cols = (torch.arange(w, device=frames.device) + int(dx)).clamp(0, w - 1)
        out.append(frame[:, rows][:, :, cols])
    return torch.stack(out)
