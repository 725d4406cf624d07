"""Modulated deformable convolution: identities with conv2d, hand-checked bilinear sampling,
gradients, backend agreement, and the DCNv2Pack module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from burstjdd.errors import ConfigError
from burstjdd.models.deform import DCNv2Pack, deform_conv2d, torchvision_available


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 1, 1, 1), (1, 0, 1, 2), (2, 1, 1, 4), (1, 2, 2, 2)]
)
def test_zero_offset_unit_mask_equals_conv2d(stride, padding, dilation, groups):
    g = _gen(1)
    x = torch.randn(2, 8, 9, 11, generator=g)
    weight = torch.randn(5, 8, 3, 3, generator=g)
    bias = torch.randn(5, generator=g)
    ho = _out_size(9, 3, stride, padding, dilation)
    wo = _out_size(11, 3, stride, padding, dilation)
    offset = torch.zeros(2, 2 * groups * 9, ho, wo)
    mask = torch.ones(2, groups * 9, ho, wo)
    ref = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation)
    for m in (mask, None):
        out = deform_conv2d(x, offset, weight, bias, m, stride, padding, dilation, backend="torch")
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dy,dx", [(2, -1), (-3, 0), (0, 4)])
def test_integer_offset_equals_conv_of_shifted_input(dy, dx):
    g = _gen(2)
    x = torch.randn(1, 4, 10, 12, generator=g)
    weight = torch.randn(3, 4, 3, 3, generator=g)
    offset = torch.zeros(1, 2 * 9, 10, 12)
    offset[:, 0::2] = dy
    offset[:, 1::2] = dx
    # shifted[i, j] = x[i + dy, j + dx] with zeros outside the image (what sampling outside
    # gives), over the padded extent the 3x3 taps reach.
    big = F.pad(x, (8, 8, 8, 8))
    shifted = big[..., 7 + dy : 7 + dy + 12, 7 + dx : 7 + dx + 14]
    ref = F.conv2d(shifted, weight)
    out = deform_conv2d(x, offset, weight, padding=1, backend="torch")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_fractional_offset_hand_checked():
    # 1x1 kernel on [[1, 2], [3, 4]]: output pixel (0, 0) samples at (0.5, 0.25):
    # top row 1 + 0.25 = 1.25, bottom row 3.25, halfway 2.25; mask 0.5 -> 1.125.
    # Output pixel (1, 1) samples at (1.5, 1.5): only corner (1, 1) is inside, weight 0.25 -> 1.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    weight = torch.ones(1, 1, 1, 1)
    offset = torch.zeros(1, 2, 2, 2)
    offset[0, :, 0, 0] = torch.tensor([0.5, 0.25])
    offset[0, :, 1, 1] = torch.tensor([0.5, 0.5])
    mask = torch.ones(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 0.5
    out = deform_conv2d(x, offset, weight, mask=mask, backend="torch")
    expected = torch.tensor([[[[1.125, 2.0], [3.0, 1.0]]]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_offset_groups_move_their_own_channels_only():
    # Group 0 (channel 0) shifted by one row, group 1 (channel 1) left in place.
    g = _gen(3)
    x = torch.randn(1, 2, 6, 6, generator=g)
    weight = torch.zeros(2, 2, 1, 1)
    weight[0, 0] = 1.0
    weight[1, 1] = 1.0
    offset = torch.zeros(1, 4, 6, 6)
    offset[:, 0] = 1.0
    out = deform_conv2d(x, offset, weight, backend="torch")
    torch.testing.assert_close(out[0, 0, :5], x[0, 0, 1:])
    torch.testing.assert_close(out[0, 0, 5], torch.zeros(6))
    torch.testing.assert_close(out[0, 1], x[0, 1])


def test_gradcheck_float64(one_thread):
    g = _gen(4)
    # Two deformable groups of two channels each, 4x4 image: small enough to check every entry.
    x = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # Non-integer offsets (gradcheck steps 1e-6, far from the bilinear kinks); some taps land
    # outside the image.
    offset = torch.rand(1, 2 * 2 * 9, 4, 4, generator=g, dtype=torch.float64) * 3 - 1.5
    offset = (offset + 0.137).requires_grad_(True)
    mask = torch.rand(1, 2 * 9, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(x, offset, mask, weight, bias):
        return deform_conv2d(x, offset, weight, bias, mask, padding=1, backend="torch")

    assert torch.autograd.gradcheck(fn, (x, offset, mask, weight, bias), eps=1e-6, atol=1e-6)


@pytest.mark.skipif(
    not torchvision_available("cpu"),
    reason="torchvision.ops.deform_conv2d does not import/run here (no torchvision for this torch)",
)
def test_backends_agree():
    g = _gen(5)
    x = torch.randn(2, 8, 9, 10, generator=g)
    weight = torch.randn(6, 8, 3, 3, generator=g)
    bias = torch.randn(6, generator=g)
    offset = torch.randn(2, 2 * 4 * 9, 9, 10, generator=g) * 3
    mask = torch.rand(2, 4 * 9, 9, 10, generator=g)
    a = deform_conv2d(x, offset, weight, bias, mask, padding=1, backend="torch")
    b = deform_conv2d(x, offset, weight, bias, mask, padding=1, backend="torchvision")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_probe_is_cached_and_bad_backend_raises():
    assert torchvision_available("cpu") is torchvision_available("cpu")
    assert torchvision_available.cache_info().currsize >= 1
    x = torch.zeros(1, 1, 3, 3)
    with pytest.raises(ConfigError, match="unknown deformable-conv backend"):
        deform_conv2d(x, torch.zeros(1, 18, 1, 1), torch.zeros(1, 1, 3, 3), backend="cuda")
    if not torchvision_available("cpu"):
        with pytest.raises(ConfigError, match="torchvision"):
            deform_conv2d(
                x, torch.zeros(1, 18, 1, 1), torch.zeros(1, 1, 3, 3), backend="torchvision"
            )


def test_shape_mismatch_raises():
    x = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ConfigError, match="offset"):
        deform_conv2d(x, torch.zeros(1, 18, 4, 4), torch.zeros(2, 4, 3, 3), padding=1)
    with pytest.raises(ConfigError, match="channels"):
        deform_conv2d(x, torch.zeros(1, 18, 5, 5), torch.zeros(2, 3, 3, 3), padding=1)


def test_dcnv2pack_starts_as_half_masked_conv():
    torch.manual_seed(0)
    pack = DCNv2Pack(16, 8, deformable_groups=4)
    # Zero-initialised offset/mask predictor: offsets 0, mask sigmoid(0) = 0.5.
    assert pack.conv_offset_mask.out_channels == 4 * 3 * 9
    assert not pack.conv_offset_mask.weight.any() and not pack.bias.any()
    bound = 1.0 / (16 * 9) ** 0.5
    assert pack.weight.abs().max() <= bound
    g = _gen(6)
    x, feat = torch.randn(2, 16, 7, 7, generator=g), torch.randn(2, 16, 7, 7, generator=g)
    ref = 0.5 * F.conv2d(x, pack.weight, padding=1)
    torch.testing.assert_close(pack(x, feat), ref, atol=1e-5, rtol=0)


def test_dcnv2pack_chunk_layout_and_parameter_count():
    pack = DCNv2Pack(64, 64, deformable_groups=8)
    assert sum(p.numel() for p in pack.parameters()) == 161_560
    small = DCNv2Pack(4, 4, deformable_groups=2)
    with torch.no_grad():
        # Chunk 1 and 2 together are the offsets; chunk 3 the mask logits.
        small.conv_offset_mask.bias.copy_(torch.arange(54, dtype=torch.float32))
    offset, mask = small.offsets_and_mask(torch.zeros(1, 4, 3, 3))
    torch.testing.assert_close(offset[0, :, 0, 0], torch.arange(36, dtype=torch.float32))
    torch.testing.assert_close(mask[0, :, 0, 0], torch.sigmoid(torch.arange(36, 54.0)))


def test_dcnv2pack_extra_offset_layers():
    pack = DCNv2Pack(8, 8, deformable_groups=2, extra_offset_layers=3)
    convs = [m for m in pack.offset_layers if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    assert DCNv2Pack(8, 8, deformable_groups=2).offset_layers is None
