"""Classical baselines for burst joint denoising and demosaicking (PROTOCOL.md "Baselines").

Every baseline is a callable ``method(burst: RawBurst) -> Tensor (3, H, W)`` returning linear
camera RGB in the burst's own CFA orientation (the restorer's signature), to be rendered with
:func:`burstjdd.eval.metrics.protocol_srgb`. Internally the mosaics are brought to RGGB with
:func:`~burstjdd.raw.cfa.to_rggb` and the output is flipped back with ``from_rggb``.

=========  ===================================================================================
name       method
=========  ===================================================================================
bilinear   reference frame, bilinear demosaic, no denoising
malvar     reference frame, GAT + non-local means denoising, Malvar et al. 2004 demosaic
menon      reference frame, GAT + non-local means denoising, Menon et al. 2007 demosaic
dmn        reference frame, GAT + non-local means denoising, Gharbi et al. 2016 demosaicnet
mean       unaligned temporal mean of all frames, bilinear demosaic
hdrplus    HDR+ tile alignment and Wiener merge (Hasinoff et al. 2016), GAT + non-local means
           at the remaining noise level, Malvar demosaic
=========  ===================================================================================

The denoiser (:func:`denoise_raw`) is scikit-image's non-local means on the packed raw (the
four half-resolution Bayer planes, denoised jointly) after the generalised Anscombe transform
with the burst's noise level, inverted with Makitalo and Foi's closed-form unbiased inverse,
followed by the inverse of the clipped-mean function, which removes the bias that clipping
the noisy raw at 0 leaves in dark pixels. ``hdrplus`` uses the same denoiser after its merge,
so that against ``malvar`` it differs only by the burst. ``malvar``, ``menon`` and ``hdrplus``
need the optional ``colour-demosaicing`` package, ``dmn`` the ``demosaicnet`` package (only
its bundled weights file is read); :func:`available_baselines` lists the baselines that can
run here, and calling one whose dependency is missing raises
:class:`BaselineUnavailableError` naming what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.raw.cfa import (
    colour_masks,
    demosaic_bilinear,
    from_rggb,
    mosaic,
    pack,
    to_rggb,
    unpack,
)
from burstjdd.raw.io import RawBurst
from burstjdd.raw.merge import TINY, raised_cosine
from burstjdd.raw.noise import NoiseLevel

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineUnavailableError",
    "HdrPlusParams",
    "Merged",
    "NlmParams",
    "align_tiles",
    "anscombe",
    "available_baselines",
    "bilinear",
    "clipped_mean",
    "demosaic_bilinear",
    "demosaic_colour",
    "demosaic_dmn",
    "denoise_raw",
    "dmn",
    "get_baseline",
    "hdrplus",
    "hdrplus_merge",
    "inverse_anscombe",
    "invert_clipped_mean",
    "malvar",
    "menon",
    "temporal_mean",
]


class BaselineUnavailableError(ConfigError):
    """A baseline was asked for whose optional dependency is not installed."""


# ---------------------------------------------------------------------------------------------
# Optional dependencies

_COLOUR_HINT = "colour-demosaicing is not installed (pip install 'burstjdd[baselines]')"


def _colour_missing() -> str | None:
    return _COLOUR_HINT if importlib.util.find_spec("colour_demosaicing") is None else None


def _import_colour() -> ModuleType:
    if _colour_missing():
        raise BaselineUnavailableError(_COLOUR_HINT)
    with warnings.catch_warnings():
        # colour-science warns at import time when matplotlib (plotting only) is absent
        warnings.simplefilter("ignore")
        return importlib.import_module("colour_demosaicing")


def _dmn_weights() -> Path | str:
    """Path of demosaicnet's bundled Bayer weights, or the reason why there is none.

    The package is located without importing it: ``import demosaicnet`` needs ``wget`` and
    ``pkg_resources`` (gone from setuptools >= 82) although inference needs neither.
    """
    spec = importlib.util.find_spec("demosaicnet")
    if spec is None or not spec.submodule_search_locations:
        return (
            "demosaicnet not available: package not installed (pip install --no-deps demosaicnet)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "bayer.pth"
    if not path.is_file():
        return f"demosaicnet not available: weights file {path} is missing"
    return path


def _dmn_missing() -> str | None:
    found = _dmn_weights()
    return found if isinstance(found, str) else None


# ---------------------------------------------------------------------------------------------
# Demosaicking. Mosaics are RGGB (..., H, W); outputs (..., 3, H, W).

# Reflect padding by an even amount keeps the Bayer phase (the mirrored pixel has the colour
# of its site), unlike edge-duplicating padding, so borders are demosaicked like the interior.
_BORDER = 4


def demosaic_colour(raw: Tensor, method: str) -> Tensor:
    """Demosaic one RGGB mosaic (H, W) with colour-demosaicing: "malvar" or "menon".

    Malvar, He and Cutler 2004 (gradient-corrected linear filters) or Menon, Andriani and
    Calvagno 2007 (directional filtering with a posteriori decision, refining step on). Runs in
    float64 NumPy on the CPU; returns (3, H, W) in raw's dtype/device (values may leave [0, 1]).
    """
    functions = {
        "malvar": "demosaicing_CFA_Bayer_Malvar2004",
        "menon": "demosaicing_CFA_Bayer_Menon2007",
    }
    if method not in functions:
        raise ConfigError(f"unknown colour-demosaicing method {method!r}; expected malvar, menon")
    fn = getattr(_import_colour(), functions[method])
    padded = np.pad(raw.detach().cpu().double().numpy(), _BORDER, mode="reflect")
    rgb = np.asarray(fn(padded, "RGGB"))[_BORDER:-_BORDER, _BORDER:-_BORDER]  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).to(raw)


class _DemosaicNet(nn.Module):
    """Gharbi et al. 2016 Bayer demosaicnet as released in the ``demosaicnet`` package
    (``BayerDemosaick``, depth 15, width 64, unpadded convolutions; same parameter names).

    Input (B, 3, H, W): a GRBG mosaic split into its colour channels (zeros elsewhere);
    output (B, 3, H - 62, W - 62): every unpadded convolution eats into the border.
    """

    def __init__(self, depth: int = 15, width: int = 64) -> None:
        super().__init__()
        self.width = width
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["pack_mosaic"] = nn.Conv2d(3, 4, 2, stride=2)
        for i in range(depth):
            n_in = 4 if i == 0 else width
            n_out = 2 * width if i == depth - 1 else width
            layers[f"conv{i + 1}"] = nn.Conv2d(n_in, n_out, 3)
            layers[f"relu{i + 1}"] = nn.ReLU(inplace=True)
        self.main_processor = nn.Sequential(layers)
        self.residual_predictor = nn.Conv2d(width, 12, 1)
        self.upsampler = nn.ConvTranspose2d(12, 3, 2, stride=2, groups=3)
        self.fullres_processor = nn.Sequential(
            OrderedDict(
                post_conv=nn.Conv2d(6, width, 3),
                post_relu=nn.ReLU(inplace=True),
                output=nn.Conv2d(width, 3, 1),
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        features = self.main_processor(x)  # (B, 2 width, H/2 - 30, W/2 - 30)
        filtered = features[:, : self.width] * features[:, self.width :]
        upsampled = self.upsampler(self.residual_predictor(filtered))  # (B, 3, H - 60, W - 60)
        crop = (x.shape[-1] - upsampled.shape[-1]) // 2
        skip = x[..., crop : crop + upsampled.shape[-2], crop : crop + upsampled.shape[-1]]
        return self.fullres_processor(torch.cat([skip, upsampled], 1))


# Border lost by the unpadded network (31 px per side), rounded up to keep the Bayer phase.
_DMN_PAD = 32


def demosaic_dmn(raw: Tensor, wb: Tensor) -> Tensor:
    """Demosaic one RGGB mosaic (H, W) with the pretrained demosaicnet (Gharbi et al. 2016).

    The network was trained on sRGB-like images, so the mosaic is white-balanced with ``wb``
    (3,) and gamma-encoded (x^(1/2.2)) before it and decoded after it. The GRBG layout the
    network expects is an RGGB mosaic flipped left-right. (H, W) -> (3, H, W) linear camera
    RGB, raw's dtype/device; the noise-free model, so denoise first.
    """
    weights = _dmn_weights()
    if isinstance(weights, str):
        raise BaselineUnavailableError(weights)
    if min(raw.shape[-2:]) <= _DMN_PAD:
        raise BurstFormatError(
            f"demosaicnet needs images larger than {_DMN_PAD} px, got {tuple(raw.shape)}"
        )
    net = _DemosaicNet()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net = net.to(raw.device).eval()

    wb = wb.to(raw)
    gains = mosaic(wb[:, None, None].expand(3, *raw.shape[-2:]), "RGGB")  # (H, W)
    encoded = (raw * gains).clamp_min(0.0) ** (1.0 / 2.2)
    grbg = from_rggb(encoded, "GRBG")
    planes = colour_masks(grbg, "GRBG")[None]  # (1, 3, H, W)
    planes = F.pad(planes, (_DMN_PAD,) * 4, mode="reflect")
    with torch.no_grad():
        out = net(planes)[0, :, 1:-1, 1:-1]  # (3, H, W)
    out = from_rggb(out, "GRBG").clamp_min(0.0) ** 2.2
    return out / wb[:, None, None]


# ---------------------------------------------------------------------------------------------
# Single-frame denoising


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


def denoise_raw(
    raw: Tensor,
    noise: NoiseLevel,
    params: NlmParams = NlmParams(),
    variance_scale: Tensor | None = None,
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


# ---------------------------------------------------------------------------------------------
# HDR+-style burst alignment and merge (Hasinoff et al., "Burst photography for high dynamic
# range and low-light imaging on mobile cameras", SIGGRAPH Asia 2016, Sec. 4 and 5).


@dataclass(frozen=True)
class HdrPlusParams:
    """Settings of :func:`hdrplus_merge`.

    factors: downsampling of each pyramid level relative to the one before; level 0 is the
        gray image (2x2 means of the Bayer mosaic, half resolution), factor 1.
    tiles: alignment tile size per level (half-overlapping tiles); tiles[0] is also the merge
        tile. radius: search radius per level, in that level's pixels. Levels smaller than
        their tile are skipped. The reach is sum(radius_l * scale_l) gray pixels, ±92 gray =
        ±184 raw pixels with the defaults (scales 1, 2, 4, 16).
    temporal_c: c of the pairwise Wiener merge of Sec. 5 (larger: more averaging, more
        ghosting risk).
    """

    factors: tuple[int, ...] = (1, 2, 2, 4)
    tiles: tuple[int, ...] = (16, 8, 8, 8)
    radius: tuple[int, ...] = (4, 4, 4, 4)
    temporal_c: float = 16.0

    def __post_init__(self) -> None:
        if not len(self.factors) == len(self.tiles) == len(self.radius) >= 1:
            raise ConfigError("HdrPlusParams: factors, tiles and radius need the same length >= 1")
        if self.factors[0] != 1 or any(f < 1 for f in self.factors):
            raise ConfigError(
                f"HdrPlusParams: factors must start at 1 and be >= 1, got {self.factors}"
            )
        if any(t < 2 or t % 2 for t in self.tiles) or any(r < 0 for r in self.radius):
            raise ConfigError("HdrPlusParams: tiles must be even and >= 2, radius >= 0")
        if not self.temporal_c > 0:
            raise ConfigError(f"HdrPlusParams: temporal_c must be > 0, got {self.temporal_c}")


def _tile_origins(size: int, tile: int, device: torch.device) -> Tensor:
    """Top-left coordinates (K,) of half-overlapping tiles covering [0, size): (k - 1) * tile/2.

    Every pixel lies in exactly two tiles per axis, and the tile centres are k * tile/2.
    """
    step = tile // 2
    return (torch.arange(math.ceil(size / step) + 1, device=device) - 1) * step


def _span(origins: Tensor, size: int) -> Tensor:
    """(K,) origins -> (K, size) coordinates origin + 0 .. size - 1."""
    return origins[:, None] + torch.arange(size, device=origins.device)


def _gather(img: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Tiles img[c, rows[i, j, u], cols[i, j, v]] -> (C, Ky, Kx, S, S), coordinates clamped to
    the image (edge replicate). img (C, h, w); rows, cols (Ky, Kx, S) long."""
    h, w = img.shape[-2:]
    index = rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]
    return img.flatten(-2)[:, index]


def _costs(
    ref: Tensor, alt: Tensor, oy: Tensor, ox: Tensor, guess: Tensor, tile: int, radius: int, p: int
) -> Tensor:
    """Tile matching costs for displacements guess + (dy, dx), |dy|, |dx| <= radius.

    ref, alt (h, w); tiles (tile x tile) at origins oy (Ky,), ox (Kx,); guess (Ky, Kx, 2) long.
    Returns (Ky, Kx, n, n), n = 2 radius + 1: the mean of |ref - alt(. + displacement)|^p
    (p = 1: L1, p = 2: L2) over the tile pixels inside both images, +inf where that is fewer
    than half of the tile's pixels inside ``ref`` (so a tile may slide partly out of the other
    frame, which large shifts at coarse levels need, but is not matched on replicated edges).
    """
    h, w = ref.shape[-2:]
    n = 2 * radius + 1
    ky, kx = len(oy), len(ox)
    ry, rx = _span(oy, tile), _span(ox, tile)  # (Ky, T), (Kx, T)
    ref_tiles = _gather(ref[None], ry[:, None].expand(ky, kx, tile), rx.expand(ky, kx, tile))[0]
    ay = _span(oy - radius, tile + n - 1)[:, None] + guess[..., 0, None]  # (Ky, Kx, T + n - 1)
    ax = _span(ox - radius, tile + n - 1)[None] + guess[..., 1, None]
    alt_tiles = _gather(alt[None], ay, ax)[0]  # (Ky, Kx, T + n - 1, T + n - 1)
    ref_rows, ref_cols = (ry >= 0) & (ry < h), (rx >= 0) & (rx < w)  # (Ky, T), (Kx, T)
    alt_rows, alt_cols = (ay >= 0) & (ay < h), (ax >= 0) & (ax < w)
    col_mask = (ref_cols[None, :, None] & alt_cols.unfold(-1, tile, 1)).to(ref)  # (Ky, Kx, n, T)
    costs, counts = [], []
    for dy in range(n):  # vectorised over tiles and horizontal offsets
        row_mask = (ref_rows[:, None] & alt_rows[:, :, dy : dy + tile]).to(ref)  # (Ky, Kx, T)
        band = alt_tiles[:, :, dy : dy + tile].unfold(-1, tile, 1)  # (Ky, Kx, T, n, T)
        diff = (band - ref_tiles[:, :, :, None, :]).abs()
        diff = diff if p == 1 else diff.square()
        count = row_mask.sum(-1, keepdim=True) * col_mask.sum(-1)  # (Ky, Kx, n)
        per_col = (row_mask[:, :, None] @ diff.flatten(-2)).view(ky, kx, n, tile)  # sum over u
        total = (per_col * col_mask).sum(-1)  # (Ky, Kx, n)
        costs.append(total / count.clamp_min(1.0))
        counts.append(count)
    cost, count = torch.stack(costs, 2), torch.stack(counts, 2)  # (Ky, Kx, n, n)
    inside = ref_rows.sum(-1)[:, None] * ref_cols.sum(-1)[None, :]  # (Ky, Kx)
    return cost.masked_fill(2 * count < inside[..., None, None], math.inf)


def _pyramid(gray: Tensor, params: HdrPlusParams) -> list[Tensor]:
    """Box-filtered pyramid of a gray image (h, w), finest first, stopping before a level
    that is smaller than its tile."""
    levels = [gray]
    for factor, tile in zip(params.factors[1:], params.tiles[1:]):
        if min(levels[-1].shape[-2:]) // factor < tile:
            break
        levels.append(F.avg_pool2d(levels[-1][None], factor)[0])
    return levels


def _search(
    ref: Tensor, alt: Tensor, oy: Tensor, ox: Tensor, guess: Tensor, tile: int, radius: int, p: int
) -> Tensor:
    """Block matching at one level: per tile, the displacement guess + d, |d| <= radius per
    axis, of least :func:`_costs`; ties go to the smallest |d|, and a tile with no valid
    displacement keeps its guess. guess (Ky, Kx, 2) long -> (Ky, Kx, 2) long."""
    n = 2 * radius + 1
    d = torch.arange(n, device=ref.device) - radius
    offsets = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).flatten(0, 1)  # (n * n, 2)
    order = offsets.square().sum(-1).argsort(stable=True)  # smallest |d| first (argmin: first)
    cost = _costs(ref, alt, oy, ox, guess, tile, radius, p).flatten(2)[..., order]
    best = cost.argmin(-1)  # (Ky, Kx); all +inf -> index 0 = d = (0, 0)
    return guess + offsets[order][best]


def _upsampled_candidates(
    coarse: Tensor, oy: Tensor, ox: Tensor, tile: int, coarse_tile: int, factor: int
) -> Tensor:
    """Initial guesses of each tile from the coarser level: (M, Ky, Kx, 2) long, the scaled
    displacements of the nearest coarse tile and of its 8 neighbours (HDR+ uses the nearest
    three); the extra candidates let a tile escape an error of its own coarse tile.

    coarse (Jy, Jx, 2) coarser displacements; tile centres are k * tile/2 here and
    j * coarse_tile/2 there, in the coarser level's pixels times ``factor``.
    """
    scale = factor * (coarse_tile // 2)
    jy = torch.round((oy + tile // 2) / scale).long()
    jx = torch.round((ox + tile // 2) / scale).long()
    out = []
    for sy in (0, -1, 1):
        for sx in (0, -1, 1):
            iy = (jy + sy).clamp(0, coarse.shape[0] - 1)
            ix = (jx + sx).clamp(0, coarse.shape[1] - 1)
            out.append(coarse[iy[:, None], ix[None, :]] * factor)
    return torch.stack(out)


def _best_candidate(
    ref: Tensor, alt: Tensor, oy: Tensor, ox: Tensor, candidates: Tensor, tile: int, p: int
) -> Tensor:
    """The candidate displacement (M, Ky, Kx, 2) of least :func:`_costs` -> (Ky, Kx, 2);
    ties (and all invalid) go to the first, the nearest coarse tile's."""
    costs = torch.stack([_costs(ref, alt, oy, ox, c, tile, 0, p)[..., 0, 0] for c in candidates])
    best = costs.argmin(0)  # (Ky, Kx)
    return candidates.gather(0, best[None, :, :, None].expand(1, *best.shape, 2))[0]


def align_tiles(ref: Tensor, alt: Tensor, params: HdrPlusParams = HdrPlusParams()) -> Tensor:
    """Coarse-to-fine tile alignment of ``alt`` to ``ref`` (HDR+ Sec. 4).

    ref, alt (h, w) gray images (2x2 means of the Bayer mosaics). On a pyramid (see
    :class:`HdrPlusParams`), each level takes the best of the upsampled displacements of the
    nine nearest coarser tiles and searches ±radius around it, with an L2 cost on the coarse
    levels and L1 on the finest (:func:`_costs`). Returns (Ky, Kx, 2) long displacements
    (dy, dx) in gray pixels of the finest tiles (origins ``_tile_origins(h, tiles[0])``):
    ref[y, x] ~ alt[y + dy, x + dx] within a tile.
    """
    ref_pyr, alt_pyr = _pyramid(ref, params), _pyramid(alt, params)
    disp: Tensor | None = None
    for level in reversed(range(len(ref_pyr))):
        tile, (h, w) = params.tiles[level], ref_pyr[level].shape[-2:]
        oy = _tile_origins(h, tile, ref.device)
        ox = _tile_origins(w, tile, ref.device)
        p = 1 if level == 0 else 2
        if disp is None:
            guess = torch.zeros(len(oy), len(ox), 2, dtype=torch.long, device=ref.device)
        else:
            candidates = _upsampled_candidates(
                disp, oy, ox, tile, params.tiles[level + 1], params.factors[level + 1]
            )
            guess = _best_candidate(ref_pyr[level], alt_pyr[level], oy, ox, candidates, tile, p)
        disp = _search(ref_pyr[level], alt_pyr[level], oy, ox, guess, tile, params.radius[level], p)
    assert disp is not None
    return disp


@dataclass(frozen=True, eq=False)
class Merged:
    """Output of :func:`hdrplus_merge`: the merged RGGB mosaic (H, W) and, per pixel (H, W),
    the fraction of the single-frame noise variance that the merge leaves (1 = nothing
    merged, 1/N = N frames averaged)."""

    raw: Tensor
    variance_ratio: Tensor


def hdrplus_merge(
    raw: Tensor, noise: NoiseLevel, ref: int, params: HdrPlusParams = HdrPlusParams()
) -> Merged:
    """Align and merge a burst of RGGB mosaics (N, H, W) onto frame ``ref`` (HDR+ Sec. 5).

    Each frame is aligned to ``ref`` with :func:`align_tiles` on the gray images. Each of
    the four Bayer planes is cut into half-overlapping tiles (tiles[0] pixels, raised-cosine
    window) and merged per DFT frequency w (orthonormal DFT) with the pairwise Wiener
    weights of Sec. 5:
        A_z = |D_z|^2 / (|D_z|^2 + c s^2),  D_z = T_0 - T_z,
        merged = 1/N sum_z (T_z + A_z D_z),
    with s^2 the noise variance of a DFT coefficient (shot * reference tile mean + read^2,
    times the window's mean square), so that frames differing from the reference by more than
    the noise (misalignment, occlusion, content outside the frame) are rejected frequency by
    frequency. Treating A_z as constants, the merged coefficient keeps a fraction
    ((1 + sum_z A_z)^2 + sum_z (1 - A_z)^2) / N^2 of the noise variance; its mean over a
    tile's frequencies, overlap-added like the tiles, is ``variance_ratio``. HDR+'s own
    spatial filter is left out: the caller denoises the merge with that variance.
    Returns :class:`Merged` in raw's dtype/device; with N = 1 the mosaic comes back unchanged
    (up to rounding).
    """
    n_frames = raw.shape[0]
    planes = pack(raw)  # (N, 4, h, w)
    gray = planes.mean(1)  # (N, h, w)
    h, w = gray.shape[-2:]
    tile = params.tiles[0]
    step = tile // 2
    oy = _tile_origins(h, tile, raw.device)
    ox = _tile_origins(w, tile, raw.device)
    window = raised_cosine(tile, raw)
    zero = torch.zeros(len(oy), len(ox), 2, dtype=torch.long, device=raw.device)

    # Out-of-image tile pixels replicate the edge, in the reference and (displaced) in frame t.
    rows, cols = _span(oy, tile).clamp(0, h - 1), _span(ox, tile).clamp(0, w - 1)  # (K, T)

    def tiles_of(frame: Tensor, disp: Tensor) -> Tensor:  # -> (4, Ky, Kx, T, T)
        return _gather(frame, rows[:, None] + disp[..., :1], cols[None] + disp[..., 1:])

    ref_tiles = tiles_of(planes[ref], zero)
    signal = ref_tiles.mean((-2, -1)).clamp_min(0.0)  # (4, Ky, Kx)
    sigma2 = (noise.shot * signal + noise.read**2) * window.square().mean()
    sigma2 = sigma2[..., None, None]  # (4, Ky, Kx, 1, 1) per DFT coefficient
    spectrum0 = torch.fft.fft2(ref_tiles * window, norm="ortho")
    total = spectrum0.clone()
    sum_a = torch.zeros_like(ref_tiles)
    sum_keep2 = torch.zeros_like(ref_tiles)
    for t in range(n_frames):
        if t == ref:
            continue
        disp = align_tiles(gray[ref], gray[t], params)  # (Ky, Kx, 2)
        spectrum = torch.fft.fft2(tiles_of(planes[t], disp) * window, norm="ortho")
        diff = spectrum0 - spectrum
        power = diff.abs().square()
        a = power / (power + params.temporal_c * sigma2 + TINY)
        total = total + spectrum0 - (1.0 - a) * diff  # T_z + A_z D_z = T_0 - (1 - A_z) D_z
        sum_a = sum_a + a
        sum_keep2 = sum_keep2 + (1.0 - a).square()
    merged = torch.fft.ifft2(total / n_frames, norm="ortho").real  # (4, Ky, Kx, T, T)
    ratio = ((1.0 + sum_a).square() + sum_keep2).mean((-2, -1), keepdim=True) / n_frames**2

    def overlap_add(x: Tensor) -> Tensor:  # (4, Ky, Kx, T, T) windowed tiles -> (H, W)
        ky, kx = x.shape[1:3]
        columns = x.permute(0, 3, 4, 1, 2).reshape(4, tile * tile, ky * kx)
        canvas = F.fold(columns, ((ky + 1) * step, (kx + 1) * step), tile, stride=step)
        return unpack(canvas[:, 0, step : step + h, step : step + w])  # fold: (4, 1, ., .)

    return Merged(overlap_add(merged), overlap_add(ratio * window))


# ---------------------------------------------------------------------------------------------
# The baselines: RawBurst -> (3, H, W) linear camera RGB in the burst's orientation.


def _reference_rggb(burst: RawBurst) -> Tensor:
    return to_rggb(burst.raw[burst.ref], burst.cfa)  # (H, W)


def bilinear(burst: RawBurst) -> Tensor:
    """Bilinear demosaic of the reference frame, no denoising."""
    return from_rggb(demosaic_bilinear(_reference_rggb(burst)), burst.cfa)


def _denoised_reference(burst: RawBurst) -> Tensor:
    return denoise_raw(_reference_rggb(burst), burst.noise_level())


def malvar(burst: RawBurst) -> Tensor:
    """Reference frame: GAT + non-local means, then Malvar 2004."""
    return from_rggb(demosaic_colour(_denoised_reference(burst), "malvar"), burst.cfa)


def menon(burst: RawBurst) -> Tensor:
    """Reference frame: GAT + non-local means, then Menon 2007."""
    return from_rggb(demosaic_colour(_denoised_reference(burst), "menon"), burst.cfa)


def dmn(burst: RawBurst) -> Tensor:
    """Reference frame: GAT + non-local means, then demosaicnet (Gharbi 2016)."""
    return from_rggb(demosaic_dmn(_denoised_reference(burst), burst.wb), burst.cfa)


def temporal_mean(burst: RawBurst) -> Tensor:
    """Unaligned mean of all frames, then bilinear demosaic."""
    return from_rggb(demosaic_bilinear(to_rggb(burst.raw.mean(0), burst.cfa)), burst.cfa)


def hdrplus(burst: RawBurst) -> Tensor:
    """HDR+ alignment and Wiener merge of all frames, GAT + non-local means at the noise
    variance the merge leaves, then Malvar 2004 (one frame: ``malvar`` up to rounding)."""
    noise = burst.noise_level()
    merged = hdrplus_merge(to_rggb(burst.raw, burst.cfa), noise, burst.ref)
    denoised = denoise_raw(merged.raw.clamp(0.0, 1.0), noise, NlmParams(), merged.variance_ratio)
    return from_rggb(demosaic_colour(denoised, "malvar"), burst.cfa)


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: ``baseline(burst) -> (3, H, W)`` linear camera RGB."""

    name: str
    description: str
    fn: Callable[[RawBurst], Tensor]
    missing: Callable[[], str | None] = lambda: None  # reason it cannot run, or None

    def unavailable_reason(self) -> str | None:
        """Why this baseline cannot run here (a missing optional dependency), or None."""
        return self.missing()

    def __call__(self, burst: RawBurst) -> Tensor:
        reason = self.missing()
        if reason is not None:
            raise BaselineUnavailableError(f"baseline {self.name!r} cannot run: {reason}")
        return self.fn(burst)


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("bilinear", "reference frame: bilinear demosaic, no denoising", bilinear),
        Baseline("malvar", "reference frame: GAT+NLM, Malvar 2004", malvar, _colour_missing),
        Baseline("menon", "reference frame: GAT+NLM, Menon 2007", menon, _colour_missing),
        Baseline("dmn", "reference frame: GAT+NLM, demosaicnet (Gharbi 2016)", dmn, _dmn_missing),
        Baseline("mean", "unaligned temporal mean of all frames, bilinear demosaic", temporal_mean),
        Baseline(
            "hdrplus",
            "HDR+ tile alignment + Wiener merge (Hasinoff 2016), GAT+NLM, Malvar 2004",
            hdrplus,
            _colour_missing,
        ),
    )
}


def get_baseline(name: str) -> Baseline:
    """The registered baseline ``name``; unknown names raise ``ConfigError`` listing them."""
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}"
        ) from None


def available_baselines() -> list[str]:
    """Names of the baselines whose optional dependencies are installed (in registry order)."""
    return [name for name, b in BASELINES.items() if b.unavailable_reason() is None]
