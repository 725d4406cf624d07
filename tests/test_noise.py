"""raw/noise.py: the shot/read noise model, its sampling, noise maps and noise estimation."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from skimage import data

from burstjdd.errors import BurstFormatError
from burstjdd.raw.noise import (
    PRESETS,
    NoiseLevel,
    add_noise,
    estimate_noise,
    noise_map,
    parse_noise,
    sample_noise_level,
    sample_noise_levels,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# --- NoiseLevel, presets, parsing -------------------------------------------------------------


def test_presets_are_the_protocol_levels():
    assert PRESETS["low"] == NoiseLevel(2.5e-3, 1e-2)
    assert PRESETS["high"] == NoiseLevel(6.4e-3, 2e-2)


def test_noise_level_variance_and_std_by_hand():
    level = NoiseLevel(0.01, 0.02)
    assert level.variance(0.5) == pytest.approx(0.01 * 0.5 + 0.0004, rel=1e-12)
    assert level.std(0.5) == pytest.approx(math.sqrt(0.0054), rel=1e-12)
    assert level.variance(-0.3) == pytest.approx(0.0004, rel=1e-12)   # x < 0 counts as 0
    x = torch.tensor([-1.0, 0.0, 0.25, 1.0], dtype=torch.float64)
    expected = torch.tensor([0.0004, 0.0004, 0.0029, 0.0104], dtype=torch.float64)
    torch.testing.assert_close(level.variance(x), expected)
    torch.testing.assert_close(level.std(x), expected.sqrt())


def test_noise_level_converts_to_float_and_is_frozen():
    level = NoiseLevel(1, 0)
    assert type(level.shot) is float and type(level.read) is float
    with pytest.raises(AttributeError):
        level.shot = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    "shot, read", [(-1e-3, 0.01), (1e-3, -0.01), (math.nan, 0.01), (1e-3, math.inf), ("x", 0.1),
                   (1e30, 0.01), (1e-3, 1e308), (1.5, 0.0)]  # beyond 0..MAX_NOISE (1)
)
def test_noise_level_rejects_bad_values(shot, read):
    with pytest.raises(BurstFormatError) as err:
        NoiseLevel(shot, read)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec, expected", [
    ("low", PRESETS["low"]),
    (" HIGH ", PRESETS["high"]),
    ("1e-3,5e-3", NoiseLevel(1e-3, 5e-3)),
    ("0.0064, 0.02", NoiseLevel(6.4e-3, 2e-2)),
    ("0,0", NoiseLevel(0.0, 0.0)),
])
def test_parse_noise(spec, expected):
    assert parse_noise(spec) == expected


@pytest.mark.parametrize("spec", ["", "medium", "1e-3", "1,2,3", "a,b", "-1e-3,0.01", "nan,0.01"])
def test_parse_noise_rejects_bad_specs_in_one_line(spec):
    with pytest.raises(BurstFormatError) as err:
        parse_noise(spec)
    assert "\n" not in str(err.value)


# --- sampling -----------------------------------------------------------------------------------


def test_sample_noise_level_is_log_uniform_in_the_training_ranges():
    shot, read = sample_noise_levels(20000, _gen(0), dtype=torch.float64)
    assert shot.shape == read.shape == (20000,)
    for values, (lo, hi) in ((shot, (-4.0, -2.0)), (read, (-3.0, -1.5))):
        logs = values.log10()
        assert float(logs.min()) >= lo and float(logs.max()) <= hi
        # Uniform in log10: mean at the centre, quarter of the mass below the first quartile.
        assert float(logs.mean()) == pytest.approx((lo + hi) / 2, abs=0.02)
        assert float((logs < lo + (hi - lo) / 4).double().mean()) == pytest.approx(0.25, abs=0.015)
    # shot and read are drawn independently.
    corr = torch.corrcoef(torch.stack([shot.log10(), read.log10()]))[0, 1]
    assert abs(float(corr)) < 0.03


def test_sample_noise_level_matches_batched_and_is_reproducible():
    one = sample_noise_level(_gen(7))
    shot, read = sample_noise_levels(1, _gen(7), dtype=torch.float64)
    assert (one.shot, one.read) == (float(shot[0]), float(read[0]))
    assert sample_noise_level(_gen(7)) == one
    g = _gen(7)
    assert sample_noise_level(g) != sample_noise_level(g)   # the generator advances


# --- add_noise ----------------------------------------------------------------------------------


# Signal levels at least 3 std away from 0 and 1, where clipping changes the variance by < 0.3 %
# (at 0.05 the "high" level is 1.9 std from 0 and clipping removes ~5 % of the variance).
@pytest.mark.parametrize("name", ["low", "high"])
@pytest.mark.parametrize("x", [0.1, 0.3, 0.7])
def test_add_noise_variance_matches_the_model(name, x):
    level, n = PRESETS[name], 1_000_000
    noisy = add_noise(torch.full((n,), x, dtype=torch.float64), level.shot, level.read, _gen(1))
    expected = level.shot * x + level.read**2
    assert float(noisy.var()) == pytest.approx(expected, rel=0.03)
    assert abs(float(noisy.mean()) - x) < 5.0 * math.sqrt(expected / n)


def test_add_noise_clips_to_unit_range_like_a_censored_gaussian():
    level, n = PRESETS["high"], 200_000
    for x in (0.02, 0.98):
        noisy = add_noise(torch.full((n,), x), level.shot, level.read, _gen(2))
        assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0
        at_edge = float((noisy == (0.0 if x < 0.5 else 1.0)).double().mean())
        # P(clipped) = Phi(-distance to the edge / std).
        expected = _normal_cdf(-min(x, 1.0 - x) / level.std(x))
        assert at_edge == pytest.approx(expected, abs=0.005)


def test_add_noise_broadcasts_one_level_per_sample():
    clean = torch.full((2, 1, 200, 500), 0.4, dtype=torch.float64)
    shot = torch.tensor([PRESETS["low"].shot, PRESETS["high"].shot]).view(2, 1, 1, 1)
    read = torch.tensor([PRESETS["low"].read, PRESETS["high"].read]).view(2, 1, 1, 1)
    noisy = add_noise(clean, shot, read, _gen(3))
    assert noisy.shape == clean.shape and noisy.dtype == torch.float64
    for i, name in enumerate(["low", "high"]):
        assert float(noisy[i].var()) == pytest.approx(PRESETS[name].variance(0.4), rel=0.03)


def test_add_noise_is_reproducible_and_seed_dependent():
    clean = torch.rand(4, 64, 64, generator=_gen(0))
    a = add_noise(clean, 1e-3, 1e-2, _gen(5))
    b = add_noise(clean, 1e-3, 1e-2, _gen(5))
    c = add_noise(clean, 1e-3, 1e-2, _gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float((a - c).abs().mean()) > 1e-3


def test_add_noise_without_noise_is_identity_and_rejects_negative_levels():
    clean = torch.rand(8, 8, generator=_gen(0))
    assert torch.equal(add_noise(clean, 0.0, 0.0, _gen(0)), clean)
    with pytest.raises(BurstFormatError):
        add_noise(clean, -1e-3, 0.01, _gen(0))


# --- noise_map ----------------------------------------------------------------------------------


def test_noise_map_by_hand():
    y = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = torch.tensor(
        [0.02, math.sqrt(0.0029), math.sqrt(0.0054), math.sqrt(0.0104)], dtype=torch.float64
    )
    torch.testing.assert_close(noise_map(y, 0.01, 0.02), expected)
    # Per-sample tensor levels broadcast: sample 1 has shot 0 -> constant read.
    ys = y.view(1, 4).expand(2, 4)
    shot = torch.tensor([[0.01], [0.0]], dtype=torch.float64)
    out = noise_map(ys, shot, torch.tensor([[0.02], [0.03]], dtype=torch.float64))
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], torch.full((4,), 0.03, dtype=torch.float64))


def test_noise_map_is_finite_with_zero_read_noise():
    y = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = noise_map(y, 0.01, 0.0)
    assert 0.0 < float(out[0].detach()) <= 1e-5
    assert float(out[1].detach()) == pytest.approx(math.sqrt(0.005))
    out.sum().backward()
    assert bool(torch.isfinite(y.grad).all())


# --- estimate_noise -----------------------------------------------------------------------------


@functools.cache
def _linear_mosaic(name: str) -> torch.Tensor:
    """A bundled sRGB photo -> float [0, 1] -> x^2.2 -> RGGB mosaic (H, W), H and W even."""
    img = getattr(data, name)().astype(np.float64) / 255.0
    img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2] ** 2.2
    raw = np.empty(img.shape[:2])
    raw[0::2, 0::2] = img[0::2, 0::2, 0]
    raw[0::2, 1::2] = img[0::2, 1::2, 1]
    raw[1::2, 0::2] = img[1::2, 0::2, 1]
    raw[1::2, 1::2] = img[1::2, 1::2, 2]
    return torch.from_numpy(raw).float()


def _std_error_at(estimate: NoiseLevel, truth: NoiseLevel, x: float) -> float:
    return estimate.std(x) / truth.std(x) - 1.0


@pytest.mark.parametrize("image", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("name", ["low", "high"])
@pytest.mark.parametrize("frames", [1, 3])
def test_estimate_noise_on_natural_images(image, name, frames):
    clean, level = _linear_mosaic(image), PRESETS[name]
    noisy = add_noise(clean.expand(frames, *clean.shape), level.shot, level.read, _gen(frames))
    estimate = estimate_noise(noisy)
    assert abs(_std_error_at(estimate, level, 0.2)) < 0.2


@pytest.mark.parametrize("image", ["astronaut", "coffee", "chelsea"])
def test_estimate_noise_on_a_noise_free_image_is_small(image):
    estimate = estimate_noise(_linear_mosaic(image))
    assert math.isfinite(estimate.shot) and math.isfinite(estimate.read)
    # Below half of the "low" level's std (0.0245 at 0.2): only texture and 8-bit steps remain.
    assert estimate.std(0.2) < 0.01


@pytest.mark.parametrize("level", [
    PRESETS["low"],
    PRESETS["high"],
    NoiseLevel(1e-2, 0.0),
    NoiseLevel(0.0, 1e-2),
    NoiseLevel(1e-4, 1e-3),
])
def test_estimate_noise_recovers_the_curve_on_a_smooth_scene(level):
    # Texture-free scene spanning [0.02, 0.98]: shot and read are both pinned down, so the std
    # must be right at both ends and in the middle, including pure shot and pure read noise.
    rows, cols = torch.meshgrid(torch.linspace(0, 1, 240), torch.linspace(0, 1, 360), indexing="ij")
    clean = 0.02 + 0.96 * (0.75 * cols + 0.25 * torch.sin(3.0 * rows) ** 2)
    estimate = estimate_noise(add_noise(clean.expand(3, -1, -1), level.shot, level.read, _gen(4)))
    for x in (0.15, 0.5, 0.85):
        assert abs(_std_error_at(estimate, level, x)) < 0.05


def test_estimate_noise_ignores_clipped_intensities():
    # A ramp over the whole [0, 1] range with strong noise clips heavily at both ends; clipped
    # values have a smaller spread and would pull the fit down if they were used.
    ramp = torch.linspace(0, 1, 400).expand(300, -1)
    level = NoiseLevel(1e-2, 10**-1.5)
    estimate = estimate_noise(add_noise(ramp.expand(2, -1, -1), level.shot, level.read, _gen(8)))
    for x in (0.2, 0.5):
        assert abs(_std_error_at(estimate, level, x)) < 0.05


def test_estimate_noise_accepts_numpy_and_any_pattern_name():
    ramp = torch.linspace(0.1, 0.9, 200).expand(160, -1)
    noisy = add_noise(ramp, 1e-3, 1e-2, _gen(9))
    reference = estimate_noise(noisy)
    assert estimate_noise(noisy.numpy().astype(np.float64), cfa="gbrg") == reference
    assert estimate_noise(noisy[None], cfa="BGGR") == reference


@pytest.mark.parametrize("raw", [
    torch.zeros(0, 64, 64),
    torch.zeros(64, 0),
    torch.zeros(64),
    torch.zeros(2, 2, 64, 64),
    torch.zeros(20, 20),
    torch.full((64, 64), math.nan),
    np.array(["a", "b"]),
])
def test_estimate_noise_rejects_bad_input_in_one_line(raw):
    with pytest.raises(BurstFormatError) as err:
        estimate_noise(raw)
    assert "\n" not in str(err.value)


def test_estimate_noise_rejects_unknown_pattern_and_fully_clipped_input():
    with pytest.raises(BurstFormatError):
        estimate_noise(torch.full((64, 64), 0.5), cfa="RGBW")
    with pytest.raises(BurstFormatError):
        estimate_noise(torch.ones(64, 64))


def test_one_spelling_for_every_command():
    # restore --noise and evaluate --noise read the same SHOT:READ (the comma form too)
    assert parse_noise("1e-3:5e-3") == parse_noise("1e-3,5e-3") == NoiseLevel(1e-3, 5e-3)
    with pytest.raises(BurstFormatError, match="SHOT:READ"):
        parse_noise("1:2:3")
