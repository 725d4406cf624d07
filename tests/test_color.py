from __future__ import annotations

import pytest
import torch

from burstjdd.errors import BurstFormatError
from burstjdd.raw.color import (
    apply_ccm,
    apply_gains,
    gamma_compress,
    gamma_expand,
    invert_ccm,
    invert_gains,
    inverse_smoothstep,
    render,
    safe_invert_gains,
    smoothstep,
)

TOL = dict(atol=1e-6, rtol=0.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rgb(*leading: int, size: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(*leading, 3, size, size, generator=_gen(seed), dtype=torch.float64)


def _gains(*leading: int, seed: int = 1) -> torch.Tensor:
    return 1.0 + 2.0 * torch.rand(*leading, 3, generator=_gen(seed), dtype=torch.float64)


def _ccm(*leading: int, seed: int = 2) -> torch.Tensor:
    # well conditioned: identity plus a small perturbation
    noise = torch.rand(*leading, 3, 3, generator=_gen(seed), dtype=torch.float64) - 0.5
    return torch.eye(3, dtype=torch.float64) + 0.4 * noise


def test_gains_and_ccm_hand_checked():
    rgb = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 2, 2)
    assert apply_gains(rgb, [2.0, 1.0, 0.5])[:, 0, 0].tolist() == [2.0, 2.0, 1.5]
    ccm = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]  # out_c = sum_k ccm[c, k] rgb_k
    assert apply_ccm(rgb, ccm)[:, 1, 1].tolist() == [3.0, 1.0, 6.0]


@pytest.mark.parametrize("leading", [(), (4,), (2, 3)])
def test_forward_inverse_pairs_are_identities(leading):
    rgb = _rgb(*leading)
    gains, ccm = _gains(*leading), _ccm(*leading)
    torch.testing.assert_close(invert_gains(apply_gains(rgb, gains), gains), rgb, **TOL)
    torch.testing.assert_close(apply_gains(invert_gains(rgb, gains), gains), rgb, **TOL)
    torch.testing.assert_close(invert_ccm(apply_ccm(rgb, ccm), ccm), rgb, **TOL)
    torch.testing.assert_close(apply_ccm(invert_ccm(rgb, ccm), ccm), rgb, **TOL)


def test_gamma_pair_is_identity_above_floor():
    # below 1e-8 ** (1 / 2.2) ~ 2.3e-4 the 1e-8 floor of the expansion is hit: documented
    x = torch.linspace(1e-3, 1.0, 1001, dtype=torch.float64)
    torch.testing.assert_close(gamma_expand(gamma_compress(x)), x, **TOL)
    torch.testing.assert_close(gamma_compress(gamma_expand(x)), x, **TOL)
    torch.testing.assert_close(gamma_compress(x, gamma=1.8), x ** (1 / 1.8), **TOL)
    assert gamma_compress(torch.zeros(1)).item() == pytest.approx(1e-8 ** (1 / 2.2))


def test_smoothstep_pair_is_identity():
    x = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    torch.testing.assert_close(inverse_smoothstep(smoothstep(x)), x, **TOL)
    torch.testing.assert_close(smoothstep(inverse_smoothstep(x)), x, **TOL)
    assert smoothstep(torch.tensor([0.0, 0.25, 0.5, 1.0])).tolist() == [0.0, 0.15625, 0.5, 1.0]
    assert torch.all(torch.diff(smoothstep(x)) > 0)
    assert inverse_smoothstep(torch.tensor([-0.5, 1.5])).tolist() == [0.0, 1.0]  # clamped


def test_safe_invert_gains_exact_below_inflection():
    gains = torch.tensor([2.0, 1.25, 1.7], dtype=torch.float64)
    rgb = 0.9 * _rgb(2, size=16)  # channel mean <= 0.9 everywhere
    safe = safe_invert_gains(rgb, gains)
    torch.testing.assert_close(safe, invert_gains(rgb, gains), **TOL)
    torch.testing.assert_close(apply_gains(safe, gains), rgb, **TOL)


def test_safe_invert_gains_monotone_and_continuous_above_inflection():
    gains = torch.tensor([2.4, 1.0 / 0.7, 1.9], dtype=torch.float64)  # forward gains >= 1
    t = torch.linspace(0.0, 1.0, 10001, dtype=torch.float64)
    ramp = t.view(1, 1, -1).expand(3, 1, -1)  # grey ramp, (3, 1, T)
    out = safe_invert_gains(ramp, gains)[:, 0]  # (3, T)
    steps = torch.diff(out, dim=-1)
    assert torch.all(steps > 0)  # strictly increasing with brightness
    # continuous: no step exceeds Lipschitz * dt, where d/dt [t * (g + mu (1 - g))] is at most
    # 1 + t * dmu/dt <= 1 + 2 / (1 - 0.9) = 21 (a jump would break this on a fine grid)
    assert steps.max().item() <= 21 * (t[1] - t[0]).item()
    torch.testing.assert_close(out[:, -1], torch.ones(3, dtype=torch.float64))  # white stays white
    exact = t <= 0.9
    torch.testing.assert_close(out[:, exact], t[exact] / gains[:, None], **TOL)
    assert torch.all(out[:, ~exact] > t[~exact] / gains[:, None])  # highlights kept brighter


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_render_hand_checked(dtype):
    rgb = torch.tensor([0.2, 0.3, 0.8], dtype=dtype).view(3, 1, 1)
    out = render(rgb, torch.tensor([2.0, 1.0, 1.5]), torch.eye(3))
    assert out.dtype == dtype
    # 0.8 * 1.5 = 1.2 is clamped to 1 before the gamma
    expected = torch.tensor([0.4, 0.3, 1.0], dtype=dtype) ** (1 / 2.2)
    torch.testing.assert_close(out.flatten(), expected)


def test_render_is_the_documented_composition():
    rgb = 1.3 * _rgb(2, 3) - 0.1  # leaves [0, 1] on purpose
    wb, ccm = _gains(2, 1), _ccm(2, 1)
    expected = gamma_compress(apply_ccm(apply_gains(rgb, wb).clamp(0, 1), ccm).clamp(0, 1))
    torch.testing.assert_close(render(rgb, wb, ccm), expected, rtol=0, atol=0)
    assert render(rgb, wb, ccm).min() >= 0 and render(rgb, wb, ccm).max() <= 1


def test_parameters_broadcast_against_leading_dims():
    rgb = _rgb(2, 4)  # (B, N, 3, H, W)
    gains = _gains(2, 1)  # one set per batch element, shared over N
    ccm = _ccm(2, 1)
    out = apply_ccm(apply_gains(rgb, gains), ccm)
    for b in range(2):
        for n in range(4):
            one = apply_ccm(apply_gains(rgb[b, n], gains[b, 0]), ccm[b, 0])
            torch.testing.assert_close(out[b, n], one, rtol=0, atol=1e-12)
    # a single (3,) / (3, 3) set applies to every leading index
    shared = gains[0, 0]
    torch.testing.assert_close(apply_gains(rgb, shared)[1, 2], apply_gains(rgb[1, 2], shared))
    safe = safe_invert_gains(rgb, gains)
    torch.testing.assert_close(safe[1, 3], safe_invert_gains(rgb[1, 3], gains[1, 0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_dtype_follows_image_not_parameters(dtype):
    rgb = _rgb(2).to(dtype)
    gains, ccm = _gains().float(), _ccm().float()  # parameters stay float32
    for out in (
        apply_gains(rgb, gains),
        invert_gains(rgb, gains),
        safe_invert_gains(rgb, gains),
        apply_ccm(rgb, ccm),
        gamma_compress(rgb),
        inverse_smoothstep(rgb),
        render(rgb, gains, ccm),
    ):
        assert out.dtype == dtype
    if dtype != torch.float16:  # no CPU half inverse
        assert invert_ccm(rgb, ccm).dtype == dtype


def test_device_follows_image():
    rgb = torch.empty(2, 3, 4, 4, device="meta")
    gains, ccm = torch.ones(3), torch.eye(3)  # CPU parameters
    assert render(rgb, gains, ccm).device.type == "meta"
    assert safe_invert_gains(rgb, gains).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_image_with_cpu_parameters():
    rgb = _rgb(2).cuda()
    out = render(rgb, _gains(), _ccm())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), render(rgb.cpu(), _gains(), _ccm()))


@pytest.mark.parametrize(
    "call",
    [
        lambda: apply_gains(torch.zeros(4, 2, 2), [1.0, 1.0, 1.0]),
        lambda: apply_gains(torch.zeros(3, 2, 2), [1.0, 1.0]),
        lambda: apply_ccm(torch.zeros(3, 2, 2), torch.eye(4)),
        lambda: render(torch.zeros(2, 2), [1.0, 1.0, 1.0], torch.eye(3)),
    ],
)
def test_bad_shapes_raise_format_error(call):
    with pytest.raises(BurstFormatError):
        call()
