"""The pairwise Wiener merge (burstjdd.raw.merge) on hand-made aligned bursts."""

from __future__ import annotations

import pytest
import torch

from burstjdd.raw.merge import raised_cosine, wiener_merge


def _scene(b=2, c=4, h=30, w=22, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, c, h, w, generator=g), g


def test_half_overlapping_raised_cosines_sum_to_one():
    window = raised_cosine(16, torch.zeros(()))
    tiled = window[:8] + window[8:]  # rows of two half-overlapping tiles
    torch.testing.assert_close(tiled[:, :8] + tiled[:, 8:], torch.ones(8, 8))


@pytest.mark.parametrize("n,ref", [(1, 0), (5, 2), (4, 3)])
def test_identical_frames_and_a_single_frame_return_the_reference(n, ref):
    clean, _ = _scene()  # odd-sized planes: 30 x 22 is no multiple of the tile
    frames = clean.repeat(1, n, 1, 1, 1)
    noise = torch.full_like(frames, 0.02)
    torch.testing.assert_close(wiener_merge(frames, noise, ref), clean[:, 0])


def test_static_noisy_frames_are_averaged():
    clean, g = _scene()
    sigma = 0.02
    frames = clean + sigma * torch.randn(2, 5, 4, 30, 22, generator=g)
    err = wiener_merge(frames, torch.full_like(frames, sigma), 2) - clean[:, 0]
    # 5 frames: the plain mean would leave 1/5 of the variance; the Wiener weights keep a bit
    # more (they also reject some frequencies where the noise alone makes frames differ)
    assert err.var() < 0.3 * sigma**2


def test_a_frame_that_differs_from_the_reference_is_rejected():
    clean, g = _scene()
    sigma = 0.02
    frames = clean + sigma * torch.randn(2, 5, 4, 30, 22, generator=g)
    outlier = frames.clone()
    outlier[:, 0] = torch.rand(2, 4, 30, 22, generator=g)  # occlusion / failed alignment
    noise = torch.full_like(frames, sigma)
    err = wiener_merge(outlier, noise, 2) - clean[:, 0]
    mean_err = outlier.mean(1) - clean[:, 0]  # what merging without rejection would give
    assert err.square().mean() < 0.1 * mean_err.square().mean()
    assert err.var() < 0.6 * sigma**2  # and the 4 good frames are still averaged


def test_gradients_flow_and_dtype_follows_the_input():
    clean, g = _scene(b=1, h=16, w=16)
    frames = (clean + 0.02 * torch.randn(1, 3, 4, 16, 16, generator=g)).double()
    frames.requires_grad_(True)
    out = wiener_merge(frames, torch.full_like(frames, 0.02), 1)
    assert out.dtype == torch.float64 and out.shape == (1, 4, 16, 16)
    out.sum().backward()
    assert frames.grad is not None and frames.grad[:, 0].abs().sum() > 0
