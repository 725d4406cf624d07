"""Generator parts: blocks, PCD alignment, ConvGRU fusion, UNet (docs/official-network.md §2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.models.blocks import ACNSeBlock, SimpleBlock
from burstjdd.models.fusion import BiGRUFusion, ConvGRUCell
from burstjdd.models.pcd import FeaturePyramid, PCDAlignment
from burstjdd.models.unet import UNet, feature_upsampler


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("n", [8, 16, 64])
def test_acnse_parameter_count_formula(n):
    assert count(ACNSeBlock(n)) == 55 * n * n + 53.5 * n + 1


def test_acnse_64_and_feature_extract_counts():
    assert count(ACNSeBlock(64)) == 228_705
    assert count(SimpleBlock(5, 64, 8, 64)) == 152_128


def test_simple_block_layers_and_orthogonal_init():
    block = SimpleBlock(4, 16, 8, 3)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    acts = [m for m in block.modules() if isinstance(m, nn.LeakyReLU)]
    assert [(c.in_channels, c.out_channels, c.bias is not None) for c in convs] == [
        (8, 16, True), (16, 16, False), (16, 16, False), (16, 3, False)]
    assert len(acts) == 3 and all(a.negative_slope == 0.1 for a in acts)
    assert not convs[0].bias.any()
    for c in convs:
        w = c.weight.reshape(c.out_channels, -1)  # out <= in*9 here: orthonormal rows
        torch.testing.assert_close(w @ w.T, torch.eye(c.out_channels), atol=1e-5, rtol=0)
    # No activation after the last conv: outputs take both signs.
    out = block(torch.randn(2, 8, 6, 6, generator=_gen(1)))
    assert (out < 0).any() and (out > 0).any()


def test_acnse_attention_hand_checked():
    # All convs zero: t0 = t1 = t2 = x, ca = sigmoid(0) = 0.5, sa = 0.5 -> out = 2x.
    block = ACNSeBlock(8)
    for p in block.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 8, 5, 5, generator=_gen(2))
    torch.testing.assert_close(block(x), 2.0 * x)
    # Spatial-attention bias b: out = x * (1 + 0.5 + sigmoid(b)).
    with torch.no_grad():
        block.spatial_att.bias.fill_(1.0)
    torch.testing.assert_close(block(x), x * (1.5 + torch.sigmoid(torch.tensor(1.0))))


def test_acnse_init_is_orthogonal_with_zero_bias():
    block = ACNSeBlock(16)
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            if m.bias is not None:
                assert not m.bias.any()
            w = m.weight.reshape(m.out_channels, -1)
            rows, cols = w.shape
            gram = w @ w.T if rows <= cols else w.T @ w
            torch.testing.assert_close(gram, torch.eye(min(rows, cols)), atol=1e-5, rtol=0)


def test_bad_block_arguments_raise():
    with pytest.raises(ConfigError):
        SimpleBlock(1, 8, 8, 8)
    with pytest.raises(ConfigError):
        ACNSeBlock(7)


# ------------------------------------------------------------------------------- PCD


def test_pcd_parameter_counts():
    pcd = PCDAlignment(64, 8)
    assert count(pcd) == 1_259_720
    assert count(pcd.pyramid) == 147_712
    assert count(pcd.l1_dcn) == count(pcd.l2_dcn) == count(pcd.l3_dcn) == 161_560
    deep = PCDAlignment(16, 4, extra_offset_layers=16)
    assert count(deep) - count(PCDAlignment(16, 4)) == 16 * (16 * 16 * 9 + 16)


def _random_offsets_(pcd: PCDAlignment, gen: torch.Generator) -> None:
    """Make the (zero-initialised) offset/mask predictors non-trivial."""
    with torch.no_grad():
        for dcn in (pcd.l1_dcn, pcd.l2_dcn, pcd.l3_dcn):
            w = dcn.conv_offset_mask.weight
            w.copy_(torch.randn(w.shape, generator=gen) * 0.05)


def test_pyramid_sizes():
    levels = FeaturePyramid(8)(torch.randn(3, 8, 16, 12, generator=_gen(3)))
    assert [tuple(x.shape) for x in levels] == [(3, 8, 16, 12), (3, 8, 8, 6), (3, 8, 4, 3)]


def test_pcd_aligns_each_frame_to_the_reference_only():
    gen = _gen(4)
    pcd = PCDAlignment(8, 2)
    _random_offsets_(pcd, gen)
    feats = torch.randn(2, 4, 8, 8, 8, generator=gen)
    ref = 1
    with torch.no_grad():
        out = pcd(feats, ref)
        assert out.shape == feats.shape
        # Frame t's output depends on frame t and the reference only.
        changed = feats.clone()
        changed[:, 3] += 1.0
        out2 = pcd(changed, ref)
        torch.testing.assert_close(out2[:, :3], out[:, :3])
        assert not torch.allclose(out2[:, 3], out[:, 3])
        # Changing the reference changes every frame's alignment.
        changed = feats.clone()
        changed[:, ref] += 1.0
        out3 = pcd(changed, ref)
        assert all(not torch.allclose(out3[:, t], out[:, t]) for t in range(4))
        # Same weights for every frame: a frame alone (paired with the reference) gives the same.
        pair = pcd(feats[:, [2, ref]], 1)
        torch.testing.assert_close(pair[:, 0], out[:, 2], atol=1e-5, rtol=0)


def test_pcd_rejects_sizes_not_multiple_of_4():
    with pytest.raises(BurstFormatError, match="multiples of 4"):
        PCDAlignment(8, 2)(torch.zeros(1, 2, 8, 6, 8), 0)


# ------------------------------------------------------------------------------- fusion


def test_convgru_cell_hand_checked():
    # Zero weights: z = sigmoid(bz), q = tanh(bq) -> h' = (1 - z) h + z q.
    cell = ConvGRUCell(4, 4)
    for conv, b in ((cell.conv_z, 0.3), (cell.conv_r, -1.0), (cell.conv_q, 0.7)):
        nn.init.zeros_(conv.weight)
        nn.init.constant_(conv.bias, b)
    h = torch.randn(1, 4, 3, 3, generator=_gen(5))
    x = torch.randn(1, 4, 3, 3, generator=_gen(6))
    z = torch.sigmoid(torch.tensor(0.3))
    expected = (1 - z) * h + z * torch.tanh(torch.tensor(0.7))
    torch.testing.assert_close(cell(h, x), expected)


def _loop_reference(fusion: BiGRUFusion, feats: torch.Tensor, ref: int):
    """The fusion written out step by step (states before/after the reference)."""
    n = feats.shape[1]
    h = torch.zeros_like(feats[:, 0])
    for t in range(ref):
        h = fusion.cell(h, feats[:, t])
    before_f, h_f = h, fusion.cell(h, feats[:, ref])
    h = torch.zeros_like(feats[:, 0])
    for t in range(n - 1, ref, -1):
        h = fusion.cell(h, feats[:, t])
    before_b, h_b = h, fusion.cell(h, feats[:, ref])
    return (fusion.conv_1x1(torch.cat([h_f, h_b], 1)),
            fusion.conv_1x1(torch.cat([before_f, before_b], 1)))


@pytest.mark.parametrize("n,ref", [(1, 0), (3, 0), (5, 2), (4, 3)])
def test_bigru_matches_step_by_step_reference(n, ref):
    fusion = BiGRUFusion(6)
    feats = torch.randn(2, n, 6, 4, 4, generator=_gen(7))
    with torch.no_grad():
        fused, fused_ip = fusion(feats, ref, interp=True)
        exp, exp_ip = _loop_reference(fusion, feats, ref)
        torch.testing.assert_close(fused, exp)
        torch.testing.assert_close(fused_ip, exp_ip)
        plain, none = fusion(feats, ref)
        assert none is None
        torch.testing.assert_close(plain, fused)


def test_bigru_interp_branch_ignores_the_reference():
    fusion = BiGRUFusion(6)
    feats = torch.randn(1, 5, 6, 4, 4, generator=_gen(8))
    changed = feats.clone()
    changed[:, 2] += 1.0
    with torch.no_grad():
        fused, ip = fusion(feats, 2, interp=True)
        fused2, ip2 = fusion(changed, 2, interp=True)
    torch.testing.assert_close(ip2, ip)
    assert not torch.allclose(fused2, fused)


def test_bigru_follows_input_dtype():
    fusion = BiGRUFusion(4).double()
    fused, ip = fusion(torch.randn(1, 3, 4, 4, 4, dtype=torch.float64), 1, interp=True)
    assert fused.dtype == ip.dtype == torch.float64


# ------------------------------------------------------------------------------- UNet
# (paper-width counts: tests/test_jddb.py, which builds the paper model once)


def test_unet_and_feature_up_shapes():
    up = feature_upsampler(8)
    unet = UNet(8)
    x = torch.randn(2, 8, 6, 4, generator=_gen(9))
    with torch.no_grad():
        y = unet(up(x))
    assert y.shape == (2, 3, 12, 8)
    assert (y < 0).any()  # no output activation
