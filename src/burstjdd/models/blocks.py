"""Convolutional building blocks of the generator (docs/official-network.md §2.1).

Both blocks keep the official layer order (and hence the official parameter order) so that the
official checkpoints map onto them one to one. Their ``Conv2d`` layers use orthogonal weights
(gain 1) and zero biases, as the official ``_initialize_weights``; nothing is normalised.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstjdd.errors import ConfigError

LRELU_SLOPE = 0.1


def autocast_off(x: Tensor) -> contextlib.AbstractContextManager:
    """A context in which ``x``'s device computes in its tensors' own precision whatever
    autocast is around it (the parts that must stay float32: matching costs, sampling
    positions, the output image). Meta tensors (shape-only FLOP counting) have no autocast."""
    if x.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, enabled=False)


def lrelu(x: Tensor) -> Tensor:
    """LeakyReLU with the slope used everywhere in the network (0.1)."""
    return F.leaky_relu(x, LRELU_SLOPE)


def init_orthogonal_(module: nn.Module) -> None:
    """Orthogonal weights (gain 1) and zero biases for every ``Conv2d`` inside ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SimpleBlock(nn.Module):
    """Plain conv stack: conv(in→width, bias) → LReLU → (depth−2)×[conv(width→width) →
    LReLU] → conv(width→out); 3×3 convs with padding 1, no bias after the first, no final
    activation.

    (B, in_channels, H, W) → (B, out_channels, H, W).
    """

    def __init__(self, depth: int, width: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"SimpleBlock depth must be >= 2, got {depth}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=True),
            nn.LeakyReLU(LRELU_SLOPE),
        ]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.LeakyReLU(LRELU_SLOPE)]
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1, bias=False))
        # Same attribute name and indices as the official block ("simple_block.{0,2,...}").
        self.simple_block = nn.Sequential(*layers)
        init_orthogonal_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.simple_block(x)


class ACNSeBlock(nn.Module):
    """Residual block with channel and spatial attention (official "ACNSeBlock"; it contains
    no asymmetric convs despite the name). 55n² + 53.5n + 1 parameters.

    t0 = x + conv(LReLU(conv_nobias(x))); t1 = t0 + SB(t0); t2 = t1 + SB'(t1);
    ca = σ(up(LReLU(down(avgpool(t2))))) per channel; sa = σ(conv7×7(t2)) per pixel;
    out = t2·(1 + ca + sa).  (B, n, H, W) → (B, n, H, W).

    The channel attention pools over the whole input, so the output depends on the tile size
    (docs/official-network.md §8 item 16).
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        if n % 2:
            raise ConfigError(f"ACNSeBlock width must be even, got {n}")
        self.square_conv = nn.Conv2d(n, n, 3, padding=1, bias=False)
        self.extract_conv = nn.Conv2d(n, n, 3, padding=1, bias=True)
        self.res_block1 = SimpleBlock(2, n, n, n)
        self.res_block2 = SimpleBlock(2, n, n, n)
        self.down = nn.Conv2d(n, n // 2, 1, bias=True)
        self.up = nn.Conv2d(n // 2, n, 1, bias=True)
        self.spatial_att = nn.Conv2d(n, 1, 7, padding=3, bias=True)
        init_orthogonal_(self)

    def forward(self, x: Tensor) -> Tensor:
        t = x + self.extract_conv(lrelu(self.square_conv(x)))
        t = t + self.res_block1(t)
        t = t + self.res_block2(t)
        ca = torch.sigmoid(self.up(lrelu(self.down(t.mean(dim=(2, 3), keepdim=True)))))  # (B,n,1,1)
        sa = torch.sigmoid(self.spatial_att(t))  # (B, 1, H, W)
        return t * (1.0 + ca + sa)
