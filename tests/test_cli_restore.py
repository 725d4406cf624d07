"""``burstjdd restore`` and ``burstjdd demo`` end to end (tiny random weights, small bursts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy2dng.core import RAW2DNG
from numpy2dng.dng import DNGTags, Tag
from PIL import Image

from burstjdd.cli import main
from burstjdd.cli.demo import GAP, LABEL_HEIGHT
from burstjdd.models import hub
from burstjdd.models.jddb import build_model
from burstjdd.raw.io import read_burst
from burstjdd.raw.noise import NoiseLevel
from burstjdd.raw.npz import write_npz
from burstjdd.restore import Restorer
from burstjdd.synth.burst import simulate_burst

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    model = build_model("compact", nf=8, deformable_groups=2, extract_blocks=1, dsnet_width=4,
                        seed=0)
    return hub.save_pretrained(model, tmp_path_factory.mktemp("w") / "tiny")


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(3, 24, 32, generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    burst = simulate_burst(photo, n_frames=3, max_shift=8, n_objects=0, crop=(48, 64), seed=1,
                           cfa="GBRG")
    path = tmp_path_factory.mktemp("b") / "burst.npz"
    write_npz(burst, path)
    return path


def write_dng(path: Path, raw: np.ndarray, orientation: int = 1) -> Path:
    """An RGGB CFA DNG (uint16 raw (H, W), black 64, white 4000, NoiseProfile Var = 1e-4·x +
    1e-5) with numpy2dng."""
    h, w = raw.shape
    t = DNGTags()
    for tag, value in ((Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.RowsPerStrip, h),
                       (Tag.PhotometricInterpretation, 32803), (Tag.SamplesPerPixel, 1),
                       (Tag.BitsPerSample, 16), (Tag.Orientation, orientation),
                       (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, [0, 1, 1, 2]),
                       (Tag.BlackLevel, [64]), (Tag.WhiteLevel, 4000),
                       (Tag.UniqueCameraModel, "Test Cam"),
                       (Tag.AsShotNeutral, [[5000, 10000], [10000, 10000], [6250, 10000]]),
                       (Tag.ColorMatrix1, [[v, 10000] for v in (10234, -2969, -2266, -5625,
                                                                16328, -469, -703, 2188, 6406)]),
                       (Tag.CalibrationIlluminant1, 21), (Tag.NoiseProfile, [1e-4, 1e-5])):
        t.set(tag, value)
    writer = RAW2DNG()
    writer.options(t, path="")
    path.write_bytes(bytes(writer.convert(np.ascontiguousarray(raw, dtype=np.uint16))))
    return path


def dng_burst(folder: Path, n: int = 3, size: tuple[int, int] = (40, 56), **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[: size[0], : size[1]]
    base = 300 + 20 * rows + 10 * cols + 800 * ((rows // 8 + cols // 8) % 2)  # smooth + edges
    for k in range(n):
        noisy = base + rng.integers(-40, 40, size)
        write_dng(folder / f"frame{k}.dng", noisy, **kwargs)
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------- restore


def test_restore_npz_to_png(tmp_path, capsys, weights, npz):
    out = tmp_path / "out.png"
    code, stdout, _ = run(capsys, "restore", npz, "-o", out, "--model", weights, "--quiet")
    assert code == 0 and out.is_file()
    assert Image.open(out).size == (64, 48)
    assert str(out) in stdout and "64x48" in stdout


def test_restore_linear_output_is_the_library_result(tmp_path, capsys, weights, npz):
    out = tmp_path / "out.npy"
    code, _, _ = run(capsys, "restore", npz, "-o", out, "--model", weights, "--space", "linear",
                     "--tile", "64", "--search-radius", "16", "--ref", "1", "--noise",
                     "1e-3,1e-2", "--device", "cpu", "--quiet")
    assert code == 0
    restorer = Restorer.from_pretrained(weights, device="cpu", tile=64, search_radius=16)
    burst = dataclasses.replace(read_burst(npz, ref=1), noise=NoiseLevel(1e-3, 1e-2))
    expected = restorer.restore(burst, progress=False).permute(1, 2, 0).numpy()
    assert np.array_equal(np.load(out), expected)


def test_restore_dng_folder_odd_size_and_orientation(tmp_path, capsys, weights):
    # 41 x 57 visible pixels (odd: padded to even by the reader, cropped back here),
    # Orientation 6 (rotate 90° clockwise): the written image is 41 wide and 57 high.
    folder = dng_burst(tmp_path / "burst", size=(41, 57), orientation=6)
    out = tmp_path / "out.npy"
    code, stdout, err = run(capsys, "restore", folder, "-o", out, "--model", weights,
                            "--space", "linear", "--quiet")
    assert code == 0, err
    assert np.load(out).shape == (57, 41, 3)
    assert Restorer.from_pretrained(weights, device="cpu").restore(
        read_burst(folder), progress=False).shape == (3, 41, 57)


def _jpeg(path: Path) -> Path:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    return path


def _truncated_dng(path: Path) -> Path:
    write_dng(path, np.full((40, 56), 1000))
    path.write_bytes(path.read_bytes()[:300])
    return path


def _corrupt_npz(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04junk")   # a zip signature, then garbage
    return path


BAD_INPUTS = {
    "corrupt dng": lambda d: [_truncated_dng(d / "bad.dng")],
    "corrupt npz": lambda d: [_corrupt_npz(d / "bad.npz")],
    "jpeg": lambda d: [_jpeg(d / "bad.jpg")],
    "mixed sizes": lambda d: [write_dng(d / "a.dng", np.full((40, 56), 900)),
                              write_dng(d / "bad.dng", np.full((40, 64), 900))],
    "missing file": lambda d: [d / "bad.dng"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_with_one_line_naming_the_file(tmp_path, capsys, weights, case):
    inputs = BAD_INPUTS[case](tmp_path)
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, "restore", *inputs, "-o", out, "--model", weights, "--quiet")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "bad." in err, err
    assert not out.exists() and not list(tmp_path.glob(".out.png*"))


def test_a_missing_output_folder_is_created(tmp_path, capsys, weights, npz):
    code, stdout, _ = run(capsys, "restore", npz, "-o", tmp_path / "new" / "sub" / "out.png",
                          "--model", weights, "--quiet")
    assert code == 0 and (tmp_path / "new" / "sub" / "out.png").is_file(), stdout


@pytest.mark.parametrize("output", ["file.txt/out.png", "out.jpg", "dir"])
def test_bad_output_fails_before_any_work(tmp_path, capsys, weights, npz, output):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    code, _, err = run(capsys, "restore", npz, "-o", tmp_path / output, "--model", weights)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and output.split("/")[-1] in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.txt"]


def test_png_needs_srgb_and_restore_works_without_shipped_weights(tmp_path, capsys, weights, npz, monkeypatch):
    code, _, err = run(capsys, "restore", npz, "-o", tmp_path / "o.png", "--space", "linear",
                       "--model", weights)
    assert code == 2 and "o.png" in err and "PNG" in err
    assert not (tmp_path / "o.png").exists()
    # no learned weights shipped: restore still works, with the classical pipeline
    monkeypatch.setattr(hub, "shipped_weights", lambda: [])
    code, out, _ = run(capsys, "restore", npz, "-o", tmp_path / "o.png")
    assert code == 0 and (tmp_path / "o.png").is_file() and "classical" in out


# ------------------------------------------------------------------------------- demo


def _db(line: str) -> float:
    return float(line.split("PSNR")[1].split("dB")[0])


def test_demo_writes_a_labelled_comparison(tmp_path, capsys, weights):
    out = tmp_path / "demo"
    code, stdout, _ = run(capsys, "demo", "-o", out, "--model", weights, "--size", "64")
    assert code == 0
    assert Image.open(out / "demo.png").size == (5 * 64 + 4 * GAP, 64 + LABEL_HEIGHT)
    # the file says which model made it, and that it was a learned one
    assert Image.open(out / "restored-tiny.png").size == (64, 64)
    for name in ("noisy reference", "unaligned mean", "best classical", "ours: "):
        line = next(line for line in stdout.splitlines() if name in line and "PSNR" in line)
        assert _db(line) > 0
    assert "(learned)" in stdout


def test_demo_without_learned_weights_shows_the_classical_pipeline(tmp_path, capsys,
                                                                    monkeypatch):
    """No weights shipped and no --model: the demo still runs (no data, no download), says so,
    and labels the restored panel and file as classical, never as learned."""
    monkeypatch.setattr(hub, "shipped_weights", lambda: [])
    out = tmp_path / "demo"
    code, stdout, _ = run(capsys, "demo", "-o", out, "--size", "64")
    assert code == 0
    assert "no learned weights" in stdout and "(learned)" not in stdout
    ours = next(line for line in stdout.splitlines() if "ours: classical" in line and "PSNR" in line)
    noisy = next(line for line in stdout.splitlines() if "noisy reference" in line)
    assert _db(ours) > _db(noisy) + 1  # measured +1.97 dB on this 64 px burst
    assert Image.open(out / "demo.png").size == (5 * 64 + 4 * GAP, 64 + LABEL_HEIGHT)
    assert (out / "restored-classical.png").is_file()


def test_demo_refuses_a_size_that_cannot_fit_before_allocating(tmp_path, capsys):
    code, _, err = run(capsys, "demo", "-o", tmp_path / "demo", "--size", "1000000")
    assert code == 2 and "GiB" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()


def test_demo_with_a_missing_model_fails_with_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "demo", "-o", tmp_path / "demo", "--model", tmp_path / "nope",
                       "--size", "64")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()
