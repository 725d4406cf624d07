"""Packed → full-resolution up-conversion and the 3-scale UNet that decodes the fused feature
into linear camera RGB (docs/official-network.md §2.3 (d)–(e)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import ACNSeBlock, SimpleBlock, autocast_off


def feature_upsampler(nf: int) -> nn.ConvTranspose2d:
    """Learned 2× up-conversion, packed → full resolution: ConvTranspose(nf→nf, 2, stride 2),
    no activation (the only path from packed to full resolution)."""
    return nn.ConvTranspose2d(nf, nf, 2, stride=2, bias=True)


class UNet(nn.Module):
    """Three-scale UNet, widths (nf, 2nf, 4nf), output ``out_channels`` with no activation.

    enc1: SB(2, nf) → ACNSe(nf) = S1;  down1: conv3×3/2 nf→2nf;
    enc2: SB(2, 2nf) → ACNSe(2nf) = S2;  down2: conv3×3/2 2nf→4nf;
    mid: SB(2, 4nf) → ACNSe(4nf) → SB(2, 4nf);
    up1: ConvT(4nf→2nf) → [·, S2] → SB(2, 4nf→2nf) → ACNSe(2nf);
    up2: ConvT(2nf→nf) → [·, S1] → SB(3, 2nf→nf→out).
    (B, nf + extra_in, H, W) with H, W multiples of 4 → (B, out_channels, H, W); ``extra_in``
    channels beside the features (the residual model's base image; 0 in the paper's network).
    """

    def __init__(self, nf: int, out_channels: int = 3, extra_in: int = 0) -> None:
        super().__init__()
        self.enc1_conv = SimpleBlock(2, nf, nf + extra_in, nf)
        self.enc1_att = ACNSeBlock(nf)
        self.down1 = nn.Conv2d(nf, 2 * nf, 3, 2, 1, bias=True)
        self.enc2_conv = SimpleBlock(2, 2 * nf, 2 * nf, 2 * nf)
        self.enc2_att = ACNSeBlock(2 * nf)
        self.down2 = nn.Conv2d(2 * nf, 4 * nf, 3, 2, 1, bias=True)
        self.mid_conv1 = SimpleBlock(2, 4 * nf, 4 * nf, 4 * nf)
        self.mid_att = ACNSeBlock(4 * nf)
        self.mid_conv2 = SimpleBlock(2, 4 * nf, 4 * nf, 4 * nf)
        self.up1 = nn.ConvTranspose2d(4 * nf, 2 * nf, 2, stride=2, bias=True)
        self.dec1_conv = SimpleBlock(2, 2 * nf, 4 * nf, 2 * nf)
        self.dec1_att = ACNSeBlock(2 * nf)
        self.up2 = nn.ConvTranspose2d(2 * nf, nf, 2, stride=2, bias=True)
        self.dec2_conv = SimpleBlock(3, nf, 2 * nf, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        s1 = self.enc1_att(self.enc1_conv(x))  # (B, nf, H, W)
        s2 = self.enc2_att(self.enc2_conv(self.down1(s1)))  # (B, 2nf, H/2, W/2)
        m = self.mid_conv2(self.mid_att(self.mid_conv1(self.down2(s2))))  # (B, 4nf, H/4, W/4)
        d = self.dec1_att(self.dec1_conv(torch.cat([self.up1(m), s2], dim=1)))  # (B, 2nf, H/2, W/2)
        x = self.dec2_conv.simple_block[:-1](torch.cat([self.up2(d), s1], dim=1))
        return _float32_conv(self.dec2_conv.simple_block[-1], x)  # (B, out, H, W)


def _float32_conv(conv: nn.Module, x: Tensor) -> Tensor:
    """``conv(x)`` in float32 whatever the autocast: the image leaves the network in float32,
    since bf16 would round it to 8 bits of mantissa (up to 0.4 %, one level of an 8-bit
    image)."""
    with autocast_off(x):
        return conv(x.float())
