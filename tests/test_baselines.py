"""Classical baselines: registry, optional dependencies, CFA phases, denoiser pieces, HDR+ merge.

Bursts are built here from scikit-image's astronaut photo: sRGB -> linear camera RGB with the
protocol's fixed metadata, integer shifts as crops, mosaic, heteroscedastic noise (the shared
``make_burst`` factory of tests/conftest.py; its motion is the content's, so a crop moving by
``step`` per frame is the motion ``-t * step``).
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from skimage import data

from burstjdd.errors import ConfigError
from burstjdd.eval import baselines as bl
from burstjdd.eval.metrics import protocol_srgb, psnr
from burstjdd.raw.cfa import PATTERNS, mosaic, pack
from burstjdd.raw import merge
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.noise import PRESETS, NoiseLevel, add_noise
from burstjdd.raw.unprocess import test_isp_params, unprocess

HIGH = PRESETS["high"]
LOW = PRESETS["low"]
PROTOCOL = test_isp_params()  # the fixed colour metadata of the test protocol


@pytest.fixture(scope="module")
def camera() -> torch.Tensor:
    """(3, 512, 512) linear camera RGB of the astronaut photo."""
    srgb = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    return unprocess(srgb, test_isp_params())


def srgb_psnr(burst: RawBurst, rgb: torch.Tensor) -> float:
    srgb, gt = (protocol_srgb(x, burst.wb, burst.ccm) for x in (rgb, burst.gt))
    return psnr(srgb, gt)


def raw_psnr(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    return -10.0 * math.log10(float((estimate - clean).square().mean()))


# --- registry and optional dependencies -------------------------------------------------------


def test_registry():
    assert list(bl.BASELINES) == ["bilinear", "malvar", "menon", "dmn", "mean", "hdrplus",
                                  "hdrplus_dmn"]
    for name, baseline in bl.BASELINES.items():
        assert baseline.name == name and baseline.description and "\n" not in baseline.description
        assert bl.get_baseline(name) is baseline
    with pytest.raises(ConfigError, match="unknown baseline 'bm4d'.*bilinear, malvar, menon"):
        bl.get_baseline("bm4d")
    available = bl.available_baselines()
    # demosaicnet's weights ship with burstjdd: dmn and hdrplus_dmn always run
    assert {"bilinear", "mean", "dmn", "hdrplus_dmn"} <= set(available) <= set(bl.BASELINES)


@pytest.mark.parametrize(
    "module, names, message",
    [("colour_demosaicing", {"malvar", "menon", "hdrplus"}, r"burstjdd\[baselines\]")],
)
def test_missing_optional_dependency_is_reported(monkeypatch, camera, module, names, message,
                                                  make_burst):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    assert not names & set(bl.available_baselines())
    burst = make_burst(camera, 1, 32, origin=(200, 200), noise=LOW, isp=PROTOCOL, gt=True)
    for name in names:
        assert message.replace("\\", "") in bl.BASELINES[name].unavailable_reason()
        with pytest.raises(bl.BaselineUnavailableError, match=message) as info:
            bl.BASELINES[name](burst)
        assert isinstance(info.value, ConfigError) and "\n" not in str(info.value)


def test_hdrplus_params_are_validated():
    with pytest.raises(ConfigError, match="same length"):
        bl.HdrPlusParams(factors=(1, 2), tiles=(16,), radius=(4,))
    with pytest.raises(ConfigError, match="even"):
        bl.HdrPlusParams(tiles=(15, 8, 8, 8))
    with pytest.raises(ConfigError, match="temporal_c"):
        bl.HdrPlusParams(temporal_c=0.0)


# --- every baseline, every CFA phase ----------------------------------------------------------


@pytest.mark.parametrize("cfa", PATTERNS)
def test_every_baseline_runs_on_every_phase(camera, cfa, make_burst):
    pan = [(0, 0), (-2, -4), (-4, -8)]  # the crop moves by (2, 4) per frame
    burst = make_burst(camera, pan, 64, origin=(180, 200), cfa=cfa, noise=LOW, isp=PROTOCOL,
                       gt=True)
    for name in bl.available_baselines():
        out = bl.BASELINES[name](burst)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32, name
        assert bool(torch.isfinite(out).all()), name
        # orientation: the output must match the scene far better than its mirror images
        # (measured: 21-27 dB as is, about 17 dB mirrored)
        score = srgb_psnr(burst, out)
        assert score > 19.0, (name, score)
        for dims in ((-1,), (-2,)):
            assert score > srgb_psnr(burst, out.flip(dims)) + 3.0, (name, dims)


@pytest.mark.parametrize("cfa", PATTERNS)
def test_flat_red_scene_comes_out_red(cfa, make_burst):
    colour = torch.tensor([0.6, 0.08, 0.05])  # linear camera RGB
    clean = colour[:, None, None].expand(3, 64, 64)
    burst = make_burst(clean, 3, cfa=cfa, noise=NoiseLevel(1e-4, 1e-3), seed=1, isp=PROTOCOL)
    for name in bl.available_baselines():
        mean = bl.BASELINES[name](burst).mean((-2, -1))
        torch.testing.assert_close(mean, colour, atol=0.01, rtol=0.0, msg=name)


# --- demosaicking -----------------------------------------------------------------------------


needs_colour = pytest.mark.skipif(
    importlib.util.find_spec("colour_demosaicing") is None, reason="colour-demosaicing missing"
)


@needs_colour
def test_bilinear_and_malvar_equal_colour_demosaicing_inside():
    # colour-demosaicing convolves with scipy's default 'reflect' padding, which repeats the
    # edge pixel and so puts wrong colours next to the border; we mirror without repeating
    # (phase preserving). Away from the kernel's reach (1 px bilinear, 2 px Malvar) they agree.
    import colour_demosaicing as cd

    raw = torch.rand(24, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = bl.demosaic_bilinear(raw).permute(1, 2, 0).numpy()
    theirs = cd.demosaicing_CFA_Bayer_bilinear(raw.numpy(), "RGGB")
    np.testing.assert_allclose(ours[1:-1, 1:-1], theirs[1:-1, 1:-1], rtol=0, atol=1e-12)
    assert np.abs(ours[0] - theirs[0]).max() > 1e-3  # the border differs as explained
    ours = bl.demosaic_colour(raw, "malvar").permute(1, 2, 0).numpy()
    theirs = cd.demosaicing_CFA_Bayer_Malvar2004(raw.numpy(), "RGGB")
    np.testing.assert_allclose(ours[2:-2, 2:-2], theirs[2:-2, 2:-2], rtol=0, atol=1e-12)


@needs_colour
def test_demosaicnet_beats_malvar_on_a_clean_mosaic(camera):
    # a wrong layout (the network expects GRBG) or a wrong border crop gives garbage;
    # measured on this crop: demosaicnet ~40 dB, Malvar ~31 dB
    params = test_isp_params()
    clean = camera[:, 100:196, 150:246]
    raw = mosaic(clean, "RGGB")
    burst = RawBurst(raw=raw[None], cfa="RGGB", wb=params.wb, ccm=params.cam2rgb, gt=clean)
    assert srgb_psnr(burst, bl.demosaic_dmn(raw, params.wb)) > srgb_psnr(
        burst, bl.demosaic_colour(raw, "malvar")
    ) + 5.0


# --- denoiser pieces --------------------------------------------------------------------------


@pytest.mark.parametrize("x", [0.05, 0.2, 0.6])
def test_anscombe_stabilises_variance_and_inverse_is_unbiased(x):
    g = torch.Generator().manual_seed(3)
    clean = torch.full((200_000,), x, dtype=torch.float64)
    y = clean + HIGH.std(clean) * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    f = bl.anscombe(y, HIGH.shot, HIGH.read)
    # the stabilisation is first order: at x = 0.05 the delta method gives 0.979 plus
    # second-order terms (f' f''' + f''^2 / 2) Var(y)^2 = 0.047 (measured: 1.033)
    assert abs(float(f.var()) - 1.0) < 0.05
    # the exact unbiased inverse maps E[f(y)] back to x; the algebraic inverse does not
    estimate = float(bl.inverse_anscombe(f.mean(), HIGH.shot, HIGH.read))
    assert abs(estimate - x) < 0.002
    algebraic = HIGH.shot * (float(f.mean()) ** 2 / 4 - 0.375) - HIGH.read**2 / HIGH.shot
    assert abs(algebraic - x) > abs(estimate - x)


def test_invert_clipped_mean():
    g = torch.Generator().manual_seed(4)
    for x in (0.0, 0.004, 0.02, 0.5, 0.995):
        clean = torch.full((400_000,), x, dtype=torch.float64)
        y = add_noise(clean, HIGH.shot, HIGH.read, g)  # clipped to [0, 1]
        # the closed form is the Monte-Carlo mean of the clipped noisy pixel
        expected = float(bl.clipped_mean(torch.tensor(x, dtype=torch.float64), HIGH))
        assert abs(float(y.mean()) - expected) < 4 * float(y.std()) / math.sqrt(y.numel())
        recovered = float(bl.invert_clipped_mean(y.mean(), HIGH))
        assert abs(recovered - x) < 1e-3
    # a black pixel averages 0.02 / sqrt(2 pi) ~ 0.008 after clipping at read noise 0.02
    black = float(bl.clipped_mean(torch.tensor(0.0, dtype=torch.float64), HIGH))
    assert black == pytest.approx(HIGH.read / math.sqrt(2 * math.pi), rel=1e-6)


def test_denoise_raw(camera):
    clean = mosaic(camera[:, 16:144, 96:224], "RGGB")
    noisy = add_noise(clean, HIGH.shot, HIGH.read, torch.Generator().manual_seed(5))
    out = bl.denoise_raw(noisy, HIGH)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    # measured: +7.0 dB on this crop (+3.2 dB on the most textured crops of the photo)
    assert raw_psnr(out, clean) > raw_psnr(noisy, clean) + 5.0
    assert bl.denoise_raw(clean, NoiseLevel(0.0, 0.0)) is clean
    # pure read noise (shot = 0) takes the scaling path: the limit of the GAT as shot -> 0
    noisy = add_noise(clean, 0.0, 0.02, torch.Generator().manual_seed(6))
    gaussian = bl.denoise_raw(noisy, NoiseLevel(0.0, 0.02))
    limit = bl.denoise_raw(noisy, NoiseLevel(1e-7, 0.02))
    torch.testing.assert_close(gaussian, limit, rtol=0, atol=1e-3)
    assert raw_psnr(gaussian, clean) > raw_psnr(noisy, clean) + 3.0  # measured: +4.0 dB


# --- HDR+ alignment and merge -----------------------------------------------------------------


def _tiles_with_content(h: int, tile: int, true: torch.Tensor) -> torch.Tensor:
    """(K, K) bool: the tile's in-image part, displaced by ``true``, stays in the other frame."""
    o = merge._tile_origins(h, tile, "cpu")
    lo, hi = o.clamp_min(0), (o + tile).clamp_max(h)
    ok = [(lo + d >= 0) & (hi + d <= h) for d in true.tolist()]
    return ok[0][:, None] & ok[1][None, :]


@pytest.mark.parametrize("shift", [(64, -72), (-66, 64), (0, 120)])
def test_align_tiles_recovers_large_shifts(camera, shift, make_burst):
    # frame 1 is the crop at origin + shift: ref[y, x] = alt[y - sy, x - sx], so the expected
    # displacement is -shift / 2 gray pixels (gray = 2x2 means, half resolution)
    size, (sy, sx) = 256, shift
    origin = (max(0, -sy) + 60, max(0, -sx) + 60)
    burst = make_burst(camera, [(0, 0), (-sy, -sx)], size, origin=origin, noise=HIGH, seed=7,
                       isp=PROTOCOL, gt=True)
    gray = pack(burst.raw).mean(1)
    disp = bl.align_tiles(gray[0], gray[1])
    true = torch.tensor([-sy // 2, -sx // 2])
    content = _tiles_with_content(size // 2, 16, true)
    exact = (disp == true).all(-1) & content
    near = ((disp - true).abs().amax(-1) <= 2) & content
    # measured: 75-92 % exact, 90-98 % within 2 px; misses are in flat, noise-dominated tiles
    assert exact.sum() >= 0.7 * content.sum()
    assert near.sum() >= 0.85 * content.sum()


def test_merge_of_one_frame_or_copies_is_the_frame(camera, make_burst):
    raw = make_burst(camera, 1, 64, origin=(150, 150), noise=HIGH).raw
    var = HIGH.shot * raw[0] + HIGH.read**2
    single = bl.hdrplus_merge(raw, var, 0)
    torch.testing.assert_close(single.raw, raw[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(single.variance_ratio, torch.ones_like(raw[0]), rtol=0, atol=1e-6)
    # identical frames: D = 0, every frame fully merged, variance / N
    copies = bl.hdrplus_merge(raw.expand(4, -1, -1), var, 2)
    torch.testing.assert_close(copies.raw, raw[0], rtol=0, atol=1e-6)
    quarter = torch.full_like(raw[0], 0.25)
    torch.testing.assert_close(copies.variance_ratio, quarter, rtol=0, atol=1e-6)


@needs_colour
def test_hdrplus_of_one_frame_is_malvar(camera, make_burst):
    burst = make_burst(camera, 1, 64, origin=(150, 150), noise=HIGH, isp=PROTOCOL, gt=True)
    torch.testing.assert_close(bl.hdrplus(burst), bl.malvar(burst), rtol=0, atol=1e-4)


def test_hdrplus_dmn_of_one_frame_is_dmn_and_a_burst_beats_both(camera, make_burst):
    one = make_burst(camera, 1, 64, origin=(150, 150), noise=HIGH, isp=PROTOCOL, gt=True)
    torch.testing.assert_close(bl.hdrplus_dmn(one), bl.dmn(one), rtol=0, atol=1e-4)
    pan = [(0, -24 * t) for t in range(5)]  # the crop moves by 24 px to the right per frame
    burst = make_burst(camera, pan, 128, origin=(60, 60), noise=HIGH, isp=PROTOCOL, gt=True)
    score = {k: srgb_psnr(burst, bl.BASELINES[k](burst)) for k in ("hdrplus_dmn", "dmn")}
    # measured (seed 0): hdrplus_dmn 30.01 dB, dmn 27.72: the merge of 5 aligned frames helps
    assert score["hdrplus_dmn"] >= score["dmn"] + 1.0


@needs_colour
def test_acceptance_hdrplus_on_a_large_shift_high_noise_burst(camera, make_burst):
    """5 frames, 40 px between neighbours (80 px from the reference to the outer frames),
    high noise; PROTOCOL metric on protocol_srgb images.

    Issue acceptance: the HDR+-style merge beats the single-frame baseline (the issue's
    "single-frame bilinear": plain bilinear demosaic of the reference) by at least 3 dB.
    Measured (seed 0): hdrplus 27.8 dB, bilinear 22.0, malvar (same denoiser and demosaic as
    hdrplus, reference frame only) 26.5, mean 14.3. Against the denoised single-frame malvar
    the margin is only ~1.3 dB: Malvar's own demosaicking error caps the metric (a noise-free
    mosaic demosaicked by Malvar scores 30.4 dB on this crop), while on the mosaics, before
    demosaicking, the merge gains ~3 dB (36.9 vs 34.0); both are asserted below.
    """
    pan = [(0, -40 * t) for t in range(5)]  # the crop moves by 40 px to the right per frame
    burst = make_burst(camera, pan, 256, origin=(16, 16), noise=HIGH, isp=PROTOCOL, gt=True)
    names = ("hdrplus", "bilinear", "malvar", "mean")
    score = {k: srgb_psnr(burst, bl.BASELINES[k](burst)) for k in names}
    assert score["hdrplus"] >= score["bilinear"] + 3.0
    assert score["hdrplus"] >= score["malvar"] + 1.0
    assert score["hdrplus"] >= score["mean"] + 10.0  # alignment matters: the mean is ghosted
    clean = mosaic(burst.gt, "RGGB")
    var = HIGH.shot * burst.raw[burst.ref] + HIGH.read**2
    merged = bl.hdrplus_merge(burst.raw, var, burst.ref)
    burst_raw = bl.denoise_raw(merged.raw.clamp(0, 1), HIGH, variance_scale=merged.variance_ratio)
    single_raw = bl.denoise_raw(burst.raw[burst.ref], HIGH)
    assert raw_psnr(burst_raw, clean) >= raw_psnr(single_raw, clean) + 2.5
