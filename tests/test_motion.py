"""Synthetic motion: the recorded flow/valid are the truth, shifts reach max_shift, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from skimage import data, filters

from burstjdd.errors import DataError
from burstjdd.synth.motion import (
    MotionParams,
    ObjectLayer,
    apply_motion,
    constant_motion,
    motion_bbox,
    motion_flow,
    motion_margin,
    required_scene_size,
    sample_motion,
)

SIZE = (128, 128)


@pytest.fixture(scope="module")
def smooth_scene() -> torch.Tensor:
    # sigma 1 blur: bicubic rendering + bilinear back-warping are then accurate to > 45 dB,
    # while a 0.25 px flow error already costs ~10 dB (see test_flow_error_is_detected)
    img = filters.gaussian(data.astronaut(), sigma=1.0, channel_axis=-1)
    return torch.from_numpy(img).permute(2, 0, 1).float()  # (3, 512, 512)


def backwarp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """frames (N, C, H, W) sampled at reference pixel + flow (bilinear) -> (N, C, H, W)."""
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    gx = 2 * (xs + flow[:, 1]) / (w - 1) - 1
    gy = 2 * (ys + flow[:, 0]) / (h - 1) - 1
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(frames, grid, mode="bilinear", align_corners=True)


def psnr_on(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    mse = ((a - b) ** 2)[:, mask].mean()
    return float(-10 * torch.log10(mse))


def interior(valid: torch.Tensor, border: int = 4) -> torch.Tensor:
    m = valid.clone()
    m[..., :border, :] = False
    m[..., -border:, :] = False
    m[..., :border] = False
    m[..., -border:] = False
    return m


def test_sample_motion_is_deterministic_and_seed_dependent():
    a = sample_motion(torch.Generator().manual_seed(3), 5, 2, 64, 2, SIZE)
    b = sample_motion(torch.Generator().manual_seed(3), 5, 2, 64, 2, SIZE)
    c = sample_motion(torch.Generator().manual_seed(4), 5, 2, 64, 2, SIZE)
    assert a == b
    assert a != c
    assert a.translation[2] == (0.0, 0.0) and a.rotation[2] == 0.0 and a.zoom[2] == 1.0
    assert len(a.objects) == 2 and a.n_frames == 5


@pytest.mark.parametrize("seed", [0, 1])
def test_recorded_flow_reproduces_every_frame(smooth_scene, seed):
    params = sample_motion(torch.Generator().manual_seed(seed), 5, 2, 40, 2, SIZE)
    frames, flow, valid = apply_motion(smooth_scene, params, SIZE)
    assert frames.shape == (5, 3, *SIZE) and flow.shape == (5, 2, *SIZE)
    assert valid.shape == (5, *SIZE)
    ref = frames[2]
    warped = backwarp(frames, flow)
    mask = interior(valid)
    for t in range(5):
        assert mask[t].sum() > 0.2 * mask[t].numel()
        assert psnr_on(warped[t], ref, mask[t]) > 40.0
    # the occlusion mask matters: in-frame pixels marked invalid do not match
    inside = interior(torch.ones_like(valid))
    occluded = inside & ~valid
    t = int(occluded.sum((1, 2)).argmax())
    assert occluded[t].sum() > 100
    assert psnr_on(warped[t], ref, occluded[t]) < 30.0


def test_flow_error_is_detected(smooth_scene):
    # the check above would fail for a flow off by a quarter pixel
    params = sample_motion(torch.Generator().manual_seed(0), 5, 2, 40, 2, SIZE)
    frames, flow, valid = apply_motion(smooth_scene, params, SIZE)
    wrong = flow + torch.tensor([0.25, 0.0]).view(1, 2, 1, 1)
    warped = backwarp(frames, wrong)
    mask = interior(valid)
    assert min(psnr_on(warped[t], frames[2], mask[t]) for t in (0, 1, 3, 4)) < 40.0


def test_reference_frame_is_an_exact_crop(smooth_scene):
    params = sample_motion(torch.Generator().manual_seed(5), 5, 2, 30, 1, SIZE)
    origin = (150, 170)
    frames, flow, _ = apply_motion(smooth_scene, params, SIZE, origin=origin)
    assert torch.all(flow[2] == 0)
    crop = smooth_scene[:, 150:278, 170:298]
    background = ~torch.zeros(SIZE, dtype=torch.bool)
    for obj in params.objects:  # compare where no object is drawn
        yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
        background &= (yy - obj.centre[0]).hypot(xx - obj.centre[1]) > obj.extent
    assert torch.equal(frames[2][:, background], crop[:, background])


def test_integer_translation_is_exact():
    scene = torch.rand(3, 80, 90, generator=torch.Generator().manual_seed(0))
    params = constant_motion(3, 1, (3.0, -5.0))
    frames, flow, valid = apply_motion(scene, params, (40, 50), origin=(20, 20))
    for t in range(3):
        dy, dx = 3 * (t - 1), -5 * (t - 1)
        # frame t shows reference pixel u at u + (dy, dx): its content is scene at origin + v - d
        assert torch.allclose(frames[t], scene[:, 20 - dy : 60 - dy, 20 - dx : 70 - dx], atol=1e-5)
        assert torch.all(flow[t, 0] == dy) and torch.all(flow[t, 1] == dx)
        # valid: u + d inside the frame
        rows = (torch.arange(40) + dy >= 0) & (torch.arange(40) + dy <= 39)
        cols = (torch.arange(50) + dx >= 0) & (torch.arange(50) + dx <= 49)
        assert torch.equal(valid[t], rows[:, None] & cols[None, :])


def test_occlusion_by_a_moving_object():
    # a disc of radius 10 at (30, 30) in the reference moving +20 px in x per frame
    disc = ObjectLayer(centre=(30.0, 30.0), radii=(10.0, 10.0), angle=0.0, velocity=(0.0, 20.0),
                       texture=(0.5, 0.5), softness=1.0)
    params = MotionParams(0, ((0.0, 0.0), (0.0, 0.0)), (0.0, 0.0), (1.0, 1.0), (disc,))
    flow, valid = motion_flow(params, (64, 96))
    # object pixels move with the object and stay visible
    assert torch.all(flow[1, :, 30, 25:36] == torch.tensor([[0.0], [20.0]]))
    assert valid[1, 30, 30]
    # background pixels the disc moves onto are occluded in frame 1, not in the reference
    assert not valid[1, 30, 50] and valid[0, 30, 50]
    assert torch.all(flow[1, :, 30, 50] == 0)
    # background far from the disc is visible; edge pixels are mixed: invalid everywhere
    assert valid[1, 5, 80] and valid[0, 5, 80]
    assert not valid[0, 30, 40] and not valid[1, 30, 40]


def test_scene_too_small_is_a_clear_error():
    params = constant_motion(5, 2, (0.0, 30.0))
    need = required_scene_size(params, (64, 64))
    assert need[1] >= 64 + 2 * 60 and need[0] >= 64
    with pytest.raises(DataError, match=f"needs at least {need[0]}x{need[1]}"):
        apply_motion(torch.zeros(3, 100, 100), params, (64, 64))


def test_motion_margin_bounds_every_draw():
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        shift = 10 + 10 * seed
        params = sample_motion(g, 7, 3, shift, 0, (96, 64))
        y0, x0, y1, x1 = motion_bbox(params, (96, 64))
        m = motion_margin(7, 3, shift)
        assert -y0 <= m and -x0 <= m and y1 - 95 <= m and x1 - 63 <= m


def test_neighbour_shifts_reach_max_shift_and_are_spread():
    medians = []
    for seed in range(6):
        params = sample_motion(torch.Generator().manual_seed(seed), 5, 2, 128, 2, (96, 96))
        flow, _ = motion_flow(params, (96, 96))
        step = (flow[1:] - flow[:-1]).norm(dim=1).flatten(1)  # (4, H*W) neighbouring pairs
        med = step.median(dim=1).values
        medians.append(med)
        assert 0.75 * 128 <= float(med.max()) <= 128.0
        # the camera part of every step is bounded by max_shift (objects move on their own)
        t = torch.tensor(params.translation)
        assert float((t[1:] - t[:-1]).norm(dim=1).max()) <= 128.0
    medians = torch.cat(medians)
    assert float(medians.min()) < 0.5 * 128  # spread over the range, not all near the top


def test_clip_scenes_render_their_own_frame():
    scenes = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    params = constant_motion(3, 1, (0.0, 0.0))
    frames, flow, valid = apply_motion(scenes, params, (20, 20), origin=(10, 10))
    assert torch.allclose(frames, scenes[:, :, 10:30, 10:30], atol=1e-5)
    assert torch.all(flow == 0) and torch.all(valid)


def test_zoom_outside_range_is_refused():
    with pytest.raises(Exception, match="zoom"):
        MotionParams(0, ((0.0, 0.0),), (0.0,), (0.5,))
    assert math.isclose(sample_motion(torch.Generator(), 1, 0, 10, 0, SIZE).zoom[0], 1.0)


def test_long_bursts_keep_their_zoom_in_range():
    # a 64-frame walk of +-1 % zoom steps once wandered beyond +-10 % and failed with every zoom
    # value in the message; the margin of a huge burst once divided by zero
    for seed in range(3):
        params = sample_motion(torch.Generator().manual_seed(seed), 64, 32, 4.0, 0, (64, 64))
        assert max(abs(z - 1) for z in params.zoom) <= 0.1
    assert math.isfinite(motion_margin(10**8, 5 * 10**7, 64.0))
    with pytest.raises(Exception, match=r"frame 1 has 1\.5") as info:
        MotionParams(0, ((0.0, 0.0),) * 3, (0.0,) * 3, (1.0, 1.5, 1.0))
    assert len(str(info.value)) < 100
