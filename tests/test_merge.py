"""HDR+ merge, and the merge followed by the raw denoiser (burstjdd.raw.merge), on hand-made
bursts."""

from __future__ import annotations

import pytest
import torch

from burstjdd.raw.merge import (
    PATCH_ALIGN,
    HdrPlusParams,
    align_tiles,
    hdrplus_merge,
    merge_and_denoise,
    raised_cosine,
)
from burstjdd.raw.noise import level_from_map


def _scene(n=1, h=32, w=44, seed=0):
    """Smooth random mosaics (n, h, w) in [0.2, 0.8] (upsampled noise: texture at every tile)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, h // 4, w // 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return (0.2 + 0.6 * x[0, 0].clamp(0, 1)).expand(n, h, w).clone(), g


def test_half_overlapping_raised_cosines_sum_to_one():
    window = raised_cosine(16, torch.zeros(()))
    tiled = window[:8] + window[8:]  # rows of two half-overlapping tiles
    torch.testing.assert_close(tiled[:, :8] + tiled[:, 8:], torch.ones(8, 8))


@pytest.mark.parametrize("n,ref", [(1, 0), (5, 2), (4, 3)])
def test_identical_frames_and_a_single_frame_return_the_reference(n, ref):
    clean, _ = _scene(n, 30, 22)  # odd-sized planes: 15 x 11 is no multiple of the tile
    merged = hdrplus_merge(clean, torch.full_like(clean[0], 4e-4), ref, PATCH_ALIGN)
    torch.testing.assert_close(merged.raw, clean[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(merged.variance_ratio, torch.full_like(clean[0], 1 / n))


def test_static_noisy_frames_are_averaged():
    clean, g = _scene(5, 64, 64)
    sigma = 0.02
    frames = clean + sigma * torch.randn(clean.shape, generator=g)
    merged = hdrplus_merge(frames, torch.full_like(clean[0], sigma**2), 2, PATCH_ALIGN)
    err = merged.raw - clean[0]
    # 5 frames: the plain mean would leave 1/5 of the variance; the Wiener weights keep a bit
    # more (they also reject some frequencies where the noise alone makes frames differ)
    assert err.var() < 0.3 * sigma**2
    assert 0.2 <= merged.variance_ratio.mean() < 0.4


def test_shifted_frames_are_aligned_before_they_are_merged():
    clean, g = _scene(1, 96, 96)
    sigma = 0.02
    # frame t is the scene moved by (2t, -2t) raw px (t = -2..2): misaligned by up to 4 px
    frames = torch.stack([torch.roll(clean[0], (2 * t, -2 * t), (0, 1)) for t in range(-2, 3)])
    noisy = frames + sigma * torch.randn(frames.shape, generator=g)
    var = torch.full_like(clean[0], sigma**2)
    err = (hdrplus_merge(noisy, var, 2, PATCH_ALIGN).raw - clean[0])[16:-16, 16:-16]
    assert err.var() < 0.35 * sigma**2
    # without alignment (radius 0 at every level) the Wiener weights reject most frames
    still = type(PATCH_ALIGN)(factors=(1,), tiles=(16,), radius=(0,))
    err0 = (hdrplus_merge(noisy, var, 2, still).raw - clean[0])[16:-16, 16:-16]
    assert err.square().mean() < 0.6 * err0.square().mean()


@pytest.mark.parametrize("params", [PATCH_ALIGN, HdrPlusParams()])
def test_frames_aligned_together_match_frames_aligned_one_by_one(params):
    clean, g = _scene(1, 128, 160)
    # large and different shifts per frame (the full pyramid reaches them), plus noise
    frames = torch.stack([torch.roll(clean[0], (3 * t, -5 * t), (0, 1)) for t in range(-2, 3)])
    gray = frames + 0.02 * torch.randn(frames.shape, generator=g)
    together = align_tiles(gray[2], gray[[0, 1, 3, 4]], params)  # (4, Ky, Kx, 2)
    alone = torch.stack([align_tiles(gray[2], gray[t], params) for t in (0, 1, 3, 4)])
    assert together.shape == alone.shape and torch.equal(together, alone)
    assert align_tiles(gray[2], gray[[0, 1, 3, 4]].view(2, 2, 128, 160), params).shape == \
        (2, 2, *together.shape[1:])


def test_a_frame_that_differs_from_the_reference_is_rejected():
    clean, g = _scene(5, 64, 64)
    sigma = 0.02
    frames = clean + sigma * torch.randn(clean.shape, generator=g)
    frames[0] = torch.rand(64, 64, generator=g)  # occlusion / failed alignment
    var = torch.full_like(clean[0], sigma**2)
    err = hdrplus_merge(frames, var, 2, PATCH_ALIGN).raw - clean[0]
    mean_err = frames.mean(0) - clean[0]  # what merging without rejection would give
    assert err.square().mean() < 0.1 * mean_err.square().mean()
    assert err.var() < 0.6 * sigma**2  # and the 4 good frames are still averaged


def test_merge_and_denoise_beats_the_merge_alone_and_follows_dtype():
    # a smooth scene (features 12 px apart): non-local means finds similar patches in it
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 1, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(48, 48), mode="bicubic",
                                             align_corners=False)[0, 0].clamp(0, 1)
    clean = (0.2 + 0.6 * smooth).expand(5, 48, 48)
    sigma = 0.04
    frames = (clean + sigma * torch.randn(clean.shape, generator=g)).double()
    var = torch.full_like(frames[0], sigma**2)
    merged = hdrplus_merge(frames, var, 2, PATCH_ALIGN).raw
    out = merge_and_denoise(frames, var, 2)
    assert out.dtype == torch.float64 and out.shape == (48, 48)
    # measured 0.32-0.37 over three seeds: the merge removed 3/4 of the noise, the denoiser
    # two thirds of the rest
    assert (out - clean[0]).square().mean() < 0.5 * (merged - clean[0]).square().mean()


def test_merge_and_denoise_removes_the_clipping_bias_of_dark_pixels():
    # a black scene: clipping the noise at 0 leaves a mean of ~0.008 at read noise 0.02,
    # which a merge and a linear denoiser keep; the last step removes it
    g = torch.Generator().manual_seed(5)
    shot, read = 6.4e-3, 2e-2
    clean = torch.full((5, 48, 48), 1e-3)
    noisy = (clean + torch.randn(clean.shape, generator=g) * (shot * clean + read**2).sqrt())
    noisy = noisy.clamp(0.0, 1.0)
    var = shot * noisy[2] + read**2  # the noise map squared
    level = level_from_map(noisy[2], var)
    assert level.shot == pytest.approx(shot, rel=1e-6) and level.read == pytest.approx(read)
    merged = hdrplus_merge(noisy, var, 2, PATCH_ALIGN).raw
    out = merge_and_denoise(noisy, var, 2)
    assert merged.mean() > 0.006  # the bias
    assert abs(out.mean() - 1e-3) < 0.3 * abs(merged.mean() - 1e-3)
