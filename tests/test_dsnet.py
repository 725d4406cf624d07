"""Tests of the DSNet and the fixed matching features (models/dsnet.py)."""

from __future__ import annotations

import pytest
import torch

from burstjdd.errors import BurstFormatError
from burstjdd.models.dsnet import DSNet, bicubic_features, bilinear_guide


def test_parameter_count_and_official_keys():
    net = DSNet()
    assert sum(p.numel() for p in net.parameters()) == 9840
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "simple_block.0.weight": (16, 4, 3, 3),
        "simple_block.1.weight": (16, 16, 3, 3), "simple_block.1.bias": (16,),
        "simple_block.3.weight": (16, 16, 3, 3),
        "simple_block.4.weight": (16, 16, 3, 3), "simple_block.4.bias": (16,),
        "simple_block.6.weight": (16, 16, 3, 3), "simple_block.6.bias": (16,),
    }


@pytest.mark.parametrize("h,w", [(37, 50), (64, 64), (1, 5)])
def test_output_shape_is_ceil_quarter(h, w):
    out = DSNet()(torch.rand(2, 4, h, w))
    assert out.shape == (2, 16, -(-h // 4), -(-w // 4))


def test_orthogonal_init_zero_bias_and_seeded():
    a = DSNet(generator=torch.Generator().manual_seed(3))
    b = DSNet(generator=torch.Generator().manual_seed(3))
    c = DSNet(generator=torch.Generator().manual_seed(4))
    for name, prm in a.named_parameters():
        assert torch.equal(prm, dict(b.named_parameters())[name])
        if name.endswith("bias"):
            assert (prm == 0).all()
        else:
            flat = prm.detach().flatten(1)  # (out, in·9): 16 orthonormal rows
            torch.testing.assert_close(flat @ flat.T, torch.eye(16), atol=1e-5, rtol=0)
            assert not torch.equal(prm, dict(c.named_parameters())[name])


def test_instance_norm_normalises_each_frame_in_both_modes():
    net = DSNet(generator=torch.Generator().manual_seed(0))
    y = torch.rand(3, 4, 40, 48, generator=torch.Generator().manual_seed(1))
    out = net.train()(y)
    pre = net.simple_block[:-1](y)  # last conv output, (3, 16, 10, 12)
    mean, var = pre.mean((-2, -1), keepdim=True), pre.var((-2, -1), unbiased=False, keepdim=True)
    torch.testing.assert_close(out, (pre - mean) / torch.sqrt(var + 1e-5))
    assert torch.equal(net.eval()(y), out)  # no running statistics
    torch.testing.assert_close(net(y[1:2]), out[1:2])  # per frame: batch-independent


def test_bicubic_features_shape_constant_and_no_grad():
    y = torch.full((2, 4, 30, 41), 0.3, requires_grad=True)
    f = bicubic_features(y)
    assert f.shape == (2, 4, 8, 11) and not f.requires_grad
    torch.testing.assert_close(f, torch.full_like(f, 0.3))  # a constant stays constant


def test_bilinear_guide_is_mean_of_inner_2x2():
    """Official L_BM guide: bilinear ×1/4 without antialiasing = mean of the inner 2×2 of each
    4×4 block (docs/official-network.md §3.2 item 7)."""
    y = torch.rand(2, 4, 16, 24, generator=torch.Generator().manual_seed(2))
    want = y.unfold(-2, 4, 4).unfold(-2, 4, 4)[..., 1:3, 1:3].mean((-2, -1))
    torch.testing.assert_close(bilinear_guide(y), want)
    assert bilinear_guide(torch.rand(1, 4, 17, 9)).shape == (1, 4, 5, 3)


@pytest.mark.parametrize("fn", [DSNet(), bicubic_features, bilinear_guide])
def test_non_packed_input_raises(fn):
    with pytest.raises(BurstFormatError, match="packed raw"):
        fn(torch.rand(1, 3, 16, 16))
