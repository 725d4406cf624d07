"""Fusion of the aligned features: one ConvGRU run forward and backward towards the reference
(official ``BiGRU``/``ConvGRU``, docs/official-network.md §2.3 (c), supplement Eq. for the
BiGRU).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvGRUCell(nn.Module):
    """Convolutional GRU step with single convs on the concatenation [h, x]:

    z = σ(W_z[h, x]), r = σ(W_r[h, x]), q = tanh(W_q[r⊙h, x]), h' = (1−z)⊙h + z⊙q;
    each W is a 3×3 conv (hidden+input → hidden, bias). h (B, hidden, h, w), x (B, input, h, w).
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv_z = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.conv_r = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.conv_q = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.conv_z(hx))
        r = torch.sigmoid(self.conv_r(hx))
        q = torch.tanh(self.conv_q(torch.cat([r * h, x], dim=1)))
        return (1.0 - z) * h + z * q


class BiGRUFusion(nn.Module):
    """Bidirectional ConvGRU fusion at the reference frame.

    ONE cell is shared by both passes; the state starts at zero. The forward pass consumes
    frames 0..ref and the backward pass N−1..ref (the steps beyond the reference are never used,
    docs/official-network.md §8 item 18); fused = conv1×1([h_f, h_b]).

    The interpolation branch (paper Eq. 7, L_ip) decodes the two states *just before* each pass
    consumes the reference (frames 0..ref−1 and ref+1..N−1; the zero state where a side is
    empty) through the same conv1×1. The reference can still reach it through the alignment
    offsets (docs/official-network.md §8 item 14).
    """

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.cell = ConvGRUCell(nf, nf)
        self.conv_1x1 = nn.Conv2d(2 * nf, nf, 1, bias=True)

    def _run(self, feats: Tensor, order: range) -> tuple[Tensor, Tensor]:
        """Run the cell over ``order`` (ending at the reference); return (state before the last
        step, state after it), each (B, nf, h, w)."""
        b, _, _, h, w = feats.shape
        state = feats.new_zeros(b, self.cell.conv_z.out_channels, h, w)
        before = state
        for t in order:
            before = state
            state = self.cell(state, feats[:, t])
        return before, state

    def forward(
        self, feats: Tensor, ref: int, interp: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """feats (B, N, nf, h, w), ref in [0, N) → fused (B, nf, h, w) and, when ``interp``,
        the reference-free fused feature (B, nf, h, w), else None."""
        n = feats.shape[1]
        before_f, h_f = self._run(feats, range(0, ref + 1))
        before_b, h_b = self._run(feats, range(n - 1, ref - 1, -1))
        fused = self.conv_1x1(torch.cat([h_f, h_b], dim=1))
        if not interp:
            return fused, None
        return fused, self.conv_1x1(torch.cat([before_f, before_b], dim=1))
