"""Bayer colour filter arrays: pattern names, packing, mosaicking, phase normalisation.

A pattern is named by the colours of its top-left 2x2 cell in reading order ("RGGB": R at
(0, 0), G at (0, 1), G at (1, 0), B at (1, 1)). The network only ever sees RGGB; any other
phase is brought to RGGB by flipping the image (``to_rggb``) and the output is flipped back
(``from_rggb``). A flip keeps every pixel, so no edge row or column is lost and the restore is
exact, but it needs H and W even (otherwise the flipped phase is not RGGB).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.checks import check_shape
from burstjdd.errors import BurstFormatError

PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")

# The LR grid of coarse alignment, in full-resolution pixels per LR (DSNet feature) pixel:
# 2 per packed pixel x 4 packed pixels per LR pixel. Defined once here, the lowest layer that
# needs it: synth snaps reference crops to it, models and restore align and tile on it.
LR_GRID = 8

# Flipping these dims of a mosaic of the given phase yields an RGGB mosaic (and back).
_FLIPS: dict[str, tuple[int, ...]] = {
    "RGGB": (),
    "BGGR": (-2, -1),
    "GRBG": (-1,),
    "GBRG": (-2,),
}

_CHANNEL = {"R": 0, "G": 1, "B": 2}


def check_pattern(name: str) -> str:
    """Return the canonical (upper-case) pattern name; raise ``BurstFormatError`` if unknown."""
    if isinstance(name, str):
        canonical = name.strip().upper()
        if canonical in PATTERNS:
            return canonical
    raise BurstFormatError(f"unknown CFA pattern {name!r}; expected one of {', '.join(PATTERNS)}")


def pack(raw: Tensor) -> Tensor:
    """Pack an RGGB mosaic into its four 2x2 sub-lattices.

    raw (..., H, W), H and W even -> (..., 4, H/2, W/2) with channels [R, Gr, Gb, B] taken from
    the pixels (0, 0), (0, 1), (1, 0), (1, 1) of each 2x2 cell.
    """
    check_shape(raw, ("*", "H", "W"), what="pack: raw", multiple_of={"H": 2, "W": 2})
    h, w = raw.shape[-2] // 2, raw.shape[-1] // 2
    cells = raw.unflatten(-1, (w, 2)).unflatten(-3, (h, 2))  # (..., h, 2, w, 2)
    cells = cells.movedim((-3, -1), (-4, -3))  # (..., 2 [row], 2 [col], h, w)
    return cells.flatten(-4, -3)  # (..., 4, h, w)


def unpack(packed: Tensor) -> Tensor:
    """Inverse of :func:`pack`: (..., 4, h, w) [R, Gr, Gb, B] -> RGGB mosaic (..., 2h, 2w)."""
    check_shape(packed, ("*", "4", "h", "w"), what="unpack: packed")
    h, w = packed.shape[-2:]
    cells = packed.unflatten(-3, (2, 2))  # (..., 2 [row], 2 [col], h, w)
    cells = cells.movedim((-4, -3), (-3, -1))  # (..., h, 2, w, 2)
    return cells.reshape(*packed.shape[:-3], 2 * h, 2 * w)


def mosaic(rgb: Tensor, pattern: str = "RGGB") -> Tensor:
    """Sample an RGB image on a Bayer lattice.

    rgb (..., 3, H, W), H and W even -> raw (..., H, W) where each pixel keeps the one channel
    the pattern puts there (e.g. RGGB: raw[0, 0] = R, raw[0, 1] = raw[1, 0] = G, raw[1, 1] = B).
    """
    pattern = check_pattern(pattern)
    check_shape(rgb, ("*", "3", "H", "W"), what="mosaic: rgb", multiple_of={"H": 2, "W": 2})
    h, w = rgb.shape[-2:]
    cell = torch.tensor([_CHANNEL[c] for c in pattern], device=rgb.device).view(2, 2)
    index = cell.repeat(h // 2, w // 2)  # (H, W) channel index of each site
    index = index.expand(*rgb.shape[:-3], 1, h, w)
    return rgb.gather(-3, index).squeeze(-3)


def to_rggb(x: Tensor, pattern: str) -> Tensor:
    """Flip the last two dims so that a mosaic of phase ``pattern`` becomes RGGB.

    x (..., H, W) with H and W even: a mosaic, or any image aligned with one (e.g. (..., 3, H, W)
    or a noise map). BGGR flips both axes, GRBG the columns (last dim), GBRG the rows. It is a
    flip, not a crop: no edge row or column is dropped and :func:`from_rggb` restores x exactly.
    """
    pattern = check_pattern(pattern)
    check_shape(x, ("*", "H", "W"), what="to_rggb: x", multiple_of={"H": 2, "W": 2})
    dims = _FLIPS[pattern]
    return x.flip(dims) if dims else x


def from_rggb(x: Tensor, pattern: str) -> Tensor:
    """Inverse of :func:`to_rggb` (the same flips, as a flip is its own inverse).

    Works on mosaics (..., H, W) and on full-resolution outputs (..., C, H, W); H and W even.
    """
    return to_rggb(x, pattern)


def colour_masks(raw: Tensor, pattern: str = "RGGB") -> Tensor:
    """(..., H, W) mosaic -> (..., 3, H, W): channel c keeps the mosaic at the CFA's c sites."""
    eye = torch.eye(3, dtype=raw.dtype, device=raw.device)[:, :, None, None]  # (3, 3, 1, 1)
    sites = mosaic(eye.expand(3, 3, *raw.shape[-2:]), pattern)  # (3, H, W): 1 at colour-c sites
    return raw.unsqueeze(-3) * sites


def demosaic_bilinear(raw: Tensor) -> Tensor:
    """Bilinear demosaic of RGGB mosaics: (..., H, W) -> (..., 3, H, W), dtype/device kept.

    Each colour is the normalised convolution of its samples with the tent kernels
    [[1,2,1],[2,4,2],[1,2,1]]/4 (R, B) and [[0,1,0],[1,4,1],[0,1,0]]/4 (G).
    """
    lead, (h, w) = raw.shape[:-2], raw.shape[-2:]
    planes = colour_masks(raw.reshape(-1, h, w))  # (B, 3, H, W)
    planes = F.pad(planes, (2, 2, 2, 2), mode="reflect")  # even: keeps the phase
    rb = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4
    g = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
    kernels = torch.stack([rb, g, rb])[:, None].to(planes)  # (3, 1, 3, 3)
    out = F.conv2d(planes, kernels, groups=3)[..., 1:-1, 1:-1]
    return out.reshape(*lead, 3, h, w)
