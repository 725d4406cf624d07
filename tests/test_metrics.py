"""PSNR / SSIM of the evaluation protocol against scikit-image and hand-checked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from burstjdd.errors import DataError
from burstjdd.eval.metrics import protocol_srgb, psnr, ssim
from burstjdd.raw.color import render
from burstjdd.raw.unprocess import test_isp_params

SSIM_KW = dict(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=0
)


def _random_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((3, 37, 52))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0.0, 1.0)
    return a, b


def _natural_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = data.astronaut()[100:228, 150:278].transpose(2, 0, 1) / 255.0  # (3, 128, 128)
    b = np.clip(a + 0.03 * rng.standard_normal(a.shape), 0.0, 1.0)
    return a, b


PAIRS = [_random_pair(0), _random_pair(1), _natural_pair(2)]


@pytest.mark.parametrize("pair", PAIRS, ids=["random0", "random1", "astronaut"])
def test_psnr_equals_skimage(pair):
    a, b = pair
    expected = peak_signal_noise_ratio(a * 255, b * 255, data_range=255)
    # both: float64 MSE over all pixels and channels; only the summation order differs
    assert psnr(a, b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("pair", PAIRS, ids=["random0", "random1", "astronaut"])
def test_ssim_equals_skimage_on_the_same_region(pair):
    # Border handling: skimage filters the whole image with 'reflect' padding and then averages
    # the SSIM map over the interior only (it drops (11 - 1) / 2 = 5 px on each side); the
    # official code filters with cv2.filter2D and crops [5:-5, 5:-5]; ours filters 'valid'.
    # All three average exactly the window positions that lie inside the image, where no padded
    # value enters, so the results agree to rounding.
    a, b = pair
    mean, full_map = structural_similarity(a * 255, b * 255, full=True, **SSIM_KW)
    assert ssim(a, b) == pytest.approx(mean, abs=1e-12)
    assert ssim(a, b) == pytest.approx(full_map[:, 5:-5, 5:-5].mean(), abs=1e-12)
    # the border windows (padded) would change the value: the crop is not a no-op
    assert abs(ssim(a, b) - full_map.mean()) > 1e-5


def test_identical_images():
    a, _ = _natural_pair(0)
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_psnr_constant_offset_hand_checked():
    a = np.full((3, 16, 16), 0.3)
    # difference 0.1 * 255 = 25.5 everywhere: MSE = 650.25, 255^2 / 650.25 = 100 -> 20 dB
    assert psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-12)
    # one channel off by 0.1, the others exact: MSE / 3 -> 20 + 10 log10(3) dB
    b = a.copy()
    b[1] += 0.1
    assert psnr(b, a) == pytest.approx(20.0 + 10.0 * math.log10(3.0), abs=1e-12)


def test_ssim_constant_images_hand_checked():
    a, b = np.full((3, 20, 20), 0.2), np.full((3, 20, 20), 0.4)
    # zero variances: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1), means 51 and 102
    c1 = (0.01 * 255) ** 2
    expected = (2 * 51 * 102 + c1) / (51**2 + 102**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_torch_float32_and_numpy_inputs_agree():
    a, b = _random_pair(3)
    ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    # float32 inputs are promoted to float64 before scaling, so the result matches float64
    # NumPy inputs holding the same (rounded) values
    a32, b32 = ta.double().numpy(), tb.double().numpy()
    assert psnr(ta, tb) == pytest.approx(psnr(a32, b32), rel=1e-12)
    assert ssim(ta, tb) == pytest.approx(ssim(a32, b32), abs=1e-12)


def test_bad_inputs_raise_one_line_errors():
    a = np.zeros((3, 16, 16))
    with pytest.raises(DataError, match="shapes differ"):
        psnr(a, np.zeros((3, 16, 18)))
    with pytest.raises(DataError, match=r"\(3, H, W\)"):
        ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)))
    with pytest.raises(DataError, match="at least 11x11"):
        ssim(np.zeros((3, 10, 30)), np.zeros((3, 10, 30)))


def test_protocol_srgb_is_the_output_isp():
    params = test_isp_params()
    rgb = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = protocol_srgb(rgb, params.wb, params.cam2rgb)
    torch.testing.assert_close(out, render(rgb, params.wb, params.cam2rgb), rtol=0, atol=0)
    # one pixel by hand: gains -> clamp -> cam2rgb -> clamp -> ^(1/2.2)
    pixel = rgb[:, 3, 5].double()
    balanced = (pixel * params.wb.double()).clamp(0, 1)
    expected = (params.cam2rgb.double() @ balanced).clamp(0, 1).clamp_min(1e-8) ** (1 / 2.2)
    torch.testing.assert_close(out[:, 3, 5].double(), expected, rtol=0, atol=1e-6)
