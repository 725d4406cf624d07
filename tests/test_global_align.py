"""Global pre-alignment (raw/global_align.py) and its use in the restore (docs/method.md §7.1).

Run: ``python -m pytest tests/test_global_align.py``
"""

from __future__ import annotations

import math

import pytest
import skimage.data
import torch
import torch.nn.functional as F

from burstjdd.errors import ConfigError
from burstjdd.models.classical import build_classical
from burstjdd.raw.cfa import LR_GRID, mosaic, pack
from burstjdd.raw.global_align import (
    MIN_CONFIDENCE,
    GlobalMotion,
    estimate_global_motion,
    shift_frames,
)
from burstjdd.raw.noise import PRESETS, add_noise
from burstjdd.restore import (
    RestoreOptions,
    alignment_plan,
    auto_search_radius,
    default_search_radius,
    restore_burst,
)

HIGH = PRESETS["high"]


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    """The astronaut photo enlarged to 1024 x 1024, roughly linear RGB (3, 1024, 1024)."""
    img = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float().div(255)
    return F.interpolate(img[None], scale_factor=2, mode="bilinear")[0].clamp(0, 1).square()


def _noisy_mosaics(frames: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Linear RGB frames (N, 3, H, W) → RGGB mosaics with `high` noise (N, H, W)."""
    return add_noise(mosaic(frames, "RGGB"), HIGH.shot, HIGH.read,
                     torch.Generator().manual_seed(seed))


def _expected(motion, ref: int) -> torch.Tensor:
    """(N, 2) displacement of the reference's content into each frame (make_frames' motion)."""
    m = torch.tensor(motion)
    return m - m[ref]


def test_large_shifts_are_recovered_at_high_noise(scene, make_frames):
    # 512 x 512 frames, up to 200 px from the reference on each axis
    motion = [(0, 200), (-96, 104), (0, 0), (120, -64), (200, -200)]
    raw = _noisy_mosaics(make_frames(scene, motion, 512))
    gm = estimate_global_motion(pack(raw), 2)
    assert bool((gm.shifts % LR_GRID == 0).all())  # the Bayer phase and the LR grid are kept
    assert (gm.shifts - _expected(motion, 2)).abs().max() <= LR_GRID
    assert bool(gm.reliable.all())
    assert gm.confidence[2] == math.inf and gm.shifts[2].tolist() == [0, 0]


def test_a_moving_object_does_not_take_the_camera_shift(scene, make_frames):
    # The camera pans; a textured square of 10 % of the frame stays put on the sensor (a
    # subject followed by the camera), so it alone would say "no motion".
    motion = [(-64, 160), (-32, 80), (0, 0), (32, -80), (64, -160)]
    frames = make_frames(scene, motion, 512).clone()
    square = scene[:, :162, :162].flip(-1)  # 162² ≈ 10 % of 512²
    frames[:, :, 175:337, 175:337] = square
    gm = estimate_global_motion(pack(_noisy_mosaics(frames, seed=1)), 2)
    assert (gm.shifts - _expected(motion, 2)).abs().max() <= LR_GRID


def test_no_motion_gives_zero_shifts(scene, make_frames):
    raw = _noisy_mosaics(make_frames(scene, 5, 384), seed=2)
    gm = estimate_global_motion(pack(raw), 2)
    assert gm.shifts.abs().max() == 0 and bool(gm.reliable.all())


def test_shift_frames_moves_by_whole_pixels_with_replicated_borders():
    x = torch.arange(2 * 1 * 6 * 8, dtype=torch.float32).view(2, 1, 6, 8)
    out = shift_frames(x, torch.tensor([[0, 0], [2, -3]]))
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1, :, :4, 3:], x[1, :, 2:, :5])  # out(y, x) = x(y + 2, x - 3)
    assert torch.equal(out[1, :, 4:, 3:], x[1, :, 5:, :5].expand(1, 2, 5))  # last row repeated
    assert torch.equal(out[1, :, :4, :3], x[1, :, 2:, :1].expand(1, 4, 3))  # first column


def test_the_radius_widens_only_for_unreliable_estimates():
    base = default_search_radius(720, 1280)  # 48
    shifts = torch.tensor([[0, 200], [0, 0], [40, -8]])
    sure = GlobalMotion(1, shifts, torch.tensor([3.0, math.inf, 2.0]))
    assert auto_search_radius(720, 1280, None) == base
    assert auto_search_radius(720, 1280, sure) == base
    unsure = GlobalMotion(1, shifts, torch.tensor([3.0, math.inf, MIN_CONFIDENCE / 2]))
    assert auto_search_radius(720, 1280, unsure) == 56  # 40 + 16
    far = GlobalMotion(1, shifts, torch.tensor([1.0, math.inf, 2.0]))
    assert auto_search_radius(720, 1280, far) == 2 * base  # capped


def test_prealign_option_is_checked():
    with pytest.raises(ConfigError, match="prealign"):
        RestoreOptions(prealign="no")


def test_restore_with_prealign_reaches_three_times_the_default_radius(scene, make_burst):
    # Classical model, 384 x 384, frames 144 px (3 x the default 48 px radius) on either side
    # of the reference: without pre-alignment the coarse alignment cannot find them.
    motion = [(0, -144), (0, 0), (0, 144)]
    burst = make_burst(scene, motion, 384, noise=HIGH, gt=True)
    plan = alignment_plan(burst)
    assert plan.shifts.tolist() == [[0, -144], [0, 0], [0, 144]] and plan.radius == 48
    model = build_classical().eval()
    psnr = {}
    for prealign in (True, False):
        out = restore_burst(model, burst, RestoreOptions(tile=256, prealign=prealign))
        psnr[prealign] = -10 * math.log10(float((out - burst.gt).square().mean()))
    assert psnr[True] > psnr[False] + 1.5  # measured 36.45 vs 34.45 dB
