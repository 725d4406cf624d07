"""Raw camera files in: ``read_burst`` on DNG files written here with numpy2dng / tifffile."""

from __future__ import annotations

import errno
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from numpy2dng.core import RAW2DNG
from numpy2dng.dng import DNGTags, Tag
from PIL import Image

from burstjdd.cli import main
from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.camera import FALLBACK_WB, read_raw_frame
from burstjdd.raw.cfa import mosaic
from burstjdd.raw.color import render
from burstjdd.raw.files import InputNotFoundError
from burstjdd.raw.image import orient_image
from burstjdd.raw.io import read_burst
from burstjdd.raw.noise import NoiseLevel, add_noise
from burstjdd.raw.npz import write_npz
from burstjdd.raw.reference import select_reference, sharpness
from burstjdd.raw.writers import write_image

H, W = 64, 96
# Brooks et al.'s first XYZ -> camera matrix and a second one, both with 4 decimals (exact
# as the rationals n / 10000 the DNG stores).
CM_A = ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406))
CM_B = ((0.4913, -0.0541, -0.0202), (-0.613, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183))
RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                    [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]])
CFA_CODES = {"R": 0, "G": 1, "B": 2}
STD_A, D65 = 17, 21
BLACK = (60, 62, 64, 66)   # per site of the 2x2 cell, reading order
WHITE = 4000
NEUTRAL = (0.5, 1.0, 0.625)
PROFILE = (1e-3, 2e-5, 1.2e-3, 3e-5, 1.1e-3, 2.5e-5)   # (S, O) for 3 planes


def _rational(values, den=10000):
    """numpy2dng's (S)RATIONAL values: [[numerator, denominator], ...]."""
    return [[int(round(v * den)), den] for v in np.ravel(values)]


def write_dng(path: Path, raw: np.ndarray, pattern: str = "RGGB", *, black=BLACK, white=WHITE,
              neutral=NEUTRAL, cm1=CM_A, illuminant1=STD_A, cm2=None, illuminant2=D65,
              profile=PROFILE, orientation=1, active_area=None, camera="Test Cam") -> Path:
    """A CFA DNG with numpy2dng (uint16 raw (H, W)); a tag given as None is left out."""
    h, w = raw.shape
    t = DNGTags()
    t.set(Tag.ImageWidth, w)
    t.set(Tag.ImageLength, h)
    t.set(Tag.RowsPerStrip, h)
    t.set(Tag.PhotometricInterpretation, 32803)     # CFA
    t.set(Tag.SamplesPerPixel, 1)
    t.set(Tag.BitsPerSample, 16)
    t.set(Tag.Orientation, orientation)
    t.set(Tag.CFARepeatPatternDim, [2, 2])
    t.set(Tag.CFAPattern, [CFA_CODES[c] for c in pattern])
    if len(black) == 4:
        t.set(Tag.BlackLevelRepeatDim, [2, 2])
    t.set(Tag.BlackLevel, list(black))
    t.set(Tag.WhiteLevel, white)
    t.set(Tag.UniqueCameraModel, camera)
    if neutral is not None:
        t.set(Tag.AsShotNeutral, _rational(neutral))
    if cm1 is not None:
        t.set(Tag.ColorMatrix1, _rational(cm1))
        t.set(Tag.CalibrationIlluminant1, illuminant1)
    if cm2 is not None:
        t.set(Tag.ColorMatrix2, _rational(cm2))
        t.set(Tag.CalibrationIlluminant2, illuminant2)
    if profile is not None:
        t.set(Tag.NoiseProfile, list(profile))
    if active_area is not None:
        t.set(Tag.ActiveArea, list(active_area))
    return _save(t, raw, path)


def _save(tags: DNGTags, raw: np.ndarray, path: Path) -> Path:
    writer = RAW2DNG()
    writer.options(tags, path="")
    # numpy2dng would append ".dng" to other names (e.g. "x.DNG"), so write the bytes here.
    path.write_bytes(bytes(writer.convert(np.ascontiguousarray(raw, dtype=np.uint16))))
    return path


def _flat(values) -> list[int]:
    """:func:`_rational` as tifffile reads it back: [numerator, denominator, ...]."""
    return [v for pair in _rational(values) for v in pair]


def random_raw(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """uint16 values over [0, 4096): some below the black level, some above white."""
    return np.random.default_rng(seed).integers(0, 4096, (h, w)).astype(np.uint16)


def normalised(raw: np.ndarray, black=BLACK, white=WHITE) -> np.ndarray:
    """The expected reader output, written out independently of the library."""
    h, w = raw.shape
    b = np.empty((h, w))
    for k, level in enumerate(black if len(black) == 4 else black * 4):
        b[k // 2 :: 2, k % 2 :: 2] = level
    return np.clip((raw - b) / (white - b), 0, 1).astype(np.float32)


def expected_ccm(cm) -> np.ndarray:
    """inverse(rows-normalised(cm @ sRGB->XYZ)): official real-data code and Brooks et al."""
    rgb2cam = np.array(cm) @ RGB2XYZ
    return np.linalg.inv(rgb2cam / rgb2cam.sum(axis=1, keepdims=True))


def write_burst(folder: Path, n: int = 3, **kwargs) -> list[np.ndarray]:
    folder.mkdir(exist_ok=True)
    size = kwargs.pop("size", (H, W))
    raws = [random_raw(k, *size) for k in range(n)]
    for k, raw in enumerate(raws):
        write_dng(folder / f"frame{k}.dng", raw, **kwargs)
    return raws


# ------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_every_bayer_phase_and_all_metadata_are_recovered(tmp_path, pattern):
    raws = write_burst(tmp_path / "burst", pattern=pattern)
    b = read_burst(tmp_path / "burst")
    assert b.cfa == pattern and b.raw.shape == (3, H, W) and b.ref == 1
    for k, raw in enumerate(raws):
        assert np.array_equal(b.raw[k].numpy(), normalised(raw))
    assert b.wb.tolist() == pytest.approx([2.0, 1.0, 1.6], rel=1e-6)     # 1 / AsShotNeutral
    np.testing.assert_allclose(b.ccm.numpy(), expected_ccm(CM_A), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.ccm.numpy() @ np.ones(3), np.ones(3), atol=1e-5)  # white kept
    s, o = np.array(PROFILE[0::2]), np.array(PROFILE[1::2])
    assert b.noise == NoiseLevel(shot=float(s.mean()), read=math.sqrt(float(o.mean())))
    assert b.meta == {"files": ["frame0.dng", "frame1.dng", "frame2.dng"], "size": [H, W],
                      "orientation": 1, "camera": "Test Cam",
                      "camera_tags": {"ColorMatrix1": _flat(CM_A),
                                      "CalibrationIlluminant1": [STD_A],
                                      "AsShotNeutral": _flat(NEUTRAL)}}


def test_site_black_levels_follow_the_pattern(tmp_path):
    """A frame at exactly the black level of each site reads 0; black + 1000 reads 1000/(W-b)."""
    raw = np.empty((H, W), np.uint16)
    for k, level in enumerate(BLACK):
        raw[k // 2 :: 2, k % 2 :: 2] = level + 1000 * (k % 2)
    b = read_burst(write_dng(tmp_path / "a.dng", raw, "GBRG"))
    for k, level in enumerate(BLACK):
        site = b.raw[0, k // 2 :: 2, k % 2 :: 2]
        assert torch.all(site == np.float32(1000 * (k % 2) / (WHITE - level)))


def test_scalar_black_level(tmp_path):
    raw = random_raw(5)
    b = read_burst(write_dng(tmp_path / "a.dng", raw, "BGGR", black=(100,), white=4095))
    assert np.array_equal(b.raw[0].numpy(), normalised(raw, (100,), 4095))


def test_folder_order_hidden_and_other_files(tmp_path):
    folder = tmp_path / "burst"
    folder.mkdir()
    raws = {name: random_raw(k) for k, name in enumerate(["b.DNG", "a.dng", "c.dng"])}
    for name, raw in raws.items():
        write_dng(folder / name, raw)
    write_dng(folder / ".hidden.dng", random_raw(9, 32, 32))   # another size: would fail
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.jpg")  # camera JPEG
    (folder / "a.xmp").write_text("<x/>")
    (folder / "sub.dng").mkdir()
    b = read_burst(folder)
    assert b.meta["files"] == ["a.dng", "b.DNG", "c.dng"]
    for k, name in enumerate(["a.dng", "b.DNG", "c.dng"]):
        assert np.array_equal(b.raw[k].numpy(), normalised(raws[name]))
    # a list keeps its order
    listed = read_burst([folder / "c.dng", folder / "a.dng"])
    assert listed.meta["files"] == ["c.dng", "a.dng"]
    assert np.array_equal(listed.raw[0].numpy(), normalised(raws["c.dng"]))


@pytest.mark.parametrize(
    "tags,expected",
    [
        ({"cm1": CM_A, "illuminant1": STD_A, "cm2": CM_B, "illuminant2": D65}, CM_B),
        ({"cm1": CM_A, "illuminant1": D65, "cm2": CM_B, "illuminant2": STD_A}, CM_A),
        ({"cm1": CM_A, "illuminant1": STD_A, "cm2": CM_B, "illuminant2": STD_A}, CM_B),
        ({"cm1": CM_B, "illuminant1": STD_A}, CM_B),
    ],
    ids=["cm2-d65", "cm1-d65", "no-d65-takes-cm2", "cm1-only"],
)
def test_colour_matrix_choice(tmp_path, tags, expected):
    b = read_burst(write_dng(tmp_path / "a.dng", random_raw(0), **tags))
    np.testing.assert_allclose(b.ccm.numpy(), expected_ccm(expected), rtol=1e-5, atol=1e-6)


def test_missing_white_balance_uses_the_daylight_balance(tmp_path):
    path = write_dng(tmp_path / "a.dng", random_raw(0), neutral=None)
    with pytest.warns(UserWarning, match="a.dng: no as-shot white balance"):
        b = read_burst(path)
    # LibRaw's daylight balance: the gains that make D65 white neutral for this matrix.
    d65_response = np.array(CM_A) @ RGB2XYZ @ np.ones(3)
    expected = (1 / d65_response) / (1 / d65_response[1])
    np.testing.assert_allclose(b.wb.numpy(), expected, rtol=1e-5)


def test_no_white_balance_and_no_matrix_fall_back_with_warnings(tmp_path):
    path = write_dng(tmp_path / "a.dng", random_raw(0), neutral=None, cm1=None)
    with pytest.warns(UserWarning) as record:
        b = read_burst(path)
    messages = [str(w.message) for w in record]
    assert any("a.dng: no white balance in the file" in m for m in messages)
    assert any("a.dng: no usable colour matrix; using the identity" in m for m in messages)
    assert torch.equal(b.wb, torch.tensor(FALLBACK_WB))
    assert torch.equal(b.ccm, torch.eye(3))


def test_singular_matrix_falls_back_to_identity(tmp_path):
    path = write_dng(tmp_path / "a.dng", random_raw(0), cm1=np.ones((3, 3)))
    with pytest.warns(UserWarning, match="no usable colour matrix"):
        b = read_burst(path)
    assert torch.equal(b.ccm, torch.eye(3))


def test_no_noise_profile_means_estimated(tmp_path):
    b = read_burst(write_dng(tmp_path / "a.dng", random_raw(0), profile=None))
    assert b.noise is None


def test_malformed_noise_profile_warns_and_is_ignored(tmp_path):
    path = write_dng(tmp_path / "a.dng", random_raw(0), profile=(1e-3, -1e-5))
    with pytest.warns(UserWarning, match="ignoring malformed NoiseProfile"):
        assert read_burst(path).noise is None


def _subifd_dng(path: Path, raw: np.ndarray, ifd0_profile=None) -> Path:
    """A DNG laid out like a camera's: IFD0 a small preview with the colour tags, the raw
    CFA image (GRBG, black 100, white 4000, NoiseProfile) in a SubIFD. Written with tifffile."""
    colour = [(50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "Sub Cam", True),
              (50721, "2i", 9, tuple(np.ravel(_rational(CM_A))), True),
              (50778, "H", 1, D65, True),
              (50728, "2I", 3, tuple(np.ravel(_rational(NEUTRAL))), True)]
    if ifd0_profile is not None:
        colour.append((51041, "d", 2, ifd0_profile, True))
    cfa = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (1, 0, 2, 1), True),
           (50714, "H", 1, (100,), True), (50717, "H", 1, (4000,), True),
           (51041, "d", 2, (2e-3, 1e-4), True)]
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((8, 12, 3), np.uint8), photometric="rgb", subifds=1, subfiletype=1,
                 extratags=colour, metadata=None)
        tw.write(raw, photometric=32803, subfiletype=0, extratags=cfa, metadata=None)
    return path


def test_raw_in_a_subifd_and_its_noise_profile(tmp_path):
    raw = random_raw(3)
    b = read_burst(_subifd_dng(tmp_path / "a.dng", raw, ifd0_profile=(9e-3, 9e-4)))
    assert b.cfa == "GRBG"
    assert np.array_equal(b.raw[0].numpy(), normalised(raw, (100,), 4000))
    assert b.noise == NoiseLevel(shot=2e-3, read=1e-2)   # the raw IFD's profile wins
    assert b.meta["camera"] == "Sub Cam"
    np.testing.assert_allclose(b.ccm.numpy(), expected_ccm(CM_A), rtol=1e-5, atol=1e-6)


def test_active_area_phase_follows_the_visible_area(tmp_path):
    """ActiveArea starting on row 1: the pattern (RGGB at the active area's origin, DNG spec)
    must be reported for the first row LibRaw returns, wherever that is."""
    raw = random_raw(4, H + 3, W)
    frame = read_raw_frame(write_dng(tmp_path / "a.dng", raw, active_area=(1, 0, H + 3, W)))
    h = frame.data.shape[0]
    first = next(o for o in range(4) if np.array_equal(frame.data, raw[o : o + h]))
    assert first >= 1
    assert frame.cfa == ("RGGB" if (first - 1) % 2 == 0 else "GBRG")


# ------------------------------------------------------------------------------- geometry


def test_odd_size_is_padded_with_same_colour_and_cropped_back(tmp_path):
    raws = write_burst(tmp_path / "burst", n=2, size=(H - 1, W - 1), pattern="GRBG")
    b = read_burst(tmp_path / "burst")
    assert b.raw.shape == (2, H, W) and b.meta["size"] == [H - 1, W - 1]
    assert np.array_equal(b.raw[0, : H - 1, : W - 1].numpy(), normalised(raws[0]))
    assert torch.equal(b.raw[:, H - 1, :], b.raw[:, H - 3, :])   # same CFA colour
    assert torch.equal(b.raw[:, :, W - 1], b.raw[:, :, W - 3])
    rgb = torch.rand(3, H, W, generator=torch.Generator().manual_seed(0))
    write_image(rgb, tmp_path / "out.npy", burst=b)
    got = np.load(tmp_path / "out.npy")
    expected = render(rgb[:, : H - 1, : W - 1], b.wb, b.ccm).permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected)
    write_image(rgb, tmp_path / "lin.npy", space="linear", burst=b)
    assert np.load(tmp_path / "lin.npy").shape == (H - 1, W - 1, 3)


ORIENTED = {  # TIFF 6.0 Orientation applied to [[1, 2, 3], [4, 5, 6]], worked out by hand
    1: [[1, 2, 3], [4, 5, 6]],
    2: [[3, 2, 1], [6, 5, 4]],
    3: [[6, 5, 4], [3, 2, 1]],
    4: [[4, 5, 6], [1, 2, 3]],
    5: [[1, 4], [2, 5], [3, 6]],
    6: [[4, 1], [5, 2], [6, 3]],   # row 0 -> right-hand column, column 0 -> top row
    7: [[6, 3], [5, 2], [4, 1]],
    8: [[3, 6], [2, 5], [1, 4]],
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_image_hand_checked(orientation):
    img = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert orient_image(img, orientation).tolist() == ORIENTED[orientation]
    batched = orient_image(torch.stack([img, 10 * img])[None], orientation)   # (1, 2, H, W)
    assert batched[0, 1].tolist() == (10 * torch.tensor(ORIENTED[orientation])).tolist()


@pytest.mark.parametrize("bad", [0, 9, True, 2.0, "6"])
def test_orient_image_rejects_bad_orientation(bad):
    with pytest.raises(BurstFormatError, match="orientation must be an integer 1..8"):
        orient_image(torch.zeros(2, 2), bad)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_tag_is_honoured_in_outputs(tmp_path, orientation):
    write_burst(tmp_path / "b", n=1, orientation=orientation)
    b = read_burst(tmp_path / "b")
    assert b.meta["orientation"] == orientation
    rgb = torch.rand(3, H, W, generator=torch.Generator().manual_seed(1))
    write_image(rgb, tmp_path / "out.png", burst=b)
    got = np.asarray(Image.open(tmp_path / "out.png"))
    assert got.shape == ((H, W, 3) if orientation <= 4 else (W, H, 3))
    upright = orient_image(render(rgb, b.wb, b.ccm), orientation)
    assert np.array_equal(got, np.round(upright.permute(1, 2, 0).numpy().clip(0, 1) * 255))


def test_bad_meta_orientation_is_refused_before_writing(tmp_path):
    b = RawBurst(raw=torch.zeros(1, 4, 4), cfa="RGGB", wb=[2, 1, 2], ccm=torch.eye(3),
                 meta={"orientation": 12})
    with pytest.raises(BurstFormatError, match="out.png: burst meta orientation"):
        write_image(torch.zeros(3, 4, 4), tmp_path / "out.png", burst=b)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- reference


def _scene_frames(sharp: int, n: int, seed: int) -> torch.Tensor:
    """(n, 96, 128) noisy GBRG mosaics of one photo; frame ``sharp`` sharp, the others blurred
    (Gaussian, sigma 1 px) as by camera shake; the "high" test noise level on all."""
    from skimage import data, filters

    img = data.astronaut()[100:196, 150:278].astype(np.float64) / 255
    frames = [img if k == sharp else filters.gaussian(img, sigma=1.0, channel_axis=-1)
              for k in range(n)]
    clean = mosaic(torch.from_numpy(np.stack(frames) ** 2.2).permute(0, 3, 1, 2).float(), "GBRG")
    return add_noise(clean, 6.4e-3, 2e-2, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_reference_picks_the_sharp_middle_frame(seed):
    assert select_reference(_scene_frames(3, 5, seed), "GBRG") == 3
    assert select_reference(_scene_frames(0, 3, seed), "GBRG") == 0   # N <= 3: all frames
    # only the middle three compete: a sharp first frame of five is not taken
    assert select_reference(_scene_frames(0, 5, seed), "GBRG") in (1, 2, 3)


def test_sharpness_properties():
    x = _scene_frames(0, 2, 0)
    s = sharpness(x, "GBRG")
    assert s[0] > s[1] > 0
    assert torch.allclose(sharpness(0.5 * x, "GBRG"), 0.25 * s, rtol=1e-5)
    assert sharpness(torch.full((2, 8, 8), 0.3), "RGGB").tolist() == [0.0, 0.0]
    # ties go to the middle frame
    assert select_reference(torch.full((5, 8, 8), 0.3), "RGGB") == 2


def test_ref_option_on_raw_files_and_npz(tmp_path):
    folder = tmp_path / "b"
    write_burst(folder, n=4)
    assert read_burst(folder).ref == 2
    assert read_burst(folder, ref=0).ref == 0
    assert read_burst(folder, ref=-1).ref == 2
    with pytest.raises(BurstFormatError, match="ref 4 is out of range for 4 frames"):
        read_burst(folder, ref=4)
    with pytest.raises(BurstFormatError, match="ref must be a frame index or 'auto'"):
        read_burst(folder, ref="sharpest")
    b = read_burst(folder, ref="auto")
    assert b.ref == select_reference(b.raw, b.cfa)
    write_npz(b, tmp_path / "b.npz")
    assert read_burst(tmp_path / "b.npz").ref == b.ref
    assert read_burst(tmp_path / "b.npz", ref=3).ref == 3


def test_colour_metadata_come_from_the_reference_frame(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    for k, neutral in enumerate([(0.5, 1, 0.5), (0.4, 1, 0.8), (0.25, 1, 0.5)]):
        write_dng(folder / f"f{k}.dng", random_raw(k), neutral=neutral)
    assert read_burst(folder).wb.tolist() == pytest.approx([2.5, 1, 1.25])
    assert read_burst(folder, ref=2).wb.tolist() == pytest.approx([4, 1, 2])


# ------------------------------------------------------------------------------- bad input


def _truncated(d: Path) -> Path:
    path = write_dng(d / "cut.dng", random_raw(0))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _jpeg(d: Path) -> Path:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "photo.jpg")
    return d / "photo.jpg"


def _text(d: Path) -> Path:
    (d / "notes.dng").write_text("not a raw file\n" * 20)
    return d / "notes.dng"


def _mixed(name: str, **odd) -> callable:
    def make(d: Path) -> Path:
        folder = d / "burst"
        folder.mkdir()
        write_dng(folder / "a.dng", random_raw(0))
        tags = dict(odd)
        write_dng(folder / name, random_raw(1, *tags.pop("size", (H, W))), **tags)
        return folder

    return make


def _xtrans(d: Path) -> Path:
    """A 6x6 X-Trans layout: numpy2dng with CFARepeatPatternDim 6x6."""
    xtrans = "GGRGGB GGBGGR BRGRBG GGBGGR GGRGGB RBGBRG".replace(" ", "")
    t = DNGTags()
    for tag, value in [(Tag.ImageWidth, 96), (Tag.ImageLength, 66), (Tag.RowsPerStrip, 66),
                       (Tag.PhotometricInterpretation, 32803), (Tag.SamplesPerPixel, 1),
                       (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [6, 6]),
                       (Tag.CFAPattern, [CFA_CODES[c] for c in xtrans]),
                       (Tag.BlackLevel, [0]), (Tag.WhiteLevel, 4095)]:
        t.set(tag, value)
    return _save(t, random_raw(0, 66, 96), d / "xtrans.dng")


def _linear_dng(d: Path) -> Path:
    from burstjdd.raw.dng import write_linear_dng

    b = RawBurst(raw=torch.zeros(1, 32, 32), cfa="RGGB", wb=[2, 1, 1.5], ccm=torch.eye(3))
    write_linear_dng(torch.rand(3, 32, 32), d / "linear.dng", b)
    return d / "linear.dng"


def _empty_folder(d: Path) -> Path:
    (d / "empty").mkdir()
    return d / "empty"


def _jpeg_folder(d: Path) -> Path:
    (d / "jpegs").mkdir()
    _jpeg(d / "jpegs")
    return d / "jpegs"


# (id, maker of the bad input -> the path to give, name the message must hold, fragment)
BAD_INPUTS = [
    ("truncated", _truncated, "cut.dng", "not a readable raw file (LibRaw:"),
    ("jpeg", _jpeg, "photo.jpg", "Unsupported file format or not RAW file"),
    ("text", _text, "notes.dng", "not a readable raw file"),
    ("mixed-size", _mixed("b.dng", size=(H, W - 2)), "b.dng", "size 94x64"),
    ("mixed-pattern", _mixed("b.dng", pattern="BGGR"), "b.dng", "CFA pattern BGGR differs"),
    ("mixed-black", _mixed("b.dng", black=(60, 62, 64, 70)), "b.dng", "black levels"),
    ("mixed-white", _mixed("b.dng", white=4095), "b.dng", "white levels"),
    ("missing", lambda d: d / "gone.dng", "gone.dng", "no such file or directory"),
    ("empty-folder", _empty_folder, "empty", "no raw files in this folder"),
    ("jpeg-folder", _jpeg_folder, "jpegs", "no raw files in this folder"),
    ("xtrans", _xtrans, "xtrans.dng", "CFA pattern of size 6x6"),
    ("linear-dng", _linear_dng, "linear.dng", "not a Bayer mosaic"),
]


@pytest.mark.parametrize("make,name,fragment", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_file(tmp_path, capfd, make, name, fragment):
    path = make(tmp_path)
    with pytest.raises(BurstFormatError) as info:
        read_burst(path)
    msg = str(info.value)
    assert name in msg and fragment in msg and "\n" not in msg
    assert capfd.readouterr() == ("", "")   # LibRaw printed nothing on the terminal
    assert main(["info", str(path)]) == 2
    out, err = capfd.readouterr()         # file descriptors: C-level output counts too
    assert out == "" and err.count("\n") == 1 and name in err
    assert err.startswith("burstjdd info: error: ")


def test_missing_file_is_bad_input_and_a_file_not_found_error(tmp_path):
    with pytest.raises(InputNotFoundError) as info:
        read_burst([tmp_path / "gone.cr2"])
    assert isinstance(info.value, BurstFormatError) and isinstance(info.value, FileNotFoundError)


def test_folders_must_come_alone(tmp_path):
    write_burst(tmp_path / "b", n=1)
    with pytest.raises(BurstFormatError, match="give one folder on its own"):
        read_burst([tmp_path / "b", tmp_path / "b" / "frame0.dng"])


def test_a_good_file_reads_without_warnings(tmp_path):
    path = write_dng(tmp_path / "a.dng", random_raw(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_burst(path)


def test_a_file_this_user_cannot_read_says_permission_denied(tmp_path, monkeypatch, capfd):
    import burstjdd.raw.files as files

    path = write_dng(tmp_path / "locked.dng", random_raw(0))
    real_open = os.open

    def os_open(name, flags, *args, **kwargs):  # what a non-root user meets on a 0o000 file
        if Path(name) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", os_open)
    with pytest.raises(PermissionError, match=f"^{path}: permission denied"):
        read_burst(path)
    assert main(["info", str(path)]) == 2
    err = capfd.readouterr().err
    assert err == f"burstjdd info: error: {path}: permission denied (this user cannot read the " \
                  "file)\n"


def test_tiff_tags_tifffile_cannot_interpret_are_one_warning_each(tmp_path, capfd):
    path = write_dng(tmp_path / "a.dng", random_raw(0), orientation=9)  # 1..8 are valid
    with pytest.warns(UserWarning) as record:
        read_burst(path)
    assert [str(w.message) for w in record] == \
        [f"{path}: TIFF tag 274 ignored (9 is not a valid ORIENTATION)"]
    assert capfd.readouterr().err == ""  # tifffile's own log line is not printed
    assert main(["info", str(path)]) == 0
    err = capfd.readouterr().err
    assert err == f"burstjdd info: warning: {path}: TIFF tag 274 ignored (9 is not a valid " \
                  "ORIENTATION)\n"   # one line: no source line, no "UserWarning"
