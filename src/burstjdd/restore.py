"""Whole-image restoration: a burst of any size through the tile-based two-stage network.

The network restores square packed tiles (TwoStageJDDB.coarse + reconstruct); this module
turns that into a restore of a whole H × W burst (docs/method.md §1 and §7;
docs/official-network.md §3.3 and §8 items 16, 20, 21):

1. the frames are brought to the RGGB phase by a flip (``cfa.to_rggb``) and packed,
   y (N, 4, h, w) with h = H/2, w = W/2; the noise map is M = sqrt(shot·y + read²) with the
   burst's noise level (stored, else estimated);
2. the packed frames are padded by replication: a context margin of half the overlap on
   every side (so that pixels on the image border are not on a tile border either: the
   network's own zero padding stays outside the image), then at the bottom and right so that
   the tile grid fits (multiples of 4, at least one tile);
3. the DSNet features of the WHOLE padded frames are computed ONCE (frame by frame: the
   InstanceNorm is per frame, so this equals one batched call); every tile is coarse-aligned
   against the whole frames with its own search (the tile is the DPBM block, origins on the LR
   grid), so tiles get their own offsets;
4. chunks of tiles (as many as the memory budget allows) are coarse-aligned and
   reconstructed; each tile's output is weighted by a feathered window and accumulated, and
   the sum is divided by the accumulated weights (no seams);
5. the canvas is cropped back to the image (2h × 2w), flipped back to the burst's phase
   (``cfa.from_rggb``) and cropped to ``meta["size"]`` (the visible size before padding to
   even), when present.

Tile layout (all in packed pixels; the public options are in FULL-RESOLUTION pixels, twice as
many): tiles of P = tile/2 packed pixels (a multiple of 4), neighbours overlapping by at least
O = overlap/2. Along an axis of length L >= P, n = ceil((L − O) / (P − O)) tiles are spread
evenly, origins floored to the LR grid (multiples of 4), so no padding beyond a multiple of 4
is needed and every overlap is >= O.

Blending window (per axis, on the full-resolution output of a tile, V = 2·O pixels at each
side that has a neighbour): weight 0 over the outer V/4 pixels (the tile's own border, where
its convolutions saw padding instead of image), a raised-cosine ramp sin²(π(j + ½) / (2r))
over the next r = V/2 pixels, 1 inside; sides on the image border are not tapered. Two
neighbours that overlap by exactly V pixels then have weights summing to exactly 1 (the ramps
are complementary); wider overlaps are handled by the normalisation. A model whose output at
a pixel depends only on inputs within V/4 full-res pixels gives the untiled result exactly;
the real network does not (ACNSe channel attention pools over the whole tile,
docs/official-network.md §8 item 16), so tiled and untiled outputs differ slightly
(tests/test_restore.py measures it).

Frames: any N >= 1. The network takes any N (the GRU runs over them), but its cost grows
with N and the paper trains with N = 5, so at most ``max_frames`` frames (default 8) are used:
those nearest the reference in time (ties: the earlier frame first), in temporal order.

Search radius: in full-resolution pixels. Default (paper §3.2: 48 px for 720p, 128 px for 4K):
48 px for images whose long side is <= 1280 px, growing linearly with the long side to 128 px
at 3840 px and capped there, rounded up to a multiple of 8 (one LR pixel).

Global pre-alignment (``prealign``, default on; docs/method.md §7.1): before the coarse
alignment, each frame's global translation against the reference is estimated by phase
correlation (:mod:`burstjdd.raw.global_align`), and each frame whose estimate is reliable is
moved by it (whole packed frames, by multiples of 4 packed pixels, replicate padding), so that
every tile's search window is centred on its frame's global shift and the radius only has to
cover what is left. Where an estimate is unreliable the frame is not moved and, unless the
user gave a radius, the radius widens to reach it (:func:`auto_search_radius`). Not for models
without coarse alignment (``ca="none"``), and never in training.

Memory: the tiles in flight are bounded by ``max_memory`` bytes (default: 2 GiB on CPU/MPS,
half the free memory on CUDA) with the estimate of :func:`tile_bytes`. Held besides: the
padded packed frames and noise maps, their features and the output canvas and weights, about
(8·N + N·C/16 + 16)·h·w·4 bytes for packed h × w (C = 16 DSNet channels): ~0.75 GB for
5 × 12 MP, plus the burst itself.

Precision (``precision="auto"``): the reconstruction runs under autocast bfloat16 on CUDA
(float16 where bfloat16 is unsupported) and on a CPU that computes bfloat16 natively
(AVX512-BF16, AMX, Arm BF16: :func:`~burstjdd.hardware.native_bf16`), float32 elsewhere; "fp32",
"bf16" and "fp16" force one. The DSNet features, the block matching, the deformable
convolutions' sampling positions, the HDR+ merge of the residual base and the blending always
run in float32 (argmins and sub-pixel positions are sensitive to rounding). On CPU the result
is deterministic: the same input gives the same output, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.hardware import native_bf16
from burstjdd.models import hub
from burstjdd.models.classical import build_classical, is_classical
from burstjdd.models.dsnet import LR_SCALE
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.cfa import LR_GRID, from_rggb, pack, to_rggb
from burstjdd.raw.global_align import GlobalMotion, estimate_global_motion, shift_frames
from burstjdd.raw.noise import noise_map

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "AlignmentPlan",
    "RestoreOptions",
    "Restorer",
    "TileGrid",
    "alignment_plan",
    "auto_search_radius",
    "auto_tile",
    "autocast_dtype",
    "blend_window",
    "default_search_radius",
    "resolve_device",
    "resolve_tile",
    "restore_burst",
    "select_frames",
    "tile_bytes",
    "tile_grid",
    "tile_layout",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_CPU_MEMORY = 2 << 30  # bytes of tiles in flight on CPU/MPS
MAX_STRENGTH = 2.0  # RestoreOptions.strength lies in 0..MAX_STRENGTH
# Largest search radius accepted before the burst is seen (full-res px); a burst then limits it
# to its own larger side.
MAX_SEARCH_RADIUS = 100_000
# The automatic radius reaches an unreliable global estimate plus this margin (full-res px)...
SEARCH_MARGIN = 2 * LR_GRID
# ... but at most this many times the default radius (the matching cost grows with its square).
MAX_RADIUS_GROWTH = 2
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class RestoreOptions:
    """How a burst is tiled and run (sizes in FULL-RESOLUTION pixels).

    tile: side of a square tile (a multiple of 8, >= 32; 256 = 128 packed pixels); None: the
        largest that the memory budget holds, 256..512 (:func:`auto_tile`);
    overlap: minimum overlap of neighbouring tiles (a multiple of 8, 0 <= overlap <= tile/2);
        None: a quarter of the tile, at most 64 (rounded down to a multiple of 8);
    search_radius: coarse-alignment search radius, None = :func:`default_search_radius`;
    max_frames: at most this many frames, nearest the reference (:func:`select_frames`);
    max_memory: byte budget of the tiles in flight (:func:`tile_bytes`), None = the default;
    precision: "auto" (bf16 on CUDA and on CPUs with native bf16, else fp32), "fp32", "bf16"
        or "fp16" (:func:`autocast_dtype`);
    strength: denoising strength in [0, 2]: the noise level the network (and the classical
        denoiser) is told is the burst's times this (1: as measured; below 1 keeps more
        texture and noise, above 1 smooths more);
    prealign: global pre-alignment of the frames before the coarse alignment (module
        docstring), and the automatic radius that follows from it.
    """

    tile: int | None = None
    overlap: int | None = None
    search_radius: float | None = None
    max_frames: int = 8
    max_memory: int | None = None
    precision: str = "auto"
    strength: float = 1.0
    prealign: bool = True

    def __post_init__(self) -> None:
        if self.overlap is None and isinstance(self.tile, int):
            step = 2 * LR_SCALE
            object.__setattr__(self, "overlap", min(64, self.tile // 4 // step * step))
        for name, low in (("tile", 32), ("overlap", 0)):
            value = getattr(self, name)
            if value is None:  # tile None: chosen per burst, overlap then with it
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low \
                    or value % (2 * LR_SCALE):
                raise ConfigError(f"{name} must be a multiple of {2 * LR_SCALE} full-res pixels "
                                  f">= {low}, got {value!r}")
        if self.tile is not None and 2 * self.overlap > self.tile:
            raise ConfigError(f"overlap {self.overlap} must be at most half the tile {self.tile}")
        if self.search_radius is not None and not (
                isinstance(self.search_radius, (int, float))
                and 0 <= self.search_radius <= MAX_SEARCH_RADIUS):
            raise ConfigError(f"search radius must be a number in 0..{MAX_SEARCH_RADIUS} "
                              f"full-res pixels, got {self.search_radius!r}")
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) \
                or self.max_frames < 1:
            raise ConfigError(f"max_frames must be an integer >= 1, got {self.max_frames!r}")
        if self.max_memory is not None and (
                isinstance(self.max_memory, bool) or not isinstance(self.max_memory, int)
                or self.max_memory <= 0):
            raise ConfigError(f"max_memory must be a positive number of bytes, "
                              f"got {self.max_memory!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) \
                or not 0.0 <= self.strength <= MAX_STRENGTH:
            raise ConfigError(f"strength must be a number in 0..{MAX_STRENGTH:g}, "
                              f"got {self.strength!r}")
        if not isinstance(self.prealign, bool):
            raise ConfigError(f"prealign must be True or False, got {self.prealign!r}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA if available, else MPS if available, else CPU; "cpu" | "cuda[:k]" | "mps"
    are checked to be available (ConfigError otherwise)."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here")
    if dev.type == "mps" and not mps_ok:
        raise ConfigError("device 'mps' was asked for but MPS is not available here")
    return dev


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the reconstruction, or None for plain float32. "auto": bf16 on a
    GPU that has it (else fp16), bf16 on a CPU that computes it natively
    (:func:`~burstjdd.hardware.native_bf16`), float32 on other CPUs (where bf16 is emulated and
    slower) and on MPS."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bf16() else None
    return _HALF.get(precision)


# ---------------------------------------------------------------------------------------------
# small pure helpers


def default_search_radius(height: int, width: int) -> int:
    """Default coarse-alignment search radius in full-resolution pixels for an H × W image.

    Paper §3.2 (48 px for 720p, 128 px for 4K): 48 for a long side <= 1280, then linear in the
    long side up to 128 at 3840 and capped there; rounded up to a multiple of 8 (one LR pixel).
    """
    long_side = max(height, width)
    radius = 48 + 80 * (long_side - 1280) / (3840 - 1280)
    radius = min(max(radius, 48.0), 128.0)
    return LR_GRID * math.ceil(radius / LR_GRID)


def auto_search_radius(height: int, width: int, motion: GlobalMotion | None) -> int:
    """The search radius (full-res px) of a restore without a user radius, for an H × W burst
    whose global motion is ``motion`` (None: not estimated).

    Pre-aligned frames only keep local motion, which does not grow with the shift, so the
    radius stays :func:`default_search_radius`. A frame whose estimate is unreliable is not
    moved: the radius then reaches its estimate plus SEARCH_MARGIN, rounded up to the LR grid,
    at most MAX_RADIUS_GROWTH times the default.
    """
    base = default_search_radius(height, width)
    unreliable = None if motion is None else ~motion.reliable
    if unreliable is None or not bool(unreliable.any()):
        return base
    reach = int(motion.shifts[unreliable].abs().max()) + SEARCH_MARGIN
    return min(max(base, LR_GRID * math.ceil(reach / LR_GRID)), MAX_RADIUS_GROWTH * base)


def select_frames(n_frames: int, ref: int, max_frames: int) -> tuple[list[int], int]:
    """The frames used for a burst of ``n_frames`` with reference ``ref``: all of them when
    n_frames <= max_frames, else the ``max_frames`` nearest the reference in time (ties: the
    earlier frame first). Returns (indices in temporal order, index of the reference in them).
    """
    if not 0 <= ref < n_frames:
        raise BurstFormatError(f"reference {ref} out of range for {n_frames} frames")
    nearest = sorted(range(n_frames), key=lambda t: (abs(t - ref), t))[:max_frames]
    indices = sorted(nearest)
    return indices, indices.index(ref)


def tile_bytes(nf: int, n_frames: int, size: int) -> int:
    """Estimated peak bytes of reconstructing ONE P × P packed tile of N frames (float32).

    4·P²·(N·(28·nf + 600) + 40·nf): per frame the features, the ACNSe and PCD temporaries
    (28·nf values per packed pixel) and the deformable convolution's offset/grid tensors (~600,
    8 offset groups); per tile the 2× up-converted UNet (40·nf). Fitted to the measured peak
    RSS of ``TwoStageJDDB.reconstruct`` on CPU (nf 8..64, N 1..8, P 64..128), which it
    over-estimates by 10-35 %.
    """
    return 4 * size * size * (n_frames * (28 * nf + 600) + 40 * nf)


def auto_tile(nf: int, n_frames: int, budget: int) -> int:
    """The tile side (full-res px) of ``RestoreOptions(tile=None)``: the largest multiple of 64
    in 256..512 of which one tile fits in ``budget`` bytes (:func:`tile_bytes`), else 256.

    Larger tiles waste less on overlaps: with 64 px of overlap, 256 px tiles compute 1.8× the
    image area and 512 px tiles 1.3×."""
    for tile in range(512, 256, -64):
        if tile_bytes(nf, n_frames, tile // 2) <= budget:
            return tile
    return 256


def resolve_tile(options: RestoreOptions, nf: int, n_frames: int, device: torch.device
                 ) -> RestoreOptions:
    """``options`` with ``tile=None`` replaced by :func:`auto_tile` of the memory budget
    (``max_memory`` or the device's default) for a model of width ``nf`` and N frames."""
    if options.tile is not None:
        return options
    budget = options.max_memory or _default_memory(device)
    return dataclasses.replace(options, tile=auto_tile(nf, n_frames, budget))


def _default_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return DEFAULT_CPU_MEMORY


def _axis_origins(length: int, size: int, overlap: int) -> tuple[int, ...]:
    """Tile origins along one axis: length and size multiples of 4, length >= size.

    n = ceil((length − overlap) / (size − overlap)) tiles spread evenly from 0 to length − size,
    floored to multiples of 4, so neighbours overlap by >= overlap (packed pixels).
    """
    if length <= size:
        return (0,)
    n = math.ceil((length - overlap) / (size - overlap))
    span = (length - size) // LR_SCALE
    return tuple(LR_SCALE * ((i * span) // (n - 1)) for i in range(n))


@dataclass(frozen=True)
class TileGrid:
    """Tiles over a packed frame (packed pixels): square tiles of ``size`` with top-left
    corners at every (row, col) of ``rows`` × ``cols``, covering a frame padded to
    ``height`` × ``width`` (multiples of 4, >= size)."""

    size: int
    overlap: int
    height: int
    width: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def origins(self) -> list[tuple[int, int, int, int]]:
        """(row, col, i, j) of every tile in row-major order (i, j: its grid position)."""
        return [(r, c, i, j) for i, r in enumerate(self.rows) for j, c in enumerate(self.cols)]


def tile_grid(h: int, w: int, tile: int, overlap: int) -> TileGrid:
    """The tile layout for a packed h × w frame, tile/overlap in packed pixels (multiples of 4).

    A frame smaller than the tile gets a single tile of its (rounded-up) size: for a square
    tile, the longer side rounded up to a multiple of 4.
    """
    ceil4 = lambda v: LR_SCALE * math.ceil(v / LR_SCALE)  # noqa: E731
    size = min(tile, ceil4(max(h, w)))
    height, width = max(ceil4(h), size), max(ceil4(w), size)
    overlap = min(overlap, size // 2)
    return TileGrid(size, overlap, height, width, _axis_origins(height, size, overlap),
                    _axis_origins(width, size, overlap))


def tile_layout(h: int, w: int, options: RestoreOptions) -> tuple[TileGrid, int]:
    """The tiles of a restore of packed h × w frames with ``options``, and the context margin
    (packed pixels) added on every side of the image before tiling (half the overlap)."""
    border = options.overlap // 4
    grid = tile_grid(h + 2 * border, w + 2 * border, options.tile // 2, options.overlap // 2)
    return grid, border


def blend_window(length: int, overlap: int, taper_start: bool, taper_end: bool,
                 dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    """1-D feathering weights (length,) of a tile, over ``overlap`` pixels at each tapered end.

    Per tapered side: 0 over the outer overlap//4 pixels, raised-cosine ramp sin²(π(j+½)/(2r))
    over the next r = overlap − 2·(overlap//4), then 1. A tile's tapered end and its
    neighbour's tapered start, overlapping by exactly ``overlap`` pixels, sum to 1.
    """
    w = torch.ones(length, dtype=torch.float64, device=device)
    margin = overlap // 4
    ramp_len = overlap - 2 * margin
    if ramp_len > 0:
        j = torch.arange(ramp_len, dtype=torch.float64, device=device)
        ramp = torch.sin(math.pi * (j + 0.5) / (2 * ramp_len)) ** 2
        side = torch.cat([torch.zeros(margin, dtype=torch.float64, device=device), ramp])
        if taper_start:
            w[: side.numel()] = side
        if taper_end:
            w[length - side.numel():] = torch.minimum(w[length - side.numel():], side.flip(0))
    return w.to(dtype)


@dataclass(frozen=True)
class AlignmentPlan:
    """What a restore does before its coarse alignment (module docstring, "Global
    pre-alignment").

    frames: the burst's frames used (:func:`select_frames`), in order; ref: the reference's
    position in them; motion: their global motion against the reference (None: pre-alignment
    off, or a model without coarse alignment); shifts: (len(frames), 2) long, the (dy, dx)
    full-res px each frame is moved by (its reliable estimate, else 0); radius: the coarse
    alignment's search radius, full-res px.
    """

    frames: tuple[int, ...]
    ref: int
    motion: GlobalMotion | None
    shifts: Tensor
    radius: float


def _plan(packed: Tensor, indices: Sequence[int], ref: int, size: tuple[int, int],
          options: RestoreOptions, aligns: bool) -> AlignmentPlan:
    """The :class:`AlignmentPlan` of packed RGGB frames (N, 4, h, w) of visible size ``size``
    (H0, W0); aligns: the model has a coarse alignment (else nothing is estimated)."""
    h0, w0 = size
    motion = estimate_global_motion(packed, ref) if options.prealign and aligns else None
    shifts = torch.zeros(packed.shape[0], 2, dtype=torch.long)
    if motion is not None:
        shifts = motion.shifts * motion.reliable[:, None]
    radius = options.search_radius
    if radius is None:
        radius = auto_search_radius(h0, w0, motion)
    elif radius > max(h0, w0):
        raise ConfigError(f"search radius {radius:g} px is beyond this {w0}x{h0} burst: use "
                          f"0..{max(h0, w0)} px (default {default_search_radius(h0, w0)})")
    return AlignmentPlan(tuple(indices), ref, motion, shifts, radius)


def alignment_plan(burst: RawBurst, options: RestoreOptions = RestoreOptions(),
                   ref: int | None = None) -> AlignmentPlan:
    """The global motion and the search radius that :func:`restore_burst` would use for
    ``burst`` with ``options`` and a model with coarse alignment (``burstjdd analyze``)."""
    indices, ref = _frames(burst, ref, options)
    packed = pack(to_rggb(burst.raw[indices].float(), burst.cfa))
    return _plan(packed, indices, ref, _visible_size(burst), options, aligns=True)


def _frames(burst: RawBurst, ref: int | None, options: RestoreOptions) -> tuple[list[int], int]:
    """The frames a restore of ``burst`` uses and the reference's position in them; ref:
    the reference frame index (default ``burst.ref``)."""
    if not isinstance(burst, RawBurst):
        raise BurstFormatError(f"expected a RawBurst, got {type(burst).__name__}")
    ref = burst.ref if ref is None else ref
    if isinstance(ref, bool) or not isinstance(ref, numbers.Integral):
        raise BurstFormatError(f"reference index must be an integer, got {ref!r}")
    return select_frames(burst.n_frames, int(ref), options.max_frames)


def _visible_size(burst: RawBurst) -> tuple[int, int]:
    """(H0, W0): meta["size"] (the visible size before padding to even) or the raw size."""
    h, w = burst.height, burst.width
    size = burst.meta.get("size")
    if size is None:
        return h, w
    ok = isinstance(size, Sequence) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in size)
    if not ok or not (0 < size[0] <= h and 0 < size[1] <= w):
        raise BurstFormatError(f"meta['size'] must be (H0, W0) with 0 < H0 <= {h} and "
                               f"0 < W0 <= {w}, got {size!r}")
    return int(size[0]), int(size[1])


# ---------------------------------------------------------------------------------------------
# the restore


def _ca_features(model: nn.Module, frames: Tensor) -> Tensor:
    """Matching features of the whole frames (1, N, 4, H, W) → (1, N, C, H/4, W/4), one frame
    at a time (bounded memory; the DSNet's InstanceNorm is per frame, so it equals one call)."""
    return torch.cat([model.ca_features(frames[:, t : t + 1]) for t in range(frames.shape[1])],
                     dim=1)


def _crop_tiles(x: Tensor, origins: Sequence[tuple[int, int]], size: int) -> Tensor:
    """x (N, C, H, W), K origins (row, col) → (K, N, C, size, size)."""
    return torch.stack([x[..., r : r + size, c : c + size] for r, c in origins])


def _aligned_tiles(model: nn.Module, feats: Tensor | None, frames: Tensor, noise: Tensor,
                   ref: int, origins: Sequence[tuple[int, int]], size: int,
                   radius_px: float) -> tuple[Tensor, Tensor]:
    """Coarse alignment (DPBM, hard) of K reference tiles against the whole frames, with the
    features precomputed once for all tiles.

    frames/noise (1, N, 4, H, W) → aligned frames and noise maps, each (K, N, 4, P, P).
    """
    if feats is None:  # ca="none": the tiles as they are
        return _crop_tiles(frames[0], origins, size), _crop_tiles(noise[0], origins, size)
    origins_packed = torch.tensor(origins, dtype=torch.long, device=frames.device)[None]
    ca = model.coarse(frames, noise, ref, origins_packed, size, radius_px, feats=feats)
    return ca.frames[0], ca.noise[0]


@torch.no_grad()
def restore_burst(model: nn.Module, burst: RawBurst, options: RestoreOptions = RestoreOptions(),
                  *, device: torch.device | str = "cpu", ref: int | None = None,
                  progress: bool = False) -> Tensor:
    """Restore the reference frame of ``burst`` with ``model`` (a TwoStageJDDB in eval mode on
    ``device``, or any module with ``config``, ``ca_features``, ``coarse`` and ``reconstruct``).

    ref: reference frame index (default ``burst.ref``). Returns linear camera RGB (3, H0, W0)
    float32 on the CPU, in the burst's orientation, (H0, W0) = meta["size"] or the raw size.
    See the module docstring for the tiling, blending, frame and memory rules.
    """
    device = torch.device(device)
    indices, ref = _frames(burst, ref, options)
    h0, w0 = _visible_size(burst)
    level = burst.noise_level()
    n = len(indices)
    options = resolve_tile(options, model.config.nf, n, device)
    budget = options.max_memory or _default_memory(device)

    # (N, H, W) file phase -> RGGB -> packed (N, 4, h, w), padded for the tile grid
    y = pack(to_rggb(burst.raw[indices].to(device=device, dtype=torch.float32), burst.cfa))
    h, w = y.shape[-2:]
    plan = _plan(y, indices, ref, (h0, w0), options, aligns=model.config.ca != "none")
    y = shift_frames(y, plan.shifts // 2)  # full-res -> packed px (multiples of 4)
    grid, border = tile_layout(h, w, options)
    y = F.pad(y, (border, grid.width - w - border, border, grid.height - h - border),
              mode="replicate")
    frames = y[None]  # (1, N, 4, Hp, Wp)
    noise = options.strength * noise_map(frames, level.shot, level.read)  # the level told
    radius = plan.radius
    feats = None if model.config.ca == "none" else _ca_features(model, frames)

    size, out_size = grid.size, 2 * grid.size
    canvas = torch.zeros(3, 2 * grid.height, 2 * grid.width, device=device)
    weights = torch.zeros(1, 2 * grid.height, 2 * grid.width, device=device)
    window_rows = [blend_window(out_size, 2 * grid.overlap, i > 0, i < len(grid.rows) - 1,
                                device=device) for i in range(len(grid.rows))]
    window_cols = [blend_window(out_size, 2 * grid.overlap, j > 0, j < len(grid.cols) - 1,
                                device=device) for j in range(len(grid.cols))]
    chunk = max(1, budget // tile_bytes(model.config.nf, n, size))
    half = autocast_dtype(options.precision, device)
    tiles = grid.origins
    with tqdm(total=len(tiles), desc="restore", unit="tile", disable=not progress) as bar:
        for start in range(0, len(tiles), chunk):
            group = tiles[start : start + chunk]
            patches, patch_noise = _aligned_tiles(model, feats, frames, noise, ref,
                                                  [(r, c) for r, c, _, _ in group], size, radius)
            with torch.autocast(device.type, dtype=half, enabled=half is not None):
                images, _ = model.reconstruct(patches, patch_noise, ref)  # (K, 3, 2P, 2P)
            for image, (r, c, i, j) in zip(images.float(), group):
                win = window_rows[i][:, None] * window_cols[j][None, :]  # (2P, 2P)
                rows, cols = slice(2 * r, 2 * r + out_size), slice(2 * c, 2 * c + out_size)
                canvas[:, rows, cols] += image * win
                weights[:, rows, cols] += win
            bar.update(len(group))

    b2 = 2 * border
    out = (canvas / weights)[:, b2 : b2 + 2 * h, b2 : b2 + 2 * w]  # weights > 0 (module doc)
    out = from_rggb(out, burst.cfa)[:, :h0, :w0]
    return out.to(device="cpu", dtype=torch.float32).contiguous()


# ---------------------------------------------------------------------------------------------
# user-facing class


class Restorer:
    """Restores bursts with a model: ``Restorer(model).restore(burst) -> (3, H, W)``.

    model: a TwoStageJDDB (moved to ``device`` and put in eval mode, in place);
    device: "auto" (CUDA, else MPS, else CPU) | "cpu" | "cuda" | "mps";
    tile, overlap, search_radius (full-resolution pixels), max_frames, max_memory (bytes),
    precision, strength (denoising strength 0..2, default 1), prealign (global pre-alignment,
    default on): see :class:`RestoreOptions`.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "auto",
                 tile: int | None = None, overlap: int | None = None,
                 search_radius: float | None = None,
                 precision: str = "auto", max_frames: int = 8,
                 max_memory: int | None = None, strength: float = 1.0,
                 prealign: bool = True) -> None:
        if not isinstance(model, nn.Module) or not hasattr(model, "reconstruct"):
            raise ConfigError(f"Restorer needs a TwoStageJDDB model, got {type(model).__name__}")
        self.options = RestoreOptions(tile, overlap, search_radius, max_frames, max_memory,
                                      precision, strength, prealign)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":  # oneDNN's convolutions are faster on NHWC tensors
            self.model.to(memory_format=torch.channels_last)
        self.name = type(model).__name__  # what the model is called in messages

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None,
                        device: str | torch.device = "auto", **options: object) -> Restorer:
        """A Restorer with weights from a directory, a shipped name, or ``"classical"`` (the
        classical pipeline: no learned weights); None: :func:`~burstjdd.models.hub.default_model`
        for the device (the best shipped learned model, else ``classical``). Never uses the
        network; WeightsError when the weights cannot be found or loaded. ``options``: as
        :class:`Restorer`."""
        if name_or_path is None:
            name_or_path = hub.default_model(resolve_device(device))
        if is_classical(name_or_path):
            restorer = cls(build_classical(), device=device, **options)
        else:
            path = hub.resolve_weights(name_or_path)
            restorer = cls(hub.load_pretrained(path), device=device, **options)
        restorer.name = str(name_or_path)
        return restorer

    def restore(self, burst: RawBurst, ref: int | None = None, progress: bool = True) -> Tensor:
        """Restore the reference frame (default ``burst.ref``) of ``burst``: linear camera RGB
        (3, H, W) float32 on the CPU, in the burst's orientation and size."""
        return restore_burst(self.model, burst, self.options, device=self.device, ref=ref,
                             progress=progress)

    def __repr__(self) -> str:
        o = self.options
        return (f"Restorer({type(self.model).__name__}, device={self.device}, tile={o.tile}, "
                f"overlap={o.overlap}, search_radius={o.search_radius}, "
                f"precision={o.precision!r})")
