"""Linear DNG out: tags read back with tifffile, pixels and colours read back with rawpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rawpy
import tifffile
import torch

from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.camera import ccm_from_xyz2cam
from burstjdd.raw.color import apply_ccm, apply_gains
from burstjdd.raw.dng import dng_color_tags, write_linear_dng
from burstjdd.raw.image import orient_image
from burstjdd.raw.io import read_burst
from burstjdd.raw.unprocess import XYZ2CAMS, test_isp_params
from burstjdd.raw.writers import write_image

# Readers and writers of the test DNGs are shared with the raw-file tests.
from test_rawfiles import CM_A, NEUTRAL, RGB2XYZ, random_raw, write_dng

H, W = 48, 64
XYZ_D65 = RGB2XYZ @ np.ones(3)


def burst(wb=(2.0, 1.3, 1.7), ccm=None, **meta) -> RawBurst:
    """A burst carrying only metadata (the writer never looks at the mosaics)."""
    ccm = test_isp_params().cam2rgb if ccm is None else ccm
    return RawBurst(raw=torch.zeros(1, H, W), cfa="RGGB", wb=list(wb), ccm=ccm, meta=meta)


def image(seed: int = 0, low: float = -0.1, high: float = 1.1) -> torch.Tensor:
    """(3, H, W) linear camera RGB, a little outside [0, 1] at both ends (clipped on write)."""
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(3, H, W, generator=g)


def quantised(rgb: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint16 round(65535 * clip(x, 0, 1)) in float32, the stored samples."""
    x = rgb.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32)
    return np.round(x * np.float32(65535)).astype(np.uint16)


def tags_of(path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return {t.code: t.value for t in tif.pages.first.tags.values()}


def rationals(value) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    return a[0::2] / a[1::2]


# ------------------------------------------------------------------------------- colour maths


def test_colour_tags_reproduce_our_rendering():
    wb = np.array([2.0, 1.3, 1.7])
    ccm = ccm_from_xyz2cam(np.array(XYZ2CAMS[0]))      # float64, maps (1, 1, 1) to itself
    cm, neutral, exposure = dng_color_tags(wb, ccm)
    # AsShotNeutral = 1/wb normalised to green 1 (our ccm maps (1, 1, 1) to itself) ...
    np.testing.assert_allclose(neutral, (1 / wb) / (1 / wb[1]), rtol=1e-12)
    # ... and it is the camera response to D65 white: the white a reader infers is D65.
    np.testing.assert_allclose(cm @ XYZ_D65, neutral, rtol=1e-12)
    # A reader's camera -> XYZ is inv(CM) (white D65: no adaptation), so its camera ->
    # linear sRGB is inv(M) inv(CM): our ccm diag(wb) up to one scale, the exposure that is
    # left to BaselineExposure.
    reader = np.linalg.inv(RGB2XYZ) @ np.linalg.inv(cm)
    np.testing.assert_allclose(reader * wb[1], ccm @ np.diag(wb), rtol=1e-9, atol=1e-12)
    assert exposure == pytest.approx(math.log2(1.3))                # the global gain
    np.testing.assert_allclose(ccm @ (wb * neutral), 2**exposure * np.ones(3), rtol=1e-12)
    # Our own reader (Brooks / official-code convention) recovers ccm from ColorMatrix1.
    np.testing.assert_allclose(ccm_from_xyz2cam(cm), ccm, atol=1e-12)


def test_colour_tags_for_a_ccm_that_moves_white():
    """A ccm not mapping (1, 1, 1) to itself: the neutral is the camera response to what we
    render white, still consistent with ColorMatrix1 and our colours."""
    wb = np.array([1.8, 1.0, 1.4])
    ccm = np.array([[1.5, -0.3, -0.1], [-0.2, 1.3, 0.0], [0.0, -0.4, 1.5]])
    cm, neutral, exposure = dng_color_tags(wb, ccm)
    np.testing.assert_allclose(ccm @ (wb * neutral), np.ones(3) * (ccm @ (wb * neutral))[1])
    np.testing.assert_allclose(cm @ XYZ_D65, neutral, rtol=1e-12)
    reader = np.linalg.inv(RGB2XYZ) @ np.linalg.inv(cm)
    scale = (ccm @ np.diag(wb))[0, 0] / reader[0, 0]
    np.testing.assert_allclose(reader * scale, ccm @ np.diag(wb), rtol=1e-9, atol=1e-12)
    # Readers render the neutral scaled to a largest channel of 1 as white times
    # 2**BaselineExposure; so must we.
    full_scale = neutral / neutral.max()
    np.testing.assert_allclose(ccm @ (wb * full_scale), 2**exposure * np.ones(3), rtol=1e-12)


def test_colour_tags_refuse_a_ccm_with_no_positive_white():
    with pytest.raises(BurstFormatError, match="render no positive camera colour as white"):
        dng_color_tags([1, 1, 1], [[1, 0, 0], [0, 1, 0], [0, 0, -1]])


# ------------------------------------------------------------------------------- the file


def test_tags_and_samples_read_back_with_tifffile(tmp_path):
    b = burst(orientation=6, camera="Test Cam")
    rgb = image()
    write_linear_dng(rgb, tmp_path / "x.dng", b)
    tags = tags_of(tmp_path / "x.dng")
    assert tags[262] == 34892 and tags[277] == 3 and tags[258] == (16, 16, 16)
    assert tags[259] == 1 and tags[254] == 0                       # uncompressed, main image
    assert tags[50706] == b"\x01\x04\x00\x00"                      # DNGVersion 1.4
    assert tags[50708] == "Test Cam" and tags[274] == 6
    assert tags[50714] == (0, 0, 0) and tags[50717] == (65535,) * 3
    assert tags[50778] == 21                                       # D65
    cm, neutral, exposure = dng_color_tags(b.wb.double(), b.ccm.double())
    np.testing.assert_allclose(rationals(tags[50721]).reshape(3, 3), cm, atol=1e-6)
    np.testing.assert_allclose(rationals(tags[50728]), neutral, atol=1e-6)
    assert rationals(tags[50730])[0] == pytest.approx(exposure, abs=1e-6)
    assert np.array_equal(tifffile.imread(tmp_path / "x.dng"), quantised(rgb))


def test_rawpy_reads_the_samples_exactly(tmp_path):
    rgb = image(1)
    write_linear_dng(rgb, tmp_path / "x.dng", burst())
    with rawpy.imread(str(tmp_path / "x.dng")) as r:
        assert r.raw_type == rawpy.RawType.Stack and r.num_colors == 3
        stack = r.raw_image.copy()                                 # LinearRaw: (H, W, 4)
        assert r.black_level_per_channel == [0, 0, 0, 0] and r.white_level == 65535
    assert stack.shape == (H, W, 4) and not stack[..., 3].any()
    assert np.array_equal(stack[..., :3], quantised(rgb))


def test_rawpy_renders_our_colours(tmp_path):
    """LibRaw's own development (its WB from AsShotNeutral, its camera -> sRGB from
    ColorMatrix1) gives our linear render, up to the global gain wb[G] that LibRaw leaves out
    (it ignores BaselineExposure)."""
    b = burst()
    rgb = image(2, 0.05, 0.3)
    write_linear_dng(rgb, tmp_path / "x.dng", b)
    with rawpy.imread(str(tmp_path / "x.dng")) as r:
        np.testing.assert_allclose(r.color_matrix[:, :3], b.ccm.numpy(), atol=1e-5)
        out = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16,
                            use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB,
                            adjust_maximum_thr=0.0)   # white = WhiteLevel, not the data max
    stored = torch.from_numpy(quantised(rgb).astype(np.float64) / 65535).permute(2, 0, 1)
    ours = apply_ccm(apply_gains(stored, b.wb.double()), b.ccm.double()) / float(b.wb[1])
    ours = ours.permute(1, 2, 0).numpy()
    inside = ((ours > 0.01) & (ours < 0.99)).all(-1)     # LibRaw clips to [0, 1]
    assert inside.mean() > 0.8
    # LibRaw scales, white-balances and converts in 16-bit integers: a few levels of 65535.
    np.testing.assert_allclose(out[inside] / 65535, ours[inside], atol=4 / 65535)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_libraw_turns_the_image_as_orient_image_does(tmp_path, orientation):
    rgb = image(3, 0.0, 1.0)
    write_linear_dng(rgb, tmp_path / "x.dng", burst(orientation=orientation))
    with rawpy.imread(str(tmp_path / "x.dng")) as r:
        out = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16,
                            user_wb=[1, 1, 1, 1], output_color=rawpy.ColorSpace.raw,
                            adjust_maximum_thr=0.0)   # white = WhiteLevel: values unchanged
    stored = torch.from_numpy(quantised(rgb).astype(np.int32)).permute(2, 0, 1)
    assert np.array_equal(out, orient_image(stored, orientation).permute(1, 2, 0).numpy())


def test_write_image_dng_crops_padding_and_keeps_sensor_orientation(tmp_path):
    b = burst(orientation=8, size=[H - 1, W - 1])
    rgb = image(4)
    write_image(rgb, tmp_path / "x.dng", burst=b)          # space is not used for DNG
    assert np.array_equal(tifffile.imread(tmp_path / "x.dng"), quantised(rgb[:, : H - 1, : W - 1]))
    assert tags_of(tmp_path / "x.dng")[274] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["x.dng"]


def test_dng_of_a_burst_read_from_dng_keeps_its_colour_matrix(tmp_path):
    """Round trip: the output's ColorMatrix1 and its illuminant are the input's, as stored, and
    the neutral is the input's AsShotNeutral (test_dng_metadata.py checks every tag)."""
    b = read_burst(write_dng(tmp_path / "in.dng", random_raw(0), "GBRG", orientation=3))
    write_image(image(5), tmp_path / "out.dng", burst=b)
    tags = tags_of(tmp_path / "out.dng")
    np.testing.assert_array_equal(rationals(tags[50721]).reshape(3, 3), CM_A)
    np.testing.assert_allclose(rationals(tags[50728]), NEUTRAL, atol=1e-6)
    assert tags[50778] == 17 and tags[274] == 3 and tags[50708] == "Test Cam"


def test_write_image_dng_needs_the_burst(tmp_path):
    with pytest.raises(BurstFormatError, match=r"x\.dng: \.dng output needs the burst"):
        write_image(image(), tmp_path / "x.dng", space="linear")
    assert list(tmp_path.iterdir()) == []


def test_bad_image_leaves_the_existing_dng_untouched(tmp_path):
    path = tmp_path / "x.dng"
    path.write_bytes(b"old")
    rgb = image()
    rgb[1, 2, 3] = math.nan
    with pytest.raises(BurstFormatError, match="x.dng: image has NaN or inf"):
        write_linear_dng(rgb, path, burst())
    with pytest.raises(BurstFormatError, match=r"x.dng: image must have shape \(3, H, W\)"):
        write_linear_dng(torch.rand(4, H, W), path, burst())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"x.dng": b"old"}
