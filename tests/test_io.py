"""raw/burst.py, npz.py, io.py, writers.py: RawBurst validation, .npz v1 bursts, atomic image
writers."""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from burstjdd.errors import BurstFormatError
from burstjdd.raw.burst import RawBurst
from burstjdd.raw.color import render
from burstjdd.raw.files import RefusedOutputError, atomic_output
from burstjdd.raw.io import check_output_apart, read_burst
from burstjdd.raw.noise import NoiseLevel, estimate_noise
from burstjdd.raw.npz import read_npz, write_npz
from burstjdd.raw.writers import render_srgb, write_image, write_npy, write_png, write_tiff

N, H, W = 3, 8, 12


def full_burst(seed: int = 0) -> RawBurst:
    """A burst with every optional field set (values not representable in fewer bits)."""
    g = torch.Generator().manual_seed(seed)
    return RawBurst(
        raw=torch.rand(N, H, W, generator=g),
        cfa="GRBG",
        wb=torch.tensor([2.1, 1.0, 1.7]),
        ccm=torch.eye(3) + 0.1 * torch.rand(3, 3, generator=g),
        noise=NoiseLevel(shot=2.5e-3, read=1e-2),
        ref=0,
        gt=torch.rand(3, H, W, generator=g),
        flow=40.0 * torch.randn(N, 2, H, W, generator=g),
        valid=torch.rand(N, H, W, generator=g) > 0.3,
        meta={"source": "test", "frames": [1, 2, 3], "scale": 0.1},
    )


def valid_arrays() -> dict[str, np.ndarray]:
    """The required keys of a minimal valid file, as plain NumPy arrays."""
    rng = np.random.default_rng(0)
    return {
        "raw": rng.random((N, H, W), dtype=np.float32),
        "cfa": np.array("RGGB"),
        "wb": np.array([2.0, 1.0, 1.5], dtype=np.float32),
        "ccm": np.eye(3, dtype=np.float32),
    }


def valid_kwargs() -> dict:
    """RawBurst arguments of a minimal valid burst."""
    return {**valid_arrays(), "cfa": "RGGB"}


def bits(t: torch.Tensor) -> np.ndarray:
    """The raw bit patterns of a float32 tensor (for bitwise comparison)."""
    return t.numpy().view(np.uint32)


# ------------------------------------------------------------------------------- RawBurst


def test_rawburst_converts_and_resolves_defaults():
    a = valid_arrays()
    b = RawBurst(
        raw=a["raw"].astype(np.float64), cfa="rggb", wb=[2, 1, 1], ccm=a["ccm"].tolist()
    )
    assert b.raw.dtype == b.wb.dtype == b.ccm.dtype == torch.float32
    assert torch.equal(b.raw, torch.from_numpy(a["raw"]))  # float32 -> float64 -> float32 exact
    assert b.cfa == "RGGB"
    assert b.ref == N // 2 == 1
    assert (b.n_frames, b.height, b.width) == (N, H, W)
    assert b.noise is None and b.gt is None and b.flow is None and b.valid is None
    assert b.meta == {}


def _bad_kwargs():
    a = valid_arrays()
    raw = a["raw"]
    nan_wb = np.array([1.0, float("nan"), 1.0])
    return [
        ("raw 2-D", {"raw": raw[0]}, "shape (N, H, W)"),
        ("raw int", {"raw": (raw * 1023).astype(np.uint16)}, "must be float in [0, 1]"),
        ("raw bool tensor", {"raw": torch.from_numpy(raw > 0.5)}, "must be float in [0, 1]"),
        ("raw odd", {"raw": raw[:, :, :11]}, "even"),
        ("raw empty", {"raw": raw[:0]}, "no frames"),
        ("raw > 1", {"raw": raw + 0.5}, "[0, 1]"),
        ("raw < 0", {"raw": raw - 0.5}, "[0, 1]"),
        ("cfa", {"cfa": "RGBG"}, "unknown CFA pattern"),
        ("cfa type", {"cfa": 3}, "cfa must be"),
        ("wb shape", {"wb": [1.0, 1.0]}, "wb must have shape (3,)"),
        ("wb zero", {"wb": [2.0, 0.0, 1.0]}, "positive"),
        ("wb nan", {"wb": nan_wb}, "NaN"),
        ("ccm shape", {"ccm": np.eye(4)}, "ccm must have shape (3, 3)"),
        ("ccm singular", {"ccm": np.ones((3, 3))}, "not invertible"),
        ("ccm nearly singular", {"ccm": np.diag([1.0, 1.0, 1e-9])}, "not invertible"),
        ("ccm strings", {"ccm": np.array([["a"] * 3] * 3)}, "ccm must be"),
        ("noise type", {"noise": (0.1, 0.2)}, "NoiseLevel"),
        ("ref high", {"ref": N}, "out of range"),
        ("ref -2", {"ref": -2}, "out of range"),
        ("ref float", {"ref": 1.0}, "ref must be an integer"),
        ("gt shape", {"gt": np.zeros((H, W, 3), np.float32)}, "gt must have shape (3, 8, 12)"),
        ("gt int", {"gt": np.zeros((3, H, W), np.uint8)}, "gt must be float"),
        ("gt nan", {"gt": np.full((3, H, W), np.nan, np.float32)}, "gt has NaN"),
        ("flow shape", {"flow": np.zeros((N, H, W, 2), np.float32)}, "flow must have shape"),
        ("valid dtype", {"valid": np.ones((N, H, W), np.uint8)}, "valid must be a bool mask"),
        ("valid shape", {"valid": torch.ones(N, H, W + 2, dtype=torch.bool)}, "valid must have"),
        ("meta type", {"meta": ["a"]}, "meta must be a dict"),
    ]


BAD_FIELDS = _bad_kwargs()


@pytest.mark.parametrize("override,fragment", [c[1:] for c in BAD_FIELDS],
                         ids=[c[0] for c in BAD_FIELDS])
def test_rawburst_rejects_bad_fields(override, fragment):
    kwargs = {**valid_kwargs(), **override}
    with pytest.raises(BurstFormatError) as info:
        RawBurst(**kwargs)
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg


def test_rawburst_accepts_boundary_values():
    a = valid_arrays()
    raw = a["raw"].copy()
    raw[0, 0, :2] = [0.0, 1.0]
    b = RawBurst(raw=raw, cfa="BGGR", wb=a["wb"], ccm=a["ccm"], ref=N - 1)
    assert b.ref == N - 1
    assert float(b.raw.min()) == 0.0 and float(b.raw.max()) == 1.0


def test_noise_level_stored_or_estimated():
    g = torch.Generator().manual_seed(1)
    clean = torch.linspace(0.1, 0.9, 64).repeat(64, 1).expand(2, 64, 64)
    raw = (clean + 0.02 * torch.randn(2, 64, 64, generator=g)).clamp(0, 1)
    a = valid_arrays()
    estimated = RawBurst(raw=raw, cfa="RGGB", wb=a["wb"], ccm=a["ccm"])
    assert estimated.noise_level() == estimate_noise(raw, "RGGB")
    stored = NoiseLevel(shot=0.0, read=0.5)
    with_noise = RawBurst(raw=raw, cfa="RGGB", wb=a["wb"], ccm=a["ccm"], noise=stored)
    assert with_noise.noise_level() is stored


# ------------------------------------------------------------------------------- .npz files


def test_npz_round_trip_is_bitwise_exact(tmp_path):
    b = full_burst()
    path = tmp_path / "burst.npz"
    write_npz(b, path)
    r = read_npz(path)
    for name in ("raw", "wb", "ccm", "gt", "flow"):
        x, y = getattr(b, name), getattr(r, name)
        assert y.dtype == torch.float32 and y.shape == x.shape
        assert np.array_equal(bits(x), bits(y)), name
    assert r.valid.dtype == torch.bool and torch.equal(r.valid, b.valid)
    assert r.noise == NoiseLevel(shot=2.5e-3, read=1e-2)  # Python floats, bit for bit
    assert (r.cfa, r.ref, r.meta) == ("GRBG", 0, b.meta)
    # read_burst takes a path or a one-element list of one
    assert torch.equal(read_burst(str(path)).raw, b.raw)
    assert torch.equal(read_burst([path]).raw, b.raw)


def test_npz_file_layout_follows_the_contract(tmp_path):
    b = full_burst()
    path = tmp_path / "burst.npz"
    write_npz(b, path, compress=True)
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == {"version", "raw", "cfa", "wb", "ccm", "noise", "ref", "gt",
                                "flow", "valid", "meta"}
        assert int(f["version"]) == 1
        assert str(f["cfa"]) == "GRBG"
        assert f["gt"].shape == (H, W, 3) and f["gt"].dtype == np.float32
        assert np.array_equal(f["gt"], b.gt.permute(1, 2, 0).numpy())
        assert f["raw"].dtype == np.float32 and f["valid"].dtype == np.bool_
        assert list(f["noise"]) == [2.5e-3, 1e-2]


def test_minimal_burst_round_trip_writes_only_set_fields(tmp_path):
    path = tmp_path / "min.npz"
    write_npz(RawBurst(**valid_kwargs()), path)
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == {"version", "raw", "cfa", "wb", "ccm", "ref"}
    r = read_npz(path)
    assert r.noise is None and r.gt is None and r.flow is None and r.valid is None
    assert r.meta == {} and r.ref == N // 2


def test_reads_a_plain_numpy_file_without_optional_keys(tmp_path):
    """A file written by other tools: float64 raw, no version, noise as float32."""
    a = valid_arrays()
    a["raw"] = a["raw"].astype(np.float64)
    a["noise"] = np.array([1e-3, 2e-2], dtype=np.float32)
    a["ref"] = np.array(2)
    a["gt"] = np.arange(H * W * 3, dtype=np.float32).reshape(H, W, 3) / 1000
    path = tmp_path / "plain.npz"
    np.savez(path, **a)
    b = read_burst(path)
    assert b.raw.dtype == torch.float32
    assert torch.equal(b.raw, torch.from_numpy(a["raw"].astype(np.float32)))
    assert b.ref == 2
    assert b.noise == NoiseLevel(float(np.float32(1e-3)), float(np.float32(2e-2)))
    assert b.gt.shape == (3, H, W)
    assert float(b.gt[2, 1, 0]) == pytest.approx((1 * W * 3 + 0 * 3 + 2) / 1000)


def test_write_npz_rejects_other_suffix_and_unserialisable_meta(tmp_path):
    b = full_burst()
    with pytest.raises(BurstFormatError, match="must end in .npz"):
        write_npz(b, tmp_path / "burst.npy")
    bad = RawBurst(**valid_kwargs(), meta={"path": Path("x")})
    with pytest.raises(BurstFormatError, match="not JSON-serialisable"):
        write_npz(bad, tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []


def _savez(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _with(**changes):
    """A writer of a file with some keys of the valid arrays changed (None deletes a key)."""

    def write(path: Path) -> None:
        a = valid_arrays()
        for key, value in changes.items():
            if value is None:
                del a[key]
            else:
                a[key] = value(a) if callable(value) else value
        _savez(path, a)

    return write


def _truncated(path: Path) -> None:
    _savez(path, valid_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _object_array(path: Path) -> None:
    a = valid_arrays()
    a["raw"] = np.array([{"evil": 1}, None], dtype=object)
    _savez(path, a)


def _set(a: dict, key: str, index: tuple, value: float) -> np.ndarray:
    x = a[key].copy()
    x[index] = value
    return x


# (id, writer of the bad file, fragment of the message)
MALFORMED = [
    ("missing-key", _with(wb=None), "missing required key(s) wb"),
    ("raw-2d", _with(raw=lambda a: a["raw"][0]), "shape (N, H, W)"),
    ("raw-4d", _with(raw=lambda a: a["raw"][None]), "shape (N, H, W)"),
    ("odd-size", _with(raw=lambda a: a["raw"][:, :7]), "even"),
    ("nan", _with(raw=lambda a: _set(a, "raw", (1, 2, 3), np.nan)), "NaN"),
    ("inf", _with(raw=lambda a: _set(a, "raw", (0, 0, 0), np.inf)), "NaN or inf"),
    ("out-of-range", _with(raw=lambda a: a["raw"] * 2 - 0.5), "[0, 1]"),
    ("unknown-pattern", _with(cfa=np.array("RGBX")), "unknown CFA pattern"),
    ("singular-ccm", _with(ccm=np.ones((3, 3), np.float32)), "not invertible"),
    ("int-raw", _with(raw=lambda a: (a["raw"] * 4095).astype(np.uint16)), "float in [0, 1]"),
    ("string-raw", _with(raw=np.array(["a", "b"])), "float in [0, 1]"),
    ("zero-frames", _with(raw=lambda a: a["raw"][:0]), "no frames"),
    ("truncated", _truncated, "damaged .npz file"),
    ("not-a-zip", lambda p: p.write_text("hello\n"), "not an .npz file"),
    ("empty-file", lambda p: p.write_bytes(b""), "not an .npz file"),
    ("npy-file", lambda p: np.save(open(p, "wb"), np.zeros(3)), "single .npy array"),
    ("object-array", _object_array, "cannot read 'raw'"),
    ("unknown-key", _with(extra=np.zeros(1)), "unknown key(s) extra"),
    ("version-2", _with(version=np.array(2)), "unsupported burst file version 2"),
    ("cfa-number", _with(cfa=np.array(3)), "'cfa' must be"),
    ("gt-layout", _with(gt=np.zeros((3, H, W), np.float32)), "'gt' must have shape (H, W, 3)"),
    ("noise-nan", _with(noise=np.array([np.nan, 0.1])), "noise shot must be finite"),
    ("bad-meta", _with(meta=np.array("{not json")), "'meta': not valid JSON"),
    ("ref-range", _with(ref=np.array(7)), "out of range"),
]


def write_malformed(case_id: str, directory: Path) -> Path:
    """Write the malformed file of ``case_id`` into ``directory``; return its path."""
    writer = {c[0]: c[1] for c in MALFORMED}[case_id]
    path = directory / f"bad-{case_id}.npz"
    writer(path)
    return path


@pytest.mark.parametrize("case_id,fragment", [(c[0], c[2]) for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])
def test_malformed_file_raises_one_line_error_naming_file(tmp_path, case_id, fragment):
    path = write_malformed(case_id, tmp_path)
    with pytest.raises(BurstFormatError) as info:
        read_burst(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert fragment in msg
    assert "\n" not in msg


def test_missing_file_is_an_os_error_naming_it(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        read_burst(path)
    with pytest.raises(FileNotFoundError, match="nope.dng"):
        read_burst(tmp_path / "nope.dng")


def test_npz_must_come_alone_and_input_must_not_be_empty(tmp_path):
    npz = tmp_path / "b.npz"
    npz.write_bytes(b"")
    with pytest.raises(BurstFormatError, match="one .npz burst on its own"):
        read_burst([npz, npz])
    with pytest.raises(BurstFormatError, match="no input"):
        read_burst([])


# ------------------------------------------------------------------------------- writers

# One row of hand-checked values: clipping at both ends, exact levels, a tie (0.5) rounded
# half to even, and 1/3.
VALUES = [0.0, 1.0, 1.5, -0.25, 0.2, 0.6, 0.5, 1 / 3]
EXPECTED_8 = [0, 255, 255, 0, 51, 153, 128, 85]
EXPECTED_16 = [0, 65535, 65535, 0, 13107, 39321, 32768, 21845]


def value_image() -> torch.Tensor:
    """(3, 1, 8): R = VALUES, G = VALUES reversed, B = 0.5."""
    v = torch.tensor(VALUES)
    return torch.stack([v, v.flip(0), torch.full_like(v, 0.5)])[:, None, :]


def test_png_is_8bit_rounded_and_clipped(tmp_path):
    path = tmp_path / "x.png"
    write_png(value_image(), path)
    with Image.open(path) as im:
        assert im.mode == "RGB"
        got = np.asarray(im)
    assert got.shape == (1, 8, 3) and got.dtype == np.uint8
    assert got[0, :, 0].tolist() == EXPECTED_8
    assert got[0, :, 1].tolist() == EXPECTED_8[::-1]
    assert got[0, :, 2].tolist() == [128] * 8


def test_tiff_is_16bit_srgb_or_exact_float(tmp_path):
    path = tmp_path / "x.tif"
    write_tiff(value_image(), path)
    got = tifffile.imread(path)
    assert got.shape == (1, 8, 3) and got.dtype == np.uint16
    assert got[0, :, 0].tolist() == EXPECTED_16
    assert got[0, :, 1].tolist() == EXPECTED_16[::-1]

    img = value_image().numpy()  # values outside [0, 1] must survive in linear float
    write_tiff(img, tmp_path / "x.tiff", linear=True)
    got = tifffile.imread(tmp_path / "x.tiff")
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), img.transpose(1, 2, 0).view(np.uint32))


def test_npy_is_exact_float32_hwc(tmp_path):
    img = torch.randn(3, 5, 4, dtype=torch.float64)
    write_npy(img, tmp_path / "x.npy")
    got = np.load(tmp_path / "x.npy", allow_pickle=False)
    assert got.dtype == np.float32 and got.shape == (5, 4, 3)
    assert np.array_equal(got, img.float().permute(1, 2, 0).numpy())


def test_render_srgb_hand_checked():
    b = RawBurst(**{**valid_kwargs(), "wb": [2.0, 1.0, 1.0]})
    rgb = torch.full((3, 2, 2), 0.25)
    srgb = render_srgb(rgb, b)
    assert srgb[0].flatten().tolist() == pytest.approx([0.5 ** (1 / 2.2)] * 4, abs=1e-6)
    assert srgb[1:].flatten().tolist() == pytest.approx([0.25 ** (1 / 2.2)] * 8, abs=1e-6)
    full = full_burst()
    rgb = torch.rand(2, 3, 4, 4, dtype=torch.float64)  # batched, float64 follows the input
    out = render_srgb(rgb, full)
    assert out.dtype == torch.float64
    assert torch.equal(out, render(rgb, full.wb.double(), full.ccm.double()))


def test_write_image_renders_linear_camera_rgb(tmp_path):
    b = full_burst()
    rgb = 0.6 * torch.rand(3, H, W, generator=torch.Generator().manual_seed(3))
    srgb = render(rgb, b.wb, b.ccm)
    write_image(rgb, tmp_path / "s.npy", burst=b)
    assert np.array_equal(np.load(tmp_path / "s.npy"), srgb.permute(1, 2, 0).numpy())
    write_image(rgb, tmp_path / "s.png", space="srgb", burst=b)
    expected = np.round(srgb.permute(1, 2, 0).numpy().clip(0, 1) * 255)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png")), expected)
    write_image(rgb, tmp_path / "s.TIF", burst=b)
    assert tifffile.imread(tmp_path / "s.TIF").dtype == np.uint16
    # linear: written as it is, no burst needed
    write_image(rgb, tmp_path / "l.tiff", space="linear")
    assert np.array_equal(tifffile.imread(tmp_path / "l.tiff"), rgb.permute(1, 2, 0).numpy())
    write_image(rgb.numpy(), tmp_path / "l.npy", space="linear")
    assert np.array_equal(np.load(tmp_path / "l.npy"), rgb.permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    "name,kwargs,fragment",
    [
        ("x.png", {"space": "linear"}, "PNG is 8-bit sRGB only"),
        ("x.png", {}, "needs the burst's wb and ccm"),
        ("x.dng", {"space": "linear"}, ".dng output needs the burst"),
        ("x.jpg", {}, "use .png, .tif, .tiff, .npy"),
        ("x", {}, "unsupported output extension"),
        ("x.npy", {"space": "sRGB"}, "space must be 'srgb' or 'linear'"),
    ],
)
def test_write_image_rejects_bad_requests(tmp_path, name, kwargs, fragment):
    with pytest.raises(BurstFormatError) as info:
        write_image(torch.rand(3, 4, 4), tmp_path / name, **kwargs)
    assert fragment in str(info.value) and name in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(4, 4, 3), (1, 4, 4), (3, 4), (2, 3, 4, 4)])
def test_writers_reject_non_chw_images(tmp_path, shape):
    with pytest.raises(BurstFormatError, match=r"image must have shape \(3, H, W\)"):
        write_npy(torch.rand(shape), tmp_path / "x.npy")


def test_writers_reject_integer_images(tmp_path):
    """An 8-bit image has no [0, 1] scale: writing 255 as 1.0 after clipping would hide a bug."""
    with pytest.raises(BurstFormatError, match="image must be a float"):
        write_png(np.full((3, 2, 2), 255, np.uint8), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- atomicity


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_atomic_output_moves_temp_into_place(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with atomic_output(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path and tmp.exists()
        tmp.write_bytes(b"new")
        assert path.read_bytes() == b"old"  # nothing visible before success
    assert _listing(tmp_path) == {"out.bin": b"new"}


def test_atomic_output_file_mode_follows_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_npy(torch.zeros(3, 2, 2), tmp_path / "x.npy")
    assert (tmp_path / "x.npy").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_output_cleans_up_on_any_failure(tmp_path, exc):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_output(path) as tmp:
            tmp.write_bytes(b"half")
            raise exc
    assert _listing(tmp_path) == {"out.bin": b"old"}


def test_atomic_output_needs_an_existing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="output directory does not exist"):
        with atomic_output(tmp_path / "missing" / "x.png"):
            pass
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with atomic_output(tmp_path):
            pass


@pytest.mark.parametrize(
    "write", [write_png, write_tiff, write_npy, lambda img, p: write_tiff(img, p, linear=True)],
    ids=["png", "tiff", "npy", "tiff-linear"],
)
def test_nan_image_leaves_existing_output_untouched(tmp_path, write):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    img = torch.rand(3, 4, 4)
    img[1, 2, 3] = math.nan
    with pytest.raises(BurstFormatError, match="NaN or inf") as info:
        write(img, path)
    assert str(path) in str(info.value)
    assert _listing(tmp_path) == {"out.png": b"old"}


def test_failing_encoder_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="encoder exploded"):
        write_png(torch.rand(3, 4, 4), tmp_path / "new.png")
    (tmp_path / "old.png").write_bytes(b"old")
    with pytest.raises(OSError, match="encoder exploded"):
        write_png(torch.rand(3, 4, 4), tmp_path / "old.png")
    assert _listing(tmp_path) == {"old.png": b"old"}


def test_failing_npz_write_leaves_previous_burst(tmp_path, monkeypatch):
    path = tmp_path / "b.npz"
    write_npz(full_burst(0), path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise MemoryError

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(MemoryError):
        write_npz(full_burst(1), path)
    assert _listing(tmp_path) == {"b.npz": before}


@pytest.mark.parametrize("inputs, got", [
    (123, "got int"), (None, "got NoneType"), (b"x.npz", "got bytes"),
    ([1, 2], "got a list holding int"), (np.zeros(3), "got ndarray"),
])
def test_read_burst_says_what_it_expects(inputs, got):
    with pytest.raises(TypeError, match=f"a list of paths, {got}"):
        read_burst(inputs)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("name", ["fifo.npz", "fifo.dng"])
def test_special_files_are_refused_at_once(tmp_path, name):
    import signal

    class Hung(BaseException):
        pass

    def ring(signum, frame):
        raise Hung(f"reading {name} blocked")

    os.mkfifo(tmp_path / name)  # nobody writes to it: an open() for reading would block
    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(10)
    try:
        with pytest.raises(BurstFormatError, match="named pipe"):
            read_burst(tmp_path / name)
        with pytest.raises(BurstFormatError, match="named pipe"):
            (read_npz if name.endswith(".npz") else read_burst)(tmp_path / name)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if os.path.exists("/dev/zero"):
        with pytest.raises(BurstFormatError, match="character device"):
            read_burst("/dev/zero")


# ------------------------------------------------------------------------- outputs and bounds


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_atomic_output_never_replaces_a_special_file(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(RefusedOutputError, match="named pipe"):
        write_png(torch.rand(3, 4, 4), tmp_path / "x.png")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "x.png").st_mode)
    assert os.listdir(tmp_path) == ["x.png"]  # no temporary file either


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_atomic_output_refuses_dev_null_before_touching_dev():
    with pytest.raises(RefusedOutputError, match="character device"):
        with atomic_output("/dev/null"):
            raise AssertionError("the block must not run")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("exc", [OSError("49152 requested and 16352 written"),
                                 OSError(errno.ENOSPC, "No space left on device")],
                         ids=["numpy-short-write", "enospc"])
def test_full_disk_names_the_output_and_leaves_nothing(tmp_path, monkeypatch, exc):
    import burstjdd.raw.files as files

    def save(f, array, allow_pickle=False):
        f.write(b"\x93NUMPY partial")
        raise exc

    full = type("Usage", (), {"free": 0, "total": 1, "used": 1})()
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: full)
    monkeypatch.setattr(np, "save", save)
    with pytest.raises(OSError) as info:
        write_npy(torch.rand(3, 4, 4), tmp_path / "x.npy")
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"cannot write {tmp_path / 'x.npy'}: no space left on device")
    assert os.listdir(tmp_path) == []


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def save(f, array, allow_pickle=False):
        raise OSError("encoder exploded")

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(OSError, match="^encoder exploded$"):  # the disk has room
        write_npy(torch.rand(3, 4, 4), tmp_path / "x.npy")


def test_output_apart_from_inputs(tmp_path):
    write_npz(full_burst(0), tmp_path / "b.npz")
    os.link(tmp_path / "b.npz", tmp_path / "same.npy")
    (tmp_path / "raws").mkdir()
    (tmp_path / "raws" / "a.dng").write_bytes(b"raw")
    refused = [
        (tmp_path / "same.npy", tmp_path / "b.npz", "is the input"),
        (tmp_path / "raws" / ".." / "raws" / "a.dng", [tmp_path / "raws" / "a.dng"], "replace"),
        (tmp_path / "raws" / "a.dng", tmp_path / "raws", "input folder"),
        (tmp_path / "raws" / "new.DNG", tmp_path / "raws", "input folder"),
    ]
    for output, inputs, words in refused:
        with pytest.raises(RefusedOutputError, match=words):
            check_output_apart(output, inputs)
    for output, inputs in [(tmp_path / "x.png", tmp_path / "b.npz"),
                           (tmp_path / "raws" / "x.png", tmp_path / "raws"),
                           (tmp_path / "raws" / ".hidden.dng", tmp_path / "raws")]:
        check_output_apart(output, inputs)  # allowed


def _zip_of(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npz_declared_sizes_are_checked_before_anything_is_allocated(tmp_path, monkeypatch):
    import burstjdd.raw.npz as npz_module

    write_npz(full_burst(0), tmp_path / "b.npz")
    entries = {f"{k}.npy": _npy(v) for k, v in np.load(tmp_path / "b.npz").items()}
    header = _npy(np.zeros((N, H, W), np.float32))[:128]  # the 128-byte header of raw
    forged = header.replace(f"({N}, {H}, {W})".encode(), f"({N}, {H}, 99999999)".encode())
    forged = forged[:len(header) - 1].ljust(len(header) - 1) + b"\n"
    entries_forged = {**entries, "raw.npy": forged + bytes(4 * N * H * W)}
    with pytest.raises(BurstFormatError, match="declares shape .3, 8, 99999999. of float32"):
        read_npz(_zip_of(tmp_path / "forged.npz", entries_forged))
    with pytest.raises(BurstFormatError, match="not a .npy array"):
        read_npz(_zip_of(tmp_path / "extra.npz", {**entries, "notes.txt": b"x"}))
    # a consistent file, deflated, that needs more memory than there is
    monkeypatch.setattr(npz_module, "available_memory", lambda: 1000)
    with pytest.raises(BurstFormatError, match="more than the 0.0 GiB of memory available"):
        read_npz(_zip_of(tmp_path / "big.npz", entries, zipfile.ZIP_DEFLATED))
    monkeypatch.setattr(npz_module, "available_memory", lambda: None)  # unknown: not checked
    assert read_npz(tmp_path / "big.npz").n_frames == N


def test_writers_say_what_burst_they_need():
    rgb = torch.rand(3, 4, 4)
    with pytest.raises(TypeError, match="write_image: burst must be a RawBurst or None"):
        write_image(rgb, "x.png", burst="x")
    with pytest.raises(TypeError, match="render_srgb: burst must be a RawBurst .*got NoneType"):
        render_srgb(rgb, None)
    with pytest.raises(TypeError, match="write_npz: burst must be a RawBurst .*got str"):
        write_npz("x", "x.npz")


def test_writers_say_what_path_and_image_they_need():
    rgb, burst = torch.rand(3, 4, 4), full_burst(0)
    for path in (None, ["x.png"], 3):
        with pytest.raises(TypeError, match="write_image: path must be the output file .str or "
                                            f"os.PathLike., got {type(path).__name__}"):
            write_image(rgb, path, burst=burst)
    with pytest.raises(TypeError, match="write_png: path must be the output file"):
        write_png(rgb, None)
    for image in ("x", None):
        with pytest.raises(TypeError, match=r"render_srgb: rgb must be a linear camera RGB "
                                            rf"tensor or array \(\.\.\., 3, H, W\), got "
                                            f"{type(image).__name__}"):
            render_srgb(image, burst)


def test_outputs_in_a_read_only_folder_name_the_output_not_the_temporary_file(tmp_path,
                                                                             monkeypatch):
    import burstjdd.raw.files as files

    def read_only(path, flags, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(files.os, "open", read_only)
    with pytest.raises(OSError) as info:
        write_npy(torch.rand(3, 4, 4), tmp_path / "x.npy")
    assert str(info.value) == f"{tmp_path / 'x.npy'}: cannot write to {tmp_path} (Read-only " \
                              "file system)" and info.value.errno == errno.EROFS


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_a_symbolic_link_loop_is_named_as_one_for_inputs_and_outputs(tmp_path):
    loop, out = tmp_path / "loop.dng", tmp_path / "loop.npy"
    loop.symlink_to(loop.name)
    out.symlink_to(out.name)
    with pytest.raises(BurstFormatError, match="loop.dng: is a symbolic link loop"):
        read_burst(loop)
    check_output_apart(tmp_path / "x.png", [loop, tmp_path / "b.dng"])  # no RuntimeError
    check_output_apart(out, [tmp_path / "b.dng"])
    with pytest.raises(RefusedOutputError, match="loop.npy: is a symbolic link loop"):
        write_image(torch.rand(3, 4, 4), out, space="linear")
    assert out.is_symlink() and sorted(os.listdir(tmp_path)) == ["loop.dng", "loop.npy"]
