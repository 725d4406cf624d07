"""Reading bursts and writing images.

* :class:`RawBurst`: a validated burst in memory (Bayer mosaics plus the metadata needed to
  render them), built from tensors or NumPy arrays.
* ``.npz`` burst files, version 1 (ARCHITECTURE.md "Burst file (.npz), version 1"), read with
  :func:`read_npz` / :func:`read_burst` and written with :func:`write_npz`. Files are loaded
  with ``allow_pickle=False`` only; ``meta`` is stored as a JSON string.
* Raw camera files (DNG and whatever LibRaw reads), a folder of them or a list, read with
  :func:`read_burst` / :func:`read_raw_files` through rawpy (DNG tags through tifffile); the
  reference frame can be chosen by sharpness (:func:`select_reference`).
* Image writers (``.png`` 8-bit sRGB, ``.tif``/``.tiff`` 16-bit sRGB or float32 linear, ``.npy``
  float32 (H, W, 3), ``.dng`` linear, :mod:`burstjdd.raw.dng`); every file is written through
  :func:`atomic_output`, so a failed write leaves neither a partial file nor a temporary one,
  and never clobbers an existing output. :func:`write_image` crops the padding of odd-sized
  raw files and turns the image upright with the burst's orientation.

Every problem with the input raises :class:`~burstjdd.errors.BurstFormatError` whose message
is one line naming the file (when there is one) and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
import stat
import sys
import tempfile
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import BurstFormatError
from burstjdd.raw.cfa import PATTERNS, check_pattern
from burstjdd.raw.color import render
from burstjdd.raw.noise import NoiseLevel, estimate_noise
from burstjdd.raw.unprocess import rgb2cam_from_xyz2cam

__all__ = [
    "FALLBACK_WB",
    "NPZ_VERSION",
    "RAW_SUFFIXES",
    "InputNotFoundError",
    "RawBurst",
    "RawFrame",
    "atomic_output",
    "burst_orientation",
    "ccm_from_xyz2cam",
    "crop_padding",
    "orient_image",
    "read_burst",
    "read_npz",
    "read_raw_files",
    "read_raw_frame",
    "render_srgb",
    "require_regular_file",
    "select_reference",
    "sharpness",
    "special_file",
    "write_image",
    "write_npy",
    "write_npz",
    "write_png",
    "write_tiff",
]

PathLike = str | os.PathLike

NPZ_VERSION = 1
_REQUIRED_KEYS = ("raw", "cfa", "wb", "ccm")
_OPTIONAL_KEYS = ("version", "noise", "ref", "gt", "flow", "valid", "meta")
# A colour matrix this ill-conditioned amplifies rounding noise beyond any use; real camera
# matrices have condition numbers of order 10.
_MAX_CCM_CONDITION = 1e6
_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".dng")


def _one_line(exc: BaseException) -> str:
    """``str(exc)`` with all whitespace runs (newlines included) collapsed to one space."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _as_float32(name: str, x: Any, *, float_only: bool, expected: str) -> Tensor:
    """Convert a tensor or array-like to a float32 tensor (device kept), rejecting bad dtypes.

    ``float_only`` rejects integer data too: for images an integer array has an unknown scale
    (8-bit? 14-bit?), so guessing would silently give wrong values.
    """
    if isinstance(x, Tensor):
        dtype = x.dtype
        ok = dtype.is_floating_point or (
            not float_only and dtype != torch.bool and not dtype.is_complex
        )
        if not ok:
            raise BurstFormatError(f"{name} must be {expected}, got dtype {dtype}")
        return x.detach().to(torch.float32)
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise BurstFormatError(f"{name} must be {expected} ({_one_line(exc)})") from None
    allowed = "f" if float_only else "fiu"
    if a.dtype.kind not in allowed:
        raise BurstFormatError(f"{name} must be {expected}, got dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _check_shape(name: str, t: Tensor, expected: tuple[int | None, ...], text: str) -> None:
    """Raise unless ``t.shape`` matches ``expected`` (None = any size)."""
    shape = _shape(t)
    mismatch = any(e is not None and e != s for e, s in zip(expected, shape))
    if len(shape) != len(expected) or mismatch:
        raise BurstFormatError(f"{name} must have shape {text}, got {shape}")


def _check_finite(name: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise BurstFormatError(f"{name} has NaN or inf values")


@dataclass(frozen=True, eq=False)
class RawBurst:
    """A burst of Bayer mosaics with the metadata needed to restore and render it.

    Fields are validated and converted in ``__post_init__`` (NumPy arrays become tensors, float
    dtypes become float32; tensors keep their device). ``eq=False``: bursts compare by identity,
    because elementwise tensor comparison has no single truth value.

    raw:   (N, H, W) float in [0, 1], N >= 1, H and W even: mosaics after black-level
           subtraction and white-level scaling, in the file's CFA phase.
    cfa:   CFA pattern name (``PATTERNS``; any case, stored upper-cased).
    wb:    (3,) positive white-balance gains [R, G, B] (camera RGB -> white-balanced).
    ccm:   (3, 3) invertible, white-balanced camera RGB -> linear sRGB.
    noise: ``NoiseLevel`` (Var(y) = shot * x + read**2) or None (estimated on demand).
    ref:   reference frame index; -1 means N // 2 (resolved here, so ``ref`` is always >= 0).
    gt:    (3, H, W) clean linear camera RGB of the reference (simulated bursts), or None.
    flow:  (N, 2, H, W) displacement (dy, dx) of each reference pixel into frame t, in
           full-resolution pixels (simulated bursts), or None.
    valid: (N, H, W) bool, False where the reference pixel is occluded in frame t, or None.
    meta:  free-form, JSON-serialisable dict (source files, orientation, ...).
    """

    raw: Tensor
    cfa: str
    wb: Tensor
    ccm: Tensor
    noise: NoiseLevel | None = None
    ref: int = -1
    gt: Tensor | None = None
    flow: Tensor | None = None
    valid: Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        raw = _as_float32(
            "raw", self.raw, float_only=True, expected="float in [0, 1] (black level subtracted, "
            "divided by white level minus black level)",
        )
        if raw.ndim != 3:
            raise BurstFormatError(
                f"raw must have shape (N, H, W) (a stack of Bayer mosaics), got {_shape(raw)}"
            )
        n, h, w = _shape(raw)
        if n == 0:
            raise BurstFormatError("raw has no frames (N = 0)")
        if h == 0 or w == 0 or h % 2 or w % 2:
            raise BurstFormatError(f"raw height and width must be even and > 0, got {h} x {w}")
        lo, hi = (float(v) for v in torch.aminmax(raw))  # NaN propagates into both
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise BurstFormatError("raw has NaN or inf values")
        if lo < 0.0 or hi > 1.0:
            raise BurstFormatError(f"raw values must lie in [0, 1], got [{lo:.6g}, {hi:.6g}]")
        put("raw", raw)

        if not isinstance(self.cfa, str):
            raise BurstFormatError(
                f"cfa must be a pattern name string, got {type(self.cfa).__name__}"
            )
        put("cfa", check_pattern(self.cfa))

        wb = _as_float32("wb", self.wb, float_only=False, expected="3 real gains")
        _check_shape("wb", wb, (3,), "(3,)")
        _check_finite("wb", wb)
        if not bool((wb > 0).all()):
            raise BurstFormatError(f"wb gains must be positive, got {wb.tolist()}")
        put("wb", wb)

        ccm = _as_float32("ccm", self.ccm, float_only=False, expected="a real 3x3 matrix")
        _check_shape("ccm", ccm, (3, 3), "(3, 3)")
        _check_finite("ccm", ccm)
        cond = float(torch.linalg.cond(ccm.detach().cpu().double()))
        if not cond < _MAX_CCM_CONDITION:  # also catches inf/NaN of a singular matrix
            raise BurstFormatError(f"ccm is not invertible (condition number {cond:.3g})")
        put("ccm", ccm)

        # NoiseLevel validates its own values (finite, >= 0).
        if self.noise is not None and not isinstance(self.noise, NoiseLevel):
            raise BurstFormatError(
                f"noise must be a NoiseLevel or None, got {type(self.noise).__name__}"
            )

        if isinstance(self.ref, bool) or not isinstance(self.ref, (int, np.integer)):
            raise BurstFormatError(f"ref must be an integer, got {type(self.ref).__name__}")
        ref = n // 2 if self.ref == -1 else int(self.ref)
        if not 0 <= ref < n:
            raise BurstFormatError(f"ref {int(self.ref)} is out of range for {n} frames")
        put("ref", ref)

        if self.gt is not None:
            gt = _as_float32("gt", self.gt, float_only=True, expected="float linear camera RGB")
            _check_shape("gt", gt, (3, h, w), f"(3, {h}, {w}) (matching raw)")
            _check_finite("gt", gt)
            put("gt", gt)

        if self.flow is not None:
            flow = _as_float32("flow", self.flow, float_only=False, expected="real (dy, dx) pixels")
            _check_shape("flow", flow, (n, 2, h, w), f"({n}, 2, {h}, {w}) (matching raw)")
            _check_finite("flow", flow)
            put("flow", flow)

        if self.valid is not None:
            valid = self.valid
            if not isinstance(valid, Tensor):
                valid = np.asarray(valid)
                if valid.dtype.kind != "b":
                    raise BurstFormatError(f"valid must be a bool mask, got dtype {valid.dtype}")
                valid = torch.from_numpy(np.ascontiguousarray(valid))
            elif valid.dtype != torch.bool:
                raise BurstFormatError(f"valid must be a bool mask, got dtype {valid.dtype}")
            _check_shape("valid", valid, (n, h, w), f"({n}, {h}, {w}) (matching raw)")
            put("valid", valid)

        if not isinstance(self.meta, dict):
            raise BurstFormatError(f"meta must be a dict, got {type(self.meta).__name__}")
        put("meta", dict(self.meta))

    @property
    def n_frames(self) -> int:
        return int(self.raw.shape[0])

    @property
    def height(self) -> int:
        return int(self.raw.shape[1])

    @property
    def width(self) -> int:
        return int(self.raw.shape[2])

    def noise_level(self) -> NoiseLevel:
        """The stored noise level, else one estimated from the mosaics (``estimate_noise``)."""
        if self.noise is not None:
            return self.noise
        return estimate_noise(self.raw, self.cfa)


# --------------------------------------------------------------------------------------------
# Reading bursts


class InputNotFoundError(BurstFormatError, FileNotFoundError):
    """An input path does not exist. Bad input (``BurstFormatError``) and also a
    ``FileNotFoundError``, so callers that catch either one see it."""


def read_burst(
    inputs: PathLike | Sequence[PathLike], *, ref: int | str | None = None
) -> RawBurst:
    """Read a burst: one ``.npz`` burst file, a folder of raw camera files, or raw files.

    inputs: a path or a sequence of paths:

    * one ``.npz`` burst (version 1, :func:`read_npz`);
    * one folder: every raw file in it (name suffix in :data:`RAW_SUFFIXES`, any case), sorted
      by name; hidden files (name starting with ".") and other files (JPEG previews, sidecars)
      are skipped;
    * raw camera files (DNG and whatever LibRaw reads), in the given order, whatever their
      suffix; see :func:`read_raw_frame` for what is read from each and
      :func:`read_raw_files` for how they make a burst.

    ref: the reference frame. None: the one stored in the ``.npz`` file, or the middle frame
    N // 2 of raw files; an int K: frame K (-1: the middle one); ``"auto"``: the sharpest of
    the middle frames (:func:`select_reference`).

    Every problem with the input raises ``BurstFormatError`` with a one-line message naming
    the file; a path that does not exist raises :class:`InputNotFoundError` (a
    ``BurstFormatError`` and a ``FileNotFoundError``).
    """
    paths = _input_paths(inputs)
    if not paths:
        raise BurstFormatError("no input given: pass one .npz burst, a folder or raw files")
    for p in paths:
        if not p.exists():
            raise InputNotFoundError(f"{p}: no such file or directory")
        require_regular_file(p, allow_dir=True)
    if any(p.suffix.lower() == ".npz" for p in paths):
        if len(paths) != 1:
            raise BurstFormatError(f"give one .npz burst on its own, got {len(paths)} inputs")
        burst = read_npz(paths[0])
        if ref is None:
            return burst
        return dataclasses.replace(burst, ref=_resolve_ref(ref, burst.raw, burst.cfa))
    return read_raw_files(_raw_paths(paths), ref=ref)


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file(path: PathLike) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (e.g. "a named
    pipe (FIFO)", "a character device"), else None. Reading such a path can block forever (a
    FIFO nobody writes to) or never end (/dev/zero), so every reader refuses them first."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable or an invalid name: the reader says so
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "not a regular file")


def require_regular_file(path: PathLike, error: type[Exception] = BurstFormatError, *,
                         allow_dir: bool = False) -> None:
    """Raise ``error`` naming ``path`` when it is a special file (:func:`special_file`), or a
    folder unless ``allow_dir``. A missing path passes: the reader reports it."""
    kind = special_file(path)
    if kind is None and not allow_dir and os.path.isdir(path):
        kind = "a folder"
    if kind is not None:
        raise error(f"{path}: is {kind}, not a regular file")


def _input_paths(inputs: Any) -> list[Path]:
    """``read_burst``'s inputs as paths; TypeError saying what is expected for anything else
    (a number, an array, bytes, a mapping)."""
    expected = "a path (str or os.PathLike) or a list of paths"
    if isinstance(inputs, (str, os.PathLike)):
        return [Path(inputs)]
    if isinstance(inputs, (bytes, Mapping, np.ndarray, Tensor)) or not isinstance(inputs,
                                                                                   Iterable):
        raise TypeError(f"read_burst: inputs must be {expected}, got {type(inputs).__name__}")
    paths = list(inputs)
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"read_burst: inputs must be {expected}, got a list holding "
                            f"{type(p).__name__}")
    return [Path(p) for p in paths]


def _raw_paths(paths: list[Path]) -> list[Path]:
    """The raw files to read: the given files, or the raw files of one given folder."""
    folders = [p for p in paths if p.is_dir()]
    if not folders:
        return paths
    if len(paths) != 1:
        raise BurstFormatError(f"{folders[0]}: give one folder on its own, or raw files")
    folder = folders[0]
    files = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in RAW_SUFFIXES),
        key=lambda p: p.name,
    )
    if not files:
        raise BurstFormatError(
            f"{folder}: no raw files in this folder (looked for .dng, .cr2, .cr3, .nef, .arw, "
            f".raf, .orf, .rw2 and the other suffixes LibRaw reads)"
        )
    return files


def _resolve_ref(ref: int | str | None, raw: Tensor, cfa: str) -> int:
    """The reference index in [0, N) for ``read_burst``'s ``ref`` (None: the middle frame)."""
    n = int(raw.shape[0])
    if ref is None:
        return n // 2
    if isinstance(ref, str):
        if ref.strip().lower() != "auto":
            raise BurstFormatError(f"ref must be a frame index or 'auto', got {ref!r}")
        return select_reference(raw, cfa)
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)):
        raise BurstFormatError(f"ref must be a frame index or 'auto', got {ref!r}")
    k = n // 2 if ref == -1 else int(ref)
    if not 0 <= k < n:
        raise BurstFormatError(f"ref {int(ref)} is out of range for {n} frames")
    return k


# --------------------------------------------------------------------------------------------
# .npz bursts


def read_npz(path: PathLike) -> RawBurst:
    """Read and validate a version-1 ``.npz`` burst (never unpickles anything).

    A missing or unreadable file raises ``OSError``; any malformed content, and a path that is
    not a regular file (a folder, a FIFO, a device), raises ``BurstFormatError("<path>:
    <problem>")``.
    """
    path = Path(path)
    require_regular_file(path)
    with open(path, "rb") as f:
        arrays = _load_npz_arrays(f, path)
    try:
        return _burst_from_arrays(arrays)
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}") from None


def _load_npz_arrays(f: Any, path: Path) -> dict[str, np.ndarray]:
    """All arrays of an open ``.npz`` file, read eagerly so corruption shows up here."""
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"\x93NUMPY"):
        raise BurstFormatError(f"{path}: is a single .npy array, not an .npz burst")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise BurstFormatError(f"{path}: not an .npz file (not a zip archive)")
    bad = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        npz = np.load(f, allow_pickle=False)
    except bad as exc:
        raise BurstFormatError(f"{path}: damaged .npz file ({_one_line(exc)})") from None
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except bad as exc:
                raise BurstFormatError(f"{path}: cannot read '{key}' ({_one_line(exc)})") from None
    return arrays


def _scalar(a: dict[str, np.ndarray], key: str, kinds: str, expected: str) -> np.ndarray:
    """The 0-d array ``a[key]``, checked to have a dtype kind in ``kinds``."""
    v = np.asarray(a[key])
    if v.ndim != 0 or v.dtype.kind not in kinds:
        raise BurstFormatError(
            f"'{key}' must be {expected}, got {v.dtype} array of shape {v.shape}"
        )
    return v


def _burst_from_arrays(a: dict[str, np.ndarray]) -> RawBurst:
    """Build a ``RawBurst`` from the arrays of a version-1 file (messages without the path)."""
    unknown = sorted(set(a) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        known = ", ".join(_REQUIRED_KEYS + _OPTIONAL_KEYS)
        raise BurstFormatError(f"unknown key(s) {', '.join(unknown)} (known keys: {known})")
    missing = [k for k in _REQUIRED_KEYS if k not in a]
    if missing:
        raise BurstFormatError(f"missing required key(s) {', '.join(missing)}")

    version = int(_scalar(a, "version", "iu", "an integer")) if "version" in a else NPZ_VERSION
    if version != NPZ_VERSION:
        raise BurstFormatError(
            f"unsupported burst file version {version} (this reads {NPZ_VERSION})"
        )

    cfa = _scalar(a, "cfa", "US", "a pattern name string").item()
    cfa = cfa.decode("ascii", "replace") if isinstance(cfa, bytes) else str(cfa)

    noise = None
    if "noise" in a:
        v = np.asarray(a["noise"])
        if v.shape != (2,) or v.dtype.kind != "f":
            raise BurstFormatError(
                f"'noise' must be (2,) float [shot, read], got {v.dtype} {v.shape}"
            )
        noise = NoiseLevel(shot=float(v[0]), read=float(v[1]))

    ref = int(_scalar(a, "ref", "iu", "an integer")) if "ref" in a else -1

    gt = None
    if "gt" in a:
        gt = np.asarray(a["gt"])
        if gt.ndim != 3 or gt.shape[-1] != 3:
            raise BurstFormatError(f"'gt' must have shape (H, W, 3) in the file, got {gt.shape}")
        gt = np.moveaxis(gt, -1, 0)  # file (H, W, 3) -> memory (3, H, W)

    meta: dict = {}
    if "meta" in a:
        text = _scalar(a, "meta", "U", "a JSON string").item()
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BurstFormatError(f"'meta' is not valid JSON ({_one_line(exc)})") from None
        if not isinstance(meta, dict):
            raise BurstFormatError(f"'meta' must be a JSON object, got {type(meta).__name__}")

    return RawBurst(
        raw=a["raw"], cfa=cfa, wb=a["wb"], ccm=a["ccm"], noise=noise, ref=ref, gt=gt,
        flow=a.get("flow"), valid=a.get("valid"), meta=meta,
    )


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def write_npz(burst: RawBurst, path: PathLike, *, compress: bool = False) -> None:
    """Write ``burst`` as a version-1 ``.npz`` file, atomically; reading it back is exact.

    Optional fields are written only when set. ``noise`` is stored as float64 so the
    ``NoiseLevel`` floats survive bit for bit (readers accept float32 too). ``compress`` uses
    zip deflate (smaller, much slower).
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise BurstFormatError(f"{path}: a burst file name must end in .npz")
    arrays: dict[str, np.ndarray] = {
        "version": np.array(NPZ_VERSION, dtype=np.int64),
        "raw": _numpy(burst.raw),
        "cfa": np.array(burst.cfa),
        "wb": _numpy(burst.wb),
        "ccm": _numpy(burst.ccm),
        "ref": np.array(burst.ref, dtype=np.int64),
    }
    if burst.noise is not None:
        arrays["noise"] = np.array([burst.noise.shot, burst.noise.read], dtype=np.float64)
    if burst.gt is not None:
        arrays["gt"] = _numpy(burst.gt).transpose(1, 2, 0)  # (3, H, W) -> file (H, W, 3)
    if burst.flow is not None:
        arrays["flow"] = _numpy(burst.flow)
    if burst.valid is not None:
        arrays["valid"] = _numpy(burst.valid)
    if burst.meta:
        try:
            arrays["meta"] = np.array(json.dumps(burst.meta))
        except (TypeError, ValueError) as exc:
            raise BurstFormatError(
                f"{path}: meta is not JSON-serialisable ({_one_line(exc)})"
            ) from None
    save = np.savez_compressed if compress else np.savez
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        save(f, **arrays)  # all arrays are numeric, bool or str: nothing is pickled


# --------------------------------------------------------------------------------------------
# Raw camera files (rawpy / LibRaw; DNG tags with tifffile)

# Suffixes of the raw formats LibRaw reads; a folder is searched for these (any case).
RAW_SUFFIXES: frozenset[str] = frozenset(
    ".3fr .ari .arw .bay .cap .cr2 .cr3 .crw .dcr .dcs .dng .drf .eip .erf .fff .iiq .k25 .kdc "
    ".mdc .mef .mos .mrw .nef .nrw .orf .pef .ptx .pxn .r3d .raf .raw .rw2 .rwl .rwz .sr2 .srf "
    ".srw .x3f".split()
)

# White balance of a file that has none: the gains of the synthetic test protocol
# (PROTOCOL.md: red 2.0, blue 1.7), a typical daylight balance.
FALLBACK_WB: tuple[float, float, float] = (2.0, 1.0, 1.7)

# TIFF / DNG tag codes (DNG specification 1.4).
_TAG_DNG_VERSION = 50706
_TAG_UNIQUE_CAMERA_MODEL = 50708
_TAG_COLOR_MATRIX = (50721, 50722)       # ColorMatrix1, ColorMatrix2 (XYZ -> camera)
_TAG_AS_SHOT_NEUTRAL = 50728
_TAG_ILLUMINANT = (50778, 50779)         # CalibrationIlluminant1, 2
_TAG_NOISE_PROFILE = 51041
_D65 = 21                                # EXIF LightSource code of D65

# LibRaw's ``sizes.flip`` -> TIFF/EXIF Orientation. LibRaw sets flip = "50132467"[tag & 7]
# from the tag; this is its inverse.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# LibRaw prints some problems itself on file descriptor 2; one lock, so that two threads never
# redirect it at the same time.
_FD2_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class RawFrame:
    """One raw camera file as stored (sensor orientation, values not normalised).

    path:        the file.
    data:        (H, W) uint16, the visible area (LibRaw's ``raw_image_visible``, copied).
    cfa:         pattern name of the visible area's top-left 2x2 cell (one of ``PATTERNS``).
    black:       (4,) black level of the 2x2 cell's sites in reading order.
    white:       (4,) white (saturation) level of the same sites.
    wb:          (3,) as-shot gains [R/G, 1, B/G], or None when the file has none.
    daylight_wb: (3,) the camera's daylight gains [R/G, 1, B/G] per LibRaw, or None.
    xyz2cam:     (3, 3) XYZ -> camera colour matrix, or None when the file has none.
    noise:       noise level from the DNG NoiseProfile tag, or None.
    orientation: TIFF/EXIF Orientation 1..8 of the stored image (see :func:`orient_image`).
    camera:      the DNG UniqueCameraModel, or "" when unknown.
    """

    path: Path
    data: np.ndarray
    cfa: str
    black: tuple[float, ...]
    white: tuple[float, ...]
    wb: np.ndarray | None
    daylight_wb: np.ndarray | None
    xyz2cam: np.ndarray | None
    noise: NoiseLevel | None
    orientation: int
    camera: str


@contextlib.contextmanager
def _captured_fd2() -> Iterator[list[str]]:
    """Collect what C code prints on file descriptor 2 while the block runs.

    LibRaw reports some problems (e.g. "Unexpected end of file") by printing them itself; they
    are caught here so that they end up in our one-line error (or a warning) instead of on the
    terminal. Yields a list that holds the text once the block has finished.
    """
    text: list[str] = []
    with _FD2_LOCK, tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 at all: nothing can be printed on it either
            yield text
            return
        try:
            if sys.stderr is not None:
                sys.stderr.flush()  # Python's own pending output is not LibRaw's
            os.dup2(sink.fileno(), 2)
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode("utf-8", "replace"))


def _import_rawpy() -> Any:
    """rawpy (LibRaw), an optional dependency imported where raw files are read; a one-line
    ConfigError when it is missing."""
    try:
        import rawpy
    except ImportError:
        from burstjdd.errors import ConfigError

        raise ConfigError("reading raw camera files needs rawpy: pip install rawpy") from None
    return rawpy


def _libraw_text(exc: BaseException) -> str:
    """rawpy's error text (its messages are bytes, e.g. b'Input/output error')."""
    arg = exc.args[0] if exc.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split()) or type(exc).__name__


def read_raw_frame(path: PathLike) -> RawFrame:
    """Read one raw camera file with rawpy (LibRaw), plus its DNG tags with tifffile.

    * data: the visible area, copied (rawpy's buffers die with its file handle);
    * CFA pattern from the file (LibRaw's ``raw_pattern`` and ``color_desc``, shifted to the
      visible area's origin); anything but a 2x2 Bayer pattern (X-Trans, CMYG, ...), and
      linear (demosaiced) raw data, raise ``BurstFormatError``;
    * black level per site (``black_level_per_channel``) and white level
      (``camera_white_level_per_channel`` when the file has it, else ``white_level``);
    * as-shot white balance: the DNG AsShotNeutral n as gains 1/n, else LibRaw's
      ``camera_whitebalance``; both normalised to [R/G, 1, B/G]; zeros mean none;
    * colour matrix XYZ -> camera: for DNG files the tag calibrated for D65
      (CalibrationIlluminant 21), else ColorMatrix2 (usually the daylight one, as the official
      real-data code uses), else ColorMatrix1 (rawpy reports zeros for some DNGs, so the tags
      are read with tifffile); for other files LibRaw's ``rgb_xyz_matrix`` (first 3 rows);
    * noise: the DNG NoiseProfile (S_i, O_i) pairs, Var = S x + O in normalised units, as
      ``NoiseLevel(shot=mean S, read=sqrt(mean O))``; read from the raw IFD, else IFD0;
    * orientation from LibRaw's ``sizes.flip`` (the TIFF Orientation tag of DNGs).

    Raises ``BurstFormatError("<path>: <problem>")`` for a file that is not a readable Bayer
    raw (corrupt, truncated, a JPEG, ...); :class:`InputNotFoundError` for a missing path.
    """
    rawpy = _import_rawpy()

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        raise BurstFormatError(f"{path}: is a folder, not a raw file")
    require_regular_file(path)
    failure = None
    with _captured_fd2() as printed:
        try:
            with rawpy.imread(str(path)) as r:
                fields = _rawpy_fields(r, path)
        except rawpy.LibRawError as exc:
            failure = _libraw_text(exc)
    # LibRaw's own messages start with the path; drop it, we name the file once.
    said = " ".join(printed[0].replace(f"{path}: ", "").split()) if printed else ""
    if failure is not None:
        detail = "; ".join(t for t in (failure, said) if t)
        raise BurstFormatError(f"{path}: not a readable raw file (LibRaw: {detail})")
    if said:
        warnings.warn(f"{path}: LibRaw: {said}", stacklevel=2)

    tags = _dng_tags(path)
    if _TAG_AS_SHOT_NEUTRAL in tags:
        neutral = _rationals(tags[_TAG_AS_SHOT_NEUTRAL])
        with np.errstate(divide="ignore", invalid="ignore"):
            fields["wb"] = _gains(1.0 / neutral)
    if any(code in tags for code in _TAG_COLOR_MATRIX):
        fields["xyz2cam"] = _dng_color_matrix(tags)
    noise = None
    if _TAG_NOISE_PROFILE in tags:
        noise = _noise_from_profile(tags[_TAG_NOISE_PROFILE], path)
    camera = tags.get(_TAG_UNIQUE_CAMERA_MODEL, "")
    return RawFrame(path=path, noise=noise, camera=str(camera).strip(), **fields)


def _rawpy_fields(r: Any, path: Path) -> dict[str, Any]:
    """What is read through an open ``rawpy.RawPy``: RawFrame fields but path/noise/camera."""
    rawpy = _import_rawpy()

    if r.raw_type != rawpy.RawType.Flat:
        raise BurstFormatError(
            f"{path}: holds linear (demosaiced) data, not a Bayer mosaic; give the sensor's raw"
        )
    try:
        pattern = r.raw_pattern
    except NotImplementedError:  # a filter layout rawpy cannot express
        pattern = None
    if pattern is None or pattern.shape != (2, 2):
        size = "unknown" if pattern is None else "x".join(str(s) for s in pattern.shape)
        raise BurstFormatError(
            f"{path}: CFA pattern of size {size} (e.g. X-Trans) is not a 2x2 Bayer pattern"
        )
    s = r.sizes
    # raw_pattern is in full-raw coordinates; the visible area starts at the margins.
    cell = np.roll(np.asarray(pattern), (-s.top_margin, -s.left_margin), axis=(0, 1)).ravel()
    colours = r.color_desc.decode("ascii", "replace")
    name = "".join(colours[i] if i < len(colours) else "?" for i in cell)
    if name not in PATTERNS:
        raise BurstFormatError(
            f"{path}: CFA pattern {name} is not a Bayer pattern ({', '.join(PATTERNS)})"
        )
    black = np.asarray(r.black_level_per_channel, dtype=np.float64)[cell]
    levels = r.camera_white_level_per_channel
    if levels is not None:
        white = np.asarray(levels, dtype=np.float64)[cell]
    else:
        white = np.full(4, float(r.white_level))
    if not np.all(white > black):
        raise BurstFormatError(
            f"{path}: white level {white.tolist()} is not above black level {black.tolist()}"
        )
    xyz2cam = np.asarray(r.rgb_xyz_matrix, dtype=np.float64)[:3]
    daylight = _gains(r.daylight_whitebalance)
    if daylight is not None and np.all(daylight == 1.0):
        daylight = None  # LibRaw's placeholder when it knows nothing about the camera
    return {
        "data": np.array(r.raw_image_visible, copy=True),
        "cfa": name,
        "black": tuple(black.tolist()),
        "white": tuple(white.tolist()),
        "wb": _gains(r.camera_whitebalance),
        "daylight_wb": daylight,
        "xyz2cam": xyz2cam if np.any(xyz2cam) else None,
        "orientation": _FLIP_TO_ORIENTATION.get(int(s.flip), 1),
    }


def _gains(multipliers: Any) -> np.ndarray | None:
    """Channel multipliers [R, G, B, (G2)] -> gains [R/G, 1, B/G]; None unless all > 0."""
    m = np.asarray(multipliers, dtype=np.float64).ravel()[:3]
    if m.shape != (3,) or not np.all(np.isfinite(m) & (m > 0)):
        return None
    return m / m[1]


def _dng_tags(path: Path) -> dict[int, Any]:
    """The DNG tags used here, by code ({} for a file that is not a DNG).

    Colour tags live in IFD0; NoiseProfile belongs to the raw IFD (the one with
    NewSubfileType 0: IFD0 or one of its SubIFDs), some writers put it in IFD0.
    """
    import tifffile

    with open(path, "rb") as f:
        if f.read(4) not in (b"II*\x00", b"MM\x00*"):
            return {}
    wanted = (_TAG_UNIQUE_CAMERA_MODEL, _TAG_AS_SHOT_NEUTRAL, _TAG_NOISE_PROFILE,
              *_TAG_COLOR_MATRIX, *_TAG_ILLUMINANT)
    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages.first
            if _TAG_DNG_VERSION not in ifd0.tags:
                return {}
            tags = {code: ifd0.tags[code].value for code in wanted if code in ifd0.tags}
            raw_ifds = [ifd0] if ifd0.subfiletype == 0 else []
            raw_ifds += [p for p in (ifd0.pages or ()) if p.subfiletype == 0]
            for ifd in raw_ifds[:1]:
                if _TAG_NOISE_PROFILE in ifd.tags:
                    tags[_TAG_NOISE_PROFILE] = ifd.tags[_TAG_NOISE_PROFILE].value
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as exc:
        raise BurstFormatError(f"{path}: cannot read the DNG tags ({_one_line(exc)})") from None
    return tags


def _rationals(value: Any) -> np.ndarray:
    """A (S)RATIONAL tag's value as floats: tifffile gives (num, den, num, den, ...)."""
    a = np.asarray(value, dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return a[0::2] / a[1::2] if a.size % 2 == 0 else np.full(1, np.nan)


def _dng_color_matrix(tags: dict[int, Any]) -> np.ndarray | None:
    """XYZ -> camera (3, 3): the ColorMatrix calibrated for D65, else ColorMatrix2, else 1."""
    found = [
        (tags[code], tags.get(illuminant))
        for code, illuminant in zip(_TAG_COLOR_MATRIX, _TAG_ILLUMINANT) if code in tags
    ]
    value = next((m for m, light in found if light == _D65), found[-1][0])
    m = _rationals(value)
    if m.size < 9 or m.size % 3:
        return None
    return m.reshape(-1, 3)[:3]  # a 4-colour camera has 4 rows; Bayer uses the first 3


def _noise_from_profile(value: Any, path: Path) -> NoiseLevel | None:
    """DNG NoiseProfile (S_1, O_1, ..., S_k, O_k): Var = S x + O -> NoiseLevel(mean S,
    sqrt(mean O)). A malformed profile warns and gives None (the noise is then estimated)."""
    v = np.asarray(value, dtype=np.float64).ravel()
    if v.size < 2 or v.size % 2 or not np.all(np.isfinite(v) & (v >= 0)):
        warnings.warn(f"{path}: ignoring malformed NoiseProfile {v.tolist()}", stacklevel=3)
        return None
    return NoiseLevel(shot=float(v[0::2].mean()), read=math.sqrt(float(v[1::2].mean())))


def _frame_colour(frame: RawFrame) -> tuple[np.ndarray, np.ndarray]:
    """(wb (3,), ccm (3, 3)) of a frame, with the documented fallbacks (each warns)."""
    wb = frame.wb
    if wb is None:
        wb = frame.daylight_wb
        if wb is not None:
            warnings.warn(
                f"{frame.path}: no as-shot white balance; using the camera's daylight balance "
                f"{np.round(wb, 4).tolist()}", stacklevel=3,
            )
        else:
            wb = np.array(FALLBACK_WB)
            warnings.warn(
                f"{frame.path}: no white balance in the file; using {list(FALLBACK_WB)}",
                stacklevel=3,
            )
    ccm = ccm_from_xyz2cam(frame.xyz2cam)
    if ccm is None:
        ccm = np.eye(3)
        warnings.warn(
            f"{frame.path}: no usable colour matrix; using the identity (colours will be off)",
            stacklevel=3,
        )
    return wb, ccm


def ccm_from_xyz2cam(xyz2cam: np.ndarray | None) -> np.ndarray | None:
    """White-balanced camera RGB -> linear sRGB from an XYZ -> camera matrix (e.g. a DNG
    ColorMatrix), as the official real-data code and Brooks et al. build it.

    xyz2cam (3, 3) -> inverse of rgb2cam = xyz2cam @ sRGB->XYZ (D65) with rows normalised to
    sum 1 (:func:`~burstjdd.raw.unprocess.rgb2cam_from_xyz2cam`), float64. None when the
    matrix is missing, zero, not finite or (nearly) singular.
    """
    if xyz2cam is None:
        return None
    m = np.asarray(xyz2cam, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)) or not np.any(m):
        return None
    rgb2cam = rgb2cam_from_xyz2cam(torch.from_numpy(m)).numpy()
    if not np.all(np.isfinite(rgb2cam)) or not np.linalg.cond(rgb2cam) < _MAX_CCM_CONDITION:
        return None
    return np.linalg.inv(rgb2cam)


def _normalised(frame: RawFrame) -> np.ndarray:
    """(H, W) float32 (data - black) / (white - black) per CFA site, clipped to [0, 1]."""
    h, w = frame.data.shape
    reps = (-(-h // 2), -(-w // 2))
    black = np.tile(np.reshape(frame.black, (2, 2)), reps)[:h, :w]
    white = np.tile(np.reshape(frame.white, (2, 2)), reps)[:h, :w]
    x = (frame.data.astype(np.float64) - black) / (white - black)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _pad_even(x: np.ndarray) -> np.ndarray:
    """(H, W) -> even (H', W'): an odd last row/column is followed by a copy of the one two
    before the edge, which has the same CFA colour (so the pattern stays valid)."""
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-2:-1]], axis=0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -2:-1]], axis=1)
    return x


def _check_same(first: RawFrame, frame: RawFrame) -> None:
    """Frames of one burst must share size, pattern and levels; name the odd file if not."""
    def size(f: RawFrame) -> str:
        return f"{f.data.shape[1]}x{f.data.shape[0]} (width x height)"

    for what, get in (
        ("size", size),
        ("CFA pattern", lambda f: f.cfa),
        ("black levels", lambda f: list(f.black)),
        ("white levels", lambda f: list(f.white)),
    ):
        if get(frame) != get(first):
            raise BurstFormatError(
                f"{frame.path}: {what} {get(frame)} differs from {get(first)} of "
                f"{first.path.name}; all frames must come from one camera setting"
            )


def read_raw_files(paths: Sequence[PathLike], *, ref: int | str | None = None) -> RawBurst:
    """Read raw camera files (one burst, in this order) into a :class:`RawBurst`.

    Each file is read by :func:`read_raw_frame`; all must agree in size, CFA pattern and
    black/white levels (else ``BurstFormatError`` naming the odd file). Mosaics are
    normalised per CFA site to (raw - black) / (white - black), clipped to [0, 1], and kept in
    the sensor's orientation and the file's phase. An odd height/width is padded to even by
    repeating the row/column two before the edge (same CFA colour); ``meta["size"]`` keeps the
    visible size [H0, W0], so :func:`write_image` crops outputs back to it.

    White balance, colour matrix and noise level come from the reference frame (``ref`` as in
    :func:`read_burst`); wb falls back to the camera's daylight balance, then
    :data:`FALLBACK_WB`, and a missing colour matrix to the identity, each with a warning.
    ``noise`` is None without a DNG NoiseProfile (``RawBurst.noise_level()`` estimates it).
    meta: files (names), size, orientation (of the reference frame; :func:`write_image`
    turns outputs upright with it), camera (when known).
    """
    if not paths:
        raise BurstFormatError("no raw files given")
    frames = [read_raw_frame(p) for p in paths]
    first = frames[0]
    for frame in frames[1:]:
        _check_same(first, frame)
    h0, w0 = first.data.shape
    if h0 < 2 or w0 < 2:
        raise BurstFormatError(f"{first.path}: visible area {w0}x{h0} is too small")
    raw = torch.from_numpy(np.stack([_pad_even(_normalised(f)) for f in frames]))
    k = _resolve_ref(ref, raw, first.cfa)
    wb, ccm = _frame_colour(frames[k])
    meta: dict[str, Any] = {
        "files": [f.path.name for f in frames],
        "size": [int(h0), int(w0)],
        "orientation": frames[k].orientation,
    }
    if frames[k].camera:
        meta["camera"] = frames[k].camera
    return RawBurst(
        raw=raw, cfa=first.cfa, wb=wb, ccm=ccm, noise=frames[k].noise, ref=k, meta=meta
    )


# --------------------------------------------------------------------------------------------
# Reference frame


def sharpness(raw: Tensor, cfa: str) -> Tensor:
    """Per-frame sharpness: mean squared Laplacian of the green sub-lattices after a blur.

    raw (N, H, W) mosaics of phase ``cfa``, H and W even -> (N,) in raw's float dtype
    (float32 for other dtypes), on its device. The two green
    sub-lattices (half resolution, the densest colour) are blurred with a 3x3 binomial kernel,
    which damps pixel noise (the Laplacian's gain on white-noise variance drops from 20 to
    0.41) while keeping the edges and texture that motion blur or defocus remove; edges
    are replicated. Among frames with similar noise the one with the most fine detail scores
    highest.
    """
    cfa = check_pattern(cfa)
    if raw.dim() != 3:
        raise BurstFormatError(f"sharpness needs raw (N, H, W), got {_shape(raw)}")
    greens = [divmod(i, 2) for i, c in enumerate(cfa) if c == "G"]
    g = torch.stack([raw[:, i::2, j::2] for i, j in greens], dim=1)  # (N, 2, H/2, W/2)
    g = g if g.is_floating_point() else g.to(torch.float32)
    x = g.flatten(0, 1).unsqueeze(1)                                 # (2N, 1, h, w)
    b = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device) / 4.0
    blur = (b[:, None] * b[None, :]).view(1, 1, 3, 3)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
                       dtype=x.dtype, device=x.device)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), blur)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), lap.view(1, 1, 3, 3))
    return x.square().view(raw.shape[0], -1).mean(dim=1)


def select_reference(raw: Tensor, cfa: str) -> int:
    """The sharpest of the middle frames (``read_burst(..., ref="auto")``).

    raw (N, H, W) mosaics. Candidates: frames N//2 - 1, N//2, N//2 + 1 (all frames when
    N <= 3), so that the reference stays near the middle of the burst, where motion to the
    other frames is smallest; the one with the highest :func:`sharpness` wins, ties go to the
    frame nearest the middle.
    """
    n = int(raw.shape[0])
    middle = n // 2
    candidates = list(range(n)) if n <= 3 else [middle - 1, middle, middle + 1]
    scores = sharpness(raw[candidates], cfa).tolist()
    best = max(range(len(candidates)),
               key=lambda i: (scores[i], -abs(candidates[i] - middle)))
    return candidates[best]


# --------------------------------------------------------------------------------------------
# Atomic output and image writers


def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        # Keep the final suffix last: some writers choose the format from the extension.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file next to {path}")


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; move it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path``
    is left untouched, so readers only ever see a complete file or the previous one.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {parent}")
    if path.is_dir():
        raise IsADirectoryError(f"output path is a directory: {path}")
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _image_chw(image: Any, path: Path) -> Tensor:
    """Validate a (3, H, W) float image; return it as a float32 CPU tensor.

    Integer images are refused: their scale (255? 65535?) is unknown, and treating 255 as 255.0
    would silently write a white image.
    """
    try:
        t = _as_float32("image", image, float_only=True, expected="a float (3, H, W) image")
        _check_shape("image", t, (3, None, None), "(3, H, W)")
        _check_finite("image", t)
    except BurstFormatError as exc:
        raise BurstFormatError(f"{path}: {exc}; nothing written") from None
    return t.cpu()


def _quantize_hwc(chw: Tensor, levels: int, dtype: type) -> np.ndarray:
    """(3, H, W) values in [0, 1] (clipped) -> (H, W, 3) integers round(x * levels)."""
    x = np.clip(chw.numpy().transpose(1, 2, 0), 0.0, 1.0)
    return np.ascontiguousarray(np.round(x * levels).astype(dtype))


def write_png(image: Any, path: PathLike) -> None:
    """Write a (3, H, W) sRGB image with values in [0, 1] as an 8-bit PNG, atomically.

    Values are clipped to [0, 1] and rounded (half to even) to round(255 * x).
    """
    from PIL import Image

    path = Path(path)
    u8 = _quantize_hwc(_image_chw(image, path), 255, np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(u8).save(tmp, format="PNG")


def write_tiff(image: Any, path: PathLike, *, linear: bool = False) -> None:
    """Write a (3, H, W) image as an RGB TIFF, atomically.

    ``linear=False``: sRGB in [0, 1] -> 16-bit, clipped and rounded to round(65535 * x).
    ``linear=True``: float32 values as they are (no clipping; linear data may exceed 1).
    """
    import tifffile

    path = Path(path)
    chw = _image_chw(image, path)
    if linear:
        data = np.ascontiguousarray(chw.numpy().transpose(1, 2, 0))
    else:
        data = _quantize_hwc(chw, 65535, np.uint16)
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb")


def write_npy(image: Any, path: PathLike) -> None:
    """Write a (3, H, W) image as a float32 (H, W, 3) ``.npy`` array (values as they are)."""
    path = Path(path)
    hwc = np.ascontiguousarray(_image_chw(image, path).numpy().transpose(1, 2, 0))
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, hwc, allow_pickle=False)


def render_srgb(rgb: Any, burst: RawBurst) -> Tensor:
    """Render linear camera RGB (..., 3, H, W) to sRGB in [0, 1] with the burst's metadata.

    ``render(rgb, burst.wb, burst.ccm)``: white balance -> clamp -> CCM -> clamp -> gamma
    (METHOD.md, the Γ of the paper). Follows ``rgb``'s device and float dtype.
    """
    rgb = torch.as_tensor(rgb)
    if not rgb.is_floating_point():
        rgb = rgb.to(torch.float32)
    wb = burst.wb.to(device=rgb.device, dtype=rgb.dtype)
    ccm = burst.ccm.to(device=rgb.device, dtype=rgb.dtype)
    return render(rgb, wb, ccm)


# TIFF/EXIF Orientation -> (transpose first?, dims flipped then) that turn a stored image upright.
_ORIENTATIONS: dict[int, tuple[bool, tuple[int, ...]]] = {
    1: (False, ()), 2: (False, (-1,)), 3: (False, (-2, -1)), 4: (False, (-2,)),
    5: (True, ()), 6: (True, (-1,)), 7: (True, (-2, -1)), 8: (True, (-2,)),
}


def orient_image(image: Tensor, orientation: int) -> Tensor:
    """Turn an image stored in sensor orientation upright, per the TIFF/EXIF Orientation tag.

    image (..., H, W) -> (..., H, W) for orientations 1-4, (..., W, H) for 5-8.
    1 as stored, 2 mirrored left-right, 3 rotated 180 degrees, 4 mirrored top-bottom,
    5 transposed, 6 rotated 90 degrees clockwise, 7 transverse (transposed and rotated 180),
    8 rotated 90 degrees counter-clockwise. (TIFF 6.0: for 6, the stored row 0 becomes the
    right-hand column and the stored column 0 the top row.)
    """
    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or (
        orientation not in _ORIENTATIONS
    ):
        raise BurstFormatError(f"orientation must be an integer 1..8, got {orientation!r}")
    transpose, flips = _ORIENTATIONS[int(orientation)]
    if transpose:
        image = image.transpose(-2, -1)
    return image.flip(flips) if flips else image


def burst_orientation(burst: RawBurst) -> int:
    """The TIFF/EXIF Orientation 1..8 in ``burst.meta["orientation"]`` (1 when absent)."""
    value = burst.meta.get("orientation", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value not in _ORIENTATIONS:
        raise BurstFormatError(f"burst meta orientation must be an integer 1..8, got {value!r}")
    return value


def crop_padding(image: Tensor, burst: RawBurst) -> Tensor:
    """Crop an image of the burst's size (..., H, W) back to ``burst.meta["size"]`` [H0, W0].

    Raw files of odd size are padded to even by one row/column (:func:`read_raw_files`);
    an image of any other size, or a burst without ``size``, is returned as it is.
    """
    size = burst.meta.get("size")
    if size is None or tuple(image.shape[-2:]) != (burst.height, burst.width):
        return image
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool) for s in size
    )
    if not ok or size[0] not in (burst.height - 1, burst.height) or size[1] not in (
        burst.width - 1, burst.width
    ):
        raise BurstFormatError(
            f"burst meta size {size!r} does not match its {burst.height}x{burst.width} frames "
            "(it must be [H0, W0], at most one row/column less)"
        )
    return image[..., : size[0], : size[1]]


def write_image(
    image: Any, path: PathLike, space: str = "srgb", burst: RawBurst | None = None
) -> None:
    """Write a restored image, choosing the format by extension; atomic.

    ``image`` is always LINEAR CAMERA RGB, (3, H, W) (what the model outputs), in the sensor's
    orientation.

    * ``space="srgb"``: rendered with :func:`render_srgb` using ``burst``'s wb and ccm (so
      ``burst`` is required), then written as ``.png`` (8-bit), ``.tif``/``.tiff`` (16-bit) or
      ``.npy`` (float32 (H, W, 3) in [0, 1]).
    * ``space="linear"``: written as it is, ``.tif``/``.tiff`` float32 or ``.npy`` float32;
      ``.png`` is refused (PNG is 8-bit sRGB only).
    * ``.dng``: a linear DNG that raw editors render with the burst's colours
      (:func:`burstjdd.raw.dng.write_linear_dng`); needs ``burst``; ``space`` is not used.

    With a ``burst``, the image is first cropped back to the visible size of raw files with
    an odd size (:func:`crop_padding`), then turned upright with ``meta["orientation"]``
    (:func:`orient_image`); a DNG keeps the sensor orientation and stores it in its
    Orientation tag instead. To write an image that is already sRGB, call :func:`write_png`,
    :func:`write_tiff` or :func:`write_npy` directly.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if space not in ("srgb", "linear"):
        raise BurstFormatError(f"{path}: space must be 'srgb' or 'linear', got {space!r}")
    if ext not in _IMAGE_SUFFIXES:
        raise BurstFormatError(
            f"{path}: unsupported output extension {ext or '(none)'!r}; "
            f"use {', '.join(_IMAGE_SUFFIXES)}"
        )
    if ext == ".png" and space == "linear":
        raise BurstFormatError(
            f"{path}: PNG is 8-bit sRGB only; use .tif or .npy for linear output"
        )
    if ext == ".dng" and burst is None:
        raise BurstFormatError(f"{path}: .dng output needs the burst's metadata (pass burst=)")
    if space == "srgb" and burst is None:
        raise BurstFormatError(
            f"{path}: sRGB output needs the burst's wb and ccm (pass burst=, or space='linear')"
        )
    rgb = _image_chw(image, path)
    if burst is not None:
        try:
            rgb = crop_padding(rgb, burst)
            orientation = burst_orientation(burst)
        except BurstFormatError as exc:
            raise BurstFormatError(f"{path}: {exc}; nothing written") from None
        if ext == ".dng":
            from burstjdd.raw.dng import write_linear_dng

            write_linear_dng(rgb, path, burst)
            return
        rgb = orient_image(rgb, orientation)
    if space == "srgb":
        rgb = render_srgb(rgb, burst)
    if ext == ".png":
        write_png(rgb, path)
    elif ext in (".tif", ".tiff"):
        write_tiff(rgb, path, linear=space == "linear")
    else:
        write_npy(rgb, path)
