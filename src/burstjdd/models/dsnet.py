"""DSNet, the lightweight downsampling net whose features drive the coarse alignment, and the
two fixed (parameter-free) feature maps used beside it.

* :class:`DSNet`: the official ``CNN_downsampling`` (docs/official-network.md §2.2), packed raw →
  16-channel features on the LR grid (1/4 of packed, 1/8 of full resolution).
* :func:`bicubic_features`: bicubic ×1/4 of the packed raw, the features of the ``no_e2e``
  ablation (plain block matching, no DSNet, no gradient).
* :func:`bilinear_guide`: bilinear ×1/4 of the CLEAN packed raw, the guidance features of the
  L_BM loss (paper Eq. 6; docs/official-network.md §3.2 item 7).

All three map (B, 4, h, w) to (B, C, ceil(h/4), ceil(w/4)), so any of them can feed
:func:`burstjdd.models.dpbm.coarse_align`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstjdd.checks import check_shape
from burstjdd.raw.cfa import LR_GRID

LRELU_SLOPE = 0.1
# packed pixels per LR pixel (the official ``align_scale``): 2 full-res pixels per packed one
LR_SCALE = LR_GRID // 2
_PACKED = ("B", "4", "h", "w")  # packed raw [R, Gr, Gb, B]


def lr_size(h: int, w: int) -> tuple[int, int]:
    """LR grid size (ceil(h/4), ceil(w/4)) of a packed (h, w) frame."""
    return math.ceil(h / LR_SCALE), math.ceil(w / LR_SCALE)


class DSNet(nn.Module):
    """Learned downsampling for block matching (official ``CNN_downsampling``, 9,840 parameters).

    Layers, in the official order (the ``simple_block.{0,1,3,4,6}`` state-dict keys match the
    official checkpoint): conv3×3 s2 4→w (no bias); conv3×3 w→w; LReLU(0.1); conv3×3 s2 w→w
    (no bias); conv3×3 w→w; LReLU(0.1); conv3×3 w→w; InstanceNorm2d(w) without affine
    parameters or running statistics (each frame and channel is normalised by its own spatial
    statistics, in training and in evaluation alike). The paper's "transpose convs" do not exist
    in the official net: the two stride-2 convs do the downsampling.

    Weights are orthogonal (gain 1) and biases zero, drawn from ``generator`` when given.

    forward: y (B, 4, h, w) noisy packed raw in [0, 1] → (B, w, ceil(h/4), ceil(w/4)).
    """

    def __init__(self, width: int = 16, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.simple_block = nn.Sequential(
            nn.Conv2d(4, width, 3, stride=2, padding=1, bias=False),
            nn.Conv2d(width, width, 3, padding=1, bias=True),
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
            nn.Conv2d(width, width, 3, padding=1, bias=True),
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Conv2d(width, width, 3, padding=1, bias=True),
            nn.InstanceNorm2d(width, affine=False, track_running_stats=False),
        )
        for m in self.simple_block:
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight, gain=1.0, generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, y: Tensor) -> Tensor:
        check_shape(y, _PACKED, what="DSNet input (packed raw)")
        return self.simple_block(y)


def bicubic_features(y: Tensor) -> Tensor:
    """Bicubic ×1/4 of the packed raw: the matching features of the ``no_e2e`` variant.

    y (B, 4, h, w) → (B, 4, ceil(h/4), ceil(w/4)), detached (no gradient: plain block matching).
    Antialiased (the kernel widens to the 4× footprint, like MATLAB's ``imresize``), which also
    averages the noise down before matching.
    """
    check_shape(y, _PACKED, what="bicubic_features input (packed raw)")
    with torch.no_grad():
        return F.interpolate(y, size=lr_size(*y.shape[-2:]), mode="bicubic",
                             align_corners=False, antialias=True)


def bilinear_guide(y_clean: Tensor) -> Tensor:
    """Bilinear ×1/4 of the CLEAN packed raw: the guidance features of L_BM (paper Eq. 6).

    As the official code: bilinear, align_corners=False, NO antialiasing, so each LR pixel is
    the mean of the inner 2×2 of its 4×4 block (when h, w are multiples of 4; otherwise the
    output is still ceil(h/4) × ceil(w/4), sampled at the resulting scale).

    y_clean (B, 4, h, w) → (B, 4, ceil(h/4), ceil(w/4)).
    """
    check_shape(y_clean, _PACKED, what="bilinear_guide input (packed raw)")
    return F.interpolate(y_clean, size=lr_size(*y_clean.shape[-2:]), mode="bilinear",
                         align_corners=False, antialias=False)
