"""Refined alignment: EDVR's pyramid / deformable alignment without the cascading stage
(official ``Self_Easy_PCD``, docs/official-network.md §2.3 (b)).

Every frame, the reference included, is aligned to the reference with the same weights; the
frames are folded into the batch so the N alignments run as one batched pass. Runs at packed
resolution; h and w must be multiples of 4 (three pyramid levels h, h/2, h/4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstjdd.checks import check_shape

from .blocks import lrelu
from .deform import DCNv2Pack


def up2(x: Tensor) -> Tensor:
    """Bilinear ×2 upsampling, align_corners=False (EDVR's "up")."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3×3 conv with bias and padding 1 (PyTorch default init, as the official PCD)."""
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=True)


class FeaturePyramid(nn.Module):
    """L2 = LReLU(conv(LReLU(conv_s2(L1)))), L3 likewise from L2; weights shared over frames.

    (M, C, h, w) → [(M, C, h, w), (M, C, h/2, w/2), (M, C, h/4, w/4)].
    """

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.l2_down = conv3x3(nf, nf, stride=2)
        self.l2_conv = conv3x3(nf, nf)
        self.l3_down = conv3x3(nf, nf, stride=2)
        self.l3_conv = conv3x3(nf, nf)

    def forward(self, l1: Tensor) -> list[Tensor]:
        l2 = lrelu(self.l2_conv(lrelu(self.l2_down(l1))))
        l3 = lrelu(self.l3_conv(lrelu(self.l3_down(l2))))
        return [l1, l2, l3]


class PCDAlignment(nn.Module):
    """Pyramid + deformable alignment of every frame to the reference (no cascade).

    Level 3 (h/4): o3 = LReLU(conv(LReLU(conv([n3, r3])))); a3 = LReLU(DCN3(n3; o3)).
    Level l = 2, 1: o = LReLU(conv([n, r])); o = LReLU(conv([o, 2·up(o_{l+1})]));
    o = LReLU(conv(o)); a = conv([DCN(n; o), up(a_{l+1})]), with LReLU at level 2 only.
    The ×2 scales the offset *features* (as EDVR), not pixel offsets.

    ``extra_offset_layers`` > 0 (the ``deep_ra`` ablation) adds that many conv3×3+LReLU layers
    in front of the level-3 DCN's offset/mask predictor. The supplement only says "+16 conv
    layers in the offset branch"; putting them at the coarsest level, where the largest
    motions are estimated, is our reading.
    """

    def __init__(
        self, nf: int, deformable_groups: int, extra_offset_layers: int = 0, backend: str = "auto"
    ) -> None:
        super().__init__()
        self.pyramid = FeaturePyramid(nf)

        def dcn(extra: int = 0) -> DCNv2Pack:
            return DCNv2Pack(nf, nf, 3, deformable_groups, extra, backend)

        self.l3_offset_conv1 = conv3x3(2 * nf, nf)
        self.l3_offset_conv2 = conv3x3(nf, nf)
        self.l3_dcn = dcn(extra_offset_layers)
        self.l2_offset_conv1 = conv3x3(2 * nf, nf)
        self.l2_offset_conv2 = conv3x3(2 * nf, nf)
        self.l2_offset_conv3 = conv3x3(nf, nf)
        self.l2_dcn = dcn()
        self.l2_fea_conv = conv3x3(2 * nf, nf)
        self.l1_offset_conv1 = conv3x3(2 * nf, nf)
        self.l1_offset_conv2 = conv3x3(2 * nf, nf)
        self.l1_offset_conv3 = conv3x3(nf, nf)
        self.l1_dcn = dcn()
        self.l1_fea_conv = conv3x3(2 * nf, nf)

    def forward(self, feats: Tensor, ref: int) -> Tensor:
        """feats (B, N, C, h, w) per-frame features, h and w multiples of 4; ref in [0, N).

        Returns the aligned features (B, N, C, h, w); frame t is aligned to frame ``ref``."""
        check_shape(feats, ("B", "N", "C", "h", "w"), what="PCD alignment: feats",
                    multiple_of={"h": 4, "w": 4})
        b, n, c, h, w = feats.shape
        nbr = self.pyramid(feats.reshape(b * n, c, h, w))
        # The reference pyramid, repeated for every frame it is paired with.
        refs = [lvl.view(b, n, *lvl.shape[1:])[:, ref : ref + 1].expand(b, n, *lvl.shape[1:])
                .reshape(lvl.shape) for lvl in nbr]
        return self.align(nbr, refs).view(b, n, c, h, w)

    def align(self, nbr: list[Tensor], ref: list[Tensor]) -> Tensor:
        """Core PCD on pyramids [L1, L2, L3] of neighbours and reference (each (M, C, ·, ·))."""
        o3 = lrelu(self.l3_offset_conv1(torch.cat([nbr[2], ref[2]], dim=1)))
        o3 = lrelu(self.l3_offset_conv2(o3))
        a3 = lrelu(self.l3_dcn(nbr[2], o3))

        o2 = lrelu(self.l2_offset_conv1(torch.cat([nbr[1], ref[1]], dim=1)))
        o2 = lrelu(self.l2_offset_conv2(torch.cat([o2, 2.0 * up2(o3)], dim=1)))
        o2 = lrelu(self.l2_offset_conv3(o2))
        a2 = self.l2_dcn(nbr[1], o2)
        a2 = lrelu(self.l2_fea_conv(torch.cat([a2, up2(a3)], dim=1)))

        o1 = lrelu(self.l1_offset_conv1(torch.cat([nbr[0], ref[0]], dim=1)))
        o1 = lrelu(self.l1_offset_conv2(torch.cat([o1, 2.0 * up2(o2)], dim=1)))
        o1 = lrelu(self.l1_offset_conv3(o1))
        a1 = self.l1_dcn(nbr[0], o1)
        return self.l1_fea_conv(torch.cat([a1, up2(a2)], dim=1))
