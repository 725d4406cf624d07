"""The reference frame of a burst: a given index, the middle frame, or the sharpest middle one.

:func:`sharpness` scores frames by their fine detail, :func:`select_reference` picks the
sharpest of the middle frames (``read_burst(..., ref="auto")``), and :func:`_resolve_ref` turns
a reader's ``ref`` argument into a frame index.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import check_pattern

__all__ = ["select_reference", "sharpness"]


def sharpness(raw: Tensor, cfa: str) -> Tensor:
    """Per-frame sharpness: mean squared Laplacian of the green sub-lattices after a blur.

    raw (N, H, W) mosaics of phase ``cfa``, H and W even -> (N,) in raw's float dtype
    (float32 for other dtypes), on its device. The two green
    sub-lattices (half resolution, the densest colour) are blurred with a 3x3 binomial kernel,
    which damps pixel noise (the Laplacian's gain on white-noise variance drops from 20 to
    0.41) while keeping the edges and texture that motion blur or defocus remove; edges
    are replicated. Among frames with similar noise the one with the most fine detail scores
    highest.
    """
    cfa = check_pattern(cfa)
    if raw.dim() != 3:
        raise BurstFormatError(f"sharpness needs raw (N, H, W), got {tuple(raw.shape)}")
    greens = [divmod(i, 2) for i, c in enumerate(cfa) if c == "G"]
    g = torch.stack([raw[:, i::2, j::2] for i, j in greens], dim=1)  # (N, 2, H/2, W/2)
    g = g if g.is_floating_point() else g.to(torch.float32)
    x = g.flatten(0, 1).unsqueeze(1)                                 # (2N, 1, h, w)
    b = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device) / 4.0
    blur = (b[:, None] * b[None, :]).view(1, 1, 3, 3)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
                       dtype=x.dtype, device=x.device)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), blur)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), lap.view(1, 1, 3, 3))
    return x.square().view(raw.shape[0], -1).mean(dim=1)


def select_reference(raw: Tensor, cfa: str) -> int:
    """The sharpest of the middle frames (``read_burst(..., ref="auto")``).

    raw (N, H, W) mosaics. Candidates: frames N//2 - 1, N//2, N//2 + 1 (all frames when
    N <= 3), so that the reference stays near the middle of the burst, where motion to the
    other frames is smallest; the one with the highest :func:`sharpness` wins, ties go to the
    frame nearest the middle.
    """
    n = int(raw.shape[0])
    middle = n // 2
    candidates = list(range(n)) if n <= 3 else [middle - 1, middle, middle + 1]
    scores = sharpness(raw[candidates], cfa).tolist()
    best = max(range(len(candidates)),
               key=lambda i: (scores[i], -abs(candidates[i] - middle)))
    return candidates[best]


def _resolve_ref(ref: int | str | None, raw: Tensor, cfa: str) -> int:
    """The reference index in [0, N) for ``read_burst``'s ``ref`` (None: the middle frame)."""
    n = int(raw.shape[0])
    if ref is None:
        return n // 2
    if isinstance(ref, str):
        if ref.strip().lower() != "auto":
            raise BurstFormatError(f"ref must be a frame index or 'auto', got {ref!r}")
        return select_reference(raw, cfa)
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)):
        raise BurstFormatError(f"ref must be a frame index or 'auto', got {ref!r}")
    k = n // 2 if ref == -1 else int(ref)
    if not 0 <= k < n:
        raise BurstFormatError(f"ref {int(ref)} is out of range for {n} frames")
    return k
