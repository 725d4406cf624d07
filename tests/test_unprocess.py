from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.data
import torch

from burstjdd.errors import ConfigError
from burstjdd.raw import unprocess as up
from burstjdd.raw.color import inverse_smoothstep, render

SEEDS = [0, 1, 7, 123]


def _params(which):
    if which == "test":
        return up.test_isp_params()
    return up.sample_isp_params(torch.Generator().manual_seed(which))


def _photo(name: str) -> torch.Tensor:
    """A natural sRGB photo bundled with scikit-image at half size (stride 2, keeps the speed
    of the suite), (3, H/2, W/2) float32 in [0, 1]."""
    array = getattr(skimage.data, name)()[::2, ::2]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="module", params=["astronaut", "coffee"])
def image(request) -> torch.Tensor:
    return _photo(request.param)


def test_brooks_matrices_are_typed_as_released():
    # spot checks against Brooks et al.'s unprocess.py, and per-matrix checksums (summed by
    # hand from the released values) that catch a mistyped entry anywhere
    assert up.XYZ2CAMS[0][0] == (1.0234, -0.2969, -0.2266)
    assert up.XYZ2CAMS[3][2] == (-0.097, 0.1581, 0.5181)
    np.testing.assert_allclose(
        np.asarray(up.XYZ2CAMS).sum(axis=(1, 2)), [2.3124, 2.2229, 2.1683, 1.9914], atol=1e-9
    )
    # sRGB -> XYZ maps white (1, 1, 1) to the D65 white point
    white = np.asarray(up.RGB2XYZ).sum(axis=1)
    np.testing.assert_allclose(white, [0.95047, 1.0, 1.08883], atol=1e-4)


def test_test_params_are_the_protocol_metadata():
    p = up.test_isp_params()
    assert (p.red_gain, p.blue_gain, p.rgb_gain) == (2.0, 1.7, 1.0)
    torch.testing.assert_close(p.wb, torch.tensor([2.0, 1.0, 1.7]))
    expected = np.asarray(up.XYZ2CAMS[0]) @ np.asarray(up.RGB2XYZ)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p.rgb2cam.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(p.cam2rgb.numpy(), np.linalg.inv(expected), atol=1e-5)
    assert p.rgb2cam.dtype == p.cam2rgb.dtype == torch.float32


@pytest.mark.parametrize("which", ["test", *SEEDS])
def test_matrices_are_consistent(which):
    p = _params(which)
    torch.testing.assert_close(p.rgb2cam.sum(dim=1), torch.ones(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(p.cam2rgb @ p.rgb2cam, torch.eye(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(p.rgb2cam @ p.cam2rgb, torch.eye(3), rtol=0, atol=1e-5)


def test_sampling_is_deterministic_and_seed_dependent():
    a, b, c = _params(5), _params(5), _params(6)
    assert torch.equal(a.rgb2cam, b.rgb2cam) and torch.equal(a.cam2rgb, b.cam2rgb)
    assert (a.rgb_gain, a.red_gain, a.blue_gain) == (b.rgb_gain, b.red_gain, b.blue_gain)
    assert not torch.equal(a.rgb2cam, c.rgb2cam)
    assert len({a.rgb_gain, c.rgb_gain}) == 2 and len({a.red_gain, c.red_gain}) == 2


def test_sampling_uses_only_the_given_generator():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _params(3)
    assert torch.equal(torch.rand(3), expected)


def test_sampled_gain_distributions():
    gen = torch.Generator().manual_seed(2024)
    draws = [up.sample_isp_params(gen) for _ in range(1000)]
    red = np.array([p.red_gain for p in draws])
    blue = np.array([p.blue_gain for p in draws])
    inv_rgb = 1.0 / np.array([p.rgb_gain for p in draws])  # ~ N(0.8, 0.1)
    assert 1.9 <= red.min() and red.max() <= 2.4 and abs(red.mean() - 2.15) < 0.02
    assert 1.5 <= blue.min() and blue.max() <= 1.9 and abs(blue.mean() - 1.7) < 0.02
    assert abs(inv_rgb.mean() - 0.8) < 0.01 and abs(inv_rgb.std() - 0.1) < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_sampled_rgb2cam_is_a_convex_mix_of_brooks_matrices(seed):
    # unnormalised rows are sum_i w_i (X_i @ RGB2XYZ)[r]; so some w >= 0 and row scales c_r solve
    # sum_i w_i A_i[r, :] - c_r rgb2cam[r, :] = 0 (9 equations, 7 unknowns): a 1-d null space
    p = _params(seed)
    a = np.asarray(up.XYZ2CAMS) @ np.asarray(up.RGB2XYZ)  # (4, 3, 3)
    system = np.zeros((9, 7))
    for r in range(3):
        system[3 * r : 3 * r + 3, :4] = a[:, r, :].T
        system[3 * r : 3 * r + 3, 4 + r] = -p.rgb2cam[r].double().numpy()
    _, sing, vt = np.linalg.svd(system)
    assert sing[-1] < 1e-5 * sing[0]
    w = vt[-1, :4] / vt[-1, :4].sum()
    assert np.all(w > -1e-3)


@pytest.mark.parametrize("which", ["test", *SEEDS])
def test_process_inverts_unprocess_away_from_saturation(image, which):
    """process(unprocess(x), tone=True) == x within 1/255 outside saturation_mask; render (no
    tone curve) gives the inverse-smoothstepped x, as the metric ISP does."""
    p = _params(which)
    camera = up.unprocess(image, p)
    mask = up.saturation_mask(image, p)
    assert camera.shape == image.shape and camera.dtype == torch.float32
    assert camera.min() >= 0 and camera.max() <= 1
    assert mask.float().mean() < 0.05  # the exclusion stays small on natural photos
    keep = ~mask
    back = up.process(camera, p, tone=True)
    assert (back - image).abs().amax(dim=0)[keep].max() < 1 / 255
    rendered = render(camera, p.wb, p.cam2rgb)
    assert (rendered - inverse_smoothstep(image)).abs().amax(dim=0)[keep].max() < 1 / 255


def test_saturated_pixels_are_really_lost_and_white_stays_white():
    p = up.test_isp_params()
    astronaut = _photo("astronaut")
    mask = up.saturation_mask(astronaut, p)
    assert mask.any()
    back = up.process(up.unprocess(astronaut, p), p, tone=True)
    assert (back - astronaut).abs().amax(dim=0)[mask].max() > 1 / 255  # the mask is needed
    white = torch.ones(3, 2, 2)
    torch.testing.assert_close(up.unprocess(white, p), white)  # highlight-preserving gains
    torch.testing.assert_close(up.process(up.unprocess(white, p), p, tone=True), white)


def test_saturation_mask_flags_each_cause():
    p = up.test_isp_params()
    pixels = torch.tensor(
        [
            [0.5, 0.5, 0.5],  # mid grey: exact
            [0.999, 0.999, 0.999],  # near-white grey: linear gray ~0.99 > 0.9
            [0.1, 0.1, 0.9],  # saturated blue: negative red in camera RGB -> clipped
            [1.2, 0.5, 0.5],  # outside [0, 1]
        ]
    ).T.reshape(3, 1, 4)
    assert up.saturation_mask(pixels, p)[0].tolist() == [False, True, True, True]


def test_unprocess_batches_and_follows_dtype_and_device():
    p = _params(1)
    x = torch.rand(2, 3, 3, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = up.unprocess(x, p)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out[1, 2], up.unprocess(x[1, 2], p))
    torch.testing.assert_close(up.process(out, p, tone=True)[0, 1], up.process(out[0, 1], p, True))
    meta = torch.empty(2, 3, 4, 4, device="meta")
    assert up.unprocess(meta, p).device.type == "meta"
    assert up.saturation_mask(meta, p).device.type == "meta"


def test_isp_params_are_frozen_and_validated():
    p = up.test_isp_params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.red_gain = 3.0  # type: ignore[misc]
    q = up.IspParams(
        rgb2cam=np.eye(3), cam2rgb=[[1, 0, 0], [0, 1, 0], [0, 0, 1]], rgb_gain=1, red_gain=2,
        blue_gain=1.5,
    )
    assert q.rgb2cam.dtype == torch.float32 and isinstance(q.rgb_gain, float)
    with pytest.raises(ConfigError):
        up.IspParams(torch.eye(4), torch.eye(3), 1.0, 2.0, 1.7)
    with pytest.raises(ConfigError):
        up.IspParams(torch.eye(3), torch.eye(3), 1.0, -2.0, 1.7)
