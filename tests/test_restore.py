"""Whole-image restoration (burstjdd.restore): tiling, blending, CFA phases, frames, options."""

from __future__ import annotations

import dataclasses
import math

import pytest
import skimage.data
import torch
from torch import Tensor, nn

from burstjdd.errors import BurstFormatError, ConfigError, WeightsError
from burstjdd.eval.baselines import demosaic_bilinear
from burstjdd.models import hub
from burstjdd.models.classical import ClassicalJDDB
from burstjdd.models.dsnet import bicubic_features
from burstjdd.models.jddb import TwoStageJDDB, build_model, make_config
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.cfa import PATTERNS, from_rggb, mosaic, to_rggb, unpack
from burstjdd.raw.noise import NoiseLevel
from burstjdd.restore import (
    RestoreOptions,
    Restorer,
    _aligned_tiles,
    _ca_features,
    auto_tile,
    autocast_dtype,
    blend_window,
    default_search_radius,
    resolve_device,
    restore_burst,
    select_frames,
    tile_bytes,
    tile_grid,
    tile_layout,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LOW = NoiseLevel(2e-4, 2e-3)


def tiny_model(variant: str = "full", seed: int = 0) -> nn.Module:
    """The real network (DSNet + DPBM + PCD + GRU + UNet) at a tiny width, randomly initialised."""
    return build_model("compact", variant, nf=8, deformable_groups=2, extract_blocks=1,
                       dsnet_width=4, seed=seed).eval()


class StandIn(nn.Module):
    """A stand-in network with the model's interface and a known, local output.

    reconstruct: bilinear demosaic of the reference tile (mode "ref") or of the mean of the
    coarsely aligned tiles (mode "mean"), times (1 + gain · mean of the tile): with gain > 0 a
    global per-tile operator (like ACNSe's pooling) that makes unblended tile borders visible.
    ca: "none", or "bicubic" (plain block matching on bicubic ×1/4 features: works untrained).
    """

    def __init__(self, ca: str = "none", mode: str = "ref", gain: float = 0.0) -> None:
        super().__init__()
        self.config = make_config("compact", ca=ca)
        self.mode, self.gain = mode, gain

    def ca_features(self, frames: Tensor) -> Tensor:
        f = bicubic_features(frames.flatten(0, 1))
        return f.view(*frames.shape[:2], *f.shape[1:])

    coarse = TwoStageJDDB.coarse  # the real coarse alignment on the stand-in's features

    def reconstruct(self, frames: Tensor, noise: Tensor, ref: int) -> tuple[Tensor, None]:
        x = frames[:, ref] if self.mode == "ref" else frames.mean(1)  # (K, 4, P, P)
        rgb = demosaic_bilinear(unpack(x))
        return rgb * (1 + self.gain * x.mean((1, 2, 3)).view(-1, 1, 1, 1)), None


def textured_scene(h: int, w: int, seed: int = 0) -> Tensor:
    """A smooth random colour texture in [0.1, 0.9] (3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8 + 2, w // 8 + 2, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return (0.1 + 0.8 * up[0]).clamp(0.1, 0.9)


def psnr(a: Tensor, b: Tensor) -> float:
    return -10 * math.log10(float((a - b).square().mean()))


def restore(model: nn.Module, burst: RawBurst, **options) -> Tensor:
    """restore_burst on the CPU, in float32 unless ``precision`` is given: the plumbing tests
    below hold to float32 rounding, and "auto" is bf16 on CPUs with native bf16."""
    options.setdefault("precision", "fp32")
    return restore_burst(model, burst, RestoreOptions(**options), device="cpu")


# ------------------------------------------------------------------------------- pure helpers


def test_default_search_radius_follows_the_paper():
    assert default_search_radius(720, 1280) == 48       # REDS4 (paper §3.2)
    assert default_search_radius(200, 300) == 48        # small images keep the 720p radius
    assert default_search_radius(2160, 3840) == 128     # 4K (paper §3.2)
    assert default_search_radius(3000, 4000) == 128     # capped
    assert default_search_radius(1080, 1920) == 72      # 48 + 80·640/2560 = 68 → next LR pixel
    assert default_search_radius(1920, 1080) == 72      # the long side counts, not the height


def test_select_frames_nearest_the_reference():
    assert select_frames(5, 2, 8) == ([0, 1, 2, 3, 4], 2)
    assert select_frames(10, 4, 5) == ([2, 3, 4, 5, 6], 2)
    assert select_frames(10, 0, 3) == ([0, 1, 2], 0)
    assert select_frames(10, 9, 4) == ([6, 7, 8, 9], 3)
    assert select_frames(6, 2, 4) == ([0, 1, 2, 3], 2)   # tie between 0 and 4: earlier first
    assert select_frames(1, 0, 1) == ([0], 0)
    with pytest.raises(BurstFormatError):
        select_frames(3, 3, 8)


@pytest.mark.parametrize("tile,overlap", [(64, 16), (32, 8), (128, 32), (64, 0)])
def test_tile_grid_covers_the_frame_on_the_lr_grid(tile, overlap):
    for h, w in [(4, 4), (30, 70), (64, 64), (65, 200), (131, 97), (300, 41)]:
        grid = tile_grid(h, w, tile, overlap)
        assert grid.size == min(tile, 4 * math.ceil(max(h, w) / 4))
        for dim, length, origins in ((h, grid.height, grid.rows), (w, grid.width, grid.cols)):
            assert length == max(4 * math.ceil(dim / 4), grid.size)  # minimal padding
            assert origins[0] == 0 and origins[-1] + grid.size == length
            assert all(o % 4 == 0 for o in origins)
            steps = [b - a for a, b in zip(origins, origins[1:])]
            assert all(0 < s <= grid.size - overlap for s in steps)  # overlap >= requested
        assert len(grid.origins) == len(grid.rows) * len(grid.cols)


def test_blend_window_is_a_partition_of_unity():
    v, length = 64, 256
    a = blend_window(length, v, taper_start=False, taper_end=True, dtype=torch.float64)
    b = blend_window(length, v, taper_start=True, taper_end=False, dtype=torch.float64)
    assert torch.allclose(a[-v:] + b[:v], torch.ones(v, dtype=torch.float64), atol=1e-12)
    assert torch.all(b[: v // 4] == 0) and torch.all(b[v - v // 4 :] == 1)
    assert torch.all(b[:v].diff() >= 0) and 0 < b[v // 4] < 1e-2   # smooth start, no step
    both = blend_window(length, v, True, True)
    assert torch.equal(both[:v], b[:v].float()) and torch.equal(both[-v:], a[-v:].float())
    assert torch.all(blend_window(length, v, False, False) == 1)
    assert torch.all(blend_window(length, 0, True, True) == 1)   # no overlap: no feathering


def test_options_are_validated():
    for bad in (dict(tile=100), dict(tile=16), dict(overlap=12), dict(tile=64, overlap=40),
                dict(precision="fp8"), dict(max_frames=0), dict(max_memory=0),
                dict(search_radius=-1)):
        with pytest.raises(ConfigError):
            RestoreOptions(**bad)
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")


# ------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("tile,overlap", [(64, 16), (96, 32), (128, 64)])
def test_tiled_equals_untiled_for_a_local_model(tile, overlap, make_burst):
    # A model whose output depends on inputs within 1 px: the feathered blend must reproduce
    # the single-tile restore exactly, everywhere (odd packed size: padding paths included).
    burst = make_burst(textured_scene(150, 214), cfa="GRBG", noise=LOW)
    model = StandIn()
    whole = restore(model, burst, tile=1024, overlap=overlap)
    tiled = restore(model, burst, tile=tile, overlap=overlap)
    assert tiled.shape == (3, 150, 214)
    assert torch.allclose(tiled, whole, atol=1e-6, rtol=0)
    # ... and both are the bilinear demosaic of the reference (away from the outer pixel).
    ref = from_rggb(demosaic_bilinear(to_rggb(burst.raw[burst.ref], "GRBG")), "GRBG")
    assert torch.allclose(tiled[:, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], atol=1e-6, rtol=0)


def test_tiled_is_close_to_untiled_for_the_network(make_burst):
    # The real network is not tile-invariant (ACNSe pools over the whole tile, convolutions
    # see the tile border; docs/official-network.md §8 item 16), and no configuration removes the
    # global operators (the UNet has ACNSe blocks too). Measured with the tiny network without
    # coarse alignment (only tiling differs): 9 tiles of 128 px, >= 64 px overlap, against one
    # tile: PSNR 63.2 dB (peak 1), SNR 40.2 dB (against the output's variance: these random
    # networks have a small output range). Compact preset (nf=32), random weights, same scene:
    # 49.8 dB / 31.9 dB.
    burst = make_burst(textured_scene(192, 192), 3, noise=LOW)
    model = tiny_model("ra_only")
    whole = restore(model, burst, tile=512)
    tiled = restore(model, burst, tile=128, overlap=64)
    assert psnr(tiled, whole) > 60.0
    assert 10 * math.log10(float(whole.var() / (tiled - whole).square().mean())) > 37.0


def _border_steps(grid, border: int, length: int) -> Tensor:
    """Step indices (between output columns i and i+1) across tile borders: each overlap band
    of neighbouring tiles and the step into it (one index for abutting tiles)."""
    mask = torch.zeros(length - 1, dtype=torch.bool)
    origins = [2 * (c - border) for c in grid.cols]
    for prev, cur in zip(origins, origins[1:]):
        mask[max(cur - 1, 0) : min(prev + 2 * grid.size, length - 1)] = True
    return mask


@pytest.mark.parametrize("axis", ["columns", "rows"])
def test_no_seams_at_tile_borders(axis, make_burst):
    # Flat regions with edges; the stand-in's per-tile gain makes every tile's level differ,
    # as a global operator does. Coherent steps (mean over the other axis) across tile borders
    # must stay at the noise floor of the steps inside tiles; without overlap (negative
    # control) the border step stands out.
    h = w = 256
    scene = torch.full((3, h, w), 0.2)
    scene[:, 40:150, 20:90] = torch.tensor([0.6, 0.3, 0.1])[:, None, None]
    scene[:, 100:230, 150:240] = torch.tensor([0.1, 0.5, 0.7])[:, None, None]
    scene[:, 10:60, 100:182] = torch.tensor([0.8, 0.8, 0.8])[:, None, None]
    edges = (20, 90, 100, 150, 182, 240) if axis == "columns" else (10, 40, 60, 100, 150, 230)
    burst = make_burst(scene, noise=LOW)
    model = StandIn(gain=2.0)

    def border_and_inside(overlap: int) -> tuple[float, float]:
        image = restore(model, burst, tile=128, overlap=overlap)
        if axis == "rows":
            image = image.transpose(1, 2)
        steps = (image[:, :, 1:] - image[:, :, :-1]).mean(1).abs().amax(0)  # (w - 1,)
        grid, border = tile_layout(h // 2, w // 2, RestoreOptions(tile=128, overlap=overlap))
        at_border = _border_steps(grid, border, w)
        near_edge = torch.zeros(w - 1, dtype=torch.bool)
        for e in edges:
            near_edge[e - 3 : e + 2] = True
        inside = ~at_border & ~near_edge
        return (float(steps[at_border & ~near_edge].max()), float(steps[inside].max()))

    for overlap in (32, 64):
        at_border, inside = border_and_inside(overlap)
        assert at_border <= 1.5 * inside, (overlap, at_border, inside)
    at_border, inside = border_and_inside(0)   # abutting tiles, no blending
    assert at_border > 3 * inside, (at_border, inside)


def test_memory_budget_changes_batching_only(make_burst):
    burst = make_burst(textured_scene(96, 128), 3, noise=LOW)
    model = tiny_model()
    one = restore(model, burst, tile=64, overlap=16, max_memory=1)        # 1 tile per chunk
    many = restore(model, burst, tile=64, overlap=16, max_memory=1 << 40)  # all tiles at once
    assert torch.allclose(one, many, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- coarse alignment


def test_aligned_tiles_match_the_model_coarse_alignment():
    # Features computed once for the whole frames, then tiles aligned in chunks: the same
    # patches and the same search as TwoStageJDDB.coarse on those frames.
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(1, 4, 4, 64, 96, generator=g)
    noise = (1e-3 * frames + 1e-4).sqrt()
    model = tiny_model()
    origins = [(0, 0), (16, 32), (32, 64)]
    with torch.no_grad():
        feats = _ca_features(model, frames)
        ours = _aligned_tiles(model, feats, frames, noise, 1, origins, 32, 24.0)
        theirs = model.coarse(frames, noise, 1, torch.tensor([origins]), 32, 24.0)
    assert torch.equal(ours[0], theirs.frames[0]) and torch.equal(ours[1], theirs.noise[0])


def test_every_tile_is_aligned_against_the_whole_frames(make_burst):
    # Frames translated by whole LR pixels per frame step (16 px down, 8 px left); the stand-in
    # averages the coarsely aligned tiles (bicubic block matching), so the restore is clean
    # only where each tile found its offset by searching the whole frames. Tiles on the image
    # border cannot (their content leaves some frames): scored are the pixels that only the
    # inner tiles cover (tile 128, overlap 32: rows 104-152, columns 104-280).
    h, w, n, (dy, dx) = 256, 384, 5, (16, -8)
    big = torch.from_numpy(skimage.data.astronaut()[: h + 64, 64 : w + 128]).permute(
        2, 0, 1).float().div(255).square()   # a photo, roughly linear
    # frame t is the crop at 32 + (t - 2)·(dy, dx): its content moves by (2 - t)·(dy, dx)
    motion = [((2 - t) * dy, (2 - t) * dx) for t in range(n)]
    burst = make_burst(big, motion, (h, w), origin=(32, 32), noise=NoiseLevel(1e-3, 1e-2))
    truth = demosaic_bilinear(mosaic(big[:, 32 : 32 + h, 32 : 32 + w], "RGGB"))
    opts = dict(tile=128, overlap=32, search_radius=40)
    inner = (slice(None), slice(104, 152), slice(104, 280))
    aligned, unaligned, single = (
        psnr(restore(model, burst, **opts)[inner], truth[inner])
        for model in (StandIn("bicubic", "mean"), StandIn("none", "mean"), StandIn("none")))
    assert aligned > unaligned + 15                   # measured 41.0 vs 17.2 dB
    assert aligned > single + 6                       # 5 frames averaged: +7.0 dB (measured)


# ------------------------------------------------------------------------------- colours, phases


@pytest.mark.parametrize("cfa", PATTERNS)
def test_colours_and_orientation_are_kept(cfa, make_burst):
    # Four quadrants of known colours, noise-free; the stand-in demosaics the reference, which
    # is exact inside flat regions: any flip or channel swap in the plumbing shows here.
    h, w = 96, 136
    colours = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.9], [0.9, 0.9, 0.9]])
    scene = torch.empty(3, h, w)
    scene[:, : h // 2, : w // 2] = colours[0, :, None, None]
    scene[:, : h // 2, w // 2 :] = colours[1, :, None, None]
    scene[:, h // 2 :, : w // 2] = colours[2, :, None, None]
    scene[:, h // 2 :, w // 2 :] = colours[3, :, None, None]
    burst = make_burst(scene, cfa=cfa, noise=NoiseLevel(0.0, 0.0))
    out = restore(StandIn(), burst, tile=64, overlap=16)
    flat = torch.ones(h, w, dtype=torch.bool)
    for y in (0, h // 2 - 2, h // 2, h - 2):   # 2-px bands around the colour borders
        flat[y : y + 2] = False
    for x in (0, w // 2 - 2, w // 2, w - 2):
        flat[:, x : x + 2] = False
    assert torch.allclose(out[:, flat], scene[:, flat], atol=1e-6, rtol=0)


def test_all_cfa_phases_give_the_same_result_up_to_the_flip(make_burst):
    scene = textured_scene(70, 102)
    base = make_burst(scene, 3, cfa="RGGB", noise=LOW, seed=1)
    model = tiny_model()
    expected = restore(model, base, tile=64, overlap=16)
    for cfa in PATTERNS[1:]:
        flipped = dataclasses.replace(base, raw=from_rggb(base.raw, cfa), cfa=cfa)
        out = restore(model, flipped, tile=64, overlap=16)
        assert torch.equal(to_rggb(out, cfa), expected), cfa


def test_output_is_cropped_to_the_visible_size(make_burst):
    burst = make_burst(textured_scene(64, 80), 2, noise=LOW, meta={"size": [63, 79]})
    out = restore(StandIn(), burst)
    full = restore(StandIn(), dataclasses.replace(burst, meta={}))
    assert out.shape == (3, 63, 79) and torch.equal(out, full[:, :63, :79])
    for bad in ([65, 79], [0, 10], "64x80", [63.0, 79]):
        with pytest.raises(BurstFormatError):
            restore(StandIn(), dataclasses.replace(burst, meta={"size": bad}))


# ------------------------------------------------------------------------------- frames, runs


def test_one_frame_and_odd_sizes(make_burst):
    model = tiny_model()
    for h, w, n in ((2, 2, 1), (38, 54, 1), (22, 130, 2)):
        burst = make_burst(textured_scene(max(h, 8), max(w, 8))[:, :h, :w], n, noise=LOW)
        out = restore(model, burst, tile=32, overlap=8)
        assert out.shape == (3, h, w) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_more_frames_than_max_frames_use_the_nearest(make_burst):
    burst = make_burst(textured_scene(48, 64), 7, noise=LOW, ref=3)
    model = tiny_model()
    out = restore(model, burst, tile=64, overlap=16, max_frames=5)
    nearest = dataclasses.replace(burst, raw=burst.raw[1:6], ref=2)
    assert torch.equal(out, restore(model, nearest, tile=64, overlap=16))
    # All 7 frames (the default max_frames is 8) are used otherwise, so the result changes.
    assert not torch.equal(out, restore(model, burst, tile=64, overlap=16))


def test_reference_argument_and_determinism(make_burst):
    burst = make_burst(textured_scene(48, 64), 4, noise=LOW)
    restorer = Restorer(tiny_model(), device="cpu", tile=64, overlap=16)
    first = restorer.restore(burst, progress=False)
    assert torch.equal(first, restorer.restore(burst, progress=False))   # bitwise on CPU
    assert first.shape == (3, 48, 64) and first.device.type == "cpu"
    other = restorer.restore(burst, ref=0, progress=False)
    assert torch.equal(other, restorer.restore(dataclasses.replace(burst, ref=0), progress=False))
    assert not torch.equal(other, first)
    with pytest.raises(BurstFormatError):
        restorer.restore(burst, ref=4)


def test_half_precision_runs_close_to_float32(make_burst):
    # bf16 autocast (the CUDA default) exercised on CPU; measured 51.4 dB against float32.
    burst = make_burst(textured_scene(48, 64), 3, noise=LOW)
    model = tiny_model()
    fp32 = restore(model, burst, tile=64, overlap=16)
    bf16 = restore(model, burst, tile=64, overlap=16, precision="bf16")
    assert bf16.dtype == torch.float32 and psnr(bf16, fp32) > 45


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    import burstjdd.restore as restore_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(restore_module, "native_bf16", lambda: True)
    assert autocast_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(restore_module, "native_bf16", lambda: False)
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16 and autocast_dtype("fp32", cpu) is None


def test_the_tile_grows_with_the_memory_budget():
    assert auto_tile(32, 5, 2 << 30) == 448          # compact, 5 frames, the CPU default
    assert auto_tile(8, 5, 2 << 30) == 512           # the classical model's small estimate
    assert auto_tile(32, 5, 1 << 20) == 256          # nothing fits: the smallest
    for budget in (600 << 20, 1 << 30, 2 << 30):  # the largest that fits, or 256
        tile = auto_tile(32, 5, budget)
        assert tile_bytes(32, 5, tile // 2) <= budget
        assert tile == 512 or tile_bytes(32, 5, tile // 2 + 32) > budget


def test_output_is_float32_under_bf16(make_burst):
    # the last convolution leaves autocast: no bf16 rounding of the image (8 bits of mantissa)
    burst = make_burst(textured_scene(48, 64), 3, noise=LOW)
    out = restore(tiny_model(), burst, tile=64, overlap=16, precision="bf16")
    quantised = out.to(torch.bfloat16).float()
    assert (out != quantised).float().mean() > 0.5


def test_from_pretrained(tmp_path, monkeypatch, make_burst):
    hub.save_pretrained(tiny_model(), tmp_path / "w")
    restorer = Restorer.from_pretrained(tmp_path / "w", device="cpu", tile=64, overlap=16,
                                        precision="fp32")
    burst = make_burst(textured_scene(32, 48), 3, noise=LOW)
    # a Restorer on the CPU runs its model channels-last (the same weights, NHWC rounding)
    assert torch.equal(restorer.restore(burst, progress=False),
                       restore(tiny_model().to(memory_format=torch.channels_last), burst,
                               tile=64, overlap=16))
    # no learned weights shipped: the classical pipeline, which needs none, is the default
    monkeypatch.setattr(hub, "shipped_weights", lambda: [])
    classical = Restorer.from_pretrained(None, device="cpu", tile=64, overlap=16)
    assert isinstance(classical.model, ClassicalJDDB)
    assert torch.equal(classical.restore(burst, progress=False),
                       Restorer.from_pretrained("classical", device="cpu", tile=64, overlap=16)
                       .restore(burst, progress=False))
    with pytest.raises(WeightsError):
        Restorer.from_pretrained(tmp_path / "missing", device="cpu")
