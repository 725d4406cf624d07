"""Heteroscedastic raw noise model: Var(y) = shot * x + read**2.

``x`` is the clean signal and ``y`` the noisy observation, both in normalised units [0, 1]
(black level 0, white level 1). ``shot`` is a variance slope (not squared) and ``read`` a
standard deviation, as in the paper (§4.1) and the official code (docs/official-network.md
§1). The noisy raw is clipped to [0, 1]; the noise map fed to the network is the per-pixel
standard deviation predicted from the noisy ``y`` (docs/method.md §5), the same formula in
training and at test time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import check_pattern

__all__ = [
    "MAX_NOISE",
    "NoiseLevel",
    "PRESETS",
    "parse_noise",
    "sample_noise_level",
    "sample_noise_levels",
    "add_noise",
    "noise_map",
    "estimate_noise",
    "clipped_mean",
    "invert_clipped_mean",
    "level_from_map",
]

# Log10 ranges of the training noise levels (official code; the paper says "uniformly").
SHOT_LOG10_RANGE = (-4.0, -2.0)
# Largest shot (variance slope) and read (standard deviation) of a NoiseLevel, in normalised
# units: 1 is noise as large as the whole signal range already, and a bound keeps the
# variance (shot * x + read**2) finite in float32 (--noise 1e308:1e308 would overflow).
MAX_NOISE = 1.0
READ_LOG10_RANGE = (-3.0, -1.5)

# Floor of the variance inside ``noise_map`` so that sqrt stays finite and differentiable.
_MIN_VARIANCE = 1e-12


@dataclass(frozen=True)
class NoiseLevel:
    """Noise parameters of one burst: Var(y | x) = ``shot`` * x + ``read``**2.

    ``shot`` is the variance slope (normalised units), ``read`` the read-noise standard deviation
    (normalised units). Both must be finite numbers in 0..:data:`MAX_NOISE`, else
    ``BurstFormatError``.
    """

    shot: float
    read: float

    def __post_init__(self) -> None:
        for name in ("shot", "read"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise BurstFormatError(f"noise {name} must be a number, got {value!r}") from None
            if not (math.isfinite(number) and 0.0 <= number <= MAX_NOISE):
                raise BurstFormatError(
                    f"noise {name} must be finite and in 0..{MAX_NOISE:g} (normalised units: 1 "
                    f"is the white level), got {value!r}")
            object.__setattr__(self, name, number)

    def variance(self, x: float | Tensor) -> float | Tensor:
        """Noise variance at clean signal ``x`` (float or tensor, any shape; x < 0 counts as 0)."""
        if isinstance(x, Tensor):
            return self.shot * x.clamp(min=0.0) + self.read**2
        return self.shot * max(float(x), 0.0) + self.read**2

    def std(self, x: float | Tensor) -> float | Tensor:
        """Noise standard deviation at clean signal ``x`` (float or tensor, any shape)."""
        var = self.variance(x)
        return var.sqrt() if isinstance(var, Tensor) else math.sqrt(var)


# docs/protocol.md "Noise levels": the two synthetic test levels.
PRESETS: dict[str, NoiseLevel] = {
    "low": NoiseLevel(2.5e-3, 1e-2),
    "high": NoiseLevel(6.4e-3, 2e-2),
}


def parse_noise(spec: str) -> NoiseLevel:
    """Parse a noise specification: ``"low"``, ``"high"`` or ``"SHOT:READ"`` (e.g.
    ``"1e-3:5e-3"``; ``"SHOT,READ"`` is read the same, the colon also works inside the
    comma-separated lists of ``burstjdd evaluate --noise``).

    Bad specifications raise ``BurstFormatError`` with a one-line message.
    """
    text = str(spec).strip()
    preset = PRESETS.get(text.lower())
    if preset is not None:
        return preset
    parts = text.replace(":", ",").split(",")
    if len(parts) != 2:
        raise BurstFormatError(
            f"bad noise level {text[:40]!r}: expected low, high or SHOT:READ (two numbers, "
            "e.g. 2.5e-3:1e-2)"
        )
    try:
        shot, read = (float(p) for p in parts)
    except ValueError:
        raise BurstFormatError(
            f"bad noise level {text[:40]!r}: SHOT and READ in SHOT:READ must be numbers"
        ) from None
    return NoiseLevel(shot, read)


def _draw_log_uniform(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(shot, read), each (batch,) float64 on the generator's device; log-uniform,
    docs/method.md §5."""
    u = torch.rand(2, batch, generator=generator, dtype=torch.float64, device=generator.device)
    (s0, s1), (r0, r1) = SHOT_LOG10_RANGE, READ_LOG10_RANGE
    shot = 10.0 ** (s0 + (s1 - s0) * u[0])
    read = 10.0 ** (r0 + (r1 - r0) * u[1])
    return shot, read


def sample_noise_level(generator: torch.Generator) -> NoiseLevel:
    """Draw one training noise level: shot = 10^U(-4,-2), read = 10^U(-3,-1.5) (docs/method.md
    §5).

    Consumes the same random numbers as ``sample_noise_levels(1, generator)``.
    """
    shot, read = _draw_log_uniform(1, generator)
    return NoiseLevel(shot.item(), read.item())


def sample_noise_levels(
    batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Batched ``sample_noise_level``: (shot, read), each (batch,) on the generator's device.

    Reshape to (B, 1, 1, 1) (or similar) to pass them to ``add_noise``/``noise_map``.
    """
    shot, read = _draw_log_uniform(batch, generator)
    return shot.to(dtype), read.to(dtype)


def _check_level(name: str, value: float | Tensor) -> None:
    # Tensors are not checked: it would force a device sync on every training step.
    if not isinstance(value, Tensor) and not (math.isfinite(value) and value >= 0.0):
        raise BurstFormatError(f"noise {name} must be finite and >= 0, got {value!r}")


def add_noise(
    clean: Tensor, shot: float | Tensor, read: float | Tensor, generator: torch.Generator
) -> Tensor:
    """Noisy raw y = clip(x + N(0, shot * x + read**2), 0, 1) (paper §4.1, docs/method.md §5).

    clean: (...) clean signal x in [0, 1]; shot/read: floats or tensors broadcastable to ``clean``
    (e.g. (B, 1, 1, 1) for one level per burst). The noise is independent per element and drawn
    from ``generator``, which must live on ``clean``'s device. Returns (...) like ``clean``.
    """
    _check_level("shot", shot)
    _check_level("read", read)
    std = (shot * clean.clamp(min=0.0) + read**2).sqrt()
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    return (clean + std * noise).clamp(0.0, 1.0)


def noise_map(noisy: Tensor, shot: float | Tensor, read: float | Tensor) -> Tensor:
    """Noise map M = sqrt(shot * y + read**2) from the noisy raw y (docs/method.md §5).

    noisy: (...) y in [0, 1]; shot/read: floats or tensors broadcastable to ``noisy``.
    Returns (...) the predicted per-pixel standard deviation (normalised units). The argument of
    the square root is floored at 1e-12 so that read = 0 still gives finite values and gradients.
    """
    _check_level("shot", shot)
    _check_level("read", read)
    return (shot * noisy + read**2).clamp(min=_MIN_VARIANCE).sqrt()


# ---------------------------------------------------------------------------------------------
# Noise estimation from noisy mosaics alone.

_N_BINS = 32              # equal-width intensity bins over [0, 1]
_RING_RADIUS = 5          # texture context: an 11x11 window of residuals around each location
_RING_THRESHOLD = 1.0     # smooth: ring mean square <= 1.0 * (current noise variance of the bin)
_ITERATIONS = 3           # re-selections after the initial one (converges in 2-3)
_MAX_SAMPLES = 1_000_000  # locations used (a regular subsample beyond that)
_MIN_COUNT = 64           # fewer kept samples than this: the bin is ignored
_CLIP_MARGIN = 3.0        # a bin is used only when mean +- 3 std stays inside (0, 1)
_MAD_TO_STD = 1.4826      # std of a zero-mean Gaussian = 1.4826 * median(|r|)
_HIST_LEVELS = 2048       # log2-spaced histogram levels for the per-bin quantiles (~1 % wide)
_HIST_LOG2_RANGE = (-40.0, 1.0)
_MIN_SIZE = 2 * (2 * _RING_RADIUS + 3)   # full-res pixels: sub-lattice >= residual + ring window


def _box_sum(x: Tensor, k: int, stride: int) -> Tensor:
    """Sums over the k x k windows starting every ``stride`` rows and columns (valid mode).

    x: (..., H, W) -> (..., (H-k)//stride + 1, (W-k)//stride + 1). Separable running sums, so
    the cost does not grow with k.
    """
    c = F.pad(x.cumsum(-1), (1, 0))
    x = c[..., k::stride] - c[..., :-k:stride]
    c = F.pad(x.cumsum(-2), (0, 0, 1, 0))
    return c[..., k::stride, :] - c[..., :-k:stride, :]


def _log_level(values: Tensor) -> Tensor:
    """Histogram level (long, same shape) of ``values`` >= 0 on the log2 grid of the quantiles."""
    lo, hi = _HIST_LOG2_RANGE
    scale = _HIST_LEVELS / (hi - lo)
    level = (values.clamp(min=2.0**lo).log2() - lo) * scale
    return level.long().clamp_(0, _HIST_LEVELS - 1)


def _binned_quantile(bins: Tensor, levels: Tensor, q: float) -> Tensor:
    """Per-bin ``q``-quantile from log2 histogram levels (see ``_log_level``).

    bins: (S,) long in [0, _N_BINS], where _N_BINS marks discarded samples; levels: (S,) long.
    Returns (_N_BINS,) float64 (0 for empty bins), interpolated inside one level (~1 % wide,
    far below the statistical error); this avoids sorting millions of samples.
    """
    lo, hi = _HIST_LOG2_RANGE
    step = (hi - lo) / _HIST_LEVELS
    counts = torch.bincount(bins * _HIST_LEVELS + levels, minlength=(_N_BINS + 1) * _HIST_LEVELS)
    counts = counts.view(_N_BINS + 1, _HIST_LEVELS)[:_N_BINS].to(torch.float64)
    cum = counts.cumsum(1)
    target = q * cum[:, -1:]
    idx = torch.searchsorted(cum, target).clamp_(max=_HIST_LEVELS - 1)
    below = cum.gather(1, (idx - 1).clamp(min=0)) * (idx > 0)
    frac = ((target - below) / counts.gather(1, idx).clamp(min=1.0)).clamp(0.0, 1.0)
    out = 2.0 ** (lo + (idx.to(torch.float64) + frac) * step)
    return torch.where(cum[:, -1:] > 0, out, torch.zeros_like(out)).squeeze(1)


def _residual_statistics(sub: Tensor, stride: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-location statistics of sub-lattice images (M, h, w), flattened to (S,) each.

    Locations are pixels whose (2R+3)^2 neighbourhood lies inside the image, taken every
    ``stride`` pixels along both axes. Returns (resid, mean, ring, clipped):
    resid: Immerkaer (1996) residual, y convolved with [1,-2,1]^T [1,-2,1] / 6. The kernel
      cancels any signal linear along rows or along columns (axis-aligned edges and ramps) and
      has unit L2 norm, so Var(resid) = noise variance on smooth regions;
    mean: 3x3 box mean of y, the local signal (uncorrelated with resid: the kernel sums to 0);
    ring: mean squared residual over the (2R+1)^2 window minus its central 5x5; those
      residuals' 3x3 supports miss the centre's, so on pure noise ring is independent of resid
      and selecting locations on it does not bias the variance of the selected residuals;
    clipped: True where the 3x3 window holds a value <= 0 or >= 1.
    """
    r, s, big = _RING_RADIUS, stride, 2 * _RING_RADIUS + 1
    # Residual index p is centred on pixel p + 1; valid p: r .. h-3-r.
    d = sub[..., :, :-2] - 2.0 * sub[..., :, 1:-1] + sub[..., :, 2:]
    resid = (d[..., :-2, :] - 2.0 * d[..., 1:-1, :] + d[..., 2:, :]) / 6.0   # (M, h-2, w-2)
    rows = -(-(resid.shape[-2] - 2 * r) // s)
    cols = -(-(resid.shape[-1] - 2 * r) // s)

    def windows(x: Tensor, offset: int, k: int) -> Tensor:   # -> (M, rows, cols)
        return _box_sum(x[..., offset:, offset:], k, s)[..., :rows, :cols]

    sq = resid.square()
    ring = (windows(sq, 0, big) - windows(sq, r - 2, 5)) / (big**2 - 25)
    mean = windows(sub, r, 3) / 9.0
    clipped = windows(((sub <= 0.0) | (sub >= 1.0)).to(sub.dtype), r, 3) > 0.0
    resid = resid[..., r : resid.shape[-2] - r : s, r : resid.shape[-1] - r : s]
    return resid.reshape(-1), mean.reshape(-1), ring.reshape(-1), clipped.reshape(-1)


def _fit_affine_nonneg(x: Tensor, v: Tensor, w: Tensor) -> tuple[float, float]:
    """Weighted least squares v ~ a * x + b with a, b >= 0. x, v, w: (K,) float64."""

    def solve_both() -> tuple[float, float]:
        sw, sx, sxx = w.sum(), (w * x).sum(), (w * x * x).sum()
        sv, sxv = (w * v).sum(), (w * x * v).sum()
        det = sw * sxx - sx * sx
        if det <= 1e-12 * sw * sxx:
            return -1.0, -1.0
        return float((sw * sxv - sx * sv) / det), float((sxx * sv - sx * sxv) / det)

    a, b = solve_both()
    if a >= 0.0 and b >= 0.0:
        return a, b
    # The constrained optimum lies on a boundary: try a = 0 and b = 0, keep the better one.
    # v, w, x >= 0, so both one-parameter solutions are >= 0.
    b0 = float((w * v).sum() / w.sum())
    a0 = float((w * x * v).sum() / (w * x * x).sum().clamp(min=1e-300))
    cost_b = float((w * (v - b0) ** 2).sum())
    cost_a = float((w * (v - a0 * x) ** 2).sum())
    return (0.0, b0) if cost_b <= cost_a else (a0, 0.0)


def clipped_mean(x: Tensor, noise: NoiseLevel) -> Tensor:
    """E[clip(x + n, 0, 1)] for n ~ N(0, shot * x + read^2): the mean of a clipped noisy
    pixel (what a denoiser of clipped data estimates), for x in [0, 1] (Foi, "Clipped noisy
    images: heteroskedastic modeling and practical denoising", Signal Processing 2009).
    With s the noise std at x, a = -x / s and b = (1 - x) / s:
    x (Phi(b) - Phi(a)) + s (phi(a) - phi(b)) + 1 - Phi(b).
    """
    s = noise.std(x).clamp_min(1e-12)
    a, b = -x / s, (1.0 - x) / s

    def phi(t: Tensor) -> Tensor:
        return torch.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)

    ndtr = torch.special.ndtr
    return x * (ndtr(b) - ndtr(a)) + s * (phi(a) - phi(b)) + 1.0 - ndtr(b)


def invert_clipped_mean(y: Tensor, noise: NoiseLevel, samples: int = 4097) -> Tensor:
    """The x in [0, 1] with :func:`clipped_mean` (x) = y, by linear interpolation in a table
    of ``samples`` values (the function is increasing). Removes the bias that clipping at 0
    (and 1) leaves in denoised dark (and bright) pixels: at read noise 0.02 a black pixel
    averages 0.008. y (...) any shape; dtype/device kept; values outside the range of the
    table map to 0 or 1.
    """
    xs = torch.linspace(0.0, 1.0, samples, dtype=torch.float64, device=y.device)
    table = clipped_mean(xs, noise)
    flat = y.detach().double().reshape(-1)
    i = torch.searchsorted(table, flat).clamp(1, samples - 1)
    gap = (table[i] - table[i - 1]).clamp_min(torch.finfo(torch.float64).tiny)
    t = ((flat - table[i - 1]) / gap).clamp(0.0, 1.0)
    return (xs[i - 1] + t * (xs[i] - xs[i - 1])).reshape(y.shape).to(y.dtype)


def level_from_map(y: Tensor, var: Tensor) -> NoiseLevel:
    """The noise level (shot, read) of a noise map: the least-squares fit, with shot and read
    >= 0, of var = shot * y + read^2 over the pixels of y (...) and var (same shape), e.g. a
    noisy frame and the square of its :func:`noise_map` (then the fit is exact)."""
    x, v = y.detach().double().reshape(-1), var.detach().double().reshape(-1)
    shot, read2 = _fit_affine_nonneg(x, v, torch.ones_like(x))
    return NoiseLevel(shot, math.sqrt(read2))


def _as_mosaics(raw: Tensor | np.ndarray) -> Tensor:
    """Validate and convert to (N, H, W) float32 with even H, W (an odd last row/column is cut)."""
    if not isinstance(raw, Tensor):
        try:
            raw = torch.as_tensor(np.asarray(raw))
        except (TypeError, ValueError):
            raise BurstFormatError(
                f"noise estimation needs a numeric raw array, got {type(raw).__name__}"
            ) from None
    if raw.dim() not in (2, 3):
        raise BurstFormatError(
            f"noise estimation needs raw of shape (N, H, W) or (H, W), got {tuple(raw.shape)}"
        )
    if raw.dim() == 2:
        raw = raw.unsqueeze(0)
    if raw.shape[0] == 0 or min(raw.shape[-2:]) < _MIN_SIZE:
        raise BurstFormatError(
            f"noise estimation needs at least one frame of {_MIN_SIZE}x{_MIN_SIZE} pixels, "
            f"got raw of shape {tuple(raw.shape)}"
        )
    if raw.is_complex() or raw.dtype == torch.bool:
        raise BurstFormatError(f"noise estimation needs a real-valued raw, got {raw.dtype}")
    raw = raw.to(torch.float32)
    if not bool(torch.isfinite(raw).all()):
        raise BurstFormatError("noise estimation: raw contains NaN or infinite values")
    h, w = raw.shape[-2] // 2 * 2, raw.shape[-1] // 2 * 2
    return raw[:, :h, :w]


def estimate_noise(raw: Tensor | np.ndarray, cfa: str = "RGGB") -> NoiseLevel:
    """Estimate (shot, read) of Var(y) = shot * x + read**2 from noisy raw mosaics alone.

    raw: (N, H, W) or (H, W) mosaics in [0, 1] (tensor or NumPy array, any device), H, W >= 26;
    all frames must share one noise level: their statistics are pooled. ``cfa`` is only
    validated: the model is the same for every colour, so each 2x2 sub-lattice
    ``raw[..., i::2, j::2]`` is treated as its own image whatever the pattern.

    Method (after Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for
    single-image raw-data", IEEE TIP 2008), on every sub-lattice image:

    1. per location: a high-pass residual whose variance is the noise variance on smooth regions
       (Immerkaer kernel / its L2 norm), the 3x3 local mean, and the mean squared residual over a
       surrounding ring that shares no pixel with the centre's residual (``_residual_statistics``);
       locations whose 3x3 window touches 0 or 1 (clipped) are dropped;
    2. bin by local mean (32 bins over [0, 1]); keep the locations whose ring is at most the
       bin's current noise variance (started from the smoother half, 3 re-selections): texture
       is rejected even where it fills most of a bin, and on pure noise the selection is
       independent of the centre residual, so it does not bias the estimate;
    3. robust variance per bin: (1.4826 * median |residual|)**2; bins with fewer than 64
       locations or with mean -+ 3 std outside (0, 1) (clipping bias) are ignored;
    4. weighted least squares var = shot * x + read**2 with shot, read**2 >= 0 (weights
       count / var**2, the inverse variance of a sample variance; one reweighting pass).

    Beyond 1e6 locations a regular subsample is used (the error is then set by texture, not by
    sampling). Limits: texture that looks like noise at the pixel scale (fine grain, foliage,
    fur) adds to the estimate, so textured scenes and very low noise levels are overestimated
    (bundled test photos: +5..12 % in std at the PROTOCOL levels, up to 2x at shot = 1e-4,
    read = 1e-3); a scene with a narrow intensity range fits the total variance there but
    splits it poorly between shot and read, so extrapolation away from it is unreliable;
    spatially correlated noise (denoised, demosaicked or compressed data) and a residual black
    level offset are outside the model. Raises ``BurstFormatError`` for bad input and when no
    intensity bin is usable (e.g. an almost entirely clipped or tiny image).
    """
    check_pattern(cfa)
    mosaics = _as_mosaics(raw)
    n, h, w = mosaics.shape
    # (N, H, W) -> (4N, H/2, W/2): one image per colour sub-lattice and frame.
    sub = mosaics.reshape(n, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3)
    # Beyond ~1e6 locations the estimate is limited by texture, not by sampling: subsample.
    locations = 4 * n * (h // 2 - 2 * _RING_RADIUS - 2) * (w // 2 - 2 * _RING_RADIUS - 2)
    stride = max(1, math.ceil(math.sqrt(locations / _MAX_SAMPLES)))
    resid, mean, ring, clipped = _residual_statistics(sub.reshape(4 * n, h // 2, w // 2), stride)

    # Bin _N_BINS collects the discarded samples, so that no boolean compaction is needed.
    bins = (mean * _N_BINS).long().clamp_(0, _N_BINS - 1).masked_fill_(clipped, _N_BINS)
    resid_levels = _log_level(resid.abs())
    # Docstring step 2: start from the smoother half of each bin, then re-select on the ring.
    limit = _binned_quantile(bins, _log_level(ring), 0.5)
    for _ in range(_ITERATIONS + 1):
        # Clamped index: samples already in bin _N_BINS stay discarded whatever the limit.
        smooth = ring <= limit.to(ring.dtype)[bins.clamp(max=_N_BINS - 1)]
        kept = bins.masked_fill(~smooth, _N_BINS)
        std = _MAD_TO_STD * _binned_quantile(kept, resid_levels, 0.5)
        limit = _RING_THRESHOLD * std**2
    bins = kept

    count = torch.bincount(bins, minlength=_N_BINS + 1)[:_N_BINS].to(torch.float64)
    x = torch.bincount(bins, weights=mean.to(torch.float64), minlength=_N_BINS + 1)[:_N_BINS]
    x = x / count.clamp(min=1)
    usable = (
        (count >= _MIN_COUNT)
        & (x - _CLIP_MARGIN * std > 0.0)
        & (x + _CLIP_MARGIN * std < 1.0)
    )
    if not bool(usable.any()):
        raise BurstFormatError(
            "noise estimation failed: no unclipped intensity range with enough smooth pixels"
        )
    x, var, count = x[usable], std[usable] ** 2, count[usable]

    floor = max(float(var.max()) * 1e-6, 1e-14)
    shot, read2 = _fit_affine_nonneg(x, var, count / var.clamp(min=floor) ** 2)
    fitted = (shot * x + read2).clamp(min=floor)
    shot, read2 = _fit_affine_nonneg(x, var, count / fitted**2)
    return NoiseLevel(shot, math.sqrt(read2))
