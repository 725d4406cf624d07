"""Camera metadata kept from a raw input: every tag of a phone-like DNG read back with tifffile
from the DNG and TIFF that ``burstjdd restore`` writes, and rendered by darktable where it is
installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from numpy2dng.core import RAW2DNG
from numpy2dng.dng import DNGTags, Tag, Type

from burstjdd._version import __version__
from burstjdd.cli import main
from burstjdd.errors import BurstFormatError
from burstjdd.raw.io import read_burst
from burstjdd.raw.metadata import CAMERA_TAGS, read_camera_tags
from burstjdd.raw.npz import read_npz, write_npz
from burstjdd.raw.writers import write_image

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 40, 56


def _fractions(values, den=10000):
    """numpy2dng's (S)RATIONAL values [[num, den], ...] and the flat [num, den, ...] tifffile
    reads back."""
    pairs = [[int(round(v * den)), den] for v in np.ravel(values)]
    return pairs, [v for pair in pairs for v in pair]


# name -> (numpy2dng tag, value as written, value as tifffile reads it: str, or flat ints)
CM1 = ((0.6722, -0.1285, -0.0716), (-0.4891, 1.2784, 0.2303), (-0.0845, 0.1954, 0.6231))
CM2 = ((0.9187, -0.3302, -0.0721), (-0.3925, 1.1836, 0.2345), (-0.0558, 0.1423, 0.6117))
FM1 = ((0.6172, 0.2387, 0.1083), (0.2466, 0.8752, -0.1218), (0.0497, -0.1963, 0.9716))
FM2 = ((0.7233, 0.1327, 0.1083), (0.2925, 0.8273, -0.1198), (0.0343, -0.1312, 0.9219))
CC1 = ((1.0123, 0, 0), (0, 1.0, 0), (0, 0, 0.9871))
CC2 = ((1.0087, 0, 0), (0, 1.0, 0), (0, 0, 0.9912))
TAGS = {
    "Make": (Tag.Make, "Google", "Google"),
    "Model": (Tag.Model, "Pixel 7", "Pixel 7"),
    "LensModel": (Tag.EXIFPhotoLensModel, "Pixel 7 back camera 6.81mm f/1.85",
                  "Pixel 7 back camera 6.81mm f/1.85"),
    "PhotographicSensitivity": (Tag.PhotographicSensitivity, [500], [500]),
    "ExposureTime": (Tag.ExposureTime, [[1, 120]], [1, 120]),
    "FNumber": (Tag.FNumber, [[185, 100]], [185, 100]),
    "FocalLength": (Tag.FocalLength, [[681, 100]], [681, 100]),
    "DateTimeOriginal": (Tag.DateTimeOriginal, "2024:05:01 18:42:07", "2024:05:01 18:42:07"),
    "SubSecTimeOriginal": (Tag.SubsecTimeOriginal, "394", "394"),
    "OffsetTimeOriginal": ((36881, Type.Ascii), "+02:00", "+02:00"),
    "ColorMatrix1": (Tag.ColorMatrix1, *_fractions(CM1)),
    "ColorMatrix2": (Tag.ColorMatrix2, *_fractions(CM2)),
    "CalibrationIlluminant1": (Tag.CalibrationIlluminant1, [17], [17]),
    "CalibrationIlluminant2": (Tag.CalibrationIlluminant2, [21], [21]),
    "ForwardMatrix1": (Tag.ForwardMatrix1, *_fractions(FM1)),
    "ForwardMatrix2": (Tag.ForwardMatrix2, *_fractions(FM2)),
    "CameraCalibration1": (Tag.CameraCalibration1, *_fractions(CC1)),
    "CameraCalibration2": (Tag.CameraCalibration2, *_fractions(CC2)),
    "AnalogBalance": (Tag.AnalogBalance, *_fractions([1.0, 1.0, 1.0])),
    "AsShotNeutral": (Tag.AsShotNeutral, *_fractions([0.4812, 1.0, 0.6315])),
    "BaselineExposure": (Tag.BaselineExposure, [[-35, 100]], [-35, 100]),
}
EXIF = {"LensModel", "PhotographicSensitivity", "ExposureTime", "FNumber", "FocalLength",
        "DateTimeOriginal", "SubSecTimeOriginal", "OffsetTimeOriginal"}
CAPTURE = EXIF | {"Make", "Model"}


def write_phone_dng(path: Path, seed: int = 0, orientation: int = 6, **changes) -> Path:
    """An RGGB CFA DNG (black 64, white 4000) carrying every tag of TAGS (the capture tags in
    IFD0, where TIFF/EP puts them: numpy2dng writes no EXIF IFD); ``changes``: name -> value
    as written (None leaves the tag out)."""
    t = DNGTags()
    for tag, value in ((Tag.ImageWidth, W), (Tag.ImageLength, H), (Tag.RowsPerStrip, H),
                       (Tag.PhotometricInterpretation, 32803), (Tag.SamplesPerPixel, 1),
                       (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, [0, 1, 1, 2]), (Tag.BlackLevel, [64]),
                       (Tag.WhiteLevel, 4000), (Tag.Orientation, orientation),
                       (Tag.UniqueCameraModel, "Google Pixel 7"),
                       (Tag.NoiseProfile, [1e-4, 1e-5])):
        t.set(tag, value)
    for name, (tag, value, _) in TAGS.items():
        value = changes.get(name, value)
        if value is not None:
            t.set(tag, value)
    writer = RAW2DNG()
    writer.options(t, path="")
    raw = np.random.default_rng(seed).integers(300, 3000, (H, W), dtype=np.uint16)
    path.write_bytes(bytes(writer.convert(raw)))
    return path


def _plain(value):
    """A tag value as tifffile reads it -> str, bytes, or a flat list of ints."""
    if isinstance(value, (str, bytes)):
        return value
    return np.ravel(np.asarray(value, dtype=np.int64)).tolist()


def read_back(path: Path) -> tuple[dict, dict]:
    """(IFD0 tags by code, EXIF tags by tifffile's name), values as :func:`_plain` gives them."""
    with tifffile.TiffFile(path) as tif:
        ifd0 = {t.code: t.value for t in tif.pages.first.tags.values()}
    exif = ifd0.pop(34665, {})
    return ({k: _plain(v) for k, v in ifd0.items()},
            {k: _plain(v) for k, v in exif.items()})


def expected(names) -> dict:
    return {name: TAGS[name][2] for name in names}


def found(path: Path, names) -> dict:
    """The tags ``names`` of a written file: EXIF ones from its EXIF IFD, others from IFD0."""
    ifd0, exif = read_back(path)
    codes = {spec.name: spec.code for spec in CAMERA_TAGS}
    return {name: exif.get(tifffile.TIFF.EXIF_TAGS[codes[name]]) if name in EXIF
            else ifd0.get(codes[name]) for name in names}


@pytest.fixture(scope="module")
def phone(tmp_path_factory) -> Path:
    return write_phone_dng(tmp_path_factory.mktemp("phone") / "IMG_0001.dng")


def test_every_camera_tag_is_read_from_the_reference_frame(phone):
    assert read_camera_tags(phone) == expected(TAGS)
    burst = read_burst([phone])
    assert burst.meta["camera_tags"] == expected(TAGS) and burst.meta["orientation"] == 6


def test_restore_to_dng_keeps_every_tag_of_the_input_dng(phone, tmp_path, capsys):
    out = tmp_path / "out.dng"
    assert main(["restore", str(phone), "-o", str(out), "--model", "classical", "--quiet"]) == 0
    assert found(out, TAGS) == expected(TAGS)
    ifd0, exif = read_back(out)
    assert set(exif) == {tifffile.TIFF.EXIF_TAGS[s.code] for s in CAMERA_TAGS if s.exif}
    assert ifd0[305] == f"burstjdd {__version__}"                      # Software
    assert ifd0[50708] == "Google Pixel 7" and ifd0[274] == [6]        # UniqueCameraModel, Orient.
    assert ifd0[262] == [34892] and tifffile.imread(out).shape == (H, W, 3)  # LinearRaw
    # the EXIF IFD written here is read back by the reader, too
    assert read_camera_tags(out) == expected(TAGS)


def test_without_a_camera_neutral_the_burst_s_white_balance_is_written(tmp_path):
    src = write_phone_dng(tmp_path / "in.dng", AsShotNeutral=None)
    with pytest.warns(UserWarning, match="no as-shot white balance"):
        burst = read_burst([src])
    write_image(torch.rand(3, H, W), tmp_path / "out.dng", burst=burst)
    ifd0, _ = read_back(tmp_path / "out.dng")
    neutral = np.array(ifd0[50728][0::2]) / np.array(ifd0[50728][1::2])
    np.testing.assert_allclose(neutral, 1.0 / (burst.wb.numpy() / float(burst.wb[1])), rtol=1e-5)
    assert ifd0[50721] == TAGS["ColorMatrix1"][2]


def test_tiff_output_keeps_make_model_and_the_capture_tags_but_no_colour_tags(phone, tmp_path):
    out = tmp_path / "out.tif"
    write_image(torch.rand(3, H, W), out, burst=read_burst([phone]))
    assert found(out, CAPTURE) == expected(CAPTURE)
    ifd0, _ = read_back(out)
    assert ifd0[305] == f"burstjdd {__version__}"
    assert not {spec.code for spec in CAMERA_TAGS if spec.name not in CAPTURE} & set(ifd0)
    assert tifffile.imread(out).shape == (W, H, 3)  # turned upright (orientation 6)


def test_camera_tags_survive_an_npz_burst_file(phone, tmp_path):
    write_npz(read_burst([phone]), tmp_path / "b.npz")
    burst = read_npz(tmp_path / "b.npz")
    write_image(torch.rand(3, H, W), tmp_path / "out.dng", burst=burst)
    assert found(tmp_path / "out.dng", TAGS) == expected(TAGS)


def test_tags_a_3_colour_output_cannot_hold_are_left_out(tmp_path):
    src = write_phone_dng(tmp_path / "in.dng", ColorMatrix1=_fractions(np.ones((4, 3)))[0])
    assert read_camera_tags(src) == {k: v for k, v in expected(TAGS).items()
                                     if k != "ColorMatrix1"}
    assert read_camera_tags(tmp_path / "missing.dng") == {}
    (tmp_path / "text.dng").write_text("not a TIFF")
    assert read_camera_tags(tmp_path / "text.dng") == {}


@pytest.mark.parametrize("bad, message", [
    ({"Make": 3}, "'Make'] must be ASCII text"),
    ({"ExposureTime": [1, 0]}, "denominators must be positive"),
    ({"ColorMatrix1": [1, 1]}, "must hold 18 integers"),
    ({"PhotographicSensitivity": [70000]}, "must lie in 0..65535"),
    ("Google", "must be a dict"),
])
@pytest.mark.parametrize("ext", [".dng", ".tif"])
def test_malformed_tags_in_a_burst_are_refused_and_nothing_is_written(phone, tmp_path, bad,
                                                                      message, ext):
    import dataclasses

    burst = read_burst([phone])
    burst = dataclasses.replace(burst, meta={**burst.meta, "camera_tags": bad})
    with pytest.raises(BurstFormatError, match=rf"out{ext}: .*{message}"):
        write_image(torch.rand(3, H, W), tmp_path / f"out{ext}", burst=burst)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="darktable-cli not installed")
def test_darktable_renders_the_output_dng(phone, tmp_path):
    from PIL import Image

    out = tmp_path / "out.dng"
    assert main(["restore", str(phone), "-o", str(out), "--model", "classical", "--quiet"]) == 0
    png = tmp_path / "render.png"
    subprocess.run(["darktable-cli", str(out), str(png), "--core", "--configdir",
                    str(tmp_path / "dt"), "--library", ":memory:"],
                   check=True, capture_output=True, timeout=300)
    image = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert image.shape[:2] == (W, H)  # developed upright (orientation 6)
    assert image.std() > 5.0          # not a flat image
