"""HDR+-style tile alignment and pairwise Wiener merge of raw bursts (Hasinoff et al., "Burst
photography for high dynamic range and low-light imaging on mobile cameras", SIGGRAPH Asia 2016,
Sec. 4 and 5), and the merge followed by the shared raw denoiser (:mod:`burstjdd.raw.denoise`).

One implementation serves two users: the ``hdrplus`` / ``hdrplus_dmn`` baselines
(:mod:`burstjdd.eval.baselines`: whole frames, the default pyramid) and the residual base of the
``compact`` model (:func:`burstjdd.models.jddb.residual_base`: patches that the coarse alignment
already brought within a few pixels, a shallower pyramid, :data:`PATCH_ALIGN`).
Mosaics are RGGB (..., H, W) with even H, W; packed planes (..., 4, H/2, W/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import ConfigError
from burstjdd.raw.cfa import pack, unpack
from burstjdd.raw.denoise import denoise_raw
from burstjdd.raw.noise import NoiseLevel, level_from_map

__all__ = [
    "PATCH_ALIGN",
    "HdrPlusParams",
    "Merged",
    "align_tiles",
    "hdrplus_merge",
    "merge_and_denoise",
    "raised_cosine",
]

# Keeps 0 / 0 (identical tiles of a noise-free burst) at 0: such tiles are fully merged.
TINY = 1e-20


def raised_cosine(tile: int, like: Tensor) -> Tensor:
    """(tile, tile) window 1/2 - 1/2 cos(2 pi (x + 1/2) / tile) per axis (HDR+ Sec. 5):
    half-overlapping copies sum to exactly 1."""
    x = torch.arange(tile, dtype=like.dtype, device=like.device)
    w = 0.5 - 0.5 * torch.cos(2.0 * math.pi * (x + 0.5) / tile)
    return w[:, None] * w[None, :]


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
    """Tiles of a batch of images, coordinates clamped to the image (edge replicate): img
    (B, h, w); rows, cols (B, Ky, Kx, S) long, or (1, Ky, Kx, S) for the same tiles of every
    image -> (B, Ky, Kx, S, S)."""
    b, h, w = img.shape
    index = rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]
    flat = index.reshape(index.shape[0], -1).expand(b, -1)  # shared coordinates: no copy
    return img.reshape(b, h * w).gather(1, flat).view(b, *index.shape[1:])


def _costs(
    ref: Tensor, alt: Tensor, oy: Tensor, ox: Tensor, guess: Tensor, tile: int, radius: int, p: int
) -> Tensor:
    """Tile matching costs for displacements guess + (dy, dx), |dy|, |dx| <= radius, of B
    pairs of images at once.

    ref, alt (B, h, w); tiles (tile x tile) at origins oy (Ky,), ox (Kx,); guess (B, Ky, Kx, 2)
    long. Returns (B, Ky, Kx, n, n), n = 2 radius + 1: the mean of |ref - alt(. +
    displacement)|^p (p = 1: L1, p = 2: L2) over the tile pixels inside both images, +inf
    where that is fewer than half of the tile's pixels inside ``ref`` (so a tile may slide
    partly out of the other frame, which large shifts at coarse levels need, but is not matched
    on replicated edges).
    """
    b, h, w = ref.shape
    n = 2 * radius + 1
    ky, kx = len(oy), len(ox)
    ry, rx = _span(oy, tile), _span(ox, tile)  # (Ky, T), (Kx, T)
    ref_tiles = _gather(ref, ry[None, :, None].expand(1, ky, kx, tile),
                        rx[None, None].expand(1, ky, kx, tile))  # (B, Ky, Kx, T, T)
    ay = _span(oy - radius, tile + n - 1)[:, None] + guess[..., 0, None]  # (B, Ky, Kx, T+n-1)
    ax = _span(ox - radius, tile + n - 1)[None] + guess[..., 1, None]
    alt_tiles = _gather(alt, ay, ax)  # (B, Ky, Kx, T + n - 1, T + n - 1)
    ref_rows, ref_cols = (ry >= 0) & (ry < h), (rx >= 0) & (rx < w)  # (Ky, T), (Kx, T)
    alt_rows, alt_cols = (ay >= 0) & (ay < h), (ax >= 0) & (ax < w)
    col_mask = (ref_cols[:, None] & alt_cols.unfold(-1, tile, 1)).to(ref)  # (B, Ky, Kx, n, T)
    col_count = col_mask.sum(-1)  # (B, Ky, Kx, n)
    # One buffer for every row offset: differences of all tiles and column offsets, written in
    # place (a new tensor per offset costs more in page faults than the arithmetic).
    diff = torch.empty(b, ky, kx, tile, n, tile, dtype=ref.dtype, device=ref.device)
    costs, counts = [], []
    for dy in range(n):  # vectorised over pairs, tiles and horizontal offsets
        row_mask = (ref_rows[:, None] & alt_rows[..., dy : dy + tile]).to(ref)  # (B, Ky, Kx, T)
        band = alt_tiles[..., dy : dy + tile, :].unfold(-1, tile, 1)  # (B, Ky, Kx, T, n, T)
        torch.sub(band, ref_tiles[..., None, :], out=diff)
        diff.abs_() if p == 1 else diff.square_()
        count = row_mask.sum(-1, keepdim=True) * col_count  # (B, Ky, Kx, n)
        per_col = (row_mask[..., None, :] @ diff.view(b, ky, kx, tile, n * tile))  # sum over u
        total = (per_col.view(b, ky, kx, n, tile) * col_mask).sum(-1)  # (B, Ky, Kx, n)
        costs.append(total / count.clamp_min(1.0))
        counts.append(count)
    cost, count = torch.stack(costs, -2), torch.stack(counts, -2)  # (B, Ky, Kx, n, n)
    inside = ref_rows.sum(-1)[:, None] * ref_cols.sum(-1)[None, :]  # (Ky, Kx)
    return cost.masked_fill(2 * count < inside[..., None, None], math.inf)


def _pyramid(gray: Tensor, params: HdrPlusParams) -> list[Tensor]:
    """Box-filtered pyramid of gray images (B, h, w), finest first, stopping before a level
    that is smaller than its tile."""
    levels = [gray]
    for factor, tile in zip(params.factors[1:], params.tiles[1:]):
        if min(levels[-1].shape[-2:]) // factor < tile:
            break
        levels.append(F.avg_pool2d(levels[-1], factor))
    return levels


def _search(
    ref: Tensor, alt: Tensor, oy: Tensor, ox: Tensor, guess: Tensor, tile: int, radius: int, p: int
) -> Tensor:
    """Block matching at one level: per tile, the displacement guess + d, |d| <= radius per
    axis, of least :func:`_costs`; ties go to the smallest |d|, and a tile with no valid
    displacement keeps its guess. guess (B, Ky, Kx, 2) long -> (B, Ky, Kx, 2) long."""
    n = 2 * radius + 1
    d = torch.arange(n, device=ref.device) - radius
    offsets = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).flatten(0, 1)  # (n * n, 2)
    order = offsets.square().sum(-1).argsort(stable=True)  # smallest |d| first (argmin: first)
    cost = _costs(ref, alt, oy, ox, guess, tile, radius, p).flatten(-2)[..., order]
    best = cost.argmin(-1)  # (B, Ky, Kx); all +inf -> index 0 = d = (0, 0)
    return guess + offsets[order][best]


def _upsampled_candidates(
    coarse: Tensor, oy: Tensor, ox: Tensor, tile: int, coarse_tile: int, factor: int
) -> Tensor:
    """Initial guesses of each tile from the coarser level: (M, B, Ky, Kx, 2) long, the scaled
    displacements of the nearest coarse tile and of its 8 neighbours (HDR+ uses the nearest
    three); the extra candidates let a tile escape an error of its own coarse tile.

    coarse (B, Jy, Jx, 2) coarser displacements; tile centres are k * tile/2 here and
    j * coarse_tile/2 there, in the coarser level's pixels times ``factor``.
    """
    scale = factor * (coarse_tile // 2)
    jy = torch.round((oy + tile // 2) / scale).long()
    jx = torch.round((ox + tile // 2) / scale).long()
    out = []
    for sy in (0, -1, 1):
        for sx in (0, -1, 1):
            iy = (jy + sy).clamp(0, coarse.shape[1] - 1)
            ix = (jx + sx).clamp(0, coarse.shape[2] - 1)
            out.append(coarse[:, iy[:, None], ix[None, :]] * factor)
    return torch.stack(out)


def _best_candidate(
    ref: Tensor, alt: Tensor, oy: Tensor, ox: Tensor, candidates: Tensor, tile: int, p: int
) -> Tensor:
    """The candidate displacement (M, B, Ky, Kx, 2) of least :func:`_costs` -> (B, Ky, Kx, 2);
    ties (and all invalid) go to the first, the nearest coarse tile's. The M candidates are
    scored as one batch of M·B pairs."""
    m, b = candidates.shape[:2]
    repeat = lambda x: x.expand(m, *x.shape).reshape(m * b, *x.shape[1:])  # noqa: E731
    costs = _costs(repeat(ref), repeat(alt), oy, ox, candidates.flatten(0, 1), tile, 0, p)
    best = costs.view(m, b, *costs.shape[1:3]).argmin(0)  # (B, Ky, Kx)
    return candidates.gather(0, best[None, ..., None].expand(1, *best.shape, 2))[0]


def align_tiles(ref: Tensor, alt: Tensor, params: HdrPlusParams = HdrPlusParams()) -> Tensor:
    """Coarse-to-fine tile alignment of ``alt`` to ``ref`` (HDR+ Sec. 4).

    ref (h, w) gray image (2x2 means of the Bayer mosaic), alt (..., h, w) gray images of the
    frames to align to it, all at once. On a pyramid (see :class:`HdrPlusParams`), each level
    takes the best of the upsampled displacements of the nine nearest coarser tiles and
    searches ±radius around it, with an L2 cost on the coarse levels and L1 on the finest
    (:func:`_costs`). Returns (..., Ky, Kx, 2) long displacements (dy, dx) in gray pixels of the
    finest tiles (origins ``_tile_origins(h, tiles[0])``): ref[y, x] ~ alt[y + dy, x + dx]
    within a tile.
    """
    lead, (h, w) = alt.shape[:-2], alt.shape[-2:]
    alt = alt.reshape(-1, h, w)
    ref_pyr, alt_pyr = _pyramid(ref.expand_as(alt), params), _pyramid(alt, params)
    disp: Tensor | None = None
    for level in reversed(range(len(ref_pyr))):
        tile, (lh, lw) = params.tiles[level], ref_pyr[level].shape[-2:]
        oy = _tile_origins(lh, tile, ref.device)
        ox = _tile_origins(lw, tile, ref.device)
        p = 1 if level == 0 else 2
        if disp is None:
            guess = torch.zeros(alt.shape[0], len(oy), len(ox), 2, dtype=torch.long,
                                device=ref.device)
        else:
            candidates = _upsampled_candidates(
                disp, oy, ox, tile, params.tiles[level + 1], params.factors[level + 1]
            )
            guess = _best_candidate(ref_pyr[level], alt_pyr[level], oy, ox, candidates, tile, p)
        disp = _search(ref_pyr[level], alt_pyr[level], oy, ox, guess, tile, params.radius[level], p)
    assert disp is not None
    return disp.view(*lead, *disp.shape[1:])


@dataclass(frozen=True, eq=False)
class Merged:
    """Output of :func:`hdrplus_merge`: the merged RGGB mosaic (H, W) and, per pixel (H, W),
    the fraction of the single-frame noise variance that the merge leaves (1 = nothing
    merged, 1/N = N frames averaged)."""

    raw: Tensor
    variance_ratio: Tensor


def hdrplus_merge(
    raw: Tensor, var: Tensor, ref: int, params: HdrPlusParams = HdrPlusParams()
) -> Merged:
    """Align and merge a burst of RGGB mosaics (N, H, W) onto frame ``ref`` (HDR+ Sec. 5).

    Each frame is aligned to ``ref`` with :func:`align_tiles` on the gray images. Each of
    the four Bayer planes is cut into half-overlapping tiles (tiles[0] pixels, raised-cosine
    window) and merged per DFT frequency w (orthonormal DFT) with the pairwise Wiener
    weights of Sec. 5:
        A_z = |D_z|^2 / (|D_z|^2 + c s^2),  D_z = T_0 - T_z,
        merged = 1/N sum_z (T_z + A_z D_z),
    with s^2 the noise variance of a DFT coefficient (the mean over the tile of ``var`` (H, W),
    the reference's per-pixel noise variance, e.g. shot * x + read^2, times the window's mean
    square), so that frames differing from the reference by more than
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
        return _gather(frame, (rows[:, None] + disp[..., :1])[None],
                       (cols[None] + disp[..., 1:])[None])

    ref_tiles = tiles_of(planes[ref], zero)
    var_tiles = tiles_of(pack(var.to(raw)[None])[0], zero)  # (4, Ky, Kx, T, T)
    # (4, Ky, Kx, 1, 1): noise variance per DFT coefficient
    sigma2 = var_tiles.mean((-2, -1), keepdim=True).clamp_min(0.0) * window.square().mean()
    spectrum0 = torch.fft.fft2(ref_tiles * window, norm="ortho")
    total = spectrum0.clone()
    sum_a = torch.zeros_like(ref_tiles)
    sum_keep2 = torch.zeros_like(ref_tiles)
    others = [t for t in range(n_frames) if t != ref]
    displacements = align_tiles(gray[ref], gray[others], params) if others else []  # (N-1,Ky,Kx,2)
    for t, disp in zip(others, displacements):
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


# Patches after the coarse alignment are off by at most a few LR cells (8 full-res px each) plus
# local motion: three levels reach +-28 gray px (+-56 raw px) and still fit 32 px patches.
PATCH_ALIGN = HdrPlusParams(factors=(1, 2, 2), tiles=(16, 8, 8), radius=(4, 4, 4))


def merge_and_denoise(raw: Tensor, var: Tensor, ref: int,
                      params: HdrPlusParams = PATCH_ALIGN, level: NoiseLevel | None = None
                      ) -> Tensor:
    """HDR+ alignment and merge of clipped noisy RGGB mosaics (N, H, W) onto frame ``ref``,
    then :func:`~burstjdd.raw.denoise.denoise_raw` (GAT + non-local means, the denoiser of the
    ``hdrplus_dmn`` baseline) at the noise variance the merge leaves, which ends with the
    inverse of the clipped mean (+3.2 dB on the demo's dark sky). ``var`` (H, W): the
    reference's per-pixel noise variance, shot * y + read^2; ``level``: the noise level where
    it is known (the baselines: the burst's metadata), else fitted from ``var``.
    Measured on demo bursts at 192 px (``high``, 32 px motion) after demosaicnet: non-local
    means 27.35 / 29.45 / 30.52 dB (astronaut / coffee / chelsea) against 27.18 / 28.34 / 30.34
    for a two-pass frequency-domain Wiener filter.
    -> (H, W) RGGB mosaic in [0, 1], dtype/device of raw; no gradient."""
    merged = hdrplus_merge(raw, var, ref, params)
    level = level_from_map(raw[ref].clamp(0.0, 1.0), var) if level is None else level
    return denoise_raw(merged.raw.clamp(0.0, 1.0), level, merged.variance_ratio)
