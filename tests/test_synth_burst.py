"""Burst simulation, training samples, paper-protocol test bursts and ``burstjdd simulate``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch.utils.data import default_collate

from burstjdd.cli import main
from burstjdd.errors import ConfigError, DataError
from burstjdd.raw.cfa import mosaic, unpack
from burstjdd.raw.io import read_burst
from burstjdd.raw.noise import NoiseLevel
from burstjdd.raw.unprocess import test_isp_params, unprocess
from burstjdd.synth.burst import (
    SAMPLE_KEYS,
    SampleConfig,
    make_test_burst,
    make_test_sample,
    make_training_sample,
    simulate_burst,
)

NO_NOISE = NoiseLevel(0.0, 0.0)
SMALL = SampleConfig(
    gt_size=32, search_radius=12, shift_range=(0.0, 12.0), clip_shift_range=(0.0, 4.0)
)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    crop = data.astronaut()[100:292, 150:342].copy()  # (192, 192, 3)
    return torch.from_numpy(crop).permute(2, 0, 1).float() / 255


def test_static_burst_is_the_unprocessed_crop(photo):
    burst = simulate_burst(
        photo, noise=NO_NOISE, max_shift=0, n_objects=0, crop=(96, 128), cfa="BGGR"
    )
    linear = unprocess(photo, test_isp_params())
    expected = linear[:, 48:144, 32:160]  # centred crop of (192, 192)
    assert torch.equal(burst.gt, expected)
    assert torch.allclose(burst.raw, mosaic(expected, "BGGR").expand(5, 96, 128), atol=1e-6)
    assert torch.all(burst.flow == 0) and burst.cfa == "BGGR" and burst.ref == 2
    assert torch.equal(burst.wb, test_isp_params().wb)
    assert torch.equal(burst.ccm, test_isp_params().cam2rgb)


def test_burst_noise_and_determinism(photo):
    a = simulate_burst(photo, noise="high", max_shift=20, crop=(64, 64), seed=3)
    b = simulate_burst(photo, noise="high", max_shift=20, crop=(64, 64), seed=3)
    c = simulate_burst(photo, noise="high", max_shift=20, crop=(64, 64), seed=4)
    assert torch.equal(a.raw, b.raw) and torch.equal(a.flow, b.flow)
    assert torch.equal(a.valid, b.valid)
    assert not torch.equal(a.raw, c.raw)
    assert a.noise == NoiseLevel(6.4e-3, 2e-2) and a.flow.shape == (5, 2, 64, 64)
    # reference frame: y - x has variance shot * x + read^2 (clipping aside)
    clean = mosaic(a.gt, "RGGB")
    keep = (clean > 0.1) & (clean < 0.6)
    z = (a.raw[2] - clean)[keep] / (6.4e-3 * clean[keep] + 4e-4).sqrt()
    assert abs(float(z.std()) - 1) < 0.1 and abs(float(z.mean())) < 0.1


def test_clip_burst_uses_the_centred_window(photo):
    clip = torch.stack([photo.roll(2 * i, dims=-1) for i in range(7)])  # (7, 3, 192, 192)
    burst = simulate_burst(clip, noise=NO_NOISE, crop=(64, 64))
    linear = unprocess(clip[1:6, :, 64:128, 64:128], test_isp_params())
    assert torch.allclose(burst.raw, mosaic(linear, "RGGB"), atol=1e-6)
    assert burst.flow is None and burst.valid is None and burst.meta["clip"]
    moved = simulate_burst(clip, noise=NO_NOISE, crop=(64, 64), clip_motion=True, max_shift=8)
    assert moved.flow is None and not torch.allclose(moved.raw, burst.raw)


def test_bad_burst_inputs_are_clear_errors(photo):
    with pytest.raises(DataError, match="fewer than n_frames=5"):
        simulate_burst(torch.stack([photo] * 3))
    with pytest.raises(DataError, match="smaller than the crop"):
        simulate_burst(photo, crop=(256, 64))
    with pytest.raises(DataError, match="too small for max_shift 128"):
        simulate_burst(photo, max_shift=128)
    with pytest.raises(DataError, match="needs at least"):  # crop fits, the motion does not
        simulate_burst(photo, max_shift=60, crop=(180, 180), n_objects=0)
    with pytest.raises(ConfigError, match="even"):
        simulate_burst(photo, crop=(63, 64))


@pytest.mark.parametrize("option, value, words", [
    ("n_objects", 1_000_000, "n_objects must be an integer in 0..16"),  # used to run for days
    ("seed", 2**64, "seed must be an integer in 0..18446744073709551615"),
    ("seed", -1, "seed must be an integer in 0..18446744073709551615"),
    ("seed", "a", "seed must be"),
    ("crop", "ab", "crop must be \\(H, W\\), two integers"),
    ("crop", (64,), "crop must be"),
    ("isp", "x", "isp must be IspParams or None, got str"),
    ("max_shift", 1e308, "max_shift must be a number of pixels in 0..4096, got 1e\\+308"),
    ("max_shift", float("nan"), "max_shift must be a number of pixels in 0..4096"),
], ids=["objects", "seed-65-bits", "seed-negative", "seed-str", "crop-str", "crop-1d", "isp",
        "shift-1e308", "shift-nan"])
def test_out_of_range_options_are_config_errors_before_any_work(photo, option, value, words):
    with pytest.raises(ConfigError, match=words):
        simulate_burst(photo, **{option: value})


def test_a_burst_that_needs_more_memory_than_is_available_is_refused_first(photo,
                                                                           monkeypatch):
    import burstjdd.synth.burst as burst_module

    # 192 x 192 px, 3 frames: (48 + 72 * 3) bytes per pixel = 9.3 MiB
    monkeypatch.setattr(burst_module, "available_memory", lambda: 9 * 2**20)
    with pytest.raises(DataError, match=r"a 3-frame burst of this 192x192 image needs about "
                                        r"0\.0 GiB of memory, only 0\.0 GiB is available"):
        simulate_burst(photo, n_frames=3)
    monkeypatch.setattr(burst_module, "available_memory", lambda: 10 * 2**20)
    assert simulate_burst(photo, n_frames=3, max_shift=4).n_frames == 3


def test_training_sample_layout(photo):
    sample = make_training_sample([photo], SMALL, torch.Generator().manual_seed(0))
    assert set(SAMPLE_KEYS) <= set(sample)
    f = SMALL.frame_size // 2  # (32 + 2 * 16) / 2 = 32
    assert SMALL.context == 16 and f == 32
    for key in ("frames", "noise_map", "clean"):
        assert sample[key].shape == (5, 4, f, f)
    assert sample["gt"].shape == (3, 32, 32)
    origin = sample["origin"]
    assert origin.tolist() == [8, 8] and bool((origin % 4 == 0).all())
    # the GT is the clean reference frame at the origin (2 x packed px) and the RGGB phase holds
    o = 2 * int(origin[0])
    ref_mosaic = unpack(sample["clean"][2])
    assert torch.equal(mosaic(sample["gt"], "RGGB"), ref_mosaic[o : o + 32, o : o + 32])
    shot, read = sample["noise"].tolist()
    expected_map = (shot * sample["frames"] + read**2).sqrt()
    assert torch.allclose(sample["noise_map"], expected_map, atol=1e-6)
    assert 0 <= float(sample["frames"].min()) and float(sample["frames"].max()) <= 1
    gains = torch.tensor([sample["red_gain"], 1.0, sample["blue_gain"]])
    assert torch.allclose(sample["wb"], gains * sample["rgb_gain"])
    other = make_training_sample([photo], SMALL, torch.Generator().manual_seed(1))
    batch = default_collate([sample, other])
    assert batch["frames"].shape == (2, 5, 4, f, f) and batch["cam2rgb"].shape == (2, 3, 3)


def test_training_samples_are_deterministic_and_vary(photo):
    a = make_training_sample([photo], SMALL, torch.Generator().manual_seed(5))
    b = make_training_sample([photo], SMALL, torch.Generator().manual_seed(5))
    c = make_training_sample([photo], SMALL, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["frames"], c["frames"]) and not torch.equal(a["wb"], c["wb"])


def test_training_sample_from_a_clip(photo):
    frames = [photo.roll(i, dims=-2) for i in range(9)]
    sample = make_training_sample(frames, SMALL, torch.Generator().manual_seed(2))
    assert sample["frames"].shape == (5, 4, 32, 32)
    with pytest.raises(DataError, match="fewer than n_frames"):
        make_training_sample(frames[:4], SMALL, torch.Generator())
    with pytest.raises(DataError, match="too small for 64x64 training frames"):
        make_training_sample([photo[:, :60, :]], SMALL, torch.Generator())


def test_test_protocol_noise_is_seeded_per_clip_and_frame(photo):
    clip = torch.stack([photo.roll(3 * i, dims=-1)[:, :63, :64] for i in range(7)])  # odd height
    a = make_test_burst(clip, 2, "clip_a")
    b = make_test_burst(clip, 3, "clip_a")
    other = make_test_burst(clip, 2, "clip_b")
    assert a.raw.shape == (5, 62, 64) and a.meta["frames"] == [0, 1, 2, 3, 4]
    assert torch.equal(a.raw[1:], b.raw[:4])  # frames 1..4 carry the same noise in both windows
    assert not torch.equal(a.raw, other.raw)
    assert torch.equal(a.wb, torch.tensor([2.0, 1.0, 1.7])) and a.noise == NoiseLevel(6.4e-3, 2e-2)
    assert torch.allclose(a.gt, unprocess(clip[2, :, :62], test_isp_params()), atol=1e-6)
    sample = make_test_sample(clip, 4, "clip_a", "low")
    assert sample["frames"].shape == (5, 4, 31, 32)
    assert sample["noise"].tolist() == pytest.approx([2.5e-3, 1e-2])
    assert sample["rgb_gain"] == 1.0 and sample["red_gain"] == pytest.approx(2.0)
    with pytest.raises(DataError, match="no full 5-frame window"):
        make_test_burst(clip, 5, "clip_a")


def test_cli_simulate_one_image_with_large_shifts(tmp_path):
    src = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(src)
    medians = []
    for seed in (0, 1):
        out = tmp_path / f"b{seed}.npz"
        assert main(["simulate", str(src), "-o", str(out), "--max-shift", "128", "--crop", "96x64",
                     "--seed", str(seed), "--noise", "1e-3,1e-2"]) == 0
        burst = read_burst(out)
        assert burst.raw.shape == (5, 64, 96) and burst.gt is not None
        assert burst.noise == NoiseLevel(1e-3, 1e-2)
        step = (burst.flow[1:] - burst.flow[:-1]).norm(dim=1).flatten(1).median(dim=1).values
        medians.append(step)
        assert 0.75 * 128 <= float(step.max()) <= 128
    assert float(torch.cat(medians).min()) < 0.5 * 128


def test_cli_simulate_folder_and_errors(tmp_path, capsys):
    stills = tmp_path / "stills"
    stills.mkdir()
    for i in range(2):
        rng = np.random.default_rng(i)
        pixels = rng.integers(0, 256, (120, 130, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(stills / f"p{i}.png")
    Image.fromarray(np.zeros((120, 130), np.uint8)).save(stills / "gray.png")
    out = tmp_path / "out"
    assert main(["simulate", str(stills), "-o", str(out), "--max-shift", "8", "--frames", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.npz", "p1.npz"]
    assert "1 grayscale" in capsys.readouterr().out
    assert read_burst(out / "p1.npz").raw.shape[0] == 3
    assert main(["simulate", str(tmp_path / "missing.png"), "-o", str(tmp_path / "x.npz")]) == 2
    assert main(["simulate", str(stills), "-o", str(tmp_path / "x.npz")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["simulate", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "give an output folder" in err
    assert "no colour images" in err


def test_simulate_burst_takes_a_numpy_image_as_the_readme_shows():
    image = data.astronaut()[100:228, 100:228]  # (H, W, 3) uint8
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    kwargs = {"n_frames": 3, "max_shift": 8, "noise": "high", "seed": 0}
    from_array = simulate_burst(image, **kwargs)
    from_tensor = simulate_burst(tensor, **kwargs)
    assert torch.equal(from_array.raw, from_tensor.raw) and torch.equal(from_array.gt,
                                                                        from_tensor.gt)
    floats = simulate_burst(image.astype(np.float32) / 255, **kwargs)
    assert torch.allclose(floats.gt, from_array.gt, atol=1e-6)
    clip = simulate_burst([image, image, image], n_frames=3, noise="high", seed=0)
    assert clip.n_frames == 3
    with pytest.raises(ConfigError, match="divide by 255"):
        simulate_burst(image.astype(np.float32), **kwargs)
    with pytest.raises(ConfigError, match=r"\(H, W, 3\)"):
        simulate_burst(image[..., 0], **kwargs)


@pytest.mark.parametrize("source, got", [(123, "got int"), (None, "got NoneType"),
                                         ([1, 2], "got int")])
def test_simulate_burst_says_what_it_expects(source, got):
    with pytest.raises(TypeError, match=f"simulate_burst: .*{got}"):
        simulate_burst(source)


def test_burst_length_and_motion_are_checked_first():
    image = data.astronaut()[:96, :96]
    for n in (0, 65, 10**8):
        with pytest.raises(ConfigError, match=r"n_frames must be an integer in 1\.\.64"):
            simulate_burst(image, n_frames=n)
    with pytest.raises(ConfigError, match="max_shift"):
        simulate_burst(image, max_shift=-5)
    with pytest.raises(ConfigError, match="n_objects"):
        simulate_burst(image, n_objects=-1)
    long = simulate_burst(image, n_frames=64, max_shift=1, n_objects=0, crop=(16, 16))
    assert long.n_frames == 64
