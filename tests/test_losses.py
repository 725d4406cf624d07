from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from burstjdd.errors import BurstFormatError, ConfigError
from burstjdd.models.dpbm import MatchDiagnostics
from burstjdd.models.jddb import JDDBOutput
from burstjdd.raw.color import render
from burstjdd.train.losses import (
    LossWeights,
    block_matching_loss,
    charbonnier,
    gaussian_kernel,
    high_frequency_mask,
    interpolation_loss,
    isp_srgb,
    one_hot_loss,
    reconstruction_loss,
    total_loss,
)

EPS = 1e-3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 2, size: int = 6, seed: int = 0) -> torch.Tensor:
    return 0.05 + 0.6 * torch.rand(b, 3, size, size, generator=_gen(seed), dtype=torch.float64)


def _meta(b: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    wb = torch.stack([1.5 + torch.rand(b, generator=g, dtype=torch.float64),
                      torch.ones(b, dtype=torch.float64),
                      1.2 + torch.rand(b, generator=g, dtype=torch.float64)], dim=1)  # (B, 3)
    ccm = torch.eye(3, dtype=torch.float64) + 0.2 * (
        torch.rand(b, 3, 3, generator=g, dtype=torch.float64) - 0.5)
    return wb, ccm


def _identity_meta(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(b, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)


def _twice(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x], dim=0)


# --------------------------------------------------------------------------- Charbonnier, ISP


def test_charbonnier_hand_values() -> None:
    assert charbonnier(torch.tensor([0.4]), torch.tensor([0.0]), eps=0.3).item() == pytest.approx(
        0.5)
    out = charbonnier(torch.zeros(2, 3), torch.zeros(2, 3))
    assert out.shape == (2, 3)  # elementwise, not reduced
    assert torch.allclose(out, torch.full((2, 3), EPS))
    assert charbonnier(torch.tensor([1.0]), torch.tensor([-2.0]), eps=4.0).item() == pytest.approx(
        5.0)


def test_isp_srgb_is_render_with_gradients() -> None:
    rgb = _images(2, 4)
    wb, ccm = _meta(2)
    assert torch.equal(isp_srgb(rgb, wb, ccm), render(rgb, wb, ccm))
    # in the interior no clamp is active: the full Jacobian is right
    interior = (0.15 + 0.1 * torch.rand(2, 3, 3, 3, generator=_gen(3), dtype=torch.float64))
    wb1 = torch.tensor([[1.1, 1.0, 1.2]] * 2, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
    torch.autograd.gradcheck(lambda x: isp_srgb(x, wb1, eye), (interior.requires_grad_(),))
    # at zero (the gamma floor) and beyond the clamps the gradient is finite
    edge = torch.tensor([0.0, -0.5, 3.0], dtype=torch.float64).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    edge.requires_grad_()
    isp_srgb(edge, wb1, eye).sum().backward()
    assert torch.isfinite(edge.grad).all()


def test_isp_srgb_checks_metadata_shapes() -> None:
    with pytest.raises(BurstFormatError, match="wb"):
        isp_srgb(_images(2), torch.ones(3), torch.eye(3).repeat(2, 1, 1))


# --------------------------------------------------------------------------- L_r


def test_reconstruction_loss_is_eps_per_element_when_exact() -> None:
    gt = _images(3, 5)
    wb, ccm = _meta(3)
    # two Charbonnier terms, each eps per element, summed per sample (3·5·5), mean over batch
    assert reconstruction_loss(gt, gt, wb, ccm).item() == pytest.approx(2 * 75 * EPS)


def test_reconstruction_loss_hand_value_white_balanced_linear_term() -> None:
    gt = torch.full((1, 3, 2, 2), 0.25, dtype=torch.float64)
    pred = gt.clone()
    delta = 0.1
    pred[0, 0, 0, 0] += delta  # red channel, one pixel
    wb = torch.tensor([[2.0, 1.0, 1.0]], dtype=torch.float64)
    ccm = torch.eye(3, dtype=torch.float64)[None]
    n = gt.numel()
    # linear term after white balance: the red error is doubled by its gain 2
    linear = (n - 1) * EPS + math.sqrt((2 * delta) ** 2 + EPS**2)
    srgb_err = (2 * 0.35) ** (1 / 2.2) - (2 * 0.25) ** (1 / 2.2)
    srgb = (n - 1) * EPS + math.sqrt(srgb_err**2 + EPS**2)
    assert reconstruction_loss(pred, gt, wb, ccm).item() == pytest.approx(linear + srgb, rel=1e-12)


def test_shape_mismatch_is_an_error() -> None:
    wb, ccm = _meta(2)
    with pytest.raises(BurstFormatError, match="differ"):
        reconstruction_loss(_images(2, 4), _images(2, 6), wb, ccm)


# --------------------------------------------------------------------------- HF mask


def _mask_reference(gt: np.ndarray) -> np.ndarray:
    """Loop implementation of docs/official-network.md §4 (zero padding 2), float64,
    (B, 3, H, W)."""
    kernel = np.array([[math.exp(-(dy * dy + dx * dx) / (2 * (1 + 1e-6))) for dx in range(-2, 3)]
                       for dy in range(-2, 3)])
    kernel /= kernel.sum()

    def blur(img: np.ndarray) -> np.ndarray:
        h, w = img.shape
        out = np.zeros_like(img)
        for y in range(h):
            for x in range(w):
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        if 0 <= y + dy < h and 0 <= x + dx < w:
                            out[y, x] += kernel[dy + 2, dx + 2] * img[y + dy, x + dx]
        return out

    masks = []
    for img in gt:
        gray = 0.2989 * img[0] + 0.5870 * img[1] + 0.1140 * img[2]
        hf = blur(np.abs(gray - blur(gray)))
        masks.append(np.repeat(((hf - hf.min()) / (hf.max() - hf.min() + 1e-6))[None], 3, 0))
    return np.stack(masks)


def test_gaussian_kernel_hand_values() -> None:
    g = gaussian_kernel(dtype=torch.float64)
    assert g.shape == (5, 5)
    assert g.sum().item() == pytest.approx(1.0)
    var = 1 + 1e-6
    assert (g[2, 2] / g[2, 3]).item() == pytest.approx(math.exp(1 / (2 * var)))
    assert (g[2, 2] / g[0, 0]).item() == pytest.approx(math.exp(8 / (2 * var)))


def test_high_frequency_mask_matches_loop_reference() -> None:
    gt = torch.rand(2, 3, 7, 9, generator=_gen(4), dtype=torch.float64)
    mask = high_frequency_mask(gt)
    assert mask.shape == gt.shape
    np.testing.assert_allclose(mask.numpy(), _mask_reference(gt.numpy()), atol=1e-12)
    assert torch.equal(mask[:, 0], mask[:, 2])  # repeated over channels
    assert mask.amin().item() == 0.0 and 0.99 < mask.amax().item() < 1.0


def test_high_frequency_mask_properties() -> None:
    # a flat image is high-frequency only at its borders (zero padding, as the official code)
    flat = torch.full((1, 3, 13, 13), 0.5, dtype=torch.float64)
    m = high_frequency_mask(flat)[0, 0]
    assert m[6, 6].item() < 1e-6 and m[0, 0].item() > 0.5
    # it sees the gray value only: the same pattern in R or in G gives the same soft mask
    pattern = torch.rand(1, 1, 10, 10, generator=_gen(5), dtype=torch.float64)
    zeros = torch.zeros_like(pattern)
    in_r = high_frequency_mask(torch.cat([pattern, zeros, zeros], 1))
    in_g = high_frequency_mask(torch.cat([zeros, pattern, zeros], 1))
    assert torch.allclose(in_r, in_g, atol=1e-4)
    # no gradient flows into the mask
    gt = _images(1, 8).requires_grad_()
    assert not high_frequency_mask(gt).requires_grad


# --------------------------------------------------------------------------- L_ip


def test_interpolation_loss_is_restricted_by_the_mask() -> None:
    gt, pred = _images(2, 8, seed=6), _images(2, 8, seed=7)
    wb, ccm = _meta(2)
    mask = high_frequency_mask(gt).clone()
    mask[..., :4, :] = 0.0  # top half masked out
    changed = pred.clone()
    changed[..., :4, :] = torch.rand(2, 3, 4, 8, generator=_gen(8), dtype=torch.float64)
    assert interpolation_loss(pred, gt, mask, wb, ccm).item() == interpolation_loss(
        changed, gt, mask, wb, ccm).item()
    changed[..., 5, 5] += 0.2  # where the mask is > 0 a change counts
    assert interpolation_loss(changed, gt, mask, wb, ccm).item() != pytest.approx(
        interpolation_loss(pred, gt, mask, wb, ccm).item())


def test_interpolation_loss_with_unit_mask_is_reconstruction_loss() -> None:
    gt, pred = _images(2, 5, seed=9), _images(2, 5, seed=10)
    wb, ccm = _meta(2)
    ones = torch.ones_like(gt)
    assert interpolation_loss(pred, gt, ones, wb, ccm).item() == pytest.approx(
        reconstruction_loss(pred, gt, wb, ccm).item(), rel=1e-12)
    # mask outside the root: a zero mask costs exactly nothing (the official code would cost eps)
    assert interpolation_loss(pred, gt, torch.zeros_like(gt), wb, ccm).item() == 0.0


# --------------------------------------------------------------------------- L_one-hot


def test_one_hot_loss_of_one_hot_and_uniform_vectors() -> None:
    m = 6
    one_hot = torch.zeros(2, 3, m, dtype=torch.float64)
    one_hot[..., 4] = 1.0
    valid = torch.ones(2, 3, m, dtype=torch.bool)
    assert one_hot_loss(one_hot, valid).item() == pytest.approx(0.0, abs=1e-12)
    uniform = torch.full((2, 3, m), 1 / m, dtype=torch.float64)
    # sum term 0, var 0: |0 − 1/M| per vector, 3 vectors per sample
    assert one_hot_loss(uniform, valid).item() == pytest.approx(3 / m)


def test_one_hot_loss_hand_values_with_varying_m() -> None:
    # sample 0: w = [0.5, 0.5, 0 | pad] over M = 3 → var 1/12 → |1/12 − 1/3| = 1/4;
    #           a reference row (no valid candidate) and an M = 1 row → not counted
    # sample 1: w = [0.6, 0.2 | pad, pad] over M = 2 → |0.8 − 1| + |0.08 − 1/2| = 0.62
    w = torch.tensor([[[0.5, 0.5, 0.0, 9.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
                      [[0.6, 0.2, 7.0, 7.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]],
                     dtype=torch.float64)
    valid = torch.tensor([[[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]],
                          [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    assert one_hot_loss(w, valid).item() == pytest.approx((0.25 + 0.62) / 2)
    searched = torch.tensor([[False, False, False], [True, False, False]])
    assert one_hot_loss(w, valid, searched).item() == pytest.approx(0.62 / 2)


def test_one_hot_loss_gradient_is_finite() -> None:
    w = torch.softmax(torch.randn(2, 2, 5, generator=_gen(11), dtype=torch.float64), -1)
    w.requires_grad_()
    valid = torch.ones(2, 2, 5, dtype=torch.bool)
    valid[0, 0] = False  # an unsearched (reference) row
    one_hot_loss(w, valid).backward()
    assert torch.isfinite(w.grad).all() and (w.grad[0, 0] == 0).all()


# --------------------------------------------------------------------------- L_BM


def test_block_matching_loss_hand_values() -> None:
    inf = math.inf
    d = torch.tensor([[[0.1, 0.5, inf]]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[[0.3, 0.2, inf]]], dtype=torch.float64)
    valid = torch.tensor([[[True, True, False]]])
    loss = block_matching_loss(d, g, valid)
    assert loss.item() == pytest.approx(0.2**2 + 0.3**2)
    loss.backward()
    assert torch.allclose(d.grad, torch.tensor([[[-0.4, 0.6, 0.0]]], dtype=torch.float64))
    assert block_matching_loss(g, g, valid).item() == 0.0


# --------------------------------------------------------------------------- batch invariance


def _diagnostics(b: int, seed: int, guide: bool = True) -> MatchDiagnostics:
    k, n, m = 1, 3, 4
    g = _gen(seed)
    valid = torch.rand(b, k, n, m, generator=g) > 0.2
    valid[:, :, 1] = False  # the reference frame is not searched
    d = torch.rand(b, k, n, m, generator=g, dtype=torch.float64).masked_fill(~valid, math.inf)
    gd = torch.rand(b, k, n, m, generator=g, dtype=torch.float64).masked_fill(~valid, math.inf)
    w = torch.softmax(-d / 0.1, -1).nan_to_num(0.0)
    return MatchDiagnostics(torch.zeros(b, k, n, m, 2, dtype=torch.long), d, w, valid,
                            gd if guide else None)


def _double(diag: MatchDiagnostics) -> MatchDiagnostics:
    return MatchDiagnostics(*(None if t is None else _twice(t) for t in (
        diag.candidates, diag.distances, diag.weights, diag.valid, diag.guide_distances)))


def test_doubling_the_batch_changes_no_loss() -> None:
    gt, pred = _images(2, 6, seed=12), _images(2, 6, seed=13)
    wb, ccm = _meta(2)
    mask = high_frequency_mask(gt)
    diag = _diagnostics(2, 14)
    pairs = [
        (reconstruction_loss(pred, gt, wb, ccm),
         reconstruction_loss(_twice(pred), _twice(gt), _twice(wb), _twice(ccm))),
        (interpolation_loss(pred, gt, mask, wb, ccm),
         interpolation_loss(_twice(pred), _twice(gt), _twice(mask), _twice(wb), _twice(ccm))),
        (one_hot_loss(diag.weights, diag.valid),
         one_hot_loss(_twice(diag.weights), _twice(diag.valid))),
        (block_matching_loss(diag.distances, diag.guide_distances, diag.valid),
         block_matching_loss(_twice(diag.distances), _twice(diag.guide_distances),
                             _twice(diag.valid))),
    ]
    for single, double in pairs:
        assert single.item() > 0
        assert double.item() == pytest.approx(single.item(), rel=1e-12)
    out = JDDBOutput(pred, gt * 0.9, SimpleNamespace(stage1=diag, stage2=diag))
    out2 = JDDBOutput(_twice(pred), _twice(gt * 0.9),
                      SimpleNamespace(stage1=_double(diag), stage2=_double(diag)))
    batch = {"gt": gt, "wb": wb, "ccm": ccm}
    batch2 = {key: _twice(v) for key, v in batch.items()}
    assert total_loss(out2, batch2)[0].item() == pytest.approx(total_loss(out, batch)[0].item())


# --------------------------------------------------------------------------- total loss


def test_total_loss_combines_weighted_terms() -> None:
    gt, pred, interp = _images(2, 6, seed=15), _images(2, 6, seed=16), _images(2, 6, seed=17)
    wb, ccm = _meta(2)
    s1, s2 = _diagnostics(2, 18), _diagnostics(2, 19)
    pred.requires_grad_()
    out = JDDBOutput(pred, interp, SimpleNamespace(stage1=s1, stage2=s2))
    batch = {"gt": gt, "wb": wb, "ccm": ccm}
    weights = LossWeights(beta=2.0, rho=3.0, eta=5.0)
    loss, report = total_loss(out, batch, weights, use_bm=True)

    l_r = reconstruction_loss(pred, gt, wb, ccm).item()
    l_ip = interpolation_loss(interp, gt, high_frequency_mask(gt), wb, ccm).item()
    l_oh = one_hot_loss(s1.weights, s1.valid).item() + one_hot_loss(s2.weights, s2.valid).item()
    l_bm = (block_matching_loss(s1.distances, s1.guide_distances, s1.valid).item()
            + block_matching_loss(s2.distances, s2.guide_distances, s2.valid).item())
    assert report["reconstruction"] == pytest.approx(l_r)
    assert report["interpolation"] == pytest.approx(l_ip)
    assert report["one_hot"] == pytest.approx(l_oh)
    assert report["block_matching"] == pytest.approx(l_bm)
    expected = l_r + 2.0 * l_ip + 3.0 * l_oh + 5.0 * l_bm
    assert loss.item() == pytest.approx(expected) and report["total"] == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_total_loss_skips_absent_terms() -> None:
    gt, pred = _images(2, 6, seed=20), _images(2, 6, seed=21)
    wb, ccm = _meta(2)
    batch = {"gt": gt, "wb": wb, "ccm": ccm}
    l_r = reconstruction_loss(pred, gt, wb, ccm).item()

    loss, report = total_loss(JDDBOutput(pred, None, None), batch)
    assert report["interpolation"] is None and report["one_hot"] is None
    assert report["block_matching"] is None and loss.item() == pytest.approx(l_r)

    s1 = _diagnostics(2, 22)
    out = JDDBOutput(pred, None, SimpleNamespace(stage1=s1, stage2=None))
    _, report = total_loss(out, batch, use_bm=False)  # L_BM switched off by the schedule
    assert report["one_hot"] == pytest.approx(one_hot_loss(s1.weights, s1.valid).item())
    assert report["block_matching"] is None
    no_guide = JDDBOutput(pred, None, SimpleNamespace(stage1=_diagnostics(2, 22, guide=False),
                                                      stage2=None))
    assert total_loss(no_guide, batch, use_bm=True)[1]["block_matching"] is None


def test_total_loss_needs_the_batch_metadata() -> None:
    gt = _images(1, 4)
    with pytest.raises(BurstFormatError, match="'ccm'"):
        total_loss(JDDBOutput(gt, None, None), {"gt": gt, "wb": torch.ones(1, 3)})


def test_loss_weights_defaults_and_checks() -> None:
    assert LossWeights() == LossWeights(beta=1.0, rho=1e5, eta=1e3)
    with pytest.raises(ConfigError, match="loss.rho"):
        LossWeights(rho=-1.0)


def test_total_loss_evaluates_low_precision_outputs_in_fp32() -> None:
    gt, pred = _images(2, 6, seed=23).float(), _images(2, 6, seed=24).float()
    wb, ccm = (t.float() for t in _meta(2))
    half = pred.bfloat16()  # e.g. an autocast output
    loss, _ = total_loss(JDDBOutput(half, None, None), {"gt": gt, "wb": wb, "ccm": ccm})
    assert loss.dtype == torch.float32
    assert loss.item() == reconstruction_loss(half.float(), gt, wb, ccm).item()
